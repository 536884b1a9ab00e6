//! Telnet with Debian's telnet client, driven by expect, against two deckies:
//! a Debian server imitating inetutils telnetd + login, and an IoT box
//! imitating BusyBox. Failed and successful logins are captured with their
//! credentials; the shell after login answers like the decky's distro, and
//! its command lines are logged.

use crate::support::{Lab, can_run, stdout};

const FLEET: &str = "\
[tel-debian]
services = telnet
distro = debian

[tel-debian.telnet]
users = root:toor,admin:admin123

[tel-iot]
services = telnet
distro = alpine

[tel-iot.telnet]
daemon = busybox
users = admin:admin
";

/// A lab with [`FLEET`], and the status of its decky `name`.
fn lab_with(name: &str) -> (Lab, serde_json::Value) {
    let fleet = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(fleet.path(), FLEET).unwrap();
    let lab = Lab::up_ok(&["-c", fleet.path().to_str().unwrap()]);
    let status = lab.status();
    let decky = status["deckies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .clone();
    (lab, decky)
}

fn run_expect(lab: &Lab, name: &str, script: &str) -> String {
    let path = lab.write(name, script);
    let out = lab.attack(&["expect", path.to_str().unwrap()]);
    let said = stdout(&out);
    assert!(out.status.success(), "expect failed:\n{said}\n{}", lab.explain(&out));
    said
}

#[test]
fn telnet_logins_are_captured_and_the_shell_answers() {
    if !can_run() {
        return;
    }
    let (lab, debian) = lab_with("tel-debian");
    let ip = debian["ip"].as_str().unwrap();
    let hostname = debian["hostname"].as_str().unwrap();

    // inetutils + util-linux login: a wrong password, then the right one.
    let said = run_expect(
        &lab,
        "debian.exp",
        &format!(
            r#"set timeout 20
spawn telnet {ip}
expect "{hostname} login: "
send "root\r"
expect "Password: "
send "hunter2\r"
expect "Login incorrect"
expect "{hostname} login: "
send "root\r"
expect "Password: "
send "toor\r"
expect -re {{root@{hostname}:~# $}}
send "uname -a; grep PRETTY /etc/os-release; id\r"
expect -re {{uid=0.*# $}}
send "echo IyEvYmluL3NoCmVjaG8gcHduZWQK | base64 -d > /tmp/.x.sh; sh /tmp/.x.sh\r"
expect -re {{pwned.*# $}}
send "exit\r"
expect eof
"#
        ),
    );
    // The banner inetutils prints, with the distro's kernel.
    assert!(
        said.contains(&format!("Linux 6.1.0-56-amd64 ({hostname}) (pts/")),
        "{said}"
    );
    assert!(
        said.contains(&format!("Linux {hostname} 6.1.0-56-amd64 #1 SMP")),
        "{said}"
    );
    assert!(
        said.contains(r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)""#),
        "{said}"
    );
    // Debian's message of the day, after the login.
    assert!(
        said.contains("Debian GNU/Linux comes with ABSOLUTELY NO WARRANTY"),
        "{said}"
    );
    assert!(said.contains("uid=0(root) gid=0(root) groups=0(root)"), "{said}");
    // The password was not echoed.
    assert!(!said.contains("hunter2"), "{said}");

    let failed = lab.wait_for_event(|e| {
        e["kind"] == "auth_attempt" && e["service"] == "telnet" && e["credential"]["outcome"] == "failure"
    });
    assert_eq!(failed["decky"], "tel-debian");
    assert_eq!(failed["credential"]["principal"], "root");
    assert_eq!(failed["credential"]["secret"], "aHVudGVyMg=="); // base64("hunter2")
    assert_eq!(failed["src_ip"], lab.attacker.as_str());
    let ok = lab.wait_for_event(|e| {
        e["kind"] == "auth_attempt" && e["service"] == "telnet" && e["credential"]["outcome"] == "success"
    });
    assert_eq!(ok["fields"]["ttype"], "xterm");
    let command = lab.wait_for_event(|e| e["kind"] == "command" && e["service"] == "telnet");
    assert_eq!(
        command["fields"]["command"],
        "uname -a; grep PRETTY /etc/os-release; id"
    );
    assert_eq!(command["fields"]["cwd"], "/root");
    assert_eq!(command["session"], ok["session"]);

    // The dropped script is quarantined under its SHA-256.
    let sha256 = "cebf25e0668376ce72d60cc05894de697b174396e5036fdb525363c351bf1f9b";
    let captured = lab.wait_for_event(|e| e["kind"] == "file_captured" && e["service"] == "telnet");
    assert_eq!(captured["fields"]["path"], "/tmp/.x.sh");
    assert_eq!(captured["fields"]["sha256"], sha256);
    let stored = lab.state_dir().join("artifacts").join(sha256);
    assert_eq!(captured["fields"]["quarantine"], stored.display().to_string());
    assert_eq!(std::fs::read(&stored).unwrap(), b"#!/bin/sh\necho pwned\n");

    // The session was recorded as an asciinema v2 cast.
    let recorded = lab.wait_for_event(|e| e["kind"] == "session_recorded" && e["service"] == "telnet");
    assert_eq!(recorded["session"], ok["session"]);
    let cast = std::fs::read_to_string(recorded["fields"]["path"].as_str().unwrap()).unwrap();
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(cast.contains("uid=0(root)"), "{cast}");
    assert_eq!(recorded["fields"]["truncated"], false);
}

#[test]
fn busybox_telnetd_gives_up_after_three_tries() {
    if !can_run() {
        return;
    }
    let (lab, iot) = lab_with("tel-iot");
    let ip = iot["ip"].as_str().unwrap();
    let hostname = iot["hostname"].as_str().unwrap();
    let said = run_expect(
        &lab,
        "busybox.exp",
        &format!(
            r#"set timeout 20
spawn telnet {ip}
for {{set i 0}} {{$i < 3}} {{incr i}} {{
    expect "{hostname} login: "
    send "admin\r"
    expect "Password: "
    send "admin$i$i\r"
    expect "Login incorrect"
}}
expect "Connection closed by foreign host."
expect eof
"#
        ),
    );
    // BusyBox prints the distro's /etc/issue with its escapes expanded.
    assert!(said.contains("Welcome to Alpine Linux"), "{said}");
    assert_eq!(said.matches("Login incorrect").count(), 3, "{said}");
    let attempts: Vec<_> = lab
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "auth_attempt" && e["decky"] == "tel-iot")
        .collect();
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
}
