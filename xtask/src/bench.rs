//! `cargo xtask bench deploy`: the deploy benchmark of the engine issue.
//!
//! On a lab LAN of its own (a private prefix, removed afterwards) it deploys N
//! deckies with ssh, mysql and redis (three TCP listeners each) and measures:
//! - up: `decnet lab up` (engine start included) until it returns, which is
//!   when every listener is bound and listening; then it checks from the
//!   attacker namespace that every port accepts (3N connections, timed apart:
//!   that time is mostly ARP, since each first packet to a decky is a broadcast
//!   the macvlan parent copies to all N deckies, as a real LAN of N hosts would);
//! - down: `decnet teardown --all`;
//! - the engine's RSS with everything up, and kernel memory per decky.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use nix::sched::{CloneFlags, setns};

const TARGET_UP_S: f64 = 5.0;
const TARGET_DOWN_S: f64 = 5.0;
const TARGET_RSS_MB: f64 = 100.0;
const PORTS: [u16; 3] = [22, 3306, 6379];

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("deploy") => {
            let deckies = match args.get(1..3) {
                Some([flag, n]) if flag == "--deckies" => n.parse().context("--deckies takes a number")?,
                _ => 1000,
            };
            deploy(deckies)
        }
        Some("events") => events(),
        Some("shaping") => {
            let rounds = match args.get(1..3) {
                Some([flag, n]) if flag == "--rounds" => n.parse().context("--rounds takes a number")?,
                _ => crate::shaping_bench::ROUNDS,
            };
            crate::shaping_bench::shaping(rounds)
        }
        Some("ssh") => crate::ssh_bench::ssh(),
        _ => bail!("usage: cargo xtask bench deploy [--deckies N] | events | shaping [--rounds N] | ssh"),
    }
}

const TARGET_FILE_PER_S: f64 = 500_000.0;
const TARGET_INGEST_PER_S: f64 = 100_000.0;
const TARGET_P99_MS: f64 = 50.0;

/// The event pipeline: format + file sink, SQLite ingestion, emit → commit latency.
fn events() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    crate::cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "decnet-store",
        "--example",
        "bench_events",
    ])?;
    let out = Command::new(root.join("target/release/examples/bench_events"))
        .stderr(Stdio::inherit())
        .output()
        .context("running the events benchmark")?;
    ensure!(out.status.success(), "the events benchmark failed");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).context("the benchmark's output")?;
    let number = |v: &serde_json::Value| v.as_f64().context("a figure in the benchmark's output");
    let file = number(&r["file_per_s"])?;
    let ingest = number(&r["ingest_per_s"])?;
    let floor = number(&r["sqlite_floor_per_s"])?;
    let p50 = number(&r["latency_ms"]["p50"])?;
    let p99 = number(&r["latency_ms"]["p99"])?;
    let max = number(&r["latency_ms"]["max"])?;
    println!("events benchmark (an SSH login event with a credential and three fields)");
    println!(
        "  format (JSON + RFC 5424) + file sink, one core: {file:>9.0} events/s  target ≥ {TARGET_FILE_PER_S:.0}  {:.2}× target",
        file / TARGET_FILE_PER_S
    );
    println!(
        "  ingestion into SQLite (batches ≤ 8192 lines):   {ingest:>9.0} events/s  target ≥ {TARGET_INGEST_PER_S:.0}  {:.2}× target",
        ingest / TARGET_INGEST_PER_S
    );
    println!(
        "    peer: bare SQLite inserts of the same events:  {floor:>9.0} events/s  ingestion is {:.2}× the peer",
        ingest / floor
    );
    println!(
        "  emit → committed row at {} events/s:          p99 {p99:6.1} ms (p50 {p50:.1}, max {max:.1})  target ≤ {TARGET_P99_MS} ms  {:.2}× target",
        r["latency_rate"],
        p99 / TARGET_P99_MS
    );
    Ok(())
}

pub(crate) struct Instance {
    pub(crate) exe: PathBuf,
    pub(crate) prefix: String,
    pub(crate) dir: PathBuf,
}

impl Instance {
    /// An instance of the `profile` build (`release`, `debug`) in a temp dir
    /// of its own, named `prefix` + this process's id (which stays short:
    /// link names are at most 15 bytes).
    pub(crate) fn new(prefix: &str, profile: &str) -> anyhow::Result<Instance> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let id = std::process::id();
        let dir = std::env::temp_dir().join(format!("decnet-bench-{prefix}-{id}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Instance {
            exe: root.join("target").join(profile).join("decnet"),
            prefix: format!("{prefix}{}", id % 100_000),
            dir,
        })
    }

    fn decnet(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--prefix", &self.prefix])
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .arg("--log-dir")
            .arg(self.dir.join("log"))
            .args(args);
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.decnet(args).stderr(Stdio::inherit()).output()?;
        ensure!(out.status.success(), "decnet {} failed", args.join(" "));
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.decnet(&["lab", "down"]).stdout(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn deploy(n: usize) -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the deploy benchmark builds namespaces: run it as root"
    );
    crate::cargo(&["build", "--release", "--locked", "-p", "decnet"])?;
    let instance = Instance::new("bench", "release")?;
    // The smallest lab subnet that holds n deckies, the attacker and the hairpin.
    let lan_prefix = (16..=24).rev().find(|p| (1usize << (32 - p)) >= n + 4).unwrap_or(16);

    let kernel_before = kernel_memory_kb()?;
    let started = Instant::now();
    instance.run(&[
        "lab",
        "up",
        "-n",
        &n.to_string(),
        "--services",
        "ssh,mysql,redis",
        "--seed",
        "bench",
        "--lan-prefix",
        &lan_prefix.to_string(),
    ])?;
    let deployed = started.elapsed();
    let status: serde_json::Value = serde_json::from_str(&instance.run(&["status", "--json"])?)?;
    let ips: Vec<String> = status["deckies"]
        .as_array()
        .context("status has deckies")?
        .iter()
        .filter_map(|d| d["ip"].as_str().map(String::from))
        .collect();
    ensure!(ips.len() == n, "{} of {n} deckies deployed", ips.len());
    let attacker = format!("/run/netns/{}.attacker", instance.prefix);
    let verifying = Instant::now();
    let refused = connect_all(&attacker, &ips)?;
    let verified = verifying.elapsed();
    ensure!(
        refused == 0,
        "{refused} of {} ports did not accept",
        ips.len() * PORTS.len()
    );

    let pid = std::fs::read_to_string(instance.dir.join("run/engine.pid"))?
        .trim()
        .to_string();
    let rss_mb = vm_rss_kb(&pid)? as f64 / 1024.0;
    let per_decky_kb = kernel_memory_kb()?.saturating_sub(kernel_before) as f64 / n as f64;

    let started = Instant::now();
    instance.run(&["teardown", "--all"])?;
    let down = started.elapsed();

    let ratio = |v: f64, target: f64| format!("{:.2}× target", v / target);
    println!(
        "deploy benchmark: {n} deckies × {} TCP services ({} listeners)",
        PORTS.len(),
        n * PORTS.len()
    );
    println!(
        "  up (lab up until every port listens):  {:6.2} s  target ≤ {TARGET_UP_S} s   {}",
        deployed.as_secs_f64(),
        ratio(deployed.as_secs_f64(), TARGET_UP_S)
    );
    println!(
        "  then every port accepted a connection from the attacker ({} connections in {:.2} s)",
        ips.len() * PORTS.len(),
        verified.as_secs_f64()
    );
    println!(
        "  down (teardown --all):                 {:6.2} s  target ≤ {TARGET_DOWN_S} s   {}",
        down.as_secs_f64(),
        ratio(down.as_secs_f64(), TARGET_DOWN_S)
    );
    println!(
        "  engine RSS with everything up:         {rss_mb:6.1} MB target ≤ {TARGET_RSS_MB} MB {}",
        ratio(rss_mb, TARGET_RSS_MB)
    );
    println!("  kernel memory per decky (slab+percpu): {per_decky_kb:6.0} KB");
    Ok(())
}

/// Connects to every port of every decky from inside the attacker namespace,
/// from 16 threads at once; returns how many refused.
fn connect_all(attacker: &str, ips: &[String]) -> anyhow::Result<usize> {
    let targets: Vec<SocketAddr> = ips
        .iter()
        .flat_map(|ip| PORTS.map(|port| format!("{ip}:{port}")))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let chunk = targets.len().div_ceil(16).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = targets
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> anyhow::Result<usize> {
                    let ns = File::open(attacker).with_context(|| format!("open {attacker}"))?;
                    setns(&ns, CloneFlags::CLONE_NEWNET).context("enter the attacker namespace")?;
                    Ok(part
                        .iter()
                        .filter(|addr| TcpStream::connect_timeout(addr, Duration::from_secs(2)).is_err())
                        .count())
                })
            })
            .collect();
        workers.into_iter().try_fold(0, |sum, w| {
            Ok(sum + w.join().map_err(|_| anyhow::anyhow!("a probing thread panicked"))??)
        })
    })
}

/// The figure of a `Field:   123 kB` line of a /proc file.
pub(crate) fn proc_kb(path: &str, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .with_context(|| format!("{field} in {path}"))
}

fn kernel_memory_kb() -> anyhow::Result<u64> {
    Ok(proc_kb("/proc/meminfo", "Slab")? + proc_kb("/proc/meminfo", "Percpu")?)
}

pub(crate) fn vm_rss_kb(pid: &str) -> anyhow::Result<u64> {
    proc_kb(&format!("/proc/{pid}/status"), "VmRSS")
}
