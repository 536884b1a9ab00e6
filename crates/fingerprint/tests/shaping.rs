//! The packet shaping offline: a real `nmap -O` exchange with a decky that
//! ran Linux's own stack (captured once, `tests/fixtures/`) is fed packet by
//! packet through the committed eBPF programs with the kernel's
//! BPF_PROG_TEST_RUN (aya's `TestRun`), as if the decky were `windows-10`:
//! nmap's probes into `ingress`, the kernel's answers into `egress`. Every
//! packet that comes out is checked field by field against the
//! personality's TOML (SYN-ACK options, MSS per probe, RST numbers, the
//! ICMP TTL, echo replies' DF, the length of a port unreachable's quote),
//! and its checksums are checked. Needs root (CAP_BPF);
//! under `CI=true` it fails instead of skipping.
//!
//! The fixture: `nmap -n -O -Pn -sS -sU -p T:80,81,U:9 --max-os-tries 1
//! 10.213.0.2` from the lab's attacker, captured on the attacker's `eth0`,
//! against a decky whose personality shaped nothing (family windows: TTL 128).

#![allow(clippy::unwrap_used)] // A failed unwrap is the test failing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use aya::{Ebpf, include_bytes_aligned};
use decnet_core::Catalogue;
use decnet_core::catalogue::{
    AckChoice, ClosedReply, EchoDf, IpIdPolicy, Personality, ProbeReply, RstAck, SeqChoice, Tcp, tcp_flags,
    template_len,
};
use decnet_core::fleet::{CliFleet, DeckySpec, FleetRequest, PlanOptions, plan};
use decnet_core::host::{HostFacts, HostInterface};

static OBJECT: &[u8] = include_bytes_aligned!("../bpf/decnet-personality.o");
static FIXTURE: &[u8] = include_bytes!("fixtures/nmap-os-linux-stack.pcap");
const DECKY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

fn is_root() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var("CI").is_err(),
            "CI runs as root; BPF_PROG_TEST_RUN needs it"
        );
        eprintln!("skipped: loading eBPF programs needs root");
    }
    root
}

/// The decky the fixture's address would be with `slug`, planned as a deploy plans it.
fn decky(slug: &str) -> DeckySpec {
    let catalogue = Catalogue::embedded().unwrap();
    let flags = CliFleet {
        deckies: Some(1),
        services: Some("http".into()),
        os_personality: Some(slug.into()),
        interface: Some("lab0".into()),
        subnet: Some("10.213.0.0/24".into()),
        gateway: Some("10.213.0.1".into()),
        ip_start: Some(DECKY.to_string()),
        seed: Some("fixture".into()),
        ..CliFleet::default()
    };
    let request = FleetRequest::build(&flags, None, &catalogue).unwrap();
    let host = HostFacts {
        interfaces: vec![HostInterface {
            name: "lab0".into(),
            addrs: vec!["10.213.0.1/24".parse().unwrap()],
        }],
        default_route: None,
    };
    let options = PlanOptions {
        installation_seed: None,
        reserved: Vec::new(),
    };
    let fleet = plan(&request, &catalogue, &host, &options).unwrap();
    let spec = fleet.deckies.into_iter().next().unwrap();
    assert_eq!(spec.ip, DECKY);
    assert_eq!(spec.personality, slug);
    spec
}

/// The fixture's Ethernet frames, in order.
fn frames(pcap: &[u8]) -> Vec<&[u8]> {
    assert_eq!(&pcap[0..4], &0xa1b2_c3d4u32.to_le_bytes(), "a little-endian µs pcap");
    let linktype = u32::from_le_bytes(pcap[20..24].try_into().unwrap());
    assert_eq!(linktype, 1, "Ethernet");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(pcap[at + 12..at + 16].try_into().unwrap()) as usize;
        assert_eq!(caplen, len, "the fixture holds whole packets");
        out.push(&pcap[at + 16..at + 16 + caplen]);
        at += 16 + caplen;
    }
    out
}

/// The fields of an IPv4 packet in an Ethernet frame that the checks read.
#[derive(Debug, Clone)]
struct Packet {
    bytes: Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    df: bool,
    ttl: u8,
    proto: u8,
}

const TCP: usize = 34;

impl Packet {
    fn parse(frame: &[u8]) -> Packet {
        assert_eq!(&frame[12..14], &[8, 0], "IPv4");
        assert_eq!(frame[14], 0x45, "no IP options");
        Packet {
            bytes: frame.to_vec(),
            src: Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]),
            dst: Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]),
            id: u16::from_be_bytes([frame[18], frame[19]]),
            df: frame[20] & 0x40 != 0,
            ttl: frame[22],
            proto: frame[23],
        }
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    fn seq(&self) -> u32 {
        self.u32_at(TCP + 4)
    }

    fn ack(&self) -> u32 {
        self.u32_at(TCP + 8)
    }

    fn flags(&self) -> u8 {
        self.bytes[TCP + 13]
    }

    fn window(&self) -> u16 {
        self.u16_at(TCP + 14)
    }

    fn ports(&self) -> (u16, u16) {
        (self.u16_at(TCP), self.u16_at(TCP + 2))
    }

    fn tcp_options(&self) -> &[u8] {
        let doff = (self.bytes[TCP + 12] >> 4) as usize * 4;
        &self.bytes[TCP + 20..TCP + doff]
    }

    /// The options in nmap's letters, with their values.
    fn option_letters(&self) -> (String, Options) {
        let mut letters = String::new();
        let mut values = Options::default();
        let o = self.tcp_options();
        let mut i = 0;
        while i < o.len() {
            match o[i] {
                0 => {
                    letters.push('L');
                    i += 1;
                }
                1 => {
                    letters.push('N');
                    i += 1;
                }
                kind => {
                    let len = o[i + 1] as usize;
                    match kind {
                        2 => {
                            letters.push('M');
                            values.mss = Some(u16::from_be_bytes([o[i + 2], o[i + 3]]));
                        }
                        3 => {
                            letters.push('W');
                            values.ws = Some(o[i + 2]);
                        }
                        4 => letters.push('S'),
                        8 => {
                            letters.push('T');
                            values.ts = Some((
                                u32::from_be_bytes(o[i + 2..i + 6].try_into().unwrap()),
                                u32::from_be_bytes(o[i + 6..i + 10].try_into().unwrap()),
                            ));
                        }
                        other => panic!("unexpected option {other}"),
                    }
                    i += len;
                }
            }
        }
        (letters, values)
    }

    /// Whether the IP header checksum and the TCP or ICMP checksum hold.
    fn checksums_hold(&self) -> bool {
        let b = &self.bytes;
        let total = self.u16_at(16) as usize;
        let ip_ok = fold(sum(&b[14..34])) == 0xffff;
        let l4 = &b[34..14 + total];
        let l4_ok = match self.proto {
            6 => {
                let pseudo = sum(&b[26..34]) + 6 + l4.len() as u32;
                fold(pseudo + sum(l4)) == 0xffff
            }
            1 => fold(sum(l4)) == 0xffff,
            _ => true,
        };
        ip_ok && l4_ok
    }
}

/// The decky's TCP checksums were offloaded (the capture holds only the
/// pseudo-header's sum): fill them in as the device would, so that the
/// programs' incremental updates can be checked against a full sum.
fn with_full_checksum(frame: &[u8]) -> Vec<u8> {
    let mut b = frame.to_vec();
    if b[23] == 6 {
        let total = u16::from_be_bytes([b[16], b[17]]) as usize;
        b[TCP + 16] = 0;
        b[TCP + 17] = 0;
        let pseudo = sum(&b[26..34]) + 6 + (total - 20) as u32;
        let csum = !fold(pseudo + sum(&b[TCP..14 + total]));
        b[TCP + 16..TCP + 18].copy_from_slice(&csum.to_be_bytes());
    }
    b
}

#[derive(Debug, Default)]
struct Options {
    mss: Option<u16>,
    ws: Option<u8>,
    ts: Option<(u32, u32)>,
}

fn sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// nmap's SYN probes by window and first option (nmap book, OS detection
/// methods): the key of `tcp.syn_ack_windows` each belongs to.
fn probe_class(syn: &Packet) -> &'static str {
    let first = syn.tcp_options().first().copied().unwrap_or(0);
    if syn.flags() & 0xc0 == 0xc0 {
        return if syn.window() == 3 { "ecn" } else { "ordinary" };
    }
    match (syn.window(), first) {
        (1, 3) => "probe1",
        (63, 2) => "probe2",
        (4, 8) => "probe3",
        (4, 4) => "probe4",
        (16, 2) => "probe5",
        (512, 2) => "probe6",
        _ => "ordinary",
    }
}

/// The option-set key (`wst`, `st` …) the kernel answered with.
fn option_set(letters: &str) -> String {
    let set: String = [('W', 'w'), ('S', 's'), ('T', 't')]
        .iter()
        .filter(|(l, _)| letters.contains(*l))
        .map(|(_, k)| *k)
        .collect();
    if set.is_empty() { "none".into() } else { set }
}

struct Programs {
    ebpf: Ebpf,
}

impl Programs {
    fn load(spec: &DeckySpec) -> Programs {
        let mut ebpf = Ebpf::load(OBJECT).unwrap();
        for name in ["egress", "ingress"] {
            let p: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
            p.load().unwrap();
        }
        let mut map: aya::maps::HashMap<_, u32, decnet_ebpf_common::Personality> =
            aya::maps::HashMap::try_from(ebpf.map_mut("PERSONALITIES").unwrap()).unwrap();
        map.insert(
            u32::from_ne_bytes(spec.ip.octets()),
            decnet_fingerprint::record(spec),
            0,
        )
        .unwrap();
        Programs { ebpf }
    }

    /// Runs `program` on one frame: its verdict and the frame it leaves.
    fn run(&self, program: &str, frame: &[u8]) -> (u32, Packet) {
        let p: &SchedClassifier = self.ebpf.program(program).unwrap().try_into().unwrap();
        let mut out = vec![0u8; 2048];
        let result = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .unwrap();
        out.truncate(result.data_size_out as usize);
        (result.return_value, Packet::parse(&out))
    }
}

/// `wst`: the persona's SYN-ACK layout, which a reply with options carries.
fn expected_reply(
    spec: &DeckySpec,
    probe: &Packet,
    reply: &ProbeReply,
    wst: Option<&String>,
    out: &Packet,
    what: &str,
) {
    assert_eq!(out.flags(), tcp_flags(&reply.flags).unwrap(), "{what} flags");
    assert_eq!(out.window(), reply.window, "{what} window");
    assert_eq!((out.src, out.dst), (probe.dst, probe.src), "{what} goes back");
    assert_eq!(out.ports(), (probe.ports().1, probe.ports().0), "{what} ports");
    let seq = match reply.seq {
        SeqChoice::Zero => Some(0),
        SeqChoice::Ack => Some(probe.ack()),
        SeqChoice::AckPlusOne => Some(probe.ack().wrapping_add(1)),
        SeqChoice::Other => None,
    };
    if let Some(seq) = seq {
        assert_eq!(out.seq(), seq, "{what} seq");
    }
    match reply.ack {
        AckChoice::Zero => assert_eq!(out.ack(), 0, "{what} ack"),
        AckChoice::Seq => assert_eq!(out.ack(), probe.seq(), "{what} ack"),
        AckChoice::SeqPlusOne => assert_eq!(out.ack(), probe.seq().wrapping_add(1), "{what} ack"),
        AckChoice::Other => {
            assert!(
                ![0, probe.seq(), probe.seq().wrapping_add(1)].contains(&out.ack()),
                "{what} ack"
            )
        }
    }
    let ttl: u8 = spec
        .sysctls
        .get("net.ipv4.ip_default_ttl")
        .map_or(64, |t| t.parse().unwrap());
    assert_eq!(out.ttl, ttl, "{what} TTL");
    let df = spec.sysctls.get("net.ipv4.ip_no_pmtu_disc").is_none_or(|v| v == "0");
    assert_eq!(out.df, reply.df.unwrap_or(df), "{what} DF");
    if !reply.options {
        assert!(out.tcp_options().is_empty(), "{what} has no options");
        return;
    }
    let (letters, values) = out.option_letters();
    assert_eq!(Some(&letters), wst, "{what} options");
    assert_eq!(values.mss, spec.shaping.tcp.mss, "{what} MSS");
    assert_eq!(values.ws, spec.shaping.tcp.window_scale, "{what} window scale");
    let (val, ecr) = values.ts.unwrap();
    assert_ne!(val, 0, "{what} timestamp");
    assert_eq!(
        Some(ecr),
        probe.option_letters().1.ts.map(|t| t.0),
        "{what} echoes the probe's timestamp"
    );
}

#[test]
fn nmaps_exchange_comes_out_as_each_personality() {
    if !is_root() {
        return;
    }
    let catalogue = Catalogue::embedded().unwrap();
    let slugs: Vec<String> = catalogue.personalities().map(|p| p.slug.clone()).collect();
    assert!(slugs.len() >= 12, "{slugs:?}");
    for slug in &slugs {
        let p = catalogue.personality(slug).unwrap();
        exchange_as(p, &decky(slug));
    }
}

/// Feeds the fixture through programs holding `spec`'s record and checks
/// every packet that comes out against personality `p`.
fn exchange_as(p: &Personality, spec: &DeckySpec) {
    let slug = &p.slug;
    let tcp = &p.shaping.tcp;
    let programs = Programs::load(spec);

    let mut syns: BTreeMap<(u16, u16), Packet> = BTreeMap::new();
    // Segments without ACK (T5, T7) by ports, and those dropped on the way in.
    let mut no_ack: BTreeMap<(u16, u16), Packet> = BTreeMap::new();
    let mut dropped: Vec<(u16, u16)> = Vec::new();
    // Echo requests' DF by identifier and sequence number.
    let mut echoes: BTreeMap<[u8; 4], bool> = BTreeMap::new();
    let mut sent: Vec<Packet> = Vec::new();
    let (mut last_isn, mut last_step) = (None, None);
    let mut last_id: Option<u16> = None;
    // The last IP ID of each class (TCP, RST, ICMP) under `random_far`.
    let mut last_far: [Option<u16>; 3] = [None; 3];
    let ts_offset = decnet_fingerprint::record(spec).clock.offset;
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for frame in frames(FIXTURE) {
        let packet = Packet::parse(frame);
        if packet.dst == DECKY {
            let (verdict, out) = programs.run("ingress", frame);
            sent.push(packet.clone());
            if packet.proto != 6 {
                assert_eq!((verdict, &out.bytes), (TC_ACT_OK, &packet.bytes), "passes unchanged");
                if packet.proto == 1 && packet.bytes[TCP] == 8 {
                    echoes.insert(packet.bytes[TCP + 4..TCP + 8].try_into().unwrap(), packet.df);
                }
                continue;
            }
            let flags = packet.flags();
            if flags & 0x14 == 0 {
                no_ack.insert(packet.ports(), packet.clone());
            }
            if flags & 0x17 == 0x01 && tcp.t7.is_some_and(|t| t.silent) {
                // nmap's T7 (FIN+PSH+URG) for a persona that does not answer it.
                assert_eq!(verdict, TC_ACT_SHOT, "{slug}: T7 is dropped");
                dropped.push(packet.ports());
                *seen.entry("T7 dropped").or_default() += 1;
                continue;
            }
            // nmap's T2 (no flags) and T3 (SYN+FIN+PSH+URG) to the open port.
            let probe = match flags {
                0 => Some(("T2", tcp.t2.as_ref())),
                0x2b => Some(("T3", tcp.t3.as_ref())),
                _ => None,
            };
            match probe {
                Some((what, Some(reply))) if packet.ports().1 == 80 => {
                    assert_eq!(verdict, TC_ACT_REDIRECT, "{slug}: {what} is answered");
                    assert!(
                        out.checksums_hold(),
                        "{slug}: {what} answer checksums: {:02x?}",
                        out.bytes
                    );
                    let wst = tcp.options.get("wst");
                    expected_reply(spec, &packet, reply, wst, &out, &format!("{slug}: {what}"));
                    *seen.entry(what).or_default() += 1;
                }
                _ => {
                    assert_eq!(verdict, TC_ACT_OK, "{slug}: passes");
                    if flags & 0x17 == 0x02 {
                        // A SYN is only sorted, never changed.
                        assert_eq!(out.bytes, packet.bytes);
                        syns.insert(packet.ports(), packet.clone());
                    }
                }
            }
            continue;
        }

        assert_eq!(packet.src, DECKY);
        let frame = &with_full_checksum(frame);
        let packet = Packet::parse(frame);
        assert!(packet.checksums_hold());
        if packet.proto == 6 && dropped.contains(&(packet.ports().1, packet.ports().0)) {
            continue; // the answer to a probe the persona dropped on the way in
        }
        let (verdict, out) = programs.run("egress", frame);
        if packet.proto == 6 && packet.flags() == 0x04 && tcp.rst_ack == Some(RstAck::None) {
            assert_eq!(verdict, TC_ACT_SHOT, "{slug}: no RST to a stray ACK (T4, T6)");
            *seen.entry("RST dropped").or_default() += 1;
            continue;
        }
        assert_eq!(verdict, TC_ACT_OK);
        assert!(out.checksums_hold(), "{slug}: checksums of {:02x?}", out.bytes);
        let ttl = match (out.proto, p.shaping.icmp.ttl) {
            (1, Some(ttl)) => ttl,
            _ => packet.ttl,
        };
        assert_eq!(out.ttl, ttl, "{slug}: the TTL is the sysctl's, or ICMP's own");
        // One counter for TCP, RSTs and ICMP: consecutive IDs.
        let (policy, class) = match (out.proto, out.proto == 6 && out.flags() & 0x04 != 0) {
            (6, true) => (tcp.ip_id.rst, 1),
            (6, false) => (tcp.ip_id.tcp, 0),
            _ => (tcp.ip_id.icmp, 2),
        };
        match policy {
            IpIdPolicy::Incremental => {
                if let Some(last) = last_id {
                    assert_eq!(out.id, last.wrapping_add(1), "{slug}: IP IDs count up");
                }
                last_id = Some(out.id);
            }
            IpIdPolicy::Zero => assert_eq!(out.id, 0, "{slug}: zero IP IDs"),
            IpIdPolicy::RandomFar => {
                if let Some(last) = last_far[class].replace(out.id) {
                    let step = out.id.wrapping_sub(last);
                    assert!(step > 20_000 && step % 256 != 0, "{slug}: IP ID step {step}");
                }
            }
            IpIdPolicy::Kernel => assert_eq!(out.id, packet.id, "{slug}: the kernel's IP ID"),
            _ => {}
        }
        if out.proto == 1 {
            let kind = out.bytes[TCP];
            if kind == 0 {
                assert_eq!(out.bytes.len(), packet.bytes.len(), "{slug}: echo reply length");
                let code = p.shaping.icmp.echo_code.unwrap_or(packet.bytes[TCP + 1]);
                assert_eq!(out.bytes[TCP + 1], code, "{slug}: echo reply code");
                let asked = echoes[&<[u8; 4]>::try_from(&out.bytes[TCP + 4..TCP + 8]).unwrap()];
                let df = match p.shaping.icmp.echo_df {
                    Some(EchoDf::Same) => asked,
                    Some(EchoDf::Set) => true,
                    Some(EchoDf::Clear) => false,
                    None => packet.df,
                };
                assert_eq!(out.df, df, "{slug}: echo reply DF (request's: {asked})");
                *seen.entry("IE").or_default() += 1;
            } else {
                // U1: a port unreachable quoting the UDP probe, shortened or whole.
                assert_eq!((kind, out.bytes[TCP + 1]), (3, 3), "{slug}: port unreachable");
                let quote = p.shaping.icmp.quote.map_or(packet.bytes.len() - 42, usize::from);
                assert_eq!(out.u16_at(16) as usize, 28 + quote, "{slug}: U1 IP length");
                assert_eq!(out.bytes.len(), 42 + quote, "{slug}: U1 frame length");
                // The quoted UDP checksum (bytes 26-27 of the quote) may be zeroed.
                let mut quoted = packet.bytes[42..42 + quote].to_vec();
                if p.shaping.icmp.zero_quoted_udp_checksum {
                    quoted[26..28].fill(0);
                }
                assert_eq!(
                    out.bytes[42..],
                    quoted[..],
                    "{slug}: U1 quotes the probe's first bytes (checksum zeroed or not)"
                );
                let probe = sent.iter().rev().find(|s| s.proto == 17).unwrap();
                assert_eq!(
                    out.bytes[42 + 28..],
                    probe.bytes[14 + 28..14 + quote],
                    "{slug}: the quote is the probe's"
                );
                *seen.entry("U1").or_default() += 1;
            }
            continue;
        }
        if out.flags() & 0x12 != 0x12 {
            assert_eq!(out.bytes.len(), packet.bytes.len(), "{slug}: lengths stay");
        }
        let keeps_df = spec.sysctls.get("net.ipv4.ip_no_pmtu_disc").is_none_or(|v| v == "0");
        let flags = out.flags();
        let rule_df = if flags == 0x14 {
            closed_rule(tcp, &no_ack, &out).1.and_then(|r| r.df)
        } else {
            None
        };
        assert_eq!(
            out.df,
            rule_df.unwrap_or(keeps_df && packet.df),
            "{slug}: DF follows ip_no_pmtu_disc or the T5/T7 rule"
        );
        if flags & 0x12 == 0x12 {
            // A SYN-ACK: window per probe, options in the persona's order.
            let (sport, dport) = out.ports();
            let syn = &syns[&(dport, sport)];
            let class = probe_class(syn);
            let window = tcp.syn_ack_windows.get(class).copied().or(tcp.syn_ack_window);
            assert_eq!(
                out.window(),
                window.unwrap_or(packet.window()),
                "{slug}: {class} window"
            );
            let (kernel_letters, kernel) = packet.option_letters();
            let (letters, values) = out.option_letters();
            let set = option_set(&kernel_letters);
            let template = tcp.options.get(&set).cloned().unwrap_or(kernel_letters.clone());
            assert_eq!(
                letters, template,
                "{slug}: {class} options (kernel's: {kernel_letters})"
            );
            // A longer template grows the SYN-ACK by whole words.
            let grown = template_len(&template).unwrap() - packet.tcp_options().len();
            assert_eq!(out.bytes.len(), packet.bytes.len() + grown, "{slug}: {class} length");
            assert_eq!(
                out.u16_at(16) as usize,
                out.bytes.len() - 14,
                "{slug}: {class} IP length"
            );
            let mss = tcp.syn_ack_mss.get(class).copied().or(tcp.mss);
            assert_eq!(values.mss, mss.or(kernel.mss), "{slug}: {class} MSS");
            if kernel.ws.is_some() {
                assert_eq!(
                    values.ws,
                    tcp.window_scale.or(kernel.ws),
                    "{slug}: {class} window scale"
                );
            }
            if let (Some((val, ecr)), Some((kval, kecr))) = (values.ts, kernel.ts) {
                assert_eq!(ecr, kecr, "{slug}: {class}: the peer's timestamp is echoed");
                if tcp.timestamp_per_connection {
                    let start = out.seq().wrapping_add(ts_offset);
                    assert_eq!(
                        val, start,
                        "{slug}: {class}: the connection's timestamps start at its ISN"
                    );
                } else if tcp.timestamp_hz.is_some() {
                    assert_ne!(val, kval, "{slug}: {class}: the decky's own timestamp clock");
                } else {
                    assert_eq!(val, kval, "{slug}: {class}: the kernel's timestamp");
                }
            }
            if let Some(gcd) = tcp.isn.and_then(|i| i.gcd) {
                // Each connection steps the counter by gcd, then 2 · gcd.
                if let Some(last) = last_isn.replace(out.seq()) {
                    let step = out.seq().wrapping_sub(last);
                    assert!(step == gcd || step == 2 * gcd, "{slug}: {class}: ISN step {step}");
                    assert_ne!(Some(step), last_step.replace(step), "{slug}: steps alternate");
                }
            }
            // An ordinary connection of a stateless personality, its window
            // scale the kernel's, keeps the kernel's ISN (it is not tracked).
            let untracked = class == "ordinary"
                && tcp.stateless()
                && (kernel.ws.is_none() || tcp.window_scale.is_none_or(|ws| Some(ws) == kernel.ws));
            if tcp.isn.is_some() && !untracked {
                assert_ne!(out.seq(), packet.seq(), "{slug}: {class}: the decky's own ISN");
            } else {
                assert_eq!(out.seq(), packet.seq(), "{slug}: {class}: the kernel's ISN");
            }
            assert_eq!(out.ack(), packet.ack());
            *seen.entry("SYN-ACK").or_default() += 1;
        } else if flags == 0x04 {
            // A bare RST (T4, T6, the ACK probes).
            if tcp.rst_ack == Some(RstAck::Other) {
                assert_ne!(out.ack(), 0, "{slug}: bare RST ack (A=O)");
            } else {
                assert_eq!(out.ack(), packet.ack(), "{slug}: the kernel's bare RST ack");
            }
            assert_eq!(out.seq(), packet.seq());
            *seen.entry("RST").or_default() += 1;
        } else {
            // RST+ACK from a closed port (T5: SYN, T7: FIN+PSH+URG).
            assert_eq!(out.flags(), packet.flags());
            let (sport, dport) = out.ports();
            let probe = &no_ack[&(dport, sport)];
            let (what, rule) = closed_rule(tcp, &no_ack, &out);
            let rule = rule.unwrap_or_default();
            let seq = match rule.seq {
                Some(SeqChoice::Ack) => probe.ack(),
                _ => packet.seq(),
            };
            assert_eq!(out.seq(), seq, "{slug}: {what} seq");
            let ack = match rule.ack {
                Some(AckChoice::Seq) => probe.seq(),
                _ => packet.ack(),
            };
            assert_eq!(out.ack(), ack, "{slug}: {what} ack");
            *seen.entry("RST+ACK").or_default() += 1;
        }
    }
    // The fixture drives every path: 6 SEQ probes, ECN, T1 and the port scan's SYN-ACK …
    let seen = |what: &str| seen.get(what).copied().unwrap_or(0);
    assert!(seen("SYN-ACK") >= 8, "{slug}");
    assert_eq!(
        seen("T2") > 0,
        tcp.t2.is_some(),
        "{slug}: T2 answered iff the personality answers it"
    );
    assert_eq!(
        seen("T3") > 0,
        tcp.t3.is_some(),
        "{slug}: T3 answered iff the personality answers it"
    );
    if tcp.rst_ack == Some(RstAck::None) {
        assert!(seen("RST dropped") >= 2, "{slug}");
    } else {
        assert!(seen("RST") >= 2, "{slug}");
    }
    if tcp.t7.is_some_and(|t| t.silent) {
        assert!(seen("T7 dropped") >= 1 && seen("RST+ACK") >= 2, "{slug}");
    } else {
        assert!(seen("RST+ACK") >= 3, "{slug}");
    }
    assert!(seen("IE") >= 2, "{slug}");
    assert!(seen("U1") >= 1, "{slug}");
}

/// Which probe (T5: a SYN, T7: FIN+PSH+URG) a closed port's RST+ACK
/// answers, and the personality's rule for it.
fn closed_rule(tcp: &Tcp, no_ack: &BTreeMap<(u16, u16), Packet>, out: &Packet) -> (&'static str, Option<ClosedReply>) {
    let (sport, dport) = out.ports();
    if no_ack[&(dport, sport)].flags() & 0x02 != 0 {
        ("T5", tcp.t5)
    } else {
        ("T7", tcp.t7)
    }
}

#[test]
fn a_decky_without_a_personality_passes_untouched() {
    if !is_root() {
        return;
    }
    let spec = decky("windows-10");
    // Loaded, but with no record for the fixture's address.
    let mut ebpf = Ebpf::load(OBJECT).unwrap();
    for name in ["egress", "ingress"] {
        let p: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap();
    }
    let programs = Programs { ebpf };
    assert_eq!(spec.ip, DECKY);
    for frame in frames(FIXTURE) {
        let packet = Packet::parse(frame);
        let program = if packet.dst == DECKY { "ingress" } else { "egress" };
        let (verdict, out) = programs.run(program, frame);
        assert_eq!(verdict, TC_ACT_OK);
        assert_eq!(
            out.bytes, packet.bytes,
            "{program} changed a packet of an unknown decky"
        );
    }
}

/// A TCP segment in an Ethernet frame, checksums filled in.
#[allow(clippy::too_many_arguments)] // The fields of a segment, named at each call.
fn segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let tcp_len = 20 + options.len() + data.len();
    let mut b = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
    b.extend([0x45, 0]);
    b.extend(((20 + tcp_len) as u16).to_be_bytes());
    b.extend([0, 1, 0x40, 0, 64, 6, 0, 0]);
    b.extend(src.octets());
    b.extend(dst.octets());
    let ip_sum = !fold(sum(&b[14..34]));
    b[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    b.extend(ports.0.to_be_bytes());
    b.extend(ports.1.to_be_bytes());
    b.extend(seq.to_be_bytes());
    b.extend(ack.to_be_bytes());
    b.extend([((5 + options.len() / 4) as u8) << 4, flags]);
    b.extend([0xff, 0xff, 0, 0, 0, 0]);
    b.extend(options);
    b.extend(data);
    with_full_checksum(&b)
}

/// MSS, SACK permitted + timestamps, NOP + window scale: Linux's SYN-ACK.
const LINUX_SYN_ACK_OPTIONS: [u8; 20] = [2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 7, 1, 3, 3, 7];

/// The kernel's SYN-ACK from the decky to `peer` at `ports`, through
/// `egress`. Its window scale, 7, is not windows-10's 8: the connection's
/// windows are rescaled, so it takes a slot (and the persona's ISN).
fn tracked_syn_ack(programs: &Programs, peer: Ipv4Addr, ports: (u16, u16), kernel_isn: u32, peer_isn: u32) -> Packet {
    let frame = segment(
        DECKY,
        peer,
        ports,
        kernel_isn,
        peer_isn + 1,
        0x12,
        &LINUX_SYN_ACK_OPTIONS,
        &[],
    );
    programs.run("egress", &frame).1
}

/// The TIME_WAIT slots in use (their seals sound).
fn time_waits(programs: &Programs) -> usize {
    let map: aya::maps::Array<_, decnet_ebpf_common::TimeWait> =
        aya::maps::Array::try_from(programs.ebpf.map("TIME_WAITS").unwrap()).unwrap();
    map.iter()
        .map(Result::unwrap)
        .filter(|tw| tw.closed_ns != 0 && tw.seal == tw.seal())
        .count()
}

/// The open connections' slots in use (in both tables).
fn connections(programs: &Programs) -> usize {
    ["HOT_CONNECTIONS", "CONNECTIONS"]
        .into_iter()
        .map(|name| {
            let map: aya::maps::Array<_, decnet_ebpf_common::ConnSlot> =
                aya::maps::Array::try_from(programs.ebpf.map(name).unwrap()).unwrap();
            map.iter()
                .map(Result::unwrap)
                .filter(|slot| slot.state != decnet_ebpf_common::SLOT_FREE)
                .count()
        })
        .sum()
}

/// The connections of a set the small table has no room left in go to the
/// large table, are translated the same, and leave it (and its count) with
/// their RST.
#[test]
fn a_full_set_overflows_into_the_large_table() {
    if !is_root() {
        return;
    }
    use decnet_ebpf_common::{CONN_WAYS, ConnSlot, FlowKey, HOT_SET_BITS};
    let programs = Programs::load(&decky("windows-10"));
    let peer = Ipv4Addr::new(10, 213, 0, 100);
    let key = |port: u16| FlowKey {
        local: u32::from_ne_bytes(DECKY.octets()),
        remote: u32::from_ne_bytes(peer.octets()),
        local_port: 80u16.to_be(),
        remote_port: port.to_be(),
    };
    // Six peer ports whose connections share a set of the small table.
    let set = ConnSlot::set(&key(40_000), HOT_SET_BITS);
    let ports: Vec<u16> = (40_000..)
        .filter(|p| ConnSlot::set(&key(*p), HOT_SET_BITS) == set)
        .take(6)
        .collect();
    let overflows = || {
        let map: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(programs.ebpf.map("OVERFLOWS").unwrap()).unwrap();
        map.get(&(set / CONN_WAYS), 0).unwrap()
    };
    let (kernel_isn, peer_isn) = (1_000_000u32, 5_000u32);
    let mut persona_isns = Vec::new();
    for &port in &ports {
        let syn_ack = tracked_syn_ack(&programs, peer, (80, port), kernel_isn, peer_isn);
        assert_ne!(syn_ack.seq(), kernel_isn, "translated");
        persona_isns.push(syn_ack.seq());
    }
    assert_eq!(connections(&programs), 6);
    assert_eq!(overflows(), 2, "four in the small table's set, two in the large table");
    for (&port, &persona_isn) in ports.iter().zip(&persona_isns) {
        let ack = segment(
            peer,
            DECKY,
            (port, 80),
            peer_isn + 1,
            persona_isn.wrapping_add(1),
            0x10,
            &[],
            &[],
        );
        let (_, got) = programs.run("ingress", &ack);
        assert_eq!(
            got.ack(),
            kernel_isn + 1,
            "port {port}: the kernel's own numbers come back"
        );
    }
    for &port in &ports {
        let rst = segment(DECKY, peer, (80, port), kernel_isn + 1, peer_isn + 1, 0x14, &[], &[]);
        programs.run("egress", &rst);
    }
    assert_eq!(connections(&programs), 0);
    assert_eq!(overflows(), 0);
}

/// A connection's translation (the persona's ISN on the way out, the
/// kernel's on the way in) holds through the three ways of closing, and its
/// entry leaves the open connections with the last segment, to wait in
/// TIME_WAITS when the decky's socket does (its later ACKs still
/// translated). A peer's stray FIN, an acknowledgement beyond the decky's
/// FIN or an RST the kernel would refuse ends nothing early.
#[test]
fn a_closed_connection_leaves_no_state() {
    if !is_root() {
        return;
    }
    let spec = decky("windows-10");
    let programs = Programs::load(&spec);
    let peer = Ipv4Addr::new(10, 213, 0, 100);
    const ACK: u8 = 0x10;
    const FIN_ACK: u8 = 0x11;
    #[derive(Debug, Clone, Copy)]
    enum Close {
        DeckyFirst,
        PeerFirst,
        Simultaneous,
        Forged,
    }
    for (round, close) in [
        (0u16, Close::DeckyFirst),
        (1, Close::PeerFirst),
        (2, Close::Simultaneous),
        (3, Close::Forged),
    ] {
        let ports = (80, 40_000 + round);
        let (kernel_isn, peer_isn) = (1_000_000u32, 5_000u32);
        let out = |flags, seq_off: u32, ack_off: u32, data: &[u8]| {
            let frame = segment(
                DECKY,
                peer,
                ports,
                kernel_isn + seq_off,
                peer_isn + ack_off,
                flags,
                &[],
                data,
            );
            let (verdict, out) = programs.run("egress", &frame);
            assert_eq!(verdict, TC_ACT_OK);
            assert!(out.checksums_hold(), "egress checksums");
            out
        };
        let persona_isn = tracked_syn_ack(&programs, peer, ports, kernel_isn, peer_isn).seq();
        assert_ne!(persona_isn, kernel_isn, "windows-10 has an ISN clock of its own");
        assert_eq!(connections(&programs), 1);
        // What the peer sends, in the persona's numbers; what reaches the kernel.
        let inbound = |flags, seq_off: u32, persona_ack_off: u32, data: &[u8]| {
            let frame = segment(
                peer,
                DECKY,
                (ports.1, ports.0),
                peer_isn + seq_off,
                persona_isn.wrapping_add(persona_ack_off),
                flags,
                &[],
                data,
            );
            let (verdict, got) = programs.run("ingress", &frame);
            assert_eq!(verdict, TC_ACT_OK);
            assert_eq!(
                got.ack(),
                kernel_isn + persona_ack_off,
                "the kernel's own numbers come back"
            );
            assert!(got.checksums_hold(), "ingress checksums");
        };
        inbound(ACK, 1, 1, b"");
        inbound(ACK, 1, 1, b"GET / HTTP/1.0\r\n\r\n");
        let reply = out(ACK, 1, 19, b"HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!(
            reply.seq(),
            persona_isn.wrapping_add(1),
            "data in the persona's numbering"
        );
        match close {
            Close::DeckyFirst => {
                // FIN (ours), FIN+ACK (theirs, acking ours), the last ACK (ours).
                let fin = out(FIN_ACK, 20, 19, b"");
                assert_eq!(fin.seq(), persona_isn.wrapping_add(20));
                inbound(FIN_ACK, 19, 21, b"");
                assert_eq!(connections(&programs), 1, "until the last segment");
                let last = out(ACK, 21, 20, b"");
                assert_eq!(
                    last.seq(),
                    persona_isn.wrapping_add(21),
                    "the last ACK still translated"
                );
                assert_eq!(time_waits(&programs), round as usize + 1);
                // The peer's FIN again (our ACK was lost): TIME_WAIT answers,
                // in the persona's numbers.
                let again = out(ACK, 21, 20, b"");
                assert_eq!(again.seq(), persona_isn.wrapping_add(21), "TIME_WAIT's ACK");
            }
            Close::PeerFirst => {
                // FIN (theirs), ACK and FIN (ours), the last ACK (theirs).
                inbound(FIN_ACK, 19, 20, b"");
                out(ACK, 20, 20, b"");
                let fin = out(FIN_ACK, 20, 20, b"");
                assert_eq!(fin.seq(), persona_isn.wrapping_add(20));
                assert_eq!(connections(&programs), 1, "until the last segment");
                inbound(ACK, 20, 21, b"");
                assert_eq!(time_waits(&programs), 1, "no TIME_WAIT for the passive side");
            }
            Close::Simultaneous => {
                // The FINs cross; each side then acknowledges the other's.
                out(FIN_ACK, 20, 19, b"");
                inbound(FIN_ACK, 19, 20, b"");
                let ack = out(ACK, 21, 20, b"");
                assert_eq!(ack.seq(), persona_isn.wrapping_add(21));
                assert_eq!(connections(&programs), 1, "until the peer acknowledges our FIN");
                inbound(ACK, 20, 21, b"");
                assert_eq!(time_waits(&programs), 2);
            }
            Close::Forged => {
                let rst = |seq_off: u32| {
                    let frame = segment(peer, DECKY, (ports.1, ports.0), peer_isn + seq_off, 0, 0x04, &[], &[]);
                    programs.run("ingress", &frame);
                };
                // A FIN at an old sequence number, which the decky answers
                // with the ACK it already sent: not the peer's FIN.
                inbound(FIN_ACK, 18, 20, b"");
                out(ACK, 20, 19, b"");
                out(FIN_ACK, 20, 19, b"");
                // An acknowledgement beyond the decky's FIN, then the right one.
                inbound(ACK, 19, 22, b"");
                inbound(ACK, 19, 21, b"");
                assert_eq!(connections(&programs), 1, "half closed: the peer may still send");
                // An RST off the decky's last acknowledgement: a challenge ACK.
                rst(25);
                assert_eq!(connections(&programs), 1, "an RST the kernel refuses");
                let challenge = out(ACK, 21, 19, b"");
                assert_eq!(challenge.seq(), persona_isn.wrapping_add(21));
                rst(19);
            }
        }
        assert_eq!(connections(&programs), 0, "closed ({close:?})");
    }
}

/// The kernel's clock as its TCP timestamps read it at `tcp_timestamps` 2:
/// milliseconds since boot, truncated.
fn kernel_ms() -> u32 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    (now.tv_sec() as u64 * 1000 + now.tv_nsec() as u64 / 1_000_000) as u32
}

/// The timestamp value and echo of a segment whose options start NOP NOP TS.
fn timestamps(p: &Packet) -> (u32, u32) {
    let o = p.tcp_options();
    assert_eq!(o[..4], [1, 1, 8, 10], "NOP NOP TS first");
    (
        u32::from_be_bytes(o[4..8].try_into().unwrap()),
        u32::from_be_bytes(o[8..12].try_into().unwrap()),
    )
}

fn nop_nop_ts(val: u32, ecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend(val.to_be_bytes());
    o.extend(ecr.to_be_bytes());
    o
}

/// How many connections the tables hold for `decky` (its line's count).
fn tracked(programs: &Programs, decky: Ipv4Addr) -> u64 {
    let map: aya::maps::Array<_, decnet_ebpf_common::DeckyLine> =
        aya::maps::Array::try_from(programs.ebpf.map("DECKIES").unwrap()).unwrap();
    let index = decnet_ebpf_common::decky_line(u32::from_ne_bytes(decky.octets()));
    map.get(&index, 0).unwrap().tracked
}

/// An ordinary connection of a stateless personality (`windows-10`, its
/// window scale the kernel's) takes no slot: it keeps the kernel's ISN, and
/// each segment's timestamp is put on the decky's clock going out and back
/// on the kernel's coming in, exactly, whether the decky's settings come
/// from `DECKIES` or its whole personality. One of nmap's probes is still
/// tracked (the persona's ISN), counted in and out of its decky's line.
#[test]
fn an_ordinary_connection_keeps_no_state() {
    if !is_root() {
        return;
    }
    use decnet_ebpf_common::{Decky, DeckyLine, F_STATELESS, decky_line};
    let spec = decky("windows-10");
    let mut programs = Programs::load(&spec);
    let record = decnet_fingerprint::record(&spec);
    assert_ne!(record.flags & F_STATELESS, 0, "windows-10 is stateless");
    let peer = Ipv4Addr::new(10, 213, 0, 100);
    let mut last_id = None;
    for (round, from_deckies) in [(0u16, false), (1, true)] {
        if from_deckies {
            let key = u32::from_ne_bytes(DECKY.octets());
            let mut map: aya::maps::Array<_, DeckyLine> =
                aya::maps::Array::try_from(programs.ebpf.map_mut("DECKIES").unwrap()).unwrap();
            let line = DeckyLine {
                decky: Decky::of(key, &record),
                ..DeckyLine::default()
            };
            map.set(decky_line(key), line, 0).unwrap();
        }
        let ports = (80, 41_000 + round);
        let (kernel_isn, peer_isn, peer_ts) = (1_000_000u32, 5_000u32, 77_000u32);
        let k = kernel_ms();
        // Linux's SYN-ACK, window scale 8 (Windows', from the family's tcp_rmem).
        let mut options = vec![2, 4, 5, 180, 4, 2, 8, 10];
        options.extend(k.to_be_bytes());
        options.extend(peer_ts.to_be_bytes());
        options.extend([1, 3, 3, 8]);
        let syn_ack = segment(DECKY, peer, ports, kernel_isn, peer_isn + 1, 0x12, &options, &[]);
        let (_, syn_ack) = programs.run("egress", &syn_ack);
        assert_eq!(syn_ack.seq(), kernel_isn, "the kernel's ISN");
        assert!(syn_ack.checksums_hold());
        let o = syn_ack.tcp_options();
        assert_eq!(o[..4], [2, 4, 5, 180], "Windows' layout: MSS, NOP, WS 8, NOP, NOP, TS");
        assert_eq!(o[4..8], [1, 3, 3, 8]);
        let ts_at = o.windows(2).position(|w| w == [8, 10]).unwrap() + 2;
        let v0 = u32::from_be_bytes(o[ts_at..ts_at + 4].try_into().unwrap());
        assert_ne!(v0, k, "the decky's own clock");
        assert_eq!(connections(&programs), 0, "no slot");
        // What the peer sends (acknowledging `ack`) and what the decky sends
        // (from `seq`), each with NOP NOP TS (value, echo).
        let to_decky = |flags, ack, ts: (u32, u32)| {
            let frame = segment(
                peer,
                DECKY,
                (ports.1, ports.0),
                peer_isn + 1,
                ack,
                flags,
                &nop_nop_ts(ts.0, ts.1),
                &[],
            );
            programs.run("ingress", &frame).1
        };
        let from_decky = |flags, seq, ts: (u32, u32), data: &[u8]| {
            let frame = segment(
                DECKY,
                peer,
                ports,
                seq,
                peer_isn + 1,
                flags,
                &nop_nop_ts(ts.0, ts.1),
                data,
            );
            programs.run("egress", &frame).1
        };
        // The peer's ACK echoes the persona's timestamp; the kernel gets its own.
        let got = to_decky(0x10, kernel_isn + 1, (peer_ts + 1, v0));
        assert_eq!(
            timestamps(&got),
            (peer_ts + 1, k),
            "the kernel's timestamp back, exactly"
        );
        assert_eq!(got.ack(), kernel_isn + 1);
        assert!(got.checksums_hold());
        // Data 7 ms on: the decky's clock moves as far (a tick more or less
        // where its skew adds or drops one).
        let out = from_decky(0x18, kernel_isn + 1, (k + 7, peer_ts + 1), b"hello");
        let (v1, ecr) = timestamps(&out);
        assert_eq!(ecr, peer_ts + 1);
        assert!((6..=8).contains(&v1.wrapping_sub(v0)), "{v0} then {v1}");
        assert_eq!(out.seq(), kernel_isn + 1);
        assert!(out.checksums_hold());
        let got = to_decky(0x10, kernel_isn + 6, (peer_ts + 2, v1));
        assert_eq!(timestamps(&got).1, k + 7);
        // Closed by the decky first: nothing kept, not even TIME_WAIT.
        let fin = from_decky(0x11, kernel_isn + 6, (k + 8, peer_ts + 2), &[]);
        to_decky(0x11, kernel_isn + 7, (peer_ts + 3, v1));
        let last = from_decky(0x10, kernel_isn + 7, (k + 9, peer_ts + 3), &[]);
        // Windows' IP IDs: one sequence per decky, a step a packet.
        let ids: Vec<u16> = [&syn_ack, &out, &fin, &last].iter().map(|p| p.id).collect();
        let steps: Vec<u16> = ids.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        assert_eq!(steps, [1, 1, 1], "IP IDs {ids:?}");
        last_id = Some(last.id);
        assert_eq!((connections(&programs), time_waits(&programs)), (0, 0));
    }
    // nmap's first SEQ probe (window 1, window scale first) to an open port:
    // its connection gets the persona's ISN, and a slot.
    let ports = (80, 42_000);
    let mut syn = segment(
        peer,
        DECKY,
        (ports.1, ports.0),
        9_000,
        0,
        0x02,
        &[3, 3, 10, 1, 2, 4, 5, 180],
        &[],
    );
    syn[48..50].copy_from_slice(&1u16.to_be_bytes());
    let syn = with_full_checksum(&syn);
    programs.run("ingress", &syn);
    let syn_ack = segment(
        DECKY,
        peer,
        ports,
        2_000_000,
        9_001,
        0x12,
        &[2, 4, 5, 180, 1, 3, 3, 8],
        &[],
    );
    let (_, syn_ack) = programs.run("egress", &syn_ack);
    assert_ne!(syn_ack.seq(), 2_000_000, "a probe's connection: the persona's ISN");
    assert_eq!(
        Some(syn_ack.id.wrapping_sub(1)),
        last_id,
        "a tracked connection's IP IDs run on from the untracked ones'"
    );
    assert_eq!((connections(&programs), tracked(&programs, DECKY)), (1, 1));
    programs.run("egress", &segment(DECKY, peer, ports, 2_000_001, 9_001, 0x14, &[], &[]));
    assert_eq!(
        (connections(&programs), tracked(&programs, DECKY)),
        (0, 0),
        "counted out with its RST"
    );
}

/// A flood of ordinary SYNs (a SYN flood, a scan) leaves the persona whole:
/// every SYN-ACK is shaped, and none takes a slot. (Each took one while its
/// handshake lasted, up to 75 s: a flood of 2,000 SYNs a second filled the
/// tables, and the SYN-ACKs after that went out with Linux's options.)
#[test]
fn a_syn_flood_takes_no_slot() {
    if !is_root() {
        return;
    }
    let programs = Programs::load(&decky("windows-10"));
    let linux_ws8 = {
        let mut o = LINUX_SYN_ACK_OPTIONS;
        o[19] = 8;
        o
    };
    let mut shaped = 0;
    for peer in 0..3u8 {
        for port in 1024..=u16::MAX {
            let frame = segment(
                DECKY,
                Ipv4Addr::new(10, 213, 1, peer),
                (80, port),
                port as u32 * 7919,
                1,
                0x12,
                &linux_ws8,
                &[],
            );
            let (_, out) = programs.run("egress", &frame);
            // Windows' layout: MSS, NOP, window scale.
            shaped += usize::from(out.tcp_options()[4..8] == [1, 3, 3, 8]);
        }
    }
    assert_eq!(shaped, 3 * (65_536 - 1024), "every SYN-ACK in the persona's layout");
    assert_eq!(connections(&programs), 0);
}
