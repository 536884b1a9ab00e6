//! The interpreter: walks brush-parser's AST with bash's expansion order
//! (brace, tilde/parameter/command/arithmetic, field splitting, globbing,
//! quote removal), redirections, pipelines and control flow. Pipelines run
//! one stage after another over byte buffers, so nothing here blocks or
//! spawns; every loop iteration and command counts against a budget.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use brush_parser::ast;
use brush_parser::word::{self, Parameter, ParameterExpr, ParameterTestType, SpecialParameter, WordPiece};
use rand_chacha::ChaCha20Rng;

use crate::fs::{Content, Cred, Fs, FsError};
use crate::host::{ShellHost, User};
use crate::{Limits, ShellEvent};

/// Why execution stopped early.
#[derive(Debug)]
pub(crate) enum Flow {
    /// `exit`: leave the shell.
    Exit(i32),
    /// A command wants terminal input that has not been typed yet.
    NeedInput(InputRequest),
    /// ^C at a prompt: the whole line stops with status 130.
    Interrupted,
    /// The work budget ran out.
    Budget,
    Break(u32),
    Continue(u32),
    Return(i32),
}

/// What the waiting command needs.
#[derive(Debug, Clone)]
pub(crate) enum InputRequest {
    /// One line; `echo` false for passwords.
    Line { echo: bool },
    /// Everything until ^D (`cat > f`).
    UntilEof,
}

/// One answer to an [`InputRequest`], replayed on re-run.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Line(Option<String>),
    All(Vec<u8>),
    Interrupt,
}

pub(crate) type Exec = Result<i32, Flow>;

/// Where a command's input comes from.
#[derive(Debug, Clone)]
pub(crate) enum Stdin {
    /// The session's terminal (or the exec request's stdin).
    Terminal,
    /// Bytes from a pipe, file, heredoc or here-string.
    Data(Arc<[u8]>),
}

/// One command's streams.
pub(crate) struct Io {
    pub(crate) stdin: Stdin,
    pub(crate) out: Vec<u8>,
    pub(crate) err: Vec<u8>,
    /// The session's own terminal: flushed after every command.
    pub(crate) top: bool,
}

impl Io {
    pub(crate) fn child(stdin: Stdin) -> Self {
        Self {
            stdin,
            out: Vec::new(),
            err: Vec::new(),
            top: false,
        }
    }
}

/// Session state that outlives one command line.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) exported: BTreeSet<String>,
    pub(crate) cwd: String,
    pub(crate) user: User,
    /// Users to return to on `exit` after `su`.
    pub(crate) user_stack: Vec<(User, String, BTreeMap<String, String>)>,
    pub(crate) last_status: i32,
    pub(crate) history: Vec<String>,
    pub(crate) functions: BTreeMap<String, Arc<ast::FunctionBody>>,
    pub(crate) positional: Vec<String>,
    pub(crate) pid: u32,
    pub(crate) last_bg: Option<u32>,
    pub(crate) aliases: BTreeMap<String, String>,
    /// Indexed arrays (`a=(x y)`); `$a` is element 0, kept in `vars`.
    pub(crate) arrays: BTreeMap<String, Vec<String>>,
    pub(crate) sudo_ok_until: i64,
}

/// Everything one run of a command line uses.
pub(crate) struct Run<'a> {
    pub(crate) st: &'a mut State,
    pub(crate) host: &'a ShellHost,
    pub(crate) fs: &'a Fs,
    pub(crate) now: i64,
    pub(crate) rng: &'a mut ChaCha20Rng,
    pub(crate) answers: VecDeque<Answer>,
    pub(crate) events: Vec<ShellEvent>,
    pub(crate) flushed: Vec<(bool, Vec<u8>)>,
    pub(crate) flushed_bytes: usize,
    pub(crate) steps: u64,
    pub(crate) depth: u32,
    pub(crate) interactive: bool,
    pub(crate) limits: Limits,
    /// The exec request's stdin, once complete.
    pub(crate) exec_stdin: Option<(Vec<u8>, usize)>,
    pub(crate) line_no: u32,
    /// Status of the last `$(…)` in the current command's words.
    pub(crate) subst_status: Option<i32>,
}

const IFS_DEFAULT: &str = " \t\n";

impl Run<'_> {
    // === budget and output ===

    pub(crate) fn tick(&mut self) -> Result<(), Flow> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(Flow::Budget);
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, io: &mut Io) {
        if !io.top {
            return;
        }
        for (is_err, buf) in [
            (true, std::mem::take(&mut io.err)),
            (false, std::mem::take(&mut io.out)),
        ] {
            if buf.is_empty() {
                continue;
            }
            let room = self.limits.max_output.saturating_sub(self.flushed_bytes);
            let take = buf.len().min(room);
            if take == 0 {
                continue;
            }
            self.flushed_bytes += take;
            self.flushed.push((is_err, buf[..take].to_vec()));
        }
    }

    /// Bounds a buffer that grows inside a loop.
    fn cap(&self, buf: &mut Vec<u8>) {
        if buf.len() > self.limits.max_output {
            buf.truncate(self.limits.max_output);
        }
    }

    pub(crate) fn cred(&self) -> Cred<'_> {
        Cred {
            uid: self.st.user.uid,
            gids: &self.st.user.gids,
        }
    }

    /// The prefix of the shell's own error messages (`-bash: `, `bash: line 1: `).
    pub(crate) fn err_prefix(&self) -> String {
        if self.interactive {
            "-bash: ".to_string()
        } else {
            "bash: ".to_string()
        }
    }

    pub(crate) fn emit(&mut self, event: ShellEvent) {
        if let ShellEvent::FileCaptured { path, data, .. } = &event {
            // One capture per path per command line: the file as it ends up.
            // A loop appending to a big file would otherwise hold a copy per write.
            let slot = self
                .events
                .iter()
                .position(|e| matches!(e, ShellEvent::FileCaptured { path: p, .. } if p == path));
            let held: usize = self
                .events
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != slot)
                .map(|(_, e)| match e {
                    ShellEvent::FileCaptured { data, .. } => data.len(),
                    _ => 0,
                })
                .sum();
            if held + data.len() > self.limits.max_capture {
                return;
            }
            if let Some(i) = slot {
                self.events[i] = event;
                return;
            }
        }
        if self.events.len() < 1024 {
            self.events.push(event);
        }
    }

    // === terminal input ===

    /// Reads one line typed at the terminal (`None` at end of input).
    pub(crate) fn read_line(&mut self, io: &mut Io, prompt: &str, echo: bool) -> Result<Option<String>, Flow> {
        if let Stdin::Data(data) = &io.stdin {
            // A pipe: take the first line, and let later reads see the rest.
            let data = data.clone();
            if data.is_empty() {
                return Ok(None);
            }
            let end = data.iter().position(|&b| b == b'\n').map_or(data.len(), |i| i + 1);
            io.stdin = Stdin::Data(data[end..].to_vec().into());
            let line = String::from_utf8_lossy(&data[..end]).trim_end_matches('\n').to_string();
            return Ok(Some(line));
        }
        if !self.interactive {
            let Some((buf, pos)) = self.exec_stdin.as_mut() else {
                return Err(Flow::NeedInput(InputRequest::UntilEof));
            };
            if *pos >= buf.len() {
                return Ok(None);
            }
            let rest = &buf[*pos..];
            let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
            let line = String::from_utf8_lossy(&rest[..end]).trim_end_matches('\n').to_string();
            *pos += end;
            return Ok(Some(line));
        }
        // The prompt is written on every run, so a re-run's output has the
        // same prefix as what the terminal already shows.
        io.err.extend_from_slice(prompt.as_bytes());
        self.flush(io);
        match self.answers.pop_front() {
            Some(Answer::Line(line)) => Ok(line),
            Some(Answer::Interrupt) => Err(Flow::Interrupted),
            Some(Answer::All(_)) | None => Err(Flow::NeedInput(InputRequest::Line { echo })),
        }
    }

    /// Reads all of stdin (a pipe, or the terminal until ^D).
    pub(crate) fn read_all(&mut self, io: &mut Io) -> Result<Arc<[u8]>, Flow> {
        match &io.stdin {
            Stdin::Data(d) => Ok(d.clone()),
            Stdin::Terminal if !self.interactive => match self.exec_stdin.as_mut() {
                Some((buf, pos)) => {
                    let rest: Arc<[u8]> = buf[*pos..].to_vec().into();
                    *pos = buf.len();
                    Ok(rest)
                }
                None => Err(Flow::NeedInput(InputRequest::UntilEof)),
            },
            Stdin::Terminal => match self.answers.pop_front() {
                Some(Answer::All(data)) => Ok(data.into()),
                Some(Answer::Line(l)) => Ok(l.unwrap_or_default().into_bytes().into()),
                Some(Answer::Interrupt) => Err(Flow::Interrupted),
                None => {
                    self.flush(io);
                    Err(Flow::NeedInput(InputRequest::UntilEof))
                }
            },
        }
    }

    // === files ===

    /// Reads a file's contents as the current user, rendering `/proc` files.
    pub(crate) fn read_file(&mut self, path: &str) -> Result<Arc<[u8]>, FsError> {
        let abs = crate::fs::absolute(&self.st.cwd, path);
        match self.fs.read(&abs, self.cred())? {
            Content::Bytes(b) => Ok(b),
            Content::Generated(g) => Ok(crate::commands::sysinfo::generated(self, g).into_bytes().into()),
            Content::Device(crate::fs::Device::Zero | crate::fs::Device::Random) => {
                // Endless devices: a bounded chunk.
                let mut buf = vec![0u8; 4096];
                rand_core::RngCore::fill_bytes(self.rng, &mut buf);
                Ok(buf.into())
            }
            Content::Device(_) => Ok(Arc::from(&b""[..])),
        }
    }

    /// Writes a file as the current user and reports what was captured.
    pub(crate) fn write_file(
        &mut self,
        path: &str,
        data: &[u8],
        append: bool,
        via: &'static str,
    ) -> Result<(), FsError> {
        let abs = crate::fs::absolute(&self.st.cwd, path);
        let cred = Cred {
            uid: self.st.user.uid,
            gids: &self.st.user.gids,
        };
        let real = self.fs.write(&abs, data, append, cred, self.now)?;
        if !data.is_empty()
            && let Ok((_, node)) = self.fs.lstat(&real)
            && let crate::fs::NodeKind::File(bytes) = node.kind
        {
            self.emit(ShellEvent::file_captured(real, bytes, via));
        }
        Ok(())
    }

    // === running programs ===

    /// Runs a parsed program (a line, a script, a command substitution).
    pub(crate) fn run_program(&mut self, program: &ast::Program, io: &mut Io) -> Exec {
        let mut status = 0;
        for cc in &program.complete_commands {
            status = self.run_list(cc, io)?;
        }
        Ok(status)
    }

    fn run_list(&mut self, list: &ast::CompoundList, io: &mut Io) -> Exec {
        let mut status = self.st.last_status;
        for ast::CompoundListItem(andor, sep) in &list.0 {
            if matches!(sep, ast::SeparatorOperator::Async) {
                // Background jobs: run now, report a job number like bash.
                let pid = self.st.pid + 1 + rand_core::RngCore::next_u32(self.rng) % 500;
                self.st.last_bg = Some(pid);
                if self.interactive {
                    io.err.extend_from_slice(format!("[1] {pid}\n").as_bytes());
                }
            }
            status = self.run_and_or(andor, io)?;
        }
        Ok(status)
    }

    fn run_and_or(&mut self, list: &ast::AndOrList, io: &mut Io) -> Exec {
        let mut status = self.run_pipeline(&list.first, io)?;
        for next in &list.additional {
            match next {
                ast::AndOr::And(p) if status == 0 => status = self.run_pipeline(p, io)?,
                ast::AndOr::Or(p) if status != 0 => status = self.run_pipeline(p, io)?,
                _ => {}
            }
        }
        Ok(status)
    }

    fn run_pipeline(&mut self, pipeline: &ast::Pipeline, io: &mut Io) -> Exec {
        self.tick()?;
        let status = if pipeline.seq.is_empty() {
            0
        } else if pipeline.seq.len() == 1 {
            self.run_command(&pipeline.seq[0], io)?
        } else {
            let mut stdin = io.stdin.clone();
            let mut status = 0;
            let last = pipeline.seq.len() - 1;
            for (i, cmd) in pipeline.seq.iter().enumerate() {
                let mut child = Io::child(stdin.clone());
                let result = self.run_command(cmd, &mut child);
                io.err.append(&mut child.err);
                match result {
                    Ok(s) => status = s,
                    // `exit` inside a pipeline only ends that stage's subshell.
                    Err(Flow::Exit(code)) => status = code,
                    Err(other) => return Err(other),
                }
                if i == last {
                    io.out.append(&mut child.out);
                } else {
                    stdin = Stdin::Data(std::mem::take(&mut child.out).into());
                }
            }
            self.flush(io);
            status
        };
        let status = if pipeline.bang { i32::from(status == 0) } else { status };
        self.st.last_status = status;
        Ok(status)
    }

    fn run_command(&mut self, command: &ast::Command, io: &mut Io) -> Exec {
        match command {
            ast::Command::Simple(simple) => self.run_simple(simple, io),
            ast::Command::Compound(compound, redirects) => {
                let redirects = redirects.as_ref().map(|r| r.0.as_slice()).unwrap_or_default();
                self.with_redirects(redirects, io, |run, io| run.run_compound(compound, io))
            }
            ast::Command::Function(def) => {
                self.st
                    .functions
                    .insert(def.fname.value.clone(), Arc::new(def.body.clone()));
                Ok(0)
            }
            ast::Command::ExtendedTest(test, redirects) => {
                let redirects = redirects.as_ref().map(|r| r.0.as_slice()).unwrap_or_default();
                self.with_redirects(redirects, io, |run, io| {
                    let ok = run.extended_test(&test.expr, io)?;
                    Ok(i32::from(!ok))
                })
            }
        }
    }

    fn run_compound(&mut self, compound: &ast::CompoundCommand, io: &mut Io) -> Exec {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            io.err
                .extend_from_slice(format!("{}maximum nesting level exceeded\n", self.err_prefix()).as_bytes());
            return Ok(1);
        }
        let result = self.run_compound_inner(compound, io);
        self.depth -= 1;
        result
    }

    fn run_compound_inner(&mut self, compound: &ast::CompoundCommand, io: &mut Io) -> Exec {
        match compound {
            ast::CompoundCommand::BraceGroup(group) => self.run_list(&group.list, io),
            ast::CompoundCommand::Subshell(sub) => {
                let saved = (self.st.vars.clone(), self.st.cwd.clone(), self.st.exported.clone());
                let result = self.run_list(&sub.list, io);
                (self.st.vars, self.st.cwd, self.st.exported) = saved;
                match result {
                    Err(Flow::Exit(code)) => Ok(code),
                    other => other,
                }
            }
            ast::CompoundCommand::IfClause(clause) => {
                if self.run_list(&clause.condition, io)? == 0 {
                    return self.run_list(&clause.then, io);
                }
                for branch in clause.elses.iter().flatten() {
                    match &branch.condition {
                        Some(cond) if self.run_list(cond, io)? != 0 => continue,
                        _ => return self.run_list(&branch.body, io),
                    }
                }
                Ok(0)
            }
            ast::CompoundCommand::ForClause(clause) => {
                let values = match &clause.values {
                    Some(words) => {
                        let mut all = Vec::new();
                        for w in words {
                            all.extend(self.expand_word(&w.value, io)?);
                        }
                        all
                    }
                    None => self.st.positional.clone(),
                };
                let mut status = 0;
                for value in values {
                    self.tick()?;
                    self.st.vars.insert(clause.variable_name.clone(), value);
                    match self.run_list(&clause.body.list, io) {
                        Ok(s) => status = s,
                        Err(Flow::Break(n)) if n <= 1 => break,
                        Err(Flow::Break(n)) => return Err(Flow::Break(n - 1)),
                        Err(Flow::Continue(n)) if n <= 1 => continue,
                        Err(Flow::Continue(n)) => return Err(Flow::Continue(n - 1)),
                        Err(other) => return Err(other),
                    }
                    self.flush(io);
                    self.cap(&mut io.out);
                }
                Ok(status)
            }
            ast::CompoundCommand::ArithmeticForClause(clause) => {
                if let Some(init) = &clause.initializer {
                    self.arith(&init.value, io)?;
                }
                let mut status = 0;
                loop {
                    self.tick()?;
                    if let Some(cond) = &clause.condition
                        && self.arith(&cond.value, io)? == 0
                    {
                        break;
                    }
                    match self.run_list(&clause.body.list, io) {
                        Ok(s) => status = s,
                        Err(Flow::Break(n)) if n <= 1 => break,
                        Err(Flow::Break(n)) => return Err(Flow::Break(n - 1)),
                        Err(Flow::Continue(n)) if n <= 1 => {}
                        Err(Flow::Continue(n)) => return Err(Flow::Continue(n - 1)),
                        Err(other) => return Err(other),
                    }
                    self.flush(io);
                    self.cap(&mut io.out);
                    if let Some(update) = &clause.updater {
                        self.arith(&update.value, io)?;
                    }
                }
                Ok(status)
            }
            ast::CompoundCommand::WhileClause(ast::WhileOrUntilClauseCommand(cond, body, _))
            | ast::CompoundCommand::UntilClause(ast::WhileOrUntilClauseCommand(cond, body, _)) => {
                let until = matches!(compound, ast::CompoundCommand::UntilClause(_));
                let mut status = 0;
                loop {
                    self.tick()?;
                    let c = self.run_list(cond, io)?;
                    if (c == 0) == until {
                        break;
                    }
                    match self.run_list(&body.list, io) {
                        Ok(s) => status = s,
                        Err(Flow::Break(n)) if n <= 1 => break,
                        Err(Flow::Break(n)) => return Err(Flow::Break(n - 1)),
                        Err(Flow::Continue(n)) if n <= 1 => {}
                        Err(Flow::Continue(n)) => return Err(Flow::Continue(n - 1)),
                        Err(other) => return Err(other),
                    }
                    self.flush(io);
                    self.cap(&mut io.out);
                }
                Ok(status)
            }
            ast::CompoundCommand::CaseClause(case) => {
                let value = self.expand_single(&case.value.value, io)?;
                for item in &case.cases {
                    let mut matched = false;
                    for pattern in &item.patterns {
                        let pat = self.expand_pattern(&pattern.value, io)?;
                        if crate::pattern::matches(&pat, &value) {
                            matched = true;
                            break;
                        }
                    }
                    if matched {
                        return match &item.cmd {
                            Some(list) => self.run_list(list, io),
                            None => Ok(0),
                        };
                    }
                }
                Ok(0)
            }
            ast::CompoundCommand::Arithmetic(a) => Ok(i32::from(self.arith(&a.expr.value, io)? == 0)),
            ast::CompoundCommand::Coprocess(_) => Ok(0),
        }
    }

    // === simple commands ===

    fn run_simple(&mut self, cmd: &ast::SimpleCommand, io: &mut Io) -> Exec {
        self.tick()?;
        let mut assignments = Vec::new();
        let mut redirects = Vec::new();
        let mut words: Vec<&str> = Vec::new();
        for item in cmd.prefix.iter().flat_map(|p| p.0.iter()) {
            match item {
                ast::CommandPrefixOrSuffixItem::AssignmentWord(a, _) => assignments.push(a),
                ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r.clone()),
                ast::CommandPrefixOrSuffixItem::Word(w) => words.push(&w.value),
                ast::CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {}
            }
        }
        if let Some(w) = &cmd.word_or_name {
            words.push(&w.value);
        }
        for item in cmd.suffix.iter().flat_map(|p| p.0.iter()) {
            match item {
                ast::CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r.clone()),
                ast::CommandPrefixOrSuffixItem::Word(w) => words.push(&w.value),
                ast::CommandPrefixOrSuffixItem::AssignmentWord(_, w) => words.push(&w.value),
                ast::CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {}
            }
        }
        // Aliases: only the first word, only interactive-style ones.
        let mut argv = Vec::new();
        self.subst_status = None;
        for (i, w) in words.iter().enumerate() {
            if i == 0
                && let Some(alias) = self.st.aliases.get(*w).cloned()
            {
                argv.extend(alias.split_whitespace().map(str::to_string));
                continue;
            }
            argv.extend(self.expand_word(w, io)?);
            if argv.len() > self.limits.max_args {
                io.err
                    .extend_from_slice(format!("{}Argument list too long\n", self.err_prefix()).as_bytes());
                return Ok(126);
            }
        }
        let mut values = Vec::new();
        for a in &assignments {
            let value = match &a.value {
                ast::AssignmentValue::Scalar(w) => self.expand_single(&w.value, io)?,
                ast::AssignmentValue::Array(items) => {
                    let mut parts = Vec::new();
                    for (_, w) in items {
                        parts.extend(self.expand_word(&w.value, io)?);
                    }
                    parts.truncate(self.limits.max_args);
                    let first = parts.first().cloned().unwrap_or_default();
                    if let ast::AssignmentName::VariableName(n) = &a.name
                        && (self.st.arrays.len() < 256 || self.st.arrays.contains_key(n))
                    {
                        self.st.arrays.insert(n.clone(), parts);
                    }
                    first
                }
            };
            let name = match &a.name {
                ast::AssignmentName::VariableName(n) | ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
            };
            values.push((name, value, a.append));
        }
        let subst_status = self.subst_status.unwrap_or(0);
        if argv.is_empty() {
            for (name, value, append) in values {
                self.set_var(&name, value, append);
            }
            let status = self.with_redirects(&redirects, io, |_, _| Ok(subst_status))?;
            self.flush(io);
            return Ok(status);
        }
        let status = self.with_redirects(&redirects, io, |run, io| {
            // Prefix assignments live for this command only.
            let saved: Vec<(String, Option<String>)> = values
                .iter()
                .map(|(n, _, _)| (n.clone(), run.st.vars.get(n).cloned()))
                .collect();
            for (name, value, append) in values {
                run.set_var(&name, value, append);
            }
            let result = run.invoke(&argv, io);
            for (name, old) in saved {
                match old {
                    Some(v) => run.st.vars.insert(name, v),
                    None => run.st.vars.remove(&name),
                };
            }
            result
        })?;
        self.flush(io);
        Ok(status)
    }

    pub(crate) fn set_var(&mut self, name: &str, value: String, append: bool) {
        let mut value = value;
        if append && let Some(old) = self.st.vars.get(name) {
            value = format!("{old}{value}");
        }
        let mut end = self.limits.max_var_len.min(value.len());
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
        if self.st.vars.len() < 4096 || self.st.vars.contains_key(name) {
            self.st.vars.insert(name.to_string(), value);
        }
    }

    /// Runs a command by name: a function, a builtin, or a program on `PATH`.
    pub(crate) fn invoke(&mut self, argv: &[String], io: &mut Io) -> Exec {
        self.tick()?;
        let name = argv[0].as_str();
        if let Some(body) = self.st.functions.get(name).cloned() {
            return self.call_function(&body, argv, io);
        }
        crate::commands::dispatch(self, argv, io)
    }

    fn call_function(&mut self, body: &ast::FunctionBody, argv: &[String], io: &mut Io) -> Exec {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            io.err.extend_from_slice(
                format!(
                    "{}{}: maximum function nesting level exceeded (100)\n",
                    self.err_prefix(),
                    argv[0]
                )
                .as_bytes(),
            );
            return Ok(1);
        }
        let saved = std::mem::replace(&mut self.st.positional, argv[1..].to_vec());
        let redirects = body.1.as_ref().map(|r| r.0.as_slice()).unwrap_or_default();
        let result = self.with_redirects(redirects, io, |run, io| run.run_compound_inner(&body.0, io));
        self.st.positional = saved;
        self.depth -= 1;
        match result {
            Err(Flow::Return(code)) => Ok(code),
            other => other,
        }
    }

    /// Runs `text` as a script (`sh script`, `./script`, `eval`, `source`).
    pub(crate) fn run_script(&mut self, text: &str, io: &mut Io) -> Exec {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            return Ok(1);
        }
        let result = match crate::parse::parse(text, &self.limits) {
            Ok(program) => self.run_program(&program, io),
            Err(e) => {
                io.err
                    .extend_from_slice(format!("{}{}\n", self.err_prefix(), e.message()).as_bytes());
                Ok(2)
            }
        };
        self.depth -= 1;
        result
    }

    // === redirections ===

    fn with_redirects(
        &mut self,
        redirects: &[ast::IoRedirect],
        io: &mut Io,
        body: impl FnOnce(&mut Self, &mut Io) -> Exec,
    ) -> Exec {
        if redirects.is_empty() {
            return body(self, io);
        }
        #[derive(Clone, PartialEq)]
        enum Target {
            Out,
            Err,
            File(String),
            Null,
        }
        let mut stdin = io.stdin.clone();
        let mut out = Target::Out;
        let mut err = Target::Err;
        for r in redirects {
            let (fd, target) = match r {
                ast::IoRedirect::File(fd, kind, target) => {
                    let dup_fd = |s: &str| s.parse::<i32>().ok();
                    let text = match target {
                        ast::IoFileRedirectTarget::Filename(w) | ast::IoFileRedirectTarget::Duplicate(w) => {
                            self.expand_single(&w.value, io)?
                        }
                        ast::IoFileRedirectTarget::Fd(n) => n.to_string(),
                        ast::IoFileRedirectTarget::ProcessSubstitution(..) => continue,
                    };
                    match kind {
                        ast::IoFileRedirectKind::Read | ast::IoFileRedirectKind::ReadAndWrite => {
                            match self.read_file(&text) {
                                Ok(data) => stdin = Stdin::Data(data),
                                Err(e) => return self.redirect_error(io, &text, e),
                            }
                            continue;
                        }
                        ast::IoFileRedirectKind::DuplicateInput => continue,
                        ast::IoFileRedirectKind::DuplicateOutput => {
                            let fd = fd.unwrap_or(1);
                            let target = match dup_fd(&text) {
                                Some(1) => out.clone(),
                                Some(2) => err.clone(),
                                _ if text == "-" => Target::Null,
                                _ => {
                                    io.err.extend_from_slice(
                                        format!("{}{text}: Bad file descriptor\n", self.err_prefix()).as_bytes(),
                                    );
                                    return Ok(1);
                                }
                            };
                            (fd, target)
                        }
                        ast::IoFileRedirectKind::Write
                        | ast::IoFileRedirectKind::Clobber
                        | ast::IoFileRedirectKind::Append => {
                            let append = matches!(kind, ast::IoFileRedirectKind::Append);
                            match self.open_for_write(&text, append) {
                                Ok(t) => (fd.unwrap_or(1), t.map_or(Target::Null, Target::File)),
                                Err(e) => return self.redirect_error(io, &text, e),
                            }
                        }
                    }
                }
                ast::IoRedirect::OutputAndError(w, append) => {
                    let text = self.expand_single(&w.value, io)?;
                    match self.open_for_write(&text, *append) {
                        Ok(t) => {
                            let t = t.map_or(Target::Null, Target::File);
                            out = t.clone();
                            err = t;
                            continue;
                        }
                        Err(e) => return self.redirect_error(io, &text, e),
                    }
                }
                ast::IoRedirect::HereString(_, w) => {
                    let mut text = self.expand_single(&w.value, io)?;
                    text.push('\n');
                    stdin = Stdin::Data(text.into_bytes().into());
                    continue;
                }
                ast::IoRedirect::HereDocument(_, doc) => {
                    let text = if doc.requires_expansion {
                        self.expand_heredoc(&doc.doc.value, io)?
                    } else {
                        doc.doc.value.clone()
                    };
                    stdin = Stdin::Data(text.into_bytes().into());
                    continue;
                }
            };
            match fd {
                1 => out = target,
                2 => err = target,
                _ => {}
            }
        }
        let mut child = Io::child(stdin);
        let result = body(self, &mut child);
        for (buf, target) in [
            (std::mem::take(&mut child.out), out),
            (std::mem::take(&mut child.err), err),
        ] {
            match target {
                Target::Out => io.out.extend_from_slice(&buf),
                Target::Err => io.err.extend_from_slice(&buf),
                Target::Null => {}
                Target::File(path) => {
                    if !buf.is_empty()
                        && let Err(e) = self.write_file(&path, &buf, true, "redirect")
                    {
                        io.err
                            .extend_from_slice(format!("{}{path}: {}\n", self.err_prefix(), e.message()).as_bytes());
                    }
                }
            }
        }
        self.flush(io);
        result
    }

    /// Creates or truncates a redirect target the way `open(2)` would; `None` for `/dev/null`.
    fn open_for_write(&mut self, path: &str, append: bool) -> Result<Option<String>, FsError> {
        if path.is_empty() {
            return Err(FsError::NotFound);
        }
        let abs = crate::fs::absolute(&self.st.cwd, path);
        if let Ok((_, node)) = self.fs.stat(&abs)
            && matches!(node.kind, crate::fs::NodeKind::CharDevice(_))
        {
            return Ok(None);
        }
        self.write_file(path, b"", append, "redirect")?;
        Ok(Some(path.to_string()))
    }

    fn redirect_error(&mut self, io: &mut Io, path: &str, e: FsError) -> Exec {
        let shown = if path.is_empty() {
            "ambiguous redirect".to_string()
        } else {
            format!("{path}: {}", e.message())
        };
        io.err
            .extend_from_slice(format!("{}{shown}\n", self.err_prefix()).as_bytes());
        self.flush(io);
        Ok(1)
    }

    // === expansion ===

    /// Expands a word into fields (splitting and globbing included).
    pub(crate) fn expand_word(&mut self, raw: &str, io: &mut Io) -> Result<Vec<String>, Flow> {
        let mut out = Vec::new();
        for w in self.brace_expand(raw) {
            let fields = self.expand_fields(&w, io)?;
            for field in fields {
                if field.has_glob {
                    let matches = crate::pattern::glob(self, &field.pattern);
                    if !matches.is_empty() {
                        out.extend(matches);
                        continue;
                    }
                }
                out.push(field.text);
            }
        }
        Ok(out)
    }

    /// Expands a word to one string (assignments, redirect targets, `case`).
    pub(crate) fn expand_single(&mut self, raw: &str, io: &mut Io) -> Result<String, Flow> {
        let pieces = match crate::parse::guarded(|| word::parse(raw, &crate::parse::options()))
            .unwrap_or_else(|| word::parse("", &crate::parse::options()))
        {
            Ok(p) => p,
            Err(_) => return Ok(raw.to_string()),
        };
        let mut segs = Vec::new();
        self.expand_pieces(&pieces, false, &mut segs, io)?;
        Ok(segs
            .into_iter()
            .map(|s| match s {
                Seg::Text { text, .. } => text,
                Seg::Break => " ".to_string(),
            })
            .collect())
    }

    /// Expands a word into a glob pattern, quoted parts escaped.
    pub(crate) fn expand_pattern(&mut self, raw: &str, io: &mut Io) -> Result<String, Flow> {
        let pieces = match crate::parse::guarded(|| word::parse(raw, &crate::parse::options()))
            .unwrap_or_else(|| word::parse("", &crate::parse::options()))
        {
            Ok(p) => p,
            Err(_) => return Ok(raw.to_string()),
        };
        let mut segs = Vec::new();
        self.expand_pieces(&pieces, false, &mut segs, io)?;
        let mut out = String::new();
        for s in segs {
            if let Seg::Text { text, quoted, .. } = s {
                if quoted {
                    out.push_str(&crate::pattern::escape(&text));
                } else {
                    out.push_str(&text);
                }
            }
        }
        Ok(out)
    }

    fn expand_heredoc(&mut self, body: &str, io: &mut Io) -> Result<String, Flow> {
        let pieces = match crate::parse::guarded(|| word::parse_heredoc(body, &crate::parse::options()))
            .unwrap_or_else(|| word::parse("", &crate::parse::options()))
        {
            Ok(p) => p,
            Err(_) => return Ok(body.to_string()),
        };
        let mut segs = Vec::new();
        self.expand_pieces(&pieces, true, &mut segs, io)?;
        Ok(segs
            .into_iter()
            .filter_map(|s| match s {
                Seg::Text { text, .. } => Some(text),
                Seg::Break => None,
            })
            .collect())
    }

    fn brace_expand(&self, raw: &str) -> Vec<String> {
        // brush-parser's brace-expansion grammar backtracks exponentially on
        // deep nesting (`{{{{…`); real command lines use a brace or two.
        // It also unwraps sequence bounds that overflow i64 (`{99…9..1}`).
        let long_number = raw.as_bytes().windows(18).any(|w| w.iter().all(u8::is_ascii_digit));
        if !raw.contains('{') || raw.matches('{').count() > 6 || raw.len() > 4096 || long_number {
            return vec![raw.to_string()];
        }
        match crate::parse::guarded(|| word::parse_brace_expansions(raw, &crate::parse::options())).unwrap_or(Ok(None))
        {
            Ok(Some(parts)) => {
                let mut out = vec![String::new()];
                for part in parts {
                    let alts = match part {
                        word::BraceExpressionOrText::Text(t) => vec![t],
                        word::BraceExpressionOrText::Expr(members) => brace_members(&members, self.limits.max_args),
                    };
                    let mut next = Vec::new();
                    for prefix in &out {
                        for alt in &alts {
                            if next.len() >= self.limits.max_args {
                                break;
                            }
                            next.push(format!("{prefix}{alt}"));
                        }
                    }
                    out = next;
                }
                out
            }
            _ => vec![raw.to_string()],
        }
    }

    fn expand_fields(&mut self, raw: &str, io: &mut Io) -> Result<Vec<Field>, Flow> {
        let pieces = match crate::parse::guarded(|| word::parse(raw, &crate::parse::options()))
            .unwrap_or_else(|| word::parse("", &crate::parse::options()))
        {
            Ok(p) => p,
            Err(_) => {
                return Ok(vec![Field {
                    text: raw.to_string(),
                    pattern: raw.to_string(),
                    has_glob: false,
                }]);
            }
        };
        let mut segs = Vec::new();
        self.expand_pieces(&pieces, false, &mut segs, io)?;
        let ifs = self
            .st
            .vars
            .get("IFS")
            .cloned()
            .unwrap_or_else(|| IFS_DEFAULT.to_string());
        let mut fields = Vec::new();
        let mut cur = Field::default();
        let mut cur_nonempty = false;
        for seg in segs {
            match seg {
                Seg::Break => {
                    fields.push(std::mem::take(&mut cur));
                    cur_nonempty = false;
                }
                Seg::Text { text, quoted: true, .. } => {
                    cur.pattern.push_str(&crate::pattern::escape(&text));
                    cur.text.push_str(&text);
                    cur_nonempty = true;
                }
                Seg::Text {
                    text,
                    quoted: false,
                    split: false,
                } => {
                    if text.contains(['*', '?', '[']) {
                        cur.has_glob = true;
                    }
                    cur.pattern.push_str(&text);
                    cur.text.push_str(&crate::pattern::unescape_literal(&text));
                    cur_nonempty = true;
                }
                Seg::Text {
                    text,
                    quoted: false,
                    split: true,
                } => {
                    for (i, part) in split_ifs(&text, &ifs).into_iter().enumerate() {
                        match part {
                            None if i == 0 => {}
                            None => {
                                if cur_nonempty {
                                    fields.push(std::mem::take(&mut cur));
                                    cur_nonempty = false;
                                }
                            }
                            Some(p) => {
                                if p.contains(['*', '?', '[']) {
                                    cur.has_glob = true;
                                }
                                cur.pattern.push_str(&p);
                                cur.text.push_str(&p);
                                cur_nonempty = true;
                            }
                        }
                    }
                }
            }
        }
        if cur_nonempty {
            fields.push(cur);
        }
        Ok(fields)
    }

    fn expand_pieces(
        &mut self,
        pieces: &[word::WordPieceWithSource],
        quoted: bool,
        out: &mut Vec<Seg>,
        io: &mut Io,
    ) -> Result<(), Flow> {
        for p in pieces {
            match &p.piece {
                WordPiece::Text(t) => {
                    if quoted {
                        out.push(Seg::quoted(t.clone()));
                    } else {
                        out.push(Seg::Text {
                            text: t.clone(),
                            quoted: false,
                            split: false,
                        });
                    }
                }
                WordPiece::SingleQuotedText(t) => out.push(Seg::quoted(t.clone())),
                WordPiece::AnsiCQuotedText(t) => out.push(Seg::quoted(crate::commands::text::ansi_c(t))),
                WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    let before = out.len();
                    self.expand_pieces(inner, true, out, io)?;
                    if out.len() == before {
                        out.push(Seg::quoted(String::new()));
                    }
                }
                WordPiece::TildeExpansion(t) => {
                    let text = match t {
                        word::TildeExpr::Home => self.st.vars.get("HOME").cloned().unwrap_or_default(),
                        word::TildeExpr::UserHome(u) => match self.host.user(u) {
                            Some(user) => user.home.clone(),
                            None => format!("~{u}"),
                        },
                        word::TildeExpr::WorkingDir => self.st.cwd.clone(),
                        word::TildeExpr::OldWorkingDir => self.st.vars.get("OLDPWD").cloned().unwrap_or_default(),
                        _ => "~".to_string(),
                    };
                    out.push(Seg::quoted(text));
                }
                WordPiece::EscapeSequence(s) => {
                    let c = s.strip_prefix('\\').unwrap_or(s);
                    if quoted && !matches!(c, "$" | "`" | "\"" | "\\" | "\n") {
                        out.push(Seg::quoted(s.clone()));
                    } else if c == "\n" {
                        // A backslash-newline is a line continuation.
                    } else {
                        out.push(Seg::quoted(c.to_string()));
                    }
                }
                WordPiece::ParameterExpansion(expr) => self.expand_parameter(expr, quoted, out, io)?,
                WordPiece::CommandSubstitution(cmd) => {
                    let text = self.command_substitution(cmd, io)?;
                    out.push(Seg::Text {
                        text,
                        quoted,
                        split: !quoted,
                    });
                }
                WordPiece::BackquotedCommandSubstitution(cmd) => {
                    let cmd = cmd.replace("\\$", "$").replace("\\\\", "\\");
                    let text = self.command_substitution(&cmd, io)?;
                    out.push(Seg::Text {
                        text,
                        quoted,
                        split: !quoted,
                    });
                }
                WordPiece::ArithmeticExpression(expr) => {
                    let v = self.arith(&expr.value, io)?;
                    out.push(Seg::Text {
                        text: v.to_string(),
                        quoted,
                        split: !quoted,
                    });
                }
            }
        }
        Ok(())
    }

    fn command_substitution(&mut self, cmd: &str, io: &mut Io) -> Result<String, Flow> {
        if self.depth >= self.limits.max_depth {
            return Ok(String::new());
        }
        self.depth += 1;
        let mut child = Io::child(io.stdin.clone());
        let saved = (self.st.vars.clone(), self.st.cwd.clone());
        let result = match crate::parse::parse(cmd, &self.limits) {
            Ok(program) => self.run_program(&program, &mut child),
            Err(e) => {
                child
                    .err
                    .extend_from_slice(format!("{}{}\n", self.err_prefix(), e.message()).as_bytes());
                Ok(2)
            }
        };
        self.depth -= 1;
        (self.st.vars, self.st.cwd) = saved;
        io.err.append(&mut child.err);
        let status = match result {
            Ok(s) | Err(Flow::Exit(s)) => s,
            Err(other) => return Err(other),
        };
        self.st.last_status = status;
        self.subst_status = Some(status);
        let mut text = String::from_utf8_lossy(&child.out).into_owned();
        while text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    fn param_value(&mut self, param: &Parameter) -> Option<String> {
        match param {
            Parameter::Positional(0) => Some(if self.interactive {
                "-bash".into()
            } else {
                "bash".into()
            }),
            Parameter::Positional(n) => self.st.positional.get(*n as usize - 1).cloned(),
            Parameter::Special(s) => Some(match s {
                SpecialParameter::AllPositionalParameters { .. } => self.st.positional.join(" "),
                SpecialParameter::PositionalParameterCount => self.st.positional.len().to_string(),
                SpecialParameter::LastExitStatus => self.st.last_status.to_string(),
                SpecialParameter::CurrentOptionFlags => {
                    if self.interactive {
                        "himBHs".into()
                    } else {
                        "hBc".into()
                    }
                }
                SpecialParameter::ProcessId => self.st.pid.to_string(),
                SpecialParameter::LastBackgroundProcessId => self.st.last_bg?.to_string(),
                SpecialParameter::ShellName => {
                    if self.interactive {
                        "-bash".into()
                    } else {
                        "bash".into()
                    }
                }
            }),
            Parameter::Named(name) => match name.as_str() {
                "RANDOM" => Some((rand_core::RngCore::next_u32(self.rng) % 32768).to_string()),
                "PWD" => Some(self.st.cwd.clone()),
                "UID" => Some(self.st.user.uid.to_string()),
                "EUID" => Some(self.st.user.uid.to_string()),
                "PPID" => Some(self.st.pid.saturating_sub(1).to_string()),
                "SECONDS" => Some("3".into()),
                "LINENO" => Some(self.line_no.to_string()),
                "BASH_VERSION" => Some(self.host.inner.bash_version.clone()),
                _ => self.st.vars.get(name).cloned(),
            },
            Parameter::NamedWithIndex { name, index } => {
                let i = index.trim().parse::<usize>().ok()?;
                match self.st.arrays.get(name) {
                    Some(items) => items.get(i).cloned(),
                    None if i == 0 => self.st.vars.get(name).cloned(),
                    None => None,
                }
            }
            Parameter::NamedWithAllIndices { name, .. } => match self.st.arrays.get(name) {
                Some(items) => Some(items.join(" ")),
                None => self.st.vars.get(name).cloned(),
            },
        }
    }

    fn expand_parameter(
        &mut self,
        expr: &ParameterExpr,
        quoted: bool,
        out: &mut Vec<Seg>,
        io: &mut Io,
    ) -> Result<(), Flow> {
        let push = |out: &mut Vec<Seg>, text: String| {
            out.push(Seg::Text {
                text,
                quoted,
                split: !quoted,
            })
        };
        match expr {
            ParameterExpr::Parameter { parameter, .. } => {
                if let Parameter::Special(SpecialParameter::AllPositionalParameters { concatenate: false }) = parameter
                {
                    // "$@": one field per parameter.
                    let params = self.st.positional.clone();
                    for (i, p) in params.into_iter().enumerate() {
                        if i > 0 {
                            out.push(Seg::Break);
                        }
                        push(out, p);
                    }
                    return Ok(());
                }
                if let Some(v) = self.param_value(parameter) {
                    push(out, v);
                } else if quoted {
                    out.push(Seg::quoted(String::new()));
                }
            }
            ParameterExpr::UseDefaultValues {
                parameter,
                test_type,
                default_value,
                ..
            }
            | ParameterExpr::AssignDefaultValues {
                parameter,
                test_type,
                default_value,
                ..
            } => {
                let v = self.param_value(parameter);
                let missing = match test_type {
                    ParameterTestType::UnsetOrNull => v.as_deref().is_none_or(str::is_empty),
                    ParameterTestType::Unset => v.is_none(),
                };
                if missing {
                    let d = self.expand_single(default_value.as_deref().unwrap_or(""), io)?;
                    if let (ParameterExpr::AssignDefaultValues { .. }, Parameter::Named(n)) = (expr, parameter) {
                        self.set_var(n, d.clone(), false);
                    }
                    push(out, d);
                } else {
                    push(out, v.unwrap_or_default());
                }
            }
            ParameterExpr::IndicateErrorIfNullOrUnset {
                parameter,
                test_type,
                error_message,
                ..
            } => {
                let v = self.param_value(parameter);
                let missing = match test_type {
                    ParameterTestType::UnsetOrNull => v.as_deref().is_none_or(str::is_empty),
                    ParameterTestType::Unset => v.is_none(),
                };
                if missing {
                    let msg = error_message
                        .clone()
                        .unwrap_or_else(|| "parameter null or not set".into());
                    let name = match parameter {
                        Parameter::Named(n) => n.clone(),
                        _ => "?".into(),
                    };
                    io.err
                        .extend_from_slice(format!("{}{name}: {msg}\n", self.err_prefix()).as_bytes());
                    return Err(Flow::Exit(1));
                }
                push(out, v.unwrap_or_default());
            }
            ParameterExpr::UseAlternativeValue {
                parameter,
                test_type,
                alternative_value,
                ..
            } => {
                let v = self.param_value(parameter);
                let present = match test_type {
                    ParameterTestType::UnsetOrNull => v.as_deref().is_some_and(|s| !s.is_empty()),
                    ParameterTestType::Unset => v.is_some(),
                };
                if present {
                    let a = self.expand_single(alternative_value.as_deref().unwrap_or(""), io)?;
                    push(out, a);
                }
            }
            ParameterExpr::ParameterLength { parameter, .. } => {
                let n = match parameter {
                    Parameter::Special(SpecialParameter::AllPositionalParameters { .. }) => self.st.positional.len(),
                    _ => self.param_value(parameter).unwrap_or_default().chars().count(),
                };
                push(out, n.to_string());
            }
            ParameterExpr::RemoveSmallestSuffixPattern { parameter, pattern, .. }
            | ParameterExpr::RemoveLargestSuffixPattern { parameter, pattern, .. }
            | ParameterExpr::RemoveSmallestPrefixPattern { parameter, pattern, .. }
            | ParameterExpr::RemoveLargestPrefixPattern { parameter, pattern, .. } => {
                let v = self.param_value(parameter).unwrap_or_default();
                let pat = self.expand_pattern(pattern.as_deref().unwrap_or(""), io)?;
                let r = match expr {
                    ParameterExpr::RemoveSmallestSuffixPattern { .. } => crate::pattern::strip_suffix(&v, &pat, false),
                    ParameterExpr::RemoveLargestSuffixPattern { .. } => crate::pattern::strip_suffix(&v, &pat, true),
                    ParameterExpr::RemoveSmallestPrefixPattern { .. } => crate::pattern::strip_prefix(&v, &pat, false),
                    _ => crate::pattern::strip_prefix(&v, &pat, true),
                };
                push(out, r);
            }
            ParameterExpr::Substring {
                parameter,
                offset,
                length,
                ..
            } => {
                let v: Vec<char> = self.param_value(parameter).unwrap_or_default().chars().collect();
                let len = v.len() as i64;
                let mut start = self.arith(&offset.value, io)?;
                if start < 0 {
                    start = (len + start).max(0);
                }
                let start = start.min(len);
                let end = match length {
                    Some(l) => {
                        let l = self.arith(&l.value, io)?;
                        if l < 0 {
                            (len + l).max(start)
                        } else {
                            (start + l).min(len)
                        }
                    }
                    None => len,
                };
                push(out, v[start as usize..end as usize].iter().collect());
            }
            ParameterExpr::ReplaceSubstring {
                parameter,
                pattern,
                replacement,
                match_kind,
                ..
            } => {
                let v = self.param_value(parameter).unwrap_or_default();
                let pat = self.expand_pattern(pattern, io)?;
                let rep = self.expand_single(replacement.as_deref().unwrap_or(""), io)?;
                push(out, crate::pattern::replace(&v, &pat, &rep, match_kind));
            }
            ParameterExpr::UppercasePattern { parameter, .. } => {
                let v = self.param_value(parameter).unwrap_or_default();
                push(out, v.to_uppercase());
            }
            ParameterExpr::LowercasePattern { parameter, .. } => {
                let v = self.param_value(parameter).unwrap_or_default();
                push(out, v.to_lowercase());
            }
            ParameterExpr::UppercaseFirstChar { parameter, .. }
            | ParameterExpr::LowercaseFirstChar { parameter, .. } => {
                let v = self.param_value(parameter).unwrap_or_default();
                let mut chars = v.chars();
                let first = chars.next().map(|c| {
                    if matches!(expr, ParameterExpr::UppercaseFirstChar { .. }) {
                        c.to_uppercase().collect::<String>()
                    } else {
                        c.to_lowercase().collect::<String>()
                    }
                });
                push(out, format!("{}{}", first.unwrap_or_default(), chars.as_str()));
            }
            ParameterExpr::Transform { parameter, .. } => {
                let v = self.param_value(parameter).unwrap_or_default();
                push(out, v);
            }
            ParameterExpr::VariableNames { prefix, .. } => {
                let names: Vec<String> = self
                    .st
                    .vars
                    .keys()
                    .filter(|k| k.starts_with(prefix.as_str()))
                    .cloned()
                    .collect();
                push(out, names.join(" "));
            }
            ParameterExpr::MemberKeys { .. } => push(out, "0".into()),
        }
        Ok(())
    }

    // === arithmetic and tests ===

    pub(crate) fn arith(&mut self, text: &str, io: &mut Io) -> Result<i64, Flow> {
        let expanded = self.expand_single(text, io)?;
        if expanded.trim().is_empty() {
            return Ok(0);
        }
        match crate::parse::guarded(|| brush_parser::arithmetic::parse(&expanded))
            .unwrap_or_else(|| brush_parser::arithmetic::parse("("))
        {
            Ok(expr) => match crate::arith::eval(self, &expr, 0) {
                Ok(v) => Ok(v),
                Err(msg) => {
                    io.err.extend_from_slice(
                        format!(
                            "{}{}: {msg} (error token is \"{}\")\n",
                            self.err_prefix(),
                            expanded.trim(),
                            expanded.trim()
                        )
                        .as_bytes(),
                    );
                    Err(Flow::Return(1))
                }
            },
            Err(_) => {
                io.err.extend_from_slice(
                    format!("{}{}: syntax error in expression\n", self.err_prefix(), expanded.trim()).as_bytes(),
                );
                Err(Flow::Return(1))
            }
        }
    }

    fn extended_test(&mut self, expr: &ast::ExtendedTestExpr, io: &mut Io) -> Result<bool, Flow> {
        use ast::ExtendedTestExpr as E;
        Ok(match expr {
            E::And(a, b) => self.extended_test(a, io)? && self.extended_test(b, io)?,
            E::Or(a, b) => self.extended_test(a, io)? || self.extended_test(b, io)?,
            E::Not(a) => !self.extended_test(a, io)?,
            E::Parenthesized(a) => self.extended_test(a, io)?,
            E::UnaryTest(pred, w) => {
                let v = self.expand_single(&w.value, io)?;
                crate::commands::test::unary(self, pred, &v)
            }
            E::BinaryTest(pred, a, b) => {
                let left = self.expand_single(&a.value, io)?;
                use ast::BinaryPredicate as B;
                match pred {
                    B::StringExactlyMatchesPattern | B::StringDoesNotExactlyMatchPattern => {
                        let pat = self.expand_pattern(&b.value, io)?;
                        crate::pattern::matches(&pat, &left) == matches!(pred, B::StringExactlyMatchesPattern)
                    }
                    B::StringMatchesRegex => {
                        let right = self.expand_single(&b.value, io)?;
                        crate::commands::text::regex_is_match(&right, &left, false)
                    }
                    _ => {
                        let right = self.expand_single(&b.value, io)?;
                        crate::commands::test::binary(self, pred, &left, &right)
                    }
                }
            }
        })
    }
}

/// A piece of an expanded word.
enum Seg {
    Text {
        text: String,
        quoted: bool,
        split: bool,
    },
    /// A field boundary that cannot be merged ("$@").
    Break,
}

impl Seg {
    fn quoted(text: String) -> Self {
        Seg::Text {
            text,
            quoted: true,
            split: false,
        }
    }
}

#[derive(Default)]
struct Field {
    text: String,
    pattern: String,
    has_glob: bool,
}

/// Splits on IFS; `None` marks a field boundary.
fn split_ifs(text: &str, ifs: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_sep = false;
    for c in text.chars() {
        if ifs.contains(c) {
            if !in_sep {
                out.push(Some(std::mem::take(&mut cur)));
                out.push(None);
                in_sep = true;
            }
        } else {
            in_sep = false;
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(Some(cur));
    }
    out.retain(|p| !matches!(p, Some(s) if s.is_empty()));
    out
}

fn brace_members(members: &[word::BraceExpressionMember], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for m in members {
        match m {
            word::BraceExpressionMember::NumberSequence { start, end, increment } => {
                let step = increment.unsigned_abs().max(1) as i64;
                let mut i = *start;
                while out.len() < max {
                    out.push(i.to_string());
                    if i == *end {
                        break;
                    }
                    i = if start <= end {
                        i.saturating_add(step)
                    } else {
                        i.saturating_sub(step)
                    };
                    if (start <= end && i > *end) || (start > end && i < *end) {
                        break;
                    }
                }
            }
            word::BraceExpressionMember::CharSequence { start, end, .. } => {
                let (a, b) = (*start as u32, *end as u32);
                let range: Vec<u32> = if a <= b {
                    (a..=b).take(max).collect()
                } else {
                    (b..=a).rev().take(max).collect()
                };
                out.extend(range.into_iter().take(max).filter_map(char::from_u32).map(String::from));
            }
            word::BraceExpressionMember::Child(children) => {
                let mut acc = vec![String::new()];
                for c in children {
                    let alts = match c {
                        word::BraceExpressionOrText::Text(t) => vec![t.clone()],
                        word::BraceExpressionOrText::Expr(m) => brace_members(m, max),
                    };
                    acc = acc
                        .iter()
                        .flat_map(|p| alts.iter().map(move |a| format!("{p}{a}")))
                        .take(max)
                        .collect();
                }
                out.extend(acc);
            }
        }
    }
    out.truncate(max);
    out
}
