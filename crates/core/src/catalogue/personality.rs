//! OS personalities (`personas/os/personalities/*.toml`): the TCP/IP stack one
//! OS shows to a scanner, as sysctls plus the [`Shaping`] the eBPF programs
//! apply. The format is documented in `personas/os/personalities/SCHEMA.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::os::parse_sysctls;
use super::service::toml_message;
use crate::error::CatalogueError;

#[derive(Debug, Clone, Serialize)]
pub struct Personality {
    pub slug: String,
    pub display_name: String,
    pub description: String,
    pub family: String,
    /// Substrings one of which nmap's `OS details:` line must contain.
    pub nmap: Vec<String>,
    /// The nmap-os-db entries this personality matches exactly.
    pub nmap_references: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p0f: Option<String>,
    /// Whether nmap names it exactly, every time (`tests/fingerprint.rs`
    /// holds it to that); `false`: the closest the shaper gets so far.
    pub exact: bool,
    /// Merged over the family's.
    pub sysctls: BTreeMap<String, String>,
    pub shaping: Shaping,
}

/// What the packet shaper changes, resolved into a decky's spec (the engine
/// needs no catalogue). Every field is optional: absent, the kernel's way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shaping {
    #[serde(default, skip_serializing_if = "Tcp::is_empty")]
    pub tcp: Tcp,
    #[serde(default, skip_serializing_if = "Icmp::is_empty")]
    pub icmp: Icmp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tcp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_scale: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_ack_window: Option<u16>,
    /// Per-probe overrides: `probe1` … `probe6`, `ecn`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub syn_ack_windows: BTreeMap<String, u16>,
    /// Per-probe overrides of `mss`, keyed like `syn_ack_windows`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub syn_ack_mss: BTreeMap<String, u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_hz: Option<u32>,
    /// Each connection's timestamps start from their own random point
    /// (FreeBSD ≥ 12), ticking at `timestamp_hz`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timestamp_per_connection: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_ack: Option<RstAck>,
    /// SYN-ACK option templates by the options offered (`wst` … `none`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "IpIds::is_empty")]
    pub ip_id: IpIds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t2: Option<ProbeReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t3: Option<ProbeReply>,
    /// Changes to the kernel's RST to a SYN (T5) or FIN+PSH+URG (T7) at a
    /// closed port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t5: Option<ClosedReply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t7: Option<ClosedReply>,
    /// Initial sequence numbers from a per-decky clock (absent: the kernel's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isn: Option<Isn>,
}

/// An ISN generator described the way nmap measures one: `isr`, the binary
/// log of its rate per second times 8, and `sp`, the same of the standard
/// deviation of that rate (at most `isr` − 7: steps never go backwards);
/// or a counter that every connection advances by `gcd`, then 2 · `gcd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sp: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcd: Option<u32>,
}

/// How the RST a closed port sends differs from Linux's (seq 0, ack = the
/// probe's seq + 1), or that there is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedReply {
    /// `zero` or `ack` (the probe's acknowledgement number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<SeqChoice>,
    /// `seq` or `seq+1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<AckChoice>,
    /// No answer (T7 only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub silent: bool,
    /// Don't-fragment bit; absent: as the stack's other TCP packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<bool>,
}

impl Tcp {
    /// Whether the shaper rewrites an ordinary connection's segments each on
    /// its own, keeping no state for the connection: its ISN stays the
    /// kernel's (random, as the persona's clock looks outside nmap's probes,
    /// which alone get it; a counter's steps, nmap's GCD, would show), and its
    /// timestamps, if rewritten, are one 1000 Hz clock per decky read at
    /// the kernel's.
    pub fn stateless(&self) -> bool {
        self.isn.is_none_or(|i| i.gcd.is_none())
            && self
                .timestamp_hz
                .is_none_or(|hz| hz == 1000 && !self.timestamp_per_connection)
    }

    /// The `net.ipv4.tcp_timestamps` the shaper needs over `sysctl` (the
    /// family's or personality's, absent: the kernel's 1): a stateless clock
    /// reads the kernel's timestamps as milliseconds since boot, which they
    /// are at 2 (1 adds an offset per pair of addresses).
    pub fn timestamps_sysctl<'a>(&self, sysctl: Option<&'a str>) -> Option<&'a str> {
        if self.timestamp_hz.is_some() && self.stateless() && sysctl.is_none_or(|v| v == "1") {
            Some("2")
        } else {
            sysctl
        }
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Icmp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_code: Option<u8>,
    /// TTL of ICMP packets, when it differs from TCP's (the sysctl's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    /// Don't-fragment bit of echo replies (nmap's IE DFI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_df: Option<EchoDf>,
    /// Bytes of the offending datagram an ICMP error quotes (nmap's U1
    /// IPL − 28); absent: Linux's, as much as fits in 576 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<u8>,
    /// The quoted UDP header's checksum zeroed (nmap's U1 RUCK=0; with `quote`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_quoted_udp_checksum: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EchoDf {
    /// As the request had it (DFI=S).
    Same,
    /// Always set (DFI=Y).
    Set,
    /// Never set (DFI=N, Linux's).
    Clear,
}

impl Icmp {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RstAck {
    Zero,
    Other,
    /// No RST at all (T4 and T6 R=N).
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpIds {
    #[serde(default, skip_serializing_if = "IpIdPolicy::is_kernel")]
    pub tcp: IpIdPolicy,
    #[serde(default, skip_serializing_if = "IpIdPolicy::is_kernel")]
    pub rst: IpIdPolicy,
    #[serde(default, skip_serializing_if = "IpIdPolicy::is_kernel")]
    pub icmp: IpIdPolicy,
}

impl IpIds {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How the IP identification field advances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpIdPolicy {
    #[default]
    Kernel,
    Zero,
    Incremental,
    Random,
    BrokenIncremental,
    /// Random, each more than 20000 past the last (nmap's RD every time).
    RandomFar,
}

impl IpIdPolicy {
    fn is_kernel(&self) -> bool {
        *self == Self::Kernel
    }
}

/// The answer to a probe Linux drops (nmap's T2 and T3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeReply {
    /// TCP flags in nmap's letters (`AR`).
    pub flags: String,
    /// Don't-fragment bit; absent: as the stack's other TCP packets
    /// (`net.ipv4.ip_no_pmtu_disc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df: Option<bool>,
    #[serde(default)]
    pub window: u16,
    pub seq: SeqChoice,
    pub ack: AckChoice,
    /// With the persona's SYN-ACK options (`tcp.options.wst`, the probe's
    /// timestamp echoed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub options: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeqChoice {
    #[serde(rename = "zero")]
    Zero,
    #[serde(rename = "ack")]
    Ack,
    #[serde(rename = "ack+1")]
    AckPlusOne,
    #[serde(rename = "other")]
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckChoice {
    #[serde(rename = "zero")]
    Zero,
    #[serde(rename = "seq")]
    Seq,
    #[serde(rename = "seq+1")]
    SeqPlusOne,
    #[serde(rename = "other")]
    Other,
}

/// Keys of `tcp.options` and the byte length Linux gives that option set (a
/// template keeps it, or is longer by whole words: the shaper rewrites
/// options in place, or grows a SYN-ACK).
pub const OPTION_SETS: [(&str, usize); 8] = [
    ("none", 4),
    ("t", 16),
    ("s", 8),
    ("st", 16),
    ("w", 8),
    ("wt", 20),
    ("ws", 12),
    ("wst", 20),
];

/// Keys of `tcp.syn_ack_windows`, in probe-class order (class 0 is an
/// ordinary SYN).
pub const PROBE_CLASSES: [&str; 8] = [
    "ordinary", "probe1", "probe2", "probe3", "probe4", "probe5", "probe6", "ecn",
];

/// The byte length of an option template, or the letter that is not one.
pub fn template_len(template: &str) -> Result<usize, char> {
    template
        .chars()
        .map(|c| match c {
            'M' => Ok(4),
            'N' | 'L' => Ok(1),
            'W' => Ok(3),
            'S' => Ok(2),
            'T' => Ok(10),
            other => Err(other),
        })
        .sum()
}

/// TCP flags from nmap's letters.
pub fn tcp_flags(letters: &str) -> Result<u8, char> {
    letters.chars().try_fold(0u8, |acc, c| {
        let bit = match c {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            'E' => 0x40,
            'C' => 0x80,
            other => return Err(other),
        };
        Ok(acc | bit)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersonality {
    display_name: String,
    #[serde(default)]
    description: String,
    family: String,
    nmap: Vec<String>,
    #[serde(default)]
    nmap_references: Vec<String>,
    #[serde(default)]
    p0f: Option<String>,
    #[serde(default = "yes")]
    exact: bool,
    #[serde(default)]
    sysctls: BTreeMap<String, toml::Value>,
    #[serde(default)]
    tcp: Tcp,
    #[serde(default)]
    icmp: Icmp,
}

fn yes() -> bool {
    true
}

pub(crate) fn parse_personality(file: &str, slug: &str, text: &str) -> Result<Personality, CatalogueError> {
    let raw: RawPersonality = toml::from_str(text).map_err(|e| CatalogueError::new(file, "", toml_message(&e)))?;
    let sysctls = parse_sysctls(file, raw.sysctls)?;
    if raw.nmap.is_empty() {
        return Err(CatalogueError::new(
            file,
            "nmap",
            "name at least one OS nmap must print",
        ));
    }
    let tcp = &raw.tcp;
    for (key, template) in &tcp.options {
        let path = format!("tcp.options.{key}");
        let Some((_, linux_len)) = OPTION_SETS.iter().find(|(k, _)| k == key) else {
            let keys: Vec<_> = OPTION_SETS.iter().map(|(k, _)| *k).collect();
            return Err(CatalogueError::new(
                file,
                path,
                format!("not an option set; one of {}", keys.join(", ")),
            ));
        };
        let len = template_len(template).map_err(|c| {
            CatalogueError::new(file, &path, format!("`{c}` is not an option letter (M, N, W, S, T, L)"))
        })?;
        if len < *linux_len || len > 40 || (len != *linux_len && len % 4 != 0) {
            return Err(CatalogueError::new(
                file,
                path,
                format!(
                    "`{template}` is {len} bytes; it must be {linux_len}, like Linux's for this option set, \
                     or longer by whole 4-byte words, up to 40"
                ),
            ));
        }
        for (letter, needed) in [('W', 'w'), ('S', 's'), ('T', 't')] {
            if template.contains(letter) != key.contains(needed) {
                return Err(CatalogueError::new(
                    file,
                    path,
                    format!("`{template}` must carry `{letter}` exactly when the set `{key}` has `{needed}`"),
                ));
            }
        }
    }
    // The shaper writes options from fixed images: their values must be known.
    if !tcp.options.is_empty() && tcp.mss.is_none() {
        return Err(CatalogueError::new(file, "tcp.mss", "required with tcp.options"));
    }
    if tcp.options.values().any(|t| t.contains('W')) && tcp.window_scale.is_none() {
        return Err(CatalogueError::new(
            file,
            "tcp.window_scale",
            "required when tcp.options use W",
        ));
    }
    for (key, template) in &tcp.options {
        let at = template.find('T').map(|i| template_len(&template[..i]).unwrap_or(0));
        if at.is_some_and(|at| at % 2 != 0) {
            return Err(CatalogueError::new(
                file,
                format!("tcp.options.{key}"),
                "the timestamps option must start at an even offset (pad with N)",
            ));
        }
    }
    for (table, keys) in [
        ("syn_ack_windows", tcp.syn_ack_windows.keys()),
        ("syn_ack_mss", tcp.syn_ack_mss.keys()),
    ] {
        for key in keys {
            if !PROBE_CLASSES.contains(&key.as_str()) {
                return Err(CatalogueError::new(
                    file,
                    format!("tcp.{table}.{key}"),
                    "not a SYN class; one of ordinary, probe1 … probe6, ecn",
                ));
            }
        }
    }
    if !tcp.syn_ack_mss.is_empty() {
        // A probe's MSS is written over the image's as one 32-bit word.
        for (key, template) in &tcp.options {
            let at = template.find('M').map(|i| template_len(&template[..i]).unwrap_or(0));
            if at.is_some_and(|at| at % 2 != 0) {
                return Err(CatalogueError::new(
                    file,
                    format!("tcp.options.{key}"),
                    "with tcp.syn_ack_mss, the MSS option must start at an even offset",
                ));
            }
        }
    }
    match tcp.isn {
        Some(Isn {
            isr: Some(isr),
            sp: Some(sp),
            gcd: None,
        }) if isr <= 0x120 && sp + 7 <= isr => {}
        Some(Isn {
            isr: None,
            sp: None,
            gcd: Some(gcd),
        }) if gcd > 0 => {}
        None => {}
        Some(_) => {
            return Err(CatalogueError::new(
                file,
                "tcp.isn",
                "either isr and sp (isr at most 0x120, sp at most isr - 7), or a non-zero gcd alone",
            ));
        }
    }
    for (name, rule) in [("t5", &tcp.t5), ("t7", &tcp.t7)] {
        let Some(rule) = rule else { continue };
        let bad = |why: &str| CatalogueError::new(file, format!("tcp.{name}"), why);
        if rule.seq.is_some_and(|s| !matches!(s, SeqChoice::Zero | SeqChoice::Ack)) {
            return Err(bad("seq must be zero or ack"));
        }
        if rule
            .ack
            .is_some_and(|a| !matches!(a, AckChoice::Seq | AckChoice::SeqPlusOne))
        {
            return Err(bad("ack must be seq or seq+1"));
        }
        if rule.silent && (name == "t5" || rule.seq.is_some() || rule.ack.is_some()) {
            // The shaper cannot tell a closed port's SYN from an open one's.
            return Err(bad("only t7 can be silent, and then has no seq or ack"));
        }
    }
    if let Some(quote) = raw.icmp.quote
        && !((8..=128).contains(&quote) && quote % 4 == 0)
    {
        return Err(CatalogueError::new(
            file,
            "icmp.quote",
            "must be a multiple of 4 from 8 to 128",
        ));
    }
    if tcp.timestamp_hz.is_some_and(|hz| !(1..=1000).contains(&hz)) {
        return Err(CatalogueError::new(
            file,
            "tcp.timestamp_hz",
            "must be between 1 and 1000",
        ));
    }
    if tcp.timestamp_per_connection && tcp.timestamp_hz.is_none() {
        return Err(CatalogueError::new(
            file,
            "tcp.timestamp_per_connection",
            "needs tcp.timestamp_hz (the rate each connection's clock ticks at)",
        ));
    }
    if raw.icmp.zero_quoted_udp_checksum && raw.icmp.quote.is_none() {
        return Err(CatalogueError::new(
            file,
            "icmp.zero_quoted_udp_checksum",
            "needs icmp.quote (the quote is rewritten only when shortened)",
        ));
    }
    if tcp.window_scale.is_some_and(|ws| ws > 14) {
        return Err(CatalogueError::new(file, "tcp.window_scale", "must be at most 14"));
    }
    for (name, reply) in [("t2", &tcp.t2), ("t3", &tcp.t3)] {
        if let Some(r) = reply {
            match tcp_flags(&r.flags) {
                Ok(0) => return Err(CatalogueError::new(file, format!("tcp.{name}.flags"), "empty")),
                Err(c) => {
                    return Err(CatalogueError::new(
                        file,
                        format!("tcp.{name}.flags"),
                        format!("`{c}` is not a TCP flag letter (A R S F P U E C)"),
                    ));
                }
                Ok(_) => {}
            }
            if r.options && !tcp.options.contains_key("wst") {
                return Err(CatalogueError::new(
                    file,
                    format!("tcp.{name}.options"),
                    "needs tcp.options.wst (the layout it carries)",
                ));
            }
        }
    }
    Ok(Personality {
        slug: slug.to_string(),
        display_name: raw.display_name,
        description: raw.description,
        family: raw.family,
        nmap: raw.nmap,
        nmap_references: raw.nmap_references,
        p0f: raw.p0f,
        exact: raw.exact,
        sysctls,
        shaping: Shaping {
            tcp: raw.tcp,
            icmp: raw.icmp,
        },
    })
}
