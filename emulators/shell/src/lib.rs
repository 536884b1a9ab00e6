//! The emulated Linux shell that the SSH and Telnet emulators put behind a
//! login: a bash-like interpreter (parsed by `brush-parser`) over a per-distro
//! fake filesystem built from `personas/fs/*.toml`, the distro catalogue and
//! the decky's seed.
//!
//! It is sans-I/O: a [`ShellHost`] is prepared once per decky; each login gets
//! a [`ShellSession`] that is fed the bytes the client typed (interactive, pty)
//! or runs one command line (`exec`), and returns [`ShellOutput`]s: terminal
//! bytes, [`ShellEvent`]s (each command line, download URLs, captured files,
//! passwords typed at `sudo`/`su`/`passwd`) and the exit status. Time and
//! randomness come from the caller.
//!
//! Bounds ([`Limits`]): line length, parser nesting, work per command line
//! (loops end when the step budget runs out), output per command line,
//! `$(…)` depth, and the overlay that takes writes (bytes and entries).

#![forbid(unsafe_code)]

mod arith;
pub(crate) mod commands;
pub mod emulator;
pub mod fs;
mod host;
mod interp;
mod parse;
mod pattern;
mod session;
mod userland;

pub use self::host::{Account, HostError, HostFacts, OverlayScope, ShellHost, User};
pub use self::session::{Mode, ShellSession};
pub use self::userland::distro_of;

use std::sync::Arc;

use sha2::Digest as _;

/// Bounds of one session.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest command line (bytes), including continuation lines.
    pub max_line: usize,
    /// Deepest bracket / compound-command nesting handed to the parser
    /// (brush-parser backtracks exponentially on deep nesting).
    pub max_nesting: usize,
    /// Commands, pipelines and loop iterations per command line.
    pub max_steps: u64,
    /// Bytes of output per command line.
    pub max_output: usize,
    /// Depth of `$(…)`, functions, `eval` and scripts.
    pub max_depth: u32,
    /// Words after expansion (globs, braces).
    pub max_args: usize,
    /// Longest variable value.
    pub max_var_len: usize,
    /// Lines kept in `history`.
    pub max_history: usize,
    /// Bytes accepted from `cat > f`-style input or exec stdin.
    pub max_input: usize,
    /// Bytes of captured file contents reported per command line.
    pub max_capture: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 64 << 10,
            max_nesting: 16,
            max_steps: 20_000,
            max_output: 1 << 20,
            max_depth: 24,
            max_args: 4096,
            max_var_len: 1 << 20,
            max_history: 500,
            max_input: 4 << 20,
            max_capture: 16 << 20,
        }
    }
}

/// Something the session produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOutput {
    /// Bytes for the terminal (in interactive mode stdout and stderr are
    /// both here, with `\r\n` line ends) or the exec request's stdout.
    Stdout(Vec<u8>),
    /// The exec request's stderr (never produced in interactive mode).
    Stderr(Vec<u8>),
    /// Something to log.
    Event(ShellEvent),
    /// The shell ended with this status; close the channel.
    Exit(i32),
}

/// What the attacker did, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellEvent {
    /// One command line as typed, where and as whom.
    Command {
        /// The line (continuation lines joined with `\n`).
        line: String,
        /// Working directory when it started.
        cwd: String,
        /// The user running it.
        user: String,
    },
    /// A download attempted with `wget`, `curl`, `tftp` or `ftp`.
    Download {
        /// The tool.
        tool: String,
        /// The URL (or `host:file` for tftp).
        url: String,
    },
    /// A file written with attacker-supplied contents.
    FileCaptured {
        /// Where it was written.
        path: String,
        /// Lower-case hex SHA-256 of the contents.
        sha256: String,
        /// The contents (the file as it stands after the write).
        data: Arc<[u8]>,
        /// How: `redirect`, `tee`, `cp`, `upload` …
        via: String,
    },
    /// A password typed at a prompt.
    Password {
        /// `sudo`, `su` or `passwd`.
        tool: String,
        /// The account it was typed for.
        user: String,
        /// What was typed.
        password: String,
        /// Whether the shell accepted it.
        accepted: bool,
    },
}

impl ShellEvent {
    pub(crate) fn file_captured(path: String, data: Arc<[u8]>, via: &str) -> Self {
        let sha256 = sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
        ShellEvent::FileCaptured {
            path,
            sha256,
            data,
            via: via.to_string(),
        }
    }
}
