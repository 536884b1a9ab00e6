//! A decky's personality as the eBPF programs read it.

use decnet_core::catalogue::{
    AckChoice, ClosedReply, EchoDf, IpIdPolicy, PROBE_CLASSES, ProbeReply, RstAck, SeqChoice, Shaping, tcp_flags,
};
use decnet_core::fleet::DeckySpec;
use decnet_ebpf_common as ebpf;

/// The record for `spec`: its shaping, its TTL, and the per-decky clock
/// (offset and skew from the decky's seed, so that two deckies on one host
/// never share a timestamp clock).
pub fn record(spec: &DeckySpec) -> ebpf::Personality {
    let ttl = spec
        .sysctls
        .get("net.ipv4.ip_default_ttl")
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut clock = spec.seed.rng_for("tcp.timestamps");
    let ts_offset = clock.next_u64() as u32;
    // Real clocks drift by tens of ppm; each decky gets its own drift.
    let ts_skew_ppm = clock.range(5, 120) as u32;
    let ts_skew_slow = clock.below(2) as u32;
    let tcp_df = spec.sysctls.get("net.ipv4.ip_no_pmtu_disc").is_none_or(|v| v == "0");
    let clock = Clock {
        offset: ts_offset,
        skew_ppm: ts_skew_ppm,
        slow: ts_skew_slow,
    };
    shaping_record(&spec.shaping, ttl, tcp_df, clock)
}

/// Whether the programs would change any packet of a decky with this
/// record: a personality that is the kernel's own stack needs none attached.
pub fn shapes_anything(r: &ebpf::Personality) -> bool {
    // (F_STATELESS says how, not what.)
    let untouched = r.flags & !ebpf::F_STATELESS == 0
        && r.wscale == 0xff
        && r.mss == [0; ebpf::CLASSES]
        && r.icmp_ttl == 0
        && r.echo_df == ebpf::DF_KERNEL
        && r.quote == 0
        && r.ip_id == [ebpf::IPID_KERNEL; 3]
        && r.tcp_df == ebpf::DF_KERNEL
        && r.windows == [0; ebpf::CLASSES]
        && r.options_len == [0; 8]
        && r.t2.flags == 0
        && r.t3.flags == 0
        && r.t5.active == 0
        && r.t7.active == 0
        && r.isn_per_ms == 0
        && r.isn_gcd == 0;
    !untouched
}

/// A decky's timestamp clock: offset, and drift in ppm (fast or slow).
struct Clock {
    offset: u32,
    skew_ppm: u32,
    slow: u32,
}

fn shaping_record(s: &Shaping, ttl: u8, tcp_df: bool, clock: Clock) -> ebpf::Personality {
    let tcp = &s.tcp;
    let mut flags = 0;
    if tcp.timestamp_hz.is_some() {
        flags |= ebpf::F_TIMESTAMPS;
    }
    match tcp.rst_ack {
        Some(RstAck::Other) => flags |= ebpf::F_RST_ACK_OTHER,
        Some(RstAck::None) => flags |= ebpf::F_NO_BARE_RST,
        _ => {}
    }
    if s.icmp.echo_code.is_some() {
        flags |= ebpf::F_ECHO_CODE;
    }
    if tcp.timestamp_per_connection {
        flags |= ebpf::F_TS_PER_CONNECTION;
    }
    if s.icmp.zero_quoted_udp_checksum {
        flags |= ebpf::F_QUOTE_UDP_CSUM_ZERO;
    }
    if tcp.stateless() {
        flags |= ebpf::F_STATELESS;
    }
    let per_class = |default: Option<u16>, overrides: &std::collections::BTreeMap<String, u16>| {
        let mut values = [default.unwrap_or(0); ebpf::CLASSES];
        for (class, name) in PROBE_CLASSES.iter().enumerate() {
            if let Some(v) = overrides.get(*name) {
                values[class] = *v;
            }
        }
        values
    };
    let windows = per_class(tcp.syn_ack_window, &tcp.syn_ack_windows);
    let mss = per_class(tcp.mss, &tcp.syn_ack_mss);
    let mut options = [[0u8; 40]; 8];
    let mut options_len = [0u8; 8];
    let mut ts_at = [ebpf::NO_TIMESTAMP; 8];
    let mut mss_at = [ebpf::NO_MSS; 8];
    for (key, template) in &tcp.options {
        // The index is the option set as bits: window scale 4, SACK 2, timestamps 1.
        let index =
            usize::from(key.contains('w')) * 4 + usize::from(key.contains('s')) * 2 + usize::from(key.contains('t'));
        // Images carry the ordinary SYN's MSS; the programs patch a probe's.
        let image_mss = if mss[0] != 0 { mss[0] } else { 1460 };
        let (bytes, ts, m) = option_image(template, image_mss, tcp.window_scale.unwrap_or(7));
        if bytes.len() <= 40 {
            options[index][..bytes.len()].copy_from_slice(&bytes);
            options_len[index] = bytes.len() as u8;
            ts_at[index] = ts.map_or(ebpf::NO_TIMESTAMP, |t| t as u8);
            mss_at[index] = m.map_or(ebpf::NO_MSS, |t| t as u8);
        }
    }
    ebpf::Personality {
        flags,
        ttl,
        wscale: tcp.window_scale.unwrap_or(0xff),
        icmp_ttl: s.icmp.ttl.unwrap_or(0),
        echo_df: match s.icmp.echo_df {
            None => ebpf::DF_KERNEL,
            Some(EchoDf::Same) => ebpf::DF_SAME,
            Some(EchoDf::Set) => ebpf::DF_SET,
            Some(EchoDf::Clear) => ebpf::DF_CLEAR,
        },
        mss,
        ip_id: [ip_id(tcp.ip_id.tcp), ip_id(tcp.ip_id.rst), ip_id(tcp.ip_id.icmp)],
        echo_code: s.icmp.echo_code.unwrap_or(0),
        // Linux's RSTs come from a socket made with the namespace, before its
        // sysctls: only rewriting makes every TCP packet follow them.
        tcp_df: if tcp_df { ebpf::DF_KERNEL } else { ebpf::DF_CLEAR },
        quote: s.icmp.quote.unwrap_or(0),
        // The loader's to give.
        slot: 0,
        windows,
        clock: ebpf::Clock {
            hz: tcp.timestamp_hz.unwrap_or(0),
            offset: clock.offset,
            // Parts per million as a fraction of 2^32 (the programs multiply).
            skew: ((u64::from(clock.skew_ppm) << 32) / 1_000_000) as u32,
            slow: clock.slow,
        },
        options,
        options_len,
        ts_at,
        mss_at,
        t2: reply(tcp.t2.as_ref(), tcp_df),
        t3: reply(tcp.t3.as_ref(), tcp_df),
        t5: rst_rule(tcp.t5.as_ref()),
        t7: rst_rule(tcp.t7.as_ref()),
        isn_per_ms: tcp.isn.and_then(|i| i.isr).map_or(0, isn_per_ms),
        isn_jitter: tcp.isn.and_then(|i| Some(isn_jitter(i.isr?, i.sp?))).unwrap_or(0),
        isn_gcd: tcp.isn.and_then(|i| i.gcd).unwrap_or(0),
        isn_scale: tcp
            .isn
            .and_then(|i| Some(isn_scale(i.isr?, i.sp?)))
            .unwrap_or([0; ebpf::CLASSES]),
    }
}

fn rst_rule(rule: Option<&ClosedReply>) -> ebpf::RstRule {
    let Some(r) = rule else {
        return ebpf::RstRule::default();
    };
    ebpf::RstRule {
        active: 1,
        seq: match r.seq {
            Some(SeqChoice::Ack) => ebpf::NUM_ECHO,
            _ => ebpf::NUM_ZERO,
        },
        ack: match r.ack {
            Some(AckChoice::Seq) => ebpf::NUM_ECHO,
            _ => ebpf::NUM_ECHO_PLUS,
        },
        silent: u8::from(r.silent),
        df: r.df.map_or(ebpf::DF_KERNEL, df_policy),
    }
}

/// The options of a template as bytes (timestamp values left zero: the
/// programs fill them per packet), and where the timestamps and MSS options start.
fn option_image(template: &str, mss: u16, wscale: u8) -> (Vec<u8>, Option<usize>, Option<usize>) {
    let mut bytes = Vec::with_capacity(40);
    let mut ts = None;
    let mut mss_at = None;
    for letter in template.chars() {
        match letter {
            'M' => {
                mss_at = Some(bytes.len());
                bytes.extend([2, 4, (mss >> 8) as u8, mss as u8]);
            }
            'W' => bytes.extend([3, 3, wscale]),
            'S' => bytes.extend([4, 2]),
            'T' => {
                ts = Some(bytes.len());
                bytes.extend([8, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            'N' => bytes.push(1),
            _ => bytes.push(0),
        }
    }
    (bytes, ts, mss_at)
}

/// nmap's ISR is round(8 · log2(rate per second)).
fn isn_per_ms(isr: u16) -> u64 {
    (2f64.powf(f64::from(isr) / 8.0) / 1000.0) as u64
}

/// Steps scaled by 1 ± u·a (u uniform in [-1, 1]) have a standard deviation
/// of rate·a/√3, which nmap reports as SP: a = √3 · 2^((sp − isr)/8).
fn isn_jitter(isr: u16, sp: u16) -> u32 {
    let a = 3f64.sqrt() * 2f64.powf((f64::from(sp) - f64::from(isr)) / 8.0);
    (a * 1024.0).clamp(0.0, 1000.0) as u32
}

/// Fixed step scales for nmap's SEQ probes 2–6 (classes 2–6): the clock's
/// rate times 1 + c four times and 1 − 4c once over the five gaps nmap
/// times. Those rates average the rate (ISR), with a sample standard
/// deviation (nmap divides by 4) of rate·√5·c (SP); c = a/√5 with
/// a = 2^((sp − isr)/8) ≤ 2^(−7/8) keeps the last step positive. Random
/// steps give the same on average, but five samples of them spread SP by
/// ±10 around it, out of an entry's range in about one scan of ten. Four
/// small rises rather than two large ones keep each step under 2^31 for
/// longer gaps (nmap folds larger ones back).
fn isn_scale(isr: u16, sp: u16) -> [u32; ebpf::CLASSES] {
    let c = 2f64.powf((f64::from(sp) - f64::from(isr)) / 8.0) / 5f64.sqrt();
    let one = f64::from(ebpf::ISN_SCALE_ONE);
    let up = ((1.0 + c) * one).round() as u32;
    let down = ((1.0 - 4.0 * c) * one).round() as u32;
    let mut scale = [0; ebpf::CLASSES];
    scale[2..7].copy_from_slice(&[up, up, up, up, down]);
    scale
}

fn ip_id(policy: IpIdPolicy) -> u8 {
    match policy {
        IpIdPolicy::Kernel => ebpf::IPID_KERNEL,
        IpIdPolicy::Zero => ebpf::IPID_ZERO,
        IpIdPolicy::Incremental => ebpf::IPID_INCREMENTAL,
        IpIdPolicy::Random => ebpf::IPID_RANDOM,
        IpIdPolicy::BrokenIncremental => ebpf::IPID_BROKEN,
        IpIdPolicy::RandomFar => ebpf::IPID_RANDOM_FAR,
    }
}

fn df_policy(set: bool) -> u8 {
    if set { ebpf::DF_SET } else { ebpf::DF_CLEAR }
}

fn reply(reply: Option<&ProbeReply>, tcp_df: bool) -> ebpf::Reply {
    let Some(r) = reply else {
        return ebpf::Reply::default();
    };
    ebpf::Reply {
        // The catalogue checked the letters.
        flags: tcp_flags(&r.flags).unwrap_or(0),
        df: u8::from(r.df.unwrap_or(tcp_df)),
        seq: match r.seq {
            SeqChoice::Zero => ebpf::NUM_ZERO,
            SeqChoice::Ack => ebpf::NUM_ECHO,
            SeqChoice::AckPlusOne => ebpf::NUM_ECHO_PLUS,
            SeqChoice::Other => ebpf::NUM_OTHER,
        },
        ack: match r.ack {
            AckChoice::Zero => ebpf::NUM_ZERO,
            AckChoice::Seq => ebpf::NUM_ECHO,
            AckChoice::SeqPlusOne => ebpf::NUM_ECHO_PLUS,
            AckChoice::Other => ebpf::NUM_OTHER,
        },
        window: r.window,
        options: u8::from(r.options),
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use decnet_core::catalogue::{Icmp, IpIds, Tcp};

    use super::*;

    /// A Windows-like shaping, written out here so that the test pins the
    /// conversion, not the catalogue's current data.
    fn windows_like() -> Shaping {
        let reply = |ack| ProbeReply {
            flags: "AR".into(),
            df: None,
            window: 0,
            seq: SeqChoice::Zero,
            ack,
            options: false,
        };
        let options = [("wst", "MNWST"), ("wt", "MNWNNT"), ("ws", "MNWNNS"), ("st", "MST")];
        Shaping {
            tcp: Tcp {
                mss: Some(1460),
                window_scale: Some(8),
                syn_ack_window: Some(8192),
                timestamp_hz: Some(1000),
                rst_ack: Some(RstAck::Other),
                options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ip_id: IpIds {
                    tcp: IpIdPolicy::Incremental,
                    rst: IpIdPolicy::Incremental,
                    icmp: IpIdPolicy::Incremental,
                },
                t2: Some(reply(AckChoice::Seq)),
                t3: Some(reply(AckChoice::Other)),
                ..Tcp::default()
            },
            icmp: Icmp {
                echo_code: Some(0),
                ..Icmp::default()
            },
        }
    }

    #[test]
    fn windows_10_becomes_its_record() {
        let clock = Clock {
            offset: 7,
            skew_ppm: 50,
            slow: 0,
        };
        let r = shaping_record(&windows_like(), 128, true, clock);
        assert_eq!(r.ttl, 128);
        assert_eq!(r.wscale, 8);
        assert_eq!(r.mss, [1460; 8]);
        assert_eq!(r.mss_at[7], 0);
        assert_eq!(r.windows, [8192; 8]);
        // MSS 1460, NOP, WS 8, SACK permitted, timestamps (values per packet).
        assert_eq!(r.options_len[7], 20);
        assert_eq!(
            &r.options[7][..20],
            &[2, 4, 5, 0xb4, 1, 3, 3, 8, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(r.ts_at[7], 10);
        assert_eq!(
            &r.options[5][..20],
            &[2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&r.options[6][..12], &[2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2]);
        assert_eq!(r.ts_at[6], ebpf::NO_TIMESTAMP);
        assert_eq!(
            &r.options[3][..16],
            &[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(r.options_len[0], 0, "a missing set keeps the kernel's options");
        assert_eq!(r.ip_id, [ebpf::IPID_INCREMENTAL; 3]);
        assert_eq!(r.t2.flags, ebpf::TCP_ACK | ebpf::TCP_RST);
        assert_eq!((r.t2.seq, r.t2.ack), (ebpf::NUM_ZERO, ebpf::NUM_ECHO));
        assert_eq!(r.t2.df, 1, "DF like the stack's other TCP packets");
        assert_eq!((r.t3.seq, r.t3.ack), (ebpf::NUM_ZERO, ebpf::NUM_OTHER));
        assert_eq!(r.flags & ebpf::F_RST_ACK_OTHER, ebpf::F_RST_ACK_OTHER);
        assert_eq!(r.flags & ebpf::F_ECHO_CODE, ebpf::F_ECHO_CODE);
        assert_eq!(r.clock.hz, 1000);
        assert!(shapes_anything(&r));
    }

    /// nmap's SP and ISR (osscan2.cc, makeTSeqFP) of six SYN-ACKs `gap_ms`
    /// apart from a clock of `isr` stepped by the record's scales.
    fn nmap_sp_isr(isr: u16, sp: u16, gap_ms: f64) -> (i64, i64) {
        let scale = isn_scale(isr, sp);
        let per_s = 2f64.powf(f64::from(isr) / 8.0);
        let rates: Vec<f64> = (2..7)
            .map(|class| {
                let step = (per_s * gap_ms / 1000.0 * f64::from(scale[class]) / f64::from(ebpf::ISN_SCALE_ONE))
                    .floor()
                    .rem_euclid(4_294_967_296.0);
                // nmap's MOD_DIFF: the shorter way round.
                step.min(4_294_967_296.0 - step) * 1000.0 / gap_ms
            })
            .collect();
        let avg = rates.iter().sum::<f64>() / 5.0;
        let sd = (rates.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / 4.0).sqrt();
        ((sd.log2() * 8.0 + 0.5) as i64, (avg.log2() * 8.0 + 0.5) as i64)
    }

    #[test]
    fn isn_scales_give_nmap_the_personas_sp_and_isr() {
        for (isr, sp) in [
            (0x109, 0xFF),
            (0x108, 0x101),
            (0x10A, 0x103),
            (0x10D, 0x105),
            (0xF0, 0x80),
        ] {
            for gap_ms in [100.0, 117.0, 130.0] {
                assert_eq!(
                    nmap_sp_isr(isr, sp, gap_ms),
                    (i64::from(sp), i64::from(isr)),
                    "isr {isr:X} sp {sp:X} at {gap_ms} ms"
                );
            }
        }
        let r = shaping_record(
            &Shaping::default(),
            64,
            true,
            Clock {
                offset: 0,
                skew_ppm: 0,
                slow: 0,
            },
        );
        assert_eq!(r.isn_scale, [0; ebpf::CLASSES], "no ISN clock: no scales");
    }

    #[test]
    fn an_empty_shaping_changes_nothing() {
        let clock = Clock {
            offset: 0,
            skew_ppm: 0,
            slow: 0,
        };
        let r = shaping_record(&Shaping::default(), 64, true, clock);
        assert_eq!(r.flags, ebpf::F_STATELESS, "no ISN counter, no clock: nothing to keep");
        assert_eq!(r.wscale, 0xff);
        assert_eq!(r.mss, [0; 8]);
        assert_eq!(r.windows, [0; 8]);
        assert_eq!(r.ip_id, [ebpf::IPID_KERNEL; 3]);
        assert_eq!(r.options_len, [0; 8]);
        assert_eq!(r.t2.flags, 0);
        assert_eq!(r.t3.flags, 0);
        assert!(!shapes_anything(&r), "the kernel's own stack needs no programs");
        let clock = Clock {
            offset: 0,
            skew_ppm: 0,
            slow: 0,
        };
        let no_df = shaping_record(&Shaping::default(), 64, false, clock);
        assert!(shapes_anything(&no_df), "RSTs lose DF only by rewriting");
    }
}
