//! `decnet engine run`, and finding (or starting) the engine for other commands.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use decnet_core::fleet::FleetSpec;
use decnet_engine::status::{DeployReport, EngineStatus};
use decnet_engine::{ClientError, EngineClient, EngineConfig, Registry};

use crate::cli::Global;

/// Every protocol emulator this build has.
fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(
        // Compiled-in data that its unit tests parse: failing here is a build defect.
        decnet_emu_ssh::emulator::Ssh::new().expect("the embedded SSH release profiles parse"),
    ));
    registry.register(Arc::new(decnet_emu_telnet::Telnet));
    registry.register(Arc::new(decnet_emu_tftp::Tftp));
    registry
}

pub(crate) fn run(global: &Global) -> anyhow::Result<ExitCode> {
    let config = global.engine_config()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("DECNET_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("engine")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(decnet_engine::run::run(config, registry()))?;
    Ok(ExitCode::SUCCESS)
}

/// A runtime for commands that talk to the engine.
pub(crate) fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Hands `fleet` to the engine (started first if none runs); returns what the
/// deploy did and the engine's status afterwards.
pub(crate) fn deploy(
    global: &Global,
    config: &EngineConfig,
    fleet: &FleetSpec,
) -> anyhow::Result<(DeployReport, EngineStatus)> {
    if let Some(why) = fleet.log_target.as_ref().and_then(|t| t.plaintext_refusal()) {
        return Err(crate::BadInput(why).into());
    }
    if fleet.mode == decnet_core::fleet::Mode::Swarm {
        return Err(crate::BadInput(
            "--mode swarm shards deckies over enrolled sensors, which this version cannot do yet; use --mode unihost"
                .into(),
        )
        .into());
    }
    client_runtime()?.block_on(async {
        if let Some(target) = &fleet.log_target {
            // As the original did: say so before deploying; events spool until it answers.
            let syslog = decnet_engine::sinks::syslog_target(target);
            if let Err(why) = decnet_events::syslog::probe(&syslog, Duration::from_secs(3)).await {
                eprintln!("warning: log target {target} does not answer ({why}); events will wait in the spool");
            }
        }
        let client = ensure(global, config).await?;
        let report = client.deploy(fleet).await?;
        anyhow::Ok((report, client.status().await?))
    })
}

/// The running engine, or `None`.
pub(crate) async fn running(config: &EngineConfig) -> anyhow::Result<Option<EngineClient>> {
    let client = EngineClient::new(&config.socket_path());
    match client.status().await {
        Ok(_) => Ok(Some(client)),
        Err(ClientError::NotRunning { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The running engine, started in the background first if none runs.
pub(crate) async fn ensure(global: &Global, config: &EngineConfig) -> anyhow::Result<EngineClient> {
    if let Some(client) = running(config).await? {
        return Ok(client);
    }
    let exe = std::env::current_exe().context("locating the decnet binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["--state-dir"])
        .arg(&global.state_dir)
        .args(["--run-dir"])
        .arg(&global.run_dir)
        .args(["--log-dir"])
        .arg(&global.log_dir)
        .args(["--prefix", &global.prefix])
        .args(["engine", "run"]);
    decnet_engine::daemon::start_detached(config, command, Duration::from_secs(30)).await?;
    eprintln!(
        "decnet: started the engine (pid {}; log {})",
        std::fs::read_to_string(config.pid_path()).unwrap_or_default().trim(),
        config.engine_log_path().display()
    );
    Ok(EngineClient::new(&config.socket_path()))
}
