//! Errors of network operations: each names the operation and the object
//! (`create netns decnet-web01`) and keeps the OS error as its source.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A system call or netlink request failed.
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The process lacks the capabilities to change the network.
    #[error(
        "decnet needs {missing} to create network namespaces and links (it has: {have}); run it as root, e.g. with sudo"
    )]
    Privilege { missing: String, have: String },
    /// A named interface does not exist.
    #[error("interface `{0}` does not exist on this host")]
    NoSuchInterface(String),
    /// The kernel lacks a feature.
    #[error("{0}")]
    Unsupported(String),
    /// Something else already uses an address or name.
    #[error("{0}")]
    Conflict(String),
}

impl NetError {
    pub fn io(op: impl Into<String>, source: io::Error) -> Self {
        NetError::Io { op: op.into(), source }
    }

    /// The OS error code, if this is an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Adds the operation's description to an `io::Result`.
pub(crate) trait Context<T> {
    fn op(self, describe: impl FnOnce() -> String) -> Result<T, NetError>;
}

impl<T, E: Into<io::Error>> Context<T> for Result<T, E> {
    fn op(self, describe: impl FnOnce() -> String) -> Result<T, NetError> {
        self.map_err(|e| NetError::io(describe(), e.into()))
    }
}
