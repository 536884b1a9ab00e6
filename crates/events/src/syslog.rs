//! Remote syslog: RFC 5424 lines over UDP (RFC 5426, one datagram per event),
//! TCP with octet counting (RFC 6587 §3.4.1: `LEN SP MSG`), or TLS with the
//! same framing (RFC 5425), optionally with a client certificate (mutual TLS).
//!
//! TCP and TLS never lose events to an outage: while the target is down (or
//! while an earlier backlog is being replayed) lines go to a bounded spool on
//! disk, and are sent in order once it answers again. Only a full spool loses
//! events, and each is counted and logged. UDP is fire-and-forget by nature
//! (RFC 5426 has no acknowledgement): send errors are counted.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pipeline::{Sink, SinkCounters};
use crate::spool::Spool;
use crate::{Event, rfc5424};

/// Largest UDP payload (RFC 5426 §3.2 leaves the limit to the transport).
const MAX_DATAGRAM: usize = 65_000;
/// Lines replayed from the spool per write.
const REPLAY_CHUNK: usize = 512;
/// How long a TLS receiver has to refuse our client certificate.
const CLIENT_AUTH_VERDICT: Duration = Duration::from_millis(300);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Where to send, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS: the CA that signed the receiver's certificate, and the
/// client's own certificate and key for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the receiver has closed the connection. Syslog receivers never
    /// send data, so a read that is ready means EOF, an error, or (TLS) a
    /// close_notify; checking before each write keeps a batch from being
    /// written into a socket whose peer is gone (the kernel would accept it
    /// and the events would be lost with the reset).
    fn closed(&mut self) -> bool {
        use futures_util::FutureExt as _;
        let mut buf = [0u8; 512];
        let ready = match self {
            Stream::Tcp(s) => s.read(&mut buf).now_or_never(),
            Stream::Tls(s) => s.read(&mut buf).now_or_never(),
        };
        match ready {
            None => false,
            Some(Ok(n)) => n == 0,
            Some(Err(_)) => true,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

/// The syslog sink.
pub struct SyslogSink {
    target: SyslogTarget,
    tls: Option<TlsConnector>,
    udp: Option<UdpSocket>,
    stream: Option<Stream>,
    spool: Option<Spool>,
    counters: Arc<SinkCounters>,
    next_attempt: Instant,
    backoff: Duration,
    down_since: Option<Instant>,
    line: String,
}

impl SyslogSink {
    /// A sink for `target`, spooling to `spool_dir` (up to `spool_limit` bytes).
    /// Fails on unreadable TLS files, before any event is lost to them.
    pub fn new(
        target: SyslogTarget,
        spool_dir: &Path,
        spool_limit: u64,
        counters: Arc<SinkCounters>,
    ) -> io::Result<Self> {
        let tls = match (&target.transport, &target.tls) {
            (Transport::Tls, Some(files)) => Some(TlsConnector::from(Arc::new(client_config(files)?))),
            (Transport::Tls, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS syslog needs a CA file",
                ));
            }
            _ => None,
        };
        let spool = match target.transport {
            Transport::Udp => None,
            _ => Some(Spool::open(spool_dir, &spool_name(&target), spool_limit)?),
        };
        if let Some(s) = &spool {
            counters.spooled.store(s.pending(), Ordering::Relaxed);
        }
        Ok(Self {
            target,
            tls,
            udp: None,
            stream: None,
            spool,
            counters,
            next_attempt: Instant::now(),
            backoff: Duration::from_millis(500),
            down_since: None,
            line: String::with_capacity(1024),
        })
    }

    async fn send_udp(&mut self, batch: &[Arc<Event>]) {
        if self.udp.is_none() {
            match udp_socket(&self.target).await {
                Ok(s) => self.udp = Some(s),
                Err(error) => {
                    self.counters.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::warn!(message = "Syslog target unreachable; events lost (UDP).", target = %self.target, %error);
                    return;
                }
            }
        }
        let Some(socket) = &self.udp else { return };
        let mut failed = 0;
        for event in batch {
            self.line.clear();
            rfc5424::format(event, &mut self.line);
            let mut end = self.line.len().min(MAX_DATAGRAM);
            while !self.line.is_char_boundary(end) {
                end -= 1;
            }
            if socket.send(&self.line.as_bytes()[..end]).await.is_err() {
                failed += 1;
            }
        }
        if failed > 0 {
            self.counters.failed.fetch_add(failed, Ordering::Relaxed);
            tracing::warn!(message = "Syslog datagrams not sent.", target = %self.target, failed);
        }
    }

    /// TCP/TLS: straight to the wire when nothing is waiting, else behind the spool.
    async fn send_stream(&mut self, batch: &[Arc<Event>]) {
        let spool_empty = self.spool.as_ref().is_none_or(Spool::is_empty);
        if self.stream.as_mut().is_some_and(Stream::closed) {
            self.disconnect("closed by the receiver");
        }
        if spool_empty && self.stream.is_some() {
            let mut frames = Vec::with_capacity(batch.len() * 256);
            for event in batch {
                self.line.clear();
                rfc5424::format(event, &mut self.line);
                frame(&mut frames, self.line.as_bytes());
            }
            if let Some(stream) = &mut self.stream
                && stream.write_all(&frames).await.is_ok()
            {
                return;
            }
            self.disconnect("write failed");
        }
        for event in batch {
            self.line.clear();
            rfc5424::format(event, &mut self.line);
            let line = std::mem::take(&mut self.line);
            self.spool_line(line.as_bytes());
            self.line = line;
        }
        self.replay().await;
    }

    fn spool_line(&mut self, line: &[u8]) {
        let Some(spool) = &mut self.spool else { return };
        match spool.push(line) {
            Ok(true) => {}
            Ok(false) => {
                let lost = self.counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if lost == 1 || lost.is_multiple_of(1000) {
                    tracing::error!(message = "Syslog spool full: events lost.", target = %self.target, lost_total = lost);
                }
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(message = "Writing the syslog spool failed.", target = %self.target, %error);
            }
        }
        self.counters.spooled.store(spool.pending(), Ordering::Relaxed);
    }

    /// Connects if due, then sends the spool in order.
    async fn replay(&mut self) {
        if self.spool.as_ref().is_none_or(Spool::is_empty) {
            return;
        }
        if self.stream.as_mut().is_some_and(Stream::closed) {
            self.disconnect("closed by the receiver");
        }
        if self.stream.is_none() {
            if Instant::now() < self.next_attempt {
                return;
            }
            match self.connect().await {
                Ok(stream) => {
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(
                            message = "Syslog target back; replaying the spool.",
                            target = %self.target,
                            down_secs = since.elapsed().as_secs()
                        );
                    }
                    self.stream = Some(stream);
                    self.backoff = Duration::from_millis(500);
                }
                Err(error) => {
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                    self.next_attempt = Instant::now() + self.backoff;
                    if self.down_since.is_none() {
                        self.down_since = Some(Instant::now());
                        tracing::warn!(message = "Syslog target unreachable; spooling.", target = %self.target, %error);
                    }
                    return;
                }
            }
        }
        loop {
            let Some(spool) = &mut self.spool else { return };
            let lines = match spool.peek(REPLAY_CHUNK) {
                Ok(l) if !l.is_empty() => l,
                Ok(_) => return,
                Err(error) => {
                    tracing::error!(message = "Reading the syslog spool failed.", %error);
                    return;
                }
            };
            let mut frames = Vec::new();
            let mut bytes = 0;
            for line in &lines {
                frame(&mut frames, line);
                bytes += line.len() as u64 + 1;
            }
            let sent = match &mut self.stream {
                Some(stream) => stream.write_all(&frames).await.is_ok(),
                None => false,
            };
            if !sent {
                self.disconnect("write failed during replay");
                return;
            }
            if let Err(error) = spool.advance(lines.len() as u64, bytes) {
                tracing::error!(message = "Updating the syslog spool failed.", %error);
            }
            self.counters.spooled.store(spool.pending(), Ordering::Relaxed);
        }
    }

    fn disconnect(&mut self, why: &str) {
        self.stream = None;
        self.next_attempt = Instant::now() + self.backoff;
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(message = "Syslog connection lost; spooling.", target = %self.target, reason = why);
        }
    }

    async fn connect(&self) -> io::Result<Stream> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.target.host.as_str(), self.target.port)),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Stream::Tcp(tcp)),
            Some(connector) => {
                let name = ServerName::try_from(self.target.host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                // In TLS 1.3 the client finishes its handshake before the
                // receiver has checked our certificate; a refusal comes as an
                // alert just after. Wait for it briefly, so that events are
                // not written into a connection that is about to be refused.
                let mut buf = [0u8; 512];
                match tokio::time::timeout(CLIENT_AUTH_VERDICT, tls.read(&mut buf)).await {
                    Err(_) | Ok(Ok(1..)) => Ok(Stream::Tls(Box::new(tls))),
                    Ok(Ok(0)) => Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the receiver closed the connection after the handshake (is our client certificate trusted?)",
                    )),
                    Ok(Err(e)) => Err(e),
                }
            }
        }
    }
}

impl Sink for SyslogSink {
    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match self.target.transport {
                Transport::Udp => self.send_udp(batch).await,
                Transport::Tcp | Transport::Tls => self.send_stream(batch).await,
            }
        })
    }

    fn tick(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.replay())
    }
}

/// `LEN SP MSG` (RFC 6587 §3.4.1; RFC 5425 §4.3).
fn frame(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(line);
}

fn spool_name(target: &SyslogTarget) -> String {
    let clean: String = format!("syslog-{}-{}", target.host, target.port)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean
}

async fn udp_socket(target: &SyslogTarget) -> io::Result<UdpSocket> {
    let addr = resolve(target).await?;
    let local: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("a literal address");
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

async fn resolve(target: &SyslogTarget) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} does not resolve", target.host)))
}

fn client_config(files: &TlsFiles) -> io::Result<rustls::ClientConfig> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca).map_err(|e| bad("CA file", &files.ca, &e))? {
        let cert = cert.map_err(|e| bad("CA file", &files.ca, &e))?;
        roots.add(cert).map_err(|e| bad("CA certificate", &files.ca, &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad("certificate", cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("certificate", cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
            builder.with_client_auth_cert(chain, key).map_err(io::Error::other)
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a client certificate needs its key, and a key its certificate",
        )),
    }
}

/// Whether `target` answers: a TCP connect (and TLS handshake) for stream
/// transports; for UDP, which has no handshake, only that a route exists.
pub async fn probe(target: &SyslogTarget, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        match target.transport {
            Transport::Udp => udp_socket(target).await.map(|_| ()),
            Transport::Tcp | Transport::Tls => {
                let sink = SyslogSink {
                    target: target.clone(),
                    tls: match &target.tls {
                        Some(files) if target.transport == Transport::Tls => {
                            Some(TlsConnector::from(Arc::new(client_config(files)?)))
                        }
                        _ => None,
                    },
                    udp: None,
                    stream: None,
                    spool: None,
                    counters: Arc::default(),
                    next_attempt: Instant::now(),
                    backoff: Duration::ZERO,
                    down_since: None,
                    line: String::new(),
                };
                sink.connect().await.map(|_| ())
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
    }
}
