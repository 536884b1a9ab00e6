//! File tools: ls, cat, cp, mv, rm, mkdir … with coreutils' messages.

use std::sync::Arc;

use super::sysinfo::{civil, group_name, user_name};
use super::{err, flags, out};
use crate::fs::{FsError, Node, NodeKind, ls_time, mode_string};
use crate::interp::{Exec, Io, Run};

fn abs(run: &Run<'_>, p: &str) -> String {
    crate::fs::absolute(&run.st.cwd, p)
}

fn human(size: u64) -> String {
    if size < 1024 {
        return size.to_string();
    }
    let units = ['K', 'M', 'G', 'T'];
    let mut v = size as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 {
        format!("{:.1}{}", (v * 10.0).ceil() / 10.0, units[u])
    } else {
        format!("{}{}", v.ceil() as u64, units[u])
    }
}

fn colour(name: &str, node: &Node) -> String {
    let code = match node.kind {
        NodeKind::Dir if node.mode & 0o1002 == 0o1002 => "30;42",
        NodeKind::Dir => "01;34",
        NodeKind::Symlink(_) => "01;36",
        NodeKind::CharDevice(_) => "40;33;01",
        _ if node.mode & 0o4000 != 0 => "37;41",
        _ if node.mode & 0o111 != 0 => "01;32",
        _ => return name.to_string(),
    };
    format!("\x1b[{code}m{name}\x1b[0m")
}

/// Lays names out in columns like GNU ls on an 80-column terminal.
fn columns(names: &[(String, String)]) -> String {
    let width = 80;
    let n = names.len();
    if n == 0 {
        return String::new();
    }
    let lens: Vec<usize> = names.iter().map(|(plain, _)| plain.chars().count()).collect();
    let mut best_cols = 1;
    for cols in (1..=n.min(width / 3 + 1)).rev() {
        let rows = n.div_ceil(cols);
        let mut total = 0;
        for c in 0..cols {
            let w = (0..rows)
                .filter_map(|r| lens.get(c * rows + r))
                .max()
                .copied()
                .unwrap_or(0);
            total += w + if c + 1 < cols { 2 } else { 0 };
        }
        if total <= width {
            best_cols = cols;
            break;
        }
    }
    let rows = n.div_ceil(best_cols);
    let cols = n.div_ceil(rows);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            (0..rows)
                .filter_map(|r| lens.get(c * rows + r))
                .max()
                .copied()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in 0..rows {
        for (c, width) in widths.iter().enumerate() {
            let i = c * rows + r;
            let Some((_, shown)) = names.get(i) else { continue };
            s.push_str(shown);
            if c + 1 < cols && i + rows < n {
                s.push_str(&" ".repeat(width - lens[i] + 2));
            }
        }
        s.push('\n');
    }
    s
}

pub(crate) fn ls(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, mut ops) = flags(&argv[1..]);
    let long = f.contains('l') || f.contains('n') || f.contains('g');
    let all = f.contains('a');
    let almost = f.contains('A');
    let human_sizes = f.contains('h');
    let dir_only = f.contains('d');
    let one = f.contains('1');
    let tty = io.top && run.interactive;
    let color = f.contains("[color=auto]") && tty || f.contains("[color=always]") || f.contains("[color]");
    if ops.is_empty() {
        ops.push(".".into());
    }
    let mut status = 0;
    let mut file_entries = Vec::new();
    let mut dirs = Vec::new();
    for op in &ops {
        let path = abs(run, op);
        let stat = if long || dir_only {
            run.fs.lstat(&path)
        } else {
            run.fs.stat(&path)
        };
        match stat {
            Ok((real, node)) => {
                if run.fs.check_traverse(&real, run.cred()).is_err() {
                    err(io, &format!("ls: cannot access '{op}': Permission denied\n"));
                    status = 2;
                } else if node.is_dir() && !dir_only {
                    dirs.push((op.clone(), path));
                } else {
                    file_entries.push((op.clone(), node));
                }
            }
            Err(e) => {
                err(io, &format!("ls: cannot access '{op}': {}\n", e.message()));
                status = 2;
            }
        }
    }
    let render = |run: &Run<'_>, entries: &[(String, Node)], dir: Option<&str>| -> String {
        let mut s = String::new();
        if long {
            let mut rows = Vec::new();
            let mut blocks = 0;
            for (name, node) in entries {
                blocks += node.size().div_ceil(4096) * 4;
                let links = if node.is_dir() { 2 } else { 1 };
                let size = if human_sizes {
                    human(node.size())
                } else {
                    node.size().to_string()
                };
                let (owner, group) = if f.contains('n') {
                    (node.uid.to_string(), node.gid.to_string())
                } else {
                    (user_name(run, node.uid), group_name(run, node.gid))
                };
                let mut shown = if color { colour(name, node) } else { name.clone() };
                if let NodeKind::Symlink(t) = &node.kind {
                    shown.push_str(&format!(" -> {t}"));
                }
                rows.push((
                    mode_string(node.type_char(), node.mode),
                    links.to_string(),
                    owner,
                    group,
                    size,
                    ls_time(node.mtime, run.now),
                    shown,
                ));
            }
            if dir.is_some() {
                s.push_str(&format!(
                    "total {}\n",
                    if human_sizes {
                        human(blocks * 1024)
                    } else {
                        blocks.to_string()
                    }
                ));
            }
            let w = |i: usize| {
                rows.iter()
                    .map(|r| [&r.1, &r.2, &r.3, &r.4][i].len())
                    .max()
                    .unwrap_or(0)
            };
            let (wl, wo, wg, ws) = (w(0), w(1), w(2), w(3));
            for r in rows {
                if f.contains('g') {
                    s.push_str(&format!(
                        "{} {:>wl$} {:<wg$} {:>ws$} {} {}\n",
                        r.0, r.1, r.3, r.4, r.5, r.6
                    ));
                } else {
                    s.push_str(&format!(
                        "{} {:>wl$} {:<wo$} {:<wg$} {:>ws$} {} {}\n",
                        r.0, r.1, r.2, r.3, r.4, r.5, r.6
                    ));
                }
            }
        } else {
            let names: Vec<(String, String)> = entries
                .iter()
                .map(|(n, node)| (n.clone(), if color { colour(n, node) } else { n.clone() }))
                .collect();
            if tty && !one {
                s.push_str(&columns(&names));
            } else {
                for (_, shown) in names {
                    s.push_str(&shown);
                    s.push('\n');
                }
            }
        }
        s
    };
    file_entries.sort_by(|a, b| a.0.cmp(&b.0));
    if !file_entries.is_empty() {
        let text = render(run, &file_entries, None);
        out(io, &text);
    }
    let many = ops.len() > 1;
    for (k, (label, path)) in dirs.iter().enumerate() {
        let entries = match run.fs.list(path, run.cred()) {
            Ok(e) => e,
            Err(e) => {
                err(io, &format!("ls: cannot open directory '{label}': {}\n", e.message()));
                status = 2;
                continue;
            }
        };
        let mut shown: Vec<(String, Node)> = Vec::new();
        if all {
            if let Ok((_, me)) = run.fs.stat(path) {
                shown.push((".".into(), me));
            }
            if let Ok((_, parent)) = run.fs.stat(&crate::fs::parent_of(path)) {
                shown.push(("..".into(), parent));
            }
        }
        for (name, node) in entries {
            if name.starts_with('.') && !all && !almost {
                continue;
            }
            shown.push((name, node));
        }
        // C.UTF-8 collation: plain byte order, dot entries first.
        shown.sort_by(|a, b| {
            let key = |s: &str| {
                if s == "." || s == ".." {
                    (0, s.to_string())
                } else {
                    (1, s.to_string())
                }
            };
            key(&a.0).cmp(&key(&b.0))
        });
        if f.contains('t') {
            shown.sort_by_key(|e| std::cmp::Reverse(e.1.mtime));
        }
        if f.contains('S') {
            shown.sort_by_key(|e| std::cmp::Reverse(e.1.size()));
        }
        if f.contains('r') {
            shown.reverse();
        }
        if many || !file_entries.is_empty() {
            out(
                io,
                &format!(
                    "{}{label}:\n",
                    if k > 0 || !file_entries.is_empty() { "\n" } else { "" }
                ),
            );
        }
        let text = render(run, &shown, Some(path));
        out(io, &text);
    }
    Ok(status)
}

pub(crate) fn cat(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, mut files) = flags(&argv[1..]);
    if files.is_empty() {
        files.push("-".into());
    }
    let number = f.contains('n');
    let mut status = 0;
    let mut line_no = 1;
    let tool = argv[0].rsplit('/').next().unwrap_or("cat").to_string();
    for file in files {
        let data = if file == "-" {
            run.read_all(io)?
        } else {
            match run.read_file(&file) {
                Ok(d) => d,
                Err(e) => {
                    err(io, &format!("{tool}: {file}: {}\n", e.message()));
                    status = 1;
                    continue;
                }
            }
        };
        if number {
            for line in data.split_inclusive(|&b| b == b'\n') {
                io.out.extend_from_slice(format!("{line_no:>6}\t").as_bytes());
                io.out.extend_from_slice(line);
                line_no += 1;
            }
        } else {
            io.out.extend_from_slice(&data);
        }
        if io.out.len() > run.limits.max_output {
            break;
        }
    }
    Ok(status)
}

fn copy_node(run: &mut Run<'_>, src: &str, dst: &str, recursive: bool, depth: u32) -> Result<(), FsError> {
    if depth > 32 {
        return Err(FsError::Loop);
    }
    let (_, node) = run.fs.stat(src)?;
    if node.is_dir() {
        if !recursive {
            return Err(FsError::IsADirectory);
        }
        match run.fs.mkdir(dst, run.cred(), run.now) {
            Ok(()) | Err(FsError::Exists) => {}
            Err(e) => return Err(e),
        }
        for (name, _) in run.fs.list(src, run.cred())? {
            copy_node(run, &format!("{src}/{name}"), &format!("{dst}/{name}"), true, depth + 1)?;
        }
        return Ok(());
    }
    let data = run.read_file(src)?;
    run.write_file(dst, &data, false, "cp")?;
    if node.mode & 0o111 != 0
        && let Ok((real, mut n)) = run.fs.stat(dst)
    {
        n.mode |= node.mode & 0o111;
        run.fs.set(&real, n)?;
    }
    Ok(())
}

pub(crate) fn cp(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, ops) = flags(&argv[1..]);
    let recursive = f.contains('r') || f.contains('R') || f.contains('a');
    if ops.len() < 2 {
        err(
            io,
            &format!(
                "cp: missing {} operand\nTry 'cp --help' for more information.\n",
                if ops.is_empty() { "file" } else { "destination file" }
            ),
        );
        return Ok(1);
    }
    let (srcs, dst) = ops.split_at(ops.len() - 1);
    let dst_abs = abs(run, &dst[0]);
    let dst_is_dir = run.fs.stat(&dst_abs).is_ok_and(|(_, n)| n.is_dir());
    let mut status = 0;
    for s in srcs {
        let src_abs = abs(run, s);
        let target = if dst_is_dir {
            format!("{dst_abs}/{}", s.trim_end_matches('/').rsplit('/').next().unwrap_or(s))
        } else {
            dst_abs.clone()
        };
        if let Err(e) = copy_node(run, &src_abs, &target, recursive, 0) {
            status = 1;
            match e {
                FsError::IsADirectory if run.fs.stat(&src_abs).is_ok_and(|(_, n)| n.is_dir()) => {
                    err(io, &format!("cp: -r not specified; omitting directory '{s}'\n"))
                }
                FsError::NotFound if run.fs.stat(&src_abs).is_err() => {
                    err(io, &format!("cp: cannot stat '{s}': No such file or directory\n"))
                }
                e => err(
                    io,
                    &format!("cp: cannot create regular file '{}': {}\n", dst[0], e.message()),
                ),
            }
        }
    }
    Ok(status)
}

pub(crate) fn mv(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, ops) = flags(&argv[1..]);
    if ops.len() < 2 {
        err(
            io,
            &format!(
                "mv: missing {} operand\nTry 'mv --help' for more information.\n",
                if ops.is_empty() { "file" } else { "destination file" }
            ),
        );
        return Ok(1);
    }
    let (srcs, dst) = ops.split_at(ops.len() - 1);
    let dst_abs = abs(run, &dst[0]);
    let dst_is_dir = run.fs.stat(&dst_abs).is_ok_and(|(_, n)| n.is_dir());
    let mut status = 0;
    for s in srcs {
        let src_abs = abs(run, s);
        let Ok((real, node)) = run.fs.lstat(&src_abs) else {
            err(io, &format!("mv: cannot stat '{s}': No such file or directory\n"));
            status = 1;
            continue;
        };
        let target = if dst_is_dir {
            format!("{dst_abs}/{}", s.trim_end_matches('/').rsplit('/').next().unwrap_or(s))
        } else {
            dst_abs.clone()
        };
        let result = if node.is_dir() {
            copy_node(run, &src_abs, &target, true, 0).and_then(|()| remove_tree(run, &real, 0))
        } else {
            // Moving keeps the node (mode, owner) and needs write access to both directories.
            match run.fs.unlink(&src_abs, run.cred()) {
                Ok(()) => {
                    let saved = node.clone();
                    match run.fs.write(&target, &[], false, run.cred(), run.now) {
                        Ok(t) => run.fs.set(&t, saved),
                        Err(e) => {
                            let _ = run.fs.set(&real, node);
                            Err(e)
                        }
                    }
                }
                Err(e) => Err(e),
            }
        };
        if let Err(e) = result {
            err(io, &format!("mv: cannot move '{s}' to '{}': {}\n", dst[0], e.message()));
            status = 1;
        }
    }
    Ok(status)
}

fn remove_tree(run: &mut Run<'_>, real: &str, depth: u32) -> Result<(), FsError> {
    if depth > 64 {
        return Err(FsError::Loop);
    }
    let (_, node) = run.fs.lstat(real)?;
    if node.is_dir() {
        for (name, _) in run.fs.list(real, run.cred())? {
            run.steps += 1;
            if run.steps > run.limits.max_steps * 5 {
                return Err(FsError::NotPermitted);
            }
            remove_tree(run, &format!("{}/{name}", real.trim_end_matches('/')), depth + 1)?;
        }
        run.fs.rmdir(real, run.cred())
    } else {
        run.fs.unlink(real, run.cred())
    }
}

pub(crate) fn rm(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, ops) = flags(&argv[1..]);
    let force = f.contains('f') || f.contains("[force]");
    let recursive = f.contains('r') || f.contains('R') || f.contains("[recursive]");
    if ops.is_empty() && !force {
        err(io, "rm: missing operand\nTry 'rm --help' for more information.\n");
        return Ok(1);
    }
    let mut status = 0;
    for op in ops {
        let path = abs(run, &op);
        if path == "/" && recursive {
            err(
                io,
                "rm: it is dangerous to operate recursively on '/'\nrm: use --no-preserve-root to override this failsafe\n",
            );
            status = 1;
            continue;
        }
        let node = match run.fs.lstat(&path) {
            Ok((_, n)) => n,
            Err(e) => {
                if !force {
                    err(io, &format!("rm: cannot remove '{op}': {}\n", e.message()));
                    status = 1;
                }
                continue;
            }
        };
        let result = if node.is_dir() {
            if !recursive {
                err(io, &format!("rm: cannot remove '{op}': Is a directory\n"));
                status = 1;
                continue;
            }
            remove_tree(run, &path, 0)
        } else {
            run.fs.unlink(&path, run.cred())
        };
        if let Err(e) = result {
            err(io, &format!("rm: cannot remove '{op}': {}\n", e.message()));
            status = 1;
        }
    }
    Ok(status)
}

pub(crate) fn rmdir(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, ops) = flags(&argv[1..]);
    if ops.is_empty() {
        err(io, "rmdir: missing operand\nTry 'rmdir --help' for more information.\n");
        return Ok(1);
    }
    let mut status = 0;
    for op in ops {
        let path = abs(run, &op);
        if let Err(e) = run.fs.rmdir(&path, run.cred()) {
            err(io, &format!("rmdir: failed to remove '{op}': {}\n", e.message()));
            status = 1;
        }
    }
    Ok(status)
}

pub(crate) fn mkdir(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, ops) = flags(&argv[1..]);
    let parents = f.contains('p');
    if ops.is_empty() {
        err(io, "mkdir: missing operand\nTry 'mkdir --help' for more information.\n");
        return Ok(1);
    }
    let mut status = 0;
    for op in ops.iter().filter(|o| o.parse::<u32>().is_err() || !f.contains('m')) {
        let path = abs(run, op);
        let result = if parents {
            let mut cur = String::new();
            let mut r = Ok(());
            for part in crate::fs::components(&path) {
                cur.push('/');
                cur.push_str(part);
                match run.fs.stat(&cur) {
                    Ok((_, n)) if n.is_dir() => continue,
                    Ok(_) => {
                        r = Err(FsError::NotADirectory);
                        break;
                    }
                    Err(_) => {}
                }
                if let Err(e) = run.fs.mkdir(&cur, run.cred(), run.now) {
                    r = Err(e);
                    break;
                }
            }
            r
        } else {
            run.fs.mkdir(&path, run.cred(), run.now)
        };
        if let Err(e) = result {
            err(io, &format!("mkdir: cannot create directory ‘{op}’: {}\n", e.message()));
            status = 1;
        }
    }
    Ok(status)
}

pub(crate) fn touch(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, ops) = flags(&argv[1..]);
    if ops.is_empty() {
        err(
            io,
            "touch: missing file operand\nTry 'touch --help' for more information.\n",
        );
        return Ok(1);
    }
    let mut status = 0;
    for op in ops {
        let path = abs(run, &op);
        let result = match run.fs.stat(&path) {
            Ok((real, mut node)) => {
                node.mtime = run.now;
                run.fs.set(&real, node)
            }
            Err(_) => run.fs.write(&path, &[], false, run.cred(), run.now).map(|_| ()),
        };
        if let Err(e) = result {
            err(io, &format!("touch: cannot touch '{op}': {}\n", e.message()));
            status = 1;
        }
    }
    Ok(status)
}

fn apply_mode(old: u32, spec: &str, is_dir: bool) -> Option<u32> {
    if spec.chars().all(|c| c.is_digit(8)) && !spec.is_empty() {
        return u32::from_str_radix(spec, 8).ok().filter(|m| *m <= 0o7777);
    }
    let mut mode = old;
    for clause in spec.split(',') {
        let who_end = clause.find(['+', '-', '=']).unwrap_or(clause.len());
        let who = &clause[..who_end];
        let mut rest = &clause[who_end..];
        if rest.is_empty() {
            return None;
        }
        let mask = if who.is_empty() || who.contains('a') {
            0o777
        } else {
            let mut m = 0;
            if who.contains('u') {
                m |= 0o700;
            }
            if who.contains('g') {
                m |= 0o070;
            }
            if who.contains('o') {
                m |= 0o007;
            }
            m
        };
        while let Some(op) = rest.chars().next() {
            let perms_end = rest[1..].find(['+', '-', '=']).map_or(rest.len(), |i| i + 1);
            let perms = &rest[1..perms_end];
            let mut bits = 0;
            for p in perms.chars() {
                bits |= match p {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || old & 0o111 != 0 => 0o111,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => 0,
                };
            }
            let bits = bits & (mask | 0o7000);
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                '=' => mode = (mode & !mask) | bits,
                _ => return None,
            }
            rest = &rest[perms_end..];
        }
    }
    Some(mode)
}

pub(crate) fn chmod(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let args: Vec<String> = argv[1..]
        .iter()
        .filter(|a| !matches!(a.as_str(), "-R" | "-v" | "-f" | "-c"))
        .cloned()
        .collect();
    if args.len() < 2 {
        err(
            io,
            &format!(
                "chmod: missing operand{}\nTry 'chmod --help' for more information.\n",
                args.first().map(|a| format!(" after '{a}'")).unwrap_or_default()
            ),
        );
        return Ok(1);
    }
    let spec = &args[0];
    let mut status = 0;
    for op in &args[1..] {
        let path = abs(run, op);
        match run.fs.stat(&path) {
            Ok((real, mut node)) => {
                let Some(mode) = apply_mode(node.mode, spec, node.is_dir()) else {
                    err(
                        io,
                        &format!("chmod: invalid mode: ‘{spec}’\nTry 'chmod --help' for more information.\n"),
                    );
                    return Ok(1);
                };
                if run.st.user.uid != 0 && node.uid != run.st.user.uid {
                    err(
                        io,
                        &format!("chmod: changing permissions of '{op}': Operation not permitted\n"),
                    );
                    status = 1;
                    continue;
                }
                node.mode = mode;
                if let Err(e) = run.fs.set(&real, node) {
                    err(io, &format!("chmod: changing permissions of '{op}': {}\n", e.message()));
                    status = 1;
                }
            }
            Err(e) => {
                err(io, &format!("chmod: cannot access '{op}': {}\n", e.message()));
                status = 1;
            }
        }
    }
    Ok(status)
}

pub(crate) fn chown(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let tool = argv[0].rsplit('/').next().unwrap_or("chown").to_string();
    let args: Vec<String> = argv[1..].iter().filter(|a| !a.starts_with('-')).cloned().collect();
    if args.len() < 2 {
        err(
            io,
            &format!("{tool}: missing operand\nTry '{tool} --help' for more information.\n"),
        );
        return Ok(1);
    }
    let spec = &args[0];
    let (u, g) = if tool == "chgrp" {
        (None, Some(spec.as_str()))
    } else {
        match spec.split_once([':', '.']) {
            Some((u, g)) => (Some(u).filter(|s| !s.is_empty()), Some(g).filter(|s| !s.is_empty())),
            None => (Some(spec.as_str()), None),
        }
    };
    let uid = match u {
        Some(name) => match run
            .host
            .inner
            .users
            .iter()
            .find(|x| x.name == name)
            .map(|x| x.uid)
            .or_else(|| name.parse().ok())
        {
            Some(uid) => Some(uid),
            None => {
                err(io, &format!("{tool}: invalid user: ‘{spec}’\n"));
                return Ok(1);
            }
        },
        None => None,
    };
    let gid = match g {
        Some(name) => match run
            .host
            .inner
            .groups
            .iter()
            .find(|x| x.0 == name)
            .map(|x| x.1)
            .or_else(|| name.parse().ok())
        {
            Some(gid) => Some(gid),
            None => {
                err(io, &format!("{tool}: invalid group: ‘{spec}’\n"));
                return Ok(1);
            }
        },
        None => None,
    };
    let mut status = 0;
    for op in &args[1..] {
        let path = abs(run, op);
        match run.fs.stat(&path) {
            Ok((real, mut node)) => {
                if run.st.user.uid != 0 {
                    err(
                        io,
                        &format!("{tool}: changing ownership of '{op}': Operation not permitted\n"),
                    );
                    status = 1;
                    continue;
                }
                node.uid = uid.unwrap_or(node.uid);
                node.gid = gid.unwrap_or(node.gid);
                if let Err(e) = run.fs.set(&real, node) {
                    err(io, &format!("{tool}: changing ownership of '{op}': {}\n", e.message()));
                    status = 1;
                }
            }
            Err(e) => {
                err(io, &format!("{tool}: cannot access '{op}': {}\n", e.message()));
                status = 1;
            }
        }
    }
    Ok(status)
}

pub(crate) fn ln(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, ops) = flags(&argv[1..]);
    if ops.len() < 2 {
        err(io, "ln: missing file operand\nTry 'ln --help' for more information.\n");
        return Ok(1);
    }
    let target = ops[0].clone();
    let link = abs(run, &ops[1]);
    if f.contains('s') {
        if run.fs.lstat(&link).is_ok() && !f.contains('f') {
            err(
                io,
                &format!("ln: failed to create symbolic link '{}': File exists\n", ops[1]),
            );
            return Ok(1);
        }
        let result = run.fs.write(&link, &[], false, run.cred(), run.now).and_then(|real| {
            run.fs.set(
                &real,
                Node {
                    kind: NodeKind::Symlink(target.clone()),
                    mode: 0o777,
                    uid: run.st.user.uid,
                    gid: run.st.user.gids[0],
                    mtime: run.now,
                },
            )
        });
        if let Err(e) = result {
            err(
                io,
                &format!("ln: failed to create symbolic link '{}': {}\n", ops[1], e.message()),
            );
            return Ok(1);
        }
        return Ok(0);
    }
    copy_node(run, &abs(run, &target), &link, false, 0).map_or_else(
        |e| {
            err(
                io,
                &format!("ln: failed to create hard link '{}': {}\n", ops[1], e.message()),
            );
            Ok(1)
        },
        |()| Ok(0),
    )
}

pub(crate) fn readlink(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, ops) = flags(&argv[1..]);
    let mut status = 0;
    for op in ops {
        let path = abs(run, &op);
        if f.contains('f') || f.contains('e') || f.contains('m') {
            match run.fs.resolve(&path, true) {
                Ok(r) => out(io, &format!("{r}\n")),
                Err(_) => status = 1,
            }
        } else {
            match run.fs.lstat(&path) {
                Ok((
                    _,
                    Node {
                        kind: NodeKind::Symlink(t),
                        ..
                    },
                )) => out(io, &format!("{t}\n")),
                _ => status = 1,
            }
        }
    }
    Ok(status)
}

/// Every regular file under the operands (for `grep -r`).
pub(crate) fn walk_files(run: &mut Run<'_>, roots: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, u32)> = roots.iter().rev().map(|r| (r.clone(), 0)).collect();
    while let Some((p, depth)) = stack.pop() {
        if out.len() > 2000 || depth > 16 {
            break;
        }
        let path = abs(run, &p);
        match run.fs.lstat(&path) {
            Ok((_, n)) if n.is_dir() => {
                if let Ok(entries) = run.fs.list(&path, run.cred()) {
                    for (name, _) in entries.into_iter().rev() {
                        stack.push((format!("{}/{name}", p.trim_end_matches('/')), depth + 1));
                    }
                }
            }
            Ok((_, n)) if matches!(n.kind, NodeKind::File(_) | NodeKind::Program { .. }) => out.push(p),
            _ => {}
        }
    }
    out
}

pub(crate) fn find(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut roots = Vec::new();
    let mut i = 1;
    while i < argv.len() && !argv[i].starts_with('-') {
        roots.push(argv[i].clone());
        i += 1;
    }
    if roots.is_empty() {
        roots.push(".".into());
    }
    let mut name_pat = None;
    let mut kind = None;
    let mut maxdepth = 32u32;
    while i < argv.len() {
        match argv[i].as_str() {
            "-name" | "-iname" => {
                i += 1;
                name_pat = argv.get(i).cloned();
            }
            "-type" => {
                i += 1;
                kind = argv.get(i).cloned();
            }
            "-maxdepth" => {
                i += 1;
                maxdepth = argv.get(i).and_then(|v| v.parse().ok()).unwrap_or(32);
            }
            _ => {}
        }
        i += 1;
    }
    let mut status = 0;
    let mut count = 0;
    for root in roots {
        let mut stack = vec![(root.clone(), 0u32)];
        while let Some((p, depth)) = stack.pop() {
            count += 1;
            if count > 20_000 || io.out.len() > run.limits.max_output {
                return Ok(status);
            }
            let path = abs(run, &p);
            let node = match run.fs.lstat(&path) {
                Ok((_, n)) => n,
                Err(e) => {
                    err(io, &format!("find: ‘{p}’: {}\n", e.message()));
                    status = 1;
                    continue;
                }
            };
            let base = p.rsplit('/').next().unwrap_or(&p).to_string();
            let name_ok = name_pat.as_ref().is_none_or(|pat| crate::pattern::matches(pat, &base));
            let kind_ok = match kind.as_deref() {
                Some("f") => matches!(
                    node.kind,
                    NodeKind::File(_) | NodeKind::Generated(_) | NodeKind::Program { .. }
                ),
                Some("d") => node.is_dir(),
                Some("l") => matches!(node.kind, NodeKind::Symlink(_)),
                _ => true,
            };
            if name_ok && kind_ok {
                out(io, &format!("{p}\n"));
            }
            if node.is_dir() && depth < maxdepth {
                match run.fs.list(&path, run.cred()) {
                    Ok(entries) => {
                        for (name, _) in entries.into_iter().rev() {
                            stack.push((format!("{}/{name}", p.trim_end_matches('/')), depth + 1));
                        }
                    }
                    Err(e) => {
                        err(io, &format!("find: ‘{p}’: {}\n", e.message()));
                        status = 1;
                    }
                }
            }
        }
    }
    Ok(status)
}

pub(crate) fn chattr(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let files: Vec<&String> = argv[1..].iter().filter(|a| !a.starts_with(['-', '+', '='])).collect();
    if files.is_empty() {
        err(
            io,
            "Usage: chattr [-pRVf] [-+=aAcCdDeijPsStTuFx] [-v version] files...\n",
        );
        return Ok(1);
    }
    for f in files {
        let path = abs(run, f);
        if run.fs.stat(&path).is_err() {
            err(
                io,
                &format!("chattr: No such file or directory while trying to stat {f}\n"),
            );
            return Ok(1);
        }
        if run.st.user.uid != 0 {
            err(
                io,
                &format!("chattr: Operation not permitted while setting flags on {f}\n"),
            );
            return Ok(1);
        }
    }
    Ok(0)
}

pub(crate) fn lsattr(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, mut ops) = flags(&argv[1..]);
    if ops.is_empty() {
        let cwd = run.st.cwd.clone();
        ops = run
            .fs
            .list(&cwd, run.cred())
            .unwrap_or_default()
            .into_iter()
            .filter(|(n, _)| !n.starts_with('.'))
            .map(|(n, _)| format!("./{n}"))
            .collect();
    }
    let mut status = 0;
    for op in ops {
        let path = abs(run, &op);
        match run.fs.stat(&path) {
            Ok(_) => out(io, &format!("--------------e------- {op}\n")),
            Err(_) => {
                err(
                    io,
                    &format!("lsattr: No such file or directory while trying to stat {op}\n"),
                );
                status = 1;
            }
        }
    }
    Ok(status)
}

pub(crate) fn tar(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut mode = String::new();
    let mut file = None;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].trim_start_matches('-');
        if i == 1 || argv[i].starts_with('-') {
            if let Some(pos) = a.find('f') {
                mode.push_str(&a[..pos]);
                let rest = &a[pos + 1..];
                file = if rest.is_empty() {
                    i += 1;
                    argv.get(i).cloned()
                } else {
                    Some(rest.to_string())
                };
            } else {
                mode.push_str(a);
            }
        }
        i += 1;
    }
    if !mode.contains(['x', 't', 'c']) {
        err(
            io,
            "tar: You must specify one of the '-Acdtrux', '--delete' or '--test-label' options\nTry 'tar --help' or 'tar --usage' for more information.\n",
        );
        return Ok(2);
    }
    let Some(file) = file else {
        err(
            io,
            "tar: Refusing to read archive contents from terminal (missing -f option?)\ntar: Error is not recoverable: exiting now\n",
        );
        return Ok(2);
    };
    if mode.contains('c') {
        return Ok(0);
    }
    let data = match run.read_file(&file) {
        Ok(d) => d,
        Err(e) => {
            err(
                io,
                &format!(
                    "tar: {file}: Cannot open: {}\ntar: Error is not recoverable: exiting now\n",
                    e.message()
                ),
            );
            return Ok(2);
        }
    };
    if data.starts_with(&[0x1f, 0x8b]) {
        // gzip'd archives are not unpacked here; tar then reports gzip's failure.
        err(
            io,
            "\ngzip: stdin: unexpected end of file\ntar: Child returned status 1\ntar: Error is not recoverable: exiting now\n",
        );
        return Ok(2);
    }
    if mode.contains('z') {
        err(
            io,
            "\ngzip: stdin: not in gzip format\ntar: Child returned status 1\ntar: Error is not recoverable: exiting now\n",
        );
        return Ok(2);
    }
    // Plain ustar: 512-byte headers, name at 0, octal size at 124.
    let mut off = 0;
    let mut listed = 0;
    while off + 512 <= data.len() && listed < 10_000 {
        let h = &data[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            return Ok(0);
        }
        if &h[257..262] != b"ustar" {
            err(
                io,
                "tar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors\n",
            );
            return Ok(2);
        }
        let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&h[124..136]).trim_matches(|c: char| c == '\0' || c == ' '),
            8,
        )
        .unwrap_or(0);
        let body_start = off + 512;
        let body_end = (body_start + size).min(data.len());
        if mode.contains('t') || mode.contains('v') {
            out(io, &format!("{name}\n"));
        }
        if mode.contains('x') {
            let target = abs(run, &name);
            if h[156] == b'5' {
                let _ = run.fs.mkdir(&target, run.cred(), run.now);
            } else if let Err(e) = run.write_file(&target, &data[body_start..body_end], false, "tar") {
                err(io, &format!("tar: {name}: Cannot open: {}\n", e.message()));
            }
        }
        off = body_start + size.div_ceil(512) * 512;
        listed += 1;
    }
    if listed == 0 {
        err(
            io,
            "tar: This does not look like a tar archive\ntar: Exiting with failure status due to previous errors\n",
        );
        return Ok(2);
    }
    Ok(0)
}

pub(crate) fn mktemp(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, _) = flags(&argv[1..]);
    let mut name = String::from("/tmp/tmp.");
    const CH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for _ in 0..10 {
        name.push(CH[(rand_core::RngCore::next_u32(run.rng) as usize) % CH.len()] as char);
    }
    let result = if f.contains('d') {
        run.fs.mkdir(&name, run.cred(), run.now)
    } else {
        run.fs.write(&name, &[], false, run.cred(), run.now).map(|_| ())
    };
    match result {
        Ok(()) => {
            out(io, &format!("{name}\n"));
            Ok(0)
        }
        Err(e) => {
            err(
                io,
                &format!(
                    "mktemp: failed to create file via template ‘/tmp/tmp.XXXXXXXXXX’: {}\n",
                    e.message()
                ),
            );
            Ok(1)
        }
    }
}

pub(crate) fn du(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, mut ops) = flags(&argv[1..]);
    if ops.is_empty() {
        ops.push(".".into());
    }
    for op in ops {
        let files = walk_files(run, std::slice::from_ref(&op));
        let mut total = 4;
        for file in files {
            if let Ok((_, n)) = run.fs.stat(&abs(run, &file)) {
                total += n.size().div_ceil(4096) * 4;
            }
        }
        let size = if f.contains('h') {
            human(total * 1024)
        } else {
            total.to_string()
        };
        out(io, &format!("{size}\t{op}\n"));
    }
    Ok(0)
}

pub(crate) fn stat(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, ops) = flags(&argv[1..]);
    let mut status = 0;
    for op in ops {
        match run.fs.lstat(&abs(run, &op)) {
            Ok((_, n)) => {
                let kind = match n.kind {
                    NodeKind::Dir => "directory",
                    NodeKind::Symlink(_) => "symbolic link",
                    NodeKind::CharDevice(_) => "character special file",
                    NodeKind::File(ref d) if d.is_empty() => "regular empty file",
                    _ => "regular file",
                };
                let (y, mo, d, h, mi, s, _) = civil(n.mtime);
                let t = format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.000000000 +0000");
                out(
                    io,
                    &format!(
                        "  File: {op}\n  Size: {:<15} Blocks: {:<10} IO Block: 4096   {kind}\nDevice: 801h/2049d\tInode: {:<11} Links: 1\nAccess: ({:04o}/{})  Uid: ({:>5}/{:>8})   Gid: ({:>5}/{:>8})\nAccess: {t}\nModify: {t}\nChange: {t}\n Birth: -\n",
                        n.size(),
                        n.size().div_ceil(4096) * 8,
                        100_000 + (n.mtime % 900_000).unsigned_abs(),
                        n.mode & 0o7777,
                        mode_string(n.type_char(), n.mode),
                        n.uid,
                        user_name(run, n.uid),
                        n.gid,
                        group_name(run, n.gid)
                    ),
                );
            }
            Err(e) => {
                err(io, &format!("stat: cannot statx '{op}': {}\n", e.message()));
                status = 1;
            }
        }
    }
    Ok(status)
}

pub(crate) fn tee(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, files) = flags(&argv[1..]);
    let append = f.contains('a');
    let data: Arc<[u8]> = run.read_all(io)?;
    io.out.extend_from_slice(&data);
    let mut status = 0;
    for file in files {
        let abs_path = abs(run, &file);
        if run
            .fs
            .stat(&abs_path)
            .is_ok_and(|(_, n)| matches!(n.kind, NodeKind::CharDevice(_)))
        {
            continue;
        }
        if let Err(e) = run.write_file(&file, &data, append, "tee") {
            err(io, &format!("tee: {file}: {}\n", e.message()));
            status = 1;
        }
    }
    Ok(status)
}

pub(crate) fn dd(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut input = None;
    let mut output = None;
    for a in &argv[1..] {
        if let Some(v) = a.strip_prefix("if=") {
            input = Some(v.to_string());
        } else if let Some(v) = a.strip_prefix("of=") {
            output = Some(v.to_string());
        }
    }
    let data = match input {
        Some(f) => match run.read_file(&f) {
            Ok(d) => d,
            Err(e) => {
                err(io, &format!("dd: failed to open '{f}': {}\n", e.message()));
                return Ok(1);
            }
        },
        None => run.read_all(io)?,
    };
    match output {
        Some(f) => {
            let abs_path = abs(run, &f);
            if !run
                .fs
                .stat(&abs_path)
                .is_ok_and(|(_, n)| matches!(n.kind, NodeKind::CharDevice(_)))
                && let Err(e) = run.write_file(&f, &data, false, "dd")
            {
                err(io, &format!("dd: failed to open '{f}': {}\n", e.message()));
                return Ok(1);
            }
        }
        None => io.out.extend_from_slice(&data),
    }
    let n = data.len();
    err(
        io,
        &format!(
            "{}+{} records in\n{}+{} records out\n{n} bytes copied, 0.000143 s, {} MB/s\n",
            n / 512,
            usize::from(n % 512 != 0),
            n / 512,
            usize::from(n % 512 != 0),
            n / 143
        ),
    );
    Ok(0)
}
