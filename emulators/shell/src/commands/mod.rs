//! Commands: shell builtins, and the programs found on `PATH` in the fake
//! filesystem. A program runs only if its file exists and is executable for
//! the user, so `apt` is "command not found" on CentOS and `/bin/ls` copied to
//! `/tmp/x` still lists.

pub(crate) mod admin;
pub(crate) mod awk;
pub(crate) mod builtins;
pub(crate) mod files;
pub(crate) mod net;
pub(crate) mod sysinfo;
pub(crate) mod test;
pub(crate) mod text;

use crate::fs::{NodeKind, X};
use crate::interp::{Exec, Io, Run, Stdin};

/// A program's implementation.
pub(crate) type Program = fn(&mut Run<'_>, &[String], &mut Io) -> Exec;

/// Runs `argv` as a builtin or a program on `PATH`.
pub(crate) fn dispatch(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let name = argv[0].as_str();
    if let Some(builtin) = builtins::find(name) {
        return builtin(run, argv, io);
    }
    let path = if name.contains('/') {
        Some(crate::fs::absolute(&run.st.cwd, name))
    } else {
        find_in_path(run, name)
    };
    let Some(path) = path else {
        if matches!(name, "wget" | "curl" | "tftp" | "ftp")
            && let Some(tool) = find(name)
        {
            // The tool is not installed, but the URL it was given is the intelligence.
            let mut scratch = Io::child(Stdin::Data(Vec::new().into()));
            tool(run, argv, &mut scratch)?;
        }
        let msg = format!("{}{name}: command not found\n", run.err_prefix());
        io.err.extend_from_slice(msg.as_bytes());
        return Ok(127);
    };
    let node = match run.fs.stat(&path) {
        Ok((_, node)) => node,
        Err(e) => {
            let msg = format!("{}{name}: {}\n", run.err_prefix(), e.message());
            io.err.extend_from_slice(msg.as_bytes());
            return Ok(127);
        }
    };
    let denied = |run: &mut Run<'_>, io: &mut Io, what: &str| {
        let msg = format!("{}{name}: {what}\n", run.err_prefix());
        io.err.extend_from_slice(msg.as_bytes());
        Ok(126)
    };
    let data = match &node.kind {
        NodeKind::Dir => return denied(run, io, "Is a directory"),
        NodeKind::File(data) => data.clone(),
        NodeKind::Program { name, .. } => crate::fs::program_image(name, 0).into(),
        _ => return denied(run, io, "Permission denied"),
    };
    let cred = run.cred();
    let can_exec = if cred.uid == 0 {
        node.mode & 0o111 != 0
    } else if node.uid == cred.uid {
        node.mode >> 6 & X != 0
    } else if cred.gids.contains(&node.gid) {
        node.mode >> 3 & X != 0
    } else {
        node.mode & X != 0
    };
    if !can_exec || run.fs.check_traverse(&path, run.cred()).is_err() {
        return denied(run, io, "Permission denied");
    }
    if let Some(program) = stub_name(&data) {
        return match find(&program) {
            Some(f) => f(run, argv, io),
            None => unimplemented(run, &program, argv, io),
        };
    }
    if data.starts_with(b"\x7fELF") {
        // A dropped binary: x86-64 ones "run" quietly; other architectures
        // (the ARM/MIPS builds a dropper tries in turn) fail like on a real host.
        return if data.get(18) == Some(&0x3e) {
            Ok(0)
        } else {
            denied(run, io, "cannot execute binary file: Exec format error")
        };
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    let saved = std::mem::replace(&mut run.st.positional, argv[1..].to_vec());
    let result = run.run_script(&text, io);
    run.st.positional = saved;
    match result {
        Err(crate::interp::Flow::Exit(code)) => Ok(code),
        other => other,
    }
}

/// The program a stub binary stands for (the name after its ELF header).
pub(crate) fn stub_name(data: &[u8]) -> Option<String> {
    let rest = data.get(24..)?;
    if !data.starts_with(b"\x7fELF") {
        return None;
    }
    let end = rest.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    (!name.is_empty() && name.len() < 32).then(|| name.to_string())
}

/// The first executable `name` on `$PATH`.
pub(crate) fn find_in_path(run: &mut Run<'_>, name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let path = run.st.vars.get("PATH").cloned().unwrap_or_default();
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
        if let Ok((_, node)) = run.fs.stat(&candidate)
            && matches!(node.kind, NodeKind::File(_) | NodeKind::Program { .. })
            && node.mode & 0o111 != 0
        {
            return Some(candidate);
        }
    }
    None
}

/// The implementation of a program by name.
pub(crate) fn find(name: &str) -> Option<Program> {
    Some(match name {
        "ls" => files::ls,
        "cat" => files::cat,
        "cp" => files::cp,
        "mv" => files::mv,
        "rm" => files::rm,
        "rmdir" => files::rmdir,
        "mkdir" => files::mkdir,
        "touch" => files::touch,
        "chmod" => files::chmod,
        "chown" | "chgrp" => files::chown,
        "ln" => files::ln,
        "readlink" => files::readlink,
        "find" => files::find,
        "chattr" => files::chattr,
        "lsattr" => files::lsattr,
        "tar" => files::tar,
        "mktemp" => files::mktemp,
        "du" => files::du,
        "stat" => files::stat,
        "tee" => files::tee,
        "dd" => files::dd,
        "head" => text::head,
        "tail" => text::tail,
        "grep" | "egrep" | "fgrep" => text::grep,
        "sed" => text::sed,
        "awk" | "gawk" | "mawk" => text::awk,
        "wc" => text::wc,
        "sort" => text::sort,
        "uniq" => text::uniq,
        "cut" => text::cut,
        "tr" => text::tr,
        "base64" => text::base64,
        "md5sum" | "sha1sum" | "sha256sum" | "sha512sum" => text::digest,
        "seq" => text::seq,
        "yes" => text::yes,
        "basename" => text::basename,
        "dirname" => text::dirname,
        "rev" => text::rev,
        "xargs" => text::xargs,
        "expr" => text::expr,
        "more" | "less" => files::cat,
        "echo" => builtins::echo,
        "printf" => builtins::printf,
        "test" | "[" => builtins::test,
        "true" => builtins::true_,
        "false" => builtins::false_,
        "pwd" => builtins::pwd,
        "kill" => builtins::kill,
        "sleep" => admin::sleep,
        "id" => sysinfo::id,
        "whoami" => sysinfo::whoami,
        "groups" => sysinfo::groups,
        "uname" => sysinfo::uname,
        "hostname" => sysinfo::hostname,
        "uptime" => sysinfo::uptime,
        "w" => sysinfo::w,
        "who" => sysinfo::who,
        "last" => sysinfo::last,
        "ps" => sysinfo::ps,
        "top" => sysinfo::top,
        "free" => sysinfo::free,
        "df" => sysinfo::df,
        "mount" => sysinfo::mount,
        "nproc" => sysinfo::nproc,
        "lscpu" => sysinfo::lscpu,
        "env" | "printenv" => sysinfo::env,
        "date" => sysinfo::date,
        "ip" => net::ip,
        "ifconfig" => net::ifconfig,
        "netstat" => net::netstat,
        "ss" => net::ss,
        "wget" => net::wget,
        "curl" => net::curl,
        "tftp" => net::tftp,
        "ftp" => net::ftp,
        "ping" => net::ping,
        "ssh" | "scp" => net::ssh,
        "sudo" => admin::sudo,
        "su" => admin::su,
        "passwd" => admin::passwd,
        "apt" | "apt-get" | "yum" | "dnf" | "apk" | "pacman" | "dpkg" | "rpm" => admin::package,
        "systemctl" => admin::systemctl,
        "service" => admin::service,
        "crontab" => admin::crontab,
        "pkill" | "killall" | "pgrep" => admin::pkill,
        "nohup" => admin::nohup,
        "clear" => admin::clear,
        "which" => builtins::which,
        "bash" | "sh" | "ash" | "dash" | "busybox" => admin::sh,
        "useradd" | "userdel" | "usermod" => admin::useradd,
        "chpasswd" => admin::chpasswd,
        "iptables" => admin::iptables,
        "reboot" | "shutdown" => admin::reboot,
        _ => return None,
    })
}

/// Programs whose file exists but that we do not imitate: fail the way a
/// program without a usable terminal or input does.
fn unimplemented(run: &mut Run<'_>, program: &str, argv: &[String], io: &mut Io) -> Exec {
    let _ = (run, argv);
    let msg = match program {
        "vi" | "nano" | "less" | "top" | "htop" => "Error opening terminal: unknown.\n".to_string(),
        "python3" | "perl" => return Ok(0),
        other => format!(
            "{other}: error while loading shared libraries: libc.so.6: cannot open shared object file: No such file or directory\n"
        ),
    };
    io.err.extend_from_slice(msg.as_bytes());
    Ok(1)
}

/// Options of a command: the short letters (`-la` → `la`) and the long names
/// (`--color=auto` → `color=auto`), kept apart so a long name's letters never
/// read as short flags.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    short: String,
    long: Vec<String>,
}

impl Flags {
    /// A short flag (`'l'`), a run of short letters (`"w0"`), or a long
    /// option written as `"[name]"`.
    pub(crate) fn contains<Q: FlagQuery>(&self, query: Q) -> bool {
        query.matches(self)
    }

    /// No options at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.short.is_empty() && self.long.is_empty()
    }
}

/// What [`Flags::contains`] accepts.
pub(crate) trait FlagQuery {
    fn matches(self, flags: &Flags) -> bool;
}

impl FlagQuery for char {
    fn matches(self, flags: &Flags) -> bool {
        flags.short.contains(self)
    }
}

impl FlagQuery for &str {
    fn matches(self, flags: &Flags) -> bool {
        match self.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(long) => flags.long.iter().any(|l| l == long),
            None => flags.short.contains(self),
        }
    }
}

/// Splits `-abc` style flags from operands (stops at `--`).
pub(crate) fn flags(args: &[String]) -> (Flags, Vec<String>) {
    let mut f = Flags::default();
    let mut ops = Vec::new();
    let mut done = false;
    for a in args {
        if done || !a.starts_with('-') || a == "-" {
            ops.push(a.clone());
        } else if a == "--" {
            done = true;
        } else if let Some(long) = a.strip_prefix("--") {
            f.long.push(long.to_string());
        } else {
            f.short.push_str(&a[1..]);
        }
    }
    (f, ops)
}

/// Appends `text` to the command's stdout.
pub(crate) fn out(io: &mut Io, text: &str) {
    io.out.extend_from_slice(text.as_bytes());
}

/// Appends `text` to the command's stderr.
pub(crate) fn err(io: &mut Io, text: &str) {
    io.err.extend_from_slice(text.as_bytes());
}
