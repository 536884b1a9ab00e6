//! What a batch of newly stored events adds to the aggregate tables
//! (attackers, their services and deckies, sessions, credentials). Pure and
//! backend-neutral, so every backend folds events the same way; a backend only
//! turns a [`Summary`] into upserts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use decnet_events::{Credential, Event, Kind, Outcome};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// First and last time and number of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) count: i64,
}

impl Span {
    fn new(time: i64) -> Self {
        Self {
            first: time,
            last: time,
            count: 1,
        }
    }

    fn add(&mut self, time: i64) {
        self.first = self.first.min(time);
        self.last = self.last.max(time);
        self.count += 1;
    }
}

/// A session's events in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionSpan<'a> {
    pub(crate) decky: &'a str,
    pub(crate) service: &'a str,
    pub(crate) src_ip: IpAddr,
    pub(crate) src_port: u16,
    pub(crate) span: Span,
    /// The latest disconnect event's time.
    pub(crate) ended: Option<i64>,
}

/// What makes two credentials the same (the `credentials` table's unique key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CredentialKey<'a> {
    pub(crate) src_ip: IpAddr,
    pub(crate) decky: &'a str,
    pub(crate) service: &'a str,
    pub(crate) secret_kind: &'a str,
    /// The principal, or "" without one.
    pub(crate) principal_key: &'a str,
    /// Hex SHA-256 of the secret.
    pub(crate) secret_sha256: String,
}

/// A credential's attempts in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialSpan<'a> {
    /// The batch's first attempt: what a new row stores.
    pub(crate) credential: &'a Credential,
    pub(crate) secret_printable: String,
    pub(crate) hashcat: Option<String>,
    pub(crate) span: Span,
    /// The latest attempt that had an outcome: when, and what.
    pub(crate) last_outcome: Option<(i64, Outcome)>,
}

/// The aggregates of a batch of events.
#[derive(Debug, Default)]
pub(crate) struct Summary<'a> {
    pub(crate) attackers: BTreeMap<IpAddr, Span>,
    pub(crate) services: BTreeMap<(IpAddr, &'a str), Span>,
    pub(crate) deckies: BTreeMap<(IpAddr, &'a str), Span>,
    pub(crate) sessions: BTreeMap<Uuid, SessionSpan<'a>>,
    pub(crate) credentials: BTreeMap<CredentialKey<'a>, CredentialSpan<'a>>,
}

impl<'a> Summary<'a> {
    /// Folds events; their order only breaks ties (the later event wins).
    pub(crate) fn of(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut summary = Summary::default();
        for event in events {
            summary.add(event);
        }
        summary
    }

    fn add(&mut self, event: &'a Event) {
        let time = micros(event.time);
        let ip = event.src_ip;
        extend(&mut self.attackers, ip, time);
        extend(&mut self.services, (ip, event.service.as_str()), time);
        extend(&mut self.deckies, (ip, event.decky.as_str()), time);
        if let Some(id) = event.session {
            let ended = (event.kind == Kind::Disconnect).then_some(time);
            self.sessions
                .entry(id)
                .and_modify(|s| {
                    s.span.add(time);
                    s.ended = s.ended.max(ended);
                })
                .or_insert_with(|| SessionSpan {
                    decky: &event.decky,
                    service: &event.service,
                    src_ip: ip,
                    src_port: event.src_port,
                    span: Span::new(time),
                    ended,
                });
        }
        if let Some(credential) = &event.credential {
            let key = CredentialKey {
                src_ip: ip,
                decky: &event.decky,
                service: &event.service,
                secret_kind: credential.secret_kind.as_str(),
                principal_key: credential.principal.as_deref().unwrap_or(""),
                secret_sha256: sha256_hex(&credential.secret),
            };
            let outcome = credential.outcome.map(|o| (time, o));
            self.credentials
                .entry(key)
                .and_modify(|c| {
                    c.span.add(time);
                    if outcome.is_some_and(|(t, _)| c.last_outcome.is_none_or(|(last, _)| t >= last)) {
                        c.last_outcome = outcome;
                    }
                })
                .or_insert_with(|| CredentialSpan {
                    credential,
                    secret_printable: credential.secret_printable(),
                    hashcat: credential.hashcat(),
                    span: Span::new(time),
                    last_outcome: outcome,
                });
        }
    }
}

fn extend<K: Ord>(map: &mut BTreeMap<K, Span>, key: K, time: i64) {
    map.entry(key)
        .and_modify(|s| s.add(time))
        .or_insert_with(|| Span::new(time));
}

/// Microseconds since the Unix epoch (negative before it): the stored time.
pub(crate) fn micros(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// The inverse of [`micros`].
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

pub(crate) fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

pub(crate) fn outcome_from_name(name: &str) -> Option<Outcome> {
    match name {
        "success" => Some(Outcome::Success),
        "failure" => Some(Outcome::Failure),
        _ => None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn event(ip: u8, service: &str, kind: Kind, at: i64) -> Event {
        let mut e = Event::new("d1", service, kind, Ipv4Addr::new(10, 0, 0, ip).into(), 4000);
        e.time = from_micros(at);
        e
    }

    #[test]
    fn times_round_trip_through_micros() {
        for m in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            assert_eq!(micros(from_micros(m)), m);
        }
    }

    #[test]
    fn folds_spans_sessions_and_credentials() {
        let session = Uuid::now_v7();
        let mut a = event(1, "ssh", Kind::AuthAttempt, 30);
        a.session = Some(session);
        a.credential = Some(Credential::plaintext(Some("root"), b"toor"));
        let mut b = a.clone();
        b.time = from_micros(10);
        b.credential.as_mut().unwrap().outcome = Some(Outcome::Failure);
        let mut c = a.clone();
        c.time = from_micros(20);
        c.credential.as_mut().unwrap().outcome = Some(Outcome::Success);
        let mut bye = event(1, "ssh", Kind::Disconnect, 40);
        bye.session = Some(session);
        let other = event(2, "http", Kind::Request, 5);
        let events = [a, b, c, bye, other];
        let s = Summary::of(&events);

        let ip1: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
        assert_eq!(
            s.attackers[&ip1],
            Span {
                first: 10,
                last: 40,
                count: 4
            }
        );
        assert_eq!(s.attackers.len(), 2);
        assert_eq!(s.services[&(ip1, "ssh")].count, 4);
        let session = &s.sessions[&session];
        assert_eq!(
            (session.span.first, session.span.count, session.ended),
            (10, 4, Some(40))
        );
        assert_eq!(s.credentials.len(), 1);
        let cred = s.credentials.values().next().unwrap();
        assert_eq!(
            cred.span,
            Span {
                first: 10,
                last: 30,
                count: 3
            }
        );
        // The latest attempt with an outcome (at 20), not the last folded one.
        assert_eq!(cred.last_outcome, Some((20, Outcome::Success)));
    }
}
