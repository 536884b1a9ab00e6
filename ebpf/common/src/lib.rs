//! The records shared by the personality eBPF programs (`ebpf/personality`)
//! and their loader (`crates/fingerprint`). Plain `repr(C)` data: the loader
//! writes one [`Personality`] per decky into a map keyed by the decky's
//! IPv4 address, and one object serves every decky.

#![no_std]

/// No timestamps option in a SYN-ACK image.
pub const NO_TIMESTAMP: u8 = 0xff;

/// Probe classes an incoming SYN is sorted into (nmap's SEQ probes 1–6 and
/// its ECN probe); index into [`Personality::windows`].
pub const CLASS_ORDINARY: u8 = 0;
pub const CLASS_ECN: u8 = 7;
pub const CLASSES: usize = 8;

/// IP identification policies, per packet class.
pub const IPID_KERNEL: u8 = 0;
pub const IPID_ZERO: u8 = 1;
/// One counter per decky, shared by TCP and ICMP (nmap's `I` and `SS=S`).
pub const IPID_INCREMENTAL: u8 = 2;
pub const IPID_RANDOM: u8 = 3;
/// The shared counter, byte-swapped (nmap's `BI`: steps of 256).
pub const IPID_BROKEN: u8 = 4;
/// Random, each more than 20000 past the last of its class and never a
/// multiple of 256 past it: nmap's `RD` from three samples (plain random IDs
/// give `RI` one time in eleven) and `RI` from two (plain random ones miss
/// one time in sixty).
pub const IPID_RANDOM_FAR: u8 = 5;

/// Indices into [`Personality::ip_id`].
pub const IPID_TCP: usize = 0;
pub const IPID_TCP_RST: usize = 1;
pub const IPID_ICMP: usize = 2;

/// Sequence/acknowledgement choices of a synthesized reply (nmap's S and A).
pub const NUM_ZERO: u8 = 0;
/// The probe's acknowledgement number (S=A) or sequence number (A=S).
pub const NUM_ECHO: u8 = 1;
pub const NUM_ECHO_PLUS: u8 = 2;
pub const NUM_OTHER: u8 = 3;

/// Don't-fragment policies for TCP packets.
pub const DF_KERNEL: u8 = 0;
pub const DF_SET: u8 = 1;
pub const DF_CLEAR: u8 = 2;
/// Echo replies only: DF as the echo request had it (nmap's `DFI=S`).
pub const DF_SAME: u8 = 3;

/// No MSS option in a SYN-ACK image.
pub const NO_MSS: u8 = 0xff;

/// Flags of [`Personality::flags`].
pub const F_TIMESTAMPS: u32 = 1;
/// Bare RSTs (answers to an ACK) carry a non-zero acknowledgement number.
pub const F_RST_ACK_OTHER: u32 = 1 << 1;
pub const F_ECHO_CODE: u32 = 1 << 2;
/// No RST answers a stray ACK (nmap's T4 and T6 `R=N`).
pub const F_NO_BARE_RST: u32 = 1 << 3;
/// Each connection's timestamps start from their own point (FreeBSD's
/// per-connection offsets; nmap's TS=20-22): the persona's ISN when it has
/// an ISN clock, so that nmap's SEQ probes see steady steps.
pub const F_TS_PER_CONNECTION: u32 = 1 << 4;
/// Port unreachables quote the UDP datagram with its checksum zeroed (U1 RUCK=0).
pub const F_QUOTE_UDP_CSUM_ZERO: u32 = 1 << 5;
/// Ordinary connections need no state of their own: they keep the kernel's
/// ISN (the persona's ISN clock is for nmap's probes, which alone can tell
/// it from Linux's random ISNs) and their timestamps are the decky's clock
/// read at the kernel's (`tcp_timestamps` 2: milliseconds since boot, no
/// offset), so each segment is rewritten alone, both ways. Set for
/// personalities without an ISN counter (nmap GCD) whose timestamps, if
/// any, tick at 1000 Hz from one clock per decky.
pub const F_STATELESS: u32 = 1 << 6;

/// TCP flag bits.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;
pub const TCP_ECE: u8 = 0x40;
pub const TCP_CWR: u8 = 0x80;

/// How a decky answers a TCP probe the kernel would drop (nmap's T2: no
/// flags; T3: SYN+FIN+PSH+URG). `flags == 0`: no answer (the kernel's way).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub flags: u8,
    pub df: u8,
    pub seq: u8,
    pub ack: u8,
    pub window: u16,
    /// Not 0: a SYN-ACK's options, the persona's image for window scale,
    /// SACK and timestamps (with the probe's timestamp echoed).
    pub options: u8,
    pub _pad: u8,
}

/// How a decky's RST answers a segment without ACK to a closed port (nmap's
/// T5: SYN; T7: FIN+PSH+URG), as a change to the kernel's answer.
/// `active == 0`: the kernel's (seq 0, ack = seq + 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstRule {
    pub active: u8,
    /// `NUM_ZERO` or `NUM_ECHO` (the probe's acknowledgement number).
    pub seq: u8,
    /// `NUM_ECHO` (the probe's sequence number) or `NUM_ECHO_PLUS`.
    pub ack: u8,
    /// No answer at all (T7 only: dropped on the way in).
    pub silent: u8,
    /// Don't-fragment bit (`DF_*`; `DF_KERNEL`: as the other TCP packets).
    pub df: u8,
}

/// One decky's TCP/IP personality.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Personality {
    pub flags: u32,
    /// Initial TTL of synthesized replies (the kernel's come from sysctls).
    pub ttl: u8,
    /// Window-scale value written into SYN-ACKs; 0xff: the kernel's.
    pub wscale: u8,
    /// TTL of every ICMP packet (echo replies and errors); 0: the kernel's.
    pub icmp_ttl: u8,
    /// Don't-fragment bit of echo replies (`DF_*`, `DF_SAME`).
    pub echo_df: u8,
    /// Policies for TCP, TCP RSTs, ICMP (`IPID_*`).
    pub ip_id: [u8; 3],
    /// Code of ICMP echo replies when `F_ECHO_CODE` is set.
    pub echo_code: u8,
    /// Don't-fragment bit of TCP packets (`DF_*`).
    pub tcp_df: u8,
    /// Bytes of the offending datagram an ICMP error quotes; 0: the kernel's.
    pub quote: u8,
    /// The decky's index into the programs' per-decky arrays (below
    /// [`SLOTS`]), given by the loader.
    pub slot: u16,
    /// MSS written into SYN-ACKs, per probe class; 0: the kernel's.
    pub mss: [u16; CLASSES],
    /// SYN-ACK window per probe class; 0: the kernel's.
    pub windows: [u16; CLASSES],
    /// Timestamp clock (with `F_TIMESTAMPS`).
    pub clock: Clock,
    /// SYN-ACK options, as bytes, indexed by the options the kernel put in
    /// (bit 2: window scale, bit 1: SACK permitted, bit 0: timestamps);
    /// length 0 keeps the kernel's. The timestamps option's value fields
    /// are filled in per packet, at `ts_at` (an even offset).
    pub options: [[u8; 40]; 8],
    pub options_len: [u8; 8],
    pub ts_at: [u8; 8],
    /// Where the MSS option starts in each image (an even offset), or `NO_MSS`.
    pub mss_at: [u8; 8],
    pub t2: Reply,
    pub t3: Reply,
    pub t5: RstRule,
    pub t7: RstRule,
    /// Initial sequence numbers (0: the kernel's): a clock of this many
    /// per millisecond, each step scaled by 1 ± up to `isn_jitter`/1024.
    pub isn_per_ms: u64,
    pub isn_jitter: u32,
    /// Or, when not 0: each new connection advances the ISN by this, then
    /// twice this, alternately (an old embedded stack's counter).
    pub isn_gcd: u32,
    /// Per probe class, a fixed scale (in units of [`ISN_SCALE_ONE`]) of the
    /// clock's step up to that SYN-ACK instead of the random one; 0: random.
    /// nmap's six SEQ probes then measure the persona's ISR and SP whatever
    /// the jitter's luck.
    pub isn_scale: [u32; CLASSES],
}

/// A decky's timestamp clock: `hz` ticks a second from `offset`, each tick
/// `skew` / 2^32 of a tick more, or (`slow`) less.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    pub hz: u32,
    pub offset: u32,
    pub skew: u32,
    pub slow: u32,
}

/// One line of `DECKIES`, at a decky's [`decky_line`]: what a segment of
/// a connection the programs do not track needs (a hash lookup of the whole
/// [`Personality`] cost such a segment more than its rewrite), and whether
/// the tables may hold one of the decky's connections. 64 bytes, a cache
/// line: such a segment reads one line of its decky's, not two.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeckyLine {
    /// Written by the loader, through a mapping of the map's memory, so
    /// that it never overwrites the counts below.
    pub decky: Decky,
    /// Written by the programs: how many connections of the deckies of this
    /// line's index the tables hold (deckies that share the index are
    /// counted together: a count may only be too high, which costs a lookup,
    /// never too low), and when one of them last closed a connection first
    /// (`bpf_ktime_get_ns` >> 30; its socket then answers from TIME_WAIT a
    /// while; 0: none within TIME_WAIT). 64 bits, as the BPF target's
    /// compare-and-swap. While both are nil, a segment needs no table lookup.
    pub tracked: u64,
    pub closed: u64,
    /// Written by the programs: `bpf_ktime_get_ns` at `bpf_jiffies64`
    /// `at_jiffies`, for an incoming segment's rewrite that needs only
    /// about when it is (to within days), while the jiffies say it is
    /// recent: a load, where the helper's call cost such a segment a
    /// fifth of its run.
    pub about_ns: u64,
    pub at_jiffies: u64,
}

const _: () = assert!(core::mem::size_of::<DeckyLine>() == 64);

/// The loader's part of a [`DeckyLine`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decky {
    /// The decky's address as in a packet; 0: a free line. A decky whose
    /// line another holds has its personality looked up instead.
    pub ip: u32,
    pub flags: u32,
    pub clock: Clock,
    pub slot: u16,
    /// TCP's IP ID policy ([`Personality::ip_id`]) and DF policy.
    pub ip_id: u8,
    pub tcp_df: u8,
    pub _pad: u32,
}

impl Decky {
    pub fn of(ip: u32, p: &Personality) -> Decky {
        Decky {
            ip,
            flags: p.flags,
            clock: p.clock,
            slot: p.slot,
            ip_id: p.ip_id[IPID_TCP],
            tcp_df: p.tcp_df,
            _pad: 0,
        }
    }
}

/// Deckies the programs' per-decky arrays hold.
pub const SLOTS: u32 = 65536;

/// [`Personality::isn_scale`] of a step left as the clock's rate gives it.
pub const ISN_SCALE_ONE: u32 = 1 << 20;

/// A decky's ISN generator: the last number handed out, and when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsnClock {
    pub last_isn: u32,
    /// Connections so far (for `isn_gcd`).
    pub count: u32,
    pub last_ns: u64,
}

/// A TCP connection seen from the decky: (decky address, peer address,
/// decky port, peer port), all in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub local: u32,
    pub remote: u32,
    pub local_port: u16,
    pub remote_port: u16,
}

/// What a connection needs to keep its persona: the timestamp clocks at its
/// start (kernel and persona) and the window scales (kernel and persona).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// The kernel's ISN, and what the persona's differs by.
    pub isn_kernel: u32,
    pub isn_delta: u32,
    pub ts_kernel: u32,
    pub ts_persona: u32,
    pub kernel_wscale: u8,
    pub persona_wscale: u8,
    /// The persona's settings an established segment needs, copied from its
    /// [`Personality`] at the SYN-ACK: its segments then take one lookup, not
    /// two. Whether timestamps are translated, the TCP DF and IP ID policies,
    /// and the timestamp clock's rate.
    pub timestamps: u8,
    pub tcp_df: u8,
    pub ip_id: u8,
    /// How far its close has got (`CLOSE_*` bits): the entry leaves the
    /// map of open connections with the last segment of both FINs' exchange,
    /// not when the LRU map, full, evicts it (costly, and it could evict a
    /// long-lived connection).
    pub closing: u8,
    /// [`Personality::slot`].
    pub slot: u16,
    pub ts_hz: u32,
    /// The sequence number just past the decky's FIN, in the persona's
    /// numbering (valid with `CLOSE_FIN_OUT`).
    pub fin_out: u32,
    /// The sequence number just past the peer's FIN (valid with `CLOSE_FIN_IN`).
    pub fin_in: u32,
    /// The last acknowledgement number the decky sent (the kernel's
    /// `rcv_nxt` as last told): an RST counts only at exactly this, and a
    /// FIN is acknowledged only when the decky's acknowledgement moves to it.
    pub last_ack: u32,
}

/// [`Connection::closing`]: the decky sent its FIN; the peer acknowledged it;
/// the peer sent its FIN; the decky acknowledged that. All four: closed.
/// `CLOSE_OURS_FIRST`: the decky's FIN came before the peer's, so its socket
/// waits in TIME_WAIT, whose answers still need the persona's numbers.
pub const CLOSE_FIN_OUT: u8 = 1;
pub const CLOSE_OUT_ACKED: u8 = 2;
pub const CLOSE_FIN_IN: u8 = 4;
pub const CLOSE_IN_ACKED: u8 = 8;
pub const CLOSED: u8 = 15;
pub const CLOSE_OURS_FIRST: u8 = 16;
/// Not a close: the peer acknowledged the SYN-ACK (the connection is no
/// longer half-open).
pub const ANSWERED: u8 = 32;

/// One slot of the tables of open connections (`HOT_CONNECTIONS`,
/// `CONNECTIONS`): 64 bytes, a
/// cache line (the map's values start page-aligned), so that a segment's
/// lookup touches one line, where a hash map's bucket, element header and
/// value took three.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnSlot {
    /// `SLOT_FREE`, `SLOT_CLAIMED` (being written) or `SLOT_LIVE`; claimed
    /// by compare-and-swap, so two SYN-ACKs never take one slot.
    pub state: u64,
    pub key: FlowKey,
    pub conn: Connection,
    /// When the SYN-ACK made it (`bpf_ktime_get_ns` >> 30: about seconds).
    pub born: u32,
}

const _: () = assert!(core::mem::size_of::<ConnSlot>() == 64);

pub const SLOT_FREE: u64 = 0;
pub const SLOT_LIVE: u64 = 1;
pub const SLOT_CLAIMED: u64 = 2;

/// The tables are set-associative: a connection lives in one of the
/// `CONN_WAYS` slots of the set its 4-tuple hashes to, in the small table
/// (`HOT_SET_BITS`: 2^10 sets, 256 KiB) while it has room, else in the large
/// one (2^15 sets, 8 MiB). A new connection's slot in the large table is
/// nearly always a cache and TLB miss; the small one stays warm.
pub const CONN_SET_BITS: u32 = 15;
pub const HOT_SET_BITS: u32 = 10;
pub const CONN_WAYS: u32 = 4;
pub const CONN_SLOTS: u32 = CONN_WAYS << CONN_SET_BITS;
pub const HOT_SLOTS: u32 = CONN_WAYS << HOT_SET_BITS;

impl ConnSlot {
    /// The first slot of `key`'s set in a table of 2^`bits` sets.
    pub fn set(key: &FlowKey, bits: u32) -> u32 {
        (hash(key) >> (32 - bits)) * CONN_WAYS
    }
}

/// A multiplicative hash of a connection's addresses and ports.
fn hash(key: &FlowKey) -> u32 {
    let ports = (key.local_port as u32) << 16 | key.remote_port as u32;
    (key.local ^ key.remote.rotate_left(16) ^ ports).wrapping_mul(0x9e37_79b1)
}

pub const DECKY_LINE_BITS: u32 = 12;

/// A decky's line in `DECKIES`: its address's last 12 bits (deckies of one
/// LAN differ there).
pub fn decky_line(decky: u32) -> u32 {
    u32::from_be(decky) & ((1 << DECKY_LINE_BITS) - 1)
}

/// A segment without ACK to the decky, kept until the kernel's RST answers
/// it: sequence and acknowledgement numbers (network order) and flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RstProbe {
    pub seq: u32,
    pub ack: u32,
    pub flags: u32,
}

/// A connection the decky closed first, kept while its socket may answer
/// from TIME_WAIT: one slot of a direct-mapped cache (`TIME_WAITS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWait {
    pub key: FlowKey,
    pub conn: Connection,
    /// When the connection closed (`bpf_ktime_get_ns`); 0: an empty slot.
    pub closed_ns: u64,
    /// [`TimeWait::seal`] of the rest: two closes writing one slot at once
    /// leave an entry that fails it.
    pub seal: u32,
    pub _pad: u32,
}

/// How many slots `TIME_WAITS` has (a power of two): as many as the newest
/// closes worth keeping, and few enough (288 KiB) to stay in cache.
pub const TIME_WAIT_SLOTS: u32 = 1 << TIME_WAIT_BITS;
pub const TIME_WAIT_BITS: u32 = 12;

impl TimeWait {
    /// The slot of a connection: a multiplicative hash of its addresses and
    /// ports.
    pub fn slot(key: &FlowKey) -> u32 {
        hash(key) >> (32 - TIME_WAIT_BITS)
    }

    /// A hash (FNV-1a over words) of the fields a translation uses.
    pub fn seal(&self) -> u32 {
        let c = &self.conn;
        let words = [
            self.key.local,
            self.key.remote,
            (self.key.local_port as u32) << 16 | self.key.remote_port as u32,
            c.isn_delta,
            c.ts_kernel,
            c.ts_persona,
            c.ts_hz,
            u32::from_ne_bytes([c.kernel_wscale, c.persona_wscale, c.timestamps, c.closing]),
            self.closed_ns as u32,
            (self.closed_ns >> 32) as u32,
        ];
        let mut h = 0x811c_9dc5u32;
        for w in words {
            h = (h ^ w).wrapping_mul(0x0100_0193);
        }
        h
    }
}

/// An echo request to a decky: (peer address, identifier and sequence as
/// they sit in the packet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EchoKey {
    pub remote: u32,
    pub id_seq: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain repr(C) integers and arrays, any bit pattern is valid.
    unsafe impl aya::Pod for super::Personality {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::Connection {}
    unsafe impl aya::Pod for super::IsnClock {}
    unsafe impl aya::Pod for super::TimeWait {}
    unsafe impl aya::Pod for super::ConnSlot {}
    unsafe impl aya::Pod for super::DeckyLine {}
}
