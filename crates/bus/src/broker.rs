//! The local broker: the bus on a UNIX socket, so that other processes (the
//! API, workers, `decnet logs --follow`) can subscribe and publish. Each
//! client speaks JSON lines ([`crate::client`] has the protocol) and gets one
//! bus subscription for all its patterns, so a client that reads slowly lags
//! like any slow subscriber, and is told, without holding anyone up. A
//! client's bad input earns it an error reply; it never touches other
//! clients or the bus.

use std::fs::Permissions;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::lines::{Line, LineReader};
use crate::wire::{Reply, Request};
use crate::{Bus, BusError, Delivery, Subscription};

/// Bounds on what clients may make the broker hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, in bytes.
    pub max_line_bytes: usize,
    /// Patterns one client may subscribe to.
    pub max_patterns: usize,
    /// Clients connected at once; more are refused with an error line.
    pub max_clients: usize,
    /// Messages queued for one client before it lags.
    pub client_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_bytes: MAX_LINE_BYTES,
            max_patterns: 64,
            max_clients: 256,
            client_queue: 4096,
        }
    }
}

/// Longest request line a client may send by default, in bytes.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Bytes of replies gathered before one write: batching keeps a busy
/// client's socket writes few without delaying a quiet one.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// A bound bus socket, ready to [`run`](Broker::run).
#[derive(Debug)]
pub struct Broker {
    bus: Bus,
    listener: UnixListener,
    limits: Limits,
    socket: SocketFile,
}

impl Broker {
    /// Binds and serves until `shutdown` completes; see [`Broker::bind`].
    pub async fn serve(bus: Bus, path: &Path, shutdown: impl Future<Output = ()>) -> Result<(), BusError> {
        Self::bind(bus, path).await?.run(shutdown).await;
        Ok(())
    }

    /// Creates the socket at `path`, mode 0660 so the engine's group can use
    /// the bus and nobody else. A stale socket left by a crash is replaced;
    /// a live one (another engine) or a file that is not a socket is not.
    /// Must be called within a tokio runtime.
    pub async fn bind(bus: Bus, path: &Path) -> Result<Self, BusError> {
        let fail = |source| BusError::Listen {
            path: path.to_owned(),
            source,
        };
        remove_stale(path).await.map_err(fail)?;
        // Until the chmod below the mode comes from the umask; the usual 022
        // leaves group and others without the write bit connecting needs.
        let listener = UnixListener::bind(path).map_err(fail)?;
        let socket = SocketFile(path.to_owned());
        std::fs::set_permissions(path, Permissions::from_mode(0o660)).map_err(fail)?;
        Ok(Self {
            bus,
            listener,
            limits: Limits::default(),
            socket,
        })
    }

    /// Replaces the default [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.socket.0
    }

    /// Accepts clients until `shutdown` completes, then disconnects them and
    /// removes the socket file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut clients = JoinSet::new();
        let mut refused: u64 = 0;
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => accepted,
            };
            while let Some(finished) = clients.try_join_next() {
                if let Err(error) = finished
                    && error.is_panic()
                {
                    tracing::error!(message = "A bus client's task panicked.", %error);
                }
            }
            match accepted {
                Ok((stream, _)) if clients.len() >= self.limits.max_clients => {
                    refused += 1;
                    // The first, then every 1000th: a flood must not flood the log too.
                    if refused == 1 || refused.is_multiple_of(1000) {
                        tracing::warn!(
                            message = "Too many bus clients: refused.",
                            limit = self.limits.max_clients,
                            refused_total = refused
                        );
                    }
                    let mut line = Vec::new();
                    let message = format!("too many clients (limit {})", self.limits.max_clients);
                    Reply::Error {
                        message: message.into(),
                    }
                    .write_line(&mut line);
                    // Best effort, without waiting: it is being refused.
                    let _ = stream.try_write(&line);
                }
                Ok((stream, _)) => {
                    clients.spawn(serve_client(self.bus.clone(), stream, self.limits));
                }
                Err(error) => {
                    tracing::warn!(message = "Accepting a bus client failed.", %error);
                    // Out of file descriptors, say: let some close first.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        clients.shutdown().await;
    }
}

/// The socket file, removed when the broker ends (also on error or panic).
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; refusing to replace it",
        ));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is serving it (is another engine running?)",
        ));
    }
    std::fs::remove_file(path)
}

/// One client: its requests, and its deliveries, until either side ends.
async fn serve_client(bus: Bus, stream: UnixStream, limits: Limits) {
    let (read, mut write) = stream.into_split();
    let mut lines = LineReader::new(read, limits.max_line_bytes);
    let mut subscription: Option<Subscription> = None;
    let mut out = Vec::with_capacity(WRITE_BATCH_BYTES);
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(Line::Text(line))) => {
                    if let Err(message) = handle(line, &bus, &mut subscription, &limits) {
                        Reply::Error { message: message.into() }.write_line(&mut out);
                    }
                }
                Ok(Some(Line::TooLong)) => {
                    let message = format!("line longer than {} bytes: skipped", limits.max_line_bytes);
                    Reply::Error { message: message.into() }.write_line(&mut out);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(message = "Reading from a bus client failed.", %error);
                    break;
                }
            },
            delivery = next_delivery(&mut subscription) => {
                let Some(delivery) = delivery else { break }; // the bus is gone
                write_delivery(&delivery, &mut out);
                if let Some(subscription) = &mut subscription {
                    while out.len() < WRITE_BATCH_BYTES
                        && let Some(delivery) = subscription.try_recv()
                    {
                        write_delivery(&delivery, &mut out);
                    }
                }
            }
        }
        if !out.is_empty() {
            // A client that does not read blocks only this write; meanwhile
            // its subscription fills and lags.
            if let Err(error) = write.write_all(&out).await {
                tracing::debug!(message = "Writing to a bus client failed.", %error);
                break;
            }
            out.clear();
        }
    }
}

async fn next_delivery(subscription: &mut Option<Subscription>) -> Option<Delivery> {
    match subscription {
        Some(subscription) => subscription.recv().await,
        None => std::future::pending().await,
    }
}

fn write_delivery(delivery: &Delivery, out: &mut Vec<u8>) {
    match delivery {
        Delivery::Message(message) => Reply::Msg {
            topic: (&message.topic).into(),
            payload: std::borrow::Cow::Borrowed(&message.payload),
        }
        .write_line(out),
        Delivery::Lagged { missed } => Reply::Lagged { missed: *missed }.write_line(out),
    }
}

/// Carries out one request; an `Err` is the message to send back.
fn handle(line: &[u8], bus: &Bus, subscription: &mut Option<Subscription>, limits: &Limits) -> Result<(), String> {
    if line.trim_ascii().is_empty() {
        return Ok(());
    }
    let request: Request = serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    match request {
        Request::Sub { pattern } => match subscription {
            None => {
                *subscription = Some(
                    bus.subscribe(&pattern, limits.client_queue)
                        .map_err(|e| e.to_string())?,
                );
            }
            Some(subscription) => {
                let known = subscription.patterns().iter().any(|p| p.as_str() == pattern);
                if !known && subscription.patterns().len() >= limits.max_patterns {
                    return Err(format!("too many subscriptions (limit {})", limits.max_patterns));
                }
                subscription.add_pattern(&pattern).map_err(|e| e.to_string())?;
            }
        },
        Request::Unsub { pattern } => {
            if let Some(subscription) = subscription {
                subscription.remove_pattern(&pattern);
            }
        }
        Request::Pub { topic, payload } => bus.try_publish(&topic, payload).map_err(|e| e.to_string())?,
    }
    Ok(())
}
