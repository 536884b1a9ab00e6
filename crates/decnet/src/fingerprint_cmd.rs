//! `decnet fingerprint check`: nmap -O from the lab's attacker namespace
//! against the running deckies, judged against their OS personalities
//! (the judging is `decnet_fingerprint::check`).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context as _;
use decnet_core::catalogue::Transport;
use decnet_engine::lab;
use decnet_engine::status::{DeckyState, DeckyStatus, PortState};
use decnet_fingerprint::check::{Expected, Observation, ProbePorts, Verdict, parse_report};
use serde::Serialize;

use crate::cli::{FingerprintCheckArgs, Global};
use crate::output::{Table, print_json};
use crate::{BadInput, catalogue_cmd, engine_cmd, lab_cmd};

/// One decky's result.
#[derive(Debug, Serialize)]
struct Row {
    decky: String,
    ip: Ipv4Addr,
    personality: String,
    expected: Expected,
    ports: ProbePorts,
    /// What nmap said, round by round.
    rounds: Vec<Observation>,
    /// Rounds in which nmap named the personality exactly.
    named: usize,
    verdict: Verdict,
}

pub(crate) fn check(global: &Global, args: &FingerprintCheckArgs) -> anyhow::Result<ExitCode> {
    let config = global.engine_config()?;
    let catalogue = catalogue_cmd::load(global)?;
    if lab::load(&config)?.is_none() {
        return Err(BadInput(
            "there is no lab: `fingerprint check` runs nmap from the lab's attacker namespace; run `decnet lab up` first"
                .into(),
        )
        .into());
    }
    let nmap = find_program("nmap").ok_or_else(|| {
        BadInput("nmap is not installed (Debian: `apt-get install nmap`); `fingerprint check` runs it".into())
    })?;
    decnet_net::require_network_admin()?;
    let ns = lab_cmd::attacker_namespace(&config)?;
    let status = engine_cmd::client_runtime()?.block_on(async {
        match engine_cmd::running(&config).await? {
            Some(client) => anyhow::Ok(Some(client.status().await?)),
            None => Ok(None),
        }
    })?;
    let status = status
        .ok_or_else(|| BadInput("the engine is not running, so no decky answers; run `decnet lab up` first".into()))?;

    let deckies: Vec<&DeckyStatus> = match &args.decky {
        Some(name) => {
            let d = status
                .deckies
                .iter()
                .find(|d| &d.name == name)
                .ok_or_else(|| BadInput(format!("no decky named `{name}` (see `decnet status`)")))?;
            if d.state != DeckyState::Running {
                return Err(BadInput(format!("decky `{name}` is not running")).into());
            }
            vec![d]
        }
        None => status
            .deckies
            .iter()
            .filter(|d| d.state == DeckyState::Running)
            .collect(),
    };
    if deckies.is_empty() {
        return Err(BadInput("no decky is running".into()).into());
    }

    let mut rows = Vec::with_capacity(deckies.len());
    for d in &deckies {
        let p = catalogue.personality(&d.personality).ok_or_else(|| {
            BadInput(format!(
                "decky `{}` has personality `{}`, which this catalogue lacks; pass the --personas it was deployed with",
                d.name, d.personality
            ))
        })?;
        rows.push(Row {
            decky: d.name.clone(),
            ip: d.ip,
            personality: p.slug.clone(),
            expected: Expected {
                display_name: p.display_name.clone(),
                names: p.nmap.clone(),
                exact: p.exact,
            },
            ports: probe_ports(d),
            rounds: Vec::new(),
            named: 0,
            verdict: Verdict::Mismatch,
        });
    }

    // Deckies probed on the same ports share one nmap run per round.
    let mut groups: BTreeMap<ProbePorts, Vec<usize>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        groups.entry(row.ports).or_default().push(i);
    }
    for round in 1..=args.rounds {
        for (ports, members) in &groups {
            let targets: Vec<Ipv4Addr> = members.iter().map(|i| rows[*i].ip).collect();
            eprintln!(
                "decnet: round {round}/{}: nmap -O against {} decky(ies)…",
                args.rounds,
                targets.len()
            );
            let xml = run_nmap(&ns, &nmap, &ports.nmap_args(&targets))?;
            let mut hosts = parse_report(&xml, ports.open_tcp)?;
            for i in members {
                let row = &mut rows[*i];
                row.rounds.push(hosts.remove(&row.ip).unwrap_or_default());
            }
        }
    }
    for row in &mut rows {
        row.named = row.rounds.iter().filter(|o| o.names(&row.expected)).count();
        row.verdict = Verdict::judge(&row.expected, &row.rounds);
    }
    let failed = rows.iter().any(|r| r.verdict.failed());
    if args.json {
        print_json(&rows)?;
    } else {
        print_table(&rows)?;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The decky's lowest listening TCP port, and closed ones next to its own.
/// A port that failed to bind is closed, and may be picked as such.
fn probe_ports(d: &DeckyStatus) -> ProbePorts {
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for p in d.services.iter().flat_map(|s| &s.ports) {
        if matches!(p.state, PortState::Listening) {
            match p.port.transport {
                Transport::Tcp => tcp.push(p.port.number),
                Transport::Udp => udp.push(p.port.number),
            }
        }
    }
    ProbePorts::choose(&tcp, &udp)
}

/// Runs nmap in the attacker namespace and returns its XML report.
fn run_nmap(ns: &decnet_net::Netns, nmap: &Path, args: &[String]) -> anyhow::Result<String> {
    let mut cmd = Command::new(nmap);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = lab_cmd::spawn_in(ns, cmd)?
        .wait_with_output()
        .context("waiting for nmap")?;
    if !out.status.success() {
        anyhow::bail!(
            "nmap {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("nmap's report is not UTF-8")
}

/// `name` on `PATH`, if it is an executable file.
fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn print_table(rows: &[Row]) -> anyhow::Result<()> {
    let mut table = Table::new(vec![
        "DECKY",
        "PERSONALITY",
        "EXPECTED",
        "OBSERVED",
        "RUNNING",
        "VERDICT",
    ]);
    for row in rows {
        // The first round that missed, else the first: the one worth reading.
        let shown = row
            .rounds
            .iter()
            .find(|o| !o.names(&row.expected))
            .or(row.rounds.first());
        let observed = shown.map_or_else(|| "no report".to_string(), Observation::summary);
        let running = shown.and_then(|o| o.running.clone()).unwrap_or_else(|| "-".into());
        let expected = format!(
            "{} ({})",
            row.expected.names.join(" | "),
            if row.expected.exact { "exact" } else { "best effort" }
        );
        let verdict = match row.verdict {
            Verdict::Match => "match",
            Verdict::Mismatch => "MISMATCH",
            Verdict::BestEffortNamed => "best effort, named",
            Verdict::BestEffort => "best effort",
        };
        let open = if row.ports.open_tcp.is_some() && !shown.is_some_and(|o| o.open_port_answered) {
            " (open port did not answer)"
        } else {
            ""
        };
        table.row(vec![
            row.decky.clone(),
            row.personality.clone(),
            expected,
            format!("{observed}{open}"),
            running,
            format!("{verdict} {}/{}", row.named, row.rounds.len()),
        ]);
    }
    let mut out = io::stdout().lock();
    table.print(&mut out)?;
    if rows.iter().any(|r| r.verdict.failed()) {
        writeln!(
            out,
            "\nAn exact personality was not named in every round. nmap's ISN-rate readings are sensitive to CPU load; rerun on an idle machine before trusting a single miss."
        )?;
    }
    Ok(())
}
