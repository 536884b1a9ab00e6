//! Remote syslog against a real receiver: Debian's rsyslog parses what the
//! syslog sink sends over UDP, TCP and TLS with client certificates; an
//! outage loses nothing; hostile values never break a line; and a deployed
//! fleet's `--log-target` carries a decky's events there.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use decnet_events::syslog::{SyslogSink, SyslogTarget, TlsFiles, Transport};
use decnet_events::{Credential, Event, Kind, Pipeline, SinkCounters};
use serde_json::{Value, json};

use crate::support::rsyslog::{self, Pki, Rsyslog, on_input};
use crate::support::{Lab, can_run, stderr};

fn target(transport: Transport, port: u16, pki: Option<&Pki>) -> SyslogTarget {
    SyslogTarget {
        transport,
        host: "127.0.0.1".into(),
        port,
        tls: pki.map(|p| TlsFiles {
            ca: p.ca.clone(),
            cert: Some(p.client_cert.clone()),
            key: Some(p.client_key.clone()),
        }),
    }
}

fn add_sink(pipeline: &Pipeline, name: &str, target: SyslogTarget, spool: &Path) -> Arc<SinkCounters> {
    let counters: Arc<SinkCounters> = Arc::default();
    let sink = SyslogSink::new(target, spool, 64 * 1024 * 1024, Arc::clone(&counters)).unwrap();
    pipeline.add_sink_with_counters(name, sink, 100_000, counters)
}

fn event(seq: u64) -> Event {
    let mut e = Event::new(
        "web-01",
        "ssh",
        Kind::Command,
        Ipv4Addr::new(10, 0, 0, 66).into(),
        40000,
    );
    e.fields.insert("seq".into(), json!(seq.to_string()));
    e
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The SD parameters of a received message.
fn sd(message: &Value) -> &Value {
    &message["sd"]["relay@55555"]
}

#[test]
fn rsyslog_parses_every_field_over_udp_tcp_and_mutual_tls() {
    if !rsyslog::available() {
        return;
    }
    let receiver = Rsyslog::start();
    let spool = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _guard = rt.enter();
    let pipeline = Pipeline::new();
    let pki = receiver.pki();
    add_sink(
        &pipeline,
        "udp",
        target(Transport::Udp, receiver.udp, None),
        spool.path(),
    );
    add_sink(
        &pipeline,
        "tcp",
        target(Transport::Tcp, receiver.tcp, None),
        spool.path(),
    );
    add_sink(
        &pipeline,
        "tls",
        target(Transport::Tls, receiver.tls, Some(&pki)),
        spool.path(),
    );

    let hostile = "rm -rf / ; echo \"pwned\" ] \\ done\nsecond line\r\tand a NUL \u{0}, ünïcødé 🦀";
    let mut login = Event::new(
        "web-01",
        "ssh",
        Kind::AuthAttempt,
        Ipv4Addr::new(10, 0, 0, 66).into(),
        40001,
    );
    login.session = Some(uuid::Uuid::now_v7());
    login.fields.insert("command".into(), json!(hostile));
    login.fields.insert("argv".into(), json!(["ls", "-la"]));
    login.fields.insert("huge".into(), json!("A".repeat(1024 * 1024)));
    login.credential = Some(Credential::plaintext(Some("root\"]"), b"hunter2\xff\x00"));
    login.message = Some("login ] \"attempt\"\nnext".into());
    let emitter = pipeline.emitter();
    emitter.emit(login.clone());
    for seq in 0..20 {
        emitter.emit(event(seq));
    }

    let got = receiver.wait_until(Duration::from_secs(20), |m| m.len() >= 63);
    // Nothing more came: no line broke into two.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.received().len(), 63, "{:#?}", receiver.received());
    for input in ["imudp", "imptcp", "imtcp"] {
        let mine = on_input(&got, input);
        assert_eq!(mine.len(), 21, "{input}: {mine:#?}");
        let first = mine[0];
        assert_eq!(first["host"], "web-01", "{input}");
        assert_eq!(first["app"], "ssh");
        assert_eq!(first["msgid"], "auth_attempt");
        assert_eq!(first["pri"], 16 * 8 + u64::from(login.severity.code()));
        let p = sd(first);
        assert_eq!(p["id"], login.id.to_string());
        assert_eq!(p["src_ip"], "10.0.0.66");
        assert_eq!(p["src_port"], "40001");
        assert_eq!(p["session"], login.session.unwrap().to_string());
        // `"`, `]` and `\` come back exactly; control characters as visible escapes.
        assert_eq!(
            p["command"],
            "rm -rf / ; echo \"pwned\" ] \\ done\\nsecond line\\r\\tand a NUL \\x00, ünïcødé 🦀"
        );
        assert_eq!(p["argv"], r#"["ls","-la"]"#);
        // A megabyte is cut to the field bound, and the cut is recorded.
        let huge = p["huge"].as_str().unwrap();
        assert!(huge.len() <= decnet_events::limits::FIELD_BYTES + 32, "{}", huge.len());
        assert!(
            huge.starts_with("AAAA") && huge.contains("bytes]"),
            "{}",
            &huge[huge.len() - 40..]
        );
        assert!(p["truncated"].as_str().unwrap().contains("huge"), "{p:#}");
        assert_eq!(p["principal"], "root\"]");
        assert_eq!(p["secret_kind"], "plaintext");
        assert_eq!(p["secret_b64"], "aHVudGVyMv8A");
        assert_eq!(first["msg"].as_str().unwrap().trim(), "login ] \"attempt\"\\nnext");
        // The rest in order.
        let seqs: Vec<&str> = mine[1..].iter().map(|m| sd(m)["seq"].as_str().unwrap()).collect();
        let want: Vec<String> = (0..20).map(|n| n.to_string()).collect();
        assert_eq!(seqs, want, "{input}");
    }
    let stats = pipeline.stats();
    assert_eq!(stats.lost(), 0, "{stats:?}");
    rt.block_on(pipeline.shutdown());
}

#[test]
fn tls_without_a_certificate_rsyslog_trusts_delivers_nothing_and_keeps_everything() {
    if !rsyslog::available() {
        return;
    }
    let receiver = Rsyslog::start();
    let spool = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _guard = rt.enter();
    let pipeline = Pipeline::new();
    let stranger = receiver.stranger_pki();
    let counters = add_sink(
        &pipeline,
        "tls",
        target(Transport::Tls, receiver.tls, Some(&stranger)),
        spool.path(),
    );
    for seq in 0..10 {
        pipeline.emitter().emit(event(seq));
    }
    // Every event waits in the spool for a receiver that accepts us.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.spooled.load(Ordering::Relaxed) < 10 {
        assert!(Instant::now() < deadline, "not spooled: {counters:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(receiver.received().is_empty(), "{:#?}", receiver.received());
    assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
    rt.block_on(pipeline.shutdown());
}

#[test]
fn a_receiver_down_for_30_seconds_gets_every_event_in_order() {
    if !rsyslog::available() {
        return;
    }
    let mut receiver = Rsyslog::start();
    let spool = tempfile::tempdir().unwrap();
    let rt = runtime();
    let _guard = rt.enter();
    let pipeline = Pipeline::new();
    let pki = receiver.pki();
    let tcp = add_sink(
        &pipeline,
        "tcp",
        target(Transport::Tcp, receiver.tcp, None),
        spool.path(),
    );
    let tls = add_sink(
        &pipeline,
        "tls",
        target(Transport::Tls, receiver.tls, Some(&pki)),
        spool.path(),
    );
    let emitter = pipeline.emitter();

    // 50 events a second throughout: 2 s up, 30 s down, then up again.
    let started = Instant::now();
    let mut seq = 0;
    let mut emit_until = |until: Duration| {
        while started.elapsed() < until {
            emitter.emit(event(seq));
            seq += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    emit_until(Duration::from_secs(2));
    receiver.stop();
    let before_outage = receiver.received().len();
    emit_until(Duration::from_secs(32));
    assert!(
        tcp.spooled.load(Ordering::Relaxed) > 1000 && tls.spooled.load(Ordering::Relaxed) > 1000,
        "the outage did not spool: tcp {tcp:?}, tls {tls:?}"
    );
    receiver.restart();
    emit_until(Duration::from_secs(34));
    let total = seq as usize;
    assert!(total > 1500, "{total}");

    let got = receiver.wait_until(Duration::from_secs(30), |m| {
        on_input(m, "imptcp").len() >= total && on_input(m, "imtcp").len() >= total
    });
    assert!(
        before_outage > 0,
        "nothing arrived before the outage:\n{}",
        receiver.output()
    );
    for input in ["imptcp", "imtcp"] {
        let seqs: Vec<u64> = on_input(&got, input)
            .iter()
            .map(|m| sd(m)["seq"].as_str().unwrap().parse().unwrap())
            .collect();
        let want: Vec<u64> = (0..total as u64).collect();
        assert!(
            seqs == want,
            "{input}: {} received, first wrong at {:?}",
            seqs.len(),
            seqs.iter().zip(&want).position(|(a, b)| a != b)
        );
    }
    assert_eq!(pipeline.stats().lost(), 0, "{:?}", pipeline.stats());
    assert_eq!(tcp.spooled.load(Ordering::Relaxed), 0);
    rt.block_on(pipeline.shutdown());
}

#[test]
fn a_fleet_log_target_receives_its_deckies_events() {
    if !can_run() || !rsyslog::available() {
        return;
    }
    let receiver = Rsyslog::start();
    let pki = receiver.pki();
    let target = format!("tls://127.0.0.1:{}", receiver.tls);
    let lab = Lab::up_ok(&[
        "-n",
        "1",
        "--services",
        "tftp",
        "--log-target",
        &target,
        "--log-tls-ca",
        pki.ca.to_str().unwrap(),
        "--log-tls-cert",
        pki.client_cert.to_str().unwrap(),
        "--log-tls-key",
        pki.client_key.to_str().unwrap(),
    ]);
    assert!(!stderr(&lab.up).contains("does not answer"), "{}", stderr(&lab.up));
    let ip = lab.status()["deckies"][0]["ip"].as_str().unwrap().to_string();
    let decky = lab.status()["deckies"][0]["name"].as_str().unwrap().to_string();
    lab.attack(&["tftp", &ip, "-c", "get", "running-config"]);
    let got = receiver.wait_until(Duration::from_secs(15), |m| {
        m.iter().any(|m| m["msgid"] == "request" && m["host"] == decky.as_str())
    });
    let request = got.iter().find(|m| m["msgid"] == "request").unwrap();
    assert_eq!(request["app"], "tftp");
    assert_eq!(sd(request)["src_ip"], lab.attacker.as_str());
    assert_eq!(sd(request)["filename"], "running-config", "{request:#}");
    let status = lab.status();
    let syslog = status["events"]["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "syslog")
        .cloned()
        .unwrap_or_else(|| panic!("no syslog sink: {:#}", status["events"]));
    assert!(syslog["delivered"].as_u64().unwrap() >= 1, "{syslog:#}");

    // A plaintext target elsewhere is planned with a warning, and refused at deploy.
    let planned = lab.decnet(&[
        "deploy",
        "-n",
        "1",
        "--services",
        "tftp",
        "--log-target",
        "192.0.2.1:514",
        "--dry-run",
    ]);
    assert!(planned.status.success(), "{}", stderr(&planned));
    assert!(
        stderr(&planned).contains("a deploy will refuse it"),
        "{}",
        stderr(&planned)
    );
    let refused = lab.decnet(&[
        "lab",
        "up",
        "-n",
        "1",
        "--services",
        "tftp",
        "--log-target",
        "192.0.2.1:514",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--insecure-syslog"), "{}", stderr(&refused));
    // The fleet and its syslog target are as they were.
    let still = lab.status();
    assert_eq!(still["deckies"][0]["name"], decky.as_str());
    assert!(
        still["events"]["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "syslog")
    );
}
