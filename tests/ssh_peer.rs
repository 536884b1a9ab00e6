//! The SSH emulator side by side with Debian's real sshd (OpenSSH 9.2p1,
//! from the openssh-server package `.ci/run` unpacks). One lab, two
//! deckies: `ours` runs the emulator with the real binary's exact version
//! string, `peer` runs no SSH service and the real sshd is started in its
//! namespace (`support::peer_sshd`). From the lab's attacker namespace both
//! must give the same ssh-audit report, HASSHServer and `nmap -sV` line,
//! and the same answer (bytes, and whether and how the connection ends) to
//! malformed identification strings, corrupt packets, messages out of
//! place before and after the key exchange and after login, and unknown
//! channel types. Every case is run against both; all differences are
//! listed before the test fails.

use std::fmt::Debug;
use std::time::Duration;

use md5::{Digest as _, Md5};

use crate::support::peer_sshd::{PeerSshd, moduli_file, software_version, sshd_binary};
use crate::support::ssh_probe::{self, Algs, Answer, End, Session, comparable, in_namespace, plain_packets, show};
use crate::support::{Lab, can_run, stdout};

/// HASSHServer of Debian 12's sshd (also in personas/ssh/openssh-9.2p1.toml).
const HASSH_SERVER_9_2P1: &str = "425d29fe50d8e4f5e37efb6e24bcf660";

struct Pair {
    lab: Lab,
    peer: PeerSshd,
    /// `ip:22` of the emulator and of the real sshd.
    ours: String,
    real: String,
}

impl Pair {
    fn attacker_ns(&self) -> String {
        format!("{}.attacker", self.lab.prefix)
    }
}

/// A lab with the emulator on one decky and the real sshd in the other's
/// namespace, or `None` when there is no real sshd (outside CI).
fn pair() -> Option<Pair> {
    if !can_run() {
        return None;
    }
    let binary = sshd_binary()?;
    let version = software_version(&binary);
    // Both draw group exchange's groups from the package's moduli file.
    let moduli = moduli_file(&binary).display().to_string();
    let fleet = format!(
        "[ours]\nservices = ssh\ndistro = debian\nnmap_os = linux\n\n\
         [ours.ssh]\nssh_version = {version}\nusers = root:toor\nmoduli = {moduli}\n\n\
         [peer]\nservices = tftp\ndistro = debian\nnmap_os = linux\n"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), fleet).unwrap();
    let lab = Lab::up_ok(&["-c", file.path().to_str().unwrap()]);
    let status = lab.status();
    let ip = |name: &str| {
        status["deckies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["ip"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ours_ip, peer_ip) = (ip("ours"), ip("peer"));
    let peer = PeerSshd::start(&lab, &binary, "peer", &peer_ip);
    let pair = Pair {
        real: peer.addr.clone(),
        lab,
        peer,
        ours: format!("{ours_ip}:22"),
    };
    // The emulator makes the decky's RSA host key at its first connection
    // (seconds in a debug build); get that out of the way of the timings.
    let ours = pair.ours.clone();
    let ident = in_namespace(&pair.attacker_ns(), move || {
        ssh_probe::raw(&ours, b"", false, Duration::from_millis(100)).ident
    });
    assert_eq!(String::from_utf8_lossy(&ident), format!("SSH-2.0-{version}\r\n"));
    Some(pair)
}

/// Differences found so far, each with both answers.
#[derive(Default)]
struct Differences(Vec<String>);

impl Differences {
    fn check<T: Debug + PartialEq>(&mut self, case: &str, real: &T, ours: &T) {
        if real != ours {
            self.0
                .push(format!("{case}:\n    real sshd: {real:?}\n    emulator:  {ours:?}"));
        }
    }

    fn assert_none(&self, peer: &PeerSshd) {
        assert!(
            self.0.is_empty(),
            "{} difference(s) from the real sshd:\n{}\n\nreal sshd's log:\n{}",
            self.0.len(),
            self.0.join("\n"),
            peer.log()
        );
    }
}

/// ssh-audit's JSON report without what legitimately differs: the target
/// (another address), the host-key fingerprints (each server has its own
/// keys) and the measured numbers in the connection-rate note (timing).
/// Everything else — banner, software and OS guess, kex, host-key types
/// and sizes, ciphers, MACs, compression, CVEs, recommendations, notes —
/// must be equal.
fn audit_report(pair: &Pair, ssh_audit: &str, addr: &str) -> serde_json::Value {
    let (ip, _) = addr.split_once(':').unwrap();
    let out = pair.lab.attack(&[ssh_audit, "-j", "-p", "22", ip]);
    let mut report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ssh-audit -j {ip}: {e}\n{}", pair.lab.explain(&out)));
    let map = report.as_object_mut().unwrap();
    map.remove("target");
    map.remove("fingerprints");
    if let Some(notes) = map.get_mut("additional_notes").and_then(|n| n.as_array_mut()) {
        for note in notes {
            if let Some(text) = note.as_str() {
                *note = without_numbers(text).into();
            }
        }
    }
    report
}

/// `text` with each number (`38`, `0.318`) replaced by `N`.
fn without_numbers(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(|d| d.is_ascii_digit() || *d == '.') {
                chars.next();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    out
}

/// ssh-audit from the virtualenv `.ci/run` makes (or `DECNET_SSH_AUDIT`);
/// `None` (that comparison skipped) when it is missing outside CI.
fn ssh_audit() -> Option<String> {
    let path =
        std::env::var("DECNET_SSH_AUDIT").unwrap_or_else(|_| "/var/cache/decnet-ci/ssh-audit/bin/ssh-audit".into());
    if !std::path::Path::new(&path).is_file() {
        assert!(
            std::env::var("CI").is_err(),
            "no ssh-audit at {path} (.ci/run installs it)"
        );
        eprintln!("skipped the ssh-audit comparison: no ssh-audit at {path}");
        return None;
    }
    Some(path)
}

/// HASSHServer: MD5 of the server KEXINIT's kex;enc;mac;compression lists
/// (server to client).
fn hassh_server(kexinit: &[u8]) -> String {
    let k = decnet_emu_ssh::kexinit::KexInit::decode(kexinit).unwrap();
    let text = format!(
        "{};{};{};{}",
        k.kex.joined(),
        k.enc_s2c.joined(),
        k.mac_s2c.joined(),
        k.comp_s2c.joined()
    );
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn ssh_audit_hassh_and_nmap_agree_with_real_sshd() {
    let Some(pair) = pair() else {
        return;
    };
    let mut diffs = Differences::default();

    if let Some(ssh_audit) = ssh_audit() {
        let real = audit_report(&pair, &ssh_audit, &pair.real);
        let ours = audit_report(&pair, &ssh_audit, &pair.ours);
        assert!(real["kex"].as_array().is_some_and(|k| !k.is_empty()), "{real}");
        for section in [
            "banner",
            "kex",
            "key",
            "enc",
            "mac",
            "compression",
            "cves",
            "recommendations",
        ] {
            diffs.check(&format!("ssh-audit `{section}`"), &real[section], &ours[section]);
        }
        diffs.check("ssh-audit (whole report)", &real, &ours);
    }

    let (real_addr, ours_addr) = (pair.real.clone(), pair.ours.clone());
    let (real_kexinit, ours_kexinit) = in_namespace(&pair.attacker_ns(), move || {
        (
            Session::connect(&real_addr, Algs::default()).server_kexinit,
            Session::connect(&ours_addr, Algs::default()).server_kexinit,
        )
    });
    diffs.check(
        "HASSHServer",
        &hassh_server(&real_kexinit),
        &hassh_server(&ours_kexinit),
    );
    diffs.check(
        "HASSHServer of the real sshd vs the profile's",
        &hassh_server(&real_kexinit),
        &HASSH_SERVER_9_2P1.to_string(),
    );
    diffs.check(
        "KEXINIT (cookie aside)",
        &comparable(&real_kexinit),
        &comparable(&ours_kexinit),
    );

    // nmap's service line, the address aside.
    let nmap = |addr: &str| {
        let (ip, _) = addr.split_once(':').unwrap();
        let out = pair.lab.attack(&["nmap", "-n", "-Pn", "-sV", "-p", "22", ip]);
        let said = stdout(&out);
        said.lines()
            .filter(|l| l.starts_with("22/tcp") || l.starts_with("Service Info"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let (real, ours) = (nmap(&pair.real), nmap(&pair.ours));
    assert!(!real.is_empty(), "nmap found no ssh on the real sshd");
    diffs.check("nmap -sV", &real, &ours);
    diffs.assert_none(&pair.peer);
}

// --- raw bytes -------------------------------------------------------

/// A raw answer made comparable: the text before any packet (sshd's
/// plain-text refusals), the packets (KEXINIT cookie zeroed), whatever
/// trailed, and how the connection ended.
type Seen = (String, Vec<String>, String, End);

fn seen(answer: &Answer) -> Seen {
    let (packets, tail) = plain_packets(&answer.after);
    let (text, tail) = if packets.is_empty() {
        // sshd writes a refusal's text and its CRLF separately; when it
        // hangs up with the client's bytes unread, the reset usually
        // discards the CRLF that Nagle still held back, unless the client's
        // ACK came first. That race (the emulator runs the same one) is
        // timing, not behaviour: a reset answer is compared without it.
        let mut text = answer.after.as_slice();
        if answer.end == End::Reset {
            text = text.strip_suffix(b"\r\n").unwrap_or(text);
        }
        (show(text), String::new())
    } else {
        (String::new(), show(&tail))
    };
    (text, packets.iter().map(|p| shown(p)).collect(), tail, answer.end)
}

/// A payload for comparison and display: a KEXINIT (cookie aside) as a
/// digest of its contents, as the algorithm lists are compared on their
/// own; anything else as it is.
fn shown(payload: &[u8]) -> String {
    let p = comparable(payload);
    if p.first() == Some(&20) {
        let digest: String = Md5::digest(&p).iter().take(6).map(|b| format!("{b:02x}")).collect();
        return format!("KEXINIT#{digest}");
    }
    show(&p)
}

fn packet(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decnet_emu_ssh::cipher::Direction::default().seal(payload, &mut |b| b.fill(0), &mut out);
    out
}

fn with_padlen(payload: &[u8], len: u32, padlen: u8) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.push(padlen);
    out.extend_from_slice(payload);
    out.resize(4 + len as usize, 0);
    out
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decnet_emu_ssh::wire::put_string(&mut out, s);
    out
}

fn kexinit(kex: &str, host_key: &str, cipher: &str, mac: &str, comp: &str, follows: bool) -> Vec<u8> {
    let mut p = vec![20];
    p.extend_from_slice(&[0x11; 16]);
    for list in [kex, host_key, cipher, cipher, mac, mac, comp, comp, "", ""] {
        p.extend_from_slice(&string(list.as_bytes()));
    }
    p.push(u8::from(follows));
    p.extend_from_slice(&[0; 4]);
    p
}

fn cases() -> Vec<(String, Vec<u8>, bool)> {
    let id = format!("{}\r\n", ssh_probe::CLIENT_IDENT).into_bytes();
    let cat = |parts: &[&[u8]]| parts.concat();
    let plain = kexinit(
        "curve25519-sha256",
        "ssh-ed25519",
        "aes128-ctr",
        "hmac-sha2-256",
        "none",
        false,
    );
    let strict = kexinit(
        "curve25519-sha256,kex-strict-c-v00@openssh.com",
        "ssh-ed25519",
        "aes128-ctr",
        "hmac-sha2-256",
        "none",
        false,
    );
    let mut c: Vec<(String, Vec<u8>, bool)> = vec![
        ("only an identification".into(), id.clone(), false),
        (
            "identification and KEXINIT, sent before the server's".into(),
            cat(&[&id, &packet(&plain)]),
            true,
        ),
        ("an HTTP request".into(), b"GET / HTTP/1.0\r\n\r\n".to_vec(), false),
        (
            "an HTTP request, sent first".into(),
            b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            true,
        ),
        ("SSH-1.5".into(), b"SSH-1.5-foo\r\n".to_vec(), false),
        ("SSH-1.99".into(), b"SSH-1.99-foo\r\n".to_vec(), false),
        ("SSH-3.0".into(), b"SSH-3.0-foo\r\n".to_vec(), false),
        ("no software version".into(), b"SSH-2.0-\r\n".to_vec(), false),
        ("no dash after the version".into(), b"SSH-2.0\r\n".to_vec(), false),
        ("a space before the version".into(), b"SSH- 2.0-x\r\n".to_vec(), false),
        ("a signed version".into(), b"SSH-+2.0-x\r\n".to_vec(), false),
        ("a bare LF".into(), b"SSH-2.0-x\n".to_vec(), false),
        ("CR CR LF".into(), b"SSH-2.0-x\r\r\n".to_vec(), false),
        ("text after a CR".into(), b"SSH-2.0-x\ry\n".to_vec(), false),
        ("a NUL".into(), b"\0".to_vec(), false),
        ("a NUL and more".into(), b"SSH-2.0-x\0yz\r\n".to_vec(), false),
        (
            "a 9000-byte identification".into(),
            cat(&[b"SSH-2.0-", &[b'A'; 9000], b"\r\n"]),
            false,
        ),
        ("9000 bytes without a newline".into(), vec![b'A'; 9000], false),
        ("binary garbage".into(), (0..=255u8).collect(), false),
        ("binary garbage without NUL".into(), (1..=255u8).rev().collect(), false),
        ("a `Probe-` client".into(), b"SSH-2.0-Probe-x\r\n".to_vec(), false),
        (
            "SSH_Version_Mapper".into(),
            b"SSH-2.0-SSH_Version_Mapper\r\n".to_vec(),
            false,
        ),
        (
            "identification, then text".into(),
            cat(&[&id, b"hello world\r\n"]),
            false,
        ),
        (
            "identification and text, sent first".into(),
            cat(&[&id, b"hello world\r\n"]),
            true,
        ),
        (
            "packet length 0xffffffff".into(),
            cat(&[&id, &[0xff; 4], &[0; 12]]),
            false,
        ),
        ("packet length 4".into(), cat(&[&id, &[0, 0, 0, 4], &[0; 12]]), false),
        (
            "packet length not a multiple of 8".into(),
            cat(&[&id, &with_padlen(&[2, 0, 0, 0, 0], 13, 4)]),
            false,
        ),
        (
            "padding length 3".into(),
            cat(&[&id, &with_padlen(&[21], 12, 3)]),
            false,
        ),
        (
            "padding longer than the packet".into(),
            cat(&[&id, &with_padlen(&[20], 12, 12)]),
            false,
        ),
        ("an empty payload".into(), cat(&[&id, &with_padlen(&[], 12, 11)]), false),
        ("DEBUG, truncated".into(), cat(&[&id, &packet(&[4, 0, 0, 0, 0])]), false),
        (
            "DEBUG".into(),
            cat(&[&id, &packet(&cat(&[&[4, 1], &string(b"hi"), &string(b"")]))]),
            false,
        ),
        ("IGNORE, truncated".into(), cat(&[&id, &packet(&[2, 0, 0])]), false),
        ("UNIMPLEMENTED, truncated".into(), cat(&[&id, &packet(&[3, 0])]), false),
        ("KEXINIT, truncated".into(), cat(&[&id, &packet(&plain[..40])]), false),
        (
            "KEXINIT with trailing bytes".into(),
            cat(&[&id, &packet(&cat(&[&plain, b"junk"]))]),
            false,
        ),
        (
            "KEXINIT: no common kex".into(),
            cat(&[
                &id,
                &packet(&kexinit(
                    "foo",
                    "ssh-ed25519",
                    "aes128-ctr",
                    "hmac-sha2-256",
                    "none",
                    false,
                )),
            ]),
            false,
        ),
        (
            "KEXINIT: no common host key".into(),
            cat(&[
                &id,
                &packet(&kexinit(
                    "curve25519-sha256",
                    "foo",
                    "aes128-ctr",
                    "hmac-sha2-256",
                    "none",
                    false,
                )),
            ]),
            false,
        ),
        (
            "KEXINIT: no common cipher".into(),
            cat(&[
                &id,
                &packet(&kexinit(
                    "curve25519-sha256",
                    "ssh-ed25519",
                    "foo",
                    "hmac-sha2-256",
                    "none",
                    false,
                )),
            ]),
            false,
        ),
        (
            "KEXINIT: no common compression".into(),
            cat(&[
                &id,
                &packet(&kexinit(
                    "curve25519-sha256",
                    "ssh-ed25519",
                    "aes128-ctr",
                    "hmac-sha2-256",
                    "foo",
                    false,
                )),
            ]),
            false,
        ),
        (
            "KEXINIT with a wrong guess following".into(),
            cat(&[
                &id,
                &packet(&kexinit(
                    "ecdh-sha2-nistp256,curve25519-sha256",
                    "ssh-ed25519",
                    "aes128-ctr",
                    "hmac-sha2-256",
                    "none",
                    true,
                )),
                &packet(&cat(&[&[30], &string(&[4; 65])])),
            ]),
            false,
        ),
        (
            "ECDH_INIT with a short key".into(),
            cat(&[&id, &packet(&strict), &packet(&cat(&[&[30], &string(&[1; 31])]))]),
            false,
        ),
        (
            "ECDH_INIT with the zero point".into(),
            cat(&[&id, &packet(&strict), &packet(&cat(&[&[30], &string(&[0; 32])]))]),
            false,
        ),
        (
            "IGNORE, then a strict KEXINIT".into(),
            cat(&[&id, &packet(&cat(&[&[2], &string(b"")])), &packet(&strict)]),
            false,
        ),
        (
            "IGNORE, then a KEXINIT".into(),
            cat(&[&id, &packet(&cat(&[&[2], &string(b"")])), &packet(&plain)]),
            false,
        ),
        (
            "DISCONNECT".into(),
            cat(&[&id, &packet(&cat(&[&[1, 0, 0, 0, 11], &string(b"bye"), &string(b"")]))]),
            false,
        ),
    ];
    // Each message type before the client's KEXINIT, after a plain one and
    // after one asking for strict kex.
    let types = [
        0u8, 2, 3, 5, 6, 19, 20, 21, 25, 30, 31, 32, 34, 49, 50, 60, 80, 90, 98, 191, 192, 193, 255,
    ];
    for (phase, before) in [
        ("before KEXINIT", id.clone()),
        ("after KEXINIT", cat(&[&id, &packet(&plain)])),
        ("after a strict KEXINIT", cat(&[&id, &packet(&strict)])),
    ] {
        for t in types {
            c.push((
                format!("message {t} (8 zero bytes) {phase}"),
                cat(&[&before, &packet(&[t, 0, 0, 0, 0, 0, 0, 0, 0])]),
                false,
            ));
        }
    }
    c
}

// --- after the key exchange ---------------------------------------------

/// What a session case does once the key exchange is over.
#[derive(Clone, Copy)]
enum Then {
    /// Send these messages (already encoded), then listen.
    Send(&'static [&'static [u8]]),
    /// Seal a SERVICE_REQUEST, then damage one byte of it: its last (the
    /// MAC or tag) or its first (the length).
    Corrupt { last: bool },
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Right after NEWKEYS.
    Kex,
    /// After SERVICE_ACCEPT for ssh-userauth.
    Service,
    /// Logged in (the emulator with the persona's password, the real sshd
    /// with a key; both announce their host keys, which are dropped).
    Login,
}

struct SessionCase {
    name: &'static str,
    algs: Algs,
    stage: Stage,
    then: Then,
}

const CHACHA: Algs = Algs {
    cipher: "chacha20-poly1305@openssh.com",
    mac: "hmac-sha2-256-etm@openssh.com",
    strict: true,
};

fn session_cases() -> Vec<SessionCase> {
    // Encoded messages (payloads).
    const SERVICE_CONNECTION: &[u8] = b"\x05\0\0\0\x0essh-connection";
    const SERVICE_USERAUTH: &[u8] = b"\x05\0\0\0\x0cssh-userauth";
    const AUTH_NONE: &[u8] = b"\x32\0\0\0\x04root\0\0\0\x0essh-connection\0\0\0\x04none";
    const OPEN_UNKNOWN: &[u8] = b"\x5a\0\0\0\x1cx-decnet-unknown@example.com\0\0\0\x07\0\x20\0\0\0\0\x80\0";
    const OPEN_SESSION: &[u8] = b"\x5a\0\0\0\x07session\0\0\0\x07\0\x20\0\0\0\0\x80\0";
    const GLOBAL_UNKNOWN: &[u8] = b"\x50\0\0\0\x1cx-decnet-unknown@example.com\x01";
    const REQUEST_NO_CHANNEL: &[u8] = b"\x62\0\0\0\x09\0\0\0\x04exec\x01\0\0\0\x02id";
    const DATA_NO_CHANNEL: &[u8] = b"\x5e\0\0\0\x09\0\0\0\x02hi";
    const REQUEST_UNKNOWN: &[u8] = b"\x62\0\0\0\0\0\0\0\x1cx-decnet-unknown@example.com\x01";
    const SUBSYSTEM_UNKNOWN: &[u8] = b"\x62\0\0\0\0\0\0\0\x09subsystem\x01\0\0\0\x04nope";
    const TYPE_0: &[u8] = b"\0\0\0\0\0";
    const TYPE_150: &[u8] = b"\x96\0\0\0\0";
    const TYPE_200: &[u8] = b"\xc8\0\0\0\0";
    const TYPE_30: &[u8] = b"\x1e\0\0\0\0";
    const TYPE_60: &[u8] = b"\x3c\0\0\0\0";
    const DEBUG_TRUNCATED: &[u8] = b"\x04\0\0";
    const IGNORE: &[u8] = b"\x02\0\0\0\0";
    const NEWKEYS: &[u8] = b"\x15";
    let ctr = |mac: &'static str| Algs {
        cipher: "aes128-ctr",
        mac,
        strict: true,
    };
    let gcm = Algs {
        cipher: "aes256-gcm@openssh.com",
        mac: "hmac-sha2-256-etm@openssh.com",
        strict: true,
    };
    let mut c = vec![
        SessionCase {
            name: "nothing (what follows NEWKEYS)",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[]),
        },
        SessionCase {
            name: "nothing, without strict kex",
            algs: Algs {
                strict: false,
                ..CHACHA
            },
            stage: Stage::Kex,
            then: Then::Send(&[]),
        },
        SessionCase {
            name: "SERVICE_REQUEST ssh-userauth",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[SERVICE_USERAUTH]),
        },
        SessionCase {
            name: "SERVICE_REQUEST ssh-connection",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[SERVICE_CONNECTION]),
        },
        SessionCase {
            name: "USERAUTH_REQUEST before SERVICE_REQUEST",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[AUTH_NONE]),
        },
        SessionCase {
            name: "USERAUTH_REQUEST none",
            algs: CHACHA,
            stage: Stage::Service,
            then: Then::Send(&[AUTH_NONE]),
        },
        SessionCase {
            name: "SERVICE_REQUEST twice",
            algs: CHACHA,
            stage: Stage::Service,
            then: Then::Send(&[SERVICE_USERAUTH]),
        },
        SessionCase {
            name: "message 0 before login",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[TYPE_0]),
        },
        SessionCase {
            name: "message 30 before login",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[TYPE_30]),
        },
        SessionCase {
            name: "message 60 before login",
            algs: CHACHA,
            stage: Stage::Service,
            then: Then::Send(&[TYPE_60]),
        },
        SessionCase {
            name: "message 150 before login",
            algs: CHACHA,
            stage: Stage::Service,
            then: Then::Send(&[TYPE_150]),
        },
        SessionCase {
            name: "message 200 before login",
            algs: CHACHA,
            stage: Stage::Service,
            then: Then::Send(&[TYPE_200]),
        },
        SessionCase {
            name: "NEWKEYS before login",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[NEWKEYS]),
        },
        SessionCase {
            name: "IGNORE then truncated DEBUG before login",
            algs: CHACHA,
            stage: Stage::Kex,
            then: Then::Send(&[IGNORE, DEBUG_TRUNCATED]),
        },
        SessionCase {
            name: "CHANNEL_OPEN before login",
            algs: CHACHA,
            stage: Stage::Service,
            then: Then::Send(&[OPEN_SESSION]),
        },
        SessionCase {
            name: "unknown channel type",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[OPEN_UNKNOWN]),
        },
        SessionCase {
            name: "unknown global request",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[GLOBAL_UNKNOWN]),
        },
        SessionCase {
            name: "channel request on no channel",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[REQUEST_NO_CHANNEL]),
        },
        SessionCase {
            name: "channel data on no channel",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[DATA_NO_CHANNEL]),
        },
        SessionCase {
            name: "unknown channel request",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[OPEN_SESSION, REQUEST_UNKNOWN]),
        },
        SessionCase {
            name: "unknown subsystem",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[OPEN_SESSION, SUBSYSTEM_UNKNOWN]),
        },
        SessionCase {
            name: "SERVICE_REQUEST after login",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[SERVICE_USERAUTH]),
        },
        SessionCase {
            name: "USERAUTH_REQUEST after login",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[AUTH_NONE]),
        },
        SessionCase {
            name: "message 0 after login",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[TYPE_0]),
        },
        SessionCase {
            name: "message 60 after login",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[TYPE_60]),
        },
        SessionCase {
            name: "message 150 after login",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[TYPE_150]),
        },
        SessionCase {
            name: "message 200 after login",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[TYPE_200]),
        },
        SessionCase {
            name: "truncated DEBUG after login",
            algs: CHACHA,
            stage: Stage::Login,
            then: Then::Send(&[DEBUG_TRUNCATED]),
        },
    ];
    for (name, algs) in [
        ("chacha20-poly1305", CHACHA),
        ("aes256-gcm", gcm),
        ("aes128-ctr + hmac-sha2-256", ctr("hmac-sha2-256")),
        ("aes128-ctr + hmac-sha2-256-etm", ctr("hmac-sha2-256-etm@openssh.com")),
        ("aes128-ctr + umac-64", ctr("umac-64@openssh.com")),
    ] {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        c.push(SessionCase {
            name: leak(format!("a bad MAC ({name})")),
            algs,
            stage: Stage::Kex,
            then: Then::Corrupt { last: true },
        });
        c.push(SessionCase {
            name: leak(format!("a corrupt length ({name})")),
            algs,
            stage: Stage::Kex,
            then: Then::Corrupt { last: false },
        });
    }
    c
}

/// One session case against one server: the messages it sends back
/// (comparable form) and how the connection ends.
fn run_session(
    addr: &str,
    case: &SessionCase,
    login: &dyn Fn(&mut Session) -> bool,
    quiet: Duration,
) -> (Vec<String>, End) {
    let mut s = Session::connect(addr, case.algs);
    if case.stage != Stage::Kex {
        s.settle(Duration::from_millis(100)); // EXT_INFO
        s.userauth_service();
    }
    if case.stage == Stage::Login {
        assert!(login(&mut s), "login refused by {addr}");
        s.settle(Duration::from_millis(150)); // hostkeys-00@openssh.com
    }
    match case.then {
        Then::Send(messages) => {
            for m in messages {
                s.send(m);
            }
        }
        Then::Corrupt { last } => {
            let mut wire = s.seal(b"\x05\0\0\0\x0cssh-userauth");
            let at = if last { wire.len() - 1 } else { 0 };
            wire[at] ^= 0x80;
            s.send_raw(&wire);
        }
    }
    let (messages, end) = s.collect(quiet);
    (messages.iter().map(|m| shown(m)).collect(), end)
}

#[test]
fn malformed_input_and_error_paths_answer_like_real_sshd() {
    let Some(pair) = pair() else {
        return;
    };
    let seed = pair.peer.client_seed;
    let (real, ours) = (pair.real.clone(), pair.ours.clone());
    let raw_cases = cases();
    let sessions = session_cases();
    // Each server gets every case, one connection at a time (the real
    // sshd's MaxStartups starts dropping connections beyond 10
    // unauthenticated ones), the two servers side by side. A case that
    // differs is run again on both with a longer wait, so that only a
    // difference that persists counts.
    let diffs = in_namespace(&pair.attacker_ns(), move || {
        let raw_run = |addr: &str, i: usize, quiet: u64| {
            let (_, bytes, first) = &raw_cases[i];
            seen(&ssh_probe::raw(addr, bytes, *first, Duration::from_millis(quiet)))
        };
        let real_login = move |s: &mut Session| s.publickey("root", &seed);
        let ours_login = |s: &mut Session| s.password("root", "toor");
        let session_run = |addr: &str, i: usize, quiet: u64| {
            let login: &dyn Fn(&mut Session) -> bool = if addr == real { &real_login } else { &ours_login };
            run_session(addr, &sessions[i], login, Duration::from_millis(quiet))
        };
        let all = |addr: &str| {
            let raw: Vec<Seen> = (0..raw_cases.len()).map(|i| raw_run(addr, i, 250)).collect();
            let session: Vec<(Vec<String>, End)> = (0..sessions.len()).map(|i| session_run(addr, i, 250)).collect();
            (raw, session)
        };
        let ((real_raw, real_session), (ours_raw, ours_session)) = std::thread::scope(|scope| {
            let r = scope.spawn(|| all(&real));
            let o = scope.spawn(|| all(&ours));
            (r.join().unwrap(), o.join().unwrap())
        });
        let mut diffs = Differences::default();
        for (i, (name, _, _)) in raw_cases.iter().enumerate() {
            let (mut r, mut o) = (real_raw[i].clone(), ours_raw[i].clone());
            if r != o {
                eprintln!("{name}: differs, run again\n    real sshd: {r:?}\n    emulator:  {o:?}");
                (r, o) = (raw_run(&real, i, 1500), raw_run(&ours, i, 1500));
            }
            diffs.check(name, &r, &o);
        }
        for (i, case) in sessions.iter().enumerate() {
            let (mut r, mut o) = (real_session[i].clone(), ours_session[i].clone());
            if r != o {
                eprintln!(
                    "{}: differs, run again\n    real sshd: {r:?}\n    emulator:  {o:?}",
                    case.name
                );
                (r, o) = (session_run(&real, i, 1500), session_run(&ours, i, 1500));
            }
            diffs.check(case.name, &r, &o);
        }
        diffs
    });
    diffs.assert_none(&pair.peer);
}

/// The answer to a group-exchange request (after a KEXINIT that offers only
/// group exchange).
fn gex_answer(addr: &str, ns: &str, min: u32, n: u32, max: u32) -> Answer {
    let id = format!("{}\r\n", ssh_probe::CLIENT_IDENT).into_bytes();
    let init = kexinit(
        "diffie-hellman-group-exchange-sha256",
        "rsa-sha2-512,ssh-ed25519",
        "aes128-ctr",
        "hmac-sha2-256",
        "none",
        false,
    );
    let mut request = vec![34];
    for v in [min, n, max] {
        request.extend_from_slice(&v.to_be_bytes());
    }
    let bytes = [id, packet(&init), packet(&request)].concat();
    let addr = addr.to_string();
    in_namespace(ns, move || {
        ssh_probe::raw(&addr, &bytes, false, Duration::from_millis(300))
    })
}

/// The group (p, g) of the KEX_DH_GEX_GROUP in an answer, if there is one.
fn group_in(answer: &Answer) -> Option<(Vec<u8>, Vec<u8>)> {
    let (packets, _) = plain_packets(&answer.after);
    let group = packets.iter().find(|p| p.first() == Some(&31))?;
    let mut r = decnet_emu_ssh::wire::Reader::new(&group[1..]);
    let p = r.string().unwrap().to_vec();
    let g = r.string().unwrap().to_vec();
    Some((p, g))
}

/// A group-exchange request's group (p, g).
fn gex_group(addr: &str, ns: &str, min: u32, n: u32, max: u32) -> (Vec<u8>, Vec<u8>) {
    let answer = gex_answer(addr, ns, min, n, max);
    group_in(&answer).unwrap_or_else(|| panic!("no KEX_DH_GEX_GROUP in {}", show(&answer.after)))
}

/// The moduli file's groups as the wire carries them (mpints: big-endian,
/// a leading zero byte when the top bit is set), with their sizes in bits.
fn file_groups(path: &str) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
    let mpint = |hex: &str| {
        let mut bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        bytes
    };
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let g = format!("{:0>2}", f[5]);
            (f[4].parse::<usize>().unwrap() + 1, mpint(f[6]), mpint(&g))
        })
        .collect()
}

/// Group exchange as sshd does it with its moduli file: for each request,
/// both servers answer with a group of the same size, taken from the file,
/// and not always the same one (sshd picks at random among those of the
/// best size; a fixed answer would be a tell to anyone who asks twice).
#[test]
fn group_exchange_draws_from_the_moduli_file_like_real_sshd() {
    let Some(pair) = pair() else {
        return;
    };
    let moduli = moduli_file(&sshd_binary().unwrap()).display().to_string();
    let file = file_groups(&moduli);
    let ns = pair.attacker_ns();
    // What OpenSSH clients ask for (min 2048, n from the cipher's strength),
    // and bounds that leave only some sizes.
    for (min, n, max) in [
        (2048, 3072, 8192),
        (2048, 8192, 8192),
        (2048, 7680, 8192),
        (3072, 4096, 6144),
    ] {
        let mut sizes = Vec::new();
        for (who, addr) in [("real sshd", &pair.real), ("emulator", &pair.ours)] {
            let mut primes = std::collections::BTreeSet::new();
            let mut size = None;
            for _ in 0..8 {
                let (p, g) = gex_group(addr, &ns, min, n, max);
                let (bits, ..) = file
                    .iter()
                    .find(|(_, fp, fg)| *fp == p && *fg == g)
                    .unwrap_or_else(|| panic!("{who}: ({min}, {n}, {max}) answered with a group not in {moduli}"));
                assert!(size.is_none_or(|s| s == *bits), "{who}: one size per request");
                size = Some(*bits);
                primes.insert(p);
            }
            assert!(
                primes.len() > 1,
                "{who}: ({min}, {n}, {max}) gave the same group 8 times"
            );
            sizes.push(size.unwrap());
        }
        assert_eq!(
            sizes[0], sizes[1],
            "group size for ({min}, {n}, {max}): real sshd vs emulator"
        );
    }
    // Requests out of order or out of range: sshd checks the numbers as
    // sent, then clamps them to 2048..=8192 (and falls back to a fixed group
    // when nothing in the file fits). Same answer, or same size of group.
    let mut differences = Differences::default();
    for (min, n, max) in [
        (2048, 1024, 8192),
        (2048, 9000, 8192),
        (4096, 2048, 8192),
        (9000, 9000, 9000),
        (1024, 1024, 1024),
        (1024, 1024, 2048),
        (0, 0, 0),
        (u32::MAX, u32::MAX, u32::MAX),
    ] {
        let real = gex_answer(&pair.real, &ns, min, n, max);
        let ours = gex_answer(&pair.ours, &ns, min, n, max);
        let case = format!("GEX request ({min}, {n}, {max})");
        let size = |a: &Answer| group_in(a).map(|(p, _)| (p.len() - usize::from(p[0] == 0)) * 8);
        match (size(&real), size(&ours)) {
            (None, None) => differences.check(&case, &seen(&real), &seen(&ours)),
            (real, ours) => differences.check(&case, &real, &ours),
        }
    }
    differences.assert_none(&pair.peer);
}
