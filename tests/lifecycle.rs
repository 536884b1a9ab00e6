//! A decky's life on the LAN: it leaves at once when torn down, comes back
//! with its own MAC on a new address, is rebuilt when what survived an engine
//! does not match, and after a reboot is not re-created on an address that
//! something else has taken meanwhile.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Lab, can_run};

fn deckies(status: &Value) -> Vec<Value> {
    status["deckies"].as_array().unwrap().clone()
}

fn decky<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter().find(|d| d["name"] == name).unwrap()
}

fn pings(lab: &Lab, ip: &str) -> bool {
    lab.attack(&["ping", "-c", "1", "-W", "1", ip]).status.success()
}

fn accepts(lab: &Lab, ip: &str, port: u16) -> bool {
    lab.attack(&["nc", "-z", "-w", "2", ip, &port.to_string()])
        .status
        .success()
}

/// Runs `ip` with `args`; fails the test unless it succeeds.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_torn_down_decky_stops_answering_at_once() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "2", "--services", "ssh"]);
    let list = deckies(&lab.status());
    let (gone, stays) = (
        decky(&list, "decky-01")["ip"].as_str().unwrap().to_string(),
        decky(&list, "decky-02")["ip"].as_str().unwrap().to_string(),
    );
    // The attacker knows its MAC (as a scanner that just saw it would).
    assert!(pings(&lab, &gone));
    assert!(accepts(&lab, &gone, 22));
    lab.decnet_ok(&["teardown", "--id", "decky-01"]);
    assert!(!pings(&lab, &gone), "{gone} still answers after its teardown");
    assert!(!accepts(&lab, &gone, 22));
    assert!(pings(&lab, &stays));
}

#[test]
fn a_new_ip_start_moves_deckies_and_keeps_their_macs() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "2", "--services", "ssh"]);
    let before = deckies(&lab.status());
    let start = lab.host(40);
    let out = lab.decnet_ok(&["lab", "up", "-n", "2", "--services", "ssh", "--ip-start", &start]);
    assert!(out.contains("Deployed: 2 recreated"), "{out}");
    let after = deckies(&lab.status());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old["name"], new["name"]);
        assert_eq!(old["mac"], new["mac"], "a decky keeps its MAC");
        assert_ne!(old["ip"], new["ip"]);
        assert_eq!(new["state"], "running", "{new:#}");
        let ip = new["ip"].as_str().unwrap();
        assert!(pings(&lab, ip) && accepts(&lab, ip, 22), "{ip} does not serve");
        assert!(!pings(&lab, old["ip"].as_str().unwrap()));
    }
    assert_eq!(after[0]["ip"], start.as_str());
}

#[test]
fn survivors_that_do_not_match_are_rebuilt() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "3", "--services", "ssh"]);
    let status = lab.status();
    let list = deckies(&status);
    let ns = |name: &str| format!("{}-{name}", lab.prefix);
    lab.kill_engine(None);

    // decky-01 lost its default route.
    ip(&["-n", &ns("decky-01"), "route", "del", "default"]);
    // decky-02's eth0 is a veth now, with the right MAC, address and route.
    let d2 = decky(&list, "decky-02");
    let (mac, addr) = (d2["mac"].as_str().unwrap(), d2["ip"].as_str().unwrap());
    let prefix_len = lab.subnet.split('/').nth(1).unwrap();
    ip(&["-n", &ns("decky-02"), "link", "del", "eth0"]);
    let outside = format!("{}.vz", lab.prefix);
    ip(&[
        "link",
        "add",
        &outside,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &ns("decky-02"),
    ]);
    ip(&["-n", &ns("decky-02"), "link", "set", "eth0", "address", mac]);
    ip(&[
        "-n",
        &ns("decky-02"),
        "addr",
        "add",
        &format!("{addr}/{prefix_len}"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &ns("decky-02"), "link", "set", "eth0", "up"]);
    ip(&["-n", &ns("decky-02"), "route", "add", "default", "via", &lab.attacker]);
    // The host hairpin hangs off another NIC now (same name, same address).
    let hairpin = status["hairpin"]["name"].as_str().unwrap().to_string();
    let hairpin_ip = status["hairpin"]["ip"].as_str().unwrap().to_string();
    let (other, peer) = (format!("{}.vx", lab.prefix), format!("{}.vy", lab.prefix));
    ip(&["link", "add", &other, "type", "veth", "peer", "name", &peer]);
    ip(&["link", "del", &hairpin]);
    ip(&[
        "link", "add", &hairpin, "link", &other, "type", "macvlan", "mode", "bridge",
    ]);
    ip(&["addr", "add", &format!("{hairpin_ip}/32"), "dev", &hairpin]);

    // The engine that this starts recovers the fleet before the deploy
    // arrives: the deploy then finds it as it wants it.
    let out = lab.decnet_ok(&["lab", "up", "-n", "3", "--services", "ssh"]);
    assert!(out.contains("Deployed: 3 unchanged"), "{out}");
    let log = std::fs::read_to_string(lab.log_dir().join("engine.log")).unwrap_or_default();
    assert!(
        log.contains("Fleet restored.") && log.contains("adopted=1") && log.contains("recreated=2"),
        "{log}"
    );
    for name in ["decky-01", "decky-02"] {
        let link = ip(&["-d", "-n", &ns(name), "link", "show", "eth0"]);
        assert!(link.contains("macvlan mode bridge"), "{name}: {link}");
        let routes = ip(&["-n", &ns(name), "route", "show", "default"]);
        assert!(
            routes.contains(&format!("default via {} dev eth0", lab.attacker)),
            "{name}: {routes}"
        );
    }
    let link = ip(&["-d", "link", "show", &hairpin]);
    assert!(
        link.contains(&format!("{hairpin}@{}.lan", lab.prefix)) && link.contains("macvlan mode bridge"),
        "{link}"
    );
    for d in &list {
        let addr = d["ip"].as_str().unwrap();
        assert!(pings(&lab, addr) && accepts(&lab, addr, 22), "{addr} does not serve");
        let from_host = Command::new("nc").args(["-z", "-w", "2", addr, "22"]).status().unwrap();
        assert!(from_host.success(), "the host cannot reach {addr} through {hairpin}");
    }
}

#[test]
fn after_a_reboot_a_taken_address_is_not_deployed_again() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "3", "--services", "ssh"]);
    let list = deckies(&lab.status());
    lab.kill_engine(None);
    // The reboot: every decky namespace (with its link) and the hairpin are gone …
    for d in &list {
        let ns = format!("{}-{}", lab.prefix, d["name"].as_str().unwrap());
        ip(&["-n", &ns, "link", "del", "eth0"]);
        ip(&["netns", "del", &ns]);
    }
    let hairpin = format!("{}.hp", lab.prefix);
    ip(&["link", "del", &hairpin]);
    // … and meanwhile a host on the LAN took decky-02's address.
    let taken = decky(&list, "decky-02")["ip"].as_str().unwrap().to_string();
    let attacker_ns = format!("{}.attacker", lab.prefix);
    let prefix_len = lab.subnet.split('/').nth(1).unwrap();
    ip(&[
        "-n",
        &attacker_ns,
        "addr",
        "add",
        &format!("{taken}/{prefix_len}"),
        "dev",
        "eth0",
    ]);
    let impostor_mac = ip(&["-n", &attacker_ns, "-br", "link", "show", "eth0"])
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();

    let mut engine = lab.spawn_engine();
    let start = Instant::now();
    let status = loop {
        assert!(start.elapsed() < Duration::from_secs(20), "the engine did not recover");
        let out = lab.decnet(&["status", "--json"]);
        if out.status.success() {
            let status: Value = serde_json::from_slice(&out.stdout).unwrap();
            if status["running"] == true {
                break status;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let now = deckies(&status);
    for name in ["decky-01", "decky-03"] {
        let d = decky(&now, name);
        assert_eq!(d["state"], "running", "{d:#}");
        assert!(accepts(&lab, d["ip"].as_str().unwrap(), 22));
    }
    let d2 = decky(&now, "decky-02");
    assert_eq!(d2["state"], "failed", "{d2:#}");
    let reason = d2["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "address {taken} already in use on the LAN (answered by {impostor_mac})"
        )),
        "{reason}"
    );
    assert!(
        !lab.leftovers().contains(&format!("{}-decky-02", lab.prefix)),
        "{:?}",
        lab.leftovers()
    );
    lab.decnet_ok(&["lab", "down"]);
    assert!(engine.wait().unwrap().success());
}

#[test]
fn a_bridge_mode_sibling_holding_an_address_is_a_conflict() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "ssh"]);
    let before = lab.leftovers();
    // Another bridge-mode macvlan host on the same NIC (another instance's
    // decky, a VM …) holds the address.
    let taken = lab.host(77);
    let sibling_ns = format!("{}.sib", lab.prefix);
    let sibling_mac = "02:5e:00:00:00:77";
    let lan = format!("{}.lan", lab.prefix);
    let prefix_len = lab.subnet.split('/').nth(1).unwrap().to_string();
    ip(&["netns", "add", &sibling_ns]);
    ip(&[
        "link",
        "add",
        "sib0",
        "link",
        &lan,
        "address",
        sibling_mac,
        "netns",
        &sibling_ns,
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    ip(&[
        "-n",
        &sibling_ns,
        "addr",
        "add",
        &format!("{taken}/{prefix_len}"),
        "dev",
        "sib0",
    ]);
    ip(&["-n", &sibling_ns, "link", "set", "sib0", "up"]);
    let fleet = lab.write("fleet.ini", &format!("[victim]\nip = {taken}\nservices = ssh\n"));
    let out = lab.deploy_on_lan(&["-c", fleet.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", lab.explain(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains(&format!(
            "address already in use on the LAN: {taken} (answered by {sibling_mac})"
        )),
        "{said}"
    );
    let mut now = lab.leftovers();
    now.retain(|n| n != &sibling_ns);
    assert_eq!(now, before, "nothing may be created (the probe link is gone too)");
}
