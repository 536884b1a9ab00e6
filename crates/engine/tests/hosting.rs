//! Session handling, in-process, inside a throwaway network namespace (so
//! nothing listens on the host): panic isolation, the per-source limit,
//! idle/total/byte bounds, UDP flows, the fallback and unsupported ports.
//! Needs root; under `CI=true` a missing privilege fails instead of skipping.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use decnet_core::catalogue::Port;
use decnet_core::fleet::{DeckySpec, MacAddr, ServiceSpec};
use decnet_core::seed::FleetSeed;
use decnet_emu_sdk::{
    BoxFuture, Captures, Close, Conn, DeckyNet, Emulator, Limits, ServeError, Service, ServiceInfo, SessionCx, UdpFlow,
};
use decnet_engine::Registry;
use decnet_engine::hosting::{Host, Lan, Services};
use decnet_engine::status::PortState;
use decnet_events::{Emitter, Event, Kind};
use decnet_net::{Netns, NetnsExecutor, Rtnl};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The sandbox serves on loopback; its services are told of a /8 LAN.
const LAN: Lan = Lan {
    prefix_len: 8,
    gateway: Ipv4Addr::new(127, 0, 0, 1),
};

/// A namespace with only `lo`, removed on drop.
struct Sandbox {
    name: String,
    net: DeckyNet,
}

impl Sandbox {
    fn new(tag: &str) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var("CI").is_err(), "CI runs as root; these tests need it");
            eprintln!("skipped: needs root");
            return None;
        }
        let name = format!("dth{}-{tag}", std::process::id());
        let _ = Netns::delete(&name);
        let ns = Netns::create(&name).unwrap();
        let guard = ns.enter().unwrap();
        let mut rtnl = Rtnl::new().unwrap();
        let lo = rtnl.link("lo").unwrap().unwrap();
        rtnl.set_up(lo.index).unwrap();
        guard.leave().unwrap();
        let net = DeckyNet::new(Arc::new(ns), NetnsExecutor::start(2), Ipv4Addr::LOCALHOST);
        Some(Self { name, net })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Netns::delete(&self.name);
    }
}

/// Echoes lines; `panic` panics; `wait` never answers; `linger` never
/// answers, and takes 300 ms to clean up when dropped (then counts itself in
/// [`LINGERED`]). UDP: echoes datagrams.
struct Echo;

static LINGERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A session's state whose cleanup takes a while.
struct Lingering;

impl Drop for Lingering {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        LINGERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

struct EchoService;

impl Emulator for Echo {
    fn slug(&self) -> &'static str {
        "echo"
    }

    fn serves(&self, _port: &Port) -> bool {
        true
    }

    fn prepare(&self, _service: &ServiceInfo) -> Result<Arc<dyn Service>, ServeError> {
        Ok(Arc::new(EchoService))
    }
}

impl Service for EchoService {
    fn serve_tcp(self: Arc<Self>, conn: Conn, _cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        Box::pin(async move {
            let mut lines = BufReader::new(conn);
            loop {
                let mut line = String::new();
                match lines.read_line(&mut line).await {
                    Ok(0) => return Ok(Close::PeerEof),
                    Ok(_) if line.trim() == "panic" => panic!("asked to panic"),
                    Ok(_) if line.trim() == "wait" => std::future::pending::<()>().await,
                    Ok(_) if line.trim() == "linger" => {
                        let _state = Lingering;
                        std::future::pending::<()>().await
                    }
                    Ok(_) => lines.get_mut().write_all(line.as_bytes()).await?,
                    Err(e) => return Close::from_io(&e).ok_or(ServeError::Io(e)),
                }
            }
        })
    }

    fn serve_udp(self: Arc<Self>, mut flow: UdpFlow, _cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        Box::pin(async move {
            while let Some(d) = flow.recv().await {
                flow.send(&d).await?;
            }
            Ok(Close::Timeout)
        })
    }
}

fn free_port() -> u16 {
    // Any port works inside the sandbox; vary it so reruns never meet TIME_WAIT.
    20000 + (std::process::id() % 20000) as u16
}

fn spec(services: &[(&str, Vec<Port>)]) -> DeckySpec {
    DeckySpec {
        name: "box".into(),
        ip: Ipv4Addr::LOCALHOST,
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        hostname: "box".into(),
        distro: "debian".into(),
        userland: Default::default(),
        os_family: "linux".into(),
        personality: "linux".into(),
        shaping: Default::default(),
        sysctls: BTreeMap::new(),
        archetype: None,
        services: services
            .iter()
            .map(|(slug, ports)| ServiceSpec {
                slug: slug.to_string(),
                ports: ports.clone(),
                persona: Default::default(),
                custom: None,
            })
            .collect(),
        mutate_interval: None,
        seed: FleetSeed::placeholder().decky("box"),
    }
}

async fn start(sandbox: &Sandbox, services: &[(&str, Vec<Port>)], limits: Limits) -> (Services, mpsc::Receiver<Event>) {
    let mut registry = Registry::new();
    registry.register(Arc::new(Echo));
    let (emitter, events) = Emitter::channel(1024);
    let host = Host {
        registry: Arc::new(registry),
        emitter,
        limits,
        captures: Captures::disabled(),
        state_dir: None,
    };
    (
        Services::start(&spec(services), LAN, sandbox.net.clone(), &host).await,
        events,
    )
}

async fn connect(sandbox: &Sandbox, port: u16) -> tokio::net::TcpStream {
    sandbox
        .net
        .tcp_connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .unwrap()
}

async fn round_trip(stream: &mut tokio::net::TcpStream, line: &str) -> String {
    stream.write_all(line.as_bytes()).await.unwrap();
    let mut buf = vec![0; line.len()];
    stream.read_exact(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}

async fn next_kind(events: &mut mpsc::Receiver<Event>, kind: Kind) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if e.kind == kind {
            return e;
        }
    }
}

#[tokio::test]
async fn a_panicking_session_closes_alone() {
    let Some(sandbox) = Sandbox::new("panic") else { return };
    let port = free_port();
    let (mut services, mut events) = start(&sandbox, &[("echo", vec![Port::tcp(port)])], Limits::default()).await;
    let mut calm = connect(&sandbox, port).await;
    assert_eq!(round_trip(&mut calm, "hello\n").await, "hello\n");
    let mut wild = connect(&sandbox, port).await;
    wild.write_all(b"panic\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = wild.read_to_end(&mut rest).await;
    let error = next_kind(&mut events, Kind::Error).await;
    assert!(error.fields["msg"].as_str().unwrap().contains("asked to panic"));
    let disconnect = next_kind(&mut events, Kind::Disconnect).await;
    assert_eq!(disconnect.fields["reason"], "panic");
    // The other session, and the listener, carry on.
    assert_eq!(round_trip(&mut calm, "still here\n").await, "still here\n");
    let mut again = connect(&sandbox, port).await;
    assert_eq!(round_trip(&mut again, "new\n").await, "new\n");
    assert_eq!(services.status()[0].panics, 1);
    services.stop().await;
}

#[tokio::test]
async fn the_per_source_limit_refuses_extra_sessions() {
    let Some(sandbox) = Sandbox::new("limit") else { return };
    let port = free_port() + 1;
    let limits = Limits {
        per_source: 2,
        ..Limits::default()
    };
    let (mut services, _events) = start(&sandbox, &[("echo", vec![Port::tcp(port)])], limits).await;
    let mut first = connect(&sandbox, port).await;
    let mut second = connect(&sandbox, port).await;
    assert_eq!(round_trip(&mut first, "a\n").await, "a\n");
    assert_eq!(round_trip(&mut second, "b\n").await, "b\n");
    let mut third = connect(&sandbox, port).await;
    let mut buf = [0; 1];
    let refused = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(refused, Ok(0) | Err(_)),
        "the third session was served: {refused:?}"
    );
    assert_eq!(services.status()[0].rejected, 1);
    // A freed place is usable again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = connect(&sandbox, port).await;
    assert_eq!(round_trip(&mut fourth, "d\n").await, "d\n");
    services.stop().await;
}

#[tokio::test]
async fn idle_total_and_byte_bounds_end_sessions() {
    let Some(sandbox) = Sandbox::new("bounds") else { return };
    let port = free_port() + 2;
    let limits = Limits {
        idle_timeout: Duration::from_millis(200),
        total_timeout: Duration::from_millis(700),
        max_bytes_read: 64,
        ..Limits::default()
    };
    let (mut services, mut events) = start(&sandbox, &[("echo", vec![Port::tcp(port)])], limits).await;

    let _idle = connect(&sandbox, port).await;
    assert_eq!(
        next_kind(&mut events, Kind::Disconnect).await.fields["reason"],
        "timeout"
    );

    let mut chatty = connect(&sandbox, port).await;
    chatty.write_all(&[b'x'; 200]).await.unwrap();
    assert_eq!(next_kind(&mut events, Kind::Disconnect).await.fields["reason"], "limit");

    // Slowloris: one byte every 100 ms (never a whole line, never idle for
    // the 200 ms timeout, far under the byte budget): the total bound ends it.
    let mut slowloris = connect(&sandbox, port).await;
    let drip = tokio::spawn(async move {
        let mut sent = 0;
        while slowloris.write_all(b"z").await.is_ok() && sent < 30 {
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });
    let disconnect = next_kind(&mut events, Kind::Disconnect).await;
    assert_eq!(disconnect.fields["reason"], "timeout");
    let lasted = disconnect.fields["duration_ms"].as_u64().unwrap();
    assert!((650..2000).contains(&lasted), "{lasted} ms");
    let bytes_in = disconnect.fields["bytes_in"].as_u64().unwrap();
    assert!(
        bytes_in >= 5,
        "the slowloris must have been read from: {bytes_in} bytes"
    );
    let sent = drip.await.unwrap();
    assert!(sent < 30, "the connection was not closed");
    services.stop().await;
}

#[tokio::test]
async fn udp_peers_get_their_own_flows() {
    let Some(sandbox) = Sandbox::new("udp") else { return };
    let port = free_port() + 3;
    let (mut services, _events) = start(
        &sandbox,
        &[("echo", vec![format!("{port}/udp").parse().unwrap()])],
        Limits::default(),
    )
    .await;
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let a = sandbox.net.udp_socket(0).await.unwrap();
    let b = sandbox.net.udp_socket(0).await.unwrap();
    a.send_to(b"from a", target).await.unwrap();
    b.send_to(b"from b", target).await.unwrap();
    let mut buf = [0; 16];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), a.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"from a"[..], target));
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), b.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"from b");
    assert_eq!(services.status()[0].connections, 2);
    services.stop().await;
}

#[tokio::test]
async fn services_without_an_emulator_accept_read_and_log() {
    let Some(sandbox) = Sandbox::new("fallback") else {
        return;
    };
    let port = free_port() + 4;
    let (mut services, mut events) = start(&sandbox, &[("nosuch", vec![Port::tcp(port)])], Limits::default()).await;
    let status = services.status();
    assert_eq!(status[0].emulator, None);
    assert_eq!(status[0].ports[0].state, PortState::Listening);
    let mut s = connect(&sandbox, port).await;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    s.shutdown().await.unwrap();
    let request = next_kind(&mut events, Kind::Request).await;
    assert_eq!(request.fields["data"], "474554202f20485454502f312e300d0a0d0a");
    assert_eq!(request.service, "nosuch");
    assert_eq!(request.src_ip, Ipv4Addr::LOCALHOST);
    services.stop().await;
}

#[tokio::test]
async fn ports_an_emulator_cannot_serve_are_reported() {
    let Some(sandbox) = Sandbox::new("unsup") else { return };
    let mut registry = Registry::new();
    registry.register(Arc::new(decnet_emu_tftp::Tftp));
    let (emitter, _events) = Emitter::channel(16);
    let host = Host {
        registry: Arc::new(registry),
        emitter,
        limits: Limits::default(),
        captures: Captures::disabled(),
        state_dir: None,
    };
    let mut services = Services::start(
        &spec(&[("tftp", vec![Port::tcp(free_port() + 5)])]),
        LAN,
        sandbox.net.clone(),
        &host,
    )
    .await;
    let status = services.status();
    assert_eq!(
        status[0].ports[0].state,
        PortState::Failed {
            reason: format!("the tftp emulator does not serve {}/tcp", free_port() + 5)
        }
    );
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_waits_until_every_session_is_gone() {
    let Some(sandbox) = Sandbox::new("stop") else { return };
    let port = free_port() + 6;
    let udp = free_port() + 7;
    let (mut services, mut events) = start(
        &sandbox,
        &[
            ("echo", vec![Port::tcp(port)]),
            ("echo", vec![format!("{udp}/udp").parse().unwrap()]),
        ],
        Limits::default(),
    )
    .await;
    let mut busy = Vec::new();
    for command in ["wait\n", "wait\n", "linger\n"] {
        let mut s = connect(&sandbox, port).await;
        s.write_all(command.as_bytes()).await.unwrap();
        busy.push(s);
    }
    let u = sandbox.net.udp_socket(0).await.unwrap();
    u.send_to(b"ping", SocketAddr::from((Ipv4Addr::LOCALHOST, udp)))
        .await
        .unwrap();
    for _ in 0..3 {
        next_kind(&mut events, Kind::Connect).await;
    }
    let mut buf = [0; 8];
    tokio::time::timeout(Duration::from_secs(5), u.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = services.status();
    assert_eq!((status[0].active, status[1].active), (3, 1));
    services.stop().await;
    // Every session (its state, its socket and its place) is gone by now,
    // even the one that takes a while to clean up.
    assert_eq!(LINGERED.load(std::sync::atomic::Ordering::SeqCst), 1);
    let status = services.status();
    assert_eq!((status[0].active, status[1].active), (0, 0));
    for mut s in busy {
        let mut buf = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "a session outlived stop: {read:?}");
    }
}

#[tokio::test]
async fn udp_flows_and_tcp_sessions_have_separate_budgets() {
    let Some(sandbox) = Sandbox::new("budget") else { return };
    let port = free_port() + 8;
    let udp = free_port() + 9;
    let limits = Limits {
        per_source: 2,
        udp_per_source: 3,
        ..Limits::default()
    };
    let (mut services, _events) = start(
        &sandbox,
        &[
            ("echo", vec![Port::tcp(port)]),
            ("echo", vec![format!("{udp}/udp").parse().unwrap()]),
        ],
        limits,
    )
    .await;
    // One source fills its UDP budget with flows (each from its own port) …
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, udp));
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let s = sandbox.net.udp_socket(0).await.unwrap();
        s.send_to(b"flow", target).await.unwrap();
        sockets.push(s);
    }
    let mut answered = 0;
    for s in &sockets {
        let mut buf = [0; 8];
        if tokio::time::timeout(Duration::from_millis(500), s.recv_from(&mut buf))
            .await
            .is_ok()
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 3, "the UDP per-source budget is 3");
    // … and its TCP sessions still get their own two places.
    let mut a = connect(&sandbox, port).await;
    let mut b = connect(&sandbox, port).await;
    assert_eq!(round_trip(&mut a, "a\n").await, "a\n");
    assert_eq!(round_trip(&mut b, "b\n").await, "b\n");
    let status = services.status();
    assert_eq!(status[0].rejected, 0, "{status:?}");
    assert_eq!(status[1].rejected, 2, "{status:?}");
    services.stop().await;
}

#[tokio::test]
async fn a_refused_source_is_reported_once_per_interval() {
    let Some(sandbox) = Sandbox::new("notice") else { return };
    let port = free_port() + 10;
    let limits = Limits {
        per_source: 1,
        notice_interval: Duration::from_millis(800),
        ..Limits::default()
    };
    let (mut services, mut events) = start(&sandbox, &[("echo", vec![Port::tcp(port)])], limits).await;
    let mut held = connect(&sandbox, port).await;
    assert_eq!(round_trip(&mut held, "x\n").await, "x\n");
    let refuse = |n: usize| {
        let sandbox = &sandbox;
        async move {
            for _ in 0..n {
                let mut s = connect(sandbox, port).await;
                let mut buf = [0; 1];
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
            }
        }
    };
    refuse(20).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let notices = |events: &mut mpsc::Receiver<Event>| {
        let mut found = Vec::new();
        while let Ok(e) = events.try_recv() {
            if e.kind == Kind::Error {
                found.push(e);
            }
        }
        found
    };
    let first = notices(&mut events);
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0].fields["limit"], "per_source");
    assert_eq!(first[0].fields["transport"], "tcp");
    assert_eq!(first[0].src_ip, Ipv4Addr::LOCALHOST);
    // A new interval, a new notice (one, however many refusals).
    tokio::time::sleep(Duration::from_millis(800)).await;
    refuse(10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(notices(&mut events).len(), 1);
    assert_eq!(services.status()[0].rejected, 30);
    services.stop().await;
}
