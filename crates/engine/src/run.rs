//! `decnet engine run`: the engine process. One per instance (a lock file
//! enforces it), systemd-friendly (sd_notify READY, watchdog, STOPPING), and
//! a clean exit on SIGTERM that leaves the namespaces for the next start to
//! adopt.

use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use decnet_emu_sdk::Limits;
use decnet_store::{Ingester, Store};
use nix::fcntl::{Flock, FlockArg};
use sd_notify::NotifyState;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::EngineConfig;
use crate::control;
use crate::engine::{Engine, EngineError};
use crate::registry::Registry;
use crate::sinks::EventSinks;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Privilege(#[from] decnet_net::NetError),
    #[error("an engine already runs for this instance (pid {pid}, lock {lock})")]
    AlreadyRunning { pid: String, lock: String },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let op = op.into();
    move |source| RunError::Io { op, source }
}

/// Runs the engine until SIGTERM, SIGINT or a shutdown request.
pub async fn run(config: EngineConfig, registry: Registry) -> Result<(), RunError> {
    decnet_net::require_network_admin()?;
    for (dir, mode) in [
        (&config.state_dir, 0o700),
        (&config.run_dir, 0o755),
        (&config.log_dir, 0o750),
    ] {
        ensure_dir(dir, mode).map_err(io(format!("create {}", dir.display())))?;
    }
    let _lock = lock(&config)?;
    fs::write(config.pid_path(), format!("{}\n", std::process::id())).map_err(io("write the pid file"))?;
    raise_fd_limit();

    let sinks = Arc::new(EventSinks::start(&config).map_err(io("open the event log"))?);
    // The store is fed from decnet.json, so a store that cannot open loses
    // nothing: the engine serves on, and a later start ingests the backlog.
    let store = match Store::open_sqlite(&config.db_path()).await {
        Ok(store) => Some(store),
        Err(error) => {
            tracing::error!(message = "The event store did not open; events stay in the log files.", %error);
            None
        }
    };
    let ingest_stop = CancellationToken::new();
    let ingester = store
        .as_ref()
        .map(|store| Ingester::new(store.clone(), &config.log_dir));
    let mut engine =
        Engine::new(config.clone(), registry, sinks.emitter(), Limits::default()).with_sinks(Arc::clone(&sinks));
    if let Some(ingester) = &ingester {
        engine = engine.with_ingest(ingester.counters());
    }
    let shaper = decnet_fingerprint::Shaper::load()
        .map(Arc::new)
        .map_err(|e| e.to_string());
    if let Err(reason) = &shaper {
        tracing::error!(message = "Deckies will show Linux's TCP/IP stack, not their OS personality.", %reason);
    }
    engine = engine.with_shaper(shaper);
    let engine = Arc::new(engine);
    let ingester = ingester.map(|i| tokio::spawn(i.run(sinks.written(), ingest_stop.clone())));
    // Listen before restoring the fleet: a `decnet status` that comes while
    // deckies already serve again waits for the restore and answers, instead
    // of finding a dead socket and reporting the engine stopped.
    let socket = config.socket_path();
    let _ = fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(io(format!("listen on {}", socket.display())))?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o660)).map_err(io("chmod the control socket"))?;
    let shutdown = CancellationToken::new();
    let server = axum::serve(listener, control::router(Arc::clone(&engine), shutdown.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });

    match engine.recover().await {
        Ok(report) if !report.failed.is_empty() => {
            tracing::error!(message = "Some deckies could not be restored.", failed = ?report.failed);
        }
        Ok(report) => tracing::info!(
            message = "Fleet restored.",
            adopted = report.adopted.len(),
            created = report.created.len(),
            recreated = report.recreated.len(),
            removed = report.removed.len()
        ),
        Err(error) => tracing::error!(message = "Restoring the fleet failed.", %error),
    }

    let bus_socket = config.bus_socket_path();
    let broker = decnet_bus::Broker::bind(sinks.bus().clone(), &bus_socket)
        .await
        .map_err(|e| RunError::Io {
            op: "start the bus".into(),
            source: std::io::Error::other(e),
        })?;
    let broker = tokio::spawn(broker.run(shutdown.clone().cancelled_owned()));
    tokio::spawn(crate::announce::run(
        Arc::clone(&engine),
        sinks.bus().clone(),
        store.clone(),
        shutdown.clone(),
    ));

    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let token = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            while !token.is_cancelled() {
                tick.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        });
    }
    tracing::info!(message = "Engine ready.", socket = %socket.display(), pid = std::process::id());

    wait_for_stop(&shutdown, || sinks.reopen()).await;
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    tracing::info!(message = "Stopping: closing every listener; namespaces stay for the next start.");
    shutdown.cancel();
    engine.stop().await;
    let _ = server.await;
    let _ = broker.await;
    drop(engine);
    match Arc::try_unwrap(sinks) {
        Ok(sinks) => sinks.shutdown().await,
        Err(sinks) => sinks.pipeline().clone().shutdown().await,
    }
    // Last: the store takes in what the sinks wrote while stopping.
    ingest_stop.cancel();
    if let Some(task) = ingester {
        let _ = task.await;
    }
    if let Some(store) = store {
        store.close().await;
    }
    let _ = fs::remove_file(&socket);
    let _ = fs::remove_file(config.pid_path());
    Ok(())
}

/// Creates `dir` (and missing parents) with `mode`; returns whether it made
/// it. An existing directory keeps its mode: it may be the operator's (e.g.
/// `--log-dir /var/log`), and is none of the engine's business.
fn ensure_dir(dir: &Path, mode: u32) -> std::io::Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(d) = next.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        next = d.parent();
    }
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    // The umask may have taken bits away: set exactly `mode`, on what was made only.
    for made in missing {
        fs::set_permissions(&made, fs::Permissions::from_mode(mode))?;
    }
    Ok(true)
}

/// Takes the instance lock, or says which engine holds it.
fn lock(config: &EngineConfig) -> Result<Flock<File>, RunError> {
    let path = config.lock_path();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("open {}", path.display())))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = writeln!(lock, "{}", std::process::id());
            Ok(lock)
        }
        Err((_, _)) => Err(RunError::AlreadyRunning {
            pid: fs::read_to_string(config.pid_path())
                .unwrap_or_default()
                .trim()
                .to_string(),
            lock: path.display().to_string(),
        }),
    }
}

/// Waits for SIGTERM, SIGINT or a shutdown request; SIGHUP reopens the logs.
async fn wait_for_stop(shutdown: &CancellationToken, on_hangup: impl Fn()) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        shutdown.cancelled().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            // logrotate's signal (never a reason to stop).
            _ = hup.recv() => {
                tracing::info!(message = "SIGHUP: reopening the event logs.");
                on_hangup();
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Every session holds a socket: raise the open-file limit as far as allowed.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn only_directories_it_creates_get_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let existing = root.path().join("var-log");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!ensure_dir(&existing, 0o700).unwrap());
        assert_eq!(mode(&existing), 0o755, "an existing directory keeps its mode");
        let made = existing.join("decnet/state");
        assert!(ensure_dir(&made, 0o700).unwrap());
        assert_eq!(mode(&made), 0o700);
        assert_eq!(mode(&existing.join("decnet")), 0o700);
        assert_eq!(mode(&existing), 0o755, "a parent that existed keeps its mode");
    }
}
