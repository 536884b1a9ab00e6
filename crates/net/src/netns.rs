//! Named network namespaces, compatible with iproute2 (`ip netns list/exec`):
//! a namespace is kept alive by a bind mount at `/run/netns/<name>`.
//!
//! A namespace is a property of a *thread*: [`Netns::enter`] moves the calling
//! thread in and its guard moves it back. Sockets keep the namespace they were
//! created in, which is what lets one process serve every decky.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

use crate::NetError;
use crate::error::Context as _;

/// Where iproute2 keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// An open handle on a named network namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    fd: OwnedFd,
}

impl Netns {
    /// Creates the namespace `name`; fails if it exists.
    pub fn create(name: &str) -> Result<Self, NetError> {
        check_name(name)?;
        prepare_dir()?;
        let path = path_of(name);
        // The mount point: an empty file, created exclusively so that two
        // creators of one name cannot both succeed. A stale file (nothing
        // mounted on it) is removed first.
        if path.exists() && Self::open(name)?.is_some() {
            return Err(NetError::io(
                format!("create netns {name}"),
                io::ErrorKind::AlreadyExists.into(),
            ));
        }
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
            .op(|| format!("create {}", path.display()))?;
        let made = CurrentNetns::save().and_then(|home| {
            unshare(CloneFlags::CLONE_NEWNET).op(|| format!("create netns {name}"))?;
            let mounted = mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .op(|| format!("bind-mount netns {name} at {}", path.display()));
            home.restore()?;
            mounted
        });
        if let Err(e) = made {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Self::open(name)?.ok_or_else(|| NetError::io(format!("open netns {name}"), io::ErrorKind::NotFound.into()))
    }

    /// Opens the namespace `name`, if it exists. A file at its path that is
    /// not a namespace (nothing mounted on it any more: a crash between
    /// unmount and unlink, or someone's `umount`) is stale: it is removed, and
    /// the namespace counts as absent, so that it is created again.
    pub fn open(name: &str) -> Result<Option<Self>, NetError> {
        check_name(name)?;
        let path = path_of(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(NetError::io(format!("open netns {name}"), e)),
        };
        let fs = fstatfs(&file).op(|| format!("statfs {}", path.display()))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            drop(file);
            tracing::warn!(message = "Removing a stale namespace file.", path = %path.display());
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(NetError::io(format!("remove stale {}", path.display()), e)),
            }
            return Ok(None);
        }
        Ok(Some(Self {
            name: name.to_string(),
            fd: file.into(),
        }))
    }

    /// Removes the name `name`; returns whether it existed. The namespace itself
    /// dies with its last user (open sockets keep it alive, so close them first).
    pub fn delete(name: &str) -> Result<bool, NetError> {
        check_name(name)?;
        let path = path_of(name);
        if !path.exists() {
            return Ok(false);
        }
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(NetError::io(format!("unmount netns {name}"), e.into())),
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(NetError::io(format!("remove {}", path.display()), e)),
        }
    }

    /// Names of the existing namespaces that start with `prefix`.
    pub fn list(prefix: &str) -> Result<Vec<String>, NetError> {
        let entries = match fs::read_dir(NETNS_DIR) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(NetError::io(format!("list {NETNS_DIR}"), e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard, NetError> {
        let home = CurrentNetns::save()?;
        setns(&self.fd, CloneFlags::CLONE_NEWNET).op(|| format!("enter netns {}", self.name))?;
        Ok(NetnsGuard { home: Some(home) })
    }

    /// Another handle on the same namespace.
    pub fn try_clone(&self) -> Result<Self, NetError> {
        Ok(Self {
            name: self.name.clone(),
            fd: self
                .fd
                .try_clone()
                .op(|| format!("duplicate netns handle {}", self.name))?,
        })
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// While alive, the thread is in another namespace; dropping it returns the
/// thread to the namespace it came from.
#[derive(Debug)]
pub struct NetnsGuard {
    home: Option<CurrentNetns>,
}

impl NetnsGuard {
    /// Returns home now, reporting failure (drop can only panic).
    pub fn leave(mut self) -> Result<(), NetError> {
        match self.home.take() {
            Some(home) => home.restore(),
            None => Ok(()),
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            // A thread stranded in a decky's namespace would create the next
            // decky's sockets in the wrong place; better to stop here.
            home.restore()
                .expect("returning a thread to its own network namespace must succeed");
        }
    }
}

/// The namespace a thread is in, to return to.
#[derive(Debug)]
struct CurrentNetns(OwnedFd);

impl CurrentNetns {
    fn save() -> Result<Self, NetError> {
        let f = File::open("/proc/thread-self/ns/net").op(|| "open /proc/thread-self/ns/net".into())?;
        Ok(Self(f.into()))
    }

    fn restore(self) -> Result<(), NetError> {
        setns(&self.0, CloneFlags::CLONE_NEWNET).op(|| "return to the original netns".into())
    }
}

fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn check_name(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty() && name.len() <= 200 && !name.contains('/') && name != "." && name != "..";
    if ok {
        Ok(())
    } else {
        Err(NetError::io(
            format!("netns name `{name}`"),
            io::Error::new(io::ErrorKind::InvalidInput, "invalid name"),
        ))
    }
}

/// Makes `/run/netns` a shared mount point, as iproute2 does, so that namespace
/// mounts made here are seen by `ip netns` in other mount namespaces (and the
/// other way round).
fn prepare_dir() -> Result<(), NetError> {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return Ok(());
    }
    match fs::create_dir(NETNS_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(NetError::io(format!("create {NETNS_DIR}"), e)),
    }
    let shared = || {
        mount(
            Some(""),
            NETNS_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => {}
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .op(|| format!("bind-mount {NETNS_DIR}"))?;
            shared().op(|| format!("share {NETNS_DIR}"))?;
        }
        Err(e) => return Err(NetError::io(format!("share {NETNS_DIR}"), e.into())),
    }
    *ready = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_file_at_the_netns_path_is_replaced() {
        if !nix::unistd::geteuid().is_root() {
            assert!(std::env::var("CI").is_err(), "CI runs as root; this test needs it");
            eprintln!("skipped: needs root");
            return;
        }
        let name = format!("dtn{}-stale", std::process::id());
        prepare_dir().unwrap();
        // What a crash between unmount and unlink leaves: a plain file.
        fs::write(path_of(&name), b"").unwrap();
        let opened = Netns::open(&name);
        let exists_after_open = path_of(&name).exists();
        let created = Netns::create(&name);
        let reopened = Netns::open(&name).map(|n| n.is_some());
        let _ = Netns::delete(&name);
        let _ = fs::remove_file(path_of(&name));
        assert!(opened.unwrap().is_none(), "a plain file is no namespace");
        assert!(!exists_after_open, "the stale file must be removed");
        let ns = created.unwrap();
        assert_eq!(ns.name(), name);
        assert!(reopened.unwrap());
    }
}
