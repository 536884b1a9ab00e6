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
/// Directory depth of a recursive upload.
const MAX_DEPTH: usize = 32;

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
    /// Source: waiting for the client's ack before the next step.
    Ack(SourceStep),
    Done,
}

#[derive(Clone, Copy)]
enum SourceStep {
    Header,
    Data,
    Finish,
}

/// One `scp -t`/`scp -f` run on a channel.
pub struct Scp {
    role: Role,
    preserve: bool,
    state: State,
    /// Directories of a recursive upload, innermost last.
    dirs: Vec<String>,
    /// Source: the file, read when the client is ready.
    data: Vec<u8>,
    /// Source with `-p`: the mode for the C line sent after the T line's ack.
    data_header: Option<u32>,
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
        let (mut to, mut from, mut preserve, mut path) = (false, false, false, None);
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
                        // -r, -d, -v and the rest change nothing here.
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
                Role::Source { .. } => State::Ack(SourceStep::Header),
            },
            role,
            preserve,
            dirs: Vec::new(),
            data: Vec::new(),
            data_header: None,
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
                State::Ack(next) => {
                    let next = *next;
                    let ack = data[0];
                    data = &data[1..];
                    if ack != 0 {
                        step.exit = Some(1);
                        break;
                    }
                    self.source(backend, next, &mut step);
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

    fn source(&mut self, backend: &mut dyn Backend, next: SourceStep, step: &mut Step) {
        let Role::Source { path } = &self.role else {
            step.exit = Some(1);
            return;
        };
        let path = decnet_shell::fs::absolute(&backend.cwd(), path);
        match next {
            SourceStep::Header => {
                let attrs = match backend.stat(&path, true) {
                    Ok(a) if a.is_dir() => {
                        step.reply
                            .extend_from_slice(format!("\x01scp: {path}: not a regular file\n").as_bytes());
                        step.exit = Some(1);
                        return;
                    }
                    Ok(a) => a,
                    Err(e) => {
                        step.reply
                            .extend_from_slice(format!("\x01scp: {path}: {}\n", e.message()).as_bytes());
                        step.exit = Some(1);
                        return;
                    }
                };
                match backend.read(&path) {
                    Ok(d) if d.len() <= MAX_FILE => self.data = d,
                    Ok(_) => {
                        step.reply.extend_from_slice(
                            format!("\x01scp: {path}: {}\n", FsError::PermissionDenied.message()).as_bytes(),
                        );
                        step.exit = Some(1);
                        return;
                    }
                    Err(e) => {
                        step.reply
                            .extend_from_slice(format!("\x01scp: {path}: {}\n", e.message()).as_bytes());
                        step.exit = Some(1);
                        return;
                    }
                }
                if self.preserve {
                    let t = attrs.mtime.max(0);
                    step.reply.extend_from_slice(format!("T{t} 0 {t} 0\n").as_bytes());
                    // The C line follows the ack of the T line.
                    self.state = State::Ack(SourceStep::Data);
                    self.preserve = false;
                    self.data_header = Some(attrs.mode);
                    return;
                }
                self.header(&path, attrs.mode, step);
            }
            SourceStep::Data => match self.data_header.take() {
                Some(mode) => self.header(&path, mode, step),
                None => {
                    step.reply.extend_from_slice(&std::mem::take(&mut self.data));
                    step.reply.push(0);
                    self.state = State::Ack(SourceStep::Finish);
                }
            },
            SourceStep::Finish => step.exit = Some(0),
        }
    }

    fn header(&mut self, path: &str, mode: u32, step: &mut Step) {
        let name = path.rsplit('/').next().unwrap_or(path);
        step.reply
            .extend_from_slice(format!("C{:04o} {} {name}\n", mode & 0o7777, self.data.len()).as_bytes());
        self.state = State::Ack(SourceStep::Data);
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
