//! `decnet fingerprint check` against a lab: shaped deckies are named, a
//! decky that claims Windows 10 on Linux's unshaped stack is caught, and
//! the exit status says which.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{Lab, can_run, stderr, stdout};

/// A copy of the repository's personas plus one personality that claims
/// Windows 10 and shapes nothing: nmap sees Linux 6.x with Windows' TTL.
fn personas_with_an_impostor(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../personas");
    let status = Command::new("cp").arg("-r").arg(&source).arg(dir).status().unwrap();
    assert!(status.success());
    std::fs::write(
        dir.join("personas/os/personalities/impostor.toml"),
        "display_name = \"Windows 10 (unshaped)\"\n\
         description = \"Test only: claims Windows 10 on Linux's stack\"\n\
         family = \"windows\"\n\
         nmap = [\"Microsoft Windows 10\"]\n",
    )
    .unwrap();
}

#[test]
fn check_without_a_lab_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(["--prefix", "tnolab"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(["fingerprint", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("there is no lab"), "{}", stderr(&out));
}

#[test]
fn check_names_shaped_deckies_and_catches_an_impostor() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    personas_with_an_impostor(dir.path());
    let personas = dir.path().join("personas");
    let personas = personas.to_str().unwrap();
    let fleet = dir.path().join("fleet.ini");
    std::fs::write(
        &fleet,
        "[w10]\nos_personality = windows-10\nservices = http\n\n\
         [lin]\nos_personality = linux\nservices = http\n\n\
         [fake]\nos_personality = impostor\nservices = http\n",
    )
    .unwrap();
    let lab = Lab::up_alone_ok(&["--personas", personas, "-c", fleet.to_str().unwrap()]);

    // Errors an operator can fix come first, with exit status 2.
    let out = lab.decnet(&["--personas", personas, "fingerprint", "check", "--decky", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no decky named `nope`"), "{}", stderr(&out));
    let empty = tempfile::tempdir().unwrap();
    let out = lab
        .command()
        .env("PATH", empty.path())
        .args(["--personas", personas, "fingerprint", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nmap is not installed"), "{}", stderr(&out));
    // Without the catalogue the fleet was deployed with, the impostor is unknown.
    let out = lab.decnet(&["fingerprint", "check", "--decky", "fake"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`impostor`"), "{}", stderr(&out));

    const ROUNDS: usize = 3;
    let out = lab.decnet(&[
        "--personas",
        personas,
        "fingerprint",
        "check",
        "--json",
        "--rounds",
        &ROUNDS.to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the impostor fails the check:\n{}",
        lab.explain(&out)
    );
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let row = |name: &str| rows.iter().find(|r| r["decky"] == name).unwrap();
    for r in rows {
        let rounds = r["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), ROUNDS, "{r}");
        assert_eq!(r["ports"]["open_tcp"], 80, "{r}");
        assert!(rounds.iter().all(|o| o["open_port_answered"] == true), "{r}");
    }

    let fake = row("fake");
    assert_eq!(fake["personality"], "impostor");
    assert_eq!(fake["expected"]["exact"], true);
    assert_eq!(fake["named"], 0, "Linux's own stack passed for Windows 10: {fake}");
    assert_eq!(fake["verdict"], "mismatch");
    for o in fake["rounds"].as_array().unwrap() {
        let said = format!("{} {}", o["details"], o["guesses"]);
        assert!(!said.contains("Windows 10"), "{said}");
    }

    // nmap's ISN-rate readings vary with load (see tests/fingerprint.rs):
    // a shaped decky may miss one round in three, never more.
    for (name, names) in [
        ("w10", &["Microsoft Windows 10"][..]),
        ("lin", &["Linux 4.15 - 5.6", "Linux 5."][..]),
    ] {
        let r = row(name);
        let expected: Vec<&str> = r["expected"]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(expected, names, "{r}");
        let named = r["named"].as_u64().unwrap() as usize;
        assert!(named + 1 >= ROUNDS, "{name} named in {named}/{ROUNDS} rounds: {r}");
        let verdict = if named == ROUNDS { "match" } else { "mismatch" };
        assert_eq!(r["verdict"], verdict, "{r}");
        let named_rounds = r["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                o["guesses"].as_array().unwrap().is_empty()
                    && names
                        .iter()
                        .any(|n| o["details"].as_str().unwrap_or_default().contains(n))
            })
            .count();
        assert_eq!(named_rounds, named, "{r}");
    }

    // The table, for one decky: the exit status follows its verdict.
    let out = lab.decnet(&["--personas", personas, "fingerprint", "check", "--decky", "w10"]);
    let table = stdout(&out);
    assert!(table.starts_with("DECKY"), "{table}");
    let line = table.lines().find(|l| l.starts_with("w10 ")).unwrap();
    assert!(
        line.contains("windows-10") && line.contains("Microsoft Windows 10 (exact)"),
        "{line}"
    );
    assert_eq!(
        out.status.success(),
        line.contains(" match 1/1"),
        "{}",
        lab.explain(&out)
    );
    if out.status.success() {
        assert!(
            line.contains("OS details: Microsoft Windows 10") && line.contains("Microsoft Windows 10"),
            "{line}"
        );
    }
    assert!(!table.contains("fake"), "--decky checks one decky: {table}");
}
