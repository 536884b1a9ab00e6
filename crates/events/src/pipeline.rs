//! The pipeline between emulators and sinks: a bounded channel, so a flood of
//! events can never exhaust memory, and counters, so that every event that
//! could not be carried is counted and reported (never lost silently).
//!
//! The sink here is the JSON-lines file `<log-dir>/decnet.json`; the syslog,
//! RFC 5424 and database sinks plug in behind the same channel.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Event;

/// The JSON-lines event log, relative to the log directory.
pub const JSON_LOG: &str = "decnet.json";

#[derive(Debug, Default)]
struct Counters {
    emitted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
}

/// What the pipeline has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStats {
    /// Events handed to the pipeline.
    pub emitted: u64,
    /// Events written to the log.
    pub written: u64,
    /// Events shed because the queue was full (each one counted and logged).
    pub dropped: u64,
    /// Events lost to a failing sink (a full disk …).
    pub write_errors: u64,
}

/// Hands events to the pipeline; cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Emitter {
    tx: mpsc::Sender<Event>,
    counters: Arc<Counters>,
}

impl Emitter {
    /// An emitter whose events arrive on the returned receiver (for tests and
    /// for sinks that drive themselves).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tx,
                counters: Arc::default(),
            },
            rx,
        )
    }

    /// Queues `event`; when the queue is full the event is shed and counted.
    /// Returns whether it was queued.
    pub fn emit(&self, event: Event) -> bool {
        self.counters.emitted.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(_) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first and then every 1000th, so a flood cannot flood the log too.
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::error!(message = "Event queue full: events shed.", dropped_total = dropped);
                }
                false
            }
        }
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            emitted: self.counters.emitted.load(Ordering::Relaxed),
            written: self.counters.written.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// The running pipeline: owns the writer task.
pub struct Pipeline {
    writer: JoinHandle<()>,
    emitter: Emitter,
    path: PathBuf,
}

impl Pipeline {
    /// Starts the pipeline on the current tokio runtime, appending to
    /// `<log_dir>/decnet.json`.
    pub fn start(log_dir: &Path, capacity: usize) -> io::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let path = log_dir.join(JSON_LOG);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let (emitter, rx) = Emitter::channel(capacity);
        let counters = Arc::clone(&emitter.counters);
        let writer = tokio::spawn(write_json_lines(rx, io::BufWriter::new(file), counters));
        Ok(Self { writer, emitter, path })
    }

    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> PipelineStats {
        self.emitter.stats()
    }

    /// Writes out what is queued and stops once every emitter is gone (or after
    /// 5 s, if a stray task still holds one).
    pub async fn shutdown(self) {
        let Pipeline { writer, emitter, .. } = self;
        drop(emitter);
        // Other clones may live on in stray tasks; do not wait forever for them.
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }
}

async fn write_json_lines(
    mut rx: mpsc::Receiver<Event>,
    mut out: io::BufWriter<std::fs::File>,
    counters: Arc<Counters>,
) {
    let mut line = Vec::with_capacity(512);
    while let Some(event) = rx.recv().await {
        let mut batch = vec![event];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let result = (|| {
            for event in &batch {
                line.clear();
                serde_json::to_writer(&mut line, event)?;
                line.push(b'\n');
                out.write_all(&line)?;
            }
            out.flush()
        })();
        match result {
            Ok(()) => {
                counters.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(error) => {
                counters.write_errors.fetch_add(n, Ordering::Relaxed);
                tracing::error!(message = "Writing the event log failed.", %error, events = n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{Fields, Kind};

    fn event(n: u16) -> Event {
        Event {
            id: uuid::Uuid::now_v7(),
            time: SystemTime::now(),
            decky: "d".into(),
            service: "tftp".into(),
            kind: Kind::Connect,
            src_ip: "10.0.0.2".parse().unwrap(),
            src_port: n,
            session: None,
            fields: Fields::new(),
            credential: None,
        }
    }

    #[test]
    fn a_full_queue_sheds_and_counts() {
        let (emitter, mut rx) = Emitter::channel(2);
        assert!(emitter.emit(event(1)));
        assert!(emitter.emit(event(2)));
        assert!(!emitter.emit(event(3)));
        let stats = emitter.stats();
        assert_eq!((stats.emitted, stats.dropped), (3, 1));
        assert_eq!(rx.try_recv().unwrap().src_port, 1);
    }

    #[tokio::test]
    async fn writes_every_event_as_a_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::start(dir.path(), 64).unwrap();
        let emitter = pipeline.emitter();
        for n in 0..50 {
            emitter.emit(event(n));
        }
        drop(emitter);
        pipeline.shutdown().await;
        let text = std::fs::read_to_string(dir.path().join(JSON_LOG)).unwrap();
        let ports: Vec<u16> = text
            .lines()
            .map(|l| serde_json::from_str::<Event>(l).unwrap().src_port)
            .collect();
        assert_eq!(ports, (0..50).collect::<Vec<_>>());
    }
}
