//! bash builtins.

use super::{Program, err, out};
use crate::interp::{Exec, Flow, Io, Run};

/// The builtin called `name`.
pub(crate) fn find(name: &str) -> Option<Program> {
    Some(match name {
        "cd" => cd,
        "pwd" => pwd,
        "echo" => echo,
        "printf" => printf,
        "export" => export,
        "readonly" | "declare" | "typeset" | "local" => declare,
        "unset" => unset,
        "set" => set,
        "exit" | "logout" => exit,
        "history" => history,
        "type" => type_,
        "test" | "[" => test,
        "true" | ":" => true_,
        "false" => false_,
        "read" => read,
        "source" | "." => source,
        "eval" => eval,
        "alias" => alias,
        "unalias" => unalias,
        "kill" => kill,
        "shift" => shift,
        "return" => return_,
        "break" => break_,
        "continue" => continue_,
        "let" => let_,
        "command" | "builtin" => command,
        "exec" => exec,
        "ulimit" => ulimit,
        "umask" => umask,
        "wait" | "hash" | "trap" | "enable" | "disown" | "shopt" | "times" | "jobs" | "fg" | "bg" | "bind" => true_,
        _ => return None,
    })
}

pub(crate) fn true_(_: &mut Run<'_>, _: &[String], _: &mut Io) -> Exec {
    Ok(0)
}

pub(crate) fn false_(_: &mut Run<'_>, _: &[String], _: &mut Io) -> Exec {
    Ok(1)
}

fn cd(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let args: Vec<&String> = argv[1..]
        .iter()
        .filter(|a| !matches!(a.as_str(), "-L" | "-P"))
        .collect();
    if args.len() > 1 {
        err(io, &format!("{}cd: too many arguments\n", run.err_prefix()));
        return Ok(1);
    }
    let target = match args.first().map(|s| s.as_str()) {
        None | Some("~") => run.st.vars.get("HOME").cloned().unwrap_or_else(|| "/".into()),
        Some("-") => match run.st.vars.get("OLDPWD").cloned() {
            Some(old) => {
                out(io, &format!("{old}\n"));
                old
            }
            None => {
                err(io, &format!("{}cd: OLDPWD not set\n", run.err_prefix()));
                return Ok(1);
            }
        },
        Some(dir) => dir.to_string(),
    };
    let abs = crate::fs::absolute(&run.st.cwd, &target);
    let failure = match run.fs.stat(&abs) {
        Ok((_, node)) if !node.is_dir() => Some(crate::fs::FsError::NotADirectory),
        Ok((real, node)) => {
            let cred = run.cred();
            let searchable = cred.uid == 0
                || (if node.uid == cred.uid {
                    node.mode >> 6
                } else if cred.gids.contains(&node.gid) {
                    node.mode >> 3
                } else {
                    node.mode
                }) & 1
                    != 0;
            if !searchable || run.fs.check_traverse(&real, cred).is_err() {
                Some(crate::fs::FsError::PermissionDenied)
            } else {
                None
            }
        }
        Err(e) => Some(e),
    };
    if let Some(e) = failure {
        err(io, &format!("{}cd: {target}: {}\n", run.err_prefix(), e.message()));
        return Ok(1);
    }
    let old = std::mem::replace(&mut run.st.cwd, abs.clone());
    run.st.vars.insert("OLDPWD".into(), old);
    run.st.vars.insert("PWD".into(), abs);
    Ok(0)
}

pub(crate) fn pwd(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let cwd = run.st.cwd.clone();
    out(io, &format!("{cwd}\n"));
    Ok(0)
}

pub(crate) fn echo(_: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| matches!(c, 'n' | 'e' | 'E')) {
            for c in a[1..].chars() {
                match c {
                    'n' => newline = false,
                    'e' => escapes = true,
                    _ => escapes = false,
                }
            }
            i += 1;
        } else {
            break;
        }
    }
    let text = argv[i..].join(" ");
    if escapes {
        let (bytes, stop) = super::text::backslash_escapes(&text, false);
        io.out.extend_from_slice(&bytes);
        if stop {
            return Ok(0);
        }
    } else {
        io.out.extend_from_slice(text.as_bytes());
    }
    if newline {
        io.out.push(b'\n');
    }
    Ok(0)
}

pub(crate) fn printf(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut args = &argv[1..];
    let mut var = None;
    if args.first().map(String::as_str) == Some("-v") && args.len() >= 2 {
        var = Some(args[1].clone());
        args = &args[2..];
    }
    if args.first().map(String::as_str) == Some("--") {
        args = &args[1..];
    }
    let Some(format) = args.first() else {
        err(
            io,
            &format!(
                "{}printf: usage: printf [-v var] format [arguments]\n",
                run.err_prefix()
            ),
        );
        return Ok(2);
    };
    let (bytes, status, warnings) = super::text::printf_format(format, &args[1..], run.limits.max_output);
    for w in warnings {
        err(io, &format!("{}printf: {w}\n", run.err_prefix()));
    }
    match var {
        Some(v) => run.set_var(&v, String::from_utf8_lossy(&bytes).into_owned(), false),
        None => io.out.extend_from_slice(&bytes),
    }
    Ok(status)
}

fn export(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let args: Vec<&String> = argv[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if args.is_empty() {
        let mut text = String::new();
        for name in run.st.exported.clone() {
            if let Some(v) = run.st.vars.get(&name) {
                text.push_str(&format!(
                    "declare -x {name}=\"{}\"\n",
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                ));
            }
        }
        out(io, &text);
        return Ok(0);
    }
    let mut status = 0;
    for a in args {
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.to_string(), None),
        };
        if !is_name(&name) {
            err(
                io,
                &format!("{}export: `{a}': not a valid identifier\n", run.err_prefix()),
            );
            status = 1;
            continue;
        }
        if let Some(v) = value {
            run.set_var(&name, v, false);
        }
        run.st.exported.insert(name);
    }
    Ok(status)
}

fn declare(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let args: Vec<&String> = argv[1..]
        .iter()
        .filter(|a| !a.starts_with('-') && !a.starts_with('+'))
        .collect();
    if args.is_empty() {
        let text: String = run
            .st
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", quote_value(v)))
            .collect();
        out(io, &text);
        return Ok(0);
    }
    let export = argv[1..].iter().any(|a| a.starts_with('-') && a.contains('x'));
    for a in args {
        let (name, value) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (a.to_string(), run.st.vars.get(a.as_str()).cloned().unwrap_or_default()),
        };
        if !is_name(&name) {
            err(
                io,
                &format!("{}{}: `{a}': not a valid identifier\n", run.err_prefix(), argv[0]),
            );
            return Ok(1);
        }
        run.set_var(&name, value, false);
        if export {
            run.st.exported.insert(name);
        }
    }
    Ok(0)
}

fn quote_value(v: &str) -> String {
    if v.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:@%+,=".contains(c)) && !v.is_empty() {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

pub(crate) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unset(run: &mut Run<'_>, argv: &[String], _: &mut Io) -> Exec {
    let functions = argv.iter().any(|a| a == "-f");
    for a in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        if functions {
            run.st.functions.remove(a);
        } else {
            run.st.vars.remove(a);
            run.st.exported.remove(a);
        }
    }
    Ok(0)
}

fn set(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() == 1 {
        let text: String = run
            .st
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}\n", quote_value(v)))
            .collect();
        out(io, &text);
        return Ok(0);
    }
    if let Some(i) = argv.iter().position(|a| a == "--") {
        run.st.positional = argv[i + 1..].to_vec();
    } else if !argv[1].starts_with(['-', '+']) {
        run.st.positional = argv[1..].to_vec();
    }
    Ok(0)
}

fn exit(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let code = match argv.get(1) {
        None => run.st.last_status,
        Some(a) => match a.parse::<i64>() {
            Ok(n) => (n & 0xff) as i32,
            Err(_) => {
                err(
                    io,
                    &format!("{}exit: {a}: numeric argument required\n", run.err_prefix()),
                );
                2
            }
        },
    };
    run.flush(io);
    Err(Flow::Exit(code))
}

fn history(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.iter().any(|a| a == "-c") {
        run.st.history.clear();
        return Ok(0);
    }
    let n = argv.get(1).and_then(|a| a.parse::<usize>().ok());
    let total = run.st.history.len();
    let skip = n.map_or(0, |n| total.saturating_sub(n));
    let mut text = String::new();
    for (i, line) in run.st.history.iter().enumerate().skip(skip) {
        text.push_str(&format!("{:>5}  {line}\n", i + 1));
    }
    out(io, &text);
    Ok(0)
}

fn type_(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut status = 0;
    for name in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        if let Some(a) = run.st.aliases.get(name) {
            out(io, &format!("{name} is aliased to `{a}'\n"));
        } else if matches!(
            name.as_str(),
            "if" | "then" | "else" | "elif" | "fi" | "for" | "while" | "until" | "do" | "done" | "case" | "esac"
        ) {
            out(io, &format!("{name} is a shell keyword\n"));
        } else if run.st.functions.contains_key(name) {
            out(io, &format!("{name} is a function\n"));
        } else if find(name).is_some() {
            out(io, &format!("{name} is a shell builtin\n"));
        } else if let Some(p) = super::find_in_path(run, name) {
            out(io, &format!("{name} is {p}\n"));
        } else {
            err(io, &format!("{}type: {name}: not found\n", run.err_prefix()));
            status = 1;
        }
    }
    Ok(status)
}

pub(crate) fn which(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut status = 0;
    for name in argv[1..].iter().filter(|a| !a.starts_with('-')) {
        match super::find_in_path(run, name) {
            Some(p) => out(io, &format!("{p}\n")),
            None => status = 1,
        }
    }
    Ok(status)
}

pub(crate) fn test(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut args: Vec<String> = argv[1..].to_vec();
    if argv[0] == "[" {
        if args.last().map(String::as_str) != Some("]") {
            err(io, &format!("{}[: missing `]'\n", run.err_prefix()));
            return Ok(2);
        }
        args.pop();
    }
    match super::test::evaluate(run, &args) {
        Ok(true) => Ok(0),
        Ok(false) => Ok(1),
        Err(msg) => {
            err(io, &format!("{}{}: {msg}\n", run.err_prefix(), argv[0]));
            Ok(2)
        }
    }
}

fn read(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut names = Vec::new();
    let mut prompt = String::new();
    let mut silent = false;
    let mut raw = false;
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-p" => {
                prompt = argv.get(i + 1).cloned().unwrap_or_default();
                i += 1;
            }
            "-s" => silent = true,
            "-r" => raw = true,
            "-rs" | "-sr" => {
                raw = true;
                silent = true;
            }
            a if a.starts_with('-') => {}
            a => names.push(a.to_string()),
        }
        i += 1;
    }
    let Some(line) = run.read_line(io, &prompt, !silent)? else {
        return Ok(1);
    };
    let line = if raw { line } else { line.replace('\\', "") };
    if names.is_empty() {
        run.set_var("REPLY", line, false);
        return Ok(0);
    }
    let ifs = run.st.vars.get("IFS").cloned().unwrap_or_else(|| " \t\n".to_string());
    let is_ws = |c: char| ifs.contains(c) && c.is_whitespace();
    let mut rest: &str = line.trim_start_matches(is_ws);
    for (n, name) in names.iter().enumerate() {
        if n + 1 == names.len() {
            run.set_var(name, rest.trim_end_matches(is_ws).to_string(), false);
            break;
        }
        let (word, tail) = match rest.find(|c: char| ifs.contains(c)) {
            Some(i) => {
                let sep = rest[i..].chars().next().unwrap_or(' ');
                let tail = rest[i + sep.len_utf8()..].trim_start_matches(is_ws);
                (rest[..i].to_string(), tail)
            }
            None => (rest.to_string(), ""),
        };
        run.set_var(name, word, false);
        rest = tail;
    }
    Ok(0)
}

fn source(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let Some(file) = argv.get(1) else {
        err(
            io,
            &format!("{}{}: filename argument required\n", run.err_prefix(), argv[0]),
        );
        return Ok(2);
    };
    match run.read_file(file) {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data).into_owned();
            run.run_script(&text, io)
        }
        Err(e) => {
            err(io, &format!("{}{file}: {}\n", run.err_prefix(), e.message()));
            Ok(1)
        }
    }
}

fn eval(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let text = argv[1..].join(" ");
    run.run_script(&text, io)
}

fn alias(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() == 1 {
        let text: String = run
            .st
            .aliases
            .iter()
            .map(|(k, v)| format!("alias {k}='{v}'\n"))
            .collect();
        out(io, &text);
        return Ok(0);
    }
    for a in &argv[1..] {
        if let Some((k, v)) = a.split_once('=') {
            run.st.aliases.insert(k.to_string(), v.to_string());
        } else if let Some(v) = run.st.aliases.get(a) {
            out(io, &format!("alias {a}='{v}'\n"));
        } else {
            err(io, &format!("{}alias: {a}: not found\n", run.err_prefix()));
            return Ok(1);
        }
    }
    Ok(0)
}

fn unalias(run: &mut Run<'_>, argv: &[String], _: &mut Io) -> Exec {
    if argv.iter().any(|a| a == "-a") {
        run.st.aliases.clear();
    }
    for a in &argv[1..] {
        run.st.aliases.remove(a);
    }
    Ok(0)
}

pub(crate) fn kill(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.iter().any(|a| a == "-l") {
        out(
            io,
            " 1) SIGHUP\t 2) SIGINT\t 3) SIGQUIT\t 4) SIGILL\t 5) SIGTRAP\n 6) SIGABRT\t 7) SIGBUS\t 8) SIGFPE\t 9) SIGKILL\t10) SIGUSR1\n11) SIGSEGV\t12) SIGUSR2\t13) SIGPIPE\t14) SIGALRM\t15) SIGTERM\n",
        );
        return Ok(0);
    }
    let pids: Vec<&String> = argv[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if pids.is_empty() {
        err(
            io,
            &format!(
                "{}kill: usage: kill [-s sigspec | -n signum | -sigspec] pid | jobspec ... or kill -l [sigspec]\n",
                run.err_prefix()
            ),
        );
        return Ok(2);
    }
    let mut status = 0;
    for p in pids {
        let Ok(pid) = p.parse::<u32>() else {
            err(
                io,
                &format!("{}kill: {p}: arguments must be process or job IDs\n", run.err_prefix()),
            );
            status = 1;
            continue;
        };
        let owner = run
            .host
            .inner
            .processes
            .iter()
            .find(|(_, _, q)| *q == pid)
            .map(|(u, _, _)| u.clone());
        match owner {
            Some(_) if pid == run.st.pid => {}
            Some(u) if run.st.user.uid != 0 && u != run.st.user.name => {
                err(
                    io,
                    &format!("{}kill: ({pid}) - Operation not permitted\n", run.err_prefix()),
                );
                status = 1;
            }
            Some(_) => {}
            None if pid == run.st.pid => {}
            None => {
                err(io, &format!("{}kill: ({pid}) - No such process\n", run.err_prefix()));
                status = 1;
            }
        }
    }
    Ok(status)
}

fn shift(run: &mut Run<'_>, argv: &[String], _: &mut Io) -> Exec {
    let n = argv.get(1).and_then(|a| a.parse::<usize>().ok()).unwrap_or(1);
    if n > run.st.positional.len() {
        return Ok(1);
    }
    run.st.positional.drain(..n);
    Ok(0)
}

fn return_(run: &mut Run<'_>, argv: &[String], _: &mut Io) -> Exec {
    let code = argv
        .get(1)
        .and_then(|a| a.parse::<i32>().ok())
        .unwrap_or(run.st.last_status);
    Err(Flow::Return(code & 0xff))
}

fn break_(_: &mut Run<'_>, argv: &[String], _: &mut Io) -> Exec {
    Err(Flow::Break(argv.get(1).and_then(|a| a.parse().ok()).unwrap_or(1)))
}

fn continue_(_: &mut Run<'_>, argv: &[String], _: &mut Io) -> Exec {
    Err(Flow::Continue(argv.get(1).and_then(|a| a.parse().ok()).unwrap_or(1)))
}

fn let_(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut last = 0;
    for a in &argv[1..] {
        last = run.arith(a, io)?;
    }
    Ok(i32::from(last == 0))
}

fn command(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let rest: Vec<String> = argv[1..].iter().skip_while(|a| a.starts_with('-')).cloned().collect();
    if argv.get(1).is_some_and(|a| a == "-v" || a == "-V") {
        let mut status = 0;
        for name in &rest {
            if find(name).is_some() {
                out(io, &format!("{name}\n"));
            } else if let Some(p) = super::find_in_path(run, name) {
                out(io, &format!("{p}\n"));
            } else {
                status = 1;
            }
        }
        return Ok(status);
    }
    if rest.is_empty() {
        return Ok(0);
    }
    super::dispatch(run, &rest, io)
}

fn exec(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() == 1 {
        return Ok(0);
    }
    let status = super::dispatch(run, &argv[1..], io)?;
    run.flush(io);
    Err(Flow::Exit(status))
}

fn ulimit(_: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() == 1 || argv.iter().any(|a| a == "-f") {
        out(io, "unlimited\n");
    } else if argv.iter().any(|a| a == "-n") && argv.len() == 2 {
        out(io, "1024\n");
    } else if argv.iter().any(|a| a == "-a") {
        out(
            io,
            "real-time non-blocking time  (microseconds, -R) unlimited\ncore file size              (blocks, -c) 0\ndata seg size               (kbytes, -d) unlimited\nscheduling priority                 (-e) 0\nfile size                   (blocks, -f) unlimited\npending signals                     (-i) 7823\nmax locked memory           (kbytes, -l) 254792\nmax memory size             (kbytes, -m) unlimited\nopen files                          (-n) 1024\npipe size                (512 bytes, -p) 8\nPOSIX message queues         (bytes, -q) 819200\nreal-time priority                  (-r) 0\nstack size                  (kbytes, -s) 8192\ncpu time                   (seconds, -t) unlimited\nmax user processes                  (-u) 7823\nvirtual memory              (kbytes, -v) unlimited\nfile locks                          (-x) unlimited\n",
        );
    }
    Ok(0)
}

fn umask(_: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() == 1 {
        out(io, "0022\n");
    }
    Ok(0)
}
