//! The store and its views: what the engine logs reaches SQLite exactly once,
//! even when the engine is killed mid-flood; `decnet logs`, `attackers` and
//! `creds` show it; `logs --follow` streams it live from the bus.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use decnet_events::{Credential, Event, Kind, Outcome, SecretKind, rfc5424};
use decnet_store::{EventFilter, Store};
use serde_json::Value;

use crate::support::{Lab, can_run, stderr, stdout};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every event id in `decnet.log` and its rotations.
fn logged_ids(log_dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(log_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "decnet.log" || name.starts_with("decnet.log.") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                // A line torn by kill -9 is not an event that was written.
                if let Ok(record) = rfc5424::parse(line)
                    && let Some(id) = record.param("id")
                {
                    ids.push(id.to_string());
                }
            }
        }
    }
    ids
}

fn stored(lab: &Lab) -> (Vec<Event>, Vec<decnet_store::Attacker>) {
    runtime().block_on(async {
        let store = Store::open_sqlite_read_only(&lab.state_dir().join("decnet.db"))
            .await
            .unwrap();
        let events = store.events(&EventFilter::default()).await.unwrap();
        let attackers = store.attackers(1000).await.unwrap();
        store.close().await;
        (events, attackers)
    })
}

/// SIGKILL to the engine; `ours` is its process if this test started it (to reap it).
/// Starts the engine and waits until it serves the decky again.
fn start_engine(lab: &Lab) -> Child {
    let child = lab.spawn_engine();
    let deadline = Instant::now() + Duration::from_secs(15);
    while lab.status()["deckies"][0]["state"] != "running" {
        assert!(Instant::now() < deadline, "the engine did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn kill_9_during_heavy_ingestion_loses_and_duplicates_nothing() {
    if !can_run() {
        return;
    }
    // A service that answers nothing: each connection logs just a connect
    // and a disconnect, so the events come as fast as one client connects.
    let lab = Lab::up_ok(&["-n", "1", "--services", "http"]);
    let ip = lab.status()["deckies"][0]["ip"].as_str().unwrap().to_string();
    // Connections as fast as one client makes them, for 12 s. Refusals while
    // the engine is dead are fine.
    let flood = lab
        .command()
        .args(["lab", "exec", "--", "python3", "-c"])
        .arg(format!(
            "import socket,time\n\
             end=time.time()+12\n\
             while time.time()<end:\n\
             \x20   try:\n\
             \x20       socket.create_connection(('{ip}',80),timeout=1).close()\n\
             \x20   except OSError:\n\
             \x20       time.sleep(0.01)\n"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut flood = KillOnDrop(flood);
    let mut engine: Option<KillOnDrop> = None;
    for pause in [1500, 2500, 900] {
        std::thread::sleep(Duration::from_millis(pause));
        lab.kill_engine(engine.as_mut().map(|e| &mut e.0));
        engine = Some(KillOnDrop(start_engine(&lab)));
    }
    flood.0.wait().unwrap();

    // Once the ingester has caught up, the store holds every logged event once.
    let logged = logged_ids(&lab.log_dir());
    assert!(logged.len() > 2000, "the flood logged only {} events", logged.len());
    let distinct: BTreeSet<&String> = logged.iter().collect();
    assert_eq!(distinct.len(), logged.len(), "an event was logged twice");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (events, attackers) = loop {
        let (events, attackers) = stored(&lab);
        let ids: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
        if distinct.iter().all(|id| ids.contains(*id)) {
            break (events, attackers);
        }
        let missing = distinct.iter().filter(|id| !ids.contains(**id)).count();
        assert!(
            Instant::now() < deadline,
            "{missing} logged events are not in the store; status {:#}",
            lab.status()["store"]
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ids: BTreeSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids.len(), events.len(), "an event is in the store twice");
    // Aggregates were counted once per event, whatever was replayed.
    let mut per_ip: BTreeMap<String, u64> = BTreeMap::new();
    for e in &events {
        *per_ip.entry(e.src_ip.to_string()).or_default() += 1;
    }
    for a in &attackers {
        assert_eq!(Some(&a.events), per_ip.get(&a.ip.to_string()), "{a:?}");
    }
    eprintln!(
        "{} logged, {} stored (incl. events in decnet.json whose decnet.log line the kill cut off)",
        logged.len(),
        events.len()
    );
    lab.decnet_ok(&["lab", "down"]);
    if let Some(mut engine) = engine {
        let _ = engine.0.wait();
    }
}

#[test]
fn logs_and_attackers_show_what_an_attacker_did_and_follow_streams_it_live() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "2", "--services", "tftp"]);
    let deckies = lab.status()["deckies"].as_array().unwrap().clone();
    let (first, second) = (&deckies[0], &deckies[1]);
    let name = first["name"].as_str().unwrap();

    // Follow first: it must see what happens after it started.
    let mut follow = KillOnDrop(
        lab.command()
            .args(["logs", "--follow", "--json", "--kind", "request", "--decky", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    lab.attack(&["tftp", first["ip"].as_str().unwrap(), "-c", "get", "startup-config"]);
    lab.attack(&["tftp", second["ip"].as_str().unwrap(), "-c", "get", "other-decky"]);
    let mut lines = BufReader::new(follow.0.stdout.take().unwrap()).lines();
    let live: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(live["kind"], "request");
    assert_eq!(live["decky"], name);
    assert_eq!(live["fields"]["filename"], "startup-config");
    drop(follow);

    // The store has both, with the attacker's summary.
    let deadline = Instant::now() + Duration::from_secs(10);
    let table = loop {
        let out = lab.decnet_ok(&["logs", "--kind", "request"]);
        if out.contains("other-decky") {
            break out;
        }
        assert!(Instant::now() < deadline, "not in the store: {out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(table.contains("filename=startup-config"), "{table}");
    assert!(table.contains(&format!("{}:", lab.attacker)), "{table}");
    let json = lab.decnet_ok(&["logs", "--json", "--decky", name, "--kind", "request"]);
    let rows: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["fields"]["filename"], "startup-config");
    assert!(
        lab.decnet_ok(&["logs", "--since", "1h", "--kind", "request"])
            .contains("startup-config")
    );
    assert!(
        !lab.decnet_ok(&["logs", "--since", "2000-01-01T00:00:00Z", "--src", "192.0.2.1"])
            .contains("tftp")
    );

    let attackers: Vec<Value> = serde_json::from_str(&lab.decnet_ok(&["attackers", "--json"])).unwrap();
    let me = attackers.iter().find(|a| a["ip"] == lab.attacker.as_str()).unwrap();
    assert_eq!(me["deckies"].as_array().unwrap().len(), 2, "{me:#}");
    assert_eq!(me["services"], serde_json::json!(["tftp"]));
    assert!(lab.decnet_ok(&["attackers"]).contains(&lab.attacker));

    // Bad input is named.
    let bad = lab.decnet(&["logs", "--kind", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--kind"), "{}", stderr(&bad));
}

#[test]
fn creds_lists_deduplicated_credentials_and_hashcat_lines() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let attacker = Ipv4Addr::new(10, 9, 8, 7).into();
    let mut events = Vec::new();
    for _ in 0..3 {
        let mut e = Event::new("files-01", "ssh", Kind::AuthAttempt, attacker, 50000);
        e.credential = Some(Credential {
            outcome: Some(Outcome::Failure),
            ..Credential::plaintext(Some("root\x1b[2J"), b"toor\x1b[31m")
        });
        events.push(e);
    }
    let mut vnc = Event::new("kiosk", "vnc", Kind::AuthAttempt, attacker, 50001);
    vnc.credential = Some(Credential {
        principal: None,
        secret_kind: SecretKind::MysqlNativePassword,
        secret: vec![0x11; 20],
        challenge: Some(vec![0x22; 20]),
        outcome: None,
    });
    events.push(vnc);
    runtime().block_on(async {
        let store = Store::open_sqlite(&state.join("decnet.db")).await.unwrap();
        let events: Vec<Event> = events.into_iter().map(Event::bounded).collect();
        store.ingest(&events, None).await.unwrap();
        store.close().await;
    });
    let decnet = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_decnet"))
            .arg("--state-dir")
            .arg(&state)
            .args(["--run-dir", "/nonexistent/run", "--log-dir", "/nonexistent/log"])
            .args(args)
            .output()
            .unwrap()
    };
    let table = decnet(&["creds"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let table = stdout(&table);
    let root = table.lines().find(|l| l.contains("root")).unwrap();
    // One row for three attempts, and the escape sequence shown, not sent.
    assert!(root.contains(" 3 "), "{table}");
    assert!(!table.contains('\x1b'), "{table}");
    assert!(root.contains("root\\u{1b}[2J") && root.contains("toor?[31m"), "{table}");
    let json: Vec<Value> = serde_json::from_str(&stdout(&decnet(&["creds", "--json", "--service", "ssh"]))).unwrap();
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["attempts"], 3);
    let hashcat = stdout(&decnet(&["creds", "--hashcat"]));
    let lines: Vec<&str> = hashcat.lines().collect();
    assert_eq!(lines.len(), 1, "{hashcat}");
    assert!(lines[0].starts_with("$mysqlna$"), "{hashcat}");

    // Without a store, the error says where it looked.
    let none = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .arg("--state-dir")
        .arg(dir.path().join("empty"))
        .arg("creds")
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(stderr(&none).contains("empty/decnet.db"), "{}", stderr(&none));
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
