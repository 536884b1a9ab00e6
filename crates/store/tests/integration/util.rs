//! Events and fixtures shared by the tests.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use decnet_events::file::{FileLog, FileLogConfig};
use decnet_events::{Credential, Event, Kind, Outcome, SecretKind};
use decnet_store::{CredentialFilter, Store};
use uuid::Uuid;

/// 2023-11-14T22:13:20Z: events get whole microseconds after it, as the log keeps them.
pub(crate) fn at(micros: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000 + micros)
}

pub(crate) fn event(micros: u64, ip: &str, decky: &str, service: &str, kind: Kind) -> Event {
    let ip: IpAddr = ip.parse().unwrap();
    let mut e = Event::new(decky, service, kind, ip, 40_000);
    e.time = at(micros);
    e
}

/// A credential attempt in a session.
pub(crate) fn attempt(micros: u64, ip: &str, session: Uuid, user: &str, password: &[u8]) -> Event {
    let mut e = event(micros, ip, "web01", "ssh", Kind::AuthAttempt);
    e.session = Some(session);
    e.fields.insert("username".into(), user.into());
    e.credential = Some(Credential::plaintext(Some(user), password));
    e
}

/// `n` varied events: 37 attackers, sessions of 8 events ending in a
/// disconnect, repeated credentials, an NTLMv2 response now and then.
pub(crate) fn workload(n: u64) -> Vec<Event> {
    let mut session = Uuid::now_v7();
    (0..n)
        .map(|i| {
            // Session s: 8 events from one address to one decky's service.
            let s = i / 8;
            let ip = format!("10.{}.0.{}", s % 3, s % 37 + 1);
            let decky = format!("decky-{:02}", s % 5);
            let service = ["ssh", "http", "smb", "ftp"][(s % 4) as usize];
            let kind = match i % 8 {
                0 => Kind::Connect,
                7 => Kind::Disconnect,
                3 | 4 => Kind::AuthAttempt,
                _ => Kind::Request,
            };
            if i % 8 == 0 {
                session = Uuid::now_v7();
            }
            let mut e = event(i * 10, &ip, &decky, service, kind);
            e.session = Some(session);
            e.fields.insert("n".into(), i.into());
            e.fields
                .insert("path".into(), format!("/admin/{}?q=\"x\"\n", i % 11).into());
            if kind == Kind::AuthAttempt {
                let mut c = if i % 40 == 3 {
                    Credential {
                        principal: Some("CORP\\admin".into()),
                        secret_kind: SecretKind::NtlmsspV2,
                        secret: (0..40).map(|b| (b as u64 * 7 + i) as u8).collect(),
                        challenge: Some(vec![1, 2, 3, 4, 5, 6, 7, 8]),
                        outcome: None,
                    }
                } else {
                    Credential::plaintext(
                        Some(["root", "admin"][(i % 2) as usize]),
                        format!("pw{}", i % 13).as_bytes(),
                    )
                };
                c.outcome = (i % 3 == 0).then_some(if i % 6 == 0 { Outcome::Success } else { Outcome::Failure });
                e.credential = Some(c);
            }
            e
        })
        .collect()
}

pub(crate) async fn open(dir: &Path, name: &str) -> Store {
    Store::open_sqlite(&dir.join(name)).await.unwrap()
}

pub(crate) fn file_log(dir: &Path, max_bytes: u64) -> FileLog {
    let config = FileLogConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        keep: 7,
    };
    FileLog::open(&config, Arc::default()).unwrap()
}

pub(crate) fn write(log: &mut FileLog, events: &[Event]) {
    let batch: Vec<Arc<Event>> = events.iter().cloned().map(Arc::new).collect();
    log.write_batch(&batch).unwrap();
}

/// Everything derived from the events, to compare two stores.
pub(crate) async fn aggregates(store: &Store) -> String {
    let attackers = store.attackers(u32::MAX).await.unwrap();
    let credentials = store.credentials(&CredentialFilter::default()).await.unwrap();
    let sessions = store.sessions(u32::MAX).await.unwrap();
    serde_json::to_string_pretty(&(attackers, credentials, sessions)).unwrap()
}
