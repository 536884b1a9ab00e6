//! Hosting a decky's services: one accept loop per TCP port and one receive
//! loop per UDP port, each session in its own task with the limits of
//! [`Limits`] (TCP sessions and UDP flows have budgets of their own). A
//! source refused by a limit is counted, and reported by one `error` event
//! per interval. A panicking emulator ends its own session only: the panic is
//! caught, counted and logged as an `error` event.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use decnet_core::catalogue::Transport;
use decnet_core::fleet::{DeckySpec, FleetSpec};
use decnet_emu_sdk::{
    Captures, Close, Conn, DeckyInfo, DeckyNet, Emulator, Kind, Limits, ServeError, Service, ServiceCounters,
    ServiceInfo, SessionCx, UdpFlow, fields,
};
use decnet_events::Emitter;
use futures_util::FutureExt as _;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::fallback::Fallback;
use crate::registry::Registry;
use crate::status::{PortState, PortStatus, ServiceStatus};

/// What hosting needs from the engine.
#[derive(Clone)]
pub struct Host {
    pub registry: Arc<Registry>,
    pub emitter: Emitter,
    pub limits: Limits,
    /// Where sessions' dropped files and recordings go.
    pub captures: Captures,
    /// The engine's state dir, for services' own state (`None` in tests).
    pub state_dir: Option<std::path::PathBuf>,
}

/// The running services of one decky.
pub struct Services {
    services: Vec<RunningService>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

struct RunningService {
    slug: String,
    emulator: Option<String>,
    ports: Vec<PortStatus>,
    counters: Arc<ServiceCounters>,
}

/// Sessions open on one decky, for the per-decky and per-source limits: one
/// budget for TCP sessions, another for UDP flows.
struct Admission {
    limits: Limits,
    pools: Mutex<Pools>,
    /// When each refused source was last reported.
    notices: Mutex<HashMap<IpAddr, Instant>>,
}

#[derive(Default)]
struct Pools {
    tcp: Pool,
    udp: Pool,
}

#[derive(Default)]
struct Pool {
    open: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl Pools {
    fn of(&mut self, transport: Transport) -> &mut Pool {
        match transport {
            Transport::Tcp => &mut self.tcp,
            Transport::Udp => &mut self.udp,
        }
    }
}

/// Sources reported at most this many at a time per decky (a flood of forged
/// sources is counted, not reported one by one).
const MAX_NOTICED_SOURCES: usize = 4096;

/// Which limit refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerDecky,
    PerService,
    PerSource,
    UdpFlows,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::PerDecky => "per_decky",
            Refusal::PerService => "per_service",
            Refusal::PerSource => "per_source",
            Refusal::UdpFlows => "udp_flows",
        }
    }
}

/// Held by a session; releases its place in every limit when dropped.
struct Permit {
    admission: Arc<Admission>,
    counters: Arc<ServiceCounters>,
    transport: Transport,
    source: IpAddr,
}

impl Admission {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            pools: Mutex::default(),
            notices: Mutex::default(),
        }
    }

    fn admit(
        self: &Arc<Self>,
        counters: &Arc<ServiceCounters>,
        transport: Transport,
        source: IpAddr,
    ) -> Result<Permit, Refusal> {
        let limits = self.limits;
        let (per_decky, per_source) = match transport {
            Transport::Tcp => (limits.per_decky, limits.per_source),
            Transport::Udp => (limits.udp_per_decky, limits.udp_per_source),
        };
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pools.of(transport);
        let from_source = pool.per_source.get(&source).copied().unwrap_or(0);
        let refused = if from_source >= per_source {
            Some(Refusal::PerSource)
        } else if pool.open >= per_decky {
            Some(Refusal::PerDecky)
        } else if counters.active.load(Ordering::Relaxed) as usize >= limits.per_service {
            Some(Refusal::PerService)
        } else {
            None
        };
        if let Some(refusal) = refused {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        pool.per_source.insert(source, from_source + 1);
        pool.open += 1;
        counters.active.fetch_add(1, Ordering::Relaxed);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            admission: Arc::clone(self),
            counters: Arc::clone(counters),
            transport,
            source,
        })
    }

    /// Whether a refusal of `source` now is to be reported: the first one
    /// in each notice interval is.
    fn should_report(&self, source: IpAddr) -> bool {
        let now = Instant::now();
        let interval = self.limits.notice_interval;
        let mut notices = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = notices.get(&source)
            && now.duration_since(*last) < interval
        {
            return false;
        }
        if notices.len() >= MAX_NOTICED_SOURCES && !notices.contains_key(&source) {
            notices.retain(|_, last| now.duration_since(*last) < interval);
            if notices.len() >= MAX_NOTICED_SOURCES {
                return false;
            }
        }
        notices.insert(source, now);
        true
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
        let mut pools = self.admission.pools.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pools.of(self.transport);
        pool.open -= 1;
        if let Some(n) = pool.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                pool.per_source.remove(&self.source);
            }
        }
    }
}

/// The LAN a decky is on, as its services tell it (`ip a`, `ip r`).
#[derive(Debug, Clone, Copy)]
pub struct Lan {
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

impl Lan {
    pub fn of(fleet: &FleetSpec) -> Self {
        Self {
            prefix_len: fleet.subnet.prefix_len(),
            gateway: fleet.gateway,
        }
    }
}

impl Services {
    /// Binds every port of every service of `spec` inside the decky and starts
    /// serving. A port that cannot be bound is reported, not fatal.
    pub async fn start(spec: &DeckySpec, lan: Lan, net: DeckyNet, host: &Host) -> Self {
        let decky = Arc::new(DeckyInfo {
            name: spec.name.clone(),
            hostname: spec.hostname.clone(),
            ip: spec.ip,
            prefix_len: lan.prefix_len,
            gateway: lan.gateway,
            mac: spec.mac.0,
            os_family: spec.os_family.clone(),
            distro: spec.distro.clone(),
            userland: spec.userland.clone(),
            seed: spec.seed,
        });
        let admission = Arc::new(Admission::new(host.limits));
        let cancel = CancellationToken::new();
        let mut services = Vec::new();
        let mut tasks = Vec::new();
        for svc in &spec.services {
            let info = Arc::new(ServiceInfo {
                decky: Arc::clone(&decky),
                slug: svc.slug.clone(),
                ports: svc.ports.clone(),
                persona: svc.persona.clone(),
                state_dir: host
                    .state_dir
                    .as_ref()
                    .map(|dir| dir.join("services").join(&spec.name).join(&svc.slug)),
            });
            let counters = Arc::new(ServiceCounters::default());
            let Prepared {
                emulator,
                service: prepared,
            } = prepare(host.registry.get(&svc.slug), &info, svc.custom.is_some());
            let mut ports = Vec::new();
            for port in &svc.ports {
                let state = match (&prepared, &emulator) {
                    (Err(reason), _) => PortState::Failed { reason: reason.clone() },
                    (Ok(_), Some(e)) if !e.serves(port) => PortState::Failed {
                        reason: format!("the {} emulator does not serve {port}", e.slug()),
                    },
                    (Ok(service), _) => {
                        let session = Session {
                            service: Arc::clone(service),
                            info: Arc::clone(&info),
                            counters: Arc::clone(&counters),
                            admission: Arc::clone(&admission),
                            emitter: host.emitter.clone(),
                            captures: host.captures.clone(),
                            net: net.clone(),
                            cancel: cancel.clone(),
                        };
                        match bind(&net, port.number, port.transport, session).await {
                            Ok(task) => {
                                tasks.push(task);
                                PortState::Listening
                            }
                            Err(reason) => PortState::Failed { reason },
                        }
                    }
                };
                ports.push(PortStatus { port: *port, state });
            }
            services.push(RunningService {
                slug: svc.slug.clone(),
                emulator: emulator.map(|e| e.slug().to_string()),
                ports,
                counters,
            });
        }
        Self {
            services,
            cancel,
            tasks,
        }
    }

    /// Stops every listener and session and waits for them to end, so that
    /// no session outlives its decky and the decky's sockets are closed
    /// before its namespace goes. Sessions are aborted (and awaited); a loop
    /// that does not end within 5 s is aborted too.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }

    pub fn status(&self) -> Vec<ServiceStatus> {
        self.services
            .iter()
            .map(|s| ServiceStatus {
                slug: s.slug.clone(),
                emulator: s.emulator.clone(),
                ports: s.ports.clone(),
                connections: s.counters.connections.load(Ordering::Relaxed),
                active: s.counters.active.load(Ordering::Relaxed),
                rejected: s.counters.rejected.load(Ordering::Relaxed),
                events: s.counters.events.load(Ordering::Relaxed),
                panics: s.counters.panics.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// The emulator of a service (if it has one) and the service prepared for
/// this decky (or why it cannot run).
struct Prepared {
    emulator: Option<Arc<dyn Emulator>>,
    service: Result<Arc<dyn Service>, String>,
}

/// The service to run: the emulator's, or the fallback when there is none.
fn prepare(emulator: Option<Arc<dyn Emulator>>, info: &ServiceInfo, custom: bool) -> Prepared {
    if custom {
        let reason = "bring-your-own services need the OCI runner, which this build does not have yet";
        return Prepared {
            emulator: None,
            service: Err(reason.into()),
        };
    }
    match emulator {
        Some(e) => Prepared {
            service: e
                .prepare(info)
                .map_err(|err| format!("the {} emulator refused this persona: {err}", e.slug())),
            emulator: Some(e),
        },
        None => Prepared {
            emulator: None,
            service: Ok(Arc::new(Fallback)),
        },
    }
}

/// Everything a session of one service port needs.
#[derive(Clone)]
struct Session {
    service: Arc<dyn Service>,
    info: Arc<ServiceInfo>,
    counters: Arc<ServiceCounters>,
    admission: Arc<Admission>,
    emitter: Emitter,
    captures: Captures,
    net: DeckyNet,
    cancel: CancellationToken,
}

impl Session {
    /// Reports a refused source, once per notice interval.
    fn refused(&self, refusal: Refusal, transport: Transport, peer: SocketAddr, local: SocketAddr) {
        if self.admission.should_report(peer.ip()) {
            let limits = self.admission.limits;
            self.cx(peer, local).emit(
                Kind::Error,
                fields! {
                    "msg" => "rate limited: sessions from this source are refused",
                    "limit" => refusal.as_str(),
                    "transport" => transport.to_string(),
                    "notice_interval_s" => limits.notice_interval.as_secs(),
                },
            );
        }
    }

    fn cx(&self, peer: SocketAddr, local: SocketAddr) -> SessionCx {
        SessionCx::new(
            Arc::clone(&self.info),
            peer,
            local,
            self.emitter.clone(),
            Arc::clone(&self.counters),
            self.net.clone(),
            self.admission.limits,
            self.captures.clone(),
        )
    }
}

async fn bind(net: &DeckyNet, port: u16, transport: Transport, session: Session) -> Result<JoinHandle<()>, String> {
    match transport {
        Transport::Tcp => {
            let listener = net.tcp_listener(port).await.map_err(|e| e.to_string())?;
            Ok(tokio::spawn(accept_loop(listener, session)))
        }
        Transport::Udp => {
            let socket = net.udp_socket(port).await.map_err(|e| e.to_string())?;
            Ok(tokio::spawn(receive_loop(Arc::new(socket), session)))
        }
    }
}

async fn accept_loop(listener: TcpListener, session: Session) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = session.cancel.cancelled() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let local = stream.local_addr().unwrap_or(peer);
                    let permit = match session.admission.admit(&session.counters, Transport::Tcp, peer.ip()) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            // Over a limit: close at once (RST, so nothing lingers in TIME_WAIT).
                            let _ = stream.set_zero_linger();
                            drop(stream);
                            session.refused(refusal, Transport::Tcp, peer, local);
                            continue;
                        }
                    };
                    let limits = session.admission.limits;
                    let conn = Conn::new(stream, peer, local, limits.idle_timeout, limits.max_bytes_read);
                    sessions.spawn(run_tcp(conn, session.clone(), permit));
                }
                Err(error) => {
                    tracing::warn!(message = "Accept failed.", decky = %session.info.decky.name, service = %session.info.slug, %error);
                    // Out of file descriptors: give sessions time to end.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // No session outlives its service: abort them, and wait until they are gone.
    sessions.abort_all();
    while sessions.join_next().await.is_some() {}
}

async fn run_tcp(conn: Conn, session: Session, permit: Permit) {
    let cx = session.cx(conn.peer(), conn.local());
    let stats = conn.stats();
    let started = Instant::now();
    cx.emit(Kind::Connect, fields! {});
    let serve = Arc::clone(&session.service).serve_tcp(conn, cx.clone());
    let total = session.admission.limits.total_timeout;
    let outcome = AssertUnwindSafe(tokio::time::timeout(total, serve))
        .catch_unwind()
        .await;
    let reason = match outcome {
        Err(panic) => report_panic(&cx, &session, panic),
        Ok(Err(_elapsed)) => Close::Timeout.reason().to_string(),
        Ok(Ok(result)) => outcome_reason(&session, result),
    };
    cx.emit(
        Kind::Disconnect,
        fields! {
            "reason" => reason,
            "duration_ms" => started.elapsed().as_millis() as u64,
            "bytes_in" => stats.bytes_in.load(Ordering::Relaxed),
            "bytes_out" => stats.bytes_out.load(Ordering::Relaxed),
        },
    );
    drop(permit);
}

/// The datagrams arriving on one UDP port, routed to one flow per peer.
async fn receive_loop(socket: Arc<UdpSocket>, session: Session) {
    let limits = session.admission.limits;
    let mut flows: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut tasks: JoinSet<SocketAddr> = JoinSet::new();
    // Datagrams are truncated to this; no service needs more of one.
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = session.cancel.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(peer) = done {
                    flows.remove(&peer);
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (n, peer) = match received {
                    Ok(r) => r,
                    // ICMP errors from earlier replies surface here; they are not fatal.
                    Err(_) => continue,
                };
                let datagram = Bytes::copy_from_slice(&buf[..n]);
                if let Some(flow) = flows.get(&peer) {
                    if flow.try_send(datagram).is_err() {
                        session.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                let local = socket.local_addr().unwrap_or(peer);
                if flows.len() >= limits.udp_flows {
                    session.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    session.refused(Refusal::UdpFlows, Transport::Udp, peer, local);
                    continue;
                }
                let permit = match session.admission.admit(&session.counters, Transport::Udp, peer.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        session.refused(refusal, Transport::Udp, peer, local);
                        continue;
                    }
                };
                let (tx, rx) = mpsc::channel(limits.udp_queue);
                let _ = tx.try_send(datagram);
                flows.insert(peer, tx);
                let flow = UdpFlow::new(rx, Arc::clone(&socket), peer, limits.udp_idle_timeout);
                let session = session.clone();
                tasks.spawn(async move {
                    run_udp(flow, local, session, permit).await;
                    peer
                });
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn run_udp(flow: UdpFlow, local: SocketAddr, session: Session, permit: Permit) {
    let cx = session.cx(flow.peer(), local);
    let serve = Arc::clone(&session.service).serve_udp(flow, cx.clone());
    let total = session.admission.limits.total_timeout;
    match AssertUnwindSafe(tokio::time::timeout(total, serve))
        .catch_unwind()
        .await
    {
        Err(panic) => {
            report_panic(&cx, &session, panic);
        }
        Ok(Ok(result)) => {
            outcome_reason(&session, result);
        }
        Ok(Err(_elapsed)) => {}
    }
    drop(permit);
}

fn outcome_reason(session: &Session, result: Result<Close, ServeError>) -> String {
    match result {
        Ok(close) => close.reason().to_string(),
        Err(ServeError::Io(e)) if Close::from_io(&e).is_some() => {
            Close::from_io(&e).map(|c| c.reason().to_string()).unwrap_or_default()
        }
        Err(error) => {
            tracing::warn!(
                message = "Session failed.",
                decky = %session.info.decky.name,
                service = %session.info.slug,
                %error
            );
            "error".to_string()
        }
    }
}

fn report_panic(cx: &SessionCx, session: &Session, panic: Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    session.counters.panics.fetch_add(1, Ordering::Relaxed);
    // The panic's text may carry the peer's bytes: not in the error-level log.
    tracing::error!(
        message = "Emulator panicked; the session was closed.",
        decky = %session.info.decky.name,
        service = %session.info.slug,
        session = %cx.session()
    );
    tracing::debug!(
        message = "The emulator's panic.",
        decky = %session.info.decky.name,
        service = %session.info.slug,
        session = %cx.session(),
        panic = %message.escape_debug()
    );
    cx.emit(
        Kind::Error,
        fields! { "msg" => format!("emulator panicked: {message}") },
    );
    "panic".to_string()
}
