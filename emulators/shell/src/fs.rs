//! The fake filesystem: a read-only base tree shared by every session of a
//! decky, and a bounded copy-on-write overlay that takes every write (one per
//! session, or one per decky when configured).
//!
//! Paths are absolute, normalised strings (`/etc/passwd`). Permissions follow
//! the classic owner/group/other bits; root bypasses them except that `/proc`
//! and `/sys` are read-only for everyone.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

/// How many symlinks a lookup follows before `ELOOP`.
const MAX_SYMLINK_HOPS: usize = 16;

/// What a path names.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Arc<[u8]>),
    /// A symbolic link and its target.
    Symlink(String),
    /// A file whose contents are made when read (`/proc/uptime`).
    Generated(Generated),
    /// A character device (`/dev/null` reads empty and swallows writes).
    CharDevice(Device),
    /// An installed program: an ELF image of `size` bytes made only when
    /// read, so a decky's hundreds of binaries cost a few bytes each.
    Program {
        /// The command it runs.
        name: Arc<str>,
        /// Its size on disk.
        size: u64,
    },
}

/// Files whose contents depend on the time of reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    /// `/proc/uptime`.
    Uptime,
    /// `/proc/loadavg`.
    LoadAvg,
}

/// The character devices the tree holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// `/dev/null`.
    Null,
    /// `/dev/zero`.
    Zero,
    /// `/dev/urandom`, `/dev/random`.
    Random,
    /// `/dev/tty`, `/dev/console`.
    Tty,
}

/// One file, directory or link with its metadata.
#[derive(Debug, Clone)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits (`0o755`), including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

impl Node {
    /// A directory owned by `uid:gid`.
    pub fn dir(mode: u32, uid: u32, gid: u32, mtime: i64) -> Self {
        Self {
            kind: NodeKind::Dir,
            mode,
            uid,
            gid,
            mtime,
        }
    }

    /// A regular file.
    pub fn file(data: impl Into<Arc<[u8]>>, mode: u32, uid: u32, gid: u32, mtime: i64) -> Self {
        Self {
            kind: NodeKind::File(data.into()),
            mode,
            uid,
            gid,
            mtime,
        }
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir)
    }

    /// The size `ls -l` shows.
    pub fn size(&self) -> u64 {
        match &self.kind {
            NodeKind::Dir => 4096,
            NodeKind::File(data) => data.len() as u64,
            NodeKind::Symlink(target) => target.len() as u64,
            NodeKind::Generated(_) | NodeKind::CharDevice(_) => 0,
            NodeKind::Program { size, .. } => *size,
        }
    }

    /// The type letter of `ls -l`.
    pub fn type_char(&self) -> char {
        match self.kind {
            NodeKind::Dir => 'd',
            NodeKind::Symlink(_) => 'l',
            NodeKind::CharDevice(_) => 'c',
            NodeKind::File(_) | NodeKind::Generated(_) | NodeKind::Program { .. } => '-',
        }
    }
}

/// `ls -l`'s mode column (strmode without its trailing space): the type
/// letter, then `rwx` three times with setuid, setgid and sticky folded in.
pub fn mode_string(type_char: char, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(type_char);
    for (shift, special, ch) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => ch,
            (true, false) => ch.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `ls -l`'s date column: `%b %e %H:%M` within six months of `now`, else
/// `%b %e  %Y` (UTC).
pub fn ls_time(mtime: i64, now: i64) -> String {
    let c = decnet_emu_sdk::clock::civil(mtime);
    let month = decnet_emu_sdk::clock::MONTHS[c.month as usize - 1];
    if (now - mtime).abs() < 182 * 86_400 {
        format!("{month} {:>2} {:02}:{:02}", c.day, c.hour, c.minute)
    } else {
        format!("{month} {:>2}  {}", c.day, c.year)
    }
}

/// Why a filesystem operation failed, with errno's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    /// ENOENT.
    NotFound,
    /// EACCES.
    PermissionDenied,
    /// ENOTDIR.
    NotADirectory,
    /// EISDIR.
    IsADirectory,
    /// EEXIST.
    Exists,
    /// ENOTEMPTY.
    NotEmpty,
    /// EROFS.
    ReadOnly,
    /// ENOSPC: the overlay is full.
    NoSpace,
    /// ELOOP.
    Loop,
    /// EPERM (e.g. unlinking in `/proc`).
    NotPermitted,
}

impl FsError {
    /// strerror(3) text.
    pub fn message(self) -> &'static str {
        match self {
            FsError::NotFound => "No such file or directory",
            FsError::PermissionDenied => "Permission denied",
            FsError::NotADirectory => "Not a directory",
            FsError::IsADirectory => "Is a directory",
            FsError::Exists => "File exists",
            FsError::NotEmpty => "Directory not empty",
            FsError::ReadOnly => "Read-only file system",
            FsError::NoSpace => "No space left on device",
            FsError::Loop => "Too many levels of symbolic links",
            FsError::NotPermitted => "Operation not permitted",
        }
    }
}

/// Bounds of one overlay.
#[derive(Debug, Clone, Copy)]
pub struct OverlayLimits {
    /// Total bytes of file contents written.
    pub max_bytes: usize,
    /// Number of paths created, changed or deleted.
    pub max_entries: usize,
}

impl Default for OverlayLimits {
    fn default() -> Self {
        Self {
            max_bytes: 8 << 20,
            max_entries: 4096,
        }
    }
}

/// The writes of a session (or a decky): path → new node, or `None` when deleted.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    entries: BTreeMap<String, Option<Node>>,
    bytes: usize,
    limits: OverlayLimits,
}

impl Overlay {
    /// An empty overlay with these bounds.
    pub fn new(limits: OverlayLimits) -> Self {
        Self {
            entries: BTreeMap::new(),
            bytes: 0,
            limits,
        }
    }

    /// Bytes of file contents it holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The base tree, built once per decky.
pub type BaseTree = BTreeMap<String, Node>;

/// One session's view: the shared base plus an overlay.
#[derive(Debug, Clone)]
pub struct Fs {
    base: Arc<BaseTree>,
    overlay: Arc<Mutex<Overlay>>,
}

/// Who is asking, for permission checks.
#[derive(Debug, Clone, Copy)]
pub struct Cred<'a> {
    /// User id.
    pub uid: u32,
    /// Group ids (primary first).
    pub gids: &'a [u32],
}

impl Cred<'_> {
    fn allows(&self, node: &Node, want: u32) -> bool {
        if self.uid == 0 {
            // Root needs an x bit somewhere to execute, nothing else.
            return want != 1 || node.mode & 0o111 != 0 || node.is_dir();
        }
        let bits = if node.uid == self.uid {
            node.mode >> 6
        } else if self.gids.contains(&node.gid) {
            node.mode >> 3
        } else {
            node.mode
        };
        bits & want == want
    }
}

/// Read, write and execute bits for [`Cred`] checks.
pub const R: u32 = 4;
/// Write bit.
pub const W: u32 = 2;
/// Execute / search bit.
pub const X: u32 = 1;

impl Fs {
    /// A view over `base` writing into `overlay`.
    pub fn new(base: Arc<BaseTree>, overlay: Arc<Mutex<Overlay>>) -> Self {
        Self { base, overlay }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Overlay> {
        // A poisoned overlay only means another session panicked mid-write;
        // its map is still a valid map.
        self.overlay.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the overlay, to roll back to.
    pub fn snapshot(&self) -> Overlay {
        self.lock().clone()
    }

    /// Puts back a [`Fs::snapshot`].
    pub fn restore(&self, snapshot: Overlay) {
        *self.lock() = snapshot;
    }

    /// The node at exactly `path`, links not followed.
    pub fn lstat_raw(&self, path: &str) -> Option<Node> {
        if let Some(entry) = self.lock().entries.get(path) {
            return entry.clone();
        }
        self.base.get(path).cloned()
    }

    /// Resolves symlinks in every component; `follow_last` also follows the last one.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<String, FsError> {
        let mut hops = 0;
        let mut pending: Vec<String> = components(path).into_iter().rev().map(str::to_string).collect();
        let mut done = String::new();
        while let Some(part) = pending.pop() {
            if part == "." {
                continue;
            }
            if part == ".." {
                if let Some(i) = done.rfind('/') {
                    done.truncate(i);
                }
                continue;
            }
            let candidate = format!("{done}/{part}");
            match self.lstat_raw(&candidate) {
                None => {
                    if pending.is_empty() {
                        return Ok(candidate);
                    }
                    return Err(FsError::NotFound);
                }
                Some(node) => match node.kind {
                    NodeKind::Symlink(target) if follow_last || !pending.is_empty() => {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(FsError::Loop);
                        }
                        if target.starts_with('/') {
                            done.clear();
                        }
                        for p in components(&target).into_iter().rev() {
                            pending.push(p.to_string());
                        }
                    }
                    NodeKind::Dir => done = candidate,
                    _ if !pending.is_empty() => return Err(FsError::NotADirectory),
                    _ => done = candidate,
                },
            }
        }
        Ok(if done.is_empty() { "/".to_string() } else { done })
    }

    /// The node `path` names, links followed.
    pub fn stat(&self, path: &str) -> Result<(String, Node), FsError> {
        let real = self.resolve(path, true)?;
        let node = self.lstat_raw(&real).ok_or(FsError::NotFound)?;
        Ok((real, node))
    }

    /// The node `path` names, the last link not followed.
    pub fn lstat(&self, path: &str) -> Result<(String, Node), FsError> {
        let real = self.resolve(path, false)?;
        let node = self.lstat_raw(&real).ok_or(FsError::NotFound)?;
        Ok((real, node))
    }

    /// Checks search permission on every directory above `real`.
    pub fn check_traverse(&self, real: &str, cred: Cred<'_>) -> Result<(), FsError> {
        let mut prefix = String::new();
        let parts = components(real);
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            prefix.push('/');
            prefix.push_str(part);
            if let Some(node) = self.lstat_raw(&prefix)
                && node.is_dir()
                && !cred.allows(&node, X)
            {
                return Err(FsError::PermissionDenied);
            }
        }
        Ok(())
    }

    /// Reads a file as `cred`. `/proc` files made at read time come back as
    /// [`Generated`] for the caller to fill in.
    pub fn read(&self, path: &str, cred: Cred<'_>) -> Result<Content, FsError> {
        let (real, node) = self.stat(path)?;
        self.check_traverse(&real, cred)?;
        if !cred.allows(&node, R) {
            return Err(FsError::PermissionDenied);
        }
        match node.kind {
            NodeKind::Dir => Err(FsError::IsADirectory),
            NodeKind::File(data) => Ok(Content::Bytes(data)),
            NodeKind::Program { name, size } => Ok(Content::Bytes(program_image(&name, size).into())),
            NodeKind::Generated(g) => Ok(Content::Generated(g)),
            NodeKind::CharDevice(d) => Ok(Content::Device(d)),
            NodeKind::Symlink(_) => Err(FsError::Loop),
        }
    }

    /// Lists a directory (names only, sorted), as `cred`.
    pub fn list(&self, path: &str, cred: Cred<'_>) -> Result<Vec<(String, Node)>, FsError> {
        let (real, node) = self.stat(path)?;
        self.check_traverse(&real, cred)?;
        if !node.is_dir() {
            return Err(FsError::NotADirectory);
        }
        if !cred.allows(&node, R) {
            return Err(FsError::PermissionDenied);
        }
        Ok(self.children(&real))
    }

    /// The entries directly under `dir` (a resolved directory path).
    pub fn children(&self, dir: &str) -> Vec<(String, Node)> {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        let mut out: BTreeMap<String, Option<Node>> = BTreeMap::new();
        let range = (Bound::Excluded(prefix.clone()), Bound::Unbounded);
        for (path, node) in self.base.range::<String, _>(range.clone()) {
            let Some(rest) = path.strip_prefix(&prefix) else { break };
            if !rest.is_empty() && !rest.contains('/') {
                out.insert(rest.to_string(), Some(node.clone()));
            }
        }
        let overlay = self.lock();
        for (path, node) in overlay.entries.range::<String, _>(range) {
            let Some(rest) = path.strip_prefix(&prefix) else { break };
            if !rest.is_empty() && !rest.contains('/') {
                out.insert(rest.to_string(), node.clone());
            }
        }
        out.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
    }

    fn parent_for_create(&self, path: &str, cred: Cred<'_>) -> Result<String, FsError> {
        let real = self.resolve(path, true)?;
        if is_read_only(&real) {
            return Err(FsError::ReadOnly);
        }
        let parent = parent_of(&real);
        let (_, pnode) = self.stat(&parent)?;
        if !pnode.is_dir() {
            return Err(FsError::NotADirectory);
        }
        self.check_traverse(&real, cred)?;
        Ok(real)
    }

    /// Writes (or appends to) a regular file as `cred`, creating it with
    /// `mode` (after umask) when missing. Returns the resolved path.
    pub fn write(&self, path: &str, data: &[u8], append: bool, cred: Cred<'_>, now: i64) -> Result<String, FsError> {
        let real = self.parent_for_create(path, cred)?;
        let existing = self.lstat_raw(&real);
        let node = match existing {
            Some(node) => {
                match node.kind {
                    NodeKind::Dir => return Err(FsError::IsADirectory),
                    NodeKind::CharDevice(_) => return Ok(real),
                    NodeKind::Generated(_) => return Err(FsError::PermissionDenied),
                    _ => {}
                }
                if !cred.allows(&node, W) {
                    return Err(FsError::PermissionDenied);
                }
                let mut bytes = match (&node.kind, append) {
                    (NodeKind::File(old), true) => old.to_vec(),
                    _ => Vec::new(),
                };
                bytes.extend_from_slice(data);
                Node {
                    kind: NodeKind::File(bytes.into()),
                    mtime: now,
                    ..node
                }
            }
            None => {
                let (_, parent) = self.stat(&parent_of(&real))?;
                if !cred.allows(&parent, W | X) {
                    return Err(FsError::PermissionDenied);
                }
                let gid = cred.gids.first().copied().unwrap_or(cred.uid);
                Node::file(data.to_vec(), 0o644, cred.uid, gid, now)
            }
        };
        self.put(&real, Some(node))?;
        Ok(real)
    }

    /// Creates a directory.
    pub fn mkdir(&self, path: &str, cred: Cred<'_>, now: i64) -> Result<(), FsError> {
        let real = self.parent_for_create(path, cred)?;
        if self.lstat_raw(&real).is_some() {
            return Err(FsError::Exists);
        }
        let (_, parent) = self.stat(&parent_of(&real))?;
        if !cred.allows(&parent, W | X) {
            return Err(FsError::PermissionDenied);
        }
        let gid = cred.gids.first().copied().unwrap_or(cred.uid);
        self.put(&real, Some(Node::dir(0o755, cred.uid, gid, now)))
    }

    /// Removes a file or link (not a directory).
    pub fn unlink(&self, path: &str, cred: Cred<'_>) -> Result<(), FsError> {
        let (real, node) = self.lstat(path)?;
        if is_read_only(&real) {
            return Err(FsError::ReadOnly);
        }
        if node.is_dir() {
            return Err(FsError::IsADirectory);
        }
        self.check_removal(&real, cred)?;
        self.put(&real, None)
    }

    /// Removes an empty directory.
    pub fn rmdir(&self, path: &str, cred: Cred<'_>) -> Result<(), FsError> {
        let (real, node) = self.lstat(path)?;
        if !node.is_dir() {
            return Err(FsError::NotADirectory);
        }
        if is_read_only(&real) || real == "/" {
            return Err(if real == "/" {
                FsError::NotPermitted
            } else {
                FsError::ReadOnly
            });
        }
        if !self.children(&real).is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.check_removal(&real, cred)?;
        self.put(&real, None)
    }

    fn check_removal(&self, real: &str, cred: Cred<'_>) -> Result<(), FsError> {
        self.check_traverse(real, cred)?;
        let (_, parent) = self.stat(&parent_of(real))?;
        if !cred.allows(&parent, W | X) {
            return Err(FsError::PermissionDenied);
        }
        Ok(())
    }

    /// Replaces a node's metadata or contents directly (chmod, chown, touch,
    /// cp, mv). The caller checks permissions.
    pub fn set(&self, real: &str, node: Node) -> Result<(), FsError> {
        if is_read_only(real) {
            return Err(FsError::ReadOnly);
        }
        self.put(real, Some(node))
    }

    /// Deletes a path without checks (the second half of `mv`).
    pub fn remove_raw(&self, real: &str) -> Result<(), FsError> {
        self.put(real, None)
    }

    fn put(&self, real: &str, node: Option<Node>) -> Result<(), FsError> {
        let mut overlay = self.lock();
        let new_bytes = match &node {
            Some(Node {
                kind: NodeKind::File(d),
                ..
            }) => d.len(),
            _ => 0,
        };
        let old_bytes = match overlay.entries.get(real) {
            Some(Some(Node {
                kind: NodeKind::File(d),
                ..
            })) => d.len(),
            _ => 0,
        };
        let total = overlay.bytes - old_bytes + new_bytes;
        let is_new = !overlay.entries.contains_key(real);
        if total > overlay.limits.max_bytes || (is_new && overlay.entries.len() >= overlay.limits.max_entries) {
            return Err(FsError::NoSpace);
        }
        overlay.bytes = total;
        overlay.entries.insert(real.to_string(), node);
        Ok(())
    }
}

/// What a read returned.
#[derive(Debug, Clone)]
pub enum Content {
    /// A file's bytes.
    Bytes(Arc<[u8]>),
    /// A `/proc` file the caller renders.
    Generated(Generated),
    /// A device.
    Device(Device),
}

/// The bytes of an installed program: an x86-64 ELF header, the command's
/// name (how the shell knows what a copied binary runs), zero padding.
pub fn program_image(name: &str, size: u64) -> Vec<u8> {
    let mut data = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0\x01\0\0\0".to_vec();
    data.extend_from_slice(name.as_bytes());
    data.push(0);
    data.resize((size as usize).max(data.len()), 0);
    data
}

/// Whether writes under `real` are refused for everyone.
pub fn is_read_only(real: &str) -> bool {
    real == "/proc" || real.starts_with("/proc/") || real == "/sys" || real.starts_with("/sys/")
}

/// The non-empty components of a path.
pub fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|p| !p.is_empty()).collect()
}

/// The directory part of a normalised absolute path.
pub fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => path[..i].to_string(),
    }
}

/// Joins `path` onto `cwd` and removes `.`/`..` lexically (as the shell's `cd` does).
pub fn absolute(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    let mut out: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Fs {
        let mut base = BaseTree::new();
        base.insert("/".into(), Node::dir(0o755, 0, 0, 0));
        base.insert("/etc".into(), Node::dir(0o755, 0, 0, 0));
        base.insert(
            "/etc/shadow".into(),
            Node::file(b"root:*:1::::::\n".to_vec(), 0o640, 0, 42, 0),
        );
        base.insert(
            "/etc/passwd".into(),
            Node::file(b"root:x:0:0\n".to_vec(), 0o644, 0, 0, 0),
        );
        base.insert("/proc".into(), Node::dir(0o555, 0, 0, 0));
        base.insert("/proc/version".into(), Node::file(b"Linux\n".to_vec(), 0o444, 0, 0, 0));
        base.insert("/tmp".into(), Node::dir(0o1777, 0, 0, 0));
        base.insert("/root".into(), Node::dir(0o700, 0, 0, 0));
        base.insert("/root/secret".into(), Node::file(b"x".to_vec(), 0o644, 0, 0, 0));
        base.insert(
            "/bin".into(),
            Node {
                kind: NodeKind::Symlink("usr/bin".into()),
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
        );
        base.insert("/usr".into(), Node::dir(0o755, 0, 0, 0));
        base.insert("/usr/bin".into(), Node::dir(0o755, 0, 0, 0));
        base.insert("/usr/bin/ls".into(), Node::file(b"\x7fELF".to_vec(), 0o755, 0, 0, 0));
        Fs::new(
            Arc::new(base),
            Arc::new(Mutex::new(Overlay::new(OverlayLimits {
                max_bytes: 100,
                max_entries: 10,
            }))),
        )
    }

    const ROOT: Cred<'static> = Cred { uid: 0, gids: &[0] };
    const USER: Cred<'static> = Cred {
        uid: 1000,
        gids: &[1000],
    };

    #[test]
    fn missing_files_and_directories() {
        let fs = tree();
        assert_eq!(fs.read("/nope", ROOT).err(), Some(FsError::NotFound));
        assert_eq!(fs.unlink("/tmp/nope", ROOT).err(), Some(FsError::NotFound));
        assert_eq!(fs.read("/etc", ROOT).err(), Some(FsError::IsADirectory));
        assert_eq!(fs.read("/etc/passwd/x", ROOT).err(), Some(FsError::NotADirectory));
        assert_eq!(fs.unlink("/etc", ROOT).err(), Some(FsError::IsADirectory));
    }

    #[test]
    fn permissions_for_users() {
        let fs = tree();
        assert_eq!(fs.read("/etc/shadow", USER).err(), Some(FsError::PermissionDenied));
        assert!(fs.read("/etc/shadow", ROOT).is_ok());
        assert_eq!(fs.read("/root/secret", USER).err(), Some(FsError::PermissionDenied));
        assert_eq!(fs.list("/root", USER).err(), Some(FsError::PermissionDenied));
        assert_eq!(
            fs.write("/etc/passwd", b"x", false, USER, 1).err(),
            Some(FsError::PermissionDenied)
        );
        assert_eq!(
            fs.write("/etc/new", b"x", false, USER, 1).err(),
            Some(FsError::PermissionDenied)
        );
        assert!(fs.write("/tmp/mine", b"x", false, USER, 1).is_ok());
        assert_eq!(fs.lstat("/tmp/mine").map(|(_, n)| n.uid), Ok(1000));
    }

    #[test]
    fn proc_is_read_only_even_for_root() {
        let fs = tree();
        assert_eq!(
            fs.write("/proc/version", b"x", false, ROOT, 1).err(),
            Some(FsError::ReadOnly)
        );
        assert_eq!(fs.unlink("/proc/version", ROOT).err(), Some(FsError::ReadOnly));
        assert_eq!(fs.mkdir("/proc/x", ROOT, 1).err(), Some(FsError::ReadOnly));
    }

    #[test]
    fn symlinks_resolve() {
        let fs = tree();
        assert_eq!(fs.resolve("/bin/ls", true), Ok("/usr/bin/ls".to_string()));
        assert!(fs.list("/bin", ROOT).is_ok_and(|l| l.iter().any(|(n, _)| n == "ls")));
    }

    #[test]
    fn overlays_are_isolated_and_bounded() {
        let a = tree();
        let b = Fs::new(
            a.base.clone(),
            Arc::new(Mutex::new(Overlay::new(OverlayLimits::default()))),
        );
        a.write("/tmp/x", b"hello", false, ROOT, 1).unwrap();
        assert!(a.read("/tmp/x", ROOT).is_ok());
        assert_eq!(b.read("/tmp/x", ROOT).err(), Some(FsError::NotFound));
        assert_eq!(
            a.write("/tmp/big", &[0; 200], false, ROOT, 1).err(),
            Some(FsError::NoSpace)
        );
        a.unlink("/etc/passwd", ROOT).unwrap();
        assert_eq!(a.read("/etc/passwd", ROOT).err(), Some(FsError::NotFound));
        assert!(b.read("/etc/passwd", ROOT).is_ok());
        assert!(!a.children("/etc").iter().any(|(n, _)| n == "passwd"));
    }

    #[test]
    fn rmdir_needs_empty() {
        let fs = tree();
        assert_eq!(fs.rmdir("/etc", ROOT).err(), Some(FsError::NotEmpty));
        fs.mkdir("/tmp/d", ROOT, 1).unwrap();
        assert_eq!(fs.mkdir("/tmp/d", ROOT, 1).err(), Some(FsError::Exists));
        fs.rmdir("/tmp/d", ROOT).unwrap();
        assert_eq!(fs.rmdir("/tmp/d", ROOT).err(), Some(FsError::NotFound));
    }
}
