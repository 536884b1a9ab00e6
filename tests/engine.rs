//! The engine on a lab LAN: deckies answer as their OS family with their own
//! MACs, serve their ports, log what attackers do, survive `kill -9`, converge
//! on redeploy, and leave nothing behind.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Lab, can_run, stdout};

fn deckies(status: &Value) -> &Vec<Value> {
    status["deckies"].as_array().unwrap()
}

/// Whether `ip:port` accepts a TCP connection from the attacker.
fn accepts(lab: &Lab, ip: &str, port: u16) -> bool {
    lab.attack(&["nc", "-z", "-w", "2", ip, &port.to_string()])
        .status
        .success()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

#[test]
fn lab_deckies_answer_as_their_os_family_with_their_own_macs() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&[]);
    let status = lab.status();
    assert_eq!(status["running"], true);
    let list = deckies(&status);
    assert_eq!(list.len(), 5, "{status:#}");
    for d in list {
        assert_eq!(d["state"], "running", "{d:#}");
        for s in d["services"].as_array().unwrap() {
            for p in s["ports"].as_array().unwrap() {
                assert_eq!(p["state"], "listening", "{d:#}");
            }
        }
    }

    let fleet: Value = serde_json::from_slice(&std::fs::read(lab.state_dir().join("fleet.json")).unwrap()).unwrap();
    for d in list {
        let ip = d["ip"].as_str().unwrap();
        let out = lab.attack(&["ping", "-c", "1", "-W", "2", ip]);
        assert!(out.status.success(), "ping {ip}: {}", lab.explain(&out));
        // The TTL its OS personality's sysctls name (an OpenWrt box says 64, Windows 128).
        let ttl = fleet["deckies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == d["name"])
            .map(|f| f["sysctls"]["net.ipv4.ip_default_ttl"].as_str().unwrap().to_string())
            .unwrap();
        assert!(
            stdout(&out).contains(&format!("ttl={ttl} ")),
            "{ip} ({}): {}",
            d["personality"],
            stdout(&out)
        );
    }

    // No decky speaks IPv6: no address at all, not even a link-local one.
    for d in list {
        let ns = format!("{}-{}", lab.prefix, d["name"].as_str().unwrap());
        let out = Command::new("ip")
            .args(["-n", &ns, "-6", "addr", "show"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(stdout(&out).trim(), "", "{ns} has IPv6 addresses");
    }

    // The attacker's neighbour table shows each decky's own (planned) MAC.
    let neigh = stdout(&lab.attack(&["ip", "neigh", "show"]));
    let mut macs = BTreeSet::new();
    for d in list {
        let line = neigh
            .lines()
            .find(|l| l.starts_with(&format!("{} ", d["ip"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("{} not in the neighbour table:\n{neigh}", d["ip"]));
        assert!(line.contains(d["mac"].as_str().unwrap()), "{line} vs {}", d["mac"]);
        macs.insert(d["mac"].as_str().unwrap().to_string());
    }
    assert_eq!(macs.len(), 5);

    // A TCP service accepts, and the connection is an event from the attacker.
    let db = list.iter().find(|d| d["name"] == "db01").unwrap();
    let db_ip = db["ip"].as_str().unwrap();
    assert!(accepts(&lab, db_ip, 3306));
    let connect = lab.wait_for_event(|e| e["decky"] == "db01" && e["service"] == "mysql" && e["kind"] == "connect");
    assert_eq!(connect["src_ip"], lab.attacker.as_str());
    lab.wait_for_event(|e| e["decky"] == "db01" && e["kind"] == "disconnect");

    // The host itself reaches its deckies through the hairpin.
    let hairpin = status["hairpin"]["name"].as_str().unwrap().to_string();
    assert!(lab.leftovers().contains(&hairpin));
    let from_host = Command::new("nc")
        .args(["-z", "-w", "2", db_ip, "5432"])
        .status()
        .unwrap();
    assert!(from_host.success(), "the host cannot reach {db_ip} through {hairpin}");

    // Status counts it.
    let status = lab.status();
    let db = deckies(&status).iter().find(|d| d["name"] == "db01").unwrap();
    let connections: u64 = db["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["connections"].as_u64().unwrap())
        .sum();
    assert!(connections >= 2, "{db:#}");
}

#[test]
fn teardown_removes_what_it_made_and_is_idempotent() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "2", "--services", "ssh"]);
    assert_eq!(lab.leftovers().iter().filter(|n| n.contains("-decky-")).count(), 2);
    assert!(
        lab.decnet_ok(&["teardown", "--id", "decky-01"])
            .contains("Removed: decky-01")
    );
    let left = lab.leftovers();
    assert!(!left.iter().any(|n| n.ends_with("-decky-01")), "{left:?}");
    assert!(left.iter().any(|n| n.ends_with("-decky-02")), "{left:?}");
    assert!(lab.decnet_ok(&["teardown", "--all"]).contains("Removed: decky-02"));
    let left = lab.leftovers();
    assert!(
        !left.iter().any(|n| n.contains("-decky-") || n.ends_with(".hp")),
        "{left:?}"
    );
    assert!(lab.decnet_ok(&["teardown", "--all"]).contains("Nothing to remove."));
    assert!(
        lab.decnet_ok(&["teardown", "--id", "decky-01"])
            .contains("Nothing to remove.")
    );
    assert!(lab.decnet_ok(&["lab", "down"]).contains("Lab down"));
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

#[test]
fn kill_9_then_deploy_or_engine_run_serves_again() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "3", "--services", "ssh,http"]);
    let ips: Vec<String> = deckies(&lab.status())
        .iter()
        .map(|d| d["ip"].as_str().unwrap().to_string())
        .collect();
    let before = lab.leftovers();
    lab.kill_engine(None);
    assert!(
        !accepts(&lab, &ips[0], 22),
        "nothing should serve while the engine is dead"
    );
    let status = lab.status();
    assert_eq!(status["running"], false);
    assert!(deckies(&status).iter().all(|d| d["state"] == "stopped"), "{status:#}");
    // A new deploy starts an engine that adopts the three deckies.
    let out = lab.decnet_ok(&["lab", "up", "-n", "3", "--services", "ssh,http"]);
    assert!(out.contains("Deployed: 3 unchanged"), "{out}");
    for ip in &ips {
        assert!(
            accepts(&lab, ip, 22) && accepts(&lab, ip, 80),
            "{ip} does not serve after recovery"
        );
    }
    assert_eq!(lab.leftovers(), before, "recovery duplicated or lost links");

    // Again, this time with `engine run` started by hand (as systemd would).
    lab.kill_engine(None);
    let mut engine = lab.spawn_engine();
    let took = wait_until("every decky to serve again", Duration::from_secs(10), || {
        ips.iter().all(|ip| accepts(&lab, ip, 80))
    });
    eprintln!("recovered in {took:?}");
    // Status answers once the engine has converged.
    assert!(deckies(&lab.status()).iter().all(|d| d["state"] == "running"));
    assert_eq!(lab.leftovers(), before);
    lab.decnet_ok(&["lab", "down"]);
    assert!(
        engine.wait().unwrap().success(),
        "the engine must exit cleanly on shutdown"
    );
}

#[test]
fn redeploys_are_idempotent_and_converge() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "3", "--services", "ssh"]);
    let out = lab.decnet_ok(&["lab", "up", "-n", "3", "--services", "ssh"]);
    assert!(out.contains("Deployed: 3 unchanged"), "{out}");
    let out = lab.decnet_ok(&["lab", "up", "-n", "2", "--services", "ssh,http"]);
    assert!(out.contains("2 re-bound, 1 removed"), "{out}");
    let status = lab.status();
    let list = deckies(&status);
    assert_eq!(list.len(), 2);
    for d in list {
        let slugs: Vec<&str> = d["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, ["ssh", "http"]);
        assert!(accepts(&lab, d["ip"].as_str().unwrap(), 80));
    }
    assert!(!lab.leftovers().iter().any(|n| n.ends_with("-decky-03")));
}

#[test]
fn the_engine_removes_stray_namespaces_at_start() {
    if !can_run() {
        return;
    }
    let lab = Lab::up_ok(&["-n", "1", "--services", "ssh"]);
    let ghost = format!("{}-ghost", lab.prefix);
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ghost])
            .status()
            .unwrap()
            .success()
    );
    let pid = lab.engine_pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    lab.decnet_ok(&["lab", "up", "-n", "1", "--services", "ssh"]);
    assert!(!lab.leftovers().contains(&ghost), "{:?}", lab.leftovers());
}
