//! Every way a deploy can be refused, with the message an operator needs, and
//! nothing half-created left behind.

use std::process::Command;

use crate::support::{Lab, can_run, stderr};

#[test]
fn without_root_the_missing_capability_is_named() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_decnet"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(["deploy", "-n", "1", "--services", "ssh", "--subnet", "10.9.9.0/24"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("CAP_NET_ADMIN") && said.contains("sudo"), "{said}");
    assert!(!dir.path().join("state").exists(), "nothing may be created");
}

#[test]
fn an_unknown_interface_changes_nothing() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "ssh"]);
    let before = lab.leftovers();
    let out = lab.decnet(&[
        "deploy",
        "-n",
        "2",
        "--services",
        "ssh",
        "-i",
        "nosuchif0",
        "--subnet",
        "10.9.9.0/24",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", lab.explain(&out));
    assert!(
        stderr(&out).contains("interface `nosuchif0` does not exist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.leftovers(), before);
    assert_eq!(lab.status()["deckies"].as_array().unwrap().len(), 1);

    // Swarm mode is named, not silently deployed here.
    let out = lab.deploy_on_lan(&["-n", "2", "--services", "ssh", "--mode", "swarm"]);
    assert_eq!(out.status.code(), Some(2), "{}", lab.explain(&out));
    assert!(stderr(&out).contains("--mode swarm"), "{}", stderr(&out));
    assert_eq!(lab.leftovers(), before);
}

#[test]
fn a_subnet_that_does_not_match_the_interface_is_refused() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "ssh"]);
    let nic = format!("{}.vx", lab.prefix);
    let peer = format!("{}.vy", lab.prefix);
    let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
    ip(&["link", "add", &nic, "type", "veth", "peer", "name", &peer]);
    ip(&["addr", "add", "10.250.77.1/24", "dev", &nic]);
    let out = lab.decnet(&[
        "deploy",
        "-n",
        "1",
        "--services",
        "ssh",
        "-i",
        &nic,
        "--subnet",
        "10.251.0.0/24",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", lab.explain(&out));
    assert!(
        stderr(&out).contains("subnet 10.251.0.0/24 does not match interface")
            && stderr(&out).contains("10.250.77.1/24"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_address_someone_answers_for_is_never_taken() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "ssh"]);
    let before = lab.leftovers();
    // A "real host" on the LAN: a second address on the attacker's interface.
    let taken = lab.host(77);
    let attacker_ns = format!("{}.attacker", lab.prefix);
    let added = Command::new("ip")
        .args(["-n", &attacker_ns, "addr", "add", &format!("{taken}/24"), "dev", "eth0"])
        .status()
        .unwrap();
    assert!(added.success());
    let fleet = lab.write("fleet.ini", &format!("[victim]\nip = {taken}\nservices = ssh\n"));
    let out = lab.deploy_on_lan(&["-c", fleet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", lab.explain(&out));
    assert!(
        stderr(&out).contains(&format!("address already in use on the LAN: {taken} (answered by")),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.leftovers(), before, "nothing may be created");
    assert_eq!(
        lab.status()["deckies"][0]["name"],
        "decky-01",
        "the running fleet stays as it was"
    );
}

/// macvlan and ipvlan links cannot share a parent NIC: with a macvlan fleet
/// running, `--ipvlan` is refused and nothing changes. Without it, on a
/// kernel without ipvlan (like this machine's), `--ipvlan` is refused with a
/// clear message and nothing changes; on one with it, the deckies serve.
#[test]
fn ipvlan_works_or_is_refused_clearly() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "ssh"]);
    let before = lab.leftovers();
    let out = lab.deploy_on_lan(&["--ipvlan", "-n", "1", "--services", "ssh"]);
    assert_eq!(out.status.code(), Some(2), "{}", lab.explain(&out));
    assert!(
        stderr(&out).contains("use macvlan links, and ipvlan links cannot share a parent NIC with them")
            && stderr(&out).contains("decnet teardown --all"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.leftovers(), before);
    assert_eq!(lab.status()["deckies"][0]["state"], "running");

    lab.decnet_ok(&["teardown", "--all"]);
    let before = lab.leftovers();
    let out = lab.deploy_on_lan(&["--ipvlan", "-n", "1", "--services", "ssh"]);
    if out.status.success() {
        let status = lab.status();
        assert_eq!(status["deckies"][0]["state"], "running", "{status:#}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{}", lab.explain(&out));
    assert!(
        stderr(&out).contains("this kernel has no ipvlan support; use macvlan"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lab.leftovers(), before);
}

/// `lab up` checks its flags and fleet before it makes the lab: a bad one
/// leaves nothing behind.
#[test]
fn a_bad_lab_fleet_creates_nothing() {
    if !can_run() {
        return;
    }
    let lab = Lab::up(&["-n", "1", "--services", "nosuchservice"]);
    assert_eq!(lab.up.status.code(), Some(2), "{}", lab.explain(&lab.up));
    assert!(stderr(&lab.up).contains("nosuchservice"), "{}", stderr(&lab.up));
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    assert!(!lab.state_dir().join("lab.json").exists(), "no lab may be recorded");
}
