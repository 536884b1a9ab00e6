//! What the machine says about itself: uname, id, ps, free, df, uptime …
//! and the `/proc` files they read.

use std::fmt::Write as _;

use decnet_core::seed::SeedRng;

use super::{err, flags, out};
use crate::fs::Generated;
use crate::interp::{Exec, Io, Run};

pub(crate) use decnet_emu_sdk::clock::MONTHS;
/// Day abbreviations, Sunday first.
pub(crate) const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// (year, month, day, hour, minute, second, weekday) of a UTC timestamp.
pub(crate) fn civil(ts: i64) -> (i64, u32, u32, u32, u32, u32, usize) {
    let c = decnet_emu_sdk::clock::civil(ts);
    (c.year, c.month, c.day, c.hour, c.minute, c.second, c.weekday)
}

pub(crate) fn user_name(run: &Run<'_>, uid: u32) -> String {
    run.host
        .inner
        .users
        .iter()
        .find(|u| u.uid == uid)
        .map_or_else(|| uid.to_string(), |u| u.name.clone())
}

pub(crate) fn group_name(run: &Run<'_>, gid: u32) -> String {
    run.host
        .inner
        .groups
        .iter()
        .find(|g| g.1 == gid)
        .map_or_else(|| gid.to_string(), |g| g.0.clone())
}

/// `/proc/mounts`.
pub(crate) fn mounts_text() -> String {
    "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\nudev /dev devtmpfs rw,nosuid,relatime,size=988000k,nr_inodes=247000,mode=755,inode64 0 0\ndevpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0\ntmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=201636k,mode=755,inode64 0 0\n/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0\ntmpfs /dev/shm tmpfs rw,nosuid,nodev,inode64 0 0\ntmpfs /run/lock tmpfs rw,nosuid,nodev,noexec,relatime,size=5120k,inode64 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n".to_string()
}

/// `/proc/cpuinfo` for `cpus` processors of `model`.
pub(crate) fn cpuinfo(model: &[String; 7], cpus: u32) -> String {
    let [name, vendor, family, model_no, stepping, mhz, cache] = model;
    let flags = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl xtopology cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch invpcid_single pti fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid xsaveopt arat";
    let mut s = String::new();
    for i in 0..cpus {
        let _ = write!(
            s,
            "processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model_no}\nmodel name\t: {name}\nstepping\t: {stepping}\nmicrocode\t: 0x1\ncpu MHz\t\t: {mhz}\ncache size\t: {cache}\nphysical id\t: 0\nsiblings\t: {cpus}\ncore id\t\t: {i}\ncpu cores\t: {cpus}\napicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 13\nwp\t\t: yes\nflags\t\t: {flags}\nbugs\t\t: cpu_meltdown spectre_v1 spectre_v2 spec_store_bypass l1tf mds swapgs itlb_multihit\nbogomips\t: {:.2}\nclflush size\t: 64\ncache_alignment\t: 64\naddress sizes\t: 46 bits physical, 48 bits virtual\npower management:\n\n",
            mhz.parse::<f64>().unwrap_or(2400.0) * 2.0
        );
    }
    s
}

fn mem_figures(total: u64) -> (u64, u64, u64, u64, u64) {
    // (used, free, shared, buff/cache, available) in kB, a lightly loaded server.
    let used = total / 5;
    let cache = total * 2 / 5;
    let free = total - used - cache;
    let shared = total / 200;
    let available = free + cache * 9 / 10;
    (used, free, shared, cache, available)
}

/// `/proc/meminfo`.
pub(crate) fn meminfo(total: u64, rng: &mut SeedRng) -> String {
    let (_, free, shared, cache, available) = mem_figures(total);
    let buffers = cache / 10 + rng.below(1000);
    let cached = cache - buffers;
    let swap = 1_048_572;
    let rows = [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", available),
        ("Buffers", buffers),
        ("Cached", cached),
        ("SwapCached", 0),
        ("Active", total / 4),
        ("Inactive", total / 5),
        ("SwapTotal", swap),
        ("SwapFree", swap),
        ("Dirty", 60 + rng.below(200)),
        ("Writeback", 0),
        ("AnonPages", total / 8),
        ("Mapped", total / 20),
        ("Shmem", shared),
        ("Slab", total / 25),
        ("CommitLimit", total / 2 + swap),
        ("VmallocTotal", 34_359_738_367),
        ("HugePages_Total", 0),
        ("Hugepagesize", 2048),
    ];
    let mut s = String::new();
    for (k, v) in rows {
        if k.starts_with("HugePages") {
            let _ = writeln!(s, "{:<16}{v:>8}", format!("{k}:"));
        } else {
            let _ = writeln!(s, "{:<16}{v:>8} kB", format!("{k}:"));
        }
    }
    s
}

fn uptime_secs(run: &Run<'_>) -> i64 {
    (run.now - run.host.inner.boot_time).max(60)
}

fn load(run: &Run<'_>) -> (f64, f64, f64) {
    let x = (run.now / 60 % 17) as f64;
    (0.02 * x, 0.03 * (x + 2.0) / 2.0, 0.05)
}

/// The text of a `/proc` file made at read time.
pub(crate) fn generated(run: &mut Run<'_>, g: Generated) -> String {
    match g {
        Generated::Uptime => {
            let up = uptime_secs(run);
            format!(
                "{up}.{:02} {}.{:02}\n",
                run.now % 97,
                up * i64::from(run.host.inner.cpus) * 9 / 10,
                run.now % 89
            )
        }
        Generated::LoadAvg => {
            let (a, b, c) = load(run);
            format!(
                "{a:.2} {b:.2} {c:.2} 1/{} {}\n",
                120 + run.host.inner.processes.len(),
                run.st.pid + 3
            )
        }
    }
}

pub(crate) fn id(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let target = argv[1..].iter().find(|a| !a.starts_with('-')).cloned();
    let user = match &target {
        Some(name) => match run.host.user(name) {
            Some(u) => u.clone(),
            None => {
                err(io, &format!("id: ‘{name}’: no such user\n"));
                return Ok(1);
            }
        },
        None => run.st.user.clone(),
    };
    let (f, _) = flags(&argv[1..]);
    if f.contains('u') {
        out(
            io,
            &if f.contains('n') {
                format!("{}\n", user.name)
            } else {
                format!("{}\n", user.uid)
            },
        );
        return Ok(0);
    }
    if f.contains('g') && !f.contains('G') {
        out(
            io,
            &if f.contains('n') {
                format!("{}\n", group_name(run, user.gids[0]))
            } else {
                format!("{}\n", user.gids[0])
            },
        );
        return Ok(0);
    }
    let groups: Vec<String> = user
        .gids
        .iter()
        .map(|g| format!("{g}({})", group_name(run, *g)))
        .collect();
    out(
        io,
        &format!(
            "uid={}({}) gid={}({}) groups={}\n",
            user.uid,
            user.name,
            user.gids[0],
            group_name(run, user.gids[0]),
            groups.join(",")
        ),
    );
    Ok(0)
}

pub(crate) fn whoami(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let name = run.st.user.name.clone();
    out(io, &format!("{name}\n"));
    Ok(0)
}

pub(crate) fn groups(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let names: Vec<String> = run.st.user.gids.iter().map(|g| group_name(run, *g)).collect();
    out(io, &format!("{}\n", names.join(" ")));
    Ok(0)
}

pub(crate) fn uname(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, _) = flags(&argv[1..]);
    let d = &run.host.inner.facts.distro;
    let release = run.host.inner.release.clone();
    if f.contains('a') || f.contains("[all]") {
        let line = d.uname_a(run.host.hostname()).replace(&d.kernel.release, &release);
        out(io, &format!("{line}\n"));
        return Ok(0);
    }
    let mut parts = Vec::new();
    if f.contains('s') || f.is_empty() {
        parts.push("Linux".to_string());
    }
    if f.contains('n') {
        parts.push(run.host.hostname().to_string());
    }
    if f.contains('r') {
        parts.push(release);
    }
    if f.contains('v') {
        parts.push(d.kernel.version.clone());
    }
    if f.contains('m') || f.contains('p') || f.contains('i') {
        parts.push(d.kernel.machine.clone());
    }
    if f.contains('o') {
        parts.push("GNU/Linux".to_string());
    }
    out(io, &format!("{}\n", parts.join(" ")));
    Ok(0)
}

pub(crate) fn hostname(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, ops) = flags(&argv[1..]);
    if !ops.is_empty() {
        if run.st.user.uid != 0 {
            err(io, "hostname: you must be root to change the host name\n");
            return Ok(1);
        }
        return Ok(0);
    }
    let text = if f.contains('I') || f.contains('i') {
        format!("{} \n", run.host.inner.facts.ip)
    } else {
        format!("{}\n", run.host.hostname())
    };
    out(io, &text);
    Ok(0)
}

fn uptime_text(run: &Run<'_>) -> String {
    let up = uptime_secs(run);
    let (days, hours, mins) = (up / 86_400, up % 86_400 / 3600, up % 3600 / 60);
    let mut s = String::new();
    if days > 0 {
        let _ = write!(s, "{days} day{}, ", if days == 1 { "" } else { "s" });
    }
    if hours > 0 {
        let _ = write!(s, "{hours:>2}:{mins:02}");
    } else {
        let _ = write!(s, "{mins} min");
    }
    s
}

fn users_count(run: &Run<'_>) -> usize {
    1 + usize::from(run.st.user_stack.len() > 10)
}

pub(crate) fn uptime(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, _) = flags(&argv[1..]);
    if f.contains('p') {
        let up = uptime_secs(run);
        let (weeks, days, hours, mins) = (up / 604_800, up % 604_800 / 86_400, up % 86_400 / 3600, up % 3600 / 60);
        let mut parts = Vec::new();
        for (n, unit) in [(weeks, "week"), (days, "day"), (hours, "hour"), (mins, "minute")] {
            if n > 0 {
                parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
            }
        }
        out(io, &format!("up {}\n", parts.join(", ")));
        return Ok(0);
    }
    let (_, _, _, h, m, s, _) = civil(run.now);
    let (a, b, c) = load(run);
    let n = users_count(run);
    out(
        io,
        &format!(
            " {h:02}:{m:02}:{s:02} up {},  {n} user{},  load average: {a:.2}, {b:.2}, {c:.2}\n",
            uptime_text(run),
            if n == 1 { "" } else { "s" }
        ),
    );
    Ok(0)
}

fn login_line(run: &Run<'_>) -> (String, String, String) {
    let (_, _, _, h, m, _, _) = civil(run.now - 40);
    let from = run
        .st
        .vars
        .get("SSH_CLIENT")
        .and_then(|c| c.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "10.0.0.1".into());
    ("pts/0".to_string(), from, format!("{h:02}:{m:02}"))
}

pub(crate) fn w(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let (_, _, _, h, m, s, _) = civil(run.now);
    let (a, b, c) = load(run);
    let (tty, from, at) = login_line(run);
    let user = run
        .st
        .user_stack
        .first()
        .map_or(run.st.user.name.clone(), |(u, _, _)| u.name.clone());
    out(
        io,
        &format!(
            " {h:02}:{m:02}:{s:02} up {},  1 user,  load average: {a:.2}, {b:.2}, {c:.2}\nUSER     TTY      FROM             LOGIN@   IDLE   JCPU   PCPU WHAT\n{user:<8} {tty:<8} {from:<16} {at}    0.00s  0.02s  0.00s w\n",
            uptime_text(run)
        ),
    );
    Ok(0)
}

pub(crate) fn who(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let (tty, from, _) = login_line(run);
    let (y, mo, d, h, m, _, _) = civil(run.now - 40);
    let user = run
        .st
        .user_stack
        .first()
        .map_or(run.st.user.name.clone(), |(u, _, _)| u.name.clone());
    out(
        io,
        &format!("{user:<8} {tty:<12} {y}-{mo:02}-{d:02} {h:02}:{m:02} ({from})\n"),
    );
    Ok(0)
}

pub(crate) fn last(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let mut rng = run.host.inner.facts.seed.rng_for("shell.last");
    let mut s = String::new();
    let (tty, from, _) = login_line(run);
    let (_, mo, d, h, m, _, wd) = civil(run.now - 40);
    let _ = writeln!(
        s,
        "{:<8} {tty:<12} {from:<16} {} {} {d:>2} {h:02}:{m:02}   still logged in",
        run.st.user.name,
        DAYS[wd],
        MONTHS[mo as usize - 1]
    );
    let mut t = run.now - 3600;
    for _ in 0..rng.range(3, 8) {
        t -= rng.range(3600, 5 * 86_400) as i64;
        let dur = rng.range(60, 7200) as i64;
        let (_, mo, d, h, m, _, wd) = civil(t);
        let (_, _, _, h2, m2, _, _) = civil(t + dur);
        let ip = format!("10.{}.{}.{}", rng.below(255), rng.below(255), rng.range(2, 254));
        let _ = writeln!(
            s,
            "root     pts/0        {ip:<16} {} {} {d:>2} {h:02}:{m:02} - {h2:02}:{m2:02}  ({:02}:{:02})",
            DAYS[wd],
            MONTHS[mo as usize - 1],
            dur / 3600,
            dur % 3600 / 60
        );
    }
    let (_, mo, d, h, m, _, wd) = civil(run.host.inner.boot_time);
    let _ = writeln!(
        s,
        "reboot   system boot  {:<16} {} {} {d:>2} {h:02}:{m:02}   still running",
        run.host.inner.release,
        DAYS[wd],
        MONTHS[mo as usize - 1]
    );
    let (_, mo, d, h, m, _, wd) = civil(run.host.inner.boot_time - 86_400 * 30);
    let _ = write!(
        s,
        "\nwtmp begins {} {} {d:>2} {h:02}:{m:02}:00 {}\n",
        DAYS[wd],
        MONTHS[mo as usize - 1],
        civil(run.host.inner.boot_time - 86_400 * 30).0
    );
    out(io, &s);
    Ok(0)
}

struct Proc {
    user: String,
    pid: u32,
    cpu: f64,
    mem: f64,
    vsz: u64,
    rss: u64,
    tty: String,
    stat: String,
    start: String,
    time: String,
    cmd: String,
}

fn processes(run: &mut Run<'_>, with_self: Option<&str>) -> Vec<Proc> {
    let mut rng = run.host.inner.facts.seed.rng_for("shell.ps");
    let (_, mo, d, _, _, _, _) = civil(run.host.inner.boot_time);
    let boot = format!("{}{d:02}", MONTHS[mo as usize - 1]);
    let mut out = Vec::new();
    for (user, cmd, pid) in &run.host.inner.processes {
        let kernel = cmd.starts_with('[');
        let (vsz, rss) = if kernel {
            (0, 0)
        } else {
            (rng.range(5_000, 300_000), rng.range(1_000, 30_000))
        };
        out.push(Proc {
            user: user.chars().take(8).collect::<String>() + if user.len() > 8 { "+" } else { "" },
            pid: *pid,
            cpu: 0.0,
            mem: rss as f64 * 100.0 / run.host.inner.mem_kb as f64,
            vsz,
            rss,
            tty: "?".into(),
            stat: if kernel { "I<".into() } else { "Ss".into() },
            start: boot.clone(),
            time: format!("0:{:02}", rng.below(30)),
            cmd: cmd.clone(),
        });
    }
    let (_, _, _, h, m, _, _) = civil(run.now - 40);
    let me = run.st.user.name.clone();
    let shell_pid = run.st.pid;
    out.push(Proc {
        user: "root".into(),
        pid: shell_pid - 11,
        cpu: 0.0,
        mem: 0.4,
        vsz: 17_964,
        rss: 11_140,
        tty: "?".into(),
        stat: "Ss".into(),
        start: format!("{h:02}:{m:02}"),
        time: "0:00".into(),
        cmd: format!("sshd: {me}@pts/0"),
    });
    out.push(Proc {
        user: me.clone(),
        pid: shell_pid,
        cpu: 0.0,
        mem: 0.2,
        vsz: 8_092,
        rss: 5_012,
        tty: "pts/0".into(),
        stat: "Ss".into(),
        start: format!("{h:02}:{m:02}"),
        time: "0:00".into(),
        cmd: "-bash".into(),
    });
    if let Some(cmd) = with_self {
        out.push(Proc {
            user: me,
            pid: shell_pid + 1 + rng.below(40) as u32,
            cpu: 0.0,
            mem: 0.1,
            vsz: 11_212,
            rss: 4_600,
            tty: "pts/0".into(),
            stat: "R+".into(),
            start: format!("{h:02}:{m:02}"),
            time: "0:00".into(),
            cmd: cmd.into(),
        });
    }
    out
}

pub(crate) fn ps(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let args = argv[1..].join(" ");
    let bsd = args.contains('a') && args.contains('u') && !args.starts_with('-');
    let full = args.contains("-ef") || args.contains("-e") || args.contains("-A") || args.contains("ax");
    let procs = processes(run, Some(&argv.join(" ")));
    let mut s = String::new();
    if bsd {
        let _ = writeln!(
            s,
            "USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND"
        );
        for p in &procs {
            let _ = writeln!(
                s,
                "{:<8} {:>7} {:>4.1} {:>4.1} {:>6} {:>5} {:<8} {:<4} {:>5} {:>6} {}",
                p.user, p.pid, p.cpu, p.mem, p.vsz, p.rss, p.tty, p.stat, p.start, p.time, p.cmd
            );
        }
    } else if full {
        let _ = writeln!(s, "UID          PID    PPID  C STIME TTY          TIME CMD");
        for p in &procs {
            let ppid = if p.pid <= 2 {
                0
            } else if p.cmd.starts_with('[') {
                2
            } else {
                1
            };
            let _ = writeln!(
                s,
                "{:<8} {:>7} {:>7}  0 {:<5} {:<8} 00:00:00 {}",
                p.user, p.pid, ppid, p.start, p.tty, p.cmd
            );
        }
    } else {
        let _ = writeln!(s, "    PID TTY          TIME CMD");
        for p in procs.iter().filter(|p| p.tty == "pts/0") {
            let name = p
                .cmd
                .trim_start_matches('-')
                .split_whitespace()
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let _ = writeln!(s, "{:>7} pts/0    00:00:00 {name}", p.pid);
        }
    }
    out(io, &s);
    Ok(0)
}

pub(crate) fn top(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let (_, _, _, h, m, s, _) = civil(run.now);
    let (a, b, c) = load(run);
    let total = run.host.inner.mem_kb;
    let (used, free, _, cache, avail) = mem_figures(total);
    let procs = processes(run, Some("top"));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "top - {h:02}:{m:02}:{s:02} up {},  1 user,  load average: {a:.2}, {b:.2}, {c:.2}",
        uptime_text(run)
    );
    let _ = writeln!(
        t,
        "Tasks: {:>3} total,   1 running, {:>3} sleeping,   0 stopped,   0 zombie",
        procs.len() + 90,
        procs.len() + 89
    );
    let _ = writeln!(
        t,
        "%Cpu(s):  0.3 us,  0.3 sy,  0.0 ni, 99.3 id,  0.0 wa,  0.0 hi,  0.0 si,  0.0 st"
    );
    let _ = writeln!(
        t,
        "MiB Mem : {:>8.1} total, {:>8.1} free, {:>8.1} used, {:>8.1} buff/cache",
        total as f64 / 1024.0,
        free as f64 / 1024.0,
        used as f64 / 1024.0,
        cache as f64 / 1024.0
    );
    let _ = writeln!(
        t,
        "MiB Swap:   1024.0 total,   1024.0 free,      0.0 used. {:>8.1} avail Mem \n",
        avail as f64 / 1024.0
    );
    let _ = writeln!(
        t,
        "    PID USER      PR  NI    VIRT    RES    SHR S  %CPU  %MEM     TIME+ COMMAND"
    );
    for p in procs.iter().take(20) {
        let name = p
            .cmd
            .trim_start_matches('-')
            .split_whitespace()
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        let _ = writeln!(
            t,
            "{:>7} {:<8}  20   0 {:>7} {:>6} {:>6} S   0.0 {:>5.1}   0:00.{:02} {name}",
            p.pid,
            p.user,
            p.vsz,
            p.rss,
            p.rss / 2,
            p.mem,
            p.pid % 100
        );
    }
    out(io, &t);
    Ok(0)
}

pub(crate) fn free(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, _) = flags(&argv[1..]);
    let total = run.host.inner.mem_kb;
    let (used, free, shared, cache, avail) = mem_figures(total);
    let swap = 1_048_572u64;
    let fmt = |v: u64| -> String {
        if f.contains('h') {
            let g = v as f64 / 1024.0 / 1024.0;
            if v == 0 {
                "0B".to_string()
            } else if g >= 10.0 {
                format!("{}Gi", g.floor())
            } else if g >= 1.0 {
                format!("{g:.1}Gi")
            } else {
                format!("{}Mi", v / 1024)
            }
        } else if f.contains('m') {
            (v / 1024).to_string()
        } else if f.contains('g') {
            (v / 1024 / 1024).to_string()
        } else {
            v.to_string()
        }
    };
    let w = 12;
    let mut s = format!(
        "{:<8}{:>w$}{:>w$}{:>w$}{:>w$}{:>w$}{:>w$}\n",
        "", "total", "used", "free", "shared", "buff/cache", "available"
    );
    let _ = writeln!(
        s,
        "{:<8}{:>w$}{:>w$}{:>w$}{:>w$}{:>w$}{:>w$}",
        "Mem:",
        fmt(total),
        fmt(used),
        fmt(free),
        fmt(shared),
        fmt(cache),
        fmt(avail)
    );
    let _ = writeln!(s, "{:<8}{:>w$}{:>w$}{:>w$}", "Swap:", fmt(swap), fmt(0), fmt(swap));
    out(io, &s);
    Ok(0)
}

pub(crate) fn df(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, _) = flags(&argv[1..]);
    let (total, used) = run.host.root_disk_kb(run.fs);
    let mem = run.host.inner.mem_kb;
    let rows = [
        ("udev", mem / 2, 0),
        ("tmpfs", mem / 10, 1_000),
        ("/dev/sda1", total, used),
        ("tmpfs", mem / 2, 0),
        ("tmpfs", 5_120, 0),
        ("tmpfs", mem / 10, 4),
    ];
    let mounts = ["/dev", "/run", "/", "/dev/shm", "/run/lock", "/run/user/0"];
    let h = f.contains('h');
    let fmt = |v: u64| -> String {
        if !h {
            return v.to_string();
        }
        let mut x = v as f64;
        let mut unit = 'K';
        for u in ['M', 'G', 'T'] {
            if x >= 1024.0 {
                x /= 1024.0;
                unit = u;
            }
        }
        if v == 0 {
            "0".into()
        } else if x < 10.0 {
            format!("{:.1}{unit}", (x * 10.0).ceil() / 10.0)
        } else {
            format!("{}{unit}", x.ceil() as u64)
        }
    };
    let mut s = if h {
        "Filesystem      Size  Used Avail Use% Mounted on\n".to_string()
    } else {
        "Filesystem     1K-blocks    Used Available Use% Mounted on\n".to_string()
    };
    for ((fs, size, used), mnt) in rows.iter().zip(mounts) {
        let avail = size.saturating_sub(*used);
        let pct = if *size == 0 { 0 } else { (used * 100).div_ceil(*size) };
        if h {
            let _ = writeln!(
                s,
                "{fs:<15} {:>4} {:>5} {:>5} {:>3}% {mnt}",
                fmt(*size),
                fmt(*used),
                fmt(avail),
                pct
            );
        } else {
            let _ = writeln!(s, "{fs:<14} {size:>9} {used:>7} {avail:>9} {pct:>3}% {mnt}");
        }
    }
    out(io, &s);
    Ok(0)
}

pub(crate) fn mount(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    if argv.len() > 1 {
        if run.st.user.uid != 0 {
            err(io, "mount: only root can do that\n");
            return Ok(1);
        }
        return Ok(0);
    }
    let mut s = String::new();
    for line in mounts_text().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() >= 4 {
            let _ = writeln!(s, "{} on {} type {} ({})", f[0], f[1], f[2], f[3]);
        }
    }
    out(io, &s);
    Ok(0)
}

pub(crate) fn nproc(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let n = run.host.inner.cpus;
    out(io, &format!("{n}\n"));
    Ok(0)
}

pub(crate) fn lscpu(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let n = run.host.inner.cpus;
    let model = run.host.inner.cpu_model.clone();
    let vendor = if model.contains("AMD") {
        "AuthenticAMD"
    } else {
        "GenuineIntel"
    };
    out(
        io,
        &format!(
            "Architecture:            x86_64\n  CPU op-mode(s):        32-bit, 64-bit\n  Address sizes:         46 bits physical, 48 bits virtual\n  Byte Order:            Little Endian\nCPU(s):                  {n}\n  On-line CPU(s) list:   0-{}\nVendor ID:               {vendor}\n  Model name:            {model}\n    CPU family:          6\n    Thread(s) per core:  1\n    Core(s) per socket:  {n}\n    Socket(s):           1\n    BogoMIPS:            4800.00\nVirtualization features: \n  Hypervisor vendor:     KVM\n  Virtualization type:   full\nCaches (sum of all):     \n  L1d:                   {} KiB ({n} instances)\n  L1i:                   {} KiB ({n} instances)\n  L2:                    {} MiB ({n} instances)\n",
            n - 1,
            32 * n,
            32 * n,
            n
        ),
    );
    Ok(0)
}

pub(crate) fn env(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let rest: Vec<String> = argv[1..]
        .iter()
        .skip_while(|a| a.contains('=') || a.starts_with('-'))
        .cloned()
        .collect();
    if !rest.is_empty() && argv[0] != "printenv" {
        return super::dispatch(run, &rest, io);
    }
    if argv[0] == "printenv" && !rest.is_empty() {
        let mut status = 1;
        for name in &rest {
            if let Some(v) = run.st.vars.get(name).filter(|_| run.st.exported.contains(name)) {
                out(io, &format!("{v}\n"));
                status = 0;
            }
        }
        return Ok(status);
    }
    let mut s = String::new();
    for name in &run.st.exported {
        if let Some(v) = run.st.vars.get(name) {
            let _ = writeln!(s, "{name}={v}");
        }
    }
    let _ = writeln!(s, "_=/usr/bin/env");
    out(io, &s);
    Ok(0)
}

pub(crate) fn date(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (y, mo, d, h, mi, s, wd) = civil(run.now);
    let Some(fmt) = argv[1..].iter().find_map(|a| a.strip_prefix('+')) else {
        out(
            io,
            &format!(
                "{} {} {d:>2} {h:02}:{mi:02}:{s:02} UTC {y}\n",
                DAYS[wd],
                MONTHS[mo as usize - 1]
            ),
        );
        return Ok(0);
    };
    let mut text = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => text.push_str(&y.to_string()),
            Some('m') => text.push_str(&format!("{mo:02}")),
            Some('d') => text.push_str(&format!("{d:02}")),
            Some('H') => text.push_str(&format!("{h:02}")),
            Some('M') => text.push_str(&format!("{mi:02}")),
            Some('S') => text.push_str(&format!("{s:02}")),
            Some('s') => text.push_str(&run.now.to_string()),
            Some('F') => text.push_str(&format!("{y}-{mo:02}-{d:02}")),
            Some('T') => text.push_str(&format!("{h:02}:{mi:02}:{s:02}")),
            Some('a') => text.push_str(DAYS[wd]),
            Some('b') => text.push_str(MONTHS[mo as usize - 1]),
            Some('Z') => text.push_str("UTC"),
            Some('%') => text.push('%'),
            Some(o) => {
                text.push('%');
                text.push(o);
            }
            None => text.push('%'),
        }
    }
    out(io, &format!("{text}\n"));
    Ok(0)
}
