//! What the transport tells its caller, and what the caller decides:
//! authentication outcomes, channel requests, and the channel output it
//! wants sent.

use crate::kexinit::{KexInit, Negotiated};

/// One authentication attempt, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    pub user: String,
    /// 1 for the first request of the connection.
    pub attempt: u32,
    pub method: AuthMethod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    Password {
        password: String,
        /// Set when the client asks to change the password.
        new_password: Option<String>,
    },
    KeyboardInteractive {
        responses: Vec<String>,
    },
    PublicKey {
        /// Signature algorithm named in the request (`rsa-sha2-512`, …).
        algorithm: String,
        /// Key type inside the blob (`ssh-rsa`, `ssh-ed25519`, …).
        key_type: String,
        /// `SHA256:…` as `ssh-keygen -l` prints it.
        fingerprint: String,
        blob: Vec<u8>,
        /// False for the "would you accept this key?" query.
        signed: bool,
        /// The signature verified (always false when unsigned).
        verified: bool,
    },
}

impl AuthMethod {
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password { .. } => "password",
            AuthMethod::KeyboardInteractive { .. } => "keyboard-interactive",
            AuthMethod::PublicKey { .. } => "publickey",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDecision {
    /// Log in (for an unsigned public-key query: answer PK_OK).
    Accept,
    Reject,
}

/// A request on a session channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRequest {
    Pty {
        term: String,
        cols: u32,
        rows: u32,
        modes: Vec<u8>,
    },
    Env {
        name: String,
        value: String,
    },
    WindowChange {
        cols: u32,
        rows: u32,
    },
    Shell,
    Exec {
        command: Vec<u8>,
    },
    Subsystem {
        name: String,
    },
    Signal {
        name: String,
    },
    Other {
        name: String,
    },
}

/// Output a handler (or a task holding a sender) asks for on a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Data(u32, Vec<u8>),
    Stderr(u32, Vec<u8>),
    ExitStatus(u32, u32),
    Eof(u32),
    Close(u32),
}

/// Things worth recording about a connection that need no decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    ClientIdent(String),
    ClientKexInit {
        kexinit: Box<KexInit>,
        hassh: String,
        hassh_string: String,
    },
    Negotiated(Box<Negotiated>),
    /// A forwarding channel or unknown channel type, refused.
    ChannelRefused {
        kind: String,
        target: Option<(String, u32)>,
        origin: Option<(String, u32)>,
    },
    GlobalRequest {
        name: String,
    },
    /// The connection ends; `reason` is what went wrong, if anything.
    Closed {
        reason: String,
    },
}

/// The caller's side of a connection. Every method has a conservative
/// default except authentication, which is the caller's to decide.
pub trait Handler: Send {
    fn auth(&mut self, attempt: &AuthAttempt) -> AuthDecision;

    fn observe(&mut self, _what: &Observation) {}

    /// A session channel was opened.
    fn channel_open(&mut self, _channel: u32) {}

    /// A request on an open session channel; the return value is the
    /// success/failure reply. Output goes into `out`.
    fn channel_request(&mut self, _channel: u32, _request: &ChannelRequest, _out: &mut Vec<Action>) -> bool {
        false
    }

    fn channel_data(&mut self, _channel: u32, _data: &[u8], _out: &mut Vec<Action>) {}

    fn channel_eof(&mut self, _channel: u32, _out: &mut Vec<Action>) {}

    fn channel_closed(&mut self, _channel: u32) {}
}
