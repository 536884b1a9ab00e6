//! The `Lab` fixture: a private instance of DECNET (own prefix, own state,
//! run and log directories) with its lab LAN, torn down on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) mod peer_sshd;
pub(crate) mod rsyslog;
pub(crate) mod ssh_probe;

/// Whether this process may build labs; under CI it must.
pub(crate) fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root; the end-to-end tests need it"
        );
        eprintln!("skipped: the end-to-end tests need root");
    }
    root
}

/// A unique instance prefix: `t` + process id + a counter (≤ 10 characters).
fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("t{}{}", std::process::id() % 100_000, (b'a' + (n % 26) as u8) as char)
}

/// Labs share the machine; a test that measures timing (nmap's view of a
/// decky's clocks) runs with no other lab up.
static MACHINE: RwLock<()> = RwLock::new(());

enum Share {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

pub(crate) struct Lab {
    pub(crate) prefix: String,
    dir: tempfile::TempDir,
    pub(crate) subnet: String,
    pub(crate) attacker: String,
    /// What `lab up` printed.
    pub(crate) up: Output,
    /// Released after the lab is down (fields drop after `Drop::drop`).
    _share: Share,
}

impl Lab {
    /// `decnet lab up` with `args` (e.g. `["-c", file]`).
    pub(crate) fn up(args: &[&str]) -> Lab {
        let share = Share::Shared(MACHINE.read().unwrap_or_else(|p| p.into_inner()));
        Self::up_sharing(args, share)
    }

    /// Like [`Lab::up_ok`], with no other lab up while it lives.
    pub(crate) fn up_alone_ok(args: &[&str]) -> Lab {
        let share = Share::Alone(MACHINE.write().unwrap_or_else(|p| p.into_inner()));
        let lab = Self::up_sharing(args, share);
        assert!(lab.up.status.success(), "lab up failed:\n{}", lab.explain(&lab.up));
        lab
    }

    fn up_sharing(args: &[&str], share: Share) -> Lab {
        let prefix = unique_prefix();
        let dir = tempfile::tempdir().unwrap();
        let mut lab = Lab {
            prefix,
            dir,
            subnet: String::new(),
            attacker: String::new(),
            up: Output {
                status: std::process::ExitStatus::default(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
            _share: share,
        };
        let mut full = vec!["lab", "up"];
        full.extend_from_slice(args);
        lab.up = lab.decnet(&full);
        let record: Value =
            serde_json::from_slice(&std::fs::read(lab.state_dir().join("lab.json")).unwrap_or_default())
                .unwrap_or(Value::Null);
        lab.subnet = record["subnet"].as_str().unwrap_or_default().to_string();
        lab.attacker = record["attacker_ip"].as_str().unwrap_or_default().to_string();
        lab
    }

    /// Like [`Lab::up`], and fails the test unless it succeeded.
    pub(crate) fn up_ok(args: &[&str]) -> Lab {
        let lab = Lab::up(args);
        assert!(lab.up.status.success(), "lab up failed:\n{}", lab.explain(&lab.up));
        lab
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `decnet` command of this instance.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_decnet"));
        cmd.current_dir(self.dir.path())
            .args(["--prefix", &self.prefix])
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--run-dir")
            .arg(self.run_dir())
            .arg("--log-dir")
            .arg(self.log_dir())
            .env_remove("DECNET_SEED")
            .env_remove("DECNET_PERSONAS");
        cmd
    }

    pub(crate) fn decnet(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs `decnet` and fails the test unless it succeeds.
    pub(crate) fn decnet_ok(&self, args: &[&str]) -> String {
        let out = self.decnet(args);
        assert!(out.status.success(), "decnet {args:?} failed:\n{}", self.explain(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command in the attacker namespace.
    pub(crate) fn attack(&self, command: &[&str]) -> Output {
        let mut full = vec!["lab", "exec", "--"];
        full.extend_from_slice(command);
        self.decnet(&full)
    }

    pub(crate) fn status(&self) -> Value {
        serde_json::from_str(&self.decnet_ok(&["status", "--json"])).unwrap()
    }

    /// Every event logged so far.
    pub(crate) fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log_dir().join("decnet.json"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until an event matches (events are written asynchronously).
    pub(crate) fn wait_for_event(&self, what: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| what(e)) {
                return e;
            }
            assert!(Instant::now() < deadline, "no such event; events: {:#?}", self.events());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn engine_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.run_dir().join("engine.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `decnet engine run` started by hand, as systemd would.
    pub(crate) fn spawn_engine(&self) -> Child {
        self.command()
            .args(["engine", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `kill -9` the engine and wait until it is gone. `ours`: the engine
    /// this test spawned, which must be reaped (a zombie still answers
    /// signals).
    pub(crate) fn kill_engine(&self, ours: Option<&mut Child>) {
        let pid = nix::unistd::Pid::from_raw(self.engine_pid().unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        if let Some(child) = ours {
            child.wait().unwrap();
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while nix::sys::signal::kill(pid, None).is_ok() {
            assert!(Instant::now() < deadline, "the engine did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// This instance's namespaces and links that exist right now.
    pub(crate) fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        found.extend(
            std::fs::read_dir("/sys/class/net")
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
        found.retain(|n| n.starts_with(&format!("{}-", self.prefix)) || n.starts_with(&format!("{}.", self.prefix)));
        found.sort();
        found
    }

    pub(crate) fn explain(&self, out: &Output) -> String {
        let log = std::fs::read_to_string(self.log_dir().join("engine.log")).unwrap_or_default();
        format!(
            "status: {}\nstdout:\n{}\nstderr:\n{}\nengine.log (tail):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Deploy flags that put a fleet on this lab's LAN (as `lab up` does).
    pub(crate) fn network_flags(&self) -> Vec<String> {
        vec![
            "-i".into(),
            format!("{}.lan", self.prefix),
            "--subnet".into(),
            self.subnet.clone(),
            "--gateway".into(),
            self.attacker.clone(),
        ]
    }

    /// `decnet deploy` with `args` on this lab's LAN.
    pub(crate) fn deploy_on_lan(&self, args: &[&str]) -> Output {
        let mut full: Vec<String> = vec!["deploy".into()];
        full.extend(args.iter().map(|a| a.to_string()));
        full.extend(self.network_flags());
        self.command().args(&full).output().unwrap()
    }

    /// An address of the lab subnet (`host(10)` → `x.y.z.10`).
    pub(crate) fn host(&self, last: u8) -> String {
        let base = self.subnet.split('/').next().unwrap();
        let mut octets: Vec<&str> = base.split('.').collect();
        let last = last.to_string();
        octets[3] = &last;
        octets.join(".")
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.decnet(&["lab", "down"]);
        // Whatever `lab down` could not do (a test that broke the engine …).
        if let Some(pid) = self.engine_pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        for name in self.leftovers() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            let _ = Command::new("ip").args(["link", "del", &name]).output();
        }
    }
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `decnet personalities --json` of the built-in catalogue.
pub(crate) fn personalities_json() -> Value {
    let listing = Command::new(env!("CARGO_BIN_EXE_decnet"))
        .args(["personalities", "--json"])
        .env_remove("DECNET_PERSONAS")
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", stderr(&listing));
    serde_json::from_slice(&listing.stdout).unwrap()
}
