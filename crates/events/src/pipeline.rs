//! The pipeline between emulators and sinks. Each sink (the local log, a
//! syslog target, the bus …) has its own bounded queue and task, so a slow or
//! dead sink never slows the others or an emulator: when a queue is full, the
//! event is shed for that sink only, counted and logged. Nothing is lost
//! silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Event;

/// A destination for events.
pub trait Sink: Send + 'static {
    /// Delivers a batch, in order. The sink owns its failures: it retries,
    /// spools, or counts them in its [`SinkCounters`].
    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Event>]) -> BoxFuture<'a, ()>;

    /// Called about once a second, also when no events come (to reconnect,
    /// replay a spool …).
    fn tick(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Reopen files (logrotate's SIGHUP).
    fn reopen(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// What one sink has done so far.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Events delivered (written, sent, or spooled for later).
    pub delivered: AtomicU64,
    /// Events shed because its queue was full.
    pub dropped: AtomicU64,
    /// Events lost inside the sink (a full spool, a failing disk …).
    pub failed: AtomicU64,
    /// Events waiting in the sink's spool.
    pub spooled: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    pub name: String,
    pub delivered: u64,
    pub dropped: u64,
    pub failed: u64,
    pub spooled: u64,
}

/// What the pipeline has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineStats {
    /// Events handed to the pipeline.
    pub emitted: u64,
    pub sinks: Vec<SinkStats>,
}

impl PipelineStats {
    /// Events shed or lost by any sink.
    pub fn lost(&self) -> u64 {
        self.sinks.iter().map(|s| s.dropped + s.failed).sum()
    }
}

enum Command {
    Event(Arc<Event>),
    Reopen,
}

struct Slot {
    name: String,
    tx: mpsc::Sender<Command>,
    counters: Arc<SinkCounters>,
    task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    emitted: AtomicU64,
    slots: RwLock<Vec<Slot>>,
}

/// Hands events to every sink; cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct Emitter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("emitted", &self.shared.emitted.load(Ordering::Relaxed))
            .finish()
    }
}

impl Emitter {
    /// An emitter with one sink: a channel whose receiver the caller reads
    /// (for tests and for code that drives its own sink).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let pipeline = Pipeline::new();
        pipeline.add_sink("channel", ChannelSink(tx), capacity);
        (pipeline.emitter(), rx)
    }

    /// Bounds `event` and queues it for every sink; a full queue sheds it for
    /// that sink, counted and logged. Returns whether every sink took it.
    pub fn emit(&self, event: Event) -> bool {
        self.shared.emitted.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(event.bounded());
        let slots = self.shared.slots.read().unwrap_or_else(|e| e.into_inner());
        let mut all = true;
        for slot in slots.iter() {
            if slot.tx.try_send(Command::Event(Arc::clone(&event))).is_err() {
                all = false;
                let dropped = slot.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // The first, then every 1000th: a flood must not flood the log too.
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::error!(message = "Sink queue full: events shed.", sink = %slot.name, dropped_total = dropped);
                }
            }
        }
        all
    }

    pub fn stats(&self) -> PipelineStats {
        let slots = self.shared.slots.read().unwrap_or_else(|e| e.into_inner());
        PipelineStats {
            emitted: self.shared.emitted.load(Ordering::Relaxed),
            sinks: slots
                .iter()
                .map(|s| SinkStats {
                    name: s.name.clone(),
                    delivered: s.counters.delivered.load(Ordering::Relaxed),
                    dropped: s.counters.dropped.load(Ordering::Relaxed),
                    failed: s.counters.failed.load(Ordering::Relaxed),
                    spooled: s.counters.spooled.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// The running pipeline: its sinks and their tasks.
#[derive(Clone, Default)]
pub struct Pipeline {
    emitter: Emitter,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// Starts `sink` on the current runtime with a queue of `capacity` events.
    /// Returns its counters. A sink with the same name is replaced.
    pub fn add_sink(&self, name: &str, sink: impl Sink, capacity: usize) -> Arc<SinkCounters> {
        self.add_sink_with_counters(name, sink, capacity, Arc::default())
    }

    /// Like [`Pipeline::add_sink`], with counters the sink already holds.
    pub fn add_sink_with_counters(
        &self,
        name: &str,
        sink: impl Sink,
        capacity: usize,
        counters: Arc<SinkCounters>,
    ) -> Arc<SinkCounters> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let task = tokio::spawn(run_sink(sink, rx, Arc::clone(&counters)));
        let old = {
            let mut slots = self.emitter.shared.slots.write().unwrap_or_else(|e| e.into_inner());
            let old = slots.iter().position(|s| s.name == name).map(|i| slots.remove(i));
            slots.push(Slot {
                name: name.to_string(),
                tx,
                counters: Arc::clone(&counters),
                task: Some(task),
            });
            old
        };
        if let Some(old) = old {
            tokio::spawn(finish(old));
        }
        counters
    }

    /// Stops a sink after it has delivered what it had queued.
    pub async fn remove_sink(&self, name: &str) {
        let old = {
            let mut slots = self.emitter.shared.slots.write().unwrap_or_else(|e| e.into_inner());
            slots.iter().position(|s| s.name == name).map(|i| slots.remove(i))
        };
        if let Some(old) = old {
            finish(old).await;
        }
    }

    pub fn has_sink(&self, name: &str) -> bool {
        let slots = self.emitter.shared.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().any(|s| s.name == name)
    }

    /// Asks every sink to reopen its files (SIGHUP).
    pub fn reopen(&self) {
        let slots = self.emitter.shared.slots.read().unwrap_or_else(|e| e.into_inner());
        for slot in slots.iter() {
            let _ = slot.tx.try_send(Command::Reopen);
        }
    }

    pub fn stats(&self) -> PipelineStats {
        self.emitter.stats()
    }

    /// Delivers everything queued, then stops every sink.
    pub async fn shutdown(self) {
        let slots = {
            let mut slots = self.emitter.shared.slots.write().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *slots)
        };
        for slot in slots {
            finish(slot).await;
        }
    }
}

/// Closes a sink's queue and waits (up to 10 s) for it to drain.
async fn finish(mut slot: Slot) {
    drop(slot.tx);
    if let Some(task) = slot.task.take() {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
}

async fn run_sink(mut sink: impl Sink, mut rx: mpsc::Receiver<Command>, counters: Arc<SinkCounters>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Arc<Event>> = Vec::with_capacity(1024);
    loop {
        tokio::select! {
            command = rx.recv() => {
                let Some(command) = command else { break };
                let mut reopen = false;
                let mut next = Some(command);
                while let Some(c) = next.take() {
                    match c {
                        Command::Event(e) => batch.push(e),
                        Command::Reopen => reopen = true,
                    }
                    if batch.len() < 1024 {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    sink.deliver(&batch).await;
                    counters.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                }
                if reopen {
                    sink.reopen().await;
                }
            }
            _ = tick.tick() => sink.tick().await,
        }
    }
}

/// Forwards events to a channel.
struct ChannelSink(mpsc::Sender<Event>);

impl Sink for ChannelSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for event in batch {
                let _ = self.0.send(Event::clone(event)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::Kind;

    fn event(n: u16) -> Event {
        Event::new("d", "tftp", Kind::Connect, Ipv4Addr::new(10, 0, 0, 2).into(), n)
    }

    /// Never finishes a delivery: its queue fills.
    struct Stuck;

    impl Sink for Stuck {
        fn deliver<'a>(&'a mut self, _batch: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_stuck_sink_sheds_and_counts_while_others_carry_on() {
        let pipeline = Pipeline::new();
        let (tx, mut rx) = mpsc::channel(1000);
        pipeline.add_sink("fine", ChannelSink(tx), 1000);
        pipeline.add_sink("stuck", Stuck, 4);
        let emitter = pipeline.emitter();
        for n in 0..100 {
            emitter.emit(event(n));
        }
        for n in 0..100 {
            assert_eq!(rx.recv().await.unwrap().src_port, n);
        }
        let stats = emitter.stats();
        assert_eq!(stats.emitted, 100);
        let stuck = stats.sinks.iter().find(|s| s.name == "stuck").unwrap();
        // One batch taken by the stuck delivery, four queued, the rest shed.
        assert!(stuck.dropped >= 90, "{stuck:?}");
        assert_eq!(stats.sinks.iter().find(|s| s.name == "fine").unwrap().dropped, 0);
        assert_eq!(stats.lost(), stuck.dropped);
    }
}
