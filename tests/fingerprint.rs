//! OS personalities against Debian's nmap 7.93: one decky per personality in
//! the catalogue, `nmap -O` from the attacker namespace, ten rounds. Each
//! decky of an `exact` personality must get exactly the `OS details:` it
//! promises, with no "Aggressive OS guesses", on nmap's first try, in every
//! round; the others (best effort, if any) must be shaped and keep answering.

use std::collections::BTreeMap;

use crate::support::{Lab, can_run, personalities_json, stdout};

const ROUNDS: usize = 10;

#[test]
fn nmap_names_every_personality_exactly() {
    if !can_run() {
        return;
    }
    let catalogue = personalities_json();
    let personalities: Vec<(String, Vec<String>)> = catalogue
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let names = p["nmap"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_string());
            // Best-effort personalities promise no name.
            let names = if p["exact"] == true {
                names.collect()
            } else {
                Vec::new()
            };
            (p["slug"].as_str().unwrap().to_string(), names)
        })
        .collect();
    assert!(personalities.len() >= 12, "{personalities:?}");
    let exact = personalities.iter().filter(|(_, names)| !names.is_empty()).count();
    assert!(exact >= 12, "{personalities:?}");

    // One decky per personality; port 80 answers, 81/tcp and 9/udp are closed.
    let mut ini = String::new();
    for (slug, _) in &personalities {
        ini.push_str(&format!("[os-{slug}]\nos_personality = {slug}\nservices = http\n\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("personalities.ini");
    std::fs::write(&fleet, ini).unwrap();
    let lab = Lab::up_alone_ok(&["-c", fleet.to_str().unwrap()]);
    let status = lab.status();
    let by_ip: BTreeMap<String, String> = status["deckies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["shaping"]["state"], "shaped", "{d}");
            (
                d["ip"].as_str().unwrap().to_string(),
                d["personality"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<&str, &Vec<String>> = personalities.iter().map(|(s, n)| (s.as_str(), n)).collect();

    let mut args = vec![
        "nmap",
        "-n",
        "-O",
        "-Pn",
        "-sS",
        "-sU",
        "-p",
        "T:80,81,U:9",
        "--max-os-tries",
        "1",
        // A miss then shows nmap's fingerprint, whatever nmap guessed.
        "-d",
    ];
    args.extend(by_ip.keys().map(String::as_str));
    let mut failures = Vec::new();
    let mut per_slug: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 1..=ROUNDS {
        let out = stdout(&lab.attack(&args));
        let reports = reports(&out);
        assert_eq!(reports.len(), by_ip.len(), "nmap reported on some deckies only:\n{out}");
        for (ip, report) in reports {
            let slug = &by_ip[&ip];
            if expected[slug.as_str()].is_empty() {
                assert!(report.contains("80/tcp open"), "{slug} stopped answering:\n{report}");
                continue;
            }
            let details: Vec<&str> = report.lines().filter(|l| l.starts_with("OS details:")).collect();
            let named = details.len() == 1 && expected[slug.as_str()].iter().any(|n| details[0].contains(n.as_str()));
            if !named || report.contains("Aggressive OS guesses") || report.contains("No exact OS matches") {
                failures.push(format!("round {round}, {slug} ({ip}):\n{report}"));
                *per_slug.entry(slug.as_str()).or_default() += 1;
            }
        }
    }
    // nmap times its SEQ probes by its own clock, but the ISN steps follow
    // their arrival (and are fixed for those probes): load moves neither SP
    // nor ISR, so no round may miss.
    assert!(
        failures.is_empty(),
        "misses per personality {per_slug:?}:\n{}",
        failures.join("\n")
    );
}

/// nmap's report per host: address → its lines.
fn reports(out: &str) -> BTreeMap<String, String> {
    let mut reports = BTreeMap::new();
    for block in out.split("Nmap scan report for ").skip(1) {
        let ip = block.split_whitespace().next().unwrap_or_default().to_string();
        reports.insert(ip, block.to_string());
    }
    reports
}
