//! Interactive (pty) sessions: echo, prompts, line editing, commands that
//! stop for input (sudo, su, cat > f), history, exit; and file semantics as
//! a user sees them through the shell.

mod common;

use common::{Pty, exec, exec_as};
use decnet_shell::{OverlayScope, ShellEvent, ShellOutput};

#[test]
fn prompt_and_echo_follow_the_distro() {
    let mut pty = Pty::new(&common::host("debian"), "root");
    assert_eq!(pty.ran.stdout, "root@web-01:~# ");
    assert_eq!(pty.type_("echo hi\r"), "echo hi\r\nhi\r\nroot@web-01:~# ");
    assert_eq!(pty.type_("cd /tmp\r"), "cd /tmp\r\nroot@web-01:/tmp# ");
    let pty = Pty::new(&common::host("centos7"), "admin");
    assert_eq!(pty.ran.stdout, "[admin@web-01 ~]$ ");
    let mut pty = Pty::new(&common::host("alpine"), "root");
    assert_eq!(pty.ran.stdout, "web-01:~# ");
    assert_eq!(
        pty.type_("nosuch\r"),
        "nosuch\r\n-bash: nosuch: command not found\r\nweb-01:~# "
    );
}

#[test]
fn line_editing_keys() {
    let mut pty = Pty::new(&common::host("debian"), "root");
    assert_eq!(
        pty.type_("echo abx\x7fc\r"),
        "echo abx\x08 \x08c\r\nabc\r\nroot@web-01:~# "
    );
    assert_eq!(pty.type_("echo nope\x03"), "echo nope^C\r\nroot@web-01:~# ");
    pty.type_("echo xyz\x15echo fresh\r");
    assert!(
        pty.ran.stdout.ends_with("fresh\r\nroot@web-01:~# "),
        "{:?}",
        pty.ran.stdout
    );
    // Up arrow brings back the last line.
    let shown = pty.type_("\x1b[A");
    assert!(shown.ends_with("echo fresh"), "{shown:?}");
    assert!(pty.type_("\r").contains("fresh\r\n"));
}

#[test]
fn continuation_lines_and_syntax_errors() {
    let mut pty = Pty::new(&common::host("debian"), "root");
    assert_eq!(pty.type_("for i in 1 2\r"), "for i in 1 2\r\n> ");
    assert_eq!(
        pty.type_("do echo n$i; done\r"),
        "do echo n$i; done\r\nn1\r\nn2\r\nroot@web-01:~# "
    );
    assert_eq!(pty.type_("echo 'open\r"), "echo 'open\r\n> ");
    assert_eq!(pty.type_("close'\r"), "close'\r\nopen\r\nclose\r\nroot@web-01:~# ");
    assert_eq!(
        pty.type_("echo )\r"),
        "echo )\r\n-bash: syntax error near unexpected token `)'\r\nroot@web-01:~# "
    );
}

fn passwords(events: &[ShellEvent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            ShellEvent::Password { password, accepted, .. } => Some((password.clone(), *accepted)),
            _ => None,
        })
        .collect()
}

#[test]
fn sudo_asks_for_the_password_and_logs_it() {
    let mut pty = Pty::new(&common::host("debian"), "admin");
    assert_eq!(
        pty.type_("echo before; sudo id\r"),
        "echo before; sudo id\r\nbefore\r\n[sudo] password for admin: "
    );
    // Not echoed; a wrong password gets another try.
    assert_eq!(pty.type_("wrong"), "");
    assert_eq!(pty.type_("\r"), "\r\nSorry, try again.\r\n[sudo] password for admin: ");
    let out = pty.type_("admin123\r");
    assert_eq!(out, "\r\nuid=0(root) gid=0(root) groups=0(root)\r\nadmin@web-01:~$ ");
    assert_eq!(
        passwords(&pty.ran.events),
        [("wrong".to_string(), false), ("admin123".to_string(), true)]
    );
    // One command event for the line, not one per re-run.
    assert_eq!(
        pty.ran
            .events
            .iter()
            .filter(|e| matches!(e, ShellEvent::Command { .. }))
            .count(),
        2 - 1
    );
    // The password is remembered for a while.
    assert_eq!(pty.type_("sudo whoami\r"), "sudo whoami\r\nroot\r\nadmin@web-01:~$ ");
}

#[test]
fn su_switches_user_until_exit() {
    let mut pty = Pty::new(&common::host("debian"), "admin");
    assert_eq!(pty.type_("su -\r"), "su -\r\nPassword: ");
    assert_eq!(pty.type_("toor\r"), "\r\nroot@web-01:~# ");
    assert_eq!(pty.type_("whoami\r"), "whoami\r\nroot\r\nroot@web-01:~# ");
    assert_eq!(pty.type_("exit\r"), "exit\r\nexit\r\nadmin@web-01:~$ ");
    assert!(!pty.session.is_closed());
    assert_eq!(pty.type_("exit\r"), "exit\r\nlogout\r\n");
    assert_eq!(pty.ran.status, Some(0));
    assert!(pty.session.is_closed());
}

#[test]
fn cat_to_a_file_reads_until_ctrl_d_and_captures_it() {
    let mut pty = Pty::new(&common::host("debian"), "root");
    assert_eq!(pty.type_("cat > /tmp/up.sh\r"), "cat > /tmp/up.sh\r\n");
    assert_eq!(pty.type_("#!/bin/sh\recho up\r"), "#!/bin/sh\r\necho up\r\n");
    assert_eq!(pty.type_("\x04"), "root@web-01:~# ");
    let data = pty.ran.events.iter().rev().find_map(|e| match e {
        ShellEvent::FileCaptured { path, data, .. } if path == "/tmp/up.sh" => Some(data.to_vec()),
        _ => None,
    });
    assert_eq!(data.as_deref(), Some(&b"#!/bin/sh\necho up\n"[..]));
    assert_eq!(pty.type_("sh /tmp/up.sh\r"), "sh /tmp/up.sh\r\nup\r\nroot@web-01:~# ");
}

#[test]
fn exec_mode_stdin_and_exit_status() {
    let host = common::host("debian");
    let mut s = decnet_shell::ShellSession::new(
        &host,
        "root",
        decnet_shell::Mode::Exec("cat > /tmp/in; wc -c < /tmp/in".into()),
        decnet_shell::Limits::default(),
        1,
    );
    let mut ran = common::Ran::default();
    common::collect(s.start(common::NOW), &mut ran);
    assert_eq!(ran.status, None, "waits for stdin");
    common::collect(s.feed(common::NOW, b"12345"), &mut ran);
    common::collect(s.eof(common::NOW), &mut ran);
    assert_eq!(ran.stdout, "5\n");
    assert_eq!(ran.status, Some(0));
    let r = exec(&host, "exit 42");
    assert_eq!(r.status, Some(42));
}

#[test]
fn ctrl_d_logs_out() {
    let mut pty = Pty::new(&common::host("debian"), "root");
    let out = pty.session.feed(common::NOW, b"\x04");
    assert_eq!(out, [ShellOutput::Stdout(b"logout\r\n".to_vec()), ShellOutput::Exit(0)]);
}

#[test]
fn file_semantics_through_the_shell() {
    let host = common::host("debian");
    let r = exec(&host, "rm /tmp/missing");
    assert_eq!(
        (r.stderr.as_str(), r.status),
        ("rm: cannot remove '/tmp/missing': No such file or directory\n", Some(1))
    );
    let r = exec_as(&host, "admin", "cat /etc/shadow");
    assert_eq!(
        (r.stderr.as_str(), r.status),
        ("cat: /etc/shadow: Permission denied\n", Some(1))
    );
    let r = exec(&host, "head -1 /etc/shadow");
    assert!(r.stdout.starts_with("root:$y$"), "{}", r.stdout);
    let r = exec_as(&host, "admin", "ls /root");
    assert_eq!(r.stderr, "ls: cannot open directory '/root': Permission denied\n");
    let r = exec_as(&host, "admin", "echo x > /etc/passwd");
    assert_eq!(r.stderr, "bash: /etc/passwd: Permission denied\n");
    let r = exec(&host, "echo x > /proc/version");
    assert_eq!(r.stderr, "bash: /proc/version: Read-only file system\n");
    let r = exec(&host, "mkdir /tmp/d && touch /tmp/d/f && rmdir /tmp/d");
    assert_eq!(r.stderr, "rmdir: failed to remove '/tmp/d': Directory not empty\n");
    let r = exec(&host, "cat /etc");
    assert_eq!(r.stderr, "cat: /etc: Is a directory\n");
    let r = exec(&host, "cd /etc/passwd");
    assert_eq!(r.stderr, "bash: cd: /etc/passwd: Not a directory\n");
    let r = exec(&host, "echo hello > /tmp/f; ls -l /tmp/f; wc -c /tmp/f");
    assert!(
        r.stdout.starts_with("-rw-r--r-- 1 root root 6 Nov 23 05:00 /tmp/f\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("6 /tmp/f\n"));
    let r = exec(&host, "cat /proc/version; uname -r");
    assert!(
        r.stdout
            .starts_with("Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)"),
        "{}",
        r.stdout
    );
    let r = exec(&host, "ls /usr/bin | grep -c .; ls /bin/ls; ls /usr/bin/apt");
    assert_eq!(r.status, Some(0), "{}", r.stderr);
    let centos = common::host("centos7");
    assert_eq!(exec(&centos, "apt").stderr, "bash: apt: command not found\n");
}

#[test]
fn overlays_are_per_session_unless_per_decky() {
    let host = common::host("debian");
    exec(&host, "echo secret > /tmp/mine");
    assert_eq!(
        exec(&host, "cat /tmp/mine").stderr,
        "cat: /tmp/mine: No such file or directory\n"
    );
    let shared = common::host_with("debian", OverlayScope::Decky);
    exec(&shared, "echo secret > /tmp/mine");
    assert_eq!(exec(&shared, "cat /tmp/mine").stdout, "secret\n");
}

#[test]
fn overlay_size_is_bounded() {
    let host = common::host("debian");
    let r = exec(
        &host,
        "yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA > /tmp/a; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127 128 129 130 131 132 133 134 135 136 137 138 139 140; do cat /tmp/a /tmp/a > /tmp/b$i; done",
    );
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
}

#[test]
fn endless_loops_end() {
    let host = common::host("debian");
    let r = exec(&host, "while true; do echo y; done");
    assert!(r.status.is_some());
    assert!(r.stdout.len() <= 1 << 20);
    let r = exec(&host, "f() { f; }; f; echo after");
    assert!(r.status.is_some());
    let r = exec(
        &host,
        "echo $(echo $(echo $(echo $(echo $(echo $(echo $(echo $(echo deep))))))))",
    );
    assert_eq!(r.stdout, "deep\n");
    // Found by the fuzzer: deep braces once took exponential time to expand.
    let r = exec(&host, "{{{{{{{{{{{{{{{{{{{{{\x1d[");
    assert!(r.status.is_some());
    // And deep parentheses made the parser backtrack for seconds.
    let r = exec(&host, "(\n((((((((((((((((((((((((((((((\n");
    assert_eq!(r.status, Some(2));
}

#[test]
fn every_distro_tells_one_story() {
    let catalogue = decnet_core::Catalogue::embedded().expect("catalogue");
    for d in catalogue.distros() {
        let host = common::host(&d.slug);
        let r = exec(
            &host,
            "cat /etc/os-release; uname -r; cat /proc/version; cat /etc/hostname; uname -a",
        );
        assert_eq!(r.status, Some(0), "{}: {}", d.slug, r.stderr);
        assert!(r.stdout.starts_with(&d.os_release), "{}", d.slug);
        assert!(r.stdout.contains(&format!("\n{}\n", d.kernel.release)), "{}", d.slug);
        assert!(
            r.stdout.contains(&format!("Linux version {}", d.kernel.release)),
            "{}",
            d.slug
        );
        assert!(r.stdout.contains(&format!("{}\n", d.uname_a("web-01"))), "{}", d.slug);
        let mut pty = Pty::new(&host, "root");
        let shell = d.shell.rsplit('/').next().unwrap_or("bash");
        let _ = shell;
        assert!(
            pty.type_("echo $SHELL\r").contains(&format!("{}\r\n", d.shell)),
            "{}",
            d.slug
        );
    }
    let debian = common::host("debian");
    assert!(
        debian
            .motd()
            .starts_with("Linux web-01 6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC"),
        "{}",
        debian.motd()
    );
    assert!(
        common::host("ubuntu22")
            .motd()
            .starts_with("Welcome to Ubuntu 22.04.5 LTS (GNU/Linux")
    );
    assert_eq!(
        exec(&debian, "head -1 /etc/motd").stdout,
        "The programs included with the Debian GNU/Linux system are free software;\n"
    );
}

#[test]
fn ls_on_a_terminal_uses_columns_and_colours() {
    let mut pty = Pty::new(&common::host("debian"), "root");
    let shown = pty.type_("ls /\r");
    let lines: Vec<&str> = shown.split("\r\n").collect();
    // Two rows of columns, like GNU ls on an 80-column terminal, with the alias's colours.
    assert_eq!(lines.len(), 4, "{shown:?}");
    assert!(
        lines[1].starts_with("\x1b[01;36mbin\x1b[0m   \x1b[01;34mdev\x1b[0m  "),
        "{shown:?}"
    );
    // Through a pipe: one name per line, no colour, no long format.
    let piped = exec(&common::host("debian"), "ls --color=auto / | head -2");
    assert_eq!(piped.stdout, "bin\nboot\n");
}

#[test]
fn globs_read_the_fake_filesystem() {
    let host = common::host("debian");
    assert_eq!(exec(&host, "echo /etc/host*").stdout, "/etc/hostname /etc/hosts\n");
    assert_eq!(
        exec(&host, "cd /tmp; touch b.sh a.sh c.txt; echo *.sh; echo *.none").stdout,
        "a.sh b.sh\n*.none\n"
    );
    assert_eq!(exec(&host, "ls -d /ro*").stdout, "/root\n");
    let mut pty = Pty::new(&host, "root");
    assert_eq!(
        pty.type_("read -p 'Name: ' n; echo \"hi $n\"\r"),
        "read -p 'Name: ' n; echo \"hi $n\"\r\nName: "
    );
    assert_eq!(pty.type_("bob\r"), "bob\r\nhi bob\r\nroot@web-01:~# ");
    // A long multibyte value is cut on a character boundary.
    let r = exec(&host, "x=$(printf 'é%.0s' {1..10}); echo ${#x}");
    assert_eq!(r.stdout, "10\n");
}

#[test]
fn file_transfer_helpers_use_the_same_filesystem() {
    let host = common::host("debian");
    let mut s = decnet_shell::ShellSession::new(
        &host,
        "admin",
        decnet_shell::Mode::Interactive,
        decnet_shell::Limits::default(),
        1,
    );
    assert_eq!(s.cwd(), "/home/admin");
    let event = s
        .write_file(common::NOW, "up.bin", b"payload")
        .expect("home is writable");
    assert!(matches!(event, Some(ShellEvent::FileCaptured { ref path, .. }) if path == "/home/admin/up.bin"));
    assert_eq!(
        s.read_file(common::NOW, "/home/admin/up.bin").expect("readable"),
        b"payload"
    );
    assert_eq!(
        s.write_file(common::NOW, "/etc/x", b"no").err(),
        Some(decnet_shell::fs::FsError::PermissionDenied)
    );
    assert_eq!(
        s.read_file(common::NOW, "/etc/shadow").err(),
        Some(decnet_shell::fs::FsError::PermissionDenied)
    );
    assert!(s.list_dir(".").expect("listable").iter().any(|(n, _)| n == "up.bin"));
    assert!(
        String::from_utf8(s.read_file(common::NOW, "/proc/uptime").expect("proc"))
            .expect("text")
            .contains('.')
    );
    // The shell sees the upload.
    let out = s.feed(common::NOW, b"cat up.bin\r");
    assert!(
        out.iter()
            .any(|o| matches!(o, ShellOutput::Stdout(b) if b.windows(7).any(|w| w == b"payload")))
    );
}
