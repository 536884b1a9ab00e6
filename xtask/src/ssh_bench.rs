//! `cargo xtask bench ssh`: the SSH emulator against Debian's own sshd
//! 9.2p1, in one lab, in the same run.
//!
//! Two deckies, both Debian: `ours` serves SSH from the engine (persona
//! OpenSSH 9.2p1, one account with a known password); `peer` has no SSH
//! service, and the real sshd runs in its namespace. One client, the
//! `load` example of emulators/ssh (a small tokio client built on the
//! crate's transport pieces), drives both from the attacker namespace.
//!
//! - Memory: 1,000 logged-in pty shells, idle at their prompt, held by one
//!   client process; the engine's RSS before and after, per session, and the
//!   same for sshd (the sum over its processes: listener, per-connection
//!   monitor and session processes, the user's bash).
//! - Handshakes per second: 64 concurrent loops of connect → curve25519 →
//!   chacha20-poly1305 → password → exec `true` → close, in rounds that take
//!   turns between the servers; the medians, and each server's CPU time
//!   per handshake (from /proc, steadier than the rate on a loaded machine).
//!
//! sshd is not installed: its Debian package is unpacked into
//! `/var/cache/decnet-ci/peers/openssh-server/` (as `.ci/run` does; or
//! `DECNET_PEER_SSHD` names the binary). It runs with
//! `UsePAM no`, so it checks passwords against /etc/shadow; its users exist
//! only in a private mount namespace, where the bench's own passwd, group
//! and shadow files are bind-mounted over /etc's and /run and /var/log are
//! empty tmpfs (nothing of the machine's accounts or login records changes).

use std::io::{BufRead, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid};

use crate::bench::{Instance, proc_kb, vm_rss_kb};

const ROUNDS: usize = 5;
const ROUND_S: f64 = 5.0;
const WORKERS: usize = 64;
const SESSIONS: usize = 1000;
/// The engine admits 128 concurrent sessions per source address: 1,000
/// sessions come from this many addresses of the attacker.
const SOURCES: usize = 10;
const TARGET_KB_PER_SESSION: f64 = 200.0;
const PEERS: &str = "/var/cache/decnet-ci/peers";
const USER: &str = "decnet-bench";
/// The same password, hashed with SHA-512-crypt instead of yescrypt.
const USER_SHA512: &str = "decnet-bench6";
const PASSWORD: &str = "Tr0ub4dor-bench";
/// A fixed salt: the hash only has to be of Debian 12's kind (yescrypt,
/// pam_unix's default cost), not secret.
const YESCRYPT_SALT: &str = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$";
const SHA512_SALT: &str = "$6$decnetbenchsalt$";

pub(crate) fn ssh() -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the ssh benchmark builds namespaces: run it as root"
    );
    let sshd = sshd_binary()?;
    crate::cargo(&["build", "--release", "--locked", "-p", "decnet"])?;
    crate::cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "decnet-emu-ssh",
        "--example",
        "load",
    ])?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // 1,000 sessions are 1,000 sockets for the client (and more for sshd).
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)?;
    ensure!(
        hard >= 4 * SESSIONS as u64,
        "RLIMIT_NOFILE's hard limit ({hard}) is too low"
    );

    let instance = Instance::new("bss", "release")?;
    let fleet = instance.dir.join("fleet.ini");
    std::fs::write(
        &fleet,
        format!(
            "[ours]\nservices = ssh\ndistro = debian\n\n[ours.ssh]\nusers = {USER}:{PASSWORD}\n\n\
             [peer]\nservices = http\ndistro = debian\n"
        ),
    )?;
    instance.run(&["lab", "up", "-c", fleet.to_str().context("a UTF-8 temp dir")?])?;
    let status: serde_json::Value = serde_json::from_str(&instance.run(&["status", "--json"])?)?;
    let decky = |name: &str| -> anyhow::Result<(Ipv4Addr, String)> {
        let d = status["deckies"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["name"] == name))
            .with_context(|| format!("decky {name} in status"))?;
        Ok((
            d["ip"].as_str().context("ip")?.parse()?,
            d["netns"].as_str().context("netns")?.to_string(),
        ))
    };
    let (ours_ip, _) = decky("ours")?;
    let (peer_ip, peer_netns) = decky("peer")?;
    let lab = Lab {
        netns: format!("{}.attacker", instance.prefix),
        load: root.join("target/release/examples/load"),
    };
    // Many short connections: let the client reuse ports left in TIME_WAIT.
    for setting in ["net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000"] {
        instance.run(&["lab", "exec", "--", "sysctl", "-q", "-w", setting])?;
    }
    let sources = lab.add_sources(&instance, &status)?;
    let sshd = Sshd::start(&sshd, &peer_netns, peer_ip, &instance.dir.join("sshd"))?;
    let engine = std::fs::read_to_string(instance.dir.join("run/engine.pid"))?
        .trim()
        .to_string();
    let ours = Target {
        name: "ours",
        addr: format!("{ours_ip}:22"),
        user: USER,
    };
    let peer = Target {
        name: "sshd",
        addr: format!("{peer_ip}:22"),
        user: USER,
    };
    let peer_sha512 = Target {
        name: "sshd (SHA-512-crypt)",
        addr: format!("{peer_ip}:22"),
        user: USER_SHA512,
    };

    // Memory first, on a fresh engine: after thousands of handshakes its
    // allocator would hold freed memory the sessions could reuse unseen.
    println!("ssh benchmark, load average {}", load_average());
    let engine_kb = |field: &str| proc_kb(&format!("/proc/{engine}/smaps_rollup"), field);
    lab.hold(&ours, 1, &sources[..1])?.close()?; // warm up: first-use work is per decky, not per session
    settle("the engine's SSH sessions", || {
        Ok(active_sessions(&instance, "ours")? == 0)
    })?;
    let before = (vm_rss_kb(&engine)?, engine_kb("Pss")?);
    let held = lab.hold(&ours, SESSIONS, &sources)?;
    std::thread::sleep(Duration::from_secs(2));
    let after = (vm_rss_kb(&engine)?, engine_kb("Pss")?);
    let active = active_sessions(&instance, "ours")?;
    held.close()?;
    ensure!(
        active >= SESSIONS as u64,
        "the engine reports {active} active SSH sessions, not {SESSIONS}"
    );

    lab.hold(&peer, 1, &sources[..1])?.close()?;
    settle("sshd's session processes", || Ok(sshd.tree().len() == 1))?;
    let sshd_before = sshd.memory()?;
    let held = lab.hold(&peer, SESSIONS, &sources)?;
    std::thread::sleep(Duration::from_secs(2));
    let sshd_after = sshd.memory()?;
    held.close()?;

    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / SESSIONS as f64;
    let ours_rss = per(after.0, before.0);
    println!("  {SESSIONS} idle pty shells at their prompt (one client process, {SOURCES} source addresses):");
    println!(
        "    ours: engine RSS {:.1} → {:.1} MB: {ours_rss:6.1} KB per session (PSS {:.1} KB)  target ≤ {TARGET_KB_PER_SESSION} KB  {:.2}× target",
        before.0 as f64 / 1024.0,
        after.0 as f64 / 1024.0,
        per(after.1, before.1),
        ours_rss / TARGET_KB_PER_SESSION
    );
    let sshd_pss = per(sshd_after.pss, sshd_before.pss);
    println!(
        "    peer sshd: {} → {} processes, PSS {:.1} → {:.1} MB: {sshd_pss:6.1} KB per session (summed RSS {:.1} KB); ours/sshd {:.3}×",
        sshd_before.processes,
        sshd_after.processes,
        sshd_before.pss as f64 / 1024.0,
        sshd_after.pss as f64 / 1024.0,
        per(sshd_after.rss, sshd_before.rss),
        ours_rss / sshd_pss
    );

    let targets = [&ours, &peer, &peer_sha512];
    for t in targets {
        lab.handshakes(t, 1.0)?; // warm up
    }
    let cpu = |t: &Target| -> anyhow::Result<u64> {
        match t.name {
            "ours" => cpu_ticks(&engine, false),
            _ => cpu_ticks(&sshd.pid().to_string(), true),
        }
    };
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); targets.len()];
    for round in 0..ROUNDS {
        // Rotate who goes first, so that drifting load hits each alike.
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let ticks = cpu(targets[i])?;
            let mut run = lab.handshakes(targets[i], ROUND_S)?;
            run.cpu_ticks = cpu(targets[i])? - ticks;
            runs[i].push(run);
        }
    }
    let tick_ms = 1000.0 / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    println!(
        "  handshakes: {WORKERS} concurrent loops of connect, curve25519-sha256, chacha20-poly1305@openssh.com, ssh-ed25519 host key, password, exec `true`, close; {ROUNDS} rounds of {ROUND_S} s in turn, medians"
    );
    let medians: Vec<f64> = runs.iter().map(|r| median(r.iter().map(|r| r.per_s))).collect();
    for (i, t) in targets.iter().enumerate() {
        let handshakes: u64 = runs[i].iter().map(|r| r.handshakes).sum();
        let errors: u64 = runs[i].iter().map(|r| r.errors).sum();
        let ticks: u64 = runs[i].iter().map(|r| r.cpu_ticks).sum();
        let rates: Vec<String> = runs[i].iter().map(|r| format!("{:.0}", r.per_s)).collect();
        print!(
            "    {:<21} {:>7.1} handshakes/s  ({}; {errors} failed)  server CPU {:.2} ms per handshake, client busy {:.0}%",
            t.name,
            medians[i],
            rates.join(" "),
            ticks as f64 * tick_ms / handshakes.max(1) as f64,
            median(runs[i].iter().map(|r| r.client_busy)) * 100.0
        );
        if i == 0 {
            println!();
        } else {
            // Rounds ran back to back: the median of their ratios cancels
            // most of the machine's drifting load.
            let ratio = median(runs[0].iter().zip(&runs[i]).map(|(o, p)| o.per_s / p.per_s));
            println!(
                "  ours/this {ratio:.2}×  target ≥ 1×  {}",
                if ratio >= 1.0 { "met" } else { "MISSED" }
            );
        }
        if let Some(e) = runs[i].iter().find_map(|r| r.first_error.as_deref()) {
            println!("      first failure: {e}");
        }
    }
    println!(
        "  limits: ours: the engine's 128 concurrent sessions per source address and 1,024 per service, \
         the emulator's 20 ms (±25%) greeting delay (sshd's fork and re-exec); \
         sshd: MaxStartups {MAX_STARTUPS} (default 10:30:100 drops connections beyond 10 unauthenticated), UsePAM no, \
         password hashes yescrypt (Debian 12's default) and SHA-512-crypt"
    );
    drop(sshd);
    Ok(())
}

/// sshd's MaxStartups for the bench: no early drops at this concurrency.
const MAX_STARTUPS: usize = 4000;

struct Target {
    name: &'static str,
    addr: String,
    user: &'static str,
}

#[derive(Debug, Clone)]
struct Run {
    handshakes: u64,
    errors: u64,
    per_s: f64,
    first_error: Option<String>,
    cpu_ticks: u64,
    /// The client's CPU time over the run's: 1.0 is one core, all it can use.
    client_busy: f64,
}

/// CPU seconds of this process's children that have ended.
fn children_cpu_s() -> anyhow::Result<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(s(usage.user_time()) + s(usage.system_time()))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The attacker's side: its namespace and the load client.
struct Lab {
    netns: String,
    load: PathBuf,
}

impl Lab {
    fn load(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(&self.load).args(args);
        cmd
    }

    /// Adds SOURCES addresses of the lab's subnet, unused by anything else,
    /// to the attacker's interface (they go with the namespace).
    fn add_sources(&self, instance: &Instance, status: &serde_json::Value) -> anyhow::Result<Vec<String>> {
        let lab: serde_json::Value =
            serde_json::from_slice(&std::fs::read(instance.dir.join("state/lab.json")).context("lab.json")?)?;
        let subnet = lab["subnet"].as_str().context("the lab's subnet")?;
        let (net, bits) = subnet.split_once('/').context("a CIDR subnet")?;
        let (net, bits): (Ipv4Addr, u32) = (net.parse()?, bits.parse()?);
        ensure!(bits <= 24, "the lab subnet {subnet} is too small");
        let mut used: Vec<String> = vec![lab["attacker_ip"].as_str().unwrap_or_default().to_string()];
        used.extend(status["hairpin"]["ip"].as_str().map(String::from));
        used.extend(
            status["deckies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["ip"].as_str().map(String::from)),
        );
        let sources: Vec<String> = (100..250)
            .map(|i| Ipv4Addr::from(u32::from(net) + i).to_string())
            .filter(|ip| !used.contains(ip))
            .take(SOURCES)
            .collect();
        for ip in &sources {
            let ok = Command::new("ip")
                .args(["netns", "exec", &self.netns, "ip", "addr", "add"])
                .arg(format!("{ip}/{bits}"))
                .args(["dev", "eth0"])
                .status()?;
            ensure!(ok.success(), "adding {ip} to the attacker");
        }
        Ok(sources)
    }

    fn handshakes(&self, t: &Target, seconds: f64) -> anyhow::Result<Run> {
        let client_before = children_cpu_s()?;
        let out = self
            .load(&[
                "handshakes",
                &t.addr,
                t.user,
                PASSWORD,
                &WORKERS.to_string(),
                &seconds.to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()?;
        ensure!(out.status.success(), "the load client failed against {}", t.name);
        let client_cpu_s = children_cpu_s()? - client_before;
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).context("the load client's output")?;
        let handshakes = r["handshakes"].as_u64().context("handshakes")?;
        ensure!(
            handshakes > 0,
            "no handshake with {} succeeded: {}",
            t.name,
            r["first_error"]
        );
        let seconds = r["seconds"].as_f64().context("seconds")?;
        Ok(Run {
            handshakes,
            errors: r["errors"].as_u64().context("errors")?,
            per_s: handshakes as f64 / seconds,
            first_error: r["first_error"].as_str().map(String::from),
            cpu_ticks: 0,
            client_busy: client_cpu_s / seconds,
        })
    }

    /// Opens `n` pty shells and returns once all sit at their prompt.
    fn hold(&self, t: &Target, n: usize, sources: &[String]) -> anyhow::Result<Held> {
        let mut child = self
            .load(&["hold", &t.addr, t.user, PASSWORD, &n.to_string(), &sources.join(",")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let held = Held { child, stdin };
        let mut line = String::new();
        let started = Instant::now();
        if let Some(out) = stdout {
            BufReader::new(out).read_line(&mut line)?;
        }
        ensure!(
            line.trim() == format!("ready {n}"),
            "the load client did not open {n} sessions to {}",
            t.name
        );
        eprintln!(
            "+ {n} sessions to {} open in {:.1} s",
            t.name,
            started.elapsed().as_secs_f64()
        );
        Ok(held)
    }
}

/// A load client holding sessions open; they close with its stdin.
struct Held {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Held {
    fn close(mut self) -> anyhow::Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let status = self.child.wait()?;
        ensure!(status.success(), "the load client failed ({status})");
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stdin.take();
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits (up to 10 s) until `done`: the warm-up session has ended.
fn settle(what: &str, done: impl Fn() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done()? {
        ensure!(Instant::now() < deadline, "{what} did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn active_sessions(instance: &Instance, decky: &str) -> anyhow::Result<u64> {
    let status: serde_json::Value = serde_json::from_str(&instance.run(&["status", "--json"])?)?;
    status["deckies"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["name"] == decky))
        .and_then(|d| d["services"].as_array())
        .and_then(|ss| ss.iter().find(|s| s["slug"] == "ssh"))
        .and_then(|s| s["active"].as_u64())
        .context("the ssh service's active sessions in status")
}

/// user + system CPU ticks of `pid`, with those of its reaped children
/// when `children` (sshd's work happens in processes it forks).
fn cpu_ticks(pid: &str, children: bool) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces: state is field 3.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    ensure!(f.len() == 4, "utime..cstime in /proc/{pid}/stat");
    Ok(f[0] + f[1] + if children { f[2] + f[3] } else { 0 })
}

/// Debian's sshd: DECNET_PEER_SSHD, or the package unpacked under PEERS
/// (by `.ci/run`, or now, the same way).
fn sshd_binary() -> anyhow::Result<PathBuf> {
    let peers = Path::new(PEERS);
    let unpacked = peers.join("openssh-server/usr/sbin/sshd");
    let sshd = match std::env::var_os("DECNET_PEER_SSHD") {
        Some(p) => PathBuf::from(p),
        None if unpacked.is_file() => unpacked,
        None => {
            let debs = peers.join("debs");
            std::fs::create_dir_all(&debs)?;
            // The package only: installing it would start a system sshd.
            let ok = Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=300", "download", "-q", "openssh-server"])
                .current_dir(&debs)
                .status()
                .context("apt-get download openssh-server")?;
            ensure!(ok.success(), "apt-get download openssh-server failed");
            let deb = std::fs::read_dir(&debs)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .context("the downloaded .deb")?;
            let ok = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(peers.join("openssh-server"))
                .status()?;
            ensure!(ok.success(), "dpkg-deb -x {}", deb.display());
            unpacked
        }
    };
    let out = Command::new(&sshd)
        .arg("-V")
        .output()
        .with_context(|| format!("running {}", sshd.display()))?;
    let version = String::from_utf8_lossy(&out.stderr);
    ensure!(
        version.starts_with("OpenSSH_9.2"),
        "{} is not a working OpenSSH 9.2 (its libraries?): {version}",
        sshd.display()
    );
    Ok(sshd)
}

/// Debian's sshd, running in a decky's namespace with the bench's users.
struct Sshd {
    child: Child,
}

/// Memory of a process tree.
struct Memory {
    processes: usize,
    rss: u64,
    pss: u64,
}

impl Sshd {
    fn start(bin: &Path, netns: &str, ip: Ipv4Addr, dir: &Path) -> anyhow::Result<Sshd> {
        std::fs::create_dir_all(dir)?;
        let key = dir.join("ssh_host_ed25519_key");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .context("ssh-keygen (openssh-client)")?;
        ensure!(ok.success(), "ssh-keygen failed");

        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let group = std::fs::read_to_string("/etc/group")?;
        let taken = |file: &str, id: u32| file.lines().any(|l| l.split(':').nth(2) == Some(&id.to_string()));
        let free: Vec<u32> = (60_000..65_000)
            .filter(|&id| !taken(&passwd, id) && !taken(&group, id))
            .take(3)
            .collect();
        let mut free = free.into_iter();
        let (mut passwd, mut group) = (passwd, group);
        let mut shadow = String::new();
        if !passwd.lines().any(|l| l.starts_with("sshd:")) {
            // Privilege separation runs as `sshd` (the package adds it).
            let id = free.next().context("a free uid")?;
            passwd.push_str(&format!("sshd:x:{id}:65534::/run/sshd:/usr/sbin/nologin\n"));
        }
        for (user, salt) in [(USER, YESCRYPT_SALT), (USER_SHA512, SHA512_SALT)] {
            let id = free.next().context("a free uid")?;
            let home = dir.join(user);
            std::fs::create_dir_all(&home)?;
            nix::unistd::chown(&home, Some(Uid::from_raw(id)), Some(Gid::from_raw(id)))?;
            passwd.push_str(&format!("{user}:x:{id}:{id}::{}:/bin/bash\n", home.display()));
            group.push_str(&format!("{user}:x:{id}:\n"));
            shadow.push_str(&format!("{user}:{}:19000:0:99999:7:::\n", crypt(PASSWORD, salt)?));
        }
        std::fs::write(dir.join("passwd"), passwd)?;
        std::fs::write(dir.join("group"), group)?;
        std::fs::write(dir.join("shadow"), shadow)?;
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {ip}:22\nHostKey {}\nPidFile {}\nUsePAM no\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication no\nPermitRootLogin no\n\
                 AllowUsers {USER} {USER_SHA512}\nMaxStartups {MAX_STARTUPS}\n",
                key.display(),
                dir.join("sshd.pid").display()
            ),
        )?;
        let log = dir.join("sshd.log");
        // `ip netns exec` gives the command a mount namespace of its own
        // (a slave of the host's): these mounts never reach the machine.
        let d = dir.display();
        let script = format!(
            "set -e\n\
             mount --bind {d}/passwd /etc/passwd\n\
             mount --bind {d}/group /etc/group\n\
             mount --bind {d}/shadow /etc/shadow\n\
             mount -t tmpfs -o mode=0755 decnet-bench /run\n\
             mkdir -m 0755 /run/sshd\n\
             mount -t tmpfs -o mode=0755 decnet-bench /var/log\n\
             exec {} -D -e -f {}\n",
            bin.display(),
            config.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let sshd = Sshd { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if said.contains("Server listening on") {
                return Ok(sshd);
            }
            if Instant::now() > deadline || said.contains("fatal") || said.contains("sh: ") {
                bail!("sshd did not start:\n{said}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every process of the tree: the listener and its descendants.
    fn tree(&self) -> Vec<u32> {
        let mut parents: Vec<(u32, u32)> = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
            {
                parents.push((pid, ppid));
            }
        }
        let mut tree = vec![self.pid()];
        let mut i = 0;
        while i < tree.len() {
            let p = tree[i];
            tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(pid, _)| *pid));
            i += 1;
        }
        tree
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let mut m = Memory {
            processes: 0,
            rss: 0,
            pss: 0,
        };
        for pid in self.tree() {
            let rollup = format!("/proc/{pid}/smaps_rollup");
            // A process may end between listing and reading.
            if let (Ok(rss), Ok(pss)) = (proc_kb(&rollup, "Rss"), proc_kb(&rollup, "Pss")) {
                m.processes += 1;
                m.rss += rss;
                m.pss += pss;
            }
        }
        Ok(m)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions outlive the listener: end them all.
        for pid in self.tree() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// crypt(3) through perl (always on Debian), as libcrypt makes it for
/// /etc/shadow.
fn crypt(password: &str, salt: &str) -> anyhow::Result<String> {
    let out = Command::new("perl")
        .args(["-e", "print crypt($ARGV[0], $ARGV[1])", password, salt])
        .output()
        .context("perl")?;
    let hash = String::from_utf8(out.stdout)?;
    ensure!(hash.starts_with(&salt[..3]), "crypt({salt}) failed: {hash:?}");
    Ok(hash)
}
