//! Event kinds, spelled as the original DECNET spelled them (its SIEM rules
//! key on these names).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// A TCP connection or UDP flow began.
    Connect,
    /// It ended (fields say why, how long, how many bytes).
    Disconnect,
    /// A protocol request (TFTP RRQ/WRQ, HTTP request …).
    Request,
    /// A protocol opcode the service does not know.
    UnknownOpcode,
    /// A login or other authentication attempt.
    AuthAttempt,
    /// Something went wrong serving a connection (an emulator panic, …).
    Error,
    /// A service started listening.
    Startup,
    /// A service stopped.
    Shutdown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Disconnect => "disconnect",
            Kind::Request => "request",
            Kind::UnknownOpcode => "unknown_opcode",
            Kind::AuthAttempt => "auth_attempt",
            Kind::Error => "error",
            Kind::Startup => "startup",
            Kind::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
