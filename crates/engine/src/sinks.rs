//! The engine's event sinks: the local log and the bus always; a syslog
//! target and an extra RFC 5424 file when the fleet asks for them
//! (reconfigured on every deploy, so changing `--log-target` needs no restart).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use decnet_bus::{Bus, BusSink};
use decnet_core::fleet::{FleetSpec, LogTarget, LogTransport};
use decnet_events::file::{FileLog, FileLogConfig, Rfc5424File};
use decnet_events::syslog::{SyslogSink, SyslogTarget, TlsFiles, Transport};
use decnet_events::{Emitter, Pipeline, PipelineStats};
use tokio::sync::Notify;

use crate::config::EngineConfig;

/// Events queued per sink before any is shed.
pub const SINK_QUEUE: usize = 65_536;
/// Disk kept for events waiting on a syslog target that is down.
pub const SPOOL_LIMIT: u64 = 1024 * 1024 * 1024;

const FILE: &str = "file";
const BUS: &str = "bus";
const SYSLOG: &str = "syslog";
const LOG_FILE: &str = "log_file";

pub struct EventSinks {
    pipeline: Pipeline,
    bus: Bus,
    spool_dir: PathBuf,
    written: Arc<Notify>,
    current: Mutex<Current>,
}

/// What the fleet asked for last.
#[derive(Default, PartialEq)]
struct Current {
    syslog: Option<LogTarget>,
    log_file: Option<PathBuf>,
}

impl EventSinks {
    /// The pipeline with the local log (`<log-dir>/decnet.log` and
    /// `decnet.json`) and the bus.
    pub fn start(config: &EngineConfig) -> io::Result<Self> {
        let pipeline = Pipeline::new();
        let counters = Arc::default();
        let file = FileLog::open(&FileLogConfig::new(&config.log_dir), Arc::clone(&counters))?;
        let written = file.written();
        pipeline.add_sink_with_counters(FILE, file, SINK_QUEUE, counters);
        let bus = Bus::new();
        pipeline.add_sink(BUS, BusSink::new(bus.clone()), SINK_QUEUE);
        Ok(Self {
            pipeline,
            bus,
            spool_dir: config.spool_dir(),
            written,
            current: Mutex::default(),
        })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Where every event, and what the engine learns, is published.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn emitter(&self) -> Emitter {
        self.pipeline.emitter()
    }

    /// Notified after each batch reaches the local log.
    pub fn written(&self) -> Arc<Notify> {
        Arc::clone(&self.written)
    }

    pub fn stats(&self) -> PipelineStats {
        self.pipeline.stats()
    }

    /// Starts, replaces or stops the syslog and extra-file sinks to match
    /// `fleet`. Fails (changing nothing) when a sink cannot start, e.g. an
    /// unreadable TLS file.
    pub async fn apply(&self, fleet: Option<&FleetSpec>) -> Result<(), String> {
        let wanted = Current {
            syslog: fleet.and_then(|f| f.log_target.clone()),
            log_file: fleet.and_then(|f| f.log_file.clone()),
        };
        let (syslog_changed, file_changed) = {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            (current.syslog != wanted.syslog, current.log_file != wanted.log_file)
        };
        // Open everything first, so that a failure leaves the old sinks in place.
        let syslog = match (&wanted.syslog, syslog_changed) {
            (Some(target), true) => {
                let counters = Arc::default();
                let sink = SyslogSink::new(
                    syslog_target(target),
                    &self.spool_dir,
                    SPOOL_LIMIT,
                    Arc::clone(&counters),
                )
                .map_err(|e| format!("log target {target}: {e}"))?;
                Some((sink, counters))
            }
            _ => None,
        };
        let file = match (&wanted.log_file, file_changed) {
            (Some(path), true) => {
                let counters = Arc::default();
                let sink = Rfc5424File::open(path, Arc::clone(&counters))
                    .map_err(|e| format!("log file {}: {e}", path.display()))?;
                Some((sink, counters))
            }
            _ => None,
        };
        if syslog_changed {
            match syslog {
                Some((sink, counters)) => {
                    self.pipeline.add_sink_with_counters(SYSLOG, sink, SINK_QUEUE, counters);
                }
                None => self.pipeline.remove_sink(SYSLOG).await,
            }
            if let Some(target) = &wanted.syslog {
                tracing::info!(message = "Sending events to syslog.", target = %target);
            }
        }
        if file_changed {
            match file {
                Some((sink, counters)) => {
                    self.pipeline
                        .add_sink_with_counters(LOG_FILE, sink, SINK_QUEUE, counters);
                }
                None => self.pipeline.remove_sink(LOG_FILE).await,
            }
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = wanted;
        Ok(())
    }

    /// Reopens every file (logrotate's SIGHUP).
    pub fn reopen(&self) {
        self.pipeline.reopen();
    }

    /// Delivers what is queued, then stops every sink.
    pub async fn shutdown(self) {
        self.pipeline.shutdown().await;
    }
}

/// The events crate's view of a fleet's log target.
pub fn syslog_target(target: &LogTarget) -> SyslogTarget {
    SyslogTarget {
        transport: match target.transport {
            LogTransport::Udp => Transport::Udp,
            LogTransport::Tcp => Transport::Tcp,
            LogTransport::Tls => Transport::Tls,
        },
        host: target.host.clone(),
        port: target.port,
        tls: target.tls.as_ref().map(|t| TlsFiles {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        }),
    }
}
