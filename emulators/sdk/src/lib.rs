//! The emulator SDK. An [`Emulator`] imitates one service (`ssh`, `tftp` …).
//! For each decky that runs the service, the engine calls [`Emulator::prepare`]
//! once (parse the persona, derive seeded state), then hands every accepted TCP
//! connection ([`Conn`]) or UDP flow ([`UdpFlow`]) to the prepared
//! [`Service`], together with a [`SessionCx`]: who the decky is, who the peer
//! is, the event emitter and the decky's socket factory.
//!
//! Emulators never bind or connect sockets themselves (the engine gives them
//! their listeners; `cx.net()` makes any other socket inside the decky), never
//! read the clock or an RNG directly (the context has both), and return *why* a
//! session ended as a [`Close`]; hostile input is an outcome, not an error.

#![forbid(unsafe_code)]

mod accounts;
mod captures;
pub mod clock;
mod conn;
mod limits;
mod session;
mod udp;

use std::sync::Arc;

pub use self::accounts::Accounts;
pub use self::captures::{CaptureLimits, Captures, Quarantined, Recording, RecordingSummary};
pub use self::conn::{Conn, ConnStats, LimitError};
pub use self::limits::Limits;
pub use self::session::{__to_json, DeckyInfo, ServiceCounters, ServiceInfo, SessionCx};
pub use self::udp::UdpFlow;
pub use decnet_core::catalogue::{Kernel, Port, Transport, Userland};
pub use decnet_core::persona::{PersonaConfig, PersonaValue};
pub use decnet_events::{Credential, Fields, Kind, Outcome, SecretKind};
pub use decnet_net::DeckyNet;
pub use futures_util::future::BoxFuture;

/// A service imitation, registered once per slug.
pub trait Emulator: Send + Sync + 'static {
    /// The catalogue slug it imitates (`tftp`).
    fn slug(&self) -> &'static str;

    /// Whether it can serve `port` (its transport, with or without TLS); the
    /// ports themselves come from the service's persona data.
    fn serves(&self, port: &Port) -> bool;

    /// Prepares the service for one decky. A persona it cannot use is an error
    /// here, before any port opens.
    fn prepare(&self, service: &ServiceInfo) -> Result<Arc<dyn Service>, ServeError>;
}

/// One decky's instance of a service.
pub trait Service: Send + Sync + 'static {
    /// Serves one accepted TCP connection.
    fn serve_tcp(self: Arc<Self>, conn: Conn, cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        let _ = (conn, cx);
        Box::pin(async { Ok(Close::Unsupported) })
    }

    /// Serves one UDP flow: the datagrams of one peer address.
    fn serve_udp(self: Arc<Self>, flow: UdpFlow, cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        let _ = (flow, cx);
        Box::pin(async { Ok(Close::Unsupported) })
    }
}

/// Why a session ended (reported in the `disconnect` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// The peer closed or reset the connection.
    PeerEof,
    /// The peer was idle too long, or the session reached its total time.
    Timeout,
    /// The peer hit a bound (bytes read, message size …).
    LimitExceeded(&'static str),
    /// The peer sent something the protocol does not allow; it got the
    /// protocol's own answer and the session ended.
    ProtocolError(String),
    /// The protocol exchange ended normally (QUIT, a one-shot reply …).
    Done,
    /// The emulator does not serve this transport.
    Unsupported,
}

impl Close {
    /// Short machine-readable reason for events and status.
    pub fn reason(&self) -> &str {
        match self {
            Close::PeerEof => "peer_closed",
            Close::Timeout => "timeout",
            Close::LimitExceeded(_) => "limit",
            Close::ProtocolError(_) => "protocol_error",
            Close::Done => "done",
            Close::Unsupported => "unsupported",
        }
    }

    /// How an I/O error on the session's stream ends it, when it is the peer's
    /// doing (EOF, reset, a limit); `None` for our own faults.
    pub fn from_io(error: &std::io::Error) -> Option<Close> {
        use std::io::ErrorKind::*;
        if let Some(limit) = error.get_ref().and_then(|e| e.downcast_ref::<LimitError>()) {
            return Some(match limit {
                LimitError::Idle => Close::Timeout,
                LimitError::BytesRead => Close::LimitExceeded("bytes read"),
            });
        }
        match error.kind() {
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => Some(Close::PeerEof),
            TimedOut => Some(Close::Timeout),
            _ => None,
        }
    }
}

/// Our own faults while serving (the peer's misbehaviour is a [`Close`]).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Net(#[from] decnet_net::NetError),
    #[error("persona: {0}")]
    Persona(String),
}
