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
    BoxFuture, Close, Conn, DeckyNet, Emulator, Limits, ServeError, Service, ServiceInfo, SessionCx, UdpFlow,
};
use decnet_engine::Registry;
use decnet_engine::hosting::{Host, Services};
use decnet_engine::status::PortState;
use decnet_events::{Emitter, Event, Kind};
use decnet_net::{Netns, NetnsExecutor, Rtnl};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

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

/// Echoes lines; `panic` panics; `wait` never answers. UDP: echoes datagrams.
struct Echo;

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
        os_family: "linux".into(),
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
    };
    (
        Services::start(&spec(services), sandbox.net.clone(), &host).await,
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
    let (services, mut events) = start(&sandbox, &[("echo", vec![Port::tcp(port)])], Limits::default()).await;
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
    let (services, _events) = start(&sandbox, &[("echo", vec![Port::tcp(port)])], limits).await;
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
    let (services, mut events) = start(&sandbox, &[("echo", vec![Port::tcp(port)])], limits).await;

    let _idle = connect(&sandbox, port).await;
    assert_eq!(
        next_kind(&mut events, Kind::Disconnect).await.fields["reason"],
        "timeout"
    );

    let mut chatty = connect(&sandbox, port).await;
    chatty.write_all(&[b'x'; 200]).await.unwrap();
    assert_eq!(next_kind(&mut events, Kind::Disconnect).await.fields["reason"], "limit");

    // Keeps sending just often enough to never be idle: the total bound ends it.
    let mut slowloris = connect(&sandbox, port).await;
    slowloris.write_all(b"wait\n").await.unwrap();
    let disconnect = next_kind(&mut events, Kind::Disconnect).await;
    assert_eq!(disconnect.fields["reason"], "timeout");
    assert!(disconnect.fields["duration_ms"].as_u64().unwrap() >= 650);
    services.stop().await;
}

#[tokio::test]
async fn udp_peers_get_their_own_flows() {
    let Some(sandbox) = Sandbox::new("udp") else { return };
    let port = free_port() + 3;
    let (services, _events) = start(
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
    let (services, mut events) = start(&sandbox, &[("nosuch", vec![Port::tcp(port)])], Limits::default()).await;
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
    };
    let services = Services::start(
        &spec(&[("tftp", vec![Port::tcp(free_port() + 5)])]),
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
