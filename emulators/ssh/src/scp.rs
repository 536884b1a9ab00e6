//! The legacy scp protocol (`scp -O`, libssh2 and older clients): the
//! client's `exec` of `scp -t <dir>` (upload, we are the sink) or
//! `scp -f <path>` (download, we are the source), sans IO, over the same
//! [`Backend`] as SFTP.
//!
//! Each message is acknowledged with a zero byte; an error is `\x01` plus a
//! line (scp prints it and goes on) as the real `scp` answers.

use decnet_shell::fs::FsError;

use crate::sftp::{Backend, MAX_FILE};

/// Longest control line (`C0644 1234 name`) accepted.
const MAX_LINE: usize = 4096;
/// Directory depth of a recursive upload or download.
const MAX_DEPTH: usize = 32;
/// Files and directories one recursive download sends at most.
const MAX_ENTRIES: usize = 10_000;

/// Which way the files go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// `scp -t target`: the client uploads.
    Sink { target: String },
    /// `scp -f path`: the client downloads.
    Source { path: String },
}

enum State {
    /// Reading a control line.
    Line(Vec<u8>),
    /// Reading a file's bytes (and the zero byte after them).
    Data {
        path: String,
        size: usize,
        buf: Vec<u8>,
    },
    /// Source: waiting for the client's ack before sending the next message.
    Ack,
    Done,
}

/// A message a source sends, each acknowledged by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Message {
    /// `T`: the times of the file or directory that follows (`-p`).
    Times(i64),
    /// `D`: a directory begins.
    Dir { name: String, mode: u32 },
    /// `C`: a file's header, read when it is sent; its bytes follow.
    File { path: String, mode: u32 },
    /// The bytes of the file just announced, and a zero byte.
    Data,
    /// `E`: the directory ends.
    End,
    /// A warning line about an entry left out; no ack follows it.
    Warn(String),
}

/// One `scp -t`/`scp -f` run on a channel.
pub struct Scp {
    role: Role,
    preserve: bool,
    recursive: bool,
    state: State,
    /// Directories of a recursive upload, innermost last.
    dirs: Vec<String>,
    /// Source: what is left to send, planned at the client's first ack.
    queue: Option<std::collections::VecDeque<Message>>,
    /// Source: the file announced, read when its header went out.
    data: Vec<u8>,
    errors: bool,
}

/// What a step produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub reply: Vec<u8>,
    /// The run ended with this exit status.
    pub exit: Option<u32>,
}

impl Scp {
    /// Parses an exec line; `None` when it is not an scp server run (then the
    /// shell runs it).
    pub fn parse(command: &str) -> Option<Scp> {
        let mut words = command.split_whitespace();
        if words.next()? != "scp" {
            return None;
        }
        let (mut to, mut from, mut preserve, mut recursive, mut path) = (false, false, false, false, None);
        let mut options = true;
        for w in words {
            if options && w == "--" {
                options = false;
            } else if options && w.starts_with('-') && w.len() > 1 {
                for c in w[1..].chars() {
                    match c {
                        't' => to = true,
                        'f' => from = true,
                        'p' => preserve = true,
                        'r' => recursive = true,
                        // -d, -v and the rest change nothing here.
                        _ => {}
                    }
                }
            } else if path.is_none() {
                path = Some(w.to_string());
            } else {
                return None;
            }
        }
        let path = path?;
        let role = match (to, from) {
            (true, false) => Role::Sink { target: path },
            (false, true) => Role::Source { path },
            _ => return None,
        };
        Some(Scp {
            state: match role {
                Role::Sink { .. } => State::Line(Vec::new()),
                Role::Source { .. } => State::Ack,
            },
            role,
            preserve,
            recursive,
            dirs: Vec::new(),
            queue: None,
            data: Vec::new(),
            errors: false,
        })
    }

    /// The first bytes: a sink says it is ready.
    pub fn start(&self) -> Vec<u8> {
        match self.role {
            Role::Sink { .. } => vec![0],
            Role::Source { .. } => Vec::new(),
        }
    }

    /// The client closed its side.
    pub fn eof(&mut self) -> Step {
        let code = u32::from(self.errors || !matches!(self.state, State::Line(ref l) if l.is_empty()));
        self.state = State::Done;
        Step {
            reply: Vec::new(),
            exit: Some(code),
        }
    }

    pub fn feed(&mut self, backend: &mut dyn Backend, mut data: &[u8]) -> Step {
        let mut step = Step::default();
        while !data.is_empty() && step.exit.is_none() {
            match &mut self.state {
                State::Done => break,
                State::Line(line) => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if line.len() > MAX_LINE {
                        step.reply
                            .extend_from_slice(b"\x02scp: protocol error: line too long\n");
                        step.exit = Some(1);
                        break;
                    }
                    if end.is_some() {
                        let line = std::mem::take(line);
                        self.line(backend, &line, &mut step);
                    }
                }
                State::Data { path, size, buf } => {
                    // The file's bytes, then the client's zero byte.
                    let want = *size + 1 - buf.len();
                    let take = want.min(data.len());
                    buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if buf.len() == *size + 1 {
                        let path = std::mem::take(path);
                        let mut buf = std::mem::take(buf);
                        buf.pop();
                        self.state = State::Line(Vec::new());
                        match backend.write(&path, &buf) {
                            Ok(()) => step.reply.push(0),
                            Err(e) => self.warn(&mut step, &path, e),
                        }
                    }
                }
                State::Ack => {
                    let ack = data[0];
                    data = &data[1..];
                    if ack != 0 {
                        step.exit = Some(1);
                        break;
                    }
                    self.source(backend, &mut step);
                }
            }
        }
        if step.exit.is_some() {
            self.state = State::Done;
        }
        step
    }

    fn warn(&mut self, step: &mut Step, path: &str, e: FsError) {
        self.errors = true;
        step.reply
            .extend_from_slice(format!("\x01scp: {path}: {}\n", e.message()).as_bytes());
    }

    /// Where an upload named `name` goes: into the target when it is a
    /// directory (or into the directory being received), else the target.
    fn dest(&self, backend: &dyn Backend, name: &str) -> String {
        if let Some(dir) = self.dirs.last() {
            return format!("{dir}/{name}");
        }
        let Role::Sink { target } = &self.role else {
            return String::new();
        };
        let target = decnet_shell::fs::absolute(&backend.cwd(), target);
        match backend.stat(&target, true) {
            Ok(a) if a.is_dir() => decnet_shell::fs::absolute(&target, name),
            _ => target,
        }
    }

    fn line(&mut self, backend: &mut dyn Backend, line: &[u8], step: &mut Step) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\n');
        let mut parts = text.get(1..).unwrap_or("").splitn(3, ' ');
        match line.first() {
            Some(b'T') => step.reply.push(0),
            Some(b'E') => {
                self.dirs.pop();
                step.reply.push(0);
            }
            Some(b'C') | Some(b'D') => {
                let _mode = parts.next();
                let size = parts.next().and_then(|s| s.parse::<usize>().ok());
                let name = parts.next().unwrap_or("");
                let (Some(size), false) = (size, name.is_empty() || name.contains('/') || name == "..") else {
                    step.reply
                        .extend_from_slice(format!("\x02scp: protocol error: bad line {text:?}\n").as_bytes());
                    step.exit = Some(1);
                    return;
                };
                let path = self.dest(backend, name);
                if line[0] == b'D' {
                    if self.dirs.len() >= MAX_DEPTH {
                        step.reply.extend_from_slice(b"\x02scp: protocol error: too deep\n");
                        step.exit = Some(1);
                        return;
                    }
                    let made = match backend.stat(&path, true) {
                        Ok(a) if a.is_dir() => Ok(()),
                        Ok(_) => Err(FsError::NotADirectory),
                        Err(_) => backend.mkdir(&path),
                    };
                    match made {
                        Ok(()) => {
                            self.dirs.push(path);
                            step.reply.push(0);
                        }
                        Err(e) => {
                            // scp gives up on a directory it cannot make.
                            step.reply
                                .extend_from_slice(format!("\x02scp: {path}: {}\n", e.message()).as_bytes());
                            step.exit = Some(1);
                        }
                    }
                } else if size > MAX_FILE {
                    step.reply
                        .extend_from_slice(format!("\x02scp: {path}: {}\n", FsError::NoSpace.message()).as_bytes());
                    step.exit = Some(1);
                } else if let Err(e) = backend.may_write(&path) {
                    // The real sink answers a failed open(2) and skips the data;
                    // ending here is what clients see for a fatal error.
                    step.reply
                        .extend_from_slice(format!("\x02scp: {path}: {}\n", e.message()).as_bytes());
                    step.exit = Some(1);
                } else {
                    self.state = State::Data {
                        path,
                        size,
                        buf: Vec::with_capacity(size.min(1 << 20) + 1),
                    };
                    step.reply.push(0);
                }
            }
            // A client's own warning (\x01) or fatal error (\x02).
            _ => step.exit = Some(1),
        }
    }

    /// Sends the next message of a download.
    fn source(&mut self, backend: &mut dyn Backend, step: &mut Step) {
        let queue = match &mut self.queue {
            Some(queue) => queue,
            None => match self.plan(backend) {
                Ok(queue) => self.queue.insert(queue),
                Err(line) => {
                    step.reply.extend_from_slice(line.as_bytes());
                    step.exit = Some(1);
                    return;
                }
            },
        };
        // Warnings are not acknowledged: what follows one goes out with it.
        loop {
            let Some(message) = queue.pop_front() else {
                step.exit = Some(u32::from(self.errors));
                return;
            };
            let unacknowledged = match message {
                Message::Times(t) => {
                    step.reply.extend_from_slice(format!("T{t} 0 {t} 0\n").as_bytes());
                    false
                }
                Message::Dir { name, mode } => {
                    step.reply
                        .extend_from_slice(format!("D{:04o} 0 {name}\n", mode & 0o7777).as_bytes());
                    false
                }
                Message::End => {
                    step.reply.extend_from_slice(b"E\n");
                    false
                }
                Message::File { path, mode } => match backend.read(&path) {
                    Ok(d) if d.len() <= MAX_FILE => {
                        let name = path.rsplit('/').next().unwrap_or(&path);
                        step.reply
                            .extend_from_slice(format!("C{:04o} {} {name}\n", mode & 0o7777, d.len()).as_bytes());
                        self.data = d;
                        queue.push_front(Message::Data);
                        false
                    }
                    // Unreadable: a warning, and on to the next, as scp does.
                    result => {
                        let e = result.err().unwrap_or(FsError::PermissionDenied);
                        queue.push_front(Message::Warn(format!("\x01scp: {path}: {}\n", e.message())));
                        true
                    }
                },
                Message::Data => {
                    step.reply.extend_from_slice(&std::mem::take(&mut self.data));
                    step.reply.push(0);
                    false
                }
                Message::Warn(line) => {
                    self.errors = true;
                    step.reply.extend_from_slice(line.as_bytes());
                    true
                }
            };
            if !unacknowledged {
                return;
            }
        }
    }

    /// The messages of a download, or the error line that refuses it.
    fn plan(&self, backend: &dyn Backend) -> Result<std::collections::VecDeque<Message>, String> {
        let Role::Source { path } = &self.role else {
            return Err("\x02scp: protocol error\n".into());
        };
        let path = decnet_shell::fs::absolute(&backend.cwd(), path);
        let mut queue = std::collections::VecDeque::new();
        self.plan_entry(backend, &path, 0, &mut queue)?;
        Ok(queue)
    }

    fn plan_entry(
        &self,
        backend: &dyn Backend,
        path: &str,
        depth: usize,
        queue: &mut std::collections::VecDeque<Message>,
    ) -> Result<(), String> {
        let refuse = |why: &str| format!("\x01scp: {path}: {why}\n");
        let attrs = backend.stat(path, true).map_err(|e| refuse(e.message()))?;
        if depth > MAX_DEPTH {
            return Err(refuse("too deep"));
        }
        if self.preserve {
            queue.push_back(Message::Times(attrs.mtime.max(0)));
        }
        if !attrs.is_dir() {
            queue.push_back(Message::File {
                path: path.to_string(),
                mode: attrs.mode,
            });
            return Ok(());
        }
        if !self.recursive {
            return Err(refuse("not a regular file"));
        }
        let name = path.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("/");
        queue.push_back(Message::Dir {
            name: name.to_string(),
            mode: attrs.mode,
        });
        let mut children = match backend.list(path) {
            Ok(children) => children,
            Err(e) => {
                queue.push_back(Message::Warn(refuse(e.message())));
                Vec::new()
            }
        };
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (child, _) in children {
            if queue.len() >= MAX_ENTRIES {
                queue.push_back(Message::Warn(refuse("too many files")));
                break;
            }
            let child = format!("{}/{child}", path.trim_end_matches('/'));
            // Below the top, a bad entry is a warning and the rest goes on.
            if let Err(line) = self.plan_entry(backend, &child, depth + 1, queue) {
                queue.push_back(Message::Warn(line));
            }
        }
        queue.push_back(Message::End);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sftp::tests::Mem;
    use proptest::prelude::*;

    #[test]
    fn sink_receives_a_file_into_a_directory() {
        let mut fs = Mem::new();
        let mut scp = Scp::parse("scp -t /tmp/").expect("an scp sink");
        assert_eq!(scp.start(), vec![0]);
        // Fed in pieces: the control line split, the data with its zero byte.
        let mut reply = Vec::new();
        for chunk in [&b"T1795410000 0 1795410000 0\nC06"[..], b"44 5 x.sh\nab", b"cde\0"] {
            let step = scp.feed(&mut fs, chunk);
            assert_eq!(step.exit, None);
            reply.extend(step.reply);
        }
        assert_eq!(reply, vec![0, 0, 0]);
        assert_eq!(fs.writes, vec![("/tmp/x.sh".to_string(), b"abcde".to_vec())]);
        assert_eq!(scp.eof().exit, Some(0));
    }

    #[test]
    fn source_sends_a_file_with_times() {
        let mut fs = Mem::new();
        fs.files.insert("/root/f".into(), b"hi\n".to_vec());
        let mut scp = Scp::parse("scp -p -f f").expect("an scp source");
        assert!(scp.start().is_empty());
        let step = scp.feed(&mut fs, &[0]);
        assert_eq!(step.reply, b"T1795410000 0 1795410000 0\n");
        let step = scp.feed(&mut fs, &[0]);
        assert_eq!(step.reply, b"C0644 3 f\n");
        let step = scp.feed(&mut fs, &[0]);
        assert_eq!(step.reply, b"hi\n\0");
        let step = scp.feed(&mut fs, &[0]);
        assert_eq!(step.exit, Some(0));
    }

    #[test]
    fn source_sends_a_directory_recursively() {
        let mut fs = Mem::new();
        fs.dirs.push("/root/d".into());
        fs.files.insert("/root/d/b".into(), b"22".to_vec());
        fs.files.insert("/root/d/a".into(), b"1".to_vec());
        let mut scp = Scp::parse("scp -r -f d").expect("an scp source");
        let mut said: Vec<Vec<u8>> = Vec::new();
        loop {
            let step = scp.feed(&mut fs, &[0]);
            if let Some(code) = step.exit {
                assert_eq!(code, 0);
                break;
            }
            said.push(step.reply);
        }
        let expect: [&[u8]; 6] = [b"D0755 0 d\n", b"C0644 1 a\n", b"1\0", b"C0644 2 b\n", b"22\0", b"E\n"];
        assert_eq!(said, expect.map(<[u8]>::to_vec));

        // Without -r a directory is refused, as scp refuses it.
        let mut scp = Scp::parse("scp -f d").expect("an scp source");
        let step = scp.feed(&mut fs, &[0]);
        assert_eq!(step.reply, b"\x01scp: /root/d: not a regular file\n");
        assert_eq!(step.exit, Some(1));
    }

    #[test]
    fn source_of_a_missing_file_says_so() {
        let mut fs = Mem::new();
        let mut scp = Scp::parse("scp -f /nope").expect("an scp source");
        let step = scp.feed(&mut fs, &[0]);
        assert_eq!(step.reply, b"\x01scp: /nope: No such file or directory\n");
        assert_eq!(step.exit, Some(1));
    }

    #[test]
    fn other_scp_lines_are_the_shells() {
        assert!(Scp::parse("scp a b").is_none());
        assert!(Scp::parse("scp -t").is_none());
        assert!(Scp::parse("ls -t /tmp").is_none());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16), sink in any::<bool>()) {
            let mut fs = Mem::new();
            fs.files.insert("/tmp/f".into(), b"data".to_vec());
            let mut scp = Scp::parse(if sink { "scp -r -t /tmp" } else { "scp -f /tmp/f" }).expect("parses");
            for c in chunks {
                scp.feed(&mut fs, &c);
            }
            scp.eof();
        }
    }
}
