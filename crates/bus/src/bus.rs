//! In-process pub/sub. Publishing is synchronous and never waits: it walks a
//! short list of subscribers under a read lock and `try_send`s one shared
//! `Arc<Message>` to each whose patterns match. A full queue drops the message
//! for that subscriber only; the count rides on the next message it does get,
//! so it learns how many it lost and where.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use crate::topic::{self, Pattern, TopicError};
use crate::{BusError, Delivery, Message};

/// The bus. Cheap to clone; every clone is the same bus.
#[derive(Clone, Default)]
pub struct Bus {
    shared: Arc<Shared>,
}

/// What the bus has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusStats {
    /// Messages published on a valid topic.
    pub published: u64,
    /// Copies queued for subscribers.
    pub delivered: u64,
    /// Copies dropped because a subscriber's queue was full.
    pub lagged: u64,
    /// Live subscriptions.
    pub subscribers: usize,
}

#[derive(Default)]
struct Shared {
    subscribers: RwLock<Vec<Slot>>,
    next_id: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    lagged: AtomicU64,
    /// One flag per kind of invalid topic: a buggy publisher in a loop must
    /// not flood the log.
    warned: [AtomicBool; TopicError::KINDS],
}

/// The publisher's side of a subscription.
struct Slot {
    id: u64,
    patterns: Vec<Pattern>,
    tx: mpsc::Sender<Queued>,
    /// Messages dropped since the last one queued.
    missed: Arc<AtomicU64>,
}

struct Queued {
    /// Messages dropped just before this one.
    missed_before: u64,
    message: Arc<Message>,
}

impl Bus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `payload` on `topic` to every matching subscriber. Never
    /// blocks. An invalid topic is a bug in the caller: the message is
    /// dropped, with a warning the first time for each kind of mistake.
    pub fn publish(&self, topic: &str, payload: serde_json::Value) {
        if let Err(BusError::BadTopic { topic, reason }) = self.try_publish(topic, payload) {
            let warned = &self.shared.warned[reason.kind_index()];
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    message = "Dropped a message on an invalid topic; later ones with the same mistake are dropped silently.",
                    %topic,
                    %reason
                );
            }
        }
    }

    /// Like [`Bus::publish`], but an invalid topic is returned as an error
    /// (for topics that come from outside, like a broker client's).
    pub fn try_publish(&self, topic: &str, payload: serde_json::Value) -> Result<(), BusError> {
        topic::check(topic, false).map_err(|reason| BusError::BadTopic {
            topic: topic::shorten(topic),
            reason,
        })?;
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        let subscribers = self.shared.subscribers.read().unwrap_or_else(|e| e.into_inner());
        let mut matching = subscribers
            .iter()
            .filter(|slot| slot.patterns.iter().any(|p| p.matches(topic)))
            .peekable();
        if matching.peek().is_none() {
            return Ok(());
        }
        let message = Arc::new(Message {
            topic: topic.to_string(),
            payload,
        });
        for slot in matching {
            self.offer(slot, &message);
        }
        Ok(())
    }

    fn offer(&self, slot: &Slot, message: &Arc<Message>) {
        // Taken, not read: concurrent publishers must not both report it.
        let missed_before = slot.missed.swap(0, Ordering::AcqRel);
        let queued = Queued {
            missed_before,
            message: Arc::clone(message),
        };
        match slot.tx.try_send(queued) {
            Ok(()) => {
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                slot.missed.fetch_add(missed_before + 1, Ordering::AcqRel);
                self.shared.lagged.fetch_add(1, Ordering::Relaxed);
            }
            // The subscription is being dropped.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    /// Subscribes to `pattern` with a queue of `capacity` messages (at least 1).
    pub fn subscribe(&self, pattern: &str, capacity: usize) -> Result<Subscription, BusError> {
        let pattern = Pattern::parse(pattern)?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let missed = Arc::new(AtomicU64::new(0));
        let slot = Slot {
            id,
            patterns: vec![pattern.clone()],
            tx,
            missed: Arc::clone(&missed),
        };
        self.shared
            .subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
        Ok(Subscription {
            id,
            patterns: vec![pattern],
            rx,
            missed,
            pending: None,
            bus: Arc::downgrade(&self.shared),
        })
    }

    /// Counters so far, for the API's status.
    pub fn stats(&self) -> BusStats {
        let shared = &self.shared;
        BusStats {
            published: shared.published.load(Ordering::Relaxed),
            delivered: shared.delivered.load(Ordering::Relaxed),
            lagged: shared.lagged.load(Ordering::Relaxed),
            subscribers: shared.subscribers.read().unwrap_or_else(|e| e.into_inner()).len(),
        }
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus").field("stats", &self.stats()).finish()
    }
}

/// A subscriber's queue and patterns. Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    patterns: Vec<Pattern>,
    rx: mpsc::Receiver<Queued>,
    missed: Arc<AtomicU64>,
    /// A message received after a gap, held back while the gap is reported.
    pending: Option<Arc<Message>>,
    /// Weak, so that dropping every [`Bus`] ends the subscription.
    bus: Weak<Shared>,
}

impl Subscription {
    /// The next delivery, or `None` once the bus is gone. Cancel safe.
    pub async fn recv(&mut self) -> Option<Delivery> {
        if let Some(delivery) = self.try_recv() {
            return Some(delivery);
        }
        // The queue is empty, so nothing can be dropped while we wait.
        let queued = self.rx.recv().await?;
        Some(self.unpack(queued))
    }

    /// The next delivery if one is ready.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        if let Some(message) = self.pending.take() {
            return Some(Delivery::Message(message));
        }
        match self.rx.try_recv() {
            Ok(queued) => Some(self.unpack(queued)),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                // Messages dropped after everything queued so far: the gap
                // is at the end.
                let missed = self.missed.swap(0, Ordering::AcqRel);
                (missed > 0).then_some(Delivery::Lagged { missed })
            }
        }
    }

    fn unpack(&mut self, queued: Queued) -> Delivery {
        if queued.missed_before > 0 {
            self.pending = Some(queued.message);
            Delivery::Lagged {
                missed: queued.missed_before,
            }
        } else {
            Delivery::Message(queued.message)
        }
    }

    /// Adds a pattern; a message that matches several is delivered once.
    /// Returns whether it was new.
    pub fn add_pattern(&mut self, pattern: &str) -> Result<bool, BusError> {
        if self.patterns.iter().any(|p| p.as_str() == pattern) {
            return Ok(false);
        }
        self.patterns.push(Pattern::parse(pattern)?);
        self.publish_patterns();
        Ok(true)
    }

    /// Removes a pattern; returns whether it was there. With no patterns
    /// left, the subscription receives nothing until one is added.
    pub fn remove_pattern(&mut self, pattern: &str) -> bool {
        let before = self.patterns.len();
        self.patterns.retain(|p| p.as_str() != pattern);
        let removed = self.patterns.len() != before;
        if removed {
            self.publish_patterns();
        }
        removed
    }

    /// The patterns subscribed to.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Copies our patterns to the publisher's side.
    fn publish_patterns(&self) {
        if let Some(shared) = self.bus.upgrade() {
            let mut subscribers = shared.subscribers.write().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = subscribers.iter_mut().find(|s| s.id == self.id) {
                slot.patterns = self.patterns.clone();
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(shared) = self.bus.upgrade() {
            let mut subscribers = shared.subscribers.write().unwrap_or_else(|e| e.into_inner());
            subscribers.retain(|s| s.id != self.id);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("patterns", &self.patterns)
            .field("queued", &self.rx.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    fn message(delivery: Option<Delivery>) -> Arc<Message> {
        match delivery {
            Some(Delivery::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscribers_get_what_their_patterns_match_in_order() {
        let bus = Bus::new();
        let mut all = bus.subscribe(">", 100).unwrap();
        let mut ssh = bus.subscribe("event.*.ssh.>", 100).unwrap();
        let mut sessions = bus.subscribe("attacker.session.*", 100).unwrap();
        let published = [
            "event.d1.ssh.connect",
            "event.d1.http.request",
            "attacker.session.started",
            "event.d2.ssh.auth_attempt",
            "attacker.observed",
            "attacker.session.ended",
        ];
        for (n, topic) in published.iter().enumerate() {
            bus.publish(topic, json!({ "n": n }));
        }
        let got = |sub: &mut Subscription| {
            let mut topics = Vec::new();
            while let Some(delivery) = sub.try_recv() {
                topics.push(message(Some(delivery)).topic.clone());
            }
            topics
        };
        assert_eq!(got(&mut all), published);
        assert_eq!(got(&mut ssh), ["event.d1.ssh.connect", "event.d2.ssh.auth_attempt"]);
        assert_eq!(
            got(&mut sessions),
            ["attacker.session.started", "attacker.session.ended"]
        );
        let stats = bus.stats();
        assert_eq!(
            (stats.published, stats.delivered, stats.lagged, stats.subscribers),
            (6, 10, 0, 3)
        );
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_exactly_what_it_missed_and_where() {
        let bus = Bus::new();
        let mut slow = bus.subscribe("t.>", 4).unwrap();
        for n in 0..10 {
            bus.publish("t.x", json!(n));
        }
        // 0..4 fit, 4..10 were dropped; the gap is at the end.
        for n in 0..4 {
            assert_eq!(message(slow.recv().await).payload, json!(n));
        }
        assert_eq!(slow.recv().await, Some(Delivery::Lagged { missed: 6 }));
        assert_eq!(slow.try_recv(), None);

        // A gap in the middle: reported between the messages around it.
        for n in 10..16 {
            bus.publish("t.x", json!(n));
        }
        assert_eq!(message(slow.recv().await).payload, json!(10));
        bus.publish("t.x", json!(16));
        let mut seen = Vec::new();
        while let Some(delivery) = slow.try_recv() {
            seen.push(delivery);
        }
        let payloads: Vec<String> = seen
            .iter()
            .map(|d| match d {
                Delivery::Message(m) => m.payload.to_string(),
                Delivery::Lagged { missed } => format!("lagged {missed}"),
            })
            .collect();
        assert_eq!(payloads, ["11", "12", "13", "lagged 2", "16"]);
        assert_eq!(bus.stats().lagged, 8);
    }

    #[tokio::test]
    async fn a_subscriber_that_never_reads_never_blocks_the_publisher() {
        let bus = Bus::new();
        let _stuck = bus.subscribe(">", 4).unwrap();
        let mut fast = bus.subscribe("event.>", 10_000).unwrap();
        let started = Instant::now();
        for n in 0..10_000 {
            bus.publish("event.d1.ssh.connect", json!(n));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        for n in 0..10_000 {
            assert_eq!(message(fast.recv().await).payload, json!(n));
        }
        let stats = bus.stats();
        assert_eq!((stats.delivered, stats.lagged), (10_004, 9_996));
    }

    #[tokio::test]
    async fn patterns_can_be_added_and_removed_and_dropping_unsubscribes() {
        let bus = Bus::new();
        let mut sub = bus.subscribe("a.*", 10).unwrap();
        assert!(sub.add_pattern("b.>").unwrap());
        assert!(!sub.add_pattern("b.>").unwrap());
        assert!(sub.add_pattern("a.>").unwrap());
        bus.publish("a.x", json!(1)); // matches two patterns, delivered once
        bus.publish("b.x.y", json!(2));
        assert!(sub.remove_pattern("a.*"));
        assert!(sub.remove_pattern("a.>"));
        assert!(!sub.remove_pattern("a.>"));
        bus.publish("a.x", json!(3));
        assert_eq!(message(sub.try_recv()).payload, json!(1));
        assert_eq!(message(sub.try_recv()).payload, json!(2));
        assert_eq!(sub.try_recv(), None);
        assert!(sub.add_pattern("a.>.b").is_err());

        drop(sub);
        assert_eq!(bus.stats().subscribers, 0);
    }

    #[tokio::test]
    async fn invalid_topics_are_dropped_and_the_bus_ending_ends_subscriptions() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(">", 10).unwrap();
        for _ in 0..3 {
            bus.publish("a..b", json!(null));
            bus.publish("a.*", json!(null));
        }
        assert!(matches!(
            bus.try_publish("a b", json!(null)),
            Err(BusError::BadTopic { .. })
        ));
        assert_eq!(bus.stats().published, 0);
        assert!(bus.subscribe("a.>.b", 1).is_err());
        drop(bus);
        assert_eq!(sub.recv().await, None);
    }
}
