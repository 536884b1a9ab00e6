//! Starting an engine in the background for a command that needs one
//! (`decnet deploy`, `decnet lab up`) when none runs.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{ClientError, EngineClient};
use crate::config::EngineConfig;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("starting the engine: {0}")]
    Start(#[source] std::io::Error),
    #[error("the engine exited during start-up ({status}); its log {log} ends with:\n{tail}")]
    Died { status: String, log: String, tail: String },
    #[error("the engine did not answer within {0:?}; see {1}")]
    Timeout(Duration, String),
}

/// Runs `command` (an `engine run` invocation) detached: its own process group
/// (a closing terminal does not stop it), stdin closed, output appended to the
/// engine log. Returns once the engine answers on its socket.
pub async fn start_detached(config: &EngineConfig, mut command: Command, wait: Duration) -> Result<(), SpawnError> {
    std::fs::create_dir_all(&config.log_dir).map_err(SpawnError::Start)?;
    let log_path = config.engine_log_path();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(SpawnError::Start)?;
    let start_of_run = log.metadata().map(|m| m.len()).unwrap_or(0);
    let err = log.try_clone().map_err(SpawnError::Start)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(SpawnError::Start)?;
    let client = EngineClient::new(&config.socket_path());
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let ours = text.get(start_of_run as usize..).unwrap_or_default();
            let ours = String::from_utf8_lossy(ours);
            let tail: Vec<&str> = ours.lines().rev().take(15).collect();
            return Err(SpawnError::Died {
                status: status.to_string(),
                log: log_path.display().to_string(),
                tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        match client.status().await {
            Ok(_) => return Ok(()),
            Err(ClientError::NotRunning { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return Err(SpawnError::Timeout(wait, log_path.display().to_string())),
        }
    }
}
