//! p0f agrees with nmap: ordinary connections (an HTTP request over each)
//! to one decky per personality, captured with tcpdump in the attacker
//! namespace, read back with `p0f -r`. Every SYN-ACK must get the p0f label
//! the personality records (`p0f = …` in its TOML), or `???` where it
//! records none (p0f 3.09b has no signature for that OS).

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::{Lab, can_run, personalities_json, stderr, stdout};

/// Connects three times to port 80 of each address, sends an HTTP request
/// and reads whatever comes back for a moment; prints `ok <ip>` per
/// connection. (Three, so that a packet the capture misses on a loaded
/// machine still leaves two SYN-ACKs per decky to judge.)
const TRAFFIC: &str = r#"
import socket, sys
for ip in sys.argv[1:]:
    for _ in range(3):
        s = socket.create_connection((ip, 80), timeout=3)
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + ip.encode() + b"\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
        s.settimeout(0.3)
        try:
            s.recv(4096)
        except socket.timeout:
            pass
        s.close()
        print("ok", ip, flush=True)
"#;

#[test]
fn p0f_names_the_personality_nmap_does() {
    if !can_run() {
        return;
    }
    let catalogue = personalities_json();
    let expected: BTreeMap<String, String> = catalogue
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let label = p["p0f"].as_str().unwrap_or("???").to_string();
            (p["slug"].as_str().unwrap().to_string(), label)
        })
        .collect();
    let labelled = expected.values().filter(|l| *l != "???").count();
    assert!(labelled >= 8, "{expected:?}");

    let mut ini = String::new();
    for slug in expected.keys() {
        ini.push_str(&format!("[os-{slug}]\nos_personality = {slug}\nservices = http\n\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("personalities.ini");
    std::fs::write(&fleet, ini).unwrap();
    let lab = Lab::up_ok(&["-c", fleet.to_str().unwrap()]);
    let by_ip: BTreeMap<String, String> = lab.status()["deckies"]
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

    // tcpdump writes the file's header once it listens: wait for it, talk,
    // then stop it with SIGINT so that it flushes. Immediate mode: otherwise
    // the kernel hands packets over in blocks, retired once a second, and
    // SIGINT loses the last block (on a loaded machine, the last decky's
    // connections).
    let pcap = lab.path("ordinary.pcap");
    let script = lab.write("traffic.py", TRAFFIC);
    let ips: Vec<&str> = by_ip.keys().map(String::as_str).collect();
    let shell = format!(
        "tcpdump -i any --immediate-mode -U -n -w {pcap} tcp 2>{log} & t=$!; \
         for i in $(seq 100); do [ -s {pcap} ] && break; sleep 0.05; done; \
         python3 {script} {ips}; s=$?; sleep 0.3; kill -INT $t; wait $t; exit $s",
        pcap = pcap.display(),
        log = lab.path("tcpdump.log").display(),
        script = script.display(),
        ips = ips.join(" "),
    );
    let out = lab.attack(&["sh", "-c", &shell]);
    assert!(out.status.success(), "traffic failed:\n{}", lab.explain(&out));
    assert_eq!(
        stdout(&out).lines().filter(|l| l.starts_with("ok ")).count(),
        3 * ips.len(),
        "{}",
        stdout(&out)
    );

    let p0f = Command::new("p0f").arg("-r").arg(&pcap).output().unwrap();
    assert!(p0f.status.success(), "p0f failed: {}", stderr(&p0f));
    let report = stdout(&p0f);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for record in records(&report).iter().filter(|r| r.kind == "syn+ack") {
        let ip = record.fields["server"].split('/').next().unwrap();
        let slug = &by_ip[ip];
        *seen.entry(slug.as_str()).or_default() += 1;
        let os = record.fields["os"].as_str();
        if os != expected[slug] {
            wrong.push(format!(
                "{slug} ({ip}): p0f says {os:?}, the personality records {:?}; {:?}",
                expected[slug], record.fields
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for slug in expected.keys() {
        assert!(
            seen.get(slug.as_str()).copied().unwrap_or(0) >= 2,
            "p0f saw fewer than two SYN-ACKs of {slug}: {seen:?}\n{report}"
        );
    }
}

/// One `.-[ a -> b (kind) ]-` block of p0f's report.
struct Record {
    kind: String,
    fields: BTreeMap<String, String>,
}

fn records(report: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for block in report.split(".-[ ").skip(1) {
        let Some((head, body)) = block.split_once('\n') else {
            continue;
        };
        let kind = head
            .rsplit_once('(')
            .and_then(|(_, k)| k.split_once(')'))
            .map(|(k, _)| k.to_string())
            .unwrap_or_default();
        let fields = body
            .lines()
            .take_while(|l| !l.starts_with('`'))
            .filter_map(|l| {
                let (k, v) = l.trim_start_matches('|').split_once(" = ")?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        out.push(Record { kind, fields });
    }
    out
}
