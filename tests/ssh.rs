//! SSH with Debian's OpenSSH client (and sshpass, and expect for a pty
//! session) against a Debian decky: the persona's account logs in, a wrong
//! password is refused like sshd refuses it, `exec` and a pty shell answer as
//! the distro would, and every step is an event (the client's HASSH, each
//! attempt with its credential, each command line, the recording). Files go
//! both ways with `scp` (SFTP and legacy `-O`) and `sftp`, and uploads are
//! quarantined.

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
    // Not a /24: the shell must show the LAN it is really on.
    let lab = Lab::up_ok(&["-c", fleet.path().to_str().unwrap(), "--lan-prefix", "22"]);
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

    // Its address, prefix and default route are the LAN's.
    let mut net = vec!["sshpass", "-p", "toor", "ssh"];
    net.extend_from_slice(SSH);
    net.extend([target.as_str(), "ip -4 addr show eth0; ip route"]);
    let out = lab.attack(&net);
    let said = stdout(&out);
    assert!(out.status.success(), "{}", lab.explain(&out));
    assert!(lab.subnet.ends_with("/22"), "{}", lab.subnet);
    assert!(said.contains(&format!("inet {ip}/22 ")), "{said}");
    assert!(
        said.contains(&format!("default via {} dev eth0", lab.attacker)),
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
    // The whole KEXINIT too; HASSH's string is its kex;enc;mac;comp (client to server).
    let kexinit = &version["fields"]["kexinit"];
    let list = |k: &str| {
        let names: Vec<&str> = kexinit[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        names.join(",")
    };
    let hassh_string = ["kex", "enc_c2s", "mac_c2s", "comp_c2s"].map(list).join(";");
    assert_eq!(version["fields"]["hassh_string"], hassh_string.as_str(), "{version}");
    assert!(list("host_key").contains("ssh-ed25519"), "{version}");
    let failed = lab.wait_for_event(|e| {
        e["kind"] == "auth_attempt" && e["service"] == "ssh" && e["credential"]["outcome"] == "failure"
    });
    assert_eq!(failed["credential"]["principal"], "root");
    assert_eq!(failed["credential"]["secret"], "aHVudGVyMg=="); // base64("hunter2")
    // Like Debian's sshd, the decky offers password (not keyboard-interactive).
    assert_eq!(failed["fields"]["method"], "password");
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

/// A file's SHA-256 as `sha256sum` prints it.
fn sha256sum(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

#[test]
fn ssh_sftp_and_scp_both_ways() {
    if !can_run() {
        return;
    }
    // One filesystem for every login: what scp uploads, the next login finds.
    let fleet = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        fleet.path(),
        FLEET.replace("users = root:toor", "users = root:toor,admin:admin123") + "overlay = decky\n",
    )
    .unwrap();
    let lab = Lab::up_ok(&["-c", fleet.path().to_str().unwrap()]);
    let status = lab.status();
    let decky = &status["deckies"][0];
    let ip = decky["ip"].as_str().unwrap();
    let hostname = decky["hostname"].as_str().unwrap();

    // 200 kB of varied bytes: several SFTP WRITE and READ requests each way.
    let mut x: u32 = 0x1234_5678;
    let payload: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    let local = lab.path("local.bin");
    std::fs::write(&local, &payload).unwrap();
    let back = lab.path("back.bin");

    // OpenSSH 9.2's scp speaks SFTP: up, then down again, byte for byte.
    let scp = |flags: &[&str], from: &str, to: &str| {
        let mut cmd = vec!["sshpass", "-p", "toor", "scp"];
        cmd.extend_from_slice(SSH);
        cmd.extend_from_slice(flags);
        cmd.extend([from, to]);
        let out = lab.attack(&cmd);
        assert!(out.status.success(), "scp {from} {to}: {}", lab.explain(&out));
    };
    scp(&[], local.to_str().unwrap(), &format!("root@{ip}:/tmp/up.bin"));
    scp(&[], &format!("root@{ip}:/tmp/up.bin"), back.to_str().unwrap());
    assert!(
        std::fs::read(&back).unwrap() == payload,
        "scp round trip changed the bytes"
    );
    // The legacy scp protocol (`exec scp -t` / `scp -f`), with times kept on the way back.
    let back_legacy = lab.path("back-legacy.bin");
    scp(&["-O"], local.to_str().unwrap(), &format!("root@{ip}:/tmp/"));
    scp(
        &["-O", "-p"],
        &format!("root@{ip}:/tmp/local.bin"),
        back_legacy.to_str().unwrap(),
    );
    assert!(
        std::fs::read(&back_legacy).unwrap() == payload,
        "scp -O round trip changed the bytes"
    );
    // A directory tree, up and down again with the legacy protocol's -r.
    let tree = lab.path("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tree.join("sub/b.bin"), &payload[..5000]).unwrap();
    scp(&["-O", "-r"], tree.to_str().unwrap(), &format!("root@{ip}:/tmp/"));
    let tree_back = lab.path("tree-back");
    scp(
        &["-O", "-r"],
        &format!("root@{ip}:/tmp/tree"),
        tree_back.to_str().unwrap(),
    );
    assert_eq!(std::fs::read_to_string(tree_back.join("a.txt")).unwrap(), "alpha\n");
    assert!(std::fs::read(tree_back.join("sub/b.bin")).unwrap() == payload[..5000]);

    // sftp in batch mode: list, download, upload, make and remove; and
    // what needs OpenSSH's extensions (a batch stops at a failed command):
    // `df` (statvfs@openssh.com), `ln -s` (SYMLINK).
    let got = lab.path("hostname.got");
    let batch = lab.write(
        "batch",
        &format!(
            "ls -l /etc\nget /etc/hostname {got}\nput {local} /tmp/put.bin\nmkdir /tmp/newdir\nls -l /tmp\nrm /tmp/up.bin\nrmdir /tmp/newdir\ndf -h /\nln -s /etc/passwd /tmp/pw\nls /tmp\n",
            got = got.display(),
            local = local.display(),
        ),
    );
    let mut sftp = vec!["sshpass", "-p", "toor", "sftp"];
    sftp.extend_from_slice(SSH);
    let target = format!("root@{ip}");
    // `-b` turns on BatchMode (no password prompt) unless an earlier `-o` says otherwise.
    sftp.extend(["-o", "BatchMode=no", "-b", batch.to_str().unwrap(), target.as_str()]);
    let out = lab.attack(&sftp);
    let said = stdout(&out);
    assert!(out.status.success(), "{said}\n{}", lab.explain(&out));
    assert_eq!(std::fs::read_to_string(&got).unwrap(), format!("{hostname}\n"));
    // 9.2's users-groups-by-id@openssh.com lets the client format `ls -l`
    // itself, as it does against Debian's sftp-server 9.2: `?` links, the
    // names the server gave, full paths.
    let passwd = said
        .lines()
        .find(|l| l.ends_with(" /etc/passwd"))
        .unwrap_or_else(|| panic!("no passwd in {said}"));
    assert!(passwd.starts_with("-rw-r--r--    ? root     root "), "{passwd}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("drwxr-xr-x    ? root     root ") && l.ends_with(" /tmp/newdir")),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("-rw-r--r--    ? root     root       200000 ") && l.ends_with(" /tmp/put.bin")),
        "{said}"
    );
    // After `rm` and `rmdir` the last listing has only put.bin of ours.
    let last = said.rsplit("sftp> ls /tmp").next().unwrap();
    assert!(last.contains("put.bin") && last.contains("pw"), "{said}");
    let df = said.split("sftp> df -h /").nth(1).unwrap();
    assert!(df.contains("Size") && df.contains("%Capacity"), "{said}");
    assert!(!last.contains("up.bin") && !last.contains("newdir"), "{said}");

    // An ordinary account gets the permissions it would: no writing in
    // /etc, no reading /etc/shadow (`-` lets the batch go on after an error).
    let denied = lab.write(
        "denied",
        &format!(
            "-put {local} /etc/evil.bin\n-get /etc/shadow {shadow}\nput {local} /tmp/admin.bin\n",
            local = local.display(),
            shadow = lab.path("shadow.got").display(),
        ),
    );
    let mut sftp = vec!["sshpass", "-p", "admin123", "sftp"];
    sftp.extend_from_slice(SSH);
    let admin = format!("admin@{ip}");
    sftp.extend(["-o", "BatchMode=no", "-b", denied.to_str().unwrap(), admin.as_str()]);
    let out = lab.attack(&sftp);
    let err = crate::support::stderr(&out);
    assert!(out.status.success(), "{}", lab.explain(&out));
    assert!(err.contains(r#"dest open "/etc/evil.bin": Permission denied"#), "{err}");
    assert!(err.contains(r#"open "/etc/shadow": Permission denied"#), "{err}");
    assert!(!lab.path("shadow.got").exists());

    // Each upload is quarantined under its SHA-256, with the same bytes.
    let sha256 = sha256sum(&local);
    for path in ["/tmp/up.bin", "/tmp/local.bin", "/tmp/put.bin", "/tmp/admin.bin"] {
        let captured = lab
            .wait_for_event(|e| e["kind"] == "file_captured" && e["service"] == "ssh" && e["fields"]["path"] == path);
        assert_eq!(captured["fields"]["sha256"], sha256.as_str(), "{captured}");
    }
    let stored = lab.state_dir().join("artifacts").join(&sha256);
    assert!(std::fs::read(&stored).unwrap() == payload);

    // The subsystem and each file operation are events.
    lab.wait_for_event(|e| e["kind"] == "request" && e["fields"]["subsystem"] == "sftp");
    lab.wait_for_event(|e| e["kind"] == "command" && e["fields"]["command"] == "scp -t /tmp/");
    let read = lab.wait_for_event(|e| {
        e["kind"] == "request" && e["fields"]["op"] == "read" && e["fields"]["path"] == "/etc/hostname"
    });
    assert_eq!(read["fields"]["size"], hostname.len() + 1);
    lab.wait_for_event(|e| {
        e["kind"] == "request" && e["fields"]["op"] == "mkdir" && e["fields"]["path"] == "/tmp/newdir"
    });
    lab.wait_for_event(|e| {
        e["kind"] == "request" && e["fields"]["op"] == "remove" && e["fields"]["path"] == "/tmp/up.bin"
    });
}

/// A decky's host keys derive from its seed (the RSA key is also cached):
/// after the engine is killed and started again, `ssh-keyscan` sees the
/// same keys, as a client's known_hosts expects of the same host.
#[test]
fn ssh_host_keys_survive_an_engine_restart() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "ssh"]);
    let ip = lab.status()["deckies"][0]["ip"].as_str().unwrap().to_string();
    let scan = || -> Vec<String> {
        let out = lab.attack(&["ssh-keyscan", "-T", "120", "-t", "ed25519,ecdsa,rsa", &ip]);
        let mut keys: Vec<String> = stdout(&out)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(String::from)
            .collect();
        keys.sort();
        keys
    };
    let before = scan();
    assert_eq!(before.len(), 3, "{before:?}");

    lab.kill_engine(None);
    let mut engine = lab.spawn_engine();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let after = loop {
        let keys = scan();
        if !keys.is_empty() || std::time::Instant::now() > deadline {
            break keys;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(before, after, "the host keys changed across a restart");
    lab.decnet_ok(&["lab", "down"]);
    assert!(engine.wait().unwrap().success());
}

/// nmap's version scan reads the decky as the OpenSSH build it claims, as
/// it reads Debian's real sshd (`OpenSSH 9.2p1 Debian 2+deb12u10 (protocol
/// 2.0)`, with the Linux OS hint).
#[test]
fn nmap_version_scan_names_the_openssh_build() {
    if !can_run() {
        return;
    }
    let fleet = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(fleet.path(), FLEET).unwrap();
    let lab = Lab::up_ok(&["-c", fleet.path().to_str().unwrap()]);
    let ip = lab.status()["deckies"][0]["ip"].as_str().unwrap().to_string();
    let out = lab.attack(&["nmap", "-n", "-Pn", "-sV", "-p", "22", &ip]);
    let said = stdout(&out);
    assert!(
        said.contains("22/tcp open  ssh     OpenSSH 9.2p1 Debian 2+deb12u10 (protocol 2.0)"),
        "{said}"
    );
    assert!(said.contains("Service Info: OS: Linux"), "{said}");
}

/// A moduli file the persona names must be there: a missing one fails the
/// port with the reason in `status`, rather than falling back in silence as
/// for sshd's default file.
#[test]
fn a_named_moduli_file_that_is_missing_fails_the_port() {
    if !can_run() {
        return;
    }
    let fleet = "[box]\nservices = ssh\ndistro = debian\nnmap_os = linux\n\n\
                 [box.ssh]\nmoduli = /nonexistent/moduli\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), fleet).unwrap();
    let lab = Lab::up_ok(&["-c", file.path().to_str().unwrap()]);
    let status = lab.status();
    let port = &status["deckies"][0]["services"][0]["ports"][0];
    assert_eq!(port["state"], "failed", "{status:#}");
    let reason = port["reason"].as_str().unwrap();
    assert!(
        reason.contains("moduli = /nonexistent/moduli") && reason.contains("No such file"),
        "{reason}"
    );
}
