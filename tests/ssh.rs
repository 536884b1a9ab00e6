//! SSH with Debian's OpenSSH client (and sshpass, and expect for a pty
//! session) against a Debian decky: the persona's account logs in, a wrong
//! password is refused like sshd refuses it, `exec` and a pty shell answer as
//! the distro would, and every step is an event (the client's HASSH, each
//! attempt with its credential, each command line, the recording).

use crate::support::{Lab, can_run, stdout};

const FLEET: &str = "\
[ssh-debian]
services = ssh
distro = debian

[ssh-debian.ssh]
users = root:toor
";

const SSH: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "LogLevel=ERROR",
];

#[test]
fn ssh_logins_exec_and_pty_shells() {
    if !can_run() {
        return;
    }
    let fleet = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(fleet.path(), FLEET).unwrap();
    let lab = Lab::up_ok(&["-c", fleet.path().to_str().unwrap()]);
    let status = lab.status();
    let decky = &status["deckies"][0];
    let ip = decky["ip"].as_str().unwrap();
    let hostname = decky["hostname"].as_str().unwrap();
    let target = format!("root@{ip}");

    // A wrong password: refused, as sshd refuses it.
    let mut wrong = vec!["sshpass", "-p", "hunter2", "ssh"];
    wrong.extend_from_slice(SSH);
    wrong.extend([target.as_str(), "id"]);
    let out = lab.attack(&wrong);
    // sshpass's "invalid password": ssh asked again (sshd's "Permission denied, please try again.").
    assert_eq!(out.status.code(), Some(5), "{}", lab.explain(&out));

    // The right one, with a command.
    let mut exec = vec!["sshpass", "-p", "toor", "ssh"];
    exec.extend_from_slice(SSH);
    exec.extend([target.as_str(), "uname -a; grep PRETTY /etc/os-release; exit 3"]);
    let out = lab.attack(&exec);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{}", lab.explain(&out));
    assert!(
        said.contains(&format!("Linux {hostname} 6.1.0-56-amd64 #1 SMP")),
        "{said}"
    );
    assert!(
        said.contains(r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)""#),
        "{said}"
    );

    // A pty shell, typed at.
    let script = format!(
        r#"set timeout 30
spawn ssh -tt {opts} {target}
expect "password: "
send "toor\r"
expect -re {{root@{hostname}:~# $}}
send "cd /tmp && echo hello > note.txt && cat note.txt\r"
expect -re {{hello.*# $}}
send "exit\r"
expect eof
"#,
        opts = SSH.join(" "),
    );
    let path = lab.write("pty.exp", &script);
    let out = lab.attack(&["expect", path.to_str().unwrap()]);
    let said = stdout(&out);
    assert!(out.status.success(), "{said}\n{}", lab.explain(&out));
    assert!(
        said.contains("Debian GNU/Linux comes with ABSOLUTELY NO WARRANTY"),
        "{said}"
    );

    // Events: the client's fingerprint, both attempts, the commands, the recording.
    let version = lab.wait_for_event(|e| e["kind"] == "version" && e["service"] == "ssh");
    assert!(
        version["fields"]["client"]
            .as_str()
            .unwrap()
            .starts_with("SSH-2.0-OpenSSH_9.2p1"),
        "{version}"
    );
    assert_eq!(version["fields"]["hassh"].as_str().unwrap().len(), 32, "{version}");
    let failed = lab.wait_for_event(|e| {
        e["kind"] == "auth_attempt" && e["service"] == "ssh" && e["credential"]["outcome"] == "failure"
    });
    assert_eq!(failed["credential"]["principal"], "root");
    assert_eq!(failed["credential"]["secret"], "aHVudGVyMg=="); // base64("hunter2")
    // OpenSSH tries keyboard-interactive before password; sshpass answers its prompt.
    assert_eq!(failed["fields"]["method"], "keyboard-interactive");
    assert_eq!(failed["src_ip"], lab.attacker.as_str());
    lab.wait_for_event(|e| {
        e["kind"] == "auth_attempt" && e["service"] == "ssh" && e["credential"]["outcome"] == "success"
    });
    let command = lab.wait_for_event(|e| {
        e["kind"] == "command" && e["fields"]["command"] == "uname -a; grep PRETTY /etc/os-release; exit 3"
    });
    assert_eq!(command["fields"]["cwd"], "/root");
    lab.wait_for_event(|e| {
        e["kind"] == "command" && e["fields"]["command"] == "cd /tmp && echo hello > note.txt && cat note.txt"
    });
    let recorded = lab.wait_for_event(|e| e["kind"] == "session_recorded" && e["service"] == "ssh");
    let cast = std::fs::read_to_string(recorded["fields"]["path"].as_str().unwrap()).unwrap();
    assert!(cast.contains("hello"), "{cast}");
}
