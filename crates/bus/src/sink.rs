//! The pipeline's bus sink: every event goes on `event.{decky}.{service}.{kind}`,
//! and the facts workers want without parsing every event get their own
//! topics: a new source IP, a session starting or ending, a credential.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use decnet_events::{Event, Kind, Sink};
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::{Bus, topic};

/// Source IPs remembered for `attacker.observed`; see [`BusSink`].
pub const MAX_SEEN_IPS: usize = 100_000;

/// Publishes events on the bus (a [`Sink`] for the events pipeline).
///
/// It announces `attacker.observed` the first time it sees a source IP. It
/// remembers at most [`MAX_SEEN_IPS`] of them and then forgets the oldest:
/// an attacker who rotates through an IPv6 prefix could otherwise grow the
/// set without end. An IP forgotten and seen again is announced again,
/// which subscribers (that keep their own history) must tolerate anyway,
/// since a restart forgets everything too.
#[derive(Debug)]
pub struct BusSink {
    bus: Bus,
    seen: SeenIps,
}

impl BusSink {
    /// A sink publishing on `bus`, remembering [`MAX_SEEN_IPS`] source IPs.
    pub fn new(bus: Bus) -> Self {
        Self::with_max_seen_ips(bus, MAX_SEEN_IPS)
    }

    /// Like [`BusSink::new`], remembering at most `max` source IPs.
    pub fn with_max_seen_ips(bus: Bus, max: usize) -> Self {
        Self {
            bus,
            seen: SeenIps {
                set: HashSet::new(),
                order: VecDeque::new(),
                max: max.max(1),
            },
        }
    }

    fn publish(&mut self, event: &Event) {
        let payload = match serde_json::to_value(event) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(message = "Cannot serialize an event for the bus.", %error);
                return;
            }
        };
        if self.seen.insert(event.src_ip) {
            let observed = json!({
                "src_ip": event.src_ip,
                "first_seen": payload.get("time"),
                "decky": event.decky,
                "service": event.service,
            });
            self.bus.publish(topic::ATTACKER_OBSERVED, observed);
        }
        let raw = topic::event(&event.decky, &event.service, event.kind.as_str());
        let mut topics = vec![raw.as_str()];
        match event.kind {
            Kind::Connect => topics.push(topic::SESSION_STARTED),
            Kind::Disconnect => topics.push(topic::SESSION_ENDED),
            _ => {}
        }
        if event.credential.is_some() {
            topics.push(topic::CREDENTIAL_CAPTURED);
        }
        // One copy of the payload per topic, the last one moved.
        if let Some((last, rest)) = topics.split_last() {
            for topic in rest {
                self.bus.publish(topic, payload.clone());
            }
            self.bus.publish(last, payload);
        }
    }
}

impl Sink for BusSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for event in batch {
                self.publish(event);
            }
        })
    }
}

/// A set that forgets its oldest entries beyond `max`.
#[derive(Debug)]
struct SeenIps {
    set: HashSet<IpAddr>,
    order: VecDeque<IpAddr>,
    max: usize,
}

impl SeenIps {
    /// Returns whether `ip` is new.
    fn insert(&mut self, ip: IpAddr) -> bool {
        if !self.set.insert(ip) {
            return false;
        }
        self.order.push_back(ip);
        if self.order.len() > self.max
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use decnet_events::{Credential, SecretKind};

    use super::*;
    use crate::{Delivery, Message};

    fn event(kind: Kind, ip: u8, credential: bool) -> Arc<Event> {
        let mut event = Event::new("decky-01", "ssh", kind, Ipv4Addr::new(10, 0, 0, ip).into(), 40_000);
        if credential {
            event.credential = Some(Credential {
                principal: Some("root".into()),
                secret_kind: SecretKind::Plaintext,
                secret: b"hunter2".to_vec(),
                challenge: None,
                outcome: None,
            });
        }
        Arc::new(event)
    }

    fn drain(sub: &mut crate::Subscription) -> Vec<Arc<Message>> {
        let mut got = Vec::new();
        while let Some(delivery) = sub.try_recv() {
            match delivery {
                Delivery::Message(m) => got.push(m),
                Delivery::Lagged { missed } => panic!("lagged {missed}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn publishes_events_and_what_they_mean() {
        let bus = Bus::new();
        let mut all = bus.subscribe(">", 100).unwrap();
        let mut sink = BusSink::new(bus.clone());
        let connect = event(Kind::Connect, 7, true);
        let batch = [
            Arc::clone(&connect),
            event(Kind::Command, 7, false),
            event(Kind::Disconnect, 7, false),
            event(Kind::Connect, 8, false),
        ];
        sink.deliver(&batch).await;

        let got = drain(&mut all);
        let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "attacker.observed",
                "event.decky-01.ssh.connect",
                "attacker.session.started",
                "credential.captured",
                "event.decky-01.ssh.command",
                "event.decky-01.ssh.disconnect",
                "attacker.session.ended",
                "attacker.observed",
                "event.decky-01.ssh.connect",
                "attacker.session.started",
            ]
        );
        let connect_json = serde_json::to_value(&*connect).unwrap();
        assert_eq!(got[1].payload, connect_json);
        assert_eq!(got[2].payload, connect_json);
        assert_eq!(got[3].payload, connect_json);
        assert_eq!(
            got[0].payload,
            json!({
                "src_ip": "10.0.0.7",
                "first_seen": connect_json["time"],
                "decky": "decky-01",
                "service": "ssh",
            })
        );
        let back: Event = serde_json::from_value(got[1].payload.clone()).unwrap();
        assert_eq!((back.id, back.credential), (connect.id, connect.credential.clone()));

        // Seen IPs are remembered across batches.
        sink.deliver(&[event(Kind::Connect, 7, false)]).await;
        let topics: Vec<String> = drain(&mut all).iter().map(|m| m.topic.clone()).collect();
        assert_eq!(topics, ["event.decky-01.ssh.connect", "attacker.session.started"]);
    }

    #[test]
    fn the_seen_set_forgets_the_oldest() {
        let mut seen = SeenIps {
            set: HashSet::new(),
            order: VecDeque::new(),
            max: 2,
        };
        let ip = |n| IpAddr::from(Ipv4Addr::new(10, 0, 0, n));
        assert!(seen.insert(ip(1)));
        assert!(seen.insert(ip(2)));
        assert!(!seen.insert(ip(1)));
        assert!(seen.insert(ip(3))); // forgets 1
        assert!(!seen.insert(ip(2)));
        assert!(seen.insert(ip(1)));
        assert_eq!(seen.set.len(), 2);
    }
}
