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

/// An error from creating a macvlan/ipvlan child of a parent NIC, made clear:
/// a kernel without ipvlan, a parent that already carries children of the
/// other kind (the kernel's EBUSY: macvlan and ipvlan cannot share a parent),
/// a MAC another child of the parent already has.
pub fn child_link_error(kind: crate::rtnl::ChildKind, what: impl FnOnce() -> String, error: io::Error) -> NetError {
    use crate::rtnl::ChildKind;
    match (kind, error.raw_os_error()) {
        (ChildKind::Ipvlan, Some(nix::libc::EOPNOTSUPP)) => {
            NetError::Unsupported("this kernel has no ipvlan support; use macvlan (drop --ipvlan)".into())
        }
        (_, Some(nix::libc::EBUSY)) => NetError::Conflict(format!(
            "{}: the parent interface already carries {} links, and {kind} and {} links cannot share one parent \
             NIC; remove those (e.g. `decnet teardown --all` for a fleet of the other driver) or deploy with the \
             same driver ({})",
            what(),
            kind.other(),
            kind.other(),
            match kind {
                ChildKind::Macvlan => "--ipvlan",
                ChildKind::Ipvlan => "without --ipvlan",
            }
        )),
        (ChildKind::Macvlan, Some(nix::libc::EADDRINUSE)) => NetError::Conflict(format!(
            "{}: another macvlan link of the parent interface already has this MAC address",
            what()
        )),
        _ => NetError::io(what(), error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtnl::ChildKind;

    #[test]
    fn child_link_errors_are_explained() {
        let busy = child_link_error(
            ChildKind::Macvlan,
            || "create hairpin x".into(),
            io::Error::from_raw_os_error(nix::libc::EBUSY),
        );
        assert!(matches!(busy, NetError::Conflict(_)), "{busy:?}");
        let text = busy.to_string();
        assert!(
            text.starts_with("create hairpin x: the parent interface already carries ipvlan links")
                && text.contains("macvlan and ipvlan links cannot share one parent NIC"),
            "{text}"
        );
        let busy = child_link_error(
            ChildKind::Ipvlan,
            || "probe".into(),
            io::Error::from_raw_os_error(nix::libc::EBUSY),
        );
        assert!(busy.to_string().contains("already carries macvlan links"), "{busy}");
        let unsupported = child_link_error(
            ChildKind::Ipvlan,
            || "probe".into(),
            io::Error::from_raw_os_error(nix::libc::EOPNOTSUPP),
        );
        assert!(matches!(unsupported, NetError::Unsupported(_)));
        let other = child_link_error(
            ChildKind::Macvlan,
            || "create".into(),
            io::Error::from_raw_os_error(nix::libc::EPERM),
        );
        assert_eq!(other.raw_os_error(), Some(nix::libc::EPERM));
    }
}
