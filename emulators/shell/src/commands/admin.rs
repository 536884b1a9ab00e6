//! Privilege and system administration: sudo, su, passwd, package managers,
//! services, cron, and the process tools.

use super::{err, flags, out};
use crate::ShellEvent;
use crate::interp::{Exec, Flow, Io, Run, Stdin};

/// How long a sudo password is remembered (sudo's `timestamp_timeout`).
const SUDO_CACHE_SECS: i64 = 15 * 60;

fn root_user(run: &Run<'_>) -> crate::host::User {
    run.host.user("root").cloned().unwrap_or_else(|| crate::host::User {
        name: "root".into(),
        uid: 0,
        gids: vec![0],
        home: "/root".into(),
        shell: "/bin/bash".into(),
        password: None,
    })
}

/// Starts a login shell as `user` inside this session (`su`, `sudo -i`).
fn push_shell(run: &mut Run<'_>, user: crate::host::User, login: bool) {
    let saved = (run.st.user.clone(), run.st.cwd.clone(), run.st.vars.clone());
    run.st.user_stack.push(saved);
    if login {
        crate::session::login_env(run.st, &user, run.host, run.interactive);
    } else {
        run.st.vars.insert("USER".into(), user.name.clone());
        run.st.vars.insert("HOME".into(), user.home.clone());
    }
    run.st.user = user;
}

fn check_password(run: &Run<'_>, user: &str, typed: &str) -> bool {
    run.host.account(user).is_some_and(|a| a.password == typed)
}

pub(crate) fn sudo(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut i = 1;
    let mut stdin_password = false;
    let mut login = false;
    let mut shell = false;
    let mut list = false;
    let mut target = "root".to_string();
    while i < argv.len() && argv[i].starts_with('-') {
        match argv[i].as_str() {
            "-S" | "--stdin" => stdin_password = true,
            "-i" | "--login" => login = true,
            "-s" | "--shell" => shell = true,
            "-l" | "--list" => list = true,
            "-u" => {
                i += 1;
                target = argv.get(i).cloned().unwrap_or_else(|| "root".into());
            }
            "-k" | "-K" => run.st.sudo_ok_until = 0,
            "-n" | "--non-interactive" if run.st.user.uid != 0 && run.now >= run.st.sudo_ok_until => {
                err(io, "sudo: a password is required\n");
                return Ok(1);
            }
            _ => {}
        }
        i += 1;
    }
    let command: Vec<String> = argv[i..].to_vec();
    if command.is_empty() && !login && !shell && !list {
        err(
            io,
            "usage: sudo -h | -K | -k | -V\nusage: sudo -v [-ABkNnS] [-g group] [-h host] [-p prompt] [-u user]\nusage: sudo -l [-ABkNnS] [-g group] [-h host] [-p prompt] [-U user] [-u user] [command [arg ...]]\nusage: sudo [-ABbEHkNnPS] [-r role] [-t type] [-C num] [-D directory] [-g group] [-h host] [-p prompt] [-R directory] [-T timeout] [-u user] [VAR=value] [-i | -s] [command [arg ...]]\nusage: sudo -e [-ABkNnS] [-r role] [-t type] [-C num] [-D directory] [-g group] [-h host] [-p prompt] [-R directory] [-T timeout] [-u user] file ...\n",
        );
        return Ok(1);
    }
    let me = run.st.user.name.clone();
    if run.st.user.uid != 0 && run.now >= run.st.sudo_ok_until {
        if !run.interactive && !stdin_password {
            err(
                io,
                "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\nsudo: a password is required\n",
            );
            return Ok(1);
        }
        let mut ok = false;
        for attempt in 0..3 {
            let prompt = format!("[sudo] password for {me}: ");
            if stdin_password && !(run.interactive && matches!(io.stdin, Stdin::Terminal)) {
                // -S reads a pipe; the prompt still goes to stderr.
                err(io, &prompt);
            }
            let Some(typed) = run.read_line(io, &prompt, false)? else {
                err(
                    io,
                    &format!(
                        "{}sudo: no password was provided\n",
                        if run.interactive { "\n" } else { "" }
                    ),
                );
                return Ok(1);
            };
            let good = check_password(run, &me, &typed);
            run.emit(ShellEvent::Password {
                tool: "sudo".into(),
                user: me.clone(),
                password: typed,
                accepted: good,
            });
            if good {
                ok = true;
                break;
            }
            if attempt < 2 {
                err(io, "Sorry, try again.\n");
            }
        }
        if !ok {
            err(io, "sudo: 3 incorrect password attempts\n");
            return Ok(1);
        }
        let sudo_gid = run
            .host
            .inner
            .groups
            .iter()
            .find(|g| g.0 == run.host.inner.sudo_group)
            .map(|g| g.1);
        if !sudo_gid.is_some_and(|g| run.st.user.gids.contains(&g)) {
            err(io, &format!("{me} is not in the sudoers file.\n"));
            return Ok(1);
        }
        run.st.sudo_ok_until = run.now + SUDO_CACHE_SECS;
    }
    if list {
        out(
            io,
            &format!(
                "Matching Defaults entries for {me} on {}:\n    env_reset, mail_badpass, secure_path=/usr/local/sbin\\:/usr/local/bin\\:/usr/sbin\\:/usr/bin\\:/sbin\\:/bin, use_pty\n\nUser {me} may run the following commands on {}:\n    (ALL : ALL) ALL\n",
                run.host.hostname(),
                run.host.hostname()
            ),
        );
        return Ok(0);
    }
    let Some(user) = run.host.user(&target).cloned() else {
        err(
            io,
            &format!("sudo: unknown user {target}\nsudo: error initializing audit plugin sudoers_audit\n"),
        );
        return Ok(1);
    };
    let becomes_shell = command.is_empty()
        || (command.len() == 1
            && matches!(
                command[0].as_str(),
                "su" | "bash" | "sh" | "-s" | "/bin/bash" | "/bin/sh"
            ))
        || (command.len() == 2 && command[0] == "su" && command[1] == "-");
    if becomes_shell {
        push_shell(run, user, login || command.first().is_some_and(|c| c == "su"));
        return Ok(0);
    }
    // Run one command as the target user.
    let saved = std::mem::replace(&mut run.st.user, user);
    let result = super::dispatch(run, &command, io);
    run.st.user = saved;
    result
}

pub(crate) fn su(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut login = false;
    let mut command = None;
    let mut target = None;
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-" | "-l" | "--login" => login = true,
            "-c" | "--command" => {
                i += 1;
                command = argv.get(i).cloned();
            }
            a if !a.starts_with('-') && target.is_none() => target = Some(a.to_string()),
            _ => {}
        }
        i += 1;
    }
    let target = target.unwrap_or_else(|| "root".into());
    let Some(user) = run.host.user(&target).cloned() else {
        err(
            io,
            &format!("su: user {target} does not exist or the user entry does not contain all the required fields\n"),
        );
        return Ok(1);
    };
    if run.st.user.uid != 0 {
        if !run.interactive {
            err(io, "su: must be run from a terminal\n");
            return Ok(1);
        }
        let Some(typed) = run.read_line(io, "Password: ", false)? else {
            err(io, "\nsu: Authentication failure\n");
            return Ok(1);
        };
        let good = check_password(run, &target, &typed);
        run.emit(ShellEvent::Password {
            tool: "su".into(),
            user: target.clone(),
            password: typed,
            accepted: good,
        });
        if !good {
            err(io, "su: Authentication failure\n");
            return Ok(1);
        }
    }
    if let Some(cmd) = command {
        let saved = std::mem::replace(&mut run.st.user, user);
        let result = run.run_script(&cmd, io);
        run.st.user = saved;
        return result;
    }
    let _ = root_user(run);
    push_shell(run, user, login);
    Ok(0)
}

pub(crate) fn passwd(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let target = argv[1..]
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_else(|| run.st.user.name.clone());
    if target != run.st.user.name && run.st.user.uid != 0 {
        err(
            io,
            &format!("passwd: You may not view or modify password information for {target}.\n"),
        );
        return Ok(1);
    }
    if run.host.user(&target).is_none() {
        err(io, &format!("passwd: user '{target}' does not exist\n"));
        return Ok(1);
    }
    let piped = matches!(io.stdin, Stdin::Data(_));
    if !run.interactive && !piped {
        err(
            io,
            "passwd: Authentication token manipulation error\npasswd: password unchanged\n",
        );
        return Ok(1);
    }
    if run.st.user.uid != 0 {
        out(io, &format!("Changing password for {target}.\n"));
        run.flush(io);
        let Some(current) = run.read_line(io, "Current password: ", false)? else {
            return Ok(1);
        };
        let good = check_password(run, &target, &current);
        run.emit(ShellEvent::Password {
            tool: "passwd".into(),
            user: target.clone(),
            password: current,
            accepted: good,
        });
        if !good {
            err(
                io,
                "passwd: Authentication token manipulation error\npasswd: password unchanged\n",
            );
            return Ok(10);
        }
    }
    let Some(new) = run.read_line(io, "New password: ", false)? else {
        return Ok(1);
    };
    let Some(again) = run.read_line(io, "Retype new password: ", false)? else {
        return Ok(1);
    };
    run.emit(ShellEvent::Password {
        tool: "passwd".into(),
        user: target.clone(),
        password: new.clone(),
        accepted: new == again,
    });
    if new != again {
        err(
            io,
            "Sorry, passwords do not match.\npasswd: Authentication token manipulation error\npasswd: password unchanged\n",
        );
        return Ok(10);
    }
    out(io, "passwd: password updated successfully\n");
    Ok(0)
}

pub(crate) fn chpasswd(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let data = run.read_all(io)?;
    for line in String::from_utf8_lossy(&data).lines() {
        if let Some((user, pass)) = line.split_once(':') {
            run.emit(ShellEvent::Password {
                tool: "chpasswd".into(),
                user: user.to_string(),
                password: pass.to_string(),
                accepted: run.st.user.uid == 0,
            });
        }
    }
    if run.st.user.uid != 0 {
        err(
            io,
            "chpasswd: (user root) pam_chauthtok() failed, error:\nAuthentication token manipulation error\nchpasswd: (line 1, user root) password not changed\n",
        );
        return Ok(1);
    }
    Ok(0)
}

pub(crate) fn package(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let tool = argv[0].rsplit('/').next().unwrap_or("apt").to_string();
    let (_, ops) = flags(&argv[1..]);
    let action = ops.first().cloned().unwrap_or_default();
    let pkgs: Vec<String> = ops.iter().skip(1).cloned().collect();
    let root = run.st.user.uid == 0;
    let read_only = matches!(
        action.as_str(),
        "list" | "search" | "show" | "policy" | "info" | "-l" | "-q" | ""
    );
    match tool.as_str() {
        "apt" | "apt-get" => {
            if !root && !read_only {
                err(
                    io,
                    "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), are you root?\n",
                );
                return Ok(100);
            }
            match action.as_str() {
                "update" => {
                    let mirrors = [
                        "http://deb.debian.org/debian bookworm InRelease",
                        "http://deb.debian.org/debian-security bookworm-security InRelease",
                        "http://deb.debian.org/debian bookworm-updates InRelease",
                    ];
                    for (n, m) in mirrors.iter().enumerate() {
                        out(
                            io,
                            &format!(
                                "Err:{} {m}\n  Temporary failure resolving '{}'\n",
                                n + 1,
                                m.split('/').nth(2).unwrap_or("")
                            ),
                        );
                    }
                    out(io, "Reading package lists... Done\n");
                    err(
                        io,
                        "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'\nW: Some index files failed to download. They have been ignored, or old ones used instead.\n",
                    );
                    Ok(0)
                }
                "install" | "reinstall" => {
                    out(
                        io,
                        "Reading package lists... Done\nBuilding dependency tree... Done\nReading state information... Done\n",
                    );
                    match pkgs.first() {
                        Some(p) => {
                            err(io, &format!("E: Unable to locate package {p}\n"));
                            Ok(100)
                        }
                        None => {
                            out(io, "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n");
                            Ok(0)
                        }
                    }
                }
                "upgrade" | "dist-upgrade" | "full-upgrade" | "remove" | "purge" | "autoremove" => {
                    out(
                        io,
                        "Reading package lists... Done\nBuilding dependency tree... Done\nReading state information... Done\nCalculating upgrade... Done\n0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n",
                    );
                    Ok(0)
                }
                "" => {
                    out(io, &format!("{tool} 2.6.1 (amd64)\nUsage: {tool} [options] command\n"));
                    Ok(1)
                }
                other => {
                    err(io, &format!("E: Invalid operation {other}\n"));
                    Ok(100)
                }
            }
        }
        "yum" | "dnf" => {
            if !root && !read_only {
                err(
                    io,
                    "Error: This command has to be run with superuser privileges (under the root user on most systems).\n",
                );
                return Ok(1);
            }
            if tool == "yum" && run.host.inner.package_manager == "yum" {
                out(
                    io,
                    "Loaded plugins: fastestmirror\nLoading mirror speeds from cached hostfile\n",
                );
                err(
                    io,
                    "Could not retrieve mirrorlist http://mirrorlist.centos.org/?release=7&arch=x86_64&repo=os&infra=stock error was\n14: curl#6 - \"Could not resolve host: mirrorlist.centos.org; Unknown error\"\n\n\n One of the configured repositories failed (Unknown),\n and yum doesn't have enough cached data to continue.\n",
                );
            } else {
                err(
                    io,
                    "Errors during downloading metadata for repository 'baseos':\n  - Curl error (6): Couldn't resolve host name for https://mirrors.rockylinux.org/mirrorlist?arch=x86_64&repo=BaseOS-9 [Could not resolve host: mirrors.rockylinux.org]\nError: Failed to download metadata for repo 'baseos': Cannot prepare internal mirrorlist: Curl error (6): Couldn't resolve host name\n",
                );
            }
            Ok(1)
        }
        "apk" => {
            if !root && !read_only {
                err(
                    io,
                    "ERROR: Unable to lock database: Permission denied\nERROR: Failed to open apk database: Permission denied\n",
                );
                return Ok(99);
            }
            out(
                io,
                "fetch https://dl-cdn.alpinelinux.org/alpine/v3.19/main/x86_64/APKINDEX.tar.gz\n",
            );
            err(
                io,
                "WARNING: updating and opening https://dl-cdn.alpinelinux.org/alpine/v3.19/main: temporary error (try again later)\n",
            );
            if action == "add"
                && let Some(p) = pkgs.first()
            {
                err(
                    io,
                    &format!(
                        "ERROR: unable to select packages:\n  {p} (no such package):\n    required by: world[{p}]\n"
                    ),
                );
                return Ok(1);
            }
            Ok(1)
        }
        "pacman" => {
            if !root {
                err(io, "error: you cannot perform this operation unless you are root.\n");
                return Ok(1);
            }
            err(
                io,
                ":: Synchronizing package databases...\nerror: failed retrieving file 'core.db' from geo.mirror.pkgbuild.com : Could not resolve host: geo.mirror.pkgbuild.com\nerror: failed to synchronize all databases (failed to retrieve some files)\n",
            );
            Ok(1)
        }
        _ => {
            if action == "-l" || action == "-qa" || action.is_empty() {
                return Ok(0);
            }
            err(
                io,
                &format!("{tool}: error: requested operation requires superuser privilege\n"),
            );
            Ok(2)
        }
    }
}

const KNOWN_UNITS: &[&str] = &[
    "ssh",
    "sshd",
    "cron",
    "crond",
    "rsyslog",
    "systemd-journald",
    "systemd-logind",
    "dbus",
    "networking",
    "getty@tty1",
];

pub(crate) fn systemctl(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (_, ops) = flags(&argv[1..]);
    let action = ops.first().cloned().unwrap_or_else(|| "list-units".into());
    let unit = ops.get(1).cloned().unwrap_or_default();
    let name = unit.trim_end_matches(".service").to_string();
    let known = KNOWN_UNITS.contains(&name.as_str());
    match action.as_str() {
        "status" => {
            if unit.is_empty() {
                out(
                    io,
                    &format!(
                        "● {}\n    State: running\n    Units: 231 loaded (incl. loaded aliases)\n     Jobs: 0 queued\n   Failed: 0 units\n",
                        run.host.hostname()
                    ),
                );
                return Ok(0);
            }
            if !known {
                err(io, &format!("Unit {name}.service could not be found.\n"));
                return Ok(4);
            }
            let (_, mo, d, h, m, s, wd) = super::sysinfo::civil(run.host.inner.boot_time + 5);
            out(
                io,
                &format!(
                    "● {name}.service\n     Loaded: loaded (/lib/systemd/system/{name}.service; enabled; preset: enabled)\n     Active: active (running) since {} {}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02} UTC\n   Main PID: {} ({name})\n      Tasks: 1 (limit: 4647)\n     CGroup: /system.slice/{name}.service\n",
                    super::sysinfo::DAYS[wd],
                    super::sysinfo::civil(run.host.inner.boot_time).0,
                    400 + name.len() * 13
                ),
            );
            Ok(0)
        }
        "start" | "stop" | "restart" | "reload" | "enable" | "disable" | "mask" | "daemon-reload" | "kill" => {
            if run.st.user.uid != 0 {
                err(
                    io,
                    &format!(
                        "Failed to {action} {name}.service: Access denied\nSee system logs and 'systemctl status {name}.service' for details.\n"
                    ),
                );
                return Ok(1);
            }
            if action == "daemon-reload" || known {
                return Ok(0);
            }
            // A unit the attacker just wrote into /etc/systemd/system exists.
            let path = format!("/etc/systemd/system/{name}.service");
            if run.fs.stat(&path).is_ok() {
                if action == "enable" {
                    err(
                        io,
                        &format!(
                            "Created symlink /etc/systemd/system/multi-user.target.wants/{name}.service → {path}.\n"
                        ),
                    );
                }
                return Ok(0);
            }
            err(
                io,
                &format!("Failed to {action} {name}.service: Unit {name}.service not found.\n"),
            );
            Ok(5)
        }
        "is-active" => {
            out(io, if known { "active\n" } else { "inactive\n" });
            Ok(if known { 0 } else { 3 })
        }
        "list-units" | "list-unit-files" => {
            let mut s = String::from("  UNIT                         LOAD   ACTIVE SUB     DESCRIPTION\n");
            for u in KNOWN_UNITS.iter().take(8) {
                s.push_str(&format!("  {:<28} loaded active running {u}\n", format!("{u}.service")));
            }
            out(io, &s);
            Ok(0)
        }
        other => {
            err(io, &format!("Unknown command verb {other}.\n"));
            Ok(1)
        }
    }
}

pub(crate) fn service(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() < 3 {
        err(
            io,
            "Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]\n",
        );
        return Ok(1);
    }
    let mapped = vec!["systemctl".to_string(), argv[2].clone(), argv[1].clone()];
    systemctl(run, &mapped, io)
}

pub(crate) fn crontab(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut user = run.st.user.name.clone();
    let mut action = None;
    let mut file = None;
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-u" => {
                i += 1;
                user = argv.get(i).cloned().unwrap_or(user);
            }
            "-l" | "-r" | "-e" | "-i" => action = Some(argv[i].clone()),
            a => file = Some(a.to_string()),
        }
        i += 1;
    }
    if user != run.st.user.name && run.st.user.uid != 0 {
        err(io, "must be privileged to use -u\n");
        return Ok(1);
    }
    let spool = if run.host.inner.package_manager == "apt" {
        "/var/spool/cron/crontabs"
    } else {
        "/var/spool/cron"
    };
    let path = format!("{spool}/{user}");
    // The spool is root's; crontab is setgid in real life, so write as root.
    let root = root_user(run);
    let saved = std::mem::replace(&mut run.st.user, root);
    let result = (|| -> Exec {
        match action.as_deref() {
            Some("-l") => match run.read_file(&path) {
                Ok(d) => {
                    io.out.extend_from_slice(&d);
                    Ok(0)
                }
                Err(_) => {
                    err(io, &format!("no crontab for {user}\n"));
                    Ok(1)
                }
            },
            Some("-r") => {
                if run.fs.unlink(&path, run.cred()).is_err() {
                    err(io, &format!("no crontab for {user}\n"));
                    return Ok(1);
                }
                Ok(0)
            }
            Some(_) => {
                err(
                    io,
                    &format!("no crontab for {user} - using an empty one\ncrontab: installing new crontab\n"),
                );
                Ok(0)
            }
            None => {
                let data = match file.as_deref() {
                    None | Some("-") => run.read_all(io)?,
                    Some(f) => match run
                        .read_file(&crate::fs::absolute(&saved.home, f))
                        .or_else(|_| run.read_file(f))
                    {
                        Ok(d) => d,
                        Err(e) => {
                            err(io, &format!("{f}: {}\n", e.message()));
                            return Ok(1);
                        }
                    },
                };
                let _ = run.fs.mkdir(spool, run.cred(), run.now);
                if let Err(e) = run.write_file(&path, &data, false, "crontab") {
                    err(io, &format!("crontab: {}\n", e.message()));
                    return Ok(1);
                }
                Ok(0)
            }
        }
    })();
    run.st.user = saved;
    result
}

pub(crate) fn pkill(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let tool = argv[0].rsplit('/').next().unwrap_or("pkill").to_string();
    let pattern = argv[1..]
        .iter()
        .rfind(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    if pattern.is_empty() {
        err(
            io,
            &format!("{tool}: no matching criteria specified\nTry `{tool} --help' for more information.\n"),
        );
        return Ok(2);
    }
    let matches: Vec<(String, u32)> = run
        .host
        .inner
        .processes
        .iter()
        .filter(|(_, cmd, _)| {
            let name = cmd
                .split_whitespace()
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("");
            if tool == "killall" {
                name == pattern
            } else {
                name.contains(&pattern)
            }
        })
        .map(|(u, _, p)| (u.clone(), *p))
        .collect();
    if matches.is_empty() {
        if tool == "killall" {
            err(io, &format!("{pattern}: no process found\n"));
        }
        return Ok(1);
    }
    for (u, p) in matches {
        if tool == "pgrep" {
            out(io, &format!("{p}\n"));
        } else if run.st.user.uid != 0 && u != run.st.user.name {
            err(
                io,
                &format!("{tool}: killing pid {p} failed: Operation not permitted\n"),
            );
        }
    }
    Ok(0)
}

pub(crate) fn nohup(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() < 2 {
        err(io, "nohup: missing operand\nTry 'nohup --help' for more information.\n");
        return Ok(125);
    }
    let tty = io.top && run.interactive;
    let mut child = Io::child(io.stdin.clone());
    let status = run.invoke(&argv[1..], &mut child)?;
    if tty {
        err(io, "nohup: ignoring input and appending output to 'nohup.out'\n");
        if !child.out.is_empty() {
            let _ = run.write_file("nohup.out", &child.out, true, "nohup");
        }
    } else {
        io.out.append(&mut child.out);
    }
    io.err.append(&mut child.err);
    Ok(status)
}

pub(crate) fn clear(_: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    out(io, "\x1b[H\x1b[2J\x1b[3J");
    Ok(0)
}

pub(crate) fn sleep(_: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let Some(arg) = argv.get(1) else {
        err(io, "sleep: missing operand\nTry 'sleep --help' for more information.\n");
        return Ok(1);
    };
    let number = arg.trim_end_matches(['s', 'm', 'h', 'd']);
    if number.parse::<f64>().is_err() && arg != "infinity" {
        err(
            io,
            &format!("sleep: invalid time interval ‘{arg}’\nTry 'sleep --help' for more information.\n"),
        );
        return Ok(1);
    }
    // The session never blocks; the caller's clock moves on its own.
    Ok(0)
}

pub(crate) fn sh(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut i = 1;
    while i < argv.len() && argv[i].starts_with('-') {
        if argv[i] == "-c" {
            let Some(script) = argv.get(i + 1) else {
                err(io, &format!("{}: -c: option requires an argument\n", argv[0]));
                return Ok(2);
            };
            let saved = std::mem::replace(&mut run.st.positional, argv[i + 2..].to_vec());
            let result = run.run_script(script, io);
            run.st.positional = saved;
            return match result {
                Err(Flow::Exit(code)) => Ok(code),
                other => other,
            };
        }
        i += 1;
    }
    if let Some(file) = argv.get(i) {
        return match run.read_file(file) {
            Ok(data) => {
                let text = String::from_utf8_lossy(&data).into_owned();
                let saved = std::mem::replace(&mut run.st.positional, argv[i + 1..].to_vec());
                let result = run.run_script(&text, io);
                run.st.positional = saved;
                match result {
                    Err(Flow::Exit(code)) => Ok(code),
                    other => other,
                }
            }
            Err(e) => {
                err(io, &format!("{}: {file}: {}\n", argv[0], e.message()));
                Ok(127)
            }
        };
    }
    if matches!(io.stdin, Stdin::Terminal) && run.interactive {
        // A nested interactive shell: `exit` comes back here.
        let user = run.st.user.clone();
        let saved = (user.clone(), run.st.cwd.clone(), run.st.vars.clone());
        run.st.user_stack.push(saved);
        return Ok(0);
    }
    let data = run.read_all(io)?;
    let text = String::from_utf8_lossy(&data).into_owned();
    match run.run_script(&text, io) {
        Err(Flow::Exit(code)) => Ok(code),
        other => other,
    }
}

pub(crate) fn useradd(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let tool = argv[0].rsplit('/').next().unwrap_or("useradd").to_string();
    if run.st.user.uid != 0 {
        err(
            io,
            &format!("{tool}: Permission denied.\n{tool}: cannot lock /etc/passwd; try again later.\n"),
        );
        return Ok(1);
    }
    let Some(name) = argv[1..].iter().rev().find(|a| !a.starts_with('-')).cloned() else {
        err(io, &format!("Usage: {tool} [options] LOGIN\n"));
        return Ok(2);
    };
    if tool == "useradd" {
        let line = format!("{name}:x:1001:1001::/home/{name}:/bin/sh\n");
        if let Err(e) = run.write_file("/etc/passwd", line.as_bytes(), true, "useradd") {
            err(io, &format!("{tool}: {}\n", e.message()));
            return Ok(1);
        }
        if argv.iter().any(|a| a == "-m") {
            let _ = run.fs.mkdir(&format!("/home/{name}"), run.cred(), run.now);
        }
    }
    Ok(0)
}

pub(crate) fn iptables(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if run.st.user.uid != 0 {
        err(
            io,
            "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n\n",
        );
        return Ok(4);
    }
    if argv.iter().any(|a| a == "-L" || a == "-nL" || a == "-S") {
        out(
            io,
            "Chain INPUT (policy ACCEPT)\ntarget     prot opt source               destination         \n\nChain FORWARD (policy ACCEPT)\ntarget     prot opt source               destination         \n\nChain OUTPUT (policy ACCEPT)\ntarget     prot opt source               destination         \n",
        );
    }
    Ok(0)
}

pub(crate) fn reboot(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    if run.st.user.uid != 0 {
        err(
            io,
            "Failed to set wall message, ignoring: Interactive authentication required.\nFailed to reboot system via logind: Interactive authentication required.\n",
        );
        return Ok(1);
    }
    run.flush(io);
    Err(Flow::Exit(0))
}
