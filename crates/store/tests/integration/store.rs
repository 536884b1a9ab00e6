//! The store itself: round trips, idempotence, aggregates, queries, opening.

use std::net::IpAddr;

use decnet_events::{Credential, Event, Kind, Outcome, SecretKind, Severity};
use decnet_store::{CredentialFilter, EventFilter, FleetDecky, Store, StoreError};
use proptest::prelude::*;
use uuid::Uuid;

use crate::util::{aggregates, at, attempt, event, open, workload};

fn all() -> EventFilter {
    EventFilter::default()
}

#[tokio::test]
async fn events_round_trip_with_every_kind_of_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;

    let mut rich = event(1, "2001:db8::dead:beef", "décky-ü", "http", Kind::Request);
    rich.severity = Severity::Warning;
    rich.session = Some(Uuid::now_v7());
    rich.message = Some("line one\nline \"two\"\0 with NUL, \\ and \u{202e}RTL 🦀".into());
    rich.fields.insert(
        "headers".into(),
        serde_json::json!({"Host": "x", "X-Evil": "a\r\nb", "n": [1, 2.5, -3, null, true]}),
    );
    rich.fields
        .insert("body".into(), "\0\u{1}\u{7f}'\"`; DROP TABLE events; --".into());
    rich.fields.insert("big".into(), serde_json::json!(u64::MAX));
    rich.fields.insert("neg".into(), serde_json::json!(i64::MIN));
    rich.fields.insert("float".into(), serde_json::json!(0.1));
    rich.fields.insert("empty".into(), serde_json::json!({}));
    rich.credential = Some(Credential {
        principal: Some("DOMAIN\\user\0".into()),
        secret_kind: SecretKind::NtlmsspV2,
        secret: (0..=255).collect(),
        challenge: Some(vec![0, 0xff, 0x0a, 0x0d, 0, 0, 0, 1]),
        outcome: Some(Outcome::Failure),
    });

    let mut huge = event(2, "10.0.0.1", "d", "http", Kind::Request);
    huge.fields.insert("body".into(), "x".repeat(1 << 20).into());
    huge.message = Some("é".repeat(1 << 19));
    huge.credential = Some(Credential::plaintext(None, &vec![0u8; 1 << 20]));
    let huge = huge.bounded();

    let bare = event(3, "192.0.2.7", "d", "tftp", Kind::Connect);
    let events = vec![rich, huge, bare];

    assert_eq!(store.ingest(&events, None).await.unwrap(), 3);
    assert_eq!(store.events(&all()).await.unwrap(), events);
    assert_eq!(store.count_events().await.unwrap(), 3);
    assert_eq!(
        store.event_ids().await.unwrap(),
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Arbitrary text and bytes come back as they went in.
    #[test]
    fn arbitrary_values_survive(
        decky in ".{1,40}",
        message in proptest::option::of(".{0,200}"),
        field in ".{0,200}",
        principal in proptest::option::of(".{0,40}"),
        secret in proptest::collection::vec(any::<u8>(), 0..100),
        port in any::<u16>(),
        micros in any::<u32>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut e = event(u64::from(micros), "::1", &decky, "svc", Kind::Command);
        e.src_port = port;
        e.message = message;
        e.fields.insert(field.clone(), field.into());
        e.credential = Some(Credential::plaintext(principal.as_deref(), &secret));
        let back = runtime.block_on(async {
            let store = open(dir.path(), "p.db").await;
            store.ingest(std::slice::from_ref(&e), None).await.unwrap();
            store.events(&all()).await.unwrap()
        });
        prop_assert_eq!(back, vec![e]);
    }
}

#[tokio::test]
async fn a_replayed_batch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let events = workload(500);
    assert_eq!(store.ingest(&events, None).await.unwrap(), 500);
    let before = aggregates(&store).await;
    assert_eq!(store.ingest(&events, None).await.unwrap(), 0);
    assert_eq!(store.ingest(&events[100..200], None).await.unwrap(), 0);
    assert_eq!(aggregates(&store).await, before);
    assert_eq!(store.count_events().await.unwrap(), 500);
}

/// Overlapping replays, an id twice in one batch, odd batch sizes: the result
/// is what one clean ingest of each event once gives.
#[tokio::test]
async fn aggregates_do_not_depend_on_batching() {
    let dir = tempfile::tempdir().unwrap();
    let events = workload(1200);
    let clean = open(dir.path(), "clean.db").await;
    assert_eq!(clean.ingest(&events, None).await.unwrap(), 1200);

    let messy = open(dir.path(), "messy.db").await;
    let mut inserted = 0;
    let mut start = 0;
    for (i, size) in [1usize, 2, 3, 257, 5, 300, 13, 619].into_iter().enumerate() {
        let end = (start + size).min(events.len());
        // Each batch repeats the tail of the one before and one of its own events.
        let mut batch = events[start.saturating_sub(i * 3)..end].to_vec();
        batch.push(events[start].clone());
        inserted += messy.ingest(&batch, None).await.unwrap();
        start = end;
    }
    assert_eq!(start, events.len());
    assert_eq!(inserted, 1200);
    assert_eq!(aggregates(&messy).await, aggregates(&clean).await);
    assert_eq!(messy.event_ids().await.unwrap(), clean.event_ids().await.unwrap());
}

#[tokio::test]
async fn attackers_credentials_and_sessions_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let (s1, s2) = (Uuid::now_v7(), Uuid::now_v7());
    let ip = "203.0.113.5";

    let mut connect = event(100, ip, "web01", "ssh", Kind::Connect);
    connect.session = Some(s1);
    let mut first = attempt(200, ip, s1, "root", b"toor");
    first.credential.as_mut().unwrap().outcome = Some(Outcome::Failure);
    let mut bye = event(400, ip, "web01", "ssh", Kind::Disconnect);
    bye.session = Some(s1);
    let again = attempt(300, ip, s1, "root", b"toor");
    let mut other = attempt(500, ip, s2, "root", b"123456");
    other.decky = "db01".into();
    other.service = "mysql".into();
    let mut success = attempt(600, ip, s2, "root", b"toor");
    success.decky = "db01".into();
    success.service = "mysql".into();
    success.credential.as_mut().unwrap().outcome = Some(Outcome::Success);
    let stranger = event(50, "198.51.100.1", "web01", "http", Kind::Request);

    store.ingest(&[connect, first, bye], None).await.unwrap();
    store.ingest(&[again, other, success, stranger], None).await.unwrap();

    let attackers = store.attackers(10).await.unwrap();
    assert_eq!(attackers.len(), 2);
    let a = &attackers[0];
    assert_eq!(a.ip, ip.parse::<IpAddr>().unwrap());
    assert_eq!((a.first_seen, a.last_seen), (at(100), at(600)));
    assert_eq!((a.events, a.sessions, a.credentials), (6, 2, 3));
    assert_eq!(a.services, ["ssh", "mysql"]);
    assert_eq!(a.deckies, ["web01", "db01"]);
    assert_eq!(attackers[1].sessions, 0);

    let creds = store.credentials(&CredentialFilter::default()).await.unwrap();
    assert_eq!(creds.len(), 3);
    // Most recently tried first.
    assert_eq!(creds[0].service, "mysql");
    assert_eq!(creds[0].credential.secret, b"toor");
    assert_eq!(creds[0].credential.outcome, Some(Outcome::Success));
    let web = &creds[2];
    assert_eq!((web.decky.as_str(), web.attempts), ("web01", 2));
    assert_eq!((web.first_seen, web.last_seen), (at(200), at(300)));
    assert_eq!(web.credential.outcome, Some(Outcome::Failure));
    assert_eq!(web.credential.principal.as_deref(), Some("root"));
    assert_eq!(web.secret_printable, "toor");
    assert_eq!(web.secret_sha256, sha256_hex(b"toor"));
    let filtered = CredentialFilter {
        service: Some("mysql".into()),
        ..Default::default()
    };
    assert_eq!(store.credentials(&filtered).await.unwrap().len(), 2);

    let sessions = store.sessions(10).await.unwrap();
    assert_eq!(sessions.len(), 2);
    let (late, early) = (&sessions[0], &sessions[1]);
    assert_eq!(
        (early.id, early.started, early.ended, early.events),
        (s1, at(100), Some(at(400)), 4)
    );
    assert_eq!((late.id, late.started, late.ended, late.events), (s2, at(500), None, 2));
    assert_eq!((late.decky.as_str(), late.service.as_str()), ("db01", "mysql"));
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn hashcat_lines_are_kept_for_crackable_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let mut e = event(1, "10.0.0.1", "db", "mysql", Kind::AuthAttempt);
    let credential = Credential {
        principal: Some("root".into()),
        secret_kind: SecretKind::MysqlNativePassword,
        secret: vec![0x43; 20],
        challenge: Some(vec![0x1c; 20]),
        outcome: None,
    };
    e.credential = Some(credential.clone());
    store.ingest(&[e], None).await.unwrap();
    let creds = store.credentials(&CredentialFilter::default()).await.unwrap();
    assert_eq!(creds[0].hashcat, credential.hashcat());
    assert!(creds[0].hashcat.as_deref().unwrap().starts_with("$mysqlna$"));
    let json = serde_json::to_value(&creds[0]).unwrap();
    assert_eq!(json["secret_kind"], "mysql_native_password");
    assert_eq!(json["first_seen"], "2023-11-14T22:13:20.000001Z");
}

#[tokio::test]
async fn events_filter_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let events = workload(100);
    store.ingest(&events, None).await.unwrap();
    let ids = |v: Vec<Event>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let expect = |f: &dyn Fn(&Event) -> bool| events.iter().filter(|e| f(e)).map(|e| e.id).collect::<Vec<_>>();

    let newest = store
        .events(&EventFilter {
            limit: Some(10),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(ids(newest), expect(&|_| true)[90..]);
    let after = EventFilter {
        after: Some(events[49].id),
        limit: Some(5),
        ..all()
    };
    assert_eq!(ids(store.events(&after).await.unwrap()), expect(&|_| true)[50..55]);
    let decky = EventFilter {
        decky: Some("decky-01".into()),
        ..all()
    };
    assert_eq!(
        ids(store.events(&decky).await.unwrap()),
        expect(&|e| e.decky == "decky-01")
    );
    let kind = EventFilter {
        kind: Some(Kind::Disconnect),
        service: Some("ssh".into()),
        ..all()
    };
    let got = ids(store.events(&kind).await.unwrap());
    assert!(!got.is_empty());
    assert_eq!(got, expect(&|e| e.kind == Kind::Disconnect && e.service == "ssh"));
    let ip: IpAddr = "10.1.0.2".parse().unwrap();
    let by_ip = EventFilter {
        src_ip: Some(ip),
        ..all()
    };
    assert_eq!(ids(store.events(&by_ip).await.unwrap()), expect(&|e| e.src_ip == ip));
    let since = EventFilter {
        since: Some(at(955)),
        ..all()
    };
    assert_eq!(ids(store.events(&since).await.unwrap()), expect(&|e| e.time >= at(955)));

    let unknown = EventFilter {
        after: Some(Uuid::now_v7()),
        ..all()
    };
    assert!(matches!(
        store.events(&unknown).await,
        Err(StoreError::UnknownEvent { .. })
    ));
}

/// Pages through one attacker's or decky's events, newest first and then
/// forward with `after`, and checks them against `expect`.
async fn check_ranges(store: &Store, events: &[Event]) {
    let ids = |v: Vec<Event>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let ip: IpAddr = "10.1.0.2".parse().unwrap();
    let filters = [
        EventFilter {
            src_ip: Some(ip),
            ..all()
        },
        EventFilter {
            decky: Some("decky-03".into()),
            ..all()
        },
        EventFilter {
            decky: Some("decky-03".into()),
            src_ip: Some("10.0.0.4".parse().unwrap()),
            ..all()
        },
    ];
    for filter in filters {
        let expect: Vec<Uuid> = events
            .iter()
            .filter(|e| {
                filter.src_ip.is_none_or(|ip| e.src_ip == ip) && filter.decky.as_ref().is_none_or(|d| &e.decky == d)
            })
            .map(|e| e.id)
            .collect();
        assert!(expect.len() > 3, "the workload gives {filter:?} several events");
        assert_eq!(ids(store.events(&filter).await.unwrap()), expect, "{filter:?}");
        let newest = EventFilter {
            limit: Some(3),
            ..filter.clone()
        };
        assert_eq!(ids(store.events(&newest).await.unwrap()), expect[expect.len() - 3..]);
        // Forward from the first, two at a time, as a follower pages.
        let mut seen = vec![expect[0]];
        loop {
            let page = EventFilter {
                after: seen.last().copied(),
                limit: Some(2),
                ..filter.clone()
            };
            let got = ids(store.events(&page).await.unwrap());
            if got.is_empty() {
                break;
            }
            seen.extend(got);
        }
        assert_eq!(seen, expect, "paging {filter:?}");
    }
}

#[tokio::test]
async fn events_of_one_attacker_or_decky_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let events = workload(2_000);
    // Uneven batches, one replayed whole and one in part: ranges must
    // neither miss nor repeat events.
    for batch in events[..1000].chunks(37) {
        store.ingest(batch, None).await.unwrap();
    }
    store.ingest(&events[37..74], None).await.unwrap();
    store.ingest(&events[980..1040], None).await.unwrap();
    for batch in events[1040..].chunks(37) {
        store.ingest(batch, None).await.unwrap();
    }
    check_ranges(&store, &events).await;
}

#[tokio::test]
async fn a_database_from_before_event_ranges_is_upgraded() {
    use sqlx::{Connection, Executor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decnet.db");
    let events = workload(20_000);
    let store = Store::open_sqlite(&path).await.unwrap();
    store.ingest(&events, None).await.unwrap();
    store.close().await;
    // Back to schema version 1: its two indexes, no ranges.
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    db.execute(
        "DROP TABLE event_ranges;
         DELETE FROM _sqlx_migrations WHERE version = 2;
         CREATE INDEX events_decky ON events (decky);
         CREATE INDEX events_src_ip ON events (src_ip);",
    )
    .await
    .unwrap();
    db.close().await.unwrap();

    let store = Store::open_sqlite(&path).await.unwrap();
    check_ranges(&store, &events).await;
}

#[tokio::test]
async fn the_fleet_is_replaced_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), "decnet.db").await;
    let decky = |name: &str, ip: &str| FleetDecky {
        name: name.into(),
        ip: ip.parse().unwrap(),
        mac: "02:00:00:00:00:01".into(),
        hostname: format!("{name}.corp"),
        distro: "debian12".into(),
        os_family: "linux".into(),
        services: vec!["ssh".into(), "http".into()],
    };
    let (a, b) = (decky("a", "10.0.0.10"), decky("b", "10.0.0.11"));
    store.sync_fleet(&[b.clone(), a.clone()]).await.unwrap();
    assert_eq!(store.fleet().await.unwrap(), [a.clone(), b.clone()]);
    let b2 = FleetDecky {
        services: vec!["smb".into()],
        ..b
    };
    store.sync_fleet(std::slice::from_ref(&b2)).await.unwrap();
    assert_eq!(store.fleet().await.unwrap(), [b2]);
    store.sync_fleet(&[]).await.unwrap();
    assert!(store.fleet().await.unwrap().is_empty());
}

#[tokio::test]
async fn opening_creates_migrates_and_reads_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/sub/decnet.db");

    let missing = Store::open_sqlite_read_only(&path).await.unwrap_err();
    assert!(matches!(missing, StoreError::Missing { .. }));
    assert!(missing.to_string().contains("has the engine run?"), "{missing}");

    let store = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    store.ingest(&workload(10), None).await.unwrap();
    // Reopening runs no migration twice.
    let again = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(again.count_events().await.unwrap(), 10);

    let reader = Store::open_sqlite_read_only(&path).await.unwrap();
    assert_eq!(reader.count_events().await.unwrap(), 10);
    store.ingest(&workload(5), None).await.unwrap();
    assert_eq!(reader.count_events().await.unwrap(), 15);
    let refused = reader.ingest(&workload(1), None).await.unwrap_err();
    assert!(refused.to_string().contains("ingesting events"), "{refused}");
    assert!(refused.to_string().contains("decnet.db"), "{refused}");

    // Also once the writer is gone and WAL files are cleaned up.
    reader.close().await;
    store.close().await;
    again.close().await;
    let reader = Store::open_sqlite_read_only(&path).await.unwrap();
    assert_eq!(reader.count_events().await.unwrap(), 15);
    assert_eq!(reader.attackers(100).await.unwrap().len(), 2);

    let err = Store::open("postgresql://decnet@db/decnet").await.unwrap_err();
    assert!(err.to_string().contains("not built yet"), "{err}");
}
