//! Everything a decky's shell knows about its machine, prepared once per decky:
//! the persona's filesystem data (`personas/fs/*.toml`), the distro, the
//! decky's addresses and the seeded choices (CPU, memory, lived-in files).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use decnet_core::catalogue::Distro;
use decnet_core::seed::{DeckySeed, SeedRng};
use serde::Deserialize;

use crate::fs::{BaseTree, Device, Generated, Node, NodeKind, Overlay, OverlayLimits};

/// The filesystem data compiled in (`personas/fs/`).
const COMMON: &str = include_str!("../../../personas/fs/linux.toml");
const FAMILIES: &[(&str, &str)] = &[
    ("debian.toml", include_str!("../../../personas/fs/debian.toml")),
    ("rhel.toml", include_str!("../../../personas/fs/rhel.toml")),
    ("alpine.toml", include_str!("../../../personas/fs/alpine.toml")),
    ("arch.toml", include_str!("../../../personas/fs/arch.toml")),
];

/// Whether writes are seen only by the session that made them or by every
/// session of the decky.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayScope {
    /// Each session starts from the pristine tree (the default).
    #[default]
    Session,
    /// Every session of the decky shares one overlay.
    Decky,
}

/// A login account of the decky.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Its password (what `sudo` accepts).
    pub password: String,
}

/// The decky facts the shell needs (the SSH/Telnet emulator fills these from
/// its `DeckyInfo` and persona).
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// Host name (`hostname`, prompt, `/etc/hostname`).
    pub hostname: String,
    /// The decky's address on its LAN.
    pub ip: Ipv4Addr,
    /// Prefix length of its LAN.
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: Ipv4Addr,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// The distro it imitates (from the persona catalogue).
    pub distro: Distro,
    /// `uname -r` when the persona overrides the distro's kernel.
    pub kernel_release: Option<String>,
    /// Accounts that can log in (root is added when missing).
    pub accounts: Vec<Account>,
    /// The decky's seed.
    pub seed: DeckySeed,
    /// Sockets `netstat`/`ss` list: (port, udp, program), e.g. `(22, false, "sshd")`.
    pub listening: Vec<(u16, bool, String)>,
    /// Where writes go.
    pub overlay: OverlayScope,
    /// Bounds of each overlay.
    pub overlay_limits: OverlayLimits,
    /// The time the host is prepared (seconds since the epoch); boot time and
    /// file dates are derived from it and the seed.
    pub now: i64,
}

/// Why a host could not be prepared (a broken `personas/fs` file).
#[derive(Debug)]
pub struct HostError(pub String);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "personas/fs: {}", self.0)
    }
}

impl std::error::Error for HostError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonData {
    dirs: Vec<String>,
    modes: BTreeMap<String, u32>,
    bin: Vec<String>,
    sbin: Vec<String>,
    processes: Vec<(String, String)>,
    history: Vec<String>,
    key_comments: Vec<String>,
    cpu_models: Vec<[String; 7]>,
    cpu_counts: Vec<u32>,
    mem_kb: Vec<u64>,
    disk_kb: Vec<u64>,
    net: BTreeMap<String, String>,
    files: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DistroOverride {
    package_manager: Option<String>,
    bash_version: Option<String>,
    motd: Option<String>,
    #[serde(default)]
    net: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyData {
    distros: Vec<String>,
    usr_merged: bool,
    sudo_group: String,
    package_manager: String,
    bash_version: String,
    #[serde(default)]
    extra_bin: Vec<String>,
    passwd: Vec<String>,
    groups: Vec<String>,
    shadow_days: u32,
    #[serde(default)]
    motd: String,
    #[serde(default)]
    net: BTreeMap<String, String>,
    #[serde(default)]
    distro: BTreeMap<String, DistroOverride>,
    #[serde(default)]
    files: BTreeMap<String, String>,
}

/// A user as the shell sees it.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Group ids, primary first.
    pub gids: Vec<u32>,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// Password, when it is a login account.
    pub password: Option<String>,
}

/// A decky's prepared shell world; cheap to share between sessions.
#[derive(Debug, Clone)]
pub struct ShellHost {
    pub(crate) inner: Arc<HostInner>,
}

#[derive(Debug)]
pub(crate) struct HostInner {
    pub(crate) facts: HostFacts,
    pub(crate) release: String,
    pub(crate) base: Arc<BaseTree>,
    pub(crate) decky_overlay: Arc<Mutex<Overlay>>,
    pub(crate) users: Vec<User>,
    pub(crate) groups: Vec<(String, u32, Vec<String>)>,
    pub(crate) processes: Vec<(String, String, u32)>,
    pub(crate) package_manager: String,
    pub(crate) bash_version: String,
    pub(crate) boot_time: i64,
    pub(crate) cpus: u32,
    pub(crate) cpu_model: String,
    pub(crate) mem_kb: u64,
    pub(crate) disk_kb: u64,
    pub(crate) disk_used_kb: u64,
    pub(crate) sudo_group: String,
    pub(crate) motd: String,
    /// Message templates of the network tools (`wget_no_route` …).
    pub(crate) net: BTreeMap<String, String>,
}

impl ShellHost {
    /// Prepares a decky's shell world from the compiled-in `personas/fs` data.
    pub fn new(facts: HostFacts) -> Result<Self, HostError> {
        let common: CommonData = toml::from_str(COMMON).map_err(|e| HostError(format!("linux.toml: {e}")))?;
        let mut family = None;
        for (file, text) in FAMILIES {
            let data: FamilyData = toml::from_str(text).map_err(|e| HostError(format!("{file}: {e}")))?;
            if data.distros.contains(&facts.distro.slug) {
                family = Some(data);
                break;
            }
        }
        let family = match family {
            Some(f) => f,
            // An unknown distro gets the Debian layout rather than no shell.
            None => toml::from_str(FAMILIES[0].1).map_err(|e| HostError(format!("debian.toml: {e}")))?,
        };
        Ok(Self {
            inner: Arc::new(build(facts, &common, &family)?),
        })
    }

    /// What the login prints before the first prompt (pam_motd): the
    /// distro's message of the day, with this host's kernel line.
    pub fn motd(&self) -> &str {
        &self.inner.motd
    }

    /// Host name.
    pub fn hostname(&self) -> &str {
        &self.inner.facts.hostname
    }

    /// The login account `name`, if it may log in, and its password.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.inner.facts.accounts.iter().find(|a| a.name == name)
    }

    /// The user `name` (any account in `/etc/passwd`).
    pub fn user(&self, name: &str) -> Option<&User> {
        self.inner.users.iter().find(|u| u.name == name)
    }

    /// The root filesystem's size and use in KiB, as `df` shows it with
    /// `fs`'s writes counted.
    pub fn root_disk_kb(&self, fs: &crate::fs::Fs) -> (u64, u64) {
        let used = self.inner.disk_used_kb + (fs.snapshot().bytes() / 1024) as u64;
        (self.inner.disk_kb, used)
    }

    /// A view of the fake filesystem with a fresh (or the decky's) overlay.
    pub fn filesystem(&self) -> crate::fs::Fs {
        let overlay = match self.inner.facts.overlay {
            OverlayScope::Decky => self.inner.decky_overlay.clone(),
            OverlayScope::Session => Arc::new(Mutex::new(Overlay::new(self.inner.facts.overlay_limits))),
        };
        crate::fs::Fs::new(self.inner.base.clone(), overlay)
    }
}

fn template(text: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn hex(rng: &mut SeedRng, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf);
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn build(facts: HostFacts, common: &CommonData, family: &FamilyData) -> Result<HostInner, HostError> {
    let seed = facts.seed;
    let over = family.distro.get(&facts.distro.slug);
    let package_manager = over
        .and_then(|o| o.package_manager.clone())
        .unwrap_or_else(|| family.package_manager.clone());
    let bash_version = over
        .and_then(|o| o.bash_version.clone())
        .unwrap_or_else(|| family.bash_version.clone());
    let release = facts
        .kernel_release
        .clone()
        .unwrap_or_else(|| facts.distro.kernel.release.clone());

    let mut rng = seed.rng_for("shell.host");
    let boot_time = facts.now - rng.range(3 * 86_400, 120 * 86_400) as i64 - rng.below(86_400) as i64;
    let install_time = boot_time - rng.range(60 * 86_400, 700 * 86_400) as i64;
    let cpu = rng.pick(&common.cpu_models).clone();
    let cpus = *rng.pick(&common.cpu_counts);
    let mem_kb = *rng.pick(&common.mem_kb);
    let disk_kb = *rng.pick(&common.disk_kb);
    let disk_used_kb = disk_kb * rng.range(18, 64) / 100;
    let machine_id = hex(&mut rng, 16);
    let root_uuid = {
        let h = hex(&mut rng, 16);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    };

    // Accounts: root first, then the persona's users as uid 1000, 1001 …
    let mut accounts = facts.accounts.clone();
    if !accounts.iter().any(|a| a.name == "root") {
        accounts.insert(
            0,
            Account {
                name: "root".into(),
                password: String::new(),
            },
        );
    }
    let shell = facts.distro.shell.clone();
    let mut users = Vec::new();
    let mut passwd_lines: Vec<String> = Vec::new();
    for line in &family.passwd {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 7 {
            return Err(HostError(format!("passwd line {line:?} needs 7 fields")));
        }
        let uid = f[2].parse().map_err(|_| HostError(format!("bad uid in {line:?}")))?;
        let gid = f[3].parse().map_err(|_| HostError(format!("bad gid in {line:?}")))?;
        let password = accounts.iter().find(|a| a.name == f[0]).map(|a| a.password.clone());
        users.push(User {
            name: f[0].into(),
            uid,
            gids: vec![gid],
            home: f[5].into(),
            shell: f[6].into(),
            password,
        });
        passwd_lines.push(line.clone());
    }
    let sudo_gid = family
        .groups
        .iter()
        .find_map(|g| {
            let f: Vec<&str> = g.split(':').collect();
            (f.first() == Some(&family.sudo_group.as_str())).then(|| f.get(2)?.parse::<u32>().ok())?
        })
        .unwrap_or(27);
    let mut next_uid = 1000;
    let mut sudoers = Vec::new();
    let mut user_groups = Vec::new();
    for account in accounts.iter().filter(|a| a.name != "root") {
        if users.iter().any(|u| u.name == account.name) {
            continue;
        }
        let uid = next_uid;
        next_uid += 1;
        let home = format!("/home/{}", account.name);
        passwd_lines.push(format!("{0}:x:{uid}:{uid}:{0},,,:{home}:{shell}", account.name));
        user_groups.push(format!("{}:x:{uid}:", account.name));
        sudoers.push(account.name.clone());
        users.push(User {
            name: account.name.clone(),
            uid,
            gids: vec![uid, sudo_gid],
            home,
            shell: shell.clone(),
            password: Some(account.password.clone()),
        });
    }
    if let Some(root) = users.iter_mut().find(|u| u.name == "root") {
        root.shell = shell.clone();
        root.password = accounts.iter().find(|a| a.name == "root").map(|a| a.password.clone());
    }

    let mut group_lines = Vec::new();
    let mut groups = Vec::new();
    for g in family.groups.iter().chain(user_groups.iter()) {
        let line = g.replace("{sudoers}", &sudoers.join(",")).replace(
            "{sudoers_comma}",
            &sudoers.iter().map(|s| format!(",{s}")).collect::<String>(),
        );
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 4 {
            return Err(HostError(format!("group line {g:?} needs 4 fields")));
        }
        let gid = f[2].parse().map_err(|_| HostError(format!("bad gid in {g:?}")))?;
        let members = f[3].split(',').filter(|m| !m.is_empty()).map(str::to_string).collect();
        groups.push((f[0].to_string(), gid, members));
        group_lines.push(line);
    }

    let mut shadow = String::new();
    for u in &users {
        let hash = match &u.password {
            Some(_) => {
                let mut r = seed.rng_for(&format!("shell.shadow.{}", u.name));
                format!("$y$j9T${}${}", hex(&mut r, 11), hex(&mut r, 21))
            }
            None if u.uid == 0 => "*".to_string(),
            None => "*".to_string(),
        };
        let _ = writeln!(shadow, "{}:{hash}:{}:0:99999:7:::", u.name, family.shadow_days);
    }

    let ip = facts.ip.to_string();
    let mac = facts
        .mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("hostname", facts.hostname.clone());
    vars.insert("ip", ip);
    vars.insert("gateway", facts.gateway.to_string());
    vars.insert("mac", mac);
    vars.insert("machine_id", machine_id);
    vars.insert("root_uuid", root_uuid);
    vars.insert("release", release.clone());
    vars.insert(
        "pretty_name",
        facts
            .distro
            .os_release_field("PRETTY_NAME")
            .unwrap_or_else(|| facts.distro.display_name.clone()),
    );
    vars.insert("mounts", crate::commands::sysinfo::mounts_text());
    vars.insert(
        "uname",
        format!(
            "Linux {} {release} {} {}",
            facts.hostname, facts.distro.kernel.version, facts.distro.kernel.machine
        ),
    );
    let mut net = common.net.clone();
    net.extend(family.net.clone());
    if let Some(o) = over {
        net.extend(o.net.clone());
    }
    let motd_template = over.and_then(|o| o.motd.clone()).unwrap_or_else(|| family.motd.clone());
    let motd = template(motd_template.trim_start_matches('\n'), &vars);

    let mut base = BaseTree::new();
    let t = install_time;
    base.insert("/".into(), Node::dir(0o755, 0, 0, t));
    for d in &common.dirs {
        let mode = common.modes.get(d).copied().unwrap_or(0o755);
        base.insert(d.clone(), Node::dir(mode, 0, 0, t + rng.below(86_400) as i64));
    }
    let link = |target: &str| Node {
        kind: NodeKind::Symlink(target.into()),
        mode: 0o777,
        uid: 0,
        gid: 0,
        mtime: t,
    };
    let (bin_dir, sbin_dir) = if family.usr_merged {
        for (name, target) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            base.insert(name.into(), link(target));
        }
        base.insert("/usr/lib64".into(), Node::dir(0o755, 0, 0, t));
        ("/usr/bin", "/usr/sbin")
    } else {
        for d in ["/bin", "/sbin", "/lib"] {
            base.insert(d.into(), Node::dir(0o755, 0, 0, t));
        }
        ("/bin", "/sbin")
    };
    let stub = |name: &str, rng: &mut SeedRng| Node {
        kind: NodeKind::Program {
            name: name.into(),
            size: rng.range(14_000, 160_000),
        },
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: t + rng.below(30 * 86_400) as i64,
    };
    for name in common.bin.iter().chain(family.extra_bin.iter()) {
        base.insert(format!("{bin_dir}/{name}"), stub(name, &mut rng));
    }
    for name in &common.sbin {
        base.insert(format!("{sbin_dir}/{name}"), stub(name, &mut rng));
    }
    for (name, mode) in [("su", 0o4755), ("sudo", 0o4755), ("passwd", 0o4755)] {
        if let Some(node) = base.get_mut(&format!("{bin_dir}/{name}")) {
            node.mode = mode;
        }
    }

    let mut file = |path: &str, text: String, mode: u32, uid: u32, gid: u32| {
        // Parents exist so every file is reachable by `ls`.
        let mut p = crate::fs::parent_of(path);
        while p != "/" && !base.contains_key(&p) {
            base.insert(p.clone(), Node::dir(0o755, 0, 0, t));
            p = crate::fs::parent_of(&p);
        }
        base.insert(path.to_string(), Node::file(text.into_bytes(), mode, uid, gid, t));
    };
    for (path, text) in common.files.iter().chain(family.files.iter()) {
        let mode = if path.starts_with("/proc/") { 0o444 } else { 0o644 };
        file(path, template(text, &vars), mode, 0, 0);
    }
    let shadow_gid = groups.iter().find(|g| g.0 == "shadow").map_or(0, |g| g.1);
    file("/etc/os-release", facts.distro.os_release.clone(), 0o644, 0, 0);
    // /etc/motd holds the static part; the kernel line comes from update-motd.
    let static_motd = motd
        .split_once("\n\n")
        .filter(|_| motd.starts_with("Linux "))
        .map_or(motd.as_str(), |(_, rest)| rest);
    file("/etc/motd", static_motd.to_string(), 0o644, 0, 0);
    file("/etc/issue", facts.distro.issue.clone(), 0o644, 0, 0);
    file("/etc/passwd", passwd_lines.join("\n") + "\n", 0o644, 0, 0);
    file("/etc/group", group_lines.join("\n") + "\n", 0o644, 0, 0);
    file("/etc/shadow", shadow, 0o640, 0, shadow_gid);
    file(
        "/proc/version",
        facts
            .distro
            .proc_version()
            .replace(&facts.distro.kernel.release, &release)
            + "\n",
        0o444,
        0,
        0,
    );
    file(
        "/proc/cpuinfo",
        crate::commands::sysinfo::cpuinfo(&cpu, cpus),
        0o444,
        0,
        0,
    );
    file(
        "/proc/meminfo",
        crate::commands::sysinfo::meminfo(mem_kb, &mut rng),
        0o444,
        0,
        0,
    );
    for (path, g) in [
        ("/proc/uptime", Generated::Uptime),
        ("/proc/loadavg", Generated::LoadAvg),
    ] {
        base.insert(
            path.into(),
            Node {
                kind: NodeKind::Generated(g),
                mode: 0o444,
                uid: 0,
                gid: 0,
                mtime: boot_time,
            },
        );
    }
    for (path, d) in [
        ("/dev/null", Device::Null),
        ("/dev/zero", Device::Zero),
        ("/dev/random", Device::Random),
        ("/dev/urandom", Device::Random),
        ("/dev/tty", Device::Tty),
        ("/dev/console", Device::Tty),
    ] {
        base.insert(
            path.into(),
            Node {
                kind: NodeKind::CharDevice(d),
                mode: 0o666,
                uid: 0,
                gid: 0,
                mtime: boot_time,
            },
        );
    }

    // Lived-in home directories.
    for u in users.iter().filter(|u| u.uid == 0 || (1000..65_534).contains(&u.uid)) {
        let gid = u.gids[0];
        let mut r = seed.rng_for(&format!("shell.home.{}", u.name));
        let home_mode = if u.uid == 0 { 0o700 } else { 0o750 };
        base.insert(
            u.home.clone(),
            Node::dir(home_mode, u.uid, gid, t + r.below(86_400 * 30) as i64),
        );
        base.insert(
            format!("{}/.ssh", u.home),
            Node::dir(0o700, u.uid, gid, t + r.below(86_400 * 30) as i64),
        );
        let mut hist = String::new();
        for _ in 0..r.range(6, 30) {
            let line: &String = r.pick(&common.history);
            hist.push_str(line);
            hist.push('\n');
        }
        let mtime = boot_time + r.below(86_400) as i64;
        let mut keys = String::new();
        for _ in 0..r.range(1, 3) {
            let mut k = vec![0u8; 32];
            r.fill(&mut k);
            let blob = [&[0, 0, 0, 11][..], b"ssh-ed25519", &[0, 0, 0, 32], &k].concat();
            let _ = writeln!(
                keys,
                "ssh-ed25519 {} {}",
                crate::commands::text::base64_encode(&blob),
                r.pick(&common.key_comments)
            );
        }
        let files = [
            (".bash_history", hist, 0o600),
            (".bashrc", BASHRC.to_string(), 0o644),
            (".profile", PROFILE.to_string(), 0o644),
            (".ssh/authorized_keys", keys, 0o600),
        ];
        for (name, text, mode) in files {
            base.insert(
                format!("{}/{name}", u.home),
                Node::file(text.into_bytes(), mode, u.uid, gid, mtime),
            );
        }
    }

    let mut prng = seed.rng_for("shell.processes");
    let mut pid = 1;
    let mut processes = Vec::new();
    for (user, cmd) in &common.processes {
        processes.push((user.clone(), cmd.clone(), pid));
        pid += prng.range(1, if pid < 20 { 4 } else { 300 }) as u32;
    }

    Ok(HostInner {
        decky_overlay: Arc::new(Mutex::new(Overlay::new(facts.overlay_limits))),
        facts,
        release,
        base: Arc::new(base),
        users,
        groups,
        processes,
        package_manager,
        bash_version,
        boot_time,
        cpus,
        cpu_model: cpu[0].clone(),
        mem_kb,
        disk_kb,
        disk_used_kb,
        sudo_group: family.sudo_group.clone(),
        motd,
        net,
    })
}

const BASHRC: &str = "# ~/.bashrc: executed by bash(1) for non-login shells.\n\ncase $- in\n    *i*) ;;\n      *) return;;\nesac\n\nHISTCONTROL=ignoreboth\nshopt -s histappend\nHISTSIZE=1000\nHISTFILESIZE=2000\nshopt -s checkwinsize\n\nalias ls='ls --color=auto'\nalias grep='grep --color=auto'\nalias ll='ls -alF'\nalias la='ls -A'\nalias l='ls -CF'\n";
const PROFILE: &str = "# ~/.profile: executed by the command interpreter for login shells.\n\nif [ -n \"$BASH_VERSION\" ]; then\n    if [ -f \"$HOME/.bashrc\" ]; then\n\t. \"$HOME/.bashrc\"\n    fi\nfi\n\nif [ -d \"$HOME/bin\" ] ; then\n    PATH=\"$HOME/bin:$PATH\"\nfi\n";
