//! `cargo xtask bench shaping`: what the personality programs cost an HTTP
//! server. One lab, two deckies: `shaped` (windows-10: every packet passes
//! through the TC programs, which rewrite SYN-ACKs, sequence numbers,
//! timestamps, windows and IP IDs) and `plain` (a bench-only personality
//! that is the kernel's own stack, so the engine attaches nothing). A small
//! HTTP server runs inside each decky's namespace on port 8080 (the
//! emulators are not on the measured path); ApacheBench (`ab`, Debian's
//! apache2-utils) drives it from the attacker namespace, the two deckies
//! taking turns round by round so that machine load hits both alike.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use nix::sched::{CloneFlags, setns};

use crate::bench::Instance;

const PORT: u16 = 8080;
// Many short rounds, interleaved: the machine's load drifts over seconds,
// and a round's pair of runs shares most of it.
pub(crate) const ROUNDS: usize = 101;
/// Runs of the shaped decky alone, with the kernel's BPF statistics on.
const STATS_ROUNDS: usize = 5;
const CONCURRENCY: usize = 8;
const WORKERS: usize = 16;
const TARGET_SLOWDOWN: f64 = 0.05;

/// The bench-only personality: Linux's own stack, nothing to shape, with the
/// same family (so the same sysctls) as windows-10: only the programs differ.
const KERNEL_PERSONALITY: &str = "display_name = \"Linux (the kernel's own stack)\"\n\
description = \"Benchmark only: no shaping, no programs attached\"\n\
family = \"windows\"\n\
nmap = [\"Linux\"]\n\
exact = false\n";

const BODY: &str = "<html><body>It works!</body></html>\n";

pub(crate) fn shaping(rounds: usize) -> anyhow::Result<()> {
    ensure!(rounds >= 9, "--rounds: at least 9, for the quartiles and the interval");
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the shaping benchmark builds namespaces: run it as root"
    );
    ensure!(
        std::process::Command::new("ab")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "ApacheBench is missing: apt-get install apache2-utils"
    );
    // The engine is not on the measured path (the bench serves HTTP itself),
    // and the programs run in the kernel: a debug build measures the same.
    crate::cargo(&["build", "--locked", "-p", "decnet"])?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("decnet-bench-shaping-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let instance = Instance {
        exe: root.join("target/debug/decnet"),
        prefix: format!("bsh{}", std::process::id() % 100_000),
        dir,
    };
    let personas = instance.dir.join("personas");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(root.join("personas"))
        .arg(&personas)
        .status()?;
    ensure!(copied.success(), "copying personas/");
    std::fs::write(personas.join("os/personalities/kernel.toml"), KERNEL_PERSONALITY)?;
    let fleet = instance.dir.join("fleet.ini");
    std::fs::write(
        &fleet,
        "[shaped]\nos_personality = windows-10\nservices = http\n\n\
         [plain]\nos_personality = kernel\nservices = http\n",
    )?;
    let personas = personas.to_str().context("a UTF-8 temp dir")?;
    instance.run(&[
        "--personas",
        personas,
        "lab",
        "up",
        "-c",
        fleet.to_str().context("UTF-8")?,
    ])?;
    let status: serde_json::Value = serde_json::from_str(&instance.run(&["status", "--json"])?)?;
    let mut deckies = Vec::new();
    for name in ["shaped", "plain"] {
        let d = status["deckies"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == name))
            .with_context(|| format!("decky {name} in status"))?;
        ensure!(d["shaping"]["state"] == "shaped", "{name} is not shaped: {d}");
        let ip: Ipv4Addr = d["ip"].as_str().context("ip")?.parse()?;
        let netns = d["netns"].as_str().context("netns")?.to_string();
        serve(&netns, ip)?;
        deckies.push((name, ip));
    }
    // Many short connections: let the client reuse ports left in TIME_WAIT.
    for setting in ["net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000"] {
        instance.run(&["lab", "exec", "--", "sysctl", "-q", "-w", setting])?;
    }

    let engine = std::fs::read_to_string(instance.dir.join("run/engine.pid"))?
        .trim()
        .to_string();
    println!(
        "shaping benchmark: ab -c {CONCURRENCY}, {rounds} rounds, the two deckies in turn (medians of the rounds)"
    );
    // Keep-alive runs longer per round: a short run is mostly ab's start.
    for (mode, keep_alive, requests) in [
        ("a new connection per request", false, 2000),
        ("keep-alive", true, 10_000),
    ] {
        // Warm both up (ARP, caches, the server's threads).
        for (_, ip) in &deckies {
            ab(&instance, *ip, keep_alive, 500)?;
        }
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
        for round in 0..rounds {
            // Alternate who goes first.
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                runs[i].push(ab(&instance, deckies[i].1, keep_alive, requests)?);
            }
        }
        // The kernel's own count of the programs' runs and run time (what
        // `bpftool prog` shows), in a pass of its own: the accounting (two
        // clock reads a run) is no part of the cost the rounds above measure.
        let each = {
            let _stats = BpfStats::enable()?;
            let before = program_stats(&engine)?;
            for _ in 0..STATS_ROUNDS {
                ab(&instance, deckies[0].1, keep_alive, requests)?;
            }
            std::thread::sleep(Duration::from_millis(500));
            ProgStats::between(&before, &program_stats(&engine)?)
        };
        let (prog_ns, prog_runs) = (
            each.iter().map(|p| p.ns).sum::<u64>(),
            each.iter().map(|p| p.runs).sum::<u64>(),
        );
        let shaped = Run::median(&runs[0]);
        let plain = Run::median(&runs[1]);
        println!("  {mode} (-n {requests}):");
        for (name, r) in [("shaped (windows-10)", &shaped), ("unshaped (kernel)", &plain)] {
            println!(
                "    {name:<20} {:>8.0} requests/s  mean {:6.3} ms  p99 {:6.3} ms",
                r.per_s, r.mean_ms, r.p99_ms
            );
        }
        // Each round's pair ran back to back: their ratio cancels most of the
        // machine's drifting load; the ratios' median is the verdict.
        let throughput = Ratios::of(&runs, |r| r.per_s);
        let mean = Ratios::of(&runs, |r| r.mean_ms);
        let p99 = Ratios::of(&runs, |r| r.p99_ms);
        let cpu_us = |r: &Run| r.cpu_ticks as f64 * 1e4 / (rounds * requests) as f64;
        println!(
            "    machine CPU per request: shaped {:.1} µs, unshaped {:.1} µs ({:+.2} µs, {:.3}×)",
            cpu_us(&shaped),
            cpu_us(&plain),
            cpu_us(&shaped) - cpu_us(&plain),
            cpu_us(&shaped) / cpu_us(&plain)
        );
        println!(
            "    shaped/unshaped, median of the rounds' ratios (interquartile range) [95% confidence interval of the median]:"
        );
        println!("      throughput   {throughput}");
        println!("      mean latency {mean}");
        println!("      p99 latency  {p99}");
        // Slower: the throughput lost or the mean latency gained, whichever
        // is larger; at the median, and at either end of the intervals.
        let slower = |throughput: f64, latency: f64| (1.0 - throughput).max(latency - 1.0);
        let verdict = slower(throughput.median, mean.median);
        let (best, worst) = (
            slower(throughput.ci_high, mean.ci_low),
            slower(throughput.ci_low, mean.ci_high),
        );
        println!(
            "    shaped is {:+.1}% slower (throughput {:+.1}%, mean latency {:+.1}%; 95% interval {:+.1}…{:+.1}%)  target ≤ {:.0}%  {} ({})",
            verdict * 100.0,
            (1.0 - throughput.median) * 100.0,
            (mean.median - 1.0) * 100.0,
            best * 100.0,
            worst * 100.0,
            TARGET_SLOWDOWN * 100.0,
            if verdict <= TARGET_SLOWDOWN { "met" } else { "MISSED" },
            if worst <= TARGET_SLOWDOWN || best > TARGET_SLOWDOWN {
                "settled: the interval is on one side of the target"
            } else {
                "not settled at this noise: the interval spans the target; more --rounds narrow it"
            }
        );
        let requests = (STATS_ROUNDS * requests) as f64;
        let per_request_us = prog_ns as f64 / requests / 1000.0;
        println!(
            "    the programs (kernel's bpf stats): {:.1} runs per request, {:.0} ns per run, {per_request_us:.2} µs of CPU per request = {:.1}% of one core at the unshaped rate",
            prog_runs as f64 / requests,
            prog_ns as f64 / prog_runs.max(1) as f64,
            per_request_us * plain.per_s / 1e4
        );
        if let [egress, ingress] = each[..] {
            println!(
                "      egress {:.1} runs per request, {:.0} ns per run; ingress {:.1} runs per request, {:.0} ns per run",
                egress.runs as f64 / requests,
                egress.ns_per_run(),
                ingress.runs as f64 / requests,
                ingress.ns_per_run()
            );
        }
    }
    Ok(())
}

/// `kernel.bpf_stats_enabled` on while it lives, then as it was.
struct BpfStats {
    was: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> anyhow::Result<BpfStats> {
        let was = std::fs::read_to_string(BPF_STATS)?.trim().to_string();
        std::fs::write(BPF_STATS, "1").context("enabling kernel.bpf_stats_enabled")?;
        Ok(BpfStats { was })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.was);
    }
}

/// Run time (ns) and run count of each TC program the engine `pid` holds,
/// from its file descriptors' fdinfo, by program id (the shaper loads
/// `egress` first, so it has the lower id).
fn program_stats(pid: &str) -> anyhow::Result<BTreeMap<u64, ProgStats>> {
    let mut stats = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(info) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        // BPF_PROG_TYPE_SCHED_CLS
        if field("prog_type:") == Some(3) {
            stats.insert(
                field("prog_id:").unwrap_or(0),
                ProgStats {
                    ns: field("run_time_ns:").unwrap_or(0),
                    runs: field("run_cnt:").unwrap_or(0),
                },
            );
        }
    }
    Ok(stats)
}

/// One program's counters (fdinfo's `run_time_ns` and `run_cnt`).
#[derive(Debug, Clone, Copy, Default)]
struct ProgStats {
    ns: u64,
    runs: u64,
}

impl ProgStats {
    /// What ran between two readings of `program_stats`, per program in id order.
    fn between(before: &BTreeMap<u64, ProgStats>, after: &BTreeMap<u64, ProgStats>) -> Vec<ProgStats> {
        after
            .iter()
            .map(|(id, a)| {
                let b = before.get(id).copied().unwrap_or_default();
                ProgStats {
                    ns: a.ns - b.ns,
                    runs: a.runs - b.runs,
                }
            })
            .collect()
    }

    fn ns_per_run(&self) -> f64 {
        self.ns as f64 / self.runs.max(1) as f64
    }
}

/// One `ab` run: throughput, mean latency and the 99th percentile.
#[derive(Debug, Clone, Copy)]
struct Run {
    per_s: f64,
    mean_ms: f64,
    p99_ms: f64,
    cpu_ticks: u64,
}

/// One figure's shaped/unshaped ratios over the rounds: median, quartiles,
/// and a 95% confidence interval of the median.
struct Ratios {
    median: f64,
    low: f64,
    high: f64,
    ci_low: f64,
    ci_high: f64,
}

impl Ratios {
    fn of(runs: &[Vec<Run>], figure: fn(&Run) -> f64) -> Ratios {
        let mut v: Vec<f64> = runs[0]
            .iter()
            .zip(&runs[1])
            .map(|(s, p)| figure(s) / figure(p))
            .collect();
        v.sort_by(f64::total_cmp);
        let (lo, hi) = median_interval(v.len());
        Ratios {
            median: v[v.len() / 2],
            low: v[v.len() / 4],
            high: v[v.len() * 3 / 4],
            ci_low: v[lo],
            ci_high: v[hi],
        }
    }
}

/// The ranks (0-based) of the sorted sample that bound a 95% confidence
/// interval of the median of `n` independent rounds. The count of rounds
/// below the median is binomial (n, ½): the interval [v[lo], v[n-1-lo]]
/// misses the median with the chance of lo or fewer below it, or as few
/// above, so `lo` is the largest rank whose tail is at most 2.5%.
fn median_interval(n: usize) -> (usize, usize) {
    let ln_fact = |k: usize| (1..=k).map(|i| (i as f64).ln()).sum::<f64>();
    let pmf = |k: usize| (ln_fact(n) - ln_fact(k) - ln_fact(n - k) - n as f64 * 2f64.ln()).exp();
    let mut tail = 0.0;
    let mut lo = 0;
    for k in 0..n / 2 {
        tail += pmf(k);
        if tail > 0.025 {
            break;
        }
        lo = k;
    }
    (lo, n - 1 - lo)
}

impl std::fmt::Display for Ratios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3}× ({:.3}…{:.3}) [{:.3}…{:.3}]",
            self.median, self.low, self.high, self.ci_low, self.ci_high
        )
    }
}

impl Run {
    /// The median of each figure over the rounds.
    fn median(runs: &[Run]) -> Run {
        let median = |f: fn(&Run) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Run {
            per_s: median(|r| r.per_s),
            mean_ms: median(|r| r.mean_ms),
            p99_ms: median(|r| r.p99_ms),
            cpu_ticks: runs.iter().map(|r| r.cpu_ticks).sum(),
        }
    }
}

fn ab(instance: &Instance, ip: Ipv4Addr, keep_alive: bool, requests: usize) -> anyhow::Result<Run> {
    let csv = instance.dir.join("ab.csv");
    let url = format!("http://{ip}:{PORT}/");
    let requests = requests.to_string();
    let concurrency = CONCURRENCY.to_string();
    let csv_arg = csv.to_str().context("UTF-8")?;
    let mut args = vec!["lab", "exec", "--", "ab", "-q", "-r", "-s", "5"];
    if keep_alive {
        args.push("-k");
    }
    args.extend(["-n", &requests, "-c", &concurrency, "-e", csv_arg, &url]);
    let busy0 = busy_ticks()?;
    let out = instance.run(&args)?;
    let cpu_ticks = busy_ticks()? - busy0;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .with_context(|| format!("`{name}` in ab's output:\n{out}"))
    };
    let failed = field("Failed requests:")?;
    ensure!(failed == 0.0, "ab saw failed requests:\n{out}");
    let per_s = field("Requests per second:")?;
    // -e: one line per percent, "percent,milliseconds".
    let table = std::fs::read_to_string(&csv)?;
    let at = |percent: u32| {
        table
            .lines()
            .filter_map(|l| l.split_once(','))
            .find(|(p, _)| p.trim() == percent.to_string())
            .and_then(|(_, ms)| ms.trim().parse::<f64>().ok())
            .with_context(|| format!("{percent}% in ab's percentiles:\n{table}"))
    };
    // The mean from the quantiles, 1 % to 100 %: ab's own mean latency is
    // in whole milliseconds (or is concurrency over throughput).
    let mut sum = 0.0;
    for percent in 1..=100 {
        sum += at(percent)?;
    }
    Ok(Run {
        per_s,
        mean_ms: sum / 100.0,
        p99_ms: at(99)?,
        cpu_ticks,
    })
}

/// The machine's busy time so far, in clock ticks (/proc/stat's first line
/// less idle and iowait).
fn busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let v: Vec<u64> = stat
        .lines()
        .next()
        .context("/proc/stat")?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    Ok(v.iter().take(8).sum::<u64>() - v[3] - v[4])
}

/// Serves HTTP on `ip:8080` inside namespace `netns` from a pool of threads
/// (for the rest of the process): a fixed page, keep-alive when asked.
fn serve(netns: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
    let path = format!("/run/netns/{netns}");
    // A socket stays in the namespace it was made in: bind on a thread that
    // entered it, serve from anywhere.
    let listener = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<TcpListener> {
            let ns = File::open(&path).with_context(|| format!("open {path}"))?;
            setns(&ns, CloneFlags::CLONE_NEWNET).context("enter the decky's namespace")?;
            Ok(TcpListener::bind(SocketAddr::from((ip, PORT)))?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the binding thread panicked"))?
    })?;
    for _ in 0..WORKERS {
        let listener = listener.try_clone()?;
        std::thread::spawn(move || {
            while let Ok((stream, _)) = listener.accept() {
                let _ = handle(stream);
            }
        });
    }
    Ok(())
}

fn handle(stream: TcpStream) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut keep_alive = false;
        let mut first = true;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line.len() > 8192 {
                bail!("request line too long");
            }
            if first {
                first = false;
                keep_alive = line.trim_end().ends_with("HTTP/1.1");
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                keep_alive = lower.contains("keep-alive");
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        // One write, one segment (write! on the socket would send each piece).
        let response = format!(
            "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{BODY}",
            BODY.len()
        );
        writer.write_all(response.as_bytes())?;
        if !keep_alive {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::median_interval;

    /// The chance that the interval holds the median: the count of rounds
    /// below it is binomial (n, ½), and the interval [v[lo], v[hi]] holds
    /// the median when lo < count ≤ hi. Summed term by term here, apart
    /// from the tail the function accumulates.
    fn coverage(n: usize) -> f64 {
        let (lo, hi) = median_interval(n);
        let mut pmf = 0.5f64.powi(n as i32);
        let mut inside = 0.0;
        for k in 0..=hi {
            if k > lo {
                inside += pmf;
            }
            pmf *= (n - k) as f64 / (k + 1) as f64;
        }
        inside
    }

    fn binomial(n: usize, k: usize) -> f64 {
        (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
    }

    #[test]
    fn the_median_interval_covers_95_percent() {
        for n in 9..=1001 {
            let c = coverage(n);
            assert!(c >= 0.95, "{n} rounds: {c}");
            // And no wider than it need be: one rank in would miss.
            let (lo, _) = median_interval(n);
            let tail = (1.0 - c) / 2.0;
            let next = tail + (0.5f64.powi(n as i32) * binomial(n, lo + 1));
            assert!(1.0 - 2.0 * next < 0.95, "{n} rounds: rank {} would do", lo + 1);
        }
    }
}
