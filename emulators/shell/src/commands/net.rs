//! The network as the decky sees it (its real address and MAC), and download
//! tools that log the URL and fail the way they do on a host with no route.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::sysinfo::civil;
use super::{err, flags, out};
use crate::ShellEvent;
use crate::interp::{Exec, Io, Run};

fn mac(run: &Run<'_>) -> String {
    run.host
        .inner
        .facts
        .mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(bits)
}

fn broadcast(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) | !u32::from(netmask(prefix)))
}

fn network(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & u32::from(netmask(prefix)))
}

fn counters(run: &Run<'_>) -> (u64, u64, u64, u64) {
    let up = (run.now - run.host.inner.boot_time).max(1) as u64;
    (up * 37, up * 31 * 40, up * 29, up * 29 * 50)
}

pub(crate) fn ip(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let facts = &run.host.inner.facts;
    let (ip, prefix, gw) = (facts.ip, facts.prefix_len, facts.gateway);
    let obj = argv
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(String::as_str)
        .unwrap_or("");
    let mac = mac(run);
    let text = match obj {
        "a" | "addr" | "address" | "ad" | "add" => format!(
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n    inet6 ::1/128 scope host noprefixroute \n       valid_lft forever preferred_lft forever\n2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP group default qlen 1000\n    link/ether {mac} brd ff:ff:ff:ff:ff:ff\n    altname enp0s3\n    inet {ip}/{prefix} brd {} scope global eth0\n       valid_lft forever preferred_lft forever\n",
            broadcast(ip, prefix)
        ),
        "r" | "route" | "ro" => format!(
            "default via {gw} dev eth0 onlink \n{}/{prefix} dev eth0 proto kernel scope link src {ip} \n",
            network(ip, prefix)
        ),
        "l" | "link" | "li" => format!(
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\n    link/ether {mac} brd ff:ff:ff:ff:ff:ff\n    altname enp0s3\n"
        ),
        "n" | "neigh" | "neighbor" => format!("{gw} dev eth0 lladdr 52:54:00:12:35:02 REACHABLE\n"),
        "" => {
            err(
                io,
                "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n       ip [ -force ] -batch filename\nwhere  OBJECT := { address | addrlabel | amt | fou | help | ila | ioam | l2tp | link |\n                   macsec | maddress | monitor | mptcp | mroute | mrule |\n                   neighbor | neighbour | netconf | netns | nexthop | ntable |\n                   ntbl | route | rule | sr | tap | tcpmetrics |\n                   token | tunnel | tuntap | vrf | xfrm }\n",
            );
            return Ok(255);
        }
        other => {
            err(io, &format!("Object \"{other}\" is unknown, try \"ip help\".\n"));
            return Ok(1);
        }
    };
    out(io, &text);
    Ok(0)
}

pub(crate) fn ifconfig(run: &mut Run<'_>, _: &[String], io: &mut Io) -> Exec {
    let facts = &run.host.inner.facts;
    let (ip, prefix) = (facts.ip, facts.prefix_len);
    let (rxp, rxb, txp, txb) = counters(run);
    let human = |b: u64| {
        if b > 1 << 30 {
            format!("{:.1} GB", b as f64 / 1e9)
        } else {
            format!("{:.1} MB", b as f64 / 1e6)
        }
    };
    out(
        io,
        &format!(
            "eth0: flags=4163<UP,BROADCAST,RUNNING,MULTICAST>  mtu 1500\n        inet {ip}  netmask {}  broadcast {}\n        ether {}  txqueuelen 1000  (Ethernet)\n        RX packets {rxp}  bytes {rxb} ({})\n        RX errors 0  dropped 0  overruns 0  frame 0\n        TX packets {txp}  bytes {txb} ({})\n        TX errors 0  dropped 0 overruns 0  carrier 0  collisions 0\n\nlo: flags=73<UP,LOOPBACK,RUNNING>  mtu 65536\n        inet 127.0.0.1  netmask 255.0.0.0\n        inet6 ::1  prefixlen 128  scopeid 0x10<host>\n        loop  txqueuelen 1000  (Local Loopback)\n        RX packets 1284  bytes 112004 (109.3 KiB)\n        RX errors 0  dropped 0  overruns 0  frame 0\n        TX packets 1284  bytes 112004 (109.3 KiB)\n        TX errors 0  dropped 0 overruns 0  carrier 0  collisions 0\n\n",
            netmask(prefix),
            broadcast(ip, prefix),
            mac(run),
            human(rxb),
            human(txb)
        ),
    );
    Ok(0)
}

fn listeners(run: &Run<'_>) -> Vec<(u16, bool, String)> {
    let mut l = run.host.inner.facts.listening.clone();
    if l.is_empty() {
        l.push((22, false, "sshd".into()));
    }
    l
}

pub(crate) fn netstat(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, _) = flags(&argv[1..]);
    let show_pid = f.contains('p');
    let root = run.st.user.uid == 0;
    let mut s = String::new();
    if show_pid && !root {
        s.push_str("(Not all processes could be identified, non-owned process info\n will not be shown, you would have to be root to see it all.)\n");
    }
    s.push_str(if f.contains('l') {
        "Active Internet connections (only servers)\n"
    } else {
        "Active Internet connections (servers and established)\n"
    });
    s.push_str(&format!(
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State      {}\n",
        if show_pid { " PID/Program name    " } else { "" }
    ));
    let mut pid = 400 + u32::from(run.host.inner.facts.mac[5]);
    for (port, udp, prog) in listeners(run) {
        pid += 37;
        let proto = if udp { "udp" } else { "tcp" };
        let state = if udp { "" } else { "LISTEN" };
        let p = if show_pid {
            if root { format!("{pid}/{prog}") } else { "-".into() }
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{proto:<5}      0      0 {:<23} {:<23} {state:<11}{p}",
            format!("0.0.0.0:{port}"),
            "0.0.0.0:*"
        );
    }
    if !f.contains('l') {
        let peer = run.st.vars.get("SSH_CLIENT").and_then(|c| {
            let mut it = c.split_whitespace();
            Some(format!("{}:{}", it.next()?, it.next()?))
        });
        if let Some(peer) = peer {
            let p = if show_pid {
                format!("{}/sshd: {}", run.st.pid - 11, run.st.user.name)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "tcp        0     36 {:<23} {peer:<23} ESTABLISHED {p}",
                format!("{}:22", run.host.inner.facts.ip)
            );
        }
    }
    out(io, &s);
    Ok(0)
}

pub(crate) fn ss(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let (f, _) = flags(&argv[1..]);
    let show_pid = f.contains('p');
    let mut s = String::from("Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:Port");
    s.push_str(if show_pid { "Process\n" } else { "\n" });
    let mut pid = 400 + u32::from(run.host.inner.facts.mac[5]);
    for (port, udp, prog) in listeners(run) {
        pid += 37;
        let (netid, state) = if udp { ("udp", "UNCONN") } else { ("tcp", "LISTEN") };
        let p = if show_pid && run.st.user.uid == 0 {
            format!("users:((\"{prog}\",pid={pid},fd=3))")
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "{netid:<5} {state:<6} 0      {:<6} {:>13}:{:<5} {:>12}:{:<5}{p}",
            if udp { 0 } else { 128 },
            "0.0.0.0",
            port,
            "0.0.0.0",
            "*"
        );
    }
    out(io, &s);
    Ok(0)
}

/// (scheme, host, port, path) of a URL, with the tool's default scheme.
fn split_url(url: &str, default_scheme: &str) -> (String, String, u16, String) {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => (default_scheme.to_string(), url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = match scheme.as_str() {
        "https" => 443,
        "ftp" => 21,
        _ => 80,
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().unwrap_or(default_port)),
        _ => (authority.to_string(), default_port),
    };
    (scheme, host, port, path)
}

fn is_ip(host: &str) -> bool {
    host.parse::<Ipv4Addr>().is_ok() || host.trim_matches(['[', ']']).parse::<std::net::Ipv6Addr>().is_ok()
}

/// A network tool's message from the persona, placeholders filled.
fn message(run: &Run<'_>, key: &str, vars: &[(&str, String)]) -> String {
    let mut text = run.host.inner.net.get(key).cloned().unwrap_or_default();
    for (k, v) in vars {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    text
}

fn timestamp(run: &Run<'_>) -> String {
    let (y, mo, d, h, mi, s, _) = civil(run.now);
    format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

pub(crate) fn wget(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut quiet = false;
    let mut output = None;
    let mut urls = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        match a.as_str() {
            "-O" | "--output-document" => {
                i += 1;
                output = argv.get(i).cloned();
            }
            "-q" | "--quiet" | "-nv" => quiet = true,
            "-P" | "-U" | "--user-agent" | "-t" | "-T" | "--tries" | "--timeout" | "-e" => i += 1,
            s if s.starts_with("-O") => output = Some(s[2..].to_string()),
            s if s.starts_with("--output-document=") => output = s.split_once('=').map(|(_, v)| v.to_string()),
            s if s.starts_with('-') => quiet |= s.contains('q'),
            _ => urls.push(a.clone()),
        }
        i += 1;
    }
    if urls.is_empty() {
        err(
            io,
            "wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n",
        );
        return Ok(1);
    }
    if let Some(o) = &output
        && o != "-"
        && let Err(e) = run.write_file(o, &[], false, "wget")
    {
        err(io, &format!("{o}: {}\n", e.message()));
        return Ok(3);
    }
    for url in &urls {
        run.emit(ShellEvent::Download {
            tool: "wget".into(),
            url: url.clone(),
        });
        let (scheme, host, port, _) = split_url(url, "http");
        let shown = if url.contains("://") {
            url.clone()
        } else {
            format!("{scheme}://{url}")
        };
        if quiet {
            continue;
        }
        let key = if is_ip(&host) { "wget_no_route" } else { "wget_no_dns" };
        let text = message(
            run,
            key,
            &[
                ("ts", timestamp(run)),
                ("url", shown),
                ("host", host),
                ("port", port.to_string()),
            ],
        );
        err(io, &text);
    }
    Ok(run
        .host
        .inner
        .net
        .get("wget_status")
        .and_then(|s| s.parse().ok())
        .unwrap_or(4))
}

pub(crate) fn curl(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut silent = false;
    let mut show_error = false;
    let mut output = false;
    let mut urls = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        match a.as_str() {
            "-o" | "--output" => {
                i += 1;
                output = true;
            }
            "-O" | "--remote-name" => output = true,
            "-s" | "--silent" => silent = true,
            "-S" | "--show-error" => show_error = true,
            "-H" | "-A" | "-d" | "-X" | "-u" | "-e" | "-m" | "--connect-timeout" | "--max-time" | "--data"
            | "--header" | "--user-agent" | "-x" => i += 1,
            s if s.starts_with("--") => {}
            s if s.starts_with('-') => {
                silent |= s.contains('s');
                show_error |= s.contains('S');
                output |= s.contains('o') || s.contains('O');
                if s.ends_with('o') {
                    i += 1;
                }
            }
            _ => urls.push(a.clone()),
        }
        i += 1;
    }
    if urls.is_empty() {
        err(io, "curl: try 'curl --help' or 'curl --manual' for more information\n");
        return Ok(2);
    }
    let mut status = 0;
    for url in &urls {
        run.emit(ShellEvent::Download {
            tool: "curl".into(),
            url: url.clone(),
        });
        let (_, host, port, _) = split_url(url, "http");
        let meter = !silent && (output || !(io.top && run.interactive));
        if meter {
            err(
                io,
                "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n                                 Dload  Upload   Total   Spent    Left  Speed\n\r  0     0    0     0    0     0      0      0 --:--:-- --:--:-- --:--:--     0",
            );
        }
        let (code, key) = if is_ip(&host) {
            (7, "curl_no_route")
        } else {
            (6, "curl_no_dns")
        };
        let ms = (3000 + run.now % 97).to_string();
        let msg = message(run, key, &[("host", host), ("port", port.to_string()), ("ms", ms)]);
        if meter {
            err(io, "\n");
        }
        if !silent || show_error {
            err(io, &msg);
        }
        status = code;
    }
    Ok(status)
}

pub(crate) fn tftp(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let mut host = None;
    let mut file = None;
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "-r" | "-l" | "get" => {
                i += 1;
                if file.is_none() {
                    file = argv.get(i).cloned();
                }
            }
            "-c" | "-g" | "-p" | "-m" | "-v" => {}
            a if !a.starts_with('-') && host.is_none() => host = Some(a.to_string()),
            _ => {}
        }
        i += 1;
    }
    let host = host.unwrap_or_default();
    run.emit(ShellEvent::Download {
        tool: "tftp".into(),
        url: format!("tftp://{host}/{}", file.unwrap_or_default()),
    });
    if host.is_empty() {
        return Ok(1);
    }
    if argv.iter().any(|a| a == "-g" || a == "-r") {
        err(io, "tftp: timeout\n");
    } else {
        err(io, "Transfer timed out.\n\n");
    }
    Ok(1)
}

pub(crate) fn ftp(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let host = argv[1..]
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    run.emit(ShellEvent::Download {
        tool: "ftp".into(),
        url: format!("ftp://{host}/"),
    });
    if is_ip(&host) {
        err(
            io,
            "ftp: Can't connect to `{host}:21': No route to host\n"
                .replace("{host}", &host)
                .as_str(),
        );
    } else {
        err(io, &format!("ftp: {host}: Temporary failure in name resolution\n"));
    }
    out(io, "ftp> ");
    Ok(1)
}

pub(crate) fn ping(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let Some(host) = argv[1..]
        .iter()
        .rev()
        .find(|a| !a.starts_with('-') && a.parse::<u32>().is_err())
        .cloned()
    else {
        err(io, "ping: usage error: Destination address required\n");
        return Ok(2);
    };
    if !is_ip(&host) {
        err(io, &format!("ping: {host}: Temporary failure in name resolution\n"));
        return Ok(2);
    }
    let _ = run;
    out(
        io,
        &format!(
            "PING {host} ({host}) 56(84) bytes of data.\nFrom {} icmp_seq=1 Destination Host Unreachable\n\n--- {host} ping statistics ---\n1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms\n\n",
            run.host.inner.facts.ip
        ),
    );
    Ok(1)
}

pub(crate) fn ssh(run: &mut Run<'_>, argv: &[String], io: &mut Io) -> Exec {
    let tool = argv[0].rsplit('/').next().unwrap_or("ssh").to_string();
    let target = argv[1..]
        .iter()
        .find(|a| !a.starts_with('-') && (a.contains('@') || a.contains(':') || tool == "ssh"))
        .cloned()
        .unwrap_or_default();
    let host = target
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_string();
    run.emit(ShellEvent::Download {
        tool: tool.clone(),
        url: format!("ssh://{target}"),
    });
    if host.is_empty() {
        err(
            io,
            "usage: ssh [-46AaCfGgKkMNnqsTtVvXxYy] [-B bind_interface] [-b bind_address]\n           destination [command [argument ...]]\n",
        );
        return Ok(255);
    }
    if is_ip(&host) {
        err(io, &format!("ssh: connect to host {host} port 22: No route to host\n"));
    } else {
        err(
            io,
            &format!("ssh: Could not resolve hostname {host}: Temporary failure in name resolution\n"),
        );
    }
    if tool == "scp" {
        err(io, "scp: Connection closed\n");
    }
    Ok(255)
}
