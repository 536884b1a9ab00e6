//! The `decnet` binary as an operator runs it: catalogue listings, dry-run plans
//! of real fleet files, error messages and exit codes.

#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a failure is the test failing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// `decnet` with private, empty state, run and log directories and its own
/// instance prefix (so nothing here can touch a real installation), run from a
/// clean directory (so no stray `.env` is picked up).
fn decnet(state: &tempfile::TempDir) -> Command {
    let mut cmd = Command::cargo_bin("decnet").expect("binary built");
    cmd.current_dir(state.path())
        .env("DECNET_STATE_DIR", state.path().join("state"))
        .env("DECNET_RUN_DIR", state.path().join("run"))
        .env("DECNET_LOG_DIR", state.path().join("log"))
        .env("DECNET_PREFIX", "clitest")
        .env_remove("DECNET_PERSONAS")
        .env_remove("DECNET_SEED");
    cmd
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn dry_run_json(args: &[&str]) -> Value {
    let dir = tmp();
    let out = decnet(&dir)
        .args(["deploy", "--dry-run", "--json", "--seed", "test"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "decnet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON plan")
}

fn decky<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["deckies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no decky {name}"))
}

#[test]
fn services_lists_all_28_with_ports() {
    let dir = tmp();
    decnet(&dir)
        .arg("services")
        .assert()
        .success()
        .stdout(predicate::str::contains("snmp           161/udp"))
        .stdout(predicate::str::contains("https          443/tls"));
    let out = decnet(&dir).args(["services", "--json"]).output().unwrap();
    let services: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(services.len(), 28);
    let slugs: Vec<&str> = services.iter().map(|s| s["slug"].as_str().unwrap()).collect();
    for required in [
        "ssh",
        "https",
        "smtp_relay",
        "dns",
        "conpot",
        "docker_api",
        "llmnr",
        "tftp",
    ] {
        assert!(slugs.contains(&required), "{required} missing");
    }
    let sip = services.iter().find(|s| s["slug"] == "sip").unwrap();
    assert_eq!(
        sip["ports"],
        serde_json::json!(["5060/udp", "5060/tcp", "5061/tcp+tls"])
    );
    let ssh = services.iter().find(|s| s["slug"] == "ssh").unwrap();
    assert_eq!(ssh["keys"]["users"]["type"]["type"], "credentials");
}

#[test]
fn distros_and_archetypes_list_the_catalogue() {
    let dir = tmp();
    decnet(&dir)
        .arg("distros")
        .assert()
        .success()
        .stdout(predicate::str::contains("Ubuntu 22.04 LTS (Jammy)"));
    let out = decnet(&dir).args(["distros", "--json"]).output().unwrap();
    let distros: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(distros.len(), 9);
    assert!(
        distros
            .iter()
            .all(|d| d["os_release"].as_str().unwrap().contains("ID="))
    );
    let out = decnet(&dir).args(["archetypes", "--json"]).output().unwrap();
    let archetypes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(archetypes.len(), 15);
    let dc = archetypes.iter().find(|a| a["slug"] == "domain-controller").unwrap();
    assert_eq!(dc["os_family"], "windows_server");
    decnet(&dir)
        .arg("archetypes")
        .assert()
        .success()
        .stdout(predicate::str::contains("deaddeck"))
        .stdout(predicate::str::contains(
            "OS families: bsd, cisco, embedded, linux, windows, windows_server",
        ));
}

#[test]
fn seed_readme_examples_load_unchanged() {
    let plan = dry_run_json(&["-c", fixture("seed_readme_structure.ini").to_str().unwrap()]);
    assert_eq!(plan["deckies"].as_array().unwrap().len(), 11);
    assert_eq!(plan["log_target"]["port"], 5140);
    let d1 = decky(&plan, "decky-01");
    assert_eq!(d1["ip"], "192.168.1.110");
    assert_eq!(
        d1["services"][0]["persona"]["ssh_version"],
        "OpenSSH_8.9p1 Ubuntu-3ubuntu0.6"
    );
    assert_eq!(d1["services"][1]["persona"]["server_header"], "nginx/1.18.0");
    assert_eq!(decky(&plan, "corp-workstations-10")["os_family"], "windows");

    let plan = dry_run_json(&["-c", fixture("seed_readme_archetypes.ini").to_str().unwrap()]);
    assert_eq!(decky(&plan, "win-fileserver")["os_family"], "windows");
    assert_eq!(
        decky(&plan, "dbsrv01")["services"][0]["persona"]["mysql_banner"],
        "MySQL Community Server"
    );
    assert!(
        plan["warnings"][0]
            .as_str()
            .unwrap()
            .contains("[win-fileserver] os_version: unknown key, ignored")
    );

    let plan = dry_run_json(&["-c", fixture("seed_readme_fragments.ini").to_str().unwrap()]);
    assert_eq!(
        decky(&plan, "decky-winbox")["services"][1]["persona"]["server_name"],
        "WINSRV-DC01"
    );
    assert_eq!(decky(&plan, "decky-iot")["os_family"], "embedded");
    assert_eq!(decky(&plan, "decky-legacy")["os_family"], "bsd");
}

#[test]
fn original_style_full_fleet_loads() {
    let plan = dry_run_json(&["-c", fixture("original_style.ini").to_str().unwrap()]);
    assert_eq!(plan["interface"], "wlp6s0");
    assert_eq!(plan["deckies"].as_array().unwrap().len(), 19);
    let iot = decky(&plan, "decky-iot");
    let slugs: Vec<&str> = iot["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["mqtt", "snmp", "conpot"]);
    assert_eq!(
        decky(&plan, "decky-webmail")["services"][1]["persona"]["smtp_mta"],
        "mail.corp.local"
    );
}

#[test]
fn os_family_groups_take_the_subnet_from_the_flag() {
    let plan = dry_run_json(&[
        "-c",
        fixture("os_families.ini").to_str().unwrap(),
        "--subnet",
        "10.9.0.0/24",
    ]);
    let families: Vec<&str> = plan["deckies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["os_family"].as_str().unwrap())
        .collect();
    assert_eq!(
        families,
        [
            "linux", "linux", "windows", "windows", "bsd", "bsd", "embedded", "embedded", "cisco", "cisco"
        ]
    );
    assert_eq!(plan["gateway"], "10.9.0.1");
    assert_eq!(plan["deckies"][0]["ip"], "10.9.0.2");
}

#[test]
fn golden_full_example_plan() {
    // `-i gold0` names an interface no host has, so nothing about this machine
    // (its addresses, its routes) can leak into the plan.
    let plan = dry_run_json(&[
        "-c",
        repo().join("config/examples/full.ini").to_str().unwrap(),
        "-i",
        "gold0",
    ]);
    insta::assert_json_snapshot!("full_example_plan", plan);
}

#[test]
fn lab_example_plans() {
    let plan = dry_run_json(&["-c", repo().join("config/examples/lab.ini").to_str().unwrap()]);
    let archetypes: Vec<&str> = plan["deckies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["archetype"].as_str().unwrap())
        .collect();
    assert_eq!(
        archetypes,
        [
            "linux-server",
            "windows-workstation",
            "database-server",
            "printer",
            "iot-device"
        ]
    );
}

#[test]
fn plan_table_shows_every_decky_and_persona() {
    let dir = tmp();
    decnet(&dir)
        .args([
            "deploy",
            "-n",
            "3",
            "--archetype",
            "linux-server",
            "--subnet",
            "10.5.0.0/24",
            "--dry-run",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Fleet: 3 deckies on 10.5.0.0/24 (gateway 10.5.0.1",
        ))
        .stdout(predicate::str::contains("Seed: none yet"))
        .stdout(predicate::str::contains("decky-03  10.5.0.4"))
        .stdout(predicate::str::contains("ssh(22) http(80,443/tls)"))
        .stdout(predicate::str::is_match(r"decky-01\s+ssh\s+hostname=").unwrap());
}

#[test]
fn bad_input_exits_2_with_a_located_message() {
    let dir = tmp();
    let ini = dir.path().join("fleet.ini");
    std::fs::write(&ini, "[general]\nnet = 10.0.0.0/24\n\n[web]\nservices = ssh, htp\n").unwrap();
    decnet(&dir)
        .args(["deploy", "--dry-run", "-c"])
        .arg(&ini)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "fleet.ini:5: [web] services: unknown service `htp`; did you mean `http`?",
        ))
        .stderr(predicate::str::contains("panicked").not());

    std::fs::write(&ini, "[general]\nnet 10.0.0.0/24\n").unwrap();
    decnet(&dir)
        .args(["deploy", "--dry-run", "-c"])
        .arg(&ini)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "fleet.ini:2: expected `key = value`, found `net 10.0.0.0/24`",
        ));

    decnet(&dir)
        .args(["deploy", "--dry-run", "-c", "missing.ini"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.ini: cannot read"));
    decnet(&dir)
        .args(["deploy", "--dry-run", "-n", "2", "--subnet", "10.0.0.0/24"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no services for the deckies"));
    decnet(&dir)
        .args([
            "deploy",
            "--dry-run",
            "-n",
            "2",
            "--services",
            "ssh",
            "--subnet",
            "10.0.0.0/33",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("command line: --subnet:"));
    // Usage errors are clap's, also 2.
    decnet(&dir).args(["deploy", "--bogus"]).assert().code(2);
}

#[test]
fn an_invalid_instance_prefix_is_refused() {
    let dir = tmp();
    decnet(&dir)
        .args([
            "--prefix",
            "Bad-One",
            "deploy",
            "-n",
            "1",
            "--services",
            "ssh",
            "--subnet",
            "10.0.0.0/24",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--prefix: `Bad-One` is not a valid prefix"));
    assert!(!dir.path().join("state").exists(), "nothing may be created");
}

#[test]
fn broken_persona_file_is_named() {
    let dir = tmp();
    let personas = dir.path().join("personas");
    copy_tree(&repo().join("personas"), &personas);
    let ssh = personas.join("services/ssh.toml");
    let text = std::fs::read_to_string(&ssh)
        .unwrap()
        .replace("type = \"credentials\"", "type = \"credential\"");
    std::fs::write(&ssh, text).unwrap();
    decnet(&dir)
        .args(["services", "--personas"])
        .arg(&personas)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "personas/services/ssh.toml: keys.users.type: unknown variant `credential`",
        ));
}

#[test]
fn env_files_set_defaults_and_the_environment_wins() {
    let dir = tmp();
    let state = dir.path().join("from-env-file");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("fleet.seed"), "ab".repeat(32)).unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("DECNET_STATE_DIR={}\n", state.display()),
    )
    .unwrap();
    let run = |cmd: &mut Command| -> Value {
        let out = cmd
            .args([
                "deploy",
                "--dry-run",
                "--json",
                "-n",
                "1",
                "--services",
                "ssh",
                "--subnet",
                "10.0.0.0/24",
            ])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut cmd = Command::cargo_bin("decnet").unwrap();
    cmd.current_dir(dir.path())
        .env_remove("DECNET_STATE_DIR")
        .env_remove("DECNET_SEED");
    assert_eq!(run(&mut cmd)["seed_source"], "installation");
    // A real environment variable beats the file.
    let mut cmd = Command::cargo_bin("decnet").unwrap();
    cmd.current_dir(dir.path())
        .env("DECNET_STATE_DIR", dir.path().join("elsewhere"))
        .env_remove("DECNET_SEED");
    assert_eq!(run(&mut cmd)["seed_source"], "placeholder");
}

#[test]
fn closed_pipe_exits_quietly() {
    let mut child = StdCommand::new(env!("CARGO_BIN_EXE_decnet"))
        .args([
            "deploy",
            "--dry-run",
            "-n",
            "5000",
            "--services",
            "ssh",
            "--subnet",
            "10.0.0.0/16",
        ])
        .env("DECNET_STATE_DIR", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // stdout is dropped here: the rest of the table hits a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("Fleet: 5000 deckies"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}
