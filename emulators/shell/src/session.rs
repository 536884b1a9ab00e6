//! One login's shell: the line editor of an interactive (pty) session, the
//! one-shot run of an `exec` request, and the re-run machinery that lets a
//! command stop for terminal input (`sudo`'s password, `cat > f`, `read`)
//! without threads: the line is run again from a snapshot with the answers
//! typed so far, and the output already shown is skipped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::fs::{Cred, Fs, FsError, Node, Overlay};
use crate::host::{ShellHost, User};
use crate::interp::{Answer, Flow, InputRequest, Io, Run, State, Stdin};
use crate::parse::{ParseFailure, parse};
use crate::{Limits, ShellEvent, ShellOutput};

/// How the client asked for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A pty shell: echo, line editing, prompts.
    Interactive,
    /// `ssh host 'command'`: run the line, report output and status, end.
    Exec(String),
}

/// Input a waiting command is collecting.
struct Waiting {
    line: String,
    st: State,
    overlay: Overlay,
    rng: ChaCha20Rng,
    answers: Vec<Answer>,
    shown_bytes: usize,
    shown_events: usize,
    request: InputRequest,
    typed: Vec<u8>,
}

/// One login's shell.
pub struct ShellSession {
    host: ShellHost,
    fs: Fs,
    st: State,
    limits: Limits,
    interactive: bool,
    exec_line: Option<String>,
    exec_stdin: Vec<u8>,
    exec_eof: bool,
    rng: ChaCha20Rng,
    line: Vec<char>,
    continuation: Option<String>,
    history_pos: Option<usize>,
    escape: Option<Vec<u8>>,
    utf8: Vec<u8>,
    last_cr: bool,
    waiting: Option<Waiting>,
    closed: bool,
}

impl ShellSession {
    /// A new login of `user` (a name from `/etc/passwd`; an unknown name gets
    /// an ordinary account). `seed` drives every random choice of the session
    /// (pids, `$RANDOM`).
    pub fn new(host: &ShellHost, user: &str, mode: Mode, limits: Limits, seed: u64) -> Self {
        let user = host.user(user).cloned().unwrap_or_else(|| User {
            name: user.to_string(),
            uid: 1001,
            gids: vec![1001],
            home: format!("/home/{user}"),
            shell: host.inner.facts.distro.shell.clone(),
            password: None,
        });
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let pid = 1000 + rand_core::RngCore::next_u32(&mut rng) % 30_000;
        let (interactive, exec_line) = match mode {
            Mode::Interactive => (true, None),
            Mode::Exec(line) => (false, Some(line)),
        };
        let mut st = State {
            vars: BTreeMap::new(),
            exported: BTreeSet::new(),
            cwd: user.home.clone(),
            user: user.clone(),
            user_stack: Vec::new(),
            last_status: 0,
            history: Vec::new(),
            functions: BTreeMap::new(),
            positional: Vec::new(),
            pid,
            last_bg: None,
            aliases: BTreeMap::new(),
            arrays: BTreeMap::new(),
            sudo_ok_until: 0,
        };
        login_env(&mut st, &user, host, interactive);
        if interactive {
            for (a, b) in [
                ("ls", "ls --color=auto"),
                ("ll", "ls -alF"),
                ("la", "ls -A"),
                ("l", "ls -CF"),
            ] {
                st.aliases.insert(a.into(), b.into());
            }
        }
        Self {
            fs: host.filesystem(),
            host: host.clone(),
            st,
            limits,
            interactive,
            exec_line,
            exec_stdin: Vec::new(),
            exec_eof: false,
            rng,
            line: Vec::new(),
            continuation: None,
            history_pos: None,
            escape: None,
            utf8: Vec::new(),
            last_cr: false,
            waiting: None,
            closed: false,
        }
    }

    /// Sets an environment variable before the shell starts (SSH `env` requests).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.st.vars.insert(name.to_string(), value.to_string());
        self.st.exported.insert(name.to_string());
    }

    /// Whether the shell has exited.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The filesystem view of this session (for SFTP/SCP on the same login).
    pub fn filesystem(&self) -> &Fs {
        &self.fs
    }

    /// The working directory (where relative SFTP/SCP paths start).
    pub fn cwd(&self) -> &str {
        &self.st.cwd
    }

    /// Another account's home directory, if it exists.
    pub fn home_of(&self, user: &str) -> Option<String> {
        self.host.user(user).map(|u| u.home.clone())
    }

    /// The root filesystem's size and use in KiB (see `ShellHost::root_disk_kb`).
    pub fn root_disk_kb(&self) -> (u64, u64) {
        self.host.root_disk_kb(&self.fs)
    }

    /// The logged-in user (after any `su`).
    pub fn user(&self) -> &User {
        &self.st.user
    }

    /// Reads a file as the session's user (SFTP/SCP downloads); `/proc`
    /// files are rendered as `cat` would show them.
    pub fn read_file(&mut self, now: i64, path: &str) -> Result<Vec<u8>, FsError> {
        self.with_run(now, |run| run.read_file(path).map(|d| d.to_vec()))
    }

    /// Writes a file as the session's user (SFTP/SCP uploads), with the
    /// user's permissions and the overlay's bounds; returns the
    /// [`ShellEvent::FileCaptured`] to log and quarantine.
    pub fn write_file(&mut self, now: i64, path: &str, data: &[u8]) -> Result<Option<ShellEvent>, FsError> {
        self.with_run(now, |run| {
            run.write_file(path, data, false, "upload")?;
            Ok(run.events.pop())
        })
    }

    /// Lists a directory as the session's user (names and nodes, sorted).
    pub fn list_dir(&self, path: &str) -> Result<Vec<(String, Node)>, FsError> {
        let abs = crate::fs::absolute(&self.st.cwd, path);
        self.fs.list(
            &abs,
            Cred {
                uid: self.st.user.uid,
                gids: &self.st.user.gids,
            },
        )
    }

    fn with_run<T>(&mut self, now: i64, f: impl FnOnce(&mut Run<'_>) -> T) -> T {
        let mut run = Run {
            st: &mut self.st,
            host: &self.host,
            fs: &self.fs,
            now,
            rng: &mut self.rng,
            answers: VecDeque::new(),
            events: Vec::new(),
            flushed: Vec::new(),
            flushed_bytes: 0,
            steps: 0,
            depth: 0,
            interactive: self.interactive,
            limits: self.limits,
            exec_stdin: None,
            line_no: 1,
            subst_status: None,
        };
        f(&mut run)
    }

    /// Starts the shell: the first prompt, or the exec request's run.
    pub fn start(&mut self, now: i64) -> Vec<ShellOutput> {
        match self.exec_line.take() {
            Some(line) => self.execute(now, line, Vec::new(), 0, 0, None),
            None => vec![ShellOutput::Stdout(self.prompt().into_bytes())],
        }
    }

    /// The prompt as it would be shown now (`PS1` of the distro).
    pub fn prompt(&self) -> String {
        let ps1 = self.st.vars.get("PS1").cloned().unwrap_or_default();
        let home = &self.st.user.home;
        let w = if self.st.cwd == *home {
            "~".to_string()
        } else if let Some(rest) = self.st.cwd.strip_prefix(&format!("{home}/")) {
            format!("~/{rest}")
        } else {
            self.st.cwd.clone()
        };
        let base = if w == "~" || self.st.cwd == "/" {
            w.clone()
        } else {
            self.st.cwd.rsplit('/').next().unwrap_or("/").to_string()
        };
        let host = self.host.hostname().split('.').next().unwrap_or("").to_string();
        let mut out = String::new();
        let mut chars = ps1.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('u') => out.push_str(&self.st.user.name),
                Some('h') => out.push_str(&host),
                Some('H') => out.push_str(self.host.hostname()),
                Some('w') => out.push_str(&w),
                Some('W') => out.push_str(&base),
                Some('$') => out.push(if self.st.user.uid == 0 { '#' } else { '$' }),
                Some('n') => out.push('\n'),
                Some('s') => out.push_str("bash"),
                Some('[' | ']') => {}
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        }
        out
    }

    /// Feeds bytes from the client. In exec mode they are the command's stdin.
    pub fn feed(&mut self, now: i64, input: &[u8]) -> Vec<ShellOutput> {
        if self.closed {
            return Vec::new();
        }
        if !self.interactive {
            let room = self.limits.max_input.saturating_sub(self.exec_stdin.len());
            self.exec_stdin.extend_from_slice(&input[..input.len().min(room)]);
            return Vec::new();
        }
        let mut out = Vec::new();
        for &b in input {
            if self.closed {
                break;
            }
            self.key(now, b, &mut out);
        }
        merge(out)
    }

    /// The client closed its input (exec stdin EOF, or the channel's EOF).
    pub fn eof(&mut self, now: i64) -> Vec<ShellOutput> {
        if self.closed {
            return Vec::new();
        }
        if !self.interactive {
            self.exec_eof = true;
            if let Some(w) = self.waiting.take() {
                return self.rerun(now, w, None);
            }
            return Vec::new();
        }
        self.closed = true;
        vec![ShellOutput::Exit(self.st.last_status)]
    }

    /// Runs one exec command line to the end with `stdin` (a convenience for
    /// tests and for callers that already hold all the input).
    pub fn run_exec(host: &ShellHost, user: &str, line: &str, stdin: &[u8], now: i64, seed: u64) -> Vec<ShellOutput> {
        let mut s = ShellSession::new(host, user, Mode::Exec(line.to_string()), Limits::default(), seed);
        let mut out = s.start(now);
        if !s.closed {
            s.feed(now, stdin);
            out.extend(s.eof(now));
        }
        out
    }

    // === the line editor ===

    fn key(&mut self, now: i64, b: u8, out: &mut Vec<ShellOutput>) {
        if let Some(seq) = self.escape.as_mut() {
            seq.push(b);
            if seq.len() >= 2 && (b.is_ascii_alphabetic() || b == b'~' || seq.len() > 6) {
                let seq = self.escape.take().unwrap_or_default();
                if self.waiting.is_none() {
                    self.history_key(&seq, out);
                }
            }
            return;
        }
        let was_cr = std::mem::replace(&mut self.last_cr, b == b'\r');
        if b == b'\n' && was_cr {
            return;
        }
        if self.waiting.is_some() {
            self.waiting_key(now, b, out);
            return;
        }
        match b {
            b'\r' | b'\n' => {
                out.push(ShellOutput::Stdout(b"\r\n".to_vec()));
                let typed: String = std::mem::take(&mut self.line).into_iter().collect();
                self.history_pos = None;
                self.enter(now, typed, out);
            }
            0x03 => {
                self.line.clear();
                self.continuation = None;
                self.st.last_status = 130;
                out.push(ShellOutput::Stdout(format!("^C\r\n{}", self.prompt()).into_bytes()));
            }
            0x04 => {
                if self.line.is_empty() && self.continuation.is_none() {
                    out.extend(self.exit_shell(self.st.last_status));
                }
            }
            0x7f | 0x08 => {
                if self.line.pop().is_some() {
                    out.push(ShellOutput::Stdout(b"\x08 \x08".to_vec()));
                }
            }
            0x15 => {
                let n = self.line.len();
                self.line.clear();
                out.push(ShellOutput::Stdout(b"\x08 \x08".repeat(n)));
            }
            0x0c => {
                let line: String = self.line.iter().collect();
                out.push(ShellOutput::Stdout(
                    format!("\x1b[H\x1b[2J{}{line}", self.prompt()).into_bytes(),
                ));
            }
            0x1b => self.escape = Some(Vec::new()),
            0x09 => out.push(ShellOutput::Stdout(b"\x07".to_vec())),
            b if b < 0x20 => {}
            b => {
                if let Some(c) = self.utf8_char(b)
                    && self.line.len() < self.limits.max_line
                {
                    self.line.push(c);
                    out.push(ShellOutput::Stdout(c.to_string().into_bytes()));
                }
            }
        }
    }

    fn utf8_char(&mut self, b: u8) -> Option<char> {
        self.utf8.push(b);
        match std::str::from_utf8(&self.utf8) {
            Ok(s) => {
                let c = s.chars().next();
                self.utf8.clear();
                c
            }
            Err(e) if e.error_len().is_none() && self.utf8.len() < 4 => None,
            Err(_) => {
                self.utf8.clear();
                None
            }
        }
    }

    fn history_key(&mut self, seq: &[u8], out: &mut Vec<ShellOutput>) {
        let n = self.st.history.len();
        let pos = match seq {
            b"[A" | b"OA" => match self.history_pos {
                None if n > 0 => Some(n - 1),
                Some(p) if p > 0 => Some(p - 1),
                other => other,
            },
            b"[B" | b"OB" => match self.history_pos {
                Some(p) if p + 1 < n => Some(p + 1),
                _ => None,
            },
            _ => return,
        };
        let erase = b"\x08 \x08".repeat(self.line.len());
        self.history_pos = pos;
        self.line = pos
            .and_then(|p| self.st.history.get(p))
            .map(|l| l.chars().collect())
            .unwrap_or_default();
        let mut bytes = erase;
        bytes.extend(self.line.iter().collect::<String>().into_bytes());
        out.push(ShellOutput::Stdout(bytes));
    }

    fn waiting_key(&mut self, now: i64, b: u8, out: &mut Vec<ShellOutput>) {
        let Some(w) = self.waiting.as_mut() else { return };
        let echo = matches!(w.request, InputRequest::UntilEof | InputRequest::Line { echo: true });
        match b {
            0x03 => {
                out.push(ShellOutput::Stdout(b"^C\r\n".to_vec()));
                if let Some(w) = self.waiting.take() {
                    out.extend(self.rerun(now, w, Some(Answer::Interrupt)));
                }
            }
            b'\r' | b'\n' => {
                out.push(ShellOutput::Stdout(b"\r\n".to_vec()));
                if matches!(w.request, InputRequest::UntilEof) {
                    w.typed.push(b'\n');
                    if w.typed.len() > self.limits.max_input
                        && let Some(w) = self.waiting.take()
                    {
                        let data = w.typed.clone();
                        out.extend(self.rerun(now, w, Some(Answer::All(data))));
                    }
                    return;
                }
                if let Some(w) = self.waiting.take() {
                    let line = String::from_utf8_lossy(&w.typed).into_owned();
                    out.extend(self.rerun(now, w, Some(Answer::Line(Some(line)))));
                }
            }
            0x04 => {
                let answer = match w.request {
                    InputRequest::UntilEof => Answer::All(w.typed.clone()),
                    InputRequest::Line { .. } if w.typed.is_empty() => Answer::Line(None),
                    InputRequest::Line { .. } => return,
                };
                if let Some(w) = self.waiting.take() {
                    out.extend(self.rerun(now, w, Some(answer)));
                }
            }
            0x7f | 0x08 => {
                let at_line_start = w.typed.last().is_none_or(|&c| c == b'\n');
                if !at_line_start {
                    w.typed.pop();
                    if echo {
                        out.push(ShellOutput::Stdout(b"\x08 \x08".to_vec()));
                    }
                }
            }
            b if b < 0x20 && b != b'\t' => {}
            b => {
                if w.typed.len() < self.limits.max_input {
                    w.typed.push(b);
                    if echo {
                        out.push(ShellOutput::Stdout(vec![b]));
                    }
                }
            }
        }
    }

    fn enter(&mut self, now: i64, typed: String, out: &mut Vec<ShellOutput>) {
        let line = match self.continuation.take() {
            Some(prev) => format!("{prev}\n{typed}"),
            None => typed,
        };
        if line.trim().is_empty() {
            out.push(ShellOutput::Stdout(self.prompt().into_bytes()));
            return;
        }
        match parse(&line, &self.limits) {
            Err(ParseFailure::Incomplete { .. }) if line.len() < self.limits.max_line => {
                self.continuation = Some(line);
                out.push(ShellOutput::Stdout(b"> ".to_vec()));
            }
            _ => out.extend(self.execute(now, line, Vec::new(), 0, 0, None)),
        }
    }

    // === running a line ===

    fn execute(
        &mut self,
        now: i64,
        line: String,
        answers: Vec<Answer>,
        skip_bytes: usize,
        skip_events: usize,
        snapshot: Option<(State, Overlay, ChaCha20Rng)>,
    ) -> Vec<ShellOutput> {
        let (st0, ov0, rng0) = match snapshot {
            Some(s) => s,
            None => (self.st.clone(), self.fs.snapshot(), self.rng.clone()),
        };
        if skip_events == 0 && answers.is_empty() {
            self.st.history.push(line.clone());
            if self.st.history.len() > self.limits.max_history {
                self.st.history.remove(0);
            }
        }
        let exec_stdin = self.exec_eof.then(|| (self.exec_stdin.clone(), 0));
        let mut run = Run {
            st: &mut self.st,
            host: &self.host,
            fs: &self.fs,
            now,
            rng: &mut self.rng,
            answers: VecDeque::from(answers.clone()),
            events: Vec::new(),
            flushed: Vec::new(),
            flushed_bytes: 0,
            steps: 0,
            depth: 0,
            interactive: self.interactive,
            limits: self.limits,
            exec_stdin,
            line_no: 1,
            subst_status: None,
        };
        run.events.push(ShellEvent::Command {
            line: line.clone(),
            cwd: run.st.cwd.clone(),
            user: run.st.user.name.clone(),
        });
        let mut io = Io {
            stdin: Stdin::Terminal,
            out: Vec::new(),
            err: Vec::new(),
            top: true,
        };
        let result = match parse(&line, &self.limits) {
            Ok(program) => run.run_program(&program, &mut io),
            Err(e) => {
                let msg = if run.interactive {
                    format!("-bash: {}\n", e.message())
                } else {
                    match &e {
                        ParseFailure::Syntax { .. } => {
                            format!("bash: -c: line 1: {}\nbash: -c: line 1: `{line}'\n", e.message())
                        }
                        ParseFailure::Incomplete { quote: Some(_) } => format!("bash: -c: line 1: {}\n", e.message()),
                        _ => format!("bash: -c: line 2: {}\n", e.message()),
                    }
                };
                io.err.extend_from_slice(msg.as_bytes());
                Ok(2)
            }
        };
        run.flush(&mut io);
        let flushed = std::mem::take(&mut run.flushed);
        let flushed_bytes = run.flushed_bytes;
        let events = std::mem::take(&mut run.events);
        drop(run);

        let mut out = Vec::new();
        let mut skip = skip_bytes;
        for (is_err, mut chunk) in flushed {
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            chunk.drain(..skip);
            skip = 0;
            out.push(self.terminal(is_err, chunk));
        }
        let n_events = events.len();
        out.extend(events.into_iter().skip(skip_events).map(ShellOutput::Event));

        match result {
            Err(Flow::NeedInput(request)) => {
                self.waiting = Some(Waiting {
                    line,
                    st: st0,
                    overlay: ov0,
                    rng: rng0,
                    answers,
                    shown_bytes: flushed_bytes,
                    shown_events: n_events,
                    request,
                    typed: Vec::new(),
                });
                out
            }
            Ok(status) => self.finish_line(status, out),
            Err(Flow::Exit(code)) => {
                out.extend(self.exit_shell(code));
                out
            }
            Err(Flow::Interrupted) => self.finish_line(130, out),
            Err(Flow::Budget) => self.finish_line(if self.interactive { 130 } else { 137 }, out),
            Err(Flow::Return(code)) => self.finish_line(code, out),
            Err(Flow::Break(_) | Flow::Continue(_)) => self.finish_line(0, out),
        }
    }

    fn rerun(&mut self, now: i64, w: Waiting, answer: Option<Answer>) -> Vec<ShellOutput> {
        self.st = w.st.clone();
        self.fs.restore(w.overlay.clone());
        self.rng = w.rng.clone();
        let mut answers = w.answers;
        if let Some(a) = answer {
            answers.push(a);
        }
        let events_to_skip = w.shown_events.max(1);
        self.execute(
            now,
            w.line,
            answers,
            w.shown_bytes,
            events_to_skip,
            Some((w.st, w.overlay, w.rng)),
        )
    }

    fn finish_line(&mut self, status: i32, mut out: Vec<ShellOutput>) -> Vec<ShellOutput> {
        self.st.last_status = status;
        if self.interactive {
            out.push(ShellOutput::Stdout(self.prompt().into_bytes()));
        } else if self.waiting.is_none() {
            out.extend(self.exit_shell(status));
        }
        out
    }

    fn exit_shell(&mut self, code: i32) -> Vec<ShellOutput> {
        if let Some((user, cwd, vars)) = self.st.user_stack.pop() {
            // Leaving an `su` shell returns to the previous user.
            self.st.user = user;
            self.st.cwd = cwd;
            self.st.vars = vars;
            self.st.last_status = code;
            if self.interactive {
                return vec![ShellOutput::Stdout(format!("exit\r\n{}", self.prompt()).into_bytes())];
            }
        }
        self.closed = true;
        let mut out = Vec::new();
        if self.interactive {
            out.push(ShellOutput::Stdout(b"logout\r\n".to_vec()));
        }
        out.push(ShellOutput::Exit(code & 0xff));
        out
    }

    fn terminal(&self, is_err: bool, chunk: Vec<u8>) -> ShellOutput {
        if !self.interactive {
            return if is_err {
                ShellOutput::Stderr(chunk)
            } else {
                ShellOutput::Stdout(chunk)
            };
        }
        // The pty's onlcr: every \n leaves as \r\n.
        let mut bytes = Vec::with_capacity(chunk.len() + chunk.len() / 16);
        for b in chunk {
            if b == b'\n' {
                bytes.push(b'\r');
            }
            bytes.push(b);
        }
        ShellOutput::Stdout(bytes)
    }
}

/// Joins adjacent terminal chunks so callers write fewer, larger packets.
fn merge(outputs: Vec<ShellOutput>) -> Vec<ShellOutput> {
    let mut out: Vec<ShellOutput> = Vec::with_capacity(outputs.len());
    for o in outputs {
        if let (Some(ShellOutput::Stdout(prev)), ShellOutput::Stdout(next)) = (out.last_mut(), &o) {
            prev.extend_from_slice(next);
            continue;
        }
        out.push(o);
    }
    out
}

/// The environment of a login shell.
pub(crate) fn login_env(st: &mut State, user: &User, host: &ShellHost, interactive: bool) {
    let path = if user.uid == 0 {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    } else {
        "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
    };
    let mut vars = vec![
        ("HOME", user.home.clone()),
        ("USER", user.name.clone()),
        ("LOGNAME", user.name.clone()),
        ("SHELL", user.shell.clone()),
        ("PATH", path.to_string()),
        ("PWD", user.home.clone()),
        ("LANG", "C.UTF-8".to_string()),
        ("SHLVL", "1".to_string()),
        ("HOSTNAME", host.hostname().to_string()),
    ];
    if interactive {
        vars.push(("TERM", "xterm-256color".to_string()));
        vars.push(("PS1", host.inner.facts.distro.ps1.clone()));
    }
    for (k, v) in vars {
        st.vars.insert(k.to_string(), v);
        if !matches!(k, "PS1" | "HOSTNAME") {
            st.exported.insert(k.to_string());
        }
    }
    st.cwd = user.home.clone();
}
