//! A sans-IO SFTP version 3 server (draft-ietf-secsh-filexfer-02, the
//! version OpenSSH's `sftp-server` speaks and OpenSSH 9's `scp` uses) over a
//! [`Backend`] that is the fake filesystem.
//!
//! Bytes of the channel go in with [`SftpServer::feed`]; replies come out.
//! Packets are uint32-length-prefixed and reassembled across channel data
//! messages; a packet over [`MAX_PACKET`] or one that does not parse ends the
//! subsystem (as sftp-server exits on a bad message), never the process.
//!
//! Uploads are buffered in memory (bounded per file and in total) and handed
//! to the backend in one piece on CLOSE, so each uploaded file is captured
//! once, whole.

use std::collections::BTreeMap;

use decnet_shell::fs::FsError;

/// Largest packet accepted (OpenSSH's sftp-server takes 256 KiB).
pub const MAX_PACKET: usize = 256 * 1024;
/// Open handles per subsystem (files and directories).
pub const MAX_HANDLES: usize = 32;
/// Largest file a handle buffers, for reading or writing (the size of a
/// session's whole overlay; the fake programs are far smaller).
pub const MAX_FILE: usize = 8 << 20;
/// File bytes buffered across all open handles, read or write.
pub const MAX_BUFFERED: usize = 16 << 20;
/// Names per READDIR reply (sftp-server sends up to 100).
const NAMES_PER_READDIR: usize = 100;

const SSH_FXP_INIT: u8 = 1;
const SSH_FXP_VERSION: u8 = 2;
const SSH_FXP_OPEN: u8 = 3;
const SSH_FXP_CLOSE: u8 = 4;
const SSH_FXP_READ: u8 = 5;
const SSH_FXP_WRITE: u8 = 6;
const SSH_FXP_LSTAT: u8 = 7;
const SSH_FXP_FSTAT: u8 = 8;
const SSH_FXP_SETSTAT: u8 = 9;
const SSH_FXP_FSETSTAT: u8 = 10;
const SSH_FXP_OPENDIR: u8 = 11;
const SSH_FXP_READDIR: u8 = 12;
const SSH_FXP_REMOVE: u8 = 13;
const SSH_FXP_MKDIR: u8 = 14;
const SSH_FXP_RMDIR: u8 = 15;
const SSH_FXP_REALPATH: u8 = 16;
const SSH_FXP_STAT: u8 = 17;
const SSH_FXP_RENAME: u8 = 18;
const SSH_FXP_READLINK: u8 = 19;
const SSH_FXP_SYMLINK: u8 = 20;
const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXP_DATA: u8 = 103;
const SSH_FXP_NAME: u8 = 104;
const SSH_FXP_ATTRS: u8 = 105;
const SSH_FXP_EXTENDED: u8 = 200;
const SSH_FXP_EXTENDED_REPLY: u8 = 201;

/// `limits@openssh.com`'s open-handle figure: sftp-server offers its
/// descriptor limit less five, and sshd under systemd has 1024.
const ADVERTISED_HANDLES: u64 = 1019;

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

const FXF_READ: u32 = 0x1;
const FXF_WRITE: u32 = 0x2;
const FXF_APPEND: u32 = 0x4;
const FXF_CREAT: u32 = 0x8;
const FXF_TRUNC: u32 = 0x10;
const FXF_EXCL: u32 = 0x20;

/// SSH_FX_* status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    OpUnsupported = 8,
}

impl Status {
    /// The message sftp-server sends with each code.
    fn message(self) -> &'static str {
        match self {
            Status::Ok => "Success",
            Status::Eof => "End of file",
            Status::NoSuchFile => "No such file",
            Status::PermissionDenied => "Permission denied",
            Status::Failure => "Failure",
            Status::BadMessage => "Bad message",
            Status::OpUnsupported => "Operation unsupported",
        }
    }
}

impl From<FsError> for Status {
    // sftp-server maps errno the same way: ENOENT, EACCES/EPERM, the rest FAILURE.
    fn from(e: FsError) -> Self {
        match e {
            FsError::NotFound => Status::NoSuchFile,
            FsError::PermissionDenied | FsError::NotPermitted | FsError::ReadOnly => Status::PermissionDenied,
            _ => Status::Failure,
        }
    }
}

/// What STAT reports about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including the file type (`0o100644`).
    pub mode: u32,
    pub mtime: i64,
}

impl Attrs {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// The filesystem the server works on. Paths are absolute and normalised.
pub trait Backend {
    /// Where relative paths start (the login's home).
    fn cwd(&self) -> String;
    /// `path` with symlinks resolved (the last component may be missing).
    fn realpath(&self, path: &str) -> Result<String, FsError>;
    fn stat(&self, path: &str, follow: bool) -> Result<Attrs, FsError>;
    fn readlink(&self, path: &str) -> Result<String, FsError>;
    /// Entries of a directory, `.` and `..` not included.
    fn list(&self, path: &str) -> Result<Vec<(String, Attrs)>, FsError>;
    /// A whole file, as the user (a download).
    fn read(&mut self, path: &str) -> Result<Vec<u8>, FsError>;
    /// Whether the user may write `path` (create it when missing), checked
    /// at OPEN as open(2) would, though the bytes arrive only at CLOSE.
    fn may_write(&self, path: &str) -> Result<(), FsError>;
    /// Replaces a whole file, as the user (an upload).
    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), FsError>;
    fn mkdir(&mut self, path: &str) -> Result<(), FsError>;
    fn rmdir(&mut self, path: &str) -> Result<(), FsError>;
    fn remove(&mut self, path: &str) -> Result<(), FsError>;
    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError>;
    fn user_name(&self, uid: u32) -> String;
    fn group_name(&self, gid: u32) -> String;
    /// Makes `link` a symbolic link to `target` (stored as given).
    fn symlink(&mut self, target: &str, link: &str) -> Result<(), FsError>;
    /// A user's home directory, if the user exists.
    fn home_of(&self, user: &str) -> Option<String>;
    /// The root filesystem's size and use, in KiB (what `df` shows).
    fn disk(&self) -> Disk;
}

/// A filesystem's size and use, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    pub total_kb: u64,
    pub used_kb: u64,
}

enum Handle {
    Read {
        path: String,
        data: Vec<u8>,
    },
    Write {
        path: String,
        data: Vec<u8>,
        append: bool,
    },
    Dir {
        path: String,
        entries: Vec<(String, Attrs)>,
        next: usize,
    },
}

/// One SFTP subsystem on one channel.
pub struct SftpServer {
    /// The `name@openssh.com`-style extensions VERSION offers (and that are
    /// served): the emulated release's list, in its order.
    extensions: Vec<(String, String)>,
    input: Vec<u8>,
    handles: BTreeMap<u32, Handle>,
    next_handle: u32,
    buffered: usize,
    initialised: bool,
    closed: bool,
}

/// Why the subsystem ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.buf.split_first().ok_or(Malformed("short packet"))?;
        self.buf = rest;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes_n(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn bytes_n(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed("short packet"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.bytes_n(n)
    }
    fn path(&mut self) -> Result<String, Malformed> {
        Ok(String::from_utf8_lossy(self.string()?).into_owned())
    }
    /// Reads and discards an ATTRS (SETSTAT is accepted, not applied).
    fn attrs(&mut self) -> Result<(), Malformed> {
        let flags = self.u32()?;
        if flags & ATTR_SIZE != 0 {
            self.u64()?;
        }
        if flags & ATTR_UIDGID != 0 {
            self.bytes_n(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            self.u32()?;
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.bytes_n(8)?;
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = self.u32()?;
            for _ in 0..n {
                self.string()?;
                self.string()?;
            }
        }
        Ok(())
    }
}

/// A reply being built: type and fields; framed by [`Reply::finish`].
struct Reply(Vec<u8>);

impl Reply {
    fn new(kind: u8, id: u32) -> Self {
        let mut r = Reply(vec![0, 0, 0, 0, kind]);
        r.u32(id);
        r
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn string(&mut self, s: &[u8]) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s);
    }
    fn attrs(&mut self, a: &Attrs) {
        self.u32(ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME);
        self.u64(a.size);
        self.u32(a.uid);
        self.u32(a.gid);
        self.u32(a.mode);
        let t = a.mtime.clamp(0, i64::from(u32::MAX)) as u32;
        self.u32(t);
        self.u32(t);
    }
    fn finish(mut self, out: &mut Vec<u8>) {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.0);
    }
}

fn status(out: &mut Vec<u8>, id: u32, code: Status) {
    let mut r = Reply::new(SSH_FXP_STATUS, id);
    r.u32(code as u32);
    r.string(code.message().as_bytes());
    r.string(b"");
    r.finish(out);
}

/// What one fed chunk produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Bytes for the channel.
    pub reply: Vec<u8>,
    /// Set when the subsystem ended (a malformed packet): close the channel.
    pub ended: Option<Malformed>,
}

impl SftpServer {
    pub fn new(extensions: Vec<(String, String)>) -> Self {
        Self {
            extensions,
            input: Vec::new(),
            handles: BTreeMap::new(),
            next_handle: 0,
            buffered: 0,
            initialised: false,
            closed: false,
        }
    }

    /// Whether a malformed packet ended the subsystem.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Takes channel bytes; answers every complete packet. `now` dates
    /// READDIR's long names.
    pub fn feed(&mut self, backend: &mut dyn Backend, now: i64, data: &[u8]) -> Fed {
        let mut fed = Fed::default();
        if self.closed {
            return fed;
        }
        self.input.extend_from_slice(data);
        let mut used = 0;
        loop {
            let rest = &self.input[used..];
            if rest.len() < 4 {
                break;
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len == 0 || len > MAX_PACKET {
                fed.ended = Some(Malformed("bad packet length"));
                break;
            }
            if rest.len() < 4 + len {
                break;
            }
            let packet = rest[4..4 + len].to_vec();
            used += 4 + len;
            if let Err(e) = self.packet(backend, now, &packet, &mut fed.reply) {
                fed.ended = Some(e);
                break;
            }
        }
        self.input.drain(..used);
        if fed.ended.is_some() {
            self.closed = true;
            self.input = Vec::new();
            self.handles.clear();
            self.buffered = 0;
        }
        fed
    }

    fn abs(backend: &dyn Backend, path: &str) -> String {
        decnet_shell::fs::absolute(&backend.cwd(), path)
    }

    fn add_handle(&mut self, h: Handle) -> Option<u32> {
        if self.handles.len() >= MAX_HANDLES {
            return None;
        }
        // Skip ids still open once the counter wraps (never reuse a live one).
        while self.handles.contains_key(&self.next_handle) {
            self.next_handle = self.next_handle.wrapping_add(1);
        }
        let id = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        self.handles.insert(id, h);
        Some(id)
    }

    fn handle_reply(out: &mut Vec<u8>, id: u32, handle: u32) {
        let mut r = Reply::new(SSH_FXP_HANDLE, id);
        r.string(&handle.to_be_bytes());
        r.finish(out);
    }

    fn packet(
        &mut self,
        backend: &mut dyn Backend,
        now: i64,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        let mut rd = Reader { buf: packet };
        let kind = rd.u8()?;
        if kind == SSH_FXP_INIT {
            let _version = rd.u32()?;
            self.initialised = true;
            // VERSION has no request id; the release's extensions follow.
            let mut r = Reply(vec![0, 0, 0, 0, SSH_FXP_VERSION]);
            r.u32(3);
            for (name, data) in &self.extensions {
                r.string(name.as_bytes());
                r.string(data.as_bytes());
            }
            r.finish(out);
            return Ok(());
        }
        if !self.initialised {
            return Err(Malformed("request before init"));
        }
        let id = rd.u32()?;
        match kind {
            SSH_FXP_REALPATH => {
                let path = rd.path()?;
                let path = if path.is_empty() { ".".to_string() } else { path };
                match backend.realpath(&Self::abs(backend, &path)) {
                    Ok(real) => name_reply(out, id, &real),
                    Err(e) => status(out, id, e.into()),
                }
            }
            SSH_FXP_STAT | SSH_FXP_LSTAT => {
                let path = Self::abs(backend, &rd.path()?);
                match backend.stat(&path, kind == SSH_FXP_STAT) {
                    Ok(a) => attrs_reply(out, id, &a),
                    Err(e) => status(out, id, e.into()),
                }
            }
            SSH_FXP_FSTAT => {
                let h = handle_of(&mut rd)?;
                match self.handles.get(&h) {
                    Some(Handle::Read { path, data }) => match backend.stat(path, true) {
                        Ok(mut a) => {
                            a.size = data.len() as u64;
                            attrs_reply(out, id, &a);
                        }
                        Err(e) => status(out, id, e.into()),
                    },
                    Some(Handle::Write { path, data, .. }) => {
                        let a = backend.stat(path, true).unwrap_or(Attrs {
                            size: 0,
                            uid: 0,
                            gid: 0,
                            mode: 0o100644,
                            mtime: now,
                        });
                        attrs_reply(
                            out,
                            id,
                            &Attrs {
                                size: data.len() as u64,
                                ..a
                            },
                        );
                    }
                    Some(Handle::Dir { path, .. }) => match backend.stat(path, true) {
                        Ok(a) => attrs_reply(out, id, &a),
                        Err(e) => status(out, id, e.into()),
                    },
                    None => status(out, id, Status::Failure),
                }
            }
            SSH_FXP_SETSTAT => {
                let path = Self::abs(backend, &rd.path()?);
                rd.attrs()?;
                // Accepted without change (chmod/utimes after an upload), but
                // a missing path is still an error as it would be.
                match backend.stat(&path, true) {
                    Ok(_) => status(out, id, Status::Ok),
                    Err(e) => status(out, id, e.into()),
                }
            }
            SSH_FXP_FSETSTAT => {
                let h = handle_of(&mut rd)?;
                rd.attrs()?;
                let code = if self.handles.contains_key(&h) {
                    Status::Ok
                } else {
                    Status::Failure
                };
                status(out, id, code);
            }
            SSH_FXP_OPEN => {
                let path = Self::abs(backend, &rd.path()?);
                let pflags = rd.u32()?;
                rd.attrs()?;
                let code = self.open(backend, id, &path, pflags, out);
                if let Some(code) = code {
                    status(out, id, code);
                }
            }
            SSH_FXP_CLOSE => {
                let h = handle_of(&mut rd)?;
                let code = match self.handles.remove(&h) {
                    None => Status::Failure,
                    Some(Handle::Write { path, data, .. }) => {
                        self.buffered = self.buffered.saturating_sub(data.len());
                        match backend.write(&path, &data) {
                            Ok(()) => Status::Ok,
                            Err(e) => e.into(),
                        }
                    }
                    Some(Handle::Read { data, .. }) => {
                        self.buffered = self.buffered.saturating_sub(data.len());
                        Status::Ok
                    }
                    Some(Handle::Dir { .. }) => Status::Ok,
                };
                status(out, id, code);
            }
            SSH_FXP_READ => {
                let h = handle_of(&mut rd)?;
                let offset = rd.u64()?;
                let len = rd.u32()?;
                match self.handles.get(&h) {
                    Some(Handle::Read { data, .. }) => {
                        if offset >= data.len() as u64 {
                            status(out, id, Status::Eof);
                        } else {
                            let start = offset as usize;
                            // sftp-server caps a read at its packet size.
                            let n = (len as usize).min(MAX_PACKET - 1024).min(data.len() - start);
                            let mut r = Reply::new(SSH_FXP_DATA, id);
                            r.string(&data[start..start + n]);
                            r.finish(out);
                        }
                    }
                    _ => status(out, id, Status::Failure),
                }
            }
            SSH_FXP_WRITE => {
                let h = handle_of(&mut rd)?;
                let offset = rd.u64()?;
                let chunk = rd.string()?;
                let code = match self.handles.get_mut(&h) {
                    Some(Handle::Write { data, append, .. }) => {
                        let start = if *append {
                            data.len()
                        } else {
                            offset.min(MAX_FILE as u64) as usize
                        };
                        let end = start.saturating_add(chunk.len());
                        let grow = end.saturating_sub(data.len());
                        if end > MAX_FILE || self.buffered + grow > MAX_BUFFERED {
                            // What a full disk answers.
                            Status::Failure
                        } else {
                            if data.len() < end {
                                data.resize(end, 0);
                            }
                            data[start..end].copy_from_slice(chunk);
                            self.buffered += grow;
                            Status::Ok
                        }
                    }
                    _ => Status::Failure,
                };
                status(out, id, code);
            }
            SSH_FXP_OPENDIR => {
                let path = Self::abs(backend, &rd.path()?);
                match backend.list(&path) {
                    Ok(list) => {
                        let mut entries = Vec::with_capacity(list.len() + 2);
                        for name in [".", ".."] {
                            let target = if name == "." {
                                path.clone()
                            } else {
                                decnet_shell::fs::parent_of(&path)
                            };
                            if let Ok(a) = backend.stat(&target, true) {
                                entries.push((name.to_string(), a));
                            }
                        }
                        entries.extend(list);
                        match self.add_handle(Handle::Dir { path, entries, next: 0 }) {
                            Some(h) => Self::handle_reply(out, id, h),
                            None => status(out, id, Status::Failure),
                        }
                    }
                    Err(e) => status(out, id, e.into()),
                }
            }
            SSH_FXP_READDIR => {
                let h = handle_of(&mut rd)?;
                match self.handles.get_mut(&h) {
                    Some(Handle::Dir { entries, next, .. }) => {
                        if *next >= entries.len() {
                            status(out, id, Status::Eof);
                        } else {
                            let end = (*next + NAMES_PER_READDIR).min(entries.len());
                            let mut r = Reply::new(SSH_FXP_NAME, id);
                            r.u32((end - *next) as u32);
                            for (name, a) in &entries[*next..end] {
                                r.string(name.as_bytes());
                                r.string(longname(backend, name, a, now).as_bytes());
                                r.attrs(a);
                            }
                            r.finish(out);
                            *next = end;
                        }
                    }
                    _ => status(out, id, Status::Failure),
                }
            }
            SSH_FXP_REMOVE => {
                let path = Self::abs(backend, &rd.path()?);
                status(out, id, result(backend.remove(&path)));
            }
            SSH_FXP_MKDIR => {
                let path = Self::abs(backend, &rd.path()?);
                rd.attrs()?;
                status(out, id, result(backend.mkdir(&path)));
            }
            SSH_FXP_RMDIR => {
                let path = Self::abs(backend, &rd.path()?);
                status(out, id, result(backend.rmdir(&path)));
            }
            SSH_FXP_RENAME => {
                let from = Self::abs(backend, &rd.path()?);
                let to = Self::abs(backend, &rd.path()?);
                status(out, id, result(backend.rename(&from, &to)));
            }
            SSH_FXP_READLINK => {
                let path = Self::abs(backend, &rd.path()?);
                match backend.readlink(&path) {
                    Ok(target) => name_reply(out, id, &target),
                    Err(e) => status(out, id, e.into()),
                }
            }
            SSH_FXP_SYMLINK => {
                // OpenSSH sends the link's target first, then the link.
                let target = rd.path()?;
                let link = Self::abs(backend, &rd.path()?);
                status(out, id, result(backend.symlink(&target, &link)));
            }
            SSH_FXP_EXTENDED => {
                let name = String::from_utf8_lossy(rd.string()?).into_owned();
                if self.extensions.iter().any(|(n, _)| *n == name) {
                    self.extended(backend, id, &name, &mut rd, out)?;
                } else {
                    status(out, id, Status::OpUnsupported);
                }
            }
            _ => status(out, id, Status::OpUnsupported),
        }
        Ok(())
    }

    /// An offered `EXTENDED` request, answered as sftp-server does.
    fn extended(
        &mut self,
        backend: &mut dyn Backend,
        id: u32,
        name: &str,
        rd: &mut Reader<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        match name {
            "posix-rename@openssh.com" => {
                let from = Self::abs(backend, &rd.path()?);
                let to = Self::abs(backend, &rd.path()?);
                // rename(2): a file in the way is replaced.
                let code = match backend.stat(&to, false) {
                    Ok(a) if !a.is_dir() && backend.stat(&from, false).is_ok() => {
                        result(backend.remove(&to).and_then(|()| backend.rename(&from, &to)))
                    }
                    _ => result(backend.rename(&from, &to)),
                };
                status(out, id, code);
            }
            "statvfs@openssh.com" | "fstatvfs@openssh.com" => {
                let known = if name.starts_with('f') {
                    self.handles.contains_key(&handle_of(rd)?)
                } else {
                    backend.stat(&Self::abs(backend, &rd.path()?), true).is_ok()
                };
                if known {
                    statvfs_reply(out, id, backend.disk());
                } else {
                    status(out, id, Status::NoSuchFile);
                }
            }
            "hardlink@openssh.com" => {
                let from = Self::abs(backend, &rd.path()?);
                let to = Self::abs(backend, &rd.path()?);
                let code = match (backend.stat(&from, false), backend.stat(&to, false)) {
                    (Err(e), _) => e.into(),
                    (Ok(_), Ok(_)) => Status::Failure,
                    (Ok(a), _) if a.is_dir() => Status::PermissionDenied,
                    (Ok(_), Err(_)) => result(backend.read(&from).and_then(|data| backend.write(&to, &data))),
                };
                status(out, id, code);
            }
            "fsync@openssh.com" => {
                let known = self.handles.contains_key(&handle_of(rd)?);
                status(out, id, if known { Status::Ok } else { Status::Failure });
            }
            "lsetstat@openssh.com" => {
                let path = Self::abs(backend, &rd.path()?);
                rd.attrs()?;
                status(out, id, result(backend.stat(&path, false).map(|_| ())));
            }
            "limits@openssh.com" => {
                let mut r = Reply::new(SSH_FXP_EXTENDED_REPLY, id);
                r.u64(MAX_PACKET as u64);
                r.u64((MAX_PACKET - 1024) as u64);
                r.u64((MAX_PACKET - 1024) as u64);
                r.u64(ADVERTISED_HANDLES);
                r.finish(out);
            }
            "expand-path@openssh.com" => {
                let path = rd.path()?;
                match expand_tilde(backend, &path) {
                    Some(path) => match backend.realpath(&Self::abs(backend, &path)) {
                        Ok(real) => name_reply(out, id, &real),
                        Err(e) => status(out, id, e.into()),
                    },
                    None => status(out, id, Status::Failure),
                }
            }
            "home-directory" => match backend.home_of(&rd.path()?) {
                Some(home) => name_reply(out, id, &home),
                None => status(out, id, Status::Failure),
            },
            "copy-data" => {
                let from = handle_of(rd)?;
                let offset = rd.u64()?;
                let len = rd.u64()?;
                let to = handle_of(rd)?;
                let at = rd.u64()?;
                let code = self.copy_data(from, offset, len, to, at);
                status(out, id, code);
            }
            "users-groups-by-id@openssh.com" => {
                let mut uids = Reader { buf: rd.string()? };
                let mut gids = Reader { buf: rd.string()? };
                // Unknown ids get an empty name (the number is `ls`'s fallback).
                let names = |ids: &mut Reader<'_>, name: &dyn Fn(u32) -> String| {
                    let mut list = Reply(Vec::new());
                    while !ids.buf.is_empty() {
                        let id = ids.u32()?;
                        let name = name(id);
                        list.string(if name == id.to_string() { b"" } else { name.as_bytes() });
                    }
                    Ok::<_, Malformed>(list.0)
                };
                let users = names(&mut uids, &|uid| backend.user_name(uid))?;
                let groups = names(&mut gids, &|gid| backend.group_name(gid))?;
                let mut r = Reply::new(SSH_FXP_EXTENDED_REPLY, id);
                r.string(&users);
                r.string(&groups);
                r.finish(out);
            }
            _ => status(out, id, Status::OpUnsupported),
        }
        Ok(())
    }

    /// `copy-data`: bytes of an open file into another open for writing
    /// (`len` 0: to the end).
    fn copy_data(&mut self, from: u32, offset: u64, len: u64, to: u32, at: u64) -> Status {
        let Some(Handle::Read { data, .. }) = self.handles.get(&from) else {
            return Status::Failure;
        };
        let start = offset.min(data.len() as u64) as usize;
        let end = match len {
            0 => data.len(),
            n => start
                .saturating_add(usize::try_from(n).unwrap_or(usize::MAX))
                .min(data.len()),
        };
        let chunk = data[start..end].to_vec();
        let Some(Handle::Write { data, .. }) = self.handles.get_mut(&to) else {
            return Status::Failure;
        };
        let at = at.min(MAX_FILE as u64) as usize;
        let stop = at + chunk.len();
        let grow = stop.saturating_sub(data.len());
        if stop > MAX_FILE || self.buffered + grow > MAX_BUFFERED {
            return Status::Failure;
        }
        if data.len() < stop {
            data.resize(stop, 0);
        }
        data[at..stop].copy_from_slice(&chunk);
        self.buffered += grow;
        Status::Ok
    }

    /// Opens a file; `None` when a HANDLE was sent, else the status to send.
    fn open(
        &mut self,
        backend: &mut dyn Backend,
        id: u32,
        path: &str,
        pflags: u32,
        out: &mut Vec<u8>,
    ) -> Option<Status> {
        if self.handles.len() >= MAX_HANDLES {
            return Some(Status::Failure);
        }
        let existing = backend.stat(path, true);
        if let Ok(a) = &existing
            && a.is_dir()
        {
            return Some(Status::Failure);
        }
        let handle = if pflags & FXF_WRITE != 0 {
            match &existing {
                Ok(_) if pflags & FXF_CREAT != 0 && pflags & FXF_EXCL != 0 => return Some(Status::Failure),
                Err(FsError::NotFound) if pflags & FXF_CREAT == 0 => return Some(Status::NoSuchFile),
                Err(FsError::NotFound) => {
                    // The parent must exist and be a directory for a create.
                    match backend.stat(&decnet_shell::fs::parent_of(path), true) {
                        Ok(p) if p.is_dir() => {}
                        Ok(_) => return Some(Status::Failure),
                        Err(e) => return Some(e.into()),
                    }
                }
                Err(e) => return Some((*e).into()),
                Ok(_) => {}
            }
            if let Err(e) = backend.may_write(path) {
                return Some(e.into());
            }
            // Without TRUNC the file's bytes stay and writes land on them.
            let data = if existing.is_ok() && pflags & FXF_TRUNC == 0 {
                match backend.read(path) {
                    Ok(d) if d.len() <= MAX_FILE && self.buffered + d.len() <= MAX_BUFFERED => d,
                    Ok(_) => return Some(Status::Failure),
                    Err(e) => return Some(e.into()),
                }
            } else {
                Vec::new()
            };
            self.buffered += data.len();
            Handle::Write {
                path: path.to_string(),
                data,
                append: pflags & FXF_APPEND != 0,
            }
        } else if pflags & FXF_READ != 0 {
            if let Err(e) = existing {
                return Some(e.into());
            }
            match backend.read(path) {
                Ok(d) if d.len() <= MAX_FILE && self.buffered + d.len() <= MAX_BUFFERED => {
                    self.buffered += d.len();
                    Handle::Read {
                        path: path.to_string(),
                        data: d,
                    }
                }
                Ok(_) => return Some(Status::Failure),
                Err(e) => return Some(e.into()),
            }
        } else {
            return Some(Status::BadMessage);
        };
        match self.add_handle(handle) {
            Some(h) => {
                Self::handle_reply(out, id, h);
                None
            }
            None => Some(Status::Failure),
        }
    }
}

fn result(r: Result<(), FsError>) -> Status {
    match r {
        Ok(()) => Status::Ok,
        Err(e) => e.into(),
    }
}

/// A NAME reply of one path, with no attributes (REALPATH's shape).
fn name_reply(out: &mut Vec<u8>, id: u32, path: &str) {
    let mut r = Reply::new(SSH_FXP_NAME, id);
    r.u32(1);
    r.string(path.as_bytes());
    r.string(path.as_bytes());
    r.u32(0);
    r.finish(out);
}

/// `statvfs@openssh.com`'s reply for an ext4 root of `disk`'s size: 4 KiB
/// blocks, an inode per 16 KiB, no flags (sftp-server passes on only
/// read-only and nosuid).
fn statvfs_reply(out: &mut Vec<u8>, id: u32, disk: Disk) {
    let blocks = disk.total_kb / 4;
    let free = disk.total_kb.saturating_sub(disk.used_kb) / 4;
    let files = disk.total_kb / 16;
    let ffree = files.saturating_sub(disk.used_kb / 64);
    let mut r = Reply::new(SSH_FXP_EXTENDED_REPLY, id);
    for v in [
        4096,
        4096,
        blocks,
        free,
        free,
        files,
        ffree,
        ffree,
        blocks ^ 0x5a5a_5a5a,
        0,
        255,
    ] {
        r.u64(v);
    }
    r.finish(out);
}

/// `~`, `~/x` and `~user/x` as sftp-server expands them (the session
/// starts in the user's home, so a bare `~` is the working directory);
/// `None` for an unknown user.
fn expand_tilde(backend: &dyn Backend, path: &str) -> Option<String> {
    let Some(rest) = path.strip_prefix('~') else {
        return Some(path.to_string());
    };
    let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let home = if user.is_empty() {
        backend.cwd()
    } else {
        backend.home_of(user)?
    };
    Some(if tail.is_empty() {
        home
    } else {
        format!("{home}/{tail}")
    })
}

fn attrs_reply(out: &mut Vec<u8>, id: u32, a: &Attrs) {
    let mut r = Reply::new(SSH_FXP_ATTRS, id);
    r.attrs(a);
    r.finish(out);
}

fn handle_of(rd: &mut Reader<'_>) -> Result<u32, Malformed> {
    let h = rd.string()?;
    // Handles this server gives out are 4 bytes; anything else names none.
    Ok(match <[u8; 4]>::try_from(h) {
        Ok(b) => u32::from_be_bytes(b),
        Err(_) => u32::MAX,
    })
}

/// The `ls -l` line sftp-server sends as READDIR's long name, which
/// OpenSSH's `sftp` prints as is for `ls -l`.
pub fn longname(backend: &dyn Backend, name: &str, a: &Attrs, now: i64) -> String {
    let user = backend.user_name(a.uid);
    let group = backend.group_name(a.gid);
    let nlink = if a.is_dir() { 2 } else { 1 };
    format!(
        "{}  {:>3} {:<8} {:<8} {:>8} {} {}",
        decnet_shell::fs::mode_string(type_char(a.mode), a.mode),
        nlink,
        user,
        group,
        a.size,
        decnet_shell::fs::ls_time(a.mtime, now),
        name
    )
}

/// `ls -l`'s type letter for the file-type bits of a SFTP mode.
fn type_char(mode: u32) -> char {
    match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small in-memory tree: enough to drive the protocol layer; the real
    /// filesystem behind it is exercised by the e2e test with OpenSSH.
    #[derive(Default)]
    pub(crate) struct Mem {
        pub(crate) files: BTreeMap<String, Vec<u8>>,
        pub(crate) dirs: Vec<String>,
        pub(crate) writes: Vec<(String, Vec<u8>)>,
    }

    impl Mem {
        pub(crate) fn new() -> Self {
            Self {
                dirs: vec!["/".into(), "/root".into(), "/tmp".into(), "/proc".into()],
                ..Default::default()
            }
        }
    }

    impl Backend for Mem {
        fn cwd(&self) -> String {
            "/root".into()
        }
        fn realpath(&self, path: &str) -> Result<String, FsError> {
            Ok(path.to_string())
        }
        fn stat(&self, path: &str, _follow: bool) -> Result<Attrs, FsError> {
            let (size, mode) = if self.dirs.iter().any(|d| d == path) {
                (4096, 0o040755)
            } else {
                (self.files.get(path).ok_or(FsError::NotFound)?.len() as u64, 0o100644)
            };
            Ok(Attrs {
                size,
                uid: 0,
                gid: 0,
                mode,
                mtime: 1_795_410_000,
            })
        }
        fn readlink(&self, _: &str) -> Result<String, FsError> {
            Err(FsError::NotFound)
        }
        fn list(&self, path: &str) -> Result<Vec<(String, Attrs)>, FsError> {
            let prefix = format!("{}/", path.trim_end_matches('/'));
            Ok(self
                .files
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|rest| !rest.contains('/'))
                .map(|n| (n.to_string(), self.stat(&format!("{prefix}{n}"), true).expect("listed")))
                .collect())
        }
        fn read(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
            self.files.get(path).cloned().ok_or(FsError::NotFound)
        }
        fn may_write(&self, path: &str) -> Result<(), FsError> {
            if path.starts_with("/proc/") {
                return Err(FsError::ReadOnly);
            }
            Ok(())
        }
        fn write(&mut self, path: &str, data: &[u8]) -> Result<(), FsError> {
            self.writes.push((path.into(), data.into()));
            self.files.insert(path.into(), data.into());
            Ok(())
        }
        fn mkdir(&mut self, path: &str) -> Result<(), FsError> {
            self.dirs.push(path.into());
            Ok(())
        }
        fn rmdir(&mut self, path: &str) -> Result<(), FsError> {
            self.dirs.retain(|d| d != path);
            Ok(())
        }
        fn remove(&mut self, path: &str) -> Result<(), FsError> {
            self.files.remove(path).map(|_| ()).ok_or(FsError::NotFound)
        }
        fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
            let d = self.files.remove(from).ok_or(FsError::NotFound)?;
            self.files.insert(to.into(), d);
            Ok(())
        }
        fn user_name(&self, _: u32) -> String {
            "root".into()
        }
        fn group_name(&self, _: u32) -> String {
            "root".into()
        }
        fn symlink(&mut self, _: &str, _: &str) -> Result<(), FsError> {
            Err(FsError::NotPermitted)
        }
        fn home_of(&self, user: &str) -> Option<String> {
            (user == "root").then(|| "/root".into())
        }
        fn disk(&self) -> Disk {
            Disk {
                total_kb: 1 << 20,
                used_kb: 1 << 18,
            }
        }
    }

    fn pkt(kind: u8, body: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![kind];
        for b in body {
            p.extend_from_slice(b);
        }
        let mut out = (p.len() as u32).to_be_bytes().to_vec();
        out.extend(p);
        out
    }
    fn u32b(v: u32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }
    fn s(v: &[u8]) -> Vec<u8> {
        let mut o = u32b(v.len() as u32);
        o.extend_from_slice(v);
        o
    }

    /// Splits a reply stream into (type, body after the type byte).
    fn replies(mut buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while buf.len() >= 4 {
            let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            out.push((buf[4], buf[5..4 + n].to_vec()));
            buf = &buf[4 + n..];
        }
        assert!(buf.is_empty());
        out
    }

    fn exchange(srv: &mut SftpServer, fs: &mut Mem, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let fed = srv.feed(fs, 1_795_410_000, bytes);
        assert_eq!(fed.ended, None);
        replies(&fed.reply)
    }

    /// Debian 12's sftp-server list (its first five are also 7.4's).
    fn openssh_9_2() -> Vec<(String, String)> {
        [
            ("posix-rename@openssh.com", "1"),
            ("statvfs@openssh.com", "2"),
            ("limits@openssh.com", "1"),
            ("expand-path@openssh.com", "1"),
            ("home-directory", "1"),
            ("copy-data", "1"),
        ]
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_string()))
        .collect()
    }

    fn extended(name: &str, args: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![u32b(9), s(name.as_bytes())];
        body.extend(args.iter().map(|a| a.to_vec()));
        pkt(SSH_FXP_EXTENDED, &body.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    #[test]
    fn offered_extensions_are_listed_and_served() {
        let mut srv = SftpServer::new(openssh_9_2());
        let mut fs = Mem::new();
        fs.files.insert("/root/a".into(), b"0123456789".to_vec());
        fs.files.insert("/root/b".into(), b"old".to_vec());
        let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_INIT, &[&u32b(3)]));
        let mut version = u32b(3);
        for (n, d) in openssh_9_2() {
            version.extend(s(n.as_bytes()));
            version.extend(s(d.as_bytes()));
        }
        assert_eq!(r, vec![(SSH_FXP_VERSION, version)]);

        // limits: 256 KiB packets, reads and writes 1 KiB less, 1019 handles.
        let r = exchange(&mut srv, &mut fs, &extended("limits@openssh.com", &[]));
        let mut limits = u32b(9);
        for v in [262_144_u64, 261_120, 261_120, 1019] {
            limits.extend(v.to_be_bytes());
        }
        assert_eq!(r, vec![(SSH_FXP_EXTENDED_REPLY, limits)]);

        // posix-rename replaces the file in the way (plain RENAME would fail).
        let r = exchange(
            &mut srv,
            &mut fs,
            &extended("posix-rename@openssh.com", &[&s(b"a"), &s(b"/root/b")]),
        );
        assert_eq!(r[0].0, SSH_FXP_STATUS);
        assert_eq!(r[0].1[4..8], u32b(Status::Ok as u32));
        assert_eq!(fs.files.get("/root/b").map(Vec::as_slice), Some(&b"0123456789"[..]));
        assert!(!fs.files.contains_key("/root/a"));

        // statvfs: 4 KiB blocks of the disk, its free blocks twice.
        let r = exchange(&mut srv, &mut fs, &extended("statvfs@openssh.com", &[&s(b"/")]));
        let words: Vec<u64> = r[0].1[4..]
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(r[0].0, SSH_FXP_EXTENDED_REPLY);
        assert_eq!(words[..5], [4096, 4096, 1 << 18, 3 << 16, 3 << 16]);
        assert_eq!(words[10], 255);

        // expand-path and home-directory: NAME replies; an unknown user fails.
        let name = |path: &[u8]| {
            let mut b = u32b(9);
            b.extend(u32b(1));
            b.extend(s(path));
            b.extend(s(path));
            b.extend(u32b(0));
            (SSH_FXP_NAME, b)
        };
        let r = exchange(&mut srv, &mut fs, &extended("expand-path@openssh.com", &[&s(b"~/x")]));
        assert_eq!(r, vec![name(b"/root/x")]);
        let r = exchange(&mut srv, &mut fs, &extended("home-directory", &[&s(b"root")]));
        assert_eq!(r, vec![name(b"/root")]);
        let r = exchange(&mut srv, &mut fs, &extended("home-directory", &[&s(b"nobody")]));
        assert_eq!(r[0].1[4..8], u32b(Status::Failure as u32));

        // Not offered by this release (hardlink is 9.2's, not in this list),
        // or unknown: unsupported, as sftp-server answers.
        for ext in ["hardlink@openssh.com", "bogus@example.com"] {
            let r = exchange(&mut srv, &mut fs, &extended(ext, &[&s(b"/root/b"), &s(b"/root/c")]));
            assert_eq!(r[0].1[4..8], u32b(Status::OpUnsupported as u32), "{ext}");
        }
    }

    #[test]
    fn copy_data_copies_between_open_files() {
        let mut srv = SftpServer::new(openssh_9_2());
        let mut fs = Mem::new();
        fs.files.insert("/root/a".into(), b"0123456789".to_vec());
        exchange(&mut srv, &mut fs, &pkt(SSH_FXP_INIT, &[&u32b(3)]));
        let open = |id: u32, path: &[u8], flags: u32| pkt(SSH_FXP_OPEN, &[&u32b(id), &s(path), &u32b(flags), &u32b(0)]);
        let r = exchange(&mut srv, &mut fs, &open(1, b"/root/a", FXF_READ));
        let from = r[0].1[4..].to_vec();
        let r = exchange(
            &mut srv,
            &mut fs,
            &open(2, b"/root/c", FXF_WRITE | FXF_CREAT | FXF_TRUNC),
        );
        let to = r[0].1[4..].to_vec();
        let r = exchange(
            &mut srv,
            &mut fs,
            &extended(
                "copy-data",
                &[
                    &from,
                    &2_u64.to_be_bytes(),
                    &0_u64.to_be_bytes(),
                    &to,
                    &0_u64.to_be_bytes(),
                ],
            ),
        );
        assert_eq!(r[0].1[4..8], u32b(Status::Ok as u32));
        let close = pkt(SSH_FXP_CLOSE, &[&u32b(3), &to]);
        exchange(&mut srv, &mut fs, &close);
        assert_eq!(fs.files.get("/root/c").map(Vec::as_slice), Some(&b"23456789"[..]));
    }

    #[test]
    fn upload_then_download_round_trips() {
        let mut srv = SftpServer::new(Vec::new());
        let mut fs = Mem::new();
        let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_INIT, &[&u32b(3)]));
        assert_eq!(r, vec![(SSH_FXP_VERSION, u32b(3))]);

        // REALPATH "." is the home directory; fed a byte at a time.
        let mut got = Vec::new();
        for b in pkt(SSH_FXP_REALPATH, &[&u32b(7), &s(b".")]) {
            got.extend(srv.feed(&mut fs, 0, &[b]).reply);
        }
        let r = replies(&got);
        assert_eq!(r[0].0, SSH_FXP_NAME);
        assert_eq!(&r[0].1[8..8 + 4 + 5], &s(b"/root")[..]);

        // OPEN for write, two WRITEs (the second at an offset), CLOSE.
        let open = pkt(
            SSH_FXP_OPEN,
            &[
                &u32b(1),
                &s(b"/tmp/up.bin"),
                &u32b(FXF_WRITE | FXF_CREAT | FXF_TRUNC),
                &u32b(0),
            ],
        );
        let r = exchange(&mut srv, &mut fs, &open);
        assert_eq!(r[0].0, SSH_FXP_HANDLE);
        let handle = r[0].1[4..].to_vec();
        let mut two = pkt(SSH_FXP_WRITE, &[&u32b(2), &handle, &[0; 8], &s(b"hello ")]);
        two.extend(pkt(
            SSH_FXP_WRITE,
            &[&u32b(3), &handle, &6u64.to_be_bytes(), &s(b"world")],
        ));
        let r = exchange(&mut srv, &mut fs, &two);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|(t, b)| *t == SSH_FXP_STATUS && b[4..8] == u32b(0)[..]));
        assert!(fs.writes.is_empty(), "nothing is written before CLOSE");
        let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_CLOSE, &[&u32b(4), &handle]));
        assert_eq!(r[0].1[4..8], u32b(0)[..]);
        assert_eq!(fs.writes, vec![("/tmp/up.bin".to_string(), b"hello world".to_vec())]);

        // Read it back: relative to /root it is ../tmp/up.bin.
        let open = pkt(
            SSH_FXP_OPEN,
            &[&u32b(5), &s(b"../tmp/up.bin"), &u32b(FXF_READ), &u32b(0)],
        );
        let r = exchange(&mut srv, &mut fs, &open);
        let handle = r[0].1[4..].to_vec();
        let read = pkt(SSH_FXP_READ, &[&u32b(6), &handle, &2u64.to_be_bytes(), &u32b(100)]);
        let r = exchange(&mut srv, &mut fs, &read);
        assert_eq!(r[0], (SSH_FXP_DATA, [u32b(6), s(b"llo world")].concat()));
        let read = pkt(SSH_FXP_READ, &[&u32b(8), &handle, &11u64.to_be_bytes(), &u32b(100)]);
        let r = exchange(&mut srv, &mut fs, &read);
        assert_eq!(r[0].0, SSH_FXP_STATUS);
        assert_eq!(r[0].1[4..8], u32b(Status::Eof as u32)[..]);

        // A directory listing has the ls -l long name.
        let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_OPENDIR, &[&u32b(9), &s(b"/tmp")]));
        let dir = r[0].1[4..].to_vec();
        let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_READDIR, &[&u32b(10), &dir]));
        let body = String::from_utf8_lossy(&r[0].1);
        assert!(
            body.contains("-rw-r--r--    1 root     root           11 Nov 23 05:00 up.bin"),
            "{body}"
        );
        let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_READDIR, &[&u32b(11), &dir]));
        assert_eq!(r[0].1[4..8], u32b(Status::Eof as u32)[..]);

        // A refused write fails at OPEN, before any data.
        let open = pkt(
            SSH_FXP_OPEN,
            &[&u32b(14), &s(b"/proc/x"), &u32b(FXF_WRITE | FXF_CREAT), &u32b(0)],
        );
        let r = exchange(&mut srv, &mut fs, &open);
        assert_eq!(r[0].1[4..8], u32b(Status::PermissionDenied as u32)[..]);

        // Missing files and unknown operations get their codes.
        let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_STAT, &[&u32b(12), &s(b"/nope")]));
        assert_eq!(r[0].1[4..8], u32b(Status::NoSuchFile as u32)[..]);
        let r = exchange(&mut srv, &mut fs, &pkt(99, &[&u32b(13), &s(b"a"), &s(b"b")]));
        assert_eq!(r[0].1[4..8], u32b(Status::OpUnsupported as u32)[..]);
    }

    #[test]
    fn handles_are_bounded() {
        let mut srv = SftpServer::new(Vec::new());
        let mut fs = Mem::new();
        exchange(&mut srv, &mut fs, &pkt(SSH_FXP_INIT, &[&u32b(3)]));
        for i in 0..(MAX_HANDLES as u32 + 1) {
            let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_OPENDIR, &[&u32b(i), &s(b"/tmp")]));
            let want = if (i as usize) < MAX_HANDLES {
                SSH_FXP_HANDLE
            } else {
                SSH_FXP_STATUS
            };
            assert_eq!(r[0].0, want, "open {i}");
        }
    }

    #[test]
    fn closed_handles_give_their_buffer_back() {
        let mut srv = SftpServer::new(Vec::new());
        let mut fs = Mem::new();
        fs.files.insert("/tmp/big".into(), vec![7; 1 << 20]);
        exchange(&mut srv, &mut fs, &pkt(SSH_FXP_INIT, &[&u32b(3)]));
        // 40 MiB read through one handle at a time: more than MAX_BUFFERED.
        for i in 0..40 {
            let open = pkt(SSH_FXP_OPEN, &[&u32b(i), &s(b"/tmp/big"), &u32b(FXF_READ), &u32b(0)]);
            let r = exchange(&mut srv, &mut fs, &open);
            assert_eq!(r[0].0, SSH_FXP_HANDLE, "open {i}");
            let handle = r[0].1[4..].to_vec();
            let r = exchange(&mut srv, &mut fs, &pkt(SSH_FXP_CLOSE, &[&u32b(i), &handle]));
            assert_eq!(r[0].1[4..8], u32b(0)[..]);
        }
        // Held open at once, they run into the bound.
        let opened = (0..20)
            .filter(|i| {
                let open = pkt(SSH_FXP_OPEN, &[&u32b(*i), &s(b"/tmp/big"), &u32b(FXF_READ), &u32b(0)]);
                exchange(&mut srv, &mut fs, &open)[0].0 == SSH_FXP_HANDLE
            })
            .count();
        assert_eq!(opened, MAX_BUFFERED >> 20);
    }

    #[test]
    fn oversized_packet_ends_the_subsystem() {
        let mut srv = SftpServer::new(Vec::new());
        let mut fs = Mem::new();
        let fed = srv.feed(&mut fs, 0, &u32b(MAX_PACKET as u32 + 1));
        assert!(fed.ended.is_some());
        assert!(srv.is_closed());
    }

    #[test]
    fn dates_like_ls() {
        let now = 1_795_410_000; // 2026-11-23 05:00 UTC
        let (date, mode) = (decnet_shell::fs::ls_time, decnet_shell::fs::mode_string);
        assert_eq!(date(now, now), "Nov 23 05:00");
        assert_eq!(date(0, now), "Jan  1  1970");
        assert_eq!(mode(type_char(0o41777), 0o41777), "drwxrwxrwt");
        assert_eq!(mode(type_char(0o104755), 0o104755), "-rwsr-xr-x");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut srv = SftpServer::new(Vec::new());
            let mut fs = Mem::new();
            for c in chunks {
                srv.feed(&mut fs, 0, &c);
            }
        }

        #[test]
        fn random_requests_after_init_never_panic(kind in 3u8..21, body in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut srv = SftpServer::new(Vec::new());
            let mut fs = Mem::new();
            srv.feed(&mut fs, 0, &pkt(SSH_FXP_INIT, &[&u32b(3)]));
            srv.feed(&mut fs, 0, &pkt(kind, &[&body]));
        }

        #[test]
        fn random_extended_requests_never_panic(
            which in 0usize..12,
            opened in any::<bool>(),
            body in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let every: Vec<(String, String)> = [
                "posix-rename@openssh.com", "statvfs@openssh.com", "fstatvfs@openssh.com",
                "hardlink@openssh.com", "fsync@openssh.com", "lsetstat@openssh.com",
                "limits@openssh.com", "expand-path@openssh.com", "copy-data",
                "home-directory", "users-groups-by-id@openssh.com", "unknown@example.com",
            ]
            .iter()
            .map(|n| (n.to_string(), "1".to_string()))
            .collect();
            let name = every[which].0.clone();
            let mut srv = SftpServer::new(every);
            let mut fs = Mem::new();
            fs.files.insert("/root/a".into(), b"0123".to_vec());
            srv.feed(&mut fs, 0, &pkt(SSH_FXP_INIT, &[&u32b(3)]));
            if opened {
                // Handles 0 and 1 exist, so random handle bytes can name one.
                for (id, flags) in [(1, FXF_READ), (2, FXF_WRITE | FXF_CREAT)] {
                    srv.feed(&mut fs, 0, &pkt(SSH_FXP_OPEN, &[&u32b(id), &s(b"/root/a"), &u32b(flags), &u32b(0)]));
                }
            }
            srv.feed(&mut fs, 0, &extended(&name, &[&body]));
        }
    }
}
