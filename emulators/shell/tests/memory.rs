//! What an idle session costs: 1,000 interactive sessions on one decky, each
//! at its prompt, measured as the growth of this process's resident set.

mod common;

use decnet_shell::{Limits, Mode, ShellSession};

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

#[test]
fn a_thousand_idle_sessions_fit_in_200_kb_each() {
    let host = common::host("debian");
    // Warm up allocator and lazily built tables.
    let mut warm = ShellSession::new(&host, "root", Mode::Interactive, Limits::default(), 0);
    warm.start(common::NOW);
    warm.feed(common::NOW, b"ls -la; cat /proc/cpuinfo | grep name\r");
    let before = rss_kb();
    let mut sessions = Vec::with_capacity(1000);
    for i in 0..1000u64 {
        let mut s = ShellSession::new(&host, "root", Mode::Interactive, Limits::default(), i);
        s.start(common::NOW);
        s.feed(common::NOW, b"cd /tmp; echo hi > f; uname -a\r");
        sessions.push(s);
    }
    let after = rss_kb();
    let per_session = (after.saturating_sub(before)) as f64 / 1000.0;
    println!(
        "RSS growth for 1000 idle shell sessions: {} kB ({per_session:.1} kB per session)",
        after.saturating_sub(before)
    );
    assert!(per_session < 200.0, "{per_session} kB per session");
    assert_eq!(sessions.len(), 1000);
}

#[test]
fn a_prepared_decky_is_small() {
    let _warm = common::host("debian");
    let before = rss_kb();
    let hosts: Vec<_> = (0..50).map(|_| common::host("debian")).collect();
    let per_host = rss_kb().saturating_sub(before) as f64 / 50.0;
    println!("RSS per prepared decky shell (base filesystem, users, processes): {per_host:.1} kB");
    assert!(per_host < 1024.0, "{per_host} kB per decky");
    assert_eq!(hosts.len(), 50);
}
