//! TC programs that give a decky the TCP/IP personality of the OS it claims.
//!
//! Attached inside each decky's namespace on `eth0`: `egress` rewrites what
//! the kernel sends (IP ID sequence, SYN-ACK window, MSS and options, which
//! may grow, timestamp clock, window scale, RST numbers, ICMP TTL, echo
//! code and DF, the length of an ICMP error's quote); `ingress` sorts nmap's
//! probes, remembers what the rewrites need of them, translates echoed
//! timestamps back to the kernel's clock, and answers (or drops) the probes
//! the persona treats unlike Linux.
//! Every decky's parameters are a `Personality` in `PERSONALITIES`, keyed by
//! the decky's IPv4 address (unique in a fleet, unlike a namespace's
//! ifindex), so one loaded object serves every decky.
//! A packet the programs do not understand passes unchanged.

#![no_std]
// Compare-and-swap on a map value (the BPF target's core has no atomic types).
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

use aya_ebpf::bindings::{BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT};
use aya_ebpf::helpers::generated::{
    bpf_get_prandom_u32, bpf_jiffies64, bpf_ktime_get_ns, bpf_redirect, bpf_skb_change_tail, bpf_skb_pull_data,
    bpf_skb_store_bytes,
};
use aya_ebpf::macros::{classifier, map};
use aya_ebpf::maps::{Array, HashMap, LruHashMap};
use aya_ebpf::programs::TcContext;
use core::intrinsics::AtomicOrdering::{Acquire, Relaxed};
use core::intrinsics::{atomic_cxchg, atomic_xadd};
use core::ptr::write_volatile;
use decnet_ebpf_common::*;

const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_F_RECOMPUTE_CSUM: u64 = 1;
const BPF_F_MMAPABLE: u32 = 1 << 10;

const ETH_LEN: usize = 14;
const IP: usize = ETH_LEN;
const AT_IP_LEN: usize = IP + 2;
const AT_IP_ID: usize = IP + 4;
const AT_IP_FRAG: usize = IP + 6;
const AT_IP_TTL: usize = IP + 8;
const AT_IP_CSUM: usize = IP + 10;
const L4: usize = IP + 20;
const AT_TCP_SEQ: usize = L4 + 4;
const AT_TCP_ACK: usize = L4 + 8;
const AT_TCP_DOFF: usize = L4 + 12;
const AT_TCP_WIN: usize = L4 + 14;
const AT_TCP_CSUM: usize = L4 + 16;
const AT_TCP_OPTS: usize = L4 + 20;
const AT_ICMP_CSUM: usize = L4 + 2;

#[map]
static PERSONALITIES: HashMap<u32, Personality> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

// The per-decky state below is in arrays indexed by `Personality::slot`:
// the verifier inlines an array lookup, a hash lookup is a call and a hash.

/// Each decky's IP ID counter (shared by TCP and ICMP, like Windows'); bit 32
/// marks it started (the loader zeroes a new decky's).
#[map]
static IP_IDS: Array<u64> = Array::with_max_entries(SLOTS, 0);

/// Each decky's last IP IDs of the `IPID_RANDOM_FAR` policy, per packet class
/// (one sequence for all would let two jumps add up to a small step).
#[map]
static FAR_IDS: Array<[u16; 4]> = Array::with_max_entries(SLOTS, 0);

/// Connections whose timestamps or window scale are translated: the small
/// table first, the large one when its set is full (see `HOT_SET_BITS`).
#[map]
static HOT_CONNECTIONS: Array<ConnSlot> = Array::with_max_entries(HOT_SLOTS, BPF_F_MMAPABLE);
#[map]
static CONNECTIONS: Array<ConnSlot> = Array::with_max_entries(CONN_SLOTS, BPF_F_MMAPABLE);

/// Per set of the small table, how many of its connections the large one
/// holds: a lookup that misses the small table (a new connection's SYN-ACK)
/// reads the large one only when some are there (4 KiB, warm, where a large
/// table's line is nearly always a cache and TLB miss).
#[map]
static OVERFLOWS: Array<u32> = Array::with_max_entries(1 << HOT_SET_BITS, 0);

/// The connection `key` names, if a table holds it.
#[inline(always)]
fn connection(key: &FlowKey) -> Option<*mut ConnSlot> {
    locate(key).map(|(slot, _)| slot)
}

/// The same, and whether the large table holds it.
#[inline(always)]
fn locate(key: &FlowKey) -> Option<(*mut ConnSlot, bool)> {
    let hot = ConnSlot::set(key, HOT_SET_BITS);
    if let Some(slot) = find(&HOT_CONNECTIONS, hot, key) {
        return Some((slot, false));
    }
    if *OVERFLOWS.get(hot / CONN_WAYS)? == 0 {
        return None;
    }
    find(&CONNECTIONS, ConnSlot::set(key, CONN_SET_BITS), key).map(|slot| (slot, true))
}

#[inline(always)]
fn find(table: &Array<ConnSlot>, set: u32, key: &FlowKey) -> Option<*mut ConnSlot> {
    for way in 0..CONN_WAYS {
        let slot = table.get_ptr_mut(set + way)?;
        // SAFETY: a map value; a slot being written is not yet `SLOT_LIVE`.
        if unsafe { (*slot).state == SLOT_LIVE && (*slot).key == *key } {
            return Some(slot);
        }
    }
    None
}

/// Counts a connection of `key`'s small-table set into (`by` 1) or out of
/// (`by` u32::MAX, a wrapping -1) the large table.
#[inline(always)]
fn overflow(key: &FlowKey, by: u32) {
    if let Some(count) = OVERFLOWS.get_ptr_mut(ConnSlot::set(key, HOT_SET_BITS) / CONN_WAYS) {
        // SAFETY: a map value, updated atomically.
        unsafe { atomic_xadd::<u32, u32, { Relaxed }>(count, by) };
    }
}

/// Adds a connection the tables do not hold, in a free slot of its set, or
/// a stale one: a SYN-ACK unanswered for longer than the kernel retransmits
/// it, or a connection a day old (one that ended unseen: its peer gone, a
/// close bit lost to a race). Fails if both sets have none: the connection
/// then keeps the kernel's numbers (an LRU map, full, would evict a live
/// connection's translation instead, and a SYN flood could then break every
/// open connection).
#[inline(always)]
fn add_connection(key: &FlowKey, conn: &Connection, now_s: u32) -> Option<()> {
    if let Some(replaced) = claim(&HOT_CONNECTIONS, ConnSlot::set(key, HOT_SET_BITS), key, conn, now_s) {
        track(key.local, 1);
        if let Some(old) = replaced {
            track(old.local, u64::MAX);
        }
        return Some(());
    }
    let replaced = claim(&CONNECTIONS, ConnSlot::set(key, CONN_SET_BITS), key, conn, now_s)?;
    overflow(key, 1);
    track(key.local, 1);
    if let Some(old) = replaced {
        overflow(&old, u32::MAX);
        track(old.local, u64::MAX);
    }
    Some(())
}

/// Takes a free or stale slot of a set; returns the stale connection's key.
#[inline(always)]
fn claim(table: &Array<ConnSlot>, set: u32, key: &FlowKey, conn: &Connection, now_s: u32) -> Option<Option<FlowKey>> {
    for way in 0..CONN_WAYS {
        let slot = table.get_ptr_mut(set + way)?;
        // SAFETY: a map value; the compare-and-swap gives it to one writer.
        unsafe {
            let state = &raw mut (*slot).state;
            let old = *state;
            let age = now_s.wrapping_sub((*slot).born);
            let stale =
                old == SLOT_LIVE && (age > STALE_S || (*slot).conn.closing & ANSWERED == 0 && age > HALF_OPEN_S);
            if old != SLOT_FREE && !stale {
                continue;
            }
            if !atomic_cxchg::<u64, { Acquire }, { Relaxed }>(state, old, SLOT_CLAIMED).1 {
                continue;
            }
            let replaced = stale.then(|| (*slot).key);
            // Volatile: written in this order, the state last.
            write_volatile(&raw mut (*slot).key, *key);
            write_volatile(&raw mut (*slot).conn, *conn);
            write_volatile(&raw mut (*slot).born, now_s);
            write_volatile(state, SLOT_LIVE);
            return Some(replaced);
        }
    }
    None
}

/// A connection's SYN-ACK retransmissions end after about a minute (Linux's
/// five: 63 s); its slot may go to another after this many seconds (`born`
/// counts units of 2^30 ns, near enough seconds).
const HALF_OPEN_S: u32 = 75;
const STALE_S: u32 = 86_400;

/// Frees a connection's slot.
#[inline(always)]
fn remove_connection(key: &FlowKey) {
    if let Some((slot, large)) = locate(key) {
        // SAFETY: a map value. Compare-and-swap: of two removals racing (the
        // connection's two directions), one counts it out.
        let freed =
            unsafe { atomic_cxchg::<u64, { Acquire }, { Relaxed }>(&raw mut (*slot).state, SLOT_LIVE, SLOT_FREE).1 };
        if freed {
            if large {
                overflow(key, u32::MAX);
            }
            track(key.local, u64::MAX);
        }
    }
}

/// Counts a connection of `decky` into (`by` 1) or out of (`by` u64::MAX,
/// a wrapping -1) the tables.
#[inline(always)]
fn track(decky: u32, by: u64) {
    if let Some(t) = DECKIES.get_ptr_mut(decky_line(decky)) {
        // SAFETY: a map value, updated atomically.
        unsafe { atomic_xadd::<u64, u64, { Relaxed }>(&raw mut (*t).tracked, by) };
    }
}

/// Whether a segment of `decky` may be one of a connection the tables or
/// TIME_WAITS hold: if not, it takes no lookup there.
#[inline(always)]
fn may_be_tracked(decky: u32) -> bool {
    let Some(t) = DECKIES.get_ptr_mut(decky_line(decky)) else {
        return true;
    };
    // SAFETY: a map value; the close time is cleared by compare-and-swap, so
    // that a newer close racing with it stands.
    unsafe {
        if (*t).tracked != 0 {
            return true;
        }
        let closed = (*t).closed;
        if closed == 0 {
            return false;
        }
        if (bpf_ktime_get_ns() >> 30).wrapping_sub(closed) <= TIME_WAIT_UNITS {
            return true;
        }
        // Past TIME_WAIT: cleared, so that later segments need not read the clock.
        atomic_cxchg::<u64, { Relaxed }, { Relaxed }>(&raw mut (*t).closed, closed, 0);
        false
    }
}

/// Each decky's line, at its `decky_line` (see `DeckyLine`): mappable, as
/// the loader writes its part through a mapping.
#[map]
static DECKIES: Array<DeckyLine> = Array::with_max_entries(1 << DECKY_LINE_BITS, BPF_F_MMAPABLE);

/// What an untracked segment of `decky`'s needs of its personality.
#[inline(always)]
fn decky_of(decky: u32) -> Option<Decky> {
    if let Some(line) = DECKIES.get(decky_line(decky))
        && line.decky.ip == decky
    {
        return Some(line.decky);
    }
    // SAFETY: entries are only replaced whole by the loader.
    unsafe { PERSONALITIES.get(&decky) }.map(|p| Decky::of(decky, p))
}

/// TIME_WAIT in units of 2^30 ns, rounded up, and one more for the units'
/// truncation.
const TIME_WAIT_UNITS: u64 = (TIME_WAIT_NS >> 30) + 2;

/// Connections closed by the decky first, while its socket may still answer
/// from TIME_WAIT (60 s): the kernel's ACKs and RSTs from there are
/// translated like the connection's. A direct-mapped cache: a close writes
/// its connection's slot over whatever the slot held, the newest matter (an
/// LRU map's insert, evicting once full, cost a short connection more than
/// all its other rewrites).
#[map]
static TIME_WAITS: Array<TimeWait> = Array::with_max_entries(TIME_WAIT_SLOTS, 0);

/// Linux's TIME_WAIT: 60 s (TCP_TIMEWAIT_LEN).
const TIME_WAIT_NS: u64 = 60_000_000_000;

/// Each decky's ISN generator (`last_ns` 0: not started).
#[map]
static ISN_CLOCKS: Array<IsnClock> = Array::with_max_entries(SLOTS, 0);

/// When each decky last kept a probe's class (`bpf_ktime_get_ns`).
#[map]
static PROBED_AT: Array<u64> = Array::with_max_entries(SLOTS, 0);

/// A SYN-ACK follows its SYN within microseconds; retransmitted, it finds
/// the probe gone anyway.
const PROBE_WINDOW_NS: u64 = 10_000_000_000;

/// The probe class of SYNs awaiting their SYN-ACK.
#[map]
static PROBES: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(8192, 0);

/// Segments without ACK awaiting the kernel's RST (personas with T5/T7 rules).
#[map]
static RST_PROBES: LruHashMap<FlowKey, RstProbe> = LruHashMap::with_max_entries(4096, 0);

/// Whether echo requests awaiting their reply had DF (personas with `DF_SAME`).
#[map]
static ECHOES: LruHashMap<EchoKey, u8> = LruHashMap::with_max_entries(4096, 0);

/// Runs `body` with `at` = 0, 4, … for each of the first `words` (≤ 10)
/// 32-bit words of an option image: unrolled with constant offsets, as a
/// loop's index loses its bounds in the verifier.
macro_rules! each_word {
    ($words:expr, |$at:ident| $body:block) => {
        each_word!(@ $words, $at, $body, 0 1 2 3 4 5 6 7 8 9)
    };
    (@ $words:expr, $at:ident, $body:block, $($k:literal)*) => {
        $(
            if $words > $k {
                let $at: usize = $k * 4;
                $body
            }
        )*
    };
}

// Nearly every packet is a segment of an established connection, and on a
// live path (caches cold between packets) a run costs about what the code
// it goes through costs. The commonest, one of a connection the tables do
// not hold, runs in the entry itself, its code in one piece and without a
// call (on CPUs with return-thunk mitigations each return mispredicts);
// the tables' segments have functions of their own, laid out apart from
// the rarer paths.

#[classifier]
pub fn egress(ctx: TcContext) -> i32 {
    if let Some((ip, tcp)) = established_headers(&ctx) {
        if !may_be_tracked(ip.src) {
            untracked_egress(&ctx, &ip, &tcp);
            return TC_ACT_OK;
        }
        if tracked_egress_segment(&ctx, &ip, &tcp) {
            return TC_ACT_OK;
        }
    }
    other_egress(&ctx)
}

#[classifier]
pub fn ingress(ctx: TcContext) -> i32 {
    if let Some((ip, tcp)) = established_headers(&ctx) {
        if !may_be_tracked(ip.dst) || !tracked_ingress_segment(&ctx, &ip, &tcp) {
            let _ = untracked_ingress(&ctx, &ip, &tcp);
        }
        return TC_ACT_OK;
    }
    other_ingress(&ctx)
}

// The other paths in functions of their own: inlined, their frames and the
// established paths' together would pass the 512-byte stack.

#[inline(never)]
fn other_egress(ctx: &TcContext) -> i32 {
    try_egress(ctx).unwrap_or(TC_ACT_OK)
}

#[inline(never)]
fn other_ingress(ctx: &TcContext) -> i32 {
    try_ingress(ctx).unwrap_or(TC_ACT_OK)
}

fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: the context's sk_buff is valid for the program's run.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Reads `T` at `at` straight from the packet when its linear part holds it
/// (a helper call per load was most of a packet's cost), else with the helper.
#[inline(always)]
fn read<T: Copy>(ctx: &TcContext, at: usize) -> Option<T> {
    let start = ctx.data();
    if start + at + core::mem::size_of::<T>() <= ctx.data_end() {
        // SAFETY: within the packet's linear part, checked just above.
        Some(unsafe { core::ptr::read_unaligned((start + at) as *const T) })
    } else {
        ctx.load(at).ok()
    }
}

/// Makes sure the packet's first `len` bytes are in its linear part (they
/// nearly always are) and returns where they start.
#[inline(always)]
fn linear(ctx: &TcContext, len: usize) -> Option<usize> {
    if ctx.data() + len <= ctx.data_end() {
        return Some(ctx.data());
    }
    if unsafe { bpf_skb_pull_data(ctx.skb.skb, len as u32) } != 0 {
        return None;
    }
    let start = ctx.data();
    (start + len <= ctx.data_end()).then_some(start)
}

/// A field at `at` of a packet whose linear part starts at `data`.
///
/// # Safety
/// The caller has checked (with [`linear`]) that the linear part holds it.
#[inline(always)]
unsafe fn get<T: Copy>(data: usize, at: usize) -> T {
    unsafe { core::ptr::read_unaligned((data + at) as *const T) }
}

/// The IPv4 header's fields the programs use, as they sit in the packet
/// (network order). Read field by field: copies of whole headers took
/// hundreds of instructions, and on a live path, where the caches are cold
/// between packets, a run costs what its code's size costs.
// Aligned: the tables' paths take it by reference from the entry's
// stack, where the verifier refuses the misaligned 8-byte stores that its
// 4-byte alignment would let the compiler merge its fields into.
#[derive(Clone, Copy)]
#[repr(align(8))]
struct IpHead {
    /// Total length.
    len: u16,
    id: u16,
    /// Flags and fragment offset.
    frag: u16,
    /// TTL and protocol (one checksum word).
    ttl_proto: u16,
    src: u32,
    dst: u32,
}

impl IpHead {
    fn proto(&self) -> u8 {
        self.ttl_proto.to_ne_bytes()[1]
    }

    fn total_len(&self) -> u16 {
        u16::from_be(self.len)
    }
}

/// The TCP header's fixed fields, as they sit in the packet.
// Aligned as `IpHead` is, for the same reason.
#[derive(Clone, Copy)]
#[repr(align(8))]
struct TcpHead {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    /// Data offset and flags (one checksum word).
    off_flags: u16,
    window: u16,
}

impl TcpHead {
    fn flags(&self) -> u8 {
        self.off_flags.to_ne_bytes()[1]
    }

    /// The header's length in 32-bit words.
    fn words(&self) -> u8 {
        self.off_flags.to_ne_bytes()[0] >> 4
    }
}

/// The packet's IPv4 header, if it is plain IPv4 (no IP options).
#[inline(always)]
fn ipv4(ctx: &TcContext) -> Option<IpHead> {
    let data = linear(ctx, L4)?;
    // SAFETY: `linear` checked the packet holds its first L4 bytes.
    unsafe {
        if get::<u16>(data, 12) != u16::from_ne_bytes([0x08, 0]) || get::<u8>(data, IP) != 0x45 {
            return None;
        }
        Some(IpHead {
            len: get(data, AT_IP_LEN),
            id: get(data, AT_IP_ID),
            frag: get(data, AT_IP_FRAG),
            ttl_proto: get(data, AT_IP_TTL),
            src: get(data, IP + 12),
            dst: get(data, IP + 16),
        })
    }
}

/// The TCP header after an IPv4 header without options.
#[inline(always)]
fn tcp_head(ctx: &TcContext) -> Option<TcpHead> {
    let data = linear(ctx, AT_TCP_OPTS)?;
    // SAFETY: `linear` checked the packet holds the TCP header's fixed part.
    unsafe {
        Some(TcpHead {
            sport: get(data, L4),
            dport: get(data, L4 + 2),
            seq: get(data, AT_TCP_SEQ),
            ack: get(data, AT_TCP_ACK),
            off_flags: get(data, AT_TCP_DOFF),
            window: get(data, AT_TCP_WIN),
        })
    }
}

/// Linux's timestamps option as it starts a segment's options: NOP NOP TS.
const NOP_NOP_TS: u32 = u32::from_ne_bytes([1, 1, 8, 10]);

/// The decky's personality, for a packet from (`outgoing`) or to it.
// Inlined: as a call, its frame and ingress's together pass the 512-byte stack.
#[inline(always)]
fn personality(ip: &IpHead, outgoing: bool) -> Option<&'static Personality> {
    let decky = if outgoing { ip.src } else { ip.dst };
    // SAFETY: entries are only replaced whole by the loader.
    unsafe { PERSONALITIES.get(&decky) }
}

/// Whether a TCP segment belongs to an established connection (ACK without
/// SYN or RST): its connection then holds all its rewrites need, and nothing
/// else applies to it (nmap's probes and the closed-port RSTs differ).
fn established(tcp: &TcpHead) -> bool {
    tcp.flags() & (TCP_SYN | TCP_RST | TCP_ACK) == TCP_ACK
}

fn flow(ip: &IpHead, tcp: &TcpHead, outgoing: bool) -> FlowKey {
    let src = ip.src;
    let dst = ip.dst;
    let sport = tcp.sport;
    let dport = tcp.dport;
    if outgoing {
        FlowKey {
            local: src,
            remote: dst,
            local_port: sport,
            remote_port: dport,
        }
    } else {
        FlowKey {
            local: dst,
            remote: src,
            local_port: dport,
            remote_port: sport,
        }
    }
}

// ---------------------------------------------------------------- egress

/// Rewrites a segment of an established connection the tables hold, if
/// they hold it (else the other paths look further: TIME_WAIT).
#[inline(never)]
fn tracked_egress_segment(ctx: &TcContext, ip: &IpHead, tcp: &TcpHead) -> bool {
    // One lookup, not two: the connection's copy of the persona's settings
    // stands in for the personality.
    let key = flow(ip, tcp, true);
    let Some(conn) = connection(&key) else {
        return false;
    };
    // SAFETY: a map value; only this connection's segments write it (its two
    // directions may race: a lost bit of `closing` leaves the slot taken
    // until it is a day old and its set full).
    let conn = unsafe { &mut (*conn).conn };
    let _ = established_egress(ctx, conn, ip, tcp);
    set_df(ctx, ip, conn.tcp_df);
    set_ip_id(ctx, ip, conn.slot as u32, conn.ip_id, IPID_TCP);
    if conn.closing & CLOSED == CLOSED {
        closed(&key, conn);
    }
    true
}

/// A segment of an established connection from a decky none of whose
/// connections the tables hold: its persona's settings, no lookup there.
#[inline(always)]
fn untracked_egress(ctx: &TcContext, ip: &IpHead, tcp: &TcpHead) {
    let Some(d) = decky_of(ip.src) else {
        return;
    };
    let _ = stateless_egress(ctx, &d, tcp);
    set_df(ctx, ip, d.tcp_df);
    set_ip_id(ctx, ip, d.slot as u32, d.ip_id, IPID_TCP);
}

/// Puts an untracked segment's timestamp on the decky's clock (`F_STATELESS`).
#[inline(always)]
fn stateless_egress(ctx: &TcContext, d: &Decky, tcp: &TcpHead) -> Option<()> {
    if d.flags & (F_STATELESS | F_TIMESTAMPS) != F_STATELESS | F_TIMESTAMPS || tcp.words() < 8 {
        return Some(());
    }
    // Linux puts NOP NOP TS first in a segment's options, and after its MSS
    // (and SACK permitted or two NOPs) in a SYN's.
    let at = if read::<u32>(ctx, AT_TCP_OPTS)? == NOP_NOP_TS {
        AT_TCP_OPTS + 4
    } else if tcp.flags() & TCP_SYN != 0 && read::<[u8; 4]>(ctx, AT_TCP_OPTS + 4)?[2..] == [8, 10] {
        AT_TCP_OPTS + 8
    } else {
        return Some(());
    };
    let now = departure(ctx);
    retime(ctx, &d.clock, at, Way::Out, now)
}

/// When the kernel lets an outgoing packet leave, on the helper's clock:
/// TCP stamps each segment with its earliest departure time (now, or a
/// pacing step on), a field of the packet's where the helper's call cost
/// a segment a fifth of its run; else now.
#[inline(always)]
fn departure(ctx: &TcContext) -> u64 {
    // SAFETY: the context's sk_buff is valid for the program's run.
    let (at, clock) = unsafe { ((*ctx.skb.skb).tstamp, (*ctx.skb.skb).tstamp_type) };
    if at != 0 && clock == BPF_SKB_CLOCK_MONOTONIC {
        at
    } else {
        unsafe { bpf_ktime_get_ns() }
    }
}

/// `bpf_ktime_get_ns` to within a minute (at HZ 1000; eleven at HZ 100),
/// for `decky`'s segments: its line's reading while recent, else a new one
/// kept there (written once a minute, not per segment: other CPUs read the
/// line). Not for TIME_WAIT, whose close times it could precede.
#[inline(always)]
fn about_now(decky: u32) -> u64 {
    // Inlined by the verifier: a load of the kernel's jiffies.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(line) = DECKIES.get_ptr_mut(decky_line(decky)) else {
        return unsafe { bpf_ktime_get_ns() };
    };
    // SAFETY: a map value; racing writers write about the same instant.
    unsafe {
        let about = (*line).about_ns;
        if about != 0 && jiffies.wrapping_sub((*line).at_jiffies) < RECENT_JIFFIES {
            return about;
        }
        let now = bpf_ktime_get_ns();
        (*line).about_ns = now;
        (*line).at_jiffies = jiffies;
        now
    }
}

/// How long `about_now` keeps a reading: 65 s at HZ 1000.
const RECENT_JIFFIES: u64 = 1 << 16;

/// `__sk_buff.tstamp_type`: `tstamp` on the monotonic clock.
const BPF_SKB_CLOCK_MONOTONIC: u8 = 1;

/// Which way a stateless segment's timestamp goes: the kernel's value out
/// as the decky's clock read then, or an echo of that back in as the
/// kernel's value it stands for.
#[derive(Clone, Copy)]
enum Way {
    Out,
    In,
}

/// Rewrites the timestamp field at `at` as its way maps it at about `now`
/// (an echo of 0 is none), and the checksum. A constant way, not a
/// closure: one used at several places becomes a function of its own, a
/// call on the commonest path.
#[inline(always)]
fn retime(ctx: &TcContext, c: &Clock, at: usize, way: Way, now: u64) -> Option<()> {
    let old: u32 = read(ctx, at)?;
    let value = u32::from_be(old);
    let new = match way {
        Way::Out => clock_at_kernel(c, value, now),
        Way::In if value == 0 => return Some(()),
        Way::In => kernel_at_clock(c, value, now),
    }
    .to_be();
    let mut delta = Delta::default();
    delta.write32(ctx, at, old, new)?;
    delta.apply(ctx);
    Some(())
}

/// The headers of a segment of an established connection.
#[inline(always)]
fn established_headers(ctx: &TcContext) -> Option<(IpHead, TcpHead)> {
    let ip = ipv4(ctx)?;
    if ip.proto() != 6 {
        return None;
    }
    let tcp = tcp_head(ctx)?;
    established(&tcp).then_some((ip, tcp))
}

fn try_egress(ctx: &TcContext) -> Option<i32> {
    let ip = ipv4(ctx)?;
    let p = personality(&ip, true)?;
    let class = match ip.proto() {
        6 => {
            let tcp = tcp_head(ctx)?;
            let flags = tcp.flags();
            let df = match tcp_egress(ctx, p, &ip, &tcp) {
                Some(Egress::Drop) => return Some(TC_ACT_SHOT),
                Some(Egress::Df(df)) if df != DF_KERNEL => df,
                _ => p.tcp_df,
            };
            set_df(ctx, &ip, df);
            if flags & TCP_RST != 0 { IPID_TCP_RST } else { IPID_TCP }
        }
        1 => {
            icmp_egress(ctx, p, &ip);
            if p.icmp_ttl != 0 {
                set_ttl(ctx, &ip, p.icmp_ttl);
            }
            IPID_ICMP
        }
        _ => return None,
    };
    set_ip_id(ctx, &ip, p.slot as u32, p.ip_id[class], class);
    None
}

fn set_ttl(ctx: &TcContext, ip: &IpHead, ttl: u8) -> Option<()> {
    // The TTL shares a 16-bit checksum word with the protocol.
    let old = ip.ttl_proto;
    let new = u16::from_ne_bytes([ttl, ip.proto()]);
    if new != old {
        ctx.store(AT_IP_TTL, &new, 0).ok()?;
        ctx.l3_csum_replace(AT_IP_CSUM, old as u64, new as u64, 2).ok()?;
    }
    Some(())
}

/// Sets or clears the don't-fragment bit (`DF_*`).
fn set_df(ctx: &TcContext, ip: &IpHead, policy: u8) -> Option<()> {
    if policy == DF_KERNEL {
        return Some(());
    }
    let old = ip.frag;
    let df = 0x4000u16.to_be();
    let new = if policy == DF_SET { old | df } else { old & !df };
    if new != old {
        ctx.store(AT_IP_FRAG, &new, 0).ok()?;
        ctx.l3_csum_replace(AT_IP_CSUM, old as u64, new as u64, 2).ok()?;
    }
    Some(())
}

#[inline(always)]
fn set_ip_id(ctx: &TcContext, ip: &IpHead, slot: u32, policy: u8, class: usize) -> Option<()> {
    let new = match policy {
        IPID_ZERO => 0,
        IPID_RANDOM => (unsafe { bpf_get_prandom_u32() }) as u16,
        IPID_RANDOM_FAR => {
            // Not a multiple of 256 either: nmap would read small ones as BI.
            let mut jump = 20_001 + (unsafe { bpf_get_prandom_u32() } % 45_535) as u16;
            if jump & 0xff == 0 {
                jump += 1;
            }
            let class = class & 3;
            let last = FAR_IDS.get_ptr_mut(slot)?;
            // SAFETY: a map value; a racing update at worst repeats an ID.
            unsafe {
                (*last)[class] = (*last)[class].wrapping_add(jump);
                (*last)[class]
            }
        }
        IPID_INCREMENTAL | IPID_BROKEN => {
            // A GSO packet leaves as several segments, each taking an ID.
            let segs = unsafe { (*ctx.skb.skb).gso_segs }.max(1) as u64;
            let counter = IP_IDS.get_ptr_mut(slot)?;
            // SAFETY: a map value; a racing update at worst repeats an ID.
            let id = unsafe {
                let mut id = *counter;
                if id == 0 {
                    // The first packet takes an ID too: left at the kernel's
                    // (0 on a SYN-ACK with DF), it reads as Linux to p0f.
                    id = 1 << 32 | (bpf_get_prandom_u32() & 0xffff) as u64;
                }
                *counter = id.wrapping_add(segs);
                id
            } as u16;
            if policy == IPID_BROKEN { id.swap_bytes() } else { id }
        }
        _ => return None,
    };
    let old = ip.id;
    let new = new.to_be();
    if old != new {
        // The header checksum is never left to offload: updated here, in
        // place (RFC 1624), from its value now (DF may have changed it).
        let sum: u16 = read(ctx, AT_IP_CSUM)?;
        let sum = !fold((!sum) as u32 + (!old) as u32 + new as u32);
        write(ctx, AT_IP_ID, new)?;
        write(ctx, AT_IP_CSUM, sum)?;
    }
    Some(())
}

/// What a TCP packet needs beyond the rewrites already made.
enum Egress {
    Drop,
    /// A don't-fragment policy of its own (`DF_KERNEL`: the stack's).
    Df(u8),
}

#[inline(always)]
fn tcp_egress(ctx: &TcContext, p: &Personality, ip: &IpHead, tcp: &TcpHead) -> Option<Egress> {
    let key = flow(ip, tcp, true);
    let flags = tcp.flags();
    if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
        syn_ack(ctx, p, ip, tcp)?;
        return None;
    }
    let Some(conn) = connection(&key) else {
        if let Some(mut conn) = time_wait(&key) {
            // The kernel answering from TIME_WAIT.
            established_egress(ctx, &mut conn, ip, tcp)?;
            return None;
        }
        stateless_egress(ctx, &Decky::of(ip.src, p), tcp)?;
        if flags & (TCP_RST | TCP_ACK) == TCP_RST && p.flags & F_NO_BARE_RST != 0 {
            return Some(Egress::Drop);
        }
        if flags & (TCP_RST | TCP_ACK) == TCP_RST | TCP_ACK && tcp.seq == 0 {
            // The kernel's answer to a segment without ACK at a closed port.
            return closed_port_rst(ctx, p, key, tcp).map(Egress::Df);
        }
        if flags & (TCP_RST | TCP_ACK) == TCP_RST && p.flags & F_RST_ACK_OTHER != 0 {
            // Linux leaves a bare RST's acknowledgement at zero; Windows does not.
            let new = unsafe { bpf_get_prandom_u32() } | 1;
            write_known(ctx, AT_TCP_ACK, tcp.ack, new)?;
        }
        return None;
    };
    // SAFETY: a map value, only this connection's segments write it.
    established_egress(ctx, unsafe { &mut (*conn).conn }, ip, tcp)?;
    if flags & TCP_RST != 0 {
        // The decky aborts the connection: nothing of it follows.
        remove_connection(&key);
    }
    None
}

/// An established connection's segments: every change written straight
/// into the packet, and the checksum updated once.
#[inline(always)]
fn established_egress(ctx: &TcContext, conn: &mut Connection, ip: &IpHead, tcp: &TcpHead) -> Option<()> {
    let flags = tcp.flags();
    let seq = u32::from_be(tcp.seq).wrapping_add(conn.isn_delta);
    if flags & TCP_ACK != 0 {
        let ack = u32::from_be(tcp.ack);
        // The peer's FIN is taken when the decky's acknowledgement moves
        // onto it, not when a duplicate ACK already stands there.
        if conn.closing & CLOSE_FIN_IN != 0 && ack == conn.fin_in && conn.last_ack != ack {
            conn.closing |= CLOSE_IN_ACKED;
        }
        // Written only when it moves: the entry's cache line is shared with
        // the ingress program, often on the other CPU.
        if conn.last_ack != ack {
            conn.last_ack = ack;
        }
    }
    if flags & TCP_FIN != 0 && conn.closing & CLOSE_FIN_OUT == 0 {
        conn.fin_out = seq.wrapping_add(payload(ip, tcp)).wrapping_add(1);
        conn.closing |= CLOSE_FIN_OUT;
        if conn.closing & CLOSE_IN_ACKED == 0 {
            conn.closing |= CLOSE_OURS_FIRST;
        }
    }
    let mut delta = Delta::default();
    if conn.isn_delta != 0 {
        delta.write32(ctx, AT_TCP_SEQ, tcp.seq, seq.to_be())?;
    }
    if flags & TCP_SYN == 0 && conn.kernel_wscale != conn.persona_wscale {
        // The kernel advertises windows in its own scale; the peer reads them
        // in the persona's.
        let old = tcp.window;
        let bytes = (u16::from_be(old) as u32) << (conn.kernel_wscale & 15);
        let new = ((bytes >> (conn.persona_wscale & 15)).min(0xffff) as u16).to_be();
        delta.write16(ctx, AT_TCP_WIN, old, new)?;
    }
    // Linux puts NOP NOP TS first in every segment that carries it.
    if conn.timestamps != 0 && tcp.words() >= 8 {
        if read::<u32>(ctx, AT_TCP_OPTS)? == NOP_NOP_TS {
            let old: u32 = read(ctx, AT_TCP_OPTS + 4)?;
            let new = persona_ts(conn, u32::from_be(old)).to_be();
            delta.write32(ctx, AT_TCP_OPTS + 4, old, new)?;
        }
    }
    delta.apply(ctx);
    Some(())
}

/// Rewrites the kernel's RST+ACK to a SYN (T5) or FIN (T7) at a closed
/// port as the persona's: its sequence number the probe's acknowledgement
/// number, its acknowledgement the probe's sequence number (+1 or not).
/// Returns the rule's don't-fragment policy.
#[inline(always)]
fn closed_port_rst(ctx: &TcContext, p: &Personality, key: FlowKey, tcp: &TcpHead) -> Option<u8> {
    if p.t5.active | p.t7.active == 0 {
        return None;
    }
    let Some(probe) = unsafe { RST_PROBES.get(&key) }.copied() else {
        // An ordinary SYN's (not kept: its numbers are Linux's anyway).
        return Some(p.t5.df);
    };
    let _ = RST_PROBES.remove(&key);
    let rule = if probe.flags as u8 & TCP_SYN != 0 { &p.t5 } else { &p.t7 };
    if rule.active == 0 {
        return None;
    }
    if rule.seq == NUM_ECHO {
        write_known(ctx, AT_TCP_SEQ, tcp.seq, probe.ack)?;
    }
    let seq = u32::from_be(probe.seq);
    let ack = match rule.ack {
        NUM_ECHO => seq,
        _ => seq.wrapping_add(1),
    };
    write_known(ctx, AT_TCP_ACK, tcp.ack, ack.to_be())?;
    Some(rule.df)
}

/// The decky's timestamp clock now, in its own ticks.
fn clock_now(p: &Personality, now_ns: u64) -> u32 {
    clock_at_ms(&p.clock, now_ns / 1_000_000)
}

/// A clock at `ms` milliseconds since boot. No division at 1000 Hz (the
/// stateless rewrites read it for every segment, both ways).
fn clock_at_ms(c: &Clock, ms: u64) -> u32 {
    let ticks = if c.hz == 1000 {
        ms
    } else {
        ms.wrapping_mul(c.hz as u64) / 1000
    };
    let skew = ticks.wrapping_mul(c.skew as u64) >> 32;
    let ticks = if c.slow != 0 {
        ticks.wrapping_sub(skew)
    } else {
        ticks.wrapping_add(skew)
    };
    (ticks as u32).wrapping_add(c.offset)
}

/// Milliseconds since boot, to within minutes a year (the 2^32 that the
/// kernel's 32-bit timestamps wrap at, without a division): 68719 / 2^16
/// is 2^20 / 10^6 less 7 ppm.
fn about_ms(now_ns: u64) -> u64 {
    ((now_ns >> 20) * 68_719) >> 16
}

/// The decky's clock at the kernel's timestamp `kernel`, for a personality
/// of `F_STATELESS` (the kernel's are milliseconds since boot, truncated:
/// `tcp_timestamps` 2), whole: it runs on where the kernel's wraps.
#[inline(always)]
fn clock_at_kernel(c: &Clock, kernel: u32, now_ns: u64) -> u32 {
    let now = about_ms(now_ns);
    // Stamped a moment ago (or, by the kernel's cached clock, a moment on).
    let ago = (now as u32).wrapping_sub(kernel) as i32 as i64;
    clock_at_ms(c, (now as i64).wrapping_sub(ago) as u64)
}

/// The kernel's timestamp that a clock read as `ticks` (the inverse of
/// `clock_at_kernel`; exact, but where a slow clock repeats a tick and
/// either millisecond would do).
#[inline(always)]
fn kernel_at_clock(c: &Clock, ticks: u32, now_ns: u64) -> u32 {
    let mut ms = about_ms(now_ns) as i64;
    // A tick is a millisecond, give or take the skew (one in 8,000 or
    // more): the first step lands within a few ticks, the others on it.
    for _ in 0..3 {
        ms = ms.wrapping_sub(clock_at_ms(c, ms as u64).wrapping_sub(ticks) as i32 as i64);
    }
    ms as u32
}

/// A new connection's first timestamp in the persona's clock.
#[inline(always)]
fn persona_ts_start(p: &Personality, conn: &Connection, now_ns: u64) -> u32 {
    if p.flags & F_TS_PER_CONNECTION != 0 {
        // The ISN is the connection's own random point (the kernel's), or
        // steps nmap reads as steady (the persona's clock).
        conn.isn_kernel
            .wrapping_add(conn.isn_delta)
            .wrapping_add(p.clock.offset)
    } else {
        clock_now(p, now_ns)
    }
}

fn persona_ts(conn: &Connection, kernel: u32) -> u32 {
    let elapsed = kernel.wrapping_sub(conn.ts_kernel) as u64;
    conn.ts_persona
        .wrapping_add((elapsed * conn.ts_hz as u64 / 1000) as u32)
}

fn kernel_ts(conn: &Connection, persona: u32) -> u32 {
    let hz = (conn.ts_hz as u64).max(1);
    let elapsed = persona.wrapping_sub(conn.ts_persona) as u64;
    conn.ts_kernel.wrapping_add((elapsed * 1000 / hz) as u32)
}

/// The persona's next ISN: a per-decky clock at the persona's rate, each
/// step scaled by the probe class's fixed factor or a random one (nmap's
/// ISR and SP).
fn next_isn(p: &Personality, class: usize, now: u64) -> Option<u32> {
    // SAFETY: a map value; concurrent SYN-ACKs at worst share a step.
    let clock = unsafe { &mut *ISN_CLOCKS.get_ptr_mut(p.slot as u32)? };
    if clock.last_ns == 0 {
        *clock = IsnClock {
            last_isn: unsafe { bpf_get_prandom_u32() },
            count: 0,
            last_ns: now,
        };
        return Some(clock.last_isn);
    }
    if p.isn_gcd != 0 {
        clock.count = clock.count.wrapping_add(1);
        let isn = clock.last_isn.wrapping_add(p.isn_gcd * (1 + (clock.count & 1)));
        clock.last_isn = isn;
        return Some(isn);
    }
    // Ten seconds at most: the clock wraps anyway, and the product stays in range.
    let elapsed_us = (now.wrapping_sub(clock.last_ns) / 1000).min(10_000_000);
    let step = elapsed_us * p.isn_per_ms / 1000;
    let step = match p.isn_scale[class & (CLASSES - 1)] {
        0 => {
            let jitter = p.isn_jitter as u64;
            let factor = 1024 - jitter + (unsafe { bpf_get_prandom_u32() } as u64 % (2 * jitter + 1));
            step * factor / 1024
        }
        fixed => step * fixed as u64 / ISN_SCALE_ONE as u64,
    };
    let isn = clock.last_isn.wrapping_add(step as u32);
    clock.last_isn = isn;
    clock.last_ns = now;
    Some(isn)
}

// Inlined, as the other functions with many arguments: a BPF call passes
// five in registers, and the verifier rejects what a larger one spills.
#[inline(always)]
fn syn_ack(ctx: &TcContext, p: &Personality, ip: &IpHead, tcp: &TcpHead) -> Option<()> {
    // Every change is written straight into the packet and summed; the
    // checksum is updated once, whatever path the rewrite ends on.
    let mut delta = Delta::default();
    let done = rewrite_syn_ack(ctx, p, ip, tcp, &mut delta);
    delta.apply(ctx);
    done
}

#[inline(always)]
fn rewrite_syn_ack(ctx: &TcContext, p: &Personality, ip: &IpHead, tcp: &TcpHead, delta: &mut Delta) -> Option<()> {
    let key = flow(ip, tcp, true);
    let now = departure(ctx);
    // Most SYN-ACKs answer no probe: the map is searched only for a decky
    // that kept one lately.
    let probed = PROBED_AT
        .get(p.slot as u32)
        .is_some_and(|&at| now.wrapping_sub(at) < PROBE_WINDOW_NS);
    let kept = if probed {
        unsafe { PROBES.get(&key) }.copied()
    } else {
        None
    };
    let class = match kept {
        Some(class) => {
            let _ = PROBES.remove(&key);
            if p.t5.active != 0 {
                // An open port's SYN was kept in case a closed port's RST answered it.
                let _ = RST_PROBES.remove(&key);
            }
            class
        }
        // An ordinary SYN: nothing was kept for it (but for one with an
        // acknowledgement number, which the LRU map ages out).
        None => CLASS_ORDINARY,
    };
    let class = (class as usize) & (CLASSES - 1);
    let mss = p.mss[class];
    let window = p.windows[class];
    if window != 0 {
        let old = tcp.window;
        let new = window.to_be();
        delta.write16(ctx, AT_TCP_WIN, old, new)?;
    }
    let mut words = ((tcp.words()) as usize).saturating_sub(5);
    if !(1..=10).contains(&words) {
        return Some(());
    }
    // Linux lays a SYN-ACK's options out one way: MSS; then SACK-permitted
    // and timestamps ("04 02 08 0a") or NOP NOP timestamps, or NOP NOP
    // SACK-permitted; then NOP and window scale last.
    let second: [u8; 4] = if words > 1 { read(ctx, AT_TCP_OPTS + 4)? } else { [0; 4] };
    let last: [u8; 4] = ctx.load(AT_TCP_OPTS + (words - 1) * 4).ok()?;
    let has_ts = second[2] == 8 && second[3] == 10;
    let has_sack = second[0] == 4 || (second[2] == 4 && second[3] == 2);
    let has_ws = words > 1 && last[0] == 1 && last[1] == 3 && last[2] == 3;
    let present = ((has_ws as usize) << 2) | ((has_sack as usize) << 1) | has_ts as usize;
    let (ts_val, ts_ecr) = if has_ts {
        (
            u32::from_be(read(ctx, AT_TCP_OPTS + 8)?),
            read::<u32>(ctx, AT_TCP_OPTS + 12)?,
        )
    } else {
        (0, 0)
    };
    let kernel_isn = u32::from_be(tcp.seq);
    let mut conn = Connection {
        isn_kernel: kernel_isn,
        isn_delta: 0,
        ts_kernel: ts_val,
        ts_persona: ts_val,
        kernel_wscale: if has_ws { last[3] } else { 0 },
        persona_wscale: if has_ws { last[3] } else { 0 },
        timestamps: (p.flags & F_TIMESTAMPS != 0) as u8,
        tcp_df: p.tcp_df,
        ip_id: p.ip_id[IPID_TCP],
        closing: 0,
        slot: p.slot,
        ts_hz: p.clock.hz,
        fin_out: 0,
        fin_in: 0,
        last_ack: u32::from_be(tcp.ack),
    };
    if has_ws && p.wscale != 0xff {
        conn.persona_wscale = p.wscale;
    }
    let stamps = p.flags & F_TIMESTAMPS != 0 && has_ts;
    let stateless = p.flags & F_STATELESS != 0;
    let tracked = if stateless && class == CLASS_ORDINARY as usize && conn.kernel_wscale == conn.persona_wscale {
        // An ordinary connection that needs no state: no slot.
        if may_be_tracked(key.local) {
            forget(&key);
        }
        false
    } else {
        track_syn_ack(p, &key, &mut conn, class, now, stamps)?
    };
    if !tracked {
        if !stateless {
            // No slot: the kernel's numbers and options, which need no translation.
            return Some(());
        }
        conn.isn_delta = 0;
        if stamps {
            conn.ts_persona = clock_at_kernel(&p.clock, ts_val, now);
        }
        if conn.kernel_wscale != conn.persona_wscale {
            // No slot for a connection whose windows the persona would
            // rescale: the kernel's options, but on the decky's clock (in
            // Linux's SYN-ACK, the timestamp value is 8 bytes in).
            if stamps {
                delta.put32(ctx, AT_TCP_OPTS + 8, conn.ts_persona.to_be())?;
            }
            return Some(());
        }
    }
    if conn.isn_delta != 0 {
        delta.write32(
            ctx,
            AT_TCP_SEQ,
            kernel_isn.to_be(),
            kernel_isn.wrapping_add(conn.isn_delta).to_be(),
        )?;
    }

    let index = present & 7;
    let want = p.options_len[index] as usize;
    if want > words * 4 && want <= 40 && want % 4 == 0 {
        grow_options(ctx, ip, tcp, words, want)?;
        words = want / 4;
    }
    // The sequence space stays the kernel's: options change in place, or
    // grow a SYN-ACK that carries no data.
    if want != words * 4 {
        // No image for this set: keep Linux's order, patch the values.
        let first: [u8; 4] = read(ctx, AT_TCP_OPTS)?;
        if first[0] == 2 && first[1] == 4 && mss != 0 {
            let m = mss.to_be_bytes();
            delta.put32(ctx, AT_TCP_OPTS, u32::from_ne_bytes([2, 4, m[0], m[1]]))?;
        }
        if has_ws && p.wscale != 0xff {
            delta.put32_at(
                ctx,
                AT_TCP_OPTS + (words - 1) * 4,
                u32::from_ne_bytes([1, 3, 3, p.wscale]),
            )?;
        }
        if has_ts && p.flags & F_TIMESTAMPS != 0 {
            delta.put32(ctx, AT_TCP_OPTS + 8, conn.ts_persona.to_be())?;
        }
        return Some(());
    }
    let image = &p.options[index];
    each_word!(words, |at| {
        let word = u32::from_ne_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]);
        delta.put32(ctx, AT_TCP_OPTS + at, word)?;
    });
    let ts_at = p.ts_at[index] as usize;
    if has_ts && ts_at + 10 <= 40 {
        let at = AT_TCP_OPTS + ts_at + 2;
        delta.put64_at(ctx, at, [conn.ts_persona.to_be(), ts_ecr])?;
    }
    // The image holds the ordinary SYN's MSS; a probe class may want another.
    let mss_at = p.mss_at[index] as usize;
    if mss != 0 && mss != p.mss[0] && mss_at + 4 <= 40 {
        let m = mss.to_be_bytes();
        delta.put32_at(ctx, AT_TCP_OPTS + mss_at, u32::from_ne_bytes([2, 4, m[0], m[1]]))?;
    }
    Some(())
}

/// Gives a SYN-ACK's connection the persona's ISN and timestamp clock, and a
/// slot, or the slot it has; false if its sets have none free.
#[inline(always)]
fn track_syn_ack(
    p: &Personality,
    key: &FlowKey,
    conn: &mut Connection,
    class: usize,
    now: u64,
    stamps: bool,
) -> Option<bool> {
    let kernel_isn = conn.isn_kernel;
    if p.isn_per_ms != 0 || p.isn_gcd != 0 {
        conn.isn_delta = next_isn(p, class, now)?.wrapping_sub(kernel_isn);
    }
    if stamps {
        conn.ts_persona = persona_ts_start(p, conn, now);
    }
    // A connection the table holds already: a retransmitted SYN-ACK, which
    // keeps the ISN the peer may have seen, or a new connection of a
    // recycled address and port pair.
    if let Some(slot) = connection(key) {
        // SAFETY: a map value, only this connection's segments write it.
        let prev = unsafe { &mut (*slot).conn };
        if prev.isn_kernel == kernel_isn {
            conn.isn_delta = prev.isn_delta;
            if stamps {
                conn.ts_persona = persona_ts_start(p, conn, now);
            }
        }
        *prev = *conn;
        // A recycled pair's connection is as young as its SYN-ACK.
        // SAFETY: a map value.
        unsafe { (*slot).born = (now >> 30) as u32 };
        return Some(true);
    }
    Some(add_connection(key, conn, (now >> 30) as u32).is_some())
}

/// Forgets an earlier connection of `key`'s addresses and ports, open or in
/// TIME_WAIT: a new one, untracked, has them now.
#[inline(always)]
fn forget(key: &FlowKey) {
    remove_connection(key);
    if let Some(tw) = TIME_WAITS.get_ptr_mut(TimeWait::slot(key)) {
        // SAFETY: a map value; an empty slot's close time is 0.
        unsafe {
            if (*tw).key == *key {
                (*tw).closed_ns = 0;
            }
        }
    }
}

/// Makes room for `want` bytes of options in a SYN-ACK that has `words`
/// words of them and no data: the new bytes are zeros at the end, and the
/// lengths (IP total, TCP data offset, the pseudo header's) follow.
#[inline(always)]
fn grow_options(ctx: &TcContext, ip: &IpHead, tcp: &TcpHead, words: usize, want: usize) -> Option<()> {
    let total = ip.total_len() as usize;
    if total != 40 + words * 4 || ctx.len() as usize != ETH_LEN + total {
        return None;
    }
    let extra = want - words * 4;
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_LEN + total + extra) as u32, 0) } != 0 {
        return None;
    }
    let old = (total as u16).to_be();
    let new = ((total + extra) as u16).to_be();
    ctx.store(AT_IP_LEN, &new, 0).ok()?;
    ctx.l3_csum_replace(AT_IP_CSUM, old as u64, new as u64, 2).ok()?;
    let old_l4 = ((total - 20) as u16).to_be();
    let new_l4 = ((total - 20 + extra) as u16).to_be();
    ctx.l4_csum_replace(AT_TCP_CSUM, old_l4 as u64, new_l4 as u64, BPF_F_PSEUDO_HDR as u64 | 2)
        .ok()?;
    let old = tcp.off_flags;
    let new = u16::from_ne_bytes([((5 + want / 4) as u8) << 4, tcp.flags()]);
    ctx.store(AT_TCP_DOFF, &new, 0).ok()?;
    ctx.l4_csum_replace(AT_TCP_CSUM, old as u64, new as u64, 2).ok()
}

/// Writes a 32-bit word (as it sits in the packet) over `old` at an even
/// offset of the TCP segment, and updates the checksum.
fn write_known(ctx: &TcContext, at: usize, old: u32, new: u32) -> Option<()> {
    if old != new {
        ctx.store(at, &new, 0).ok()?;
        ctx.l4_csum_replace(AT_TCP_CSUM, old as u64, new as u64, 4).ok()?;
    }
    Some(())
}

/// The one's-complement sum of a TCP segment's changes so far (RFC 1624),
/// for one checksum update instead of one per field.
#[derive(Default)]
struct Delta(u64);

impl Delta {
    /// Writes `new` (as it sits in the packet) over `old` at an even offset.
    #[inline(always)]
    fn write16(&mut self, ctx: &TcContext, at: usize, old: u16, new: u16) -> Option<()> {
        if old != new {
            write(ctx, at, new)?;
            self.0 += (!old) as u64 + new as u64;
        }
        Some(())
    }

    /// [`Delta::write32`] over whatever is there now, at a constant offset.
    #[inline(always)]
    fn put32(&mut self, ctx: &TcContext, at: usize, new: u32) -> Option<()> {
        let old: u32 = read(ctx, at)?;
        self.write32(ctx, at, old, new)
    }

    /// The same at a computed offset, through the helpers: the verifier loses
    /// such an offset's bounds on a direct access (the compiler drops any
    /// mask that would keep them).
    #[inline(always)]
    fn put32_at(&mut self, ctx: &TcContext, at: usize, new: u32) -> Option<()> {
        let old: u32 = ctx.load(at).ok()?;
        if old != new {
            ctx.store(at, &new, 0).ok()?;
            self.add32(old, new);
        }
        Some(())
    }

    /// Two words at a computed offset, with one load and one store.
    #[inline(always)]
    fn put64_at(&mut self, ctx: &TcContext, at: usize, new: [u32; 2]) -> Option<()> {
        let old: [u32; 2] = ctx.load(at).ok()?;
        if old != new {
            ctx.store(at, &new, 0).ok()?;
            self.add32(old[0], new[0]);
            self.add32(old[1], new[1]);
        }
        Some(())
    }

    #[inline(always)]
    fn write32(&mut self, ctx: &TcContext, at: usize, old: u32, new: u32) -> Option<()> {
        if old != new {
            write(ctx, at, new)?;
            self.add32(old, new);
        }
        Some(())
    }

    fn add32(&mut self, old: u32, new: u32) {
        self.0 += (!old & 0xffff) as u64 + (!old >> 16) as u64 + (new & 0xffff) as u64 + (new >> 16) as u64;
    }

    /// Updates the TCP checksum by the sum (the helper leaves a checksum the
    /// NIC or stack will complete alone, as it must).
    #[inline(always)]
    fn apply(self, ctx: &TcContext) {
        if self.0 != 0 {
            let _ = ctx.l4_csum_replace(AT_TCP_CSUM, 0, fold64(self.0) as u64, 0);
        }
    }
}

/// Writes `v` at `at`, straight into the packet when its linear part holds
/// it, else with the helper; checksums are the caller's.
#[inline(always)]
fn write<T: Copy>(ctx: &TcContext, at: usize, v: T) -> Option<()> {
    let start = ctx.data();
    if start + at + core::mem::size_of::<T>() <= ctx.data_end() {
        // SAFETY: within the packet's linear part, checked just above.
        unsafe { core::ptr::write_unaligned((start + at) as *mut T, v) };
        Some(())
    } else {
        ctx.store(at, &v, 0).ok()
    }
}

fn fold64(sum: u64) -> u16 {
    fold(((sum & 0xffff) + ((sum >> 16) & 0xffff) + ((sum >> 32) & 0xffff) + (sum >> 48)) as u32)
}

fn icmp_egress(ctx: &TcContext, p: &Personality, ip: &IpHead) -> Option<()> {
    let head: u16 = ctx.load(L4).ok()?;
    let [kind, _code] = head.to_ne_bytes();
    if kind == 3 && p.quote != 0 {
        return shorten_quote(ctx, ip, p.quote as usize, p.flags & F_QUOTE_UDP_CSUM_ZERO != 0);
    }
    if kind != 0 {
        return Some(());
    }
    if p.flags & F_ECHO_CODE != 0 {
        let new = u16::from_ne_bytes([0, p.echo_code]);
        if new != head {
            ctx.store(L4, &new, 0).ok()?;
            ctx.l4_csum_replace(AT_ICMP_CSUM, head as u64, new as u64, 2).ok()?;
        }
    }
    let df = match p.echo_df {
        DF_SAME => {
            let key = EchoKey {
                remote: ip.dst,
                id_seq: ctx.load(L4 + 4).ok()?,
            };
            let had = unsafe { ECHOES.get(&key) }.copied()?;
            let _ = ECHOES.remove(&key);
            if had != 0 { DF_SET } else { DF_CLEAR }
        }
        other => other,
    };
    set_df(ctx, ip, df)
}

/// Cuts an ICMP error down to `quote` bytes of the datagram it quotes
/// (nmap's U1 IPL), zeroes a quoted UDP checksum if asked (U1 RUCK=0), and
/// sums its checksum again.
fn shorten_quote(ctx: &TcContext, ip: &IpHead, quote: usize, zero_udp_csum: bool) -> Option<()> {
    let total = ip.total_len() as usize;
    let want = 28 + quote;
    if ctx.len() as usize != ETH_LEN + total {
        return Some(());
    }
    if total <= want {
        // Short enough already: only the quoted checksum may change.
        if zero_udp_csum && total >= 28 + 28 {
            let old = zero_quoted_udp_csum(ctx)?;
            ctx.l4_csum_replace(AT_ICMP_CSUM, old as u64, 0, 2).ok()?;
        }
        return Some(());
    }
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_LEN + want) as u32, 0) } != 0 {
        return None;
    }
    let old = (total as u16).to_be();
    let new = (want as u16).to_be();
    ctx.store(AT_IP_LEN, &new, 0).ok()?;
    ctx.l3_csum_replace(AT_IP_CSUM, old as u64, new as u64, 2).ok()?;
    ctx.store(AT_ICMP_CSUM, &0u16, 0).ok()?;
    if zero_udp_csum && quote >= 28 {
        zero_quoted_udp_csum(ctx);
    }
    let mut sum = 0u32;
    for i in 0..MAX_ICMP_WORDS {
        if i * 4 >= 8 + quote {
            break;
        }
        let word = u32::from_be(ctx.load::<u32>(L4 + i * 4).ok()?);
        sum += (word >> 16) + (word & 0xffff);
    }
    ctx.store(AT_ICMP_CSUM, &(!fold(sum)).to_be(), 0).ok()
}

/// Zeroes the checksum of the UDP header an ICMP error quotes (after an IP
/// header without options), and returns what it was.
fn zero_quoted_udp_csum(ctx: &TcContext) -> Option<u16> {
    let quoted: [u8; 10] = ctx.load(QUOTED_IP).ok()?;
    if quoted[0] != 0x45 || quoted[9] != 17 {
        return None;
    }
    let old: u16 = ctx.load(QUOTED_IP + 20 + 6).ok()?;
    ctx.store(QUOTED_IP + 20 + 6, &0u16, 0).ok()?;
    Some(old)
}

/// Where an ICMP error's quoted IP header starts.
const QUOTED_IP: usize = L4 + 8;

/// The longest ICMP message `shorten_quote` sums: its header and 128 bytes.
const MAX_ICMP_WORDS: usize = 34;

// --------------------------------------------------------------- ingress

/// [`known_ingress`] for an established connection's segment, out of line.
#[inline(never)]
fn tracked_ingress_segment(ctx: &TcContext, ip: &IpHead, tcp: &TcpHead) -> bool {
    known_ingress(ctx, ip, tcp)
}

/// Translates an incoming segment with ACK of a connection the tables hold,
/// if they hold it: one lookup, the connection's copy of the persona's
/// settings. (Inlined into the other paths too: a call from there would
/// pass the 512-byte stack.)
#[inline(always)]
fn known_ingress(ctx: &TcContext, ip: &IpHead, tcp: &TcpHead) -> bool {
    let key = flow(ip, tcp, false);
    let Some(conn) = connection(&key) else {
        return false;
    };
    // SAFETY: a map value, only this connection's segments write it.
    let _ = established_ingress(ctx, &key, unsafe { &mut (*conn).conn }, ip, tcp);
    true
}

fn try_ingress(ctx: &TcContext) -> Option<i32> {
    let ip = ipv4(ctx)?;
    let p = personality(&ip, false)?;
    if ip.proto() == 1 {
        return echo_request(ctx, p, &ip);
    }
    if ip.proto() != 6 {
        return None;
    }
    let tcp = tcp_head(ctx)?;
    let flags = tcp.flags();
    let key = flow(&ip, &tcp, false);
    if flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_FIN && p.t7.silent != 0 {
        return Some(TC_ACT_SHOT);
    }
    if flags & (TCP_ACK | TCP_RST) == 0 && p.t5.active | p.t7.active != 0 {
        // Kept for the RST a closed port answers with (T5, T7); an ordinary
        // client's SYN has a zero acknowledgement number and is not kept.
        let rule = if flags & TCP_SYN != 0 { &p.t5 } else { &p.t7 };
        if rule.active != 0 && (flags & TCP_SYN == 0 || tcp.ack != 0) {
            let probe = RstProbe {
                seq: tcp.seq,
                ack: tcp.ack,
                flags: flags as u32,
            };
            let _ = RST_PROBES.insert(&key, &probe, 0);
        }
    }
    if flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN {
        let class = classify(ctx, &tcp)?;
        if class != CLASS_ORDINARY {
            if let Some(at) = PROBED_AT.get_ptr_mut(p.slot as u32) {
                // SAFETY: a map value; racing writers write the same instant, near enough.
                unsafe { *at = bpf_ktime_get_ns() };
            }
            let _ = PROBES.insert(&key, &class, 0);
        }
        return None;
    }
    if flags & !(TCP_ECE | TCP_CWR) == 0 && p.t2.flags != 0 {
        return reply(ctx, &ip, &tcp, &p.t2, p);
    }
    if flags & (TCP_SYN | TCP_FIN) == TCP_SYN | TCP_FIN && p.t3.flags != 0 {
        return reply(ctx, &ip, &tcp, &p.t3, p);
    }
    if flags & TCP_RST != 0 {
        // Only an RST the kernel takes (RFC 5961: at exactly rcv_nxt) ends
        // the connection; another gets a challenge ACK, still translated.
        if let Some(conn) = connection(&key).map(|slot| unsafe { &(*slot).conn })
            && u32::from_be(tcp.seq) == conn.last_ack
        {
            remove_connection(&key);
        }
        return None;
    }
    if flags & TCP_ACK != 0 && !known_ingress(ctx, &ip, &tcp) {
        let _ = untracked_ingress(ctx, &ip, &tcp);
    }
    None
}

/// Translates an incoming segment of a known connection back to the
/// kernel's numbers, written straight into the packet, the checksum updated once.
#[inline(always)]
fn established_ingress(
    ctx: &TcContext,
    key: &FlowKey,
    conn: &mut Connection,
    ip: &IpHead,
    tcp: &TcpHead,
) -> Option<()> {
    if conn.closing & ANSWERED == 0 {
        // The handshake's last ACK (or a later segment): no longer half-open.
        conn.closing |= ANSWERED;
    }
    // The peer's latest FIN until the decky acknowledges one (an old or
    // stray FIN is not; the one the kernel takes is).
    if tcp.flags() & TCP_FIN != 0 && conn.closing & CLOSE_IN_ACKED == 0 {
        conn.fin_in = u32::from_be(tcp.seq).wrapping_add(payload(ip, tcp)).wrapping_add(1);
        conn.closing |= CLOSE_FIN_IN;
    }
    // Exactly the decky's FIN: an acknowledgement beyond it is one the
    // kernel refuses.
    if conn.closing & CLOSE_FIN_OUT != 0 && u32::from_be(tcp.ack) == conn.fin_out {
        conn.closing |= CLOSE_OUT_ACKED;
    }
    let mut delta = Delta::default();
    if conn.isn_delta != 0 {
        let old = tcp.ack;
        let new = u32::from_be(old).wrapping_sub(conn.isn_delta).to_be();
        delta.write32(ctx, AT_TCP_ACK, old, new)?;
    }
    // The timestamps option of an incoming segment, where `echo_at` finds it.
    if conn.timestamps != 0
        && tcp.words() >= 8
        && let Some(at) = echo_at(read(ctx, AT_TCP_OPTS)?)
    {
        let old: u32 = read(ctx, at)?;
        if old != 0 {
            let new = kernel_ts(conn, u32::from_be(old)).to_be();
            delta.write32(ctx, at, old, new)?;
        }
    }
    delta.apply(ctx);
    if conn.closing & CLOSED == CLOSED {
        closed(key, conn);
    }
    Some(())
}

/// Where the echo of a timestamps option that starts a segment's options
/// (their first word `head`) is: alone or after two NOPs, as common stacks
/// send it (RFC 7323, appendix A), at an even offset as a 16-bit checksum
/// update needs.
#[inline(always)]
fn echo_at(head: u32) -> Option<usize> {
    if head == NOP_NOP_TS {
        Some(AT_TCP_OPTS + 8)
    } else if head.to_ne_bytes()[..2] == [8, 10] {
        Some(AT_TCP_OPTS + 6)
    } else {
        None
    }
}

/// Puts the timestamp an untracked segment echoes back on the kernel's
/// clock (`F_STATELESS`): wherever common stacks put it in a segment
/// (`echo_at`) or a SYN-ACK (after the MSS).
#[inline(always)]
fn untracked_ingress(ctx: &TcContext, ip: &IpHead, tcp: &TcpHead) -> Option<()> {
    // No room for timestamps: nothing to look up.
    if tcp.words() < 8 {
        return None;
    }
    let d = decky_of(ip.dst)?;
    if d.flags & (F_STATELESS | F_TIMESTAMPS) != F_STATELESS | F_TIMESTAMPS {
        return None;
    }
    // One rewrite, wherever the echo is: inlined once, not called.
    let at = match echo_at(read(ctx, AT_TCP_OPTS)?) {
        Some(at) => at,
        None if tcp.flags() & TCP_SYN != 0
            && tcp.words() >= 9
            && read::<[u8; 4]>(ctx, AT_TCP_OPTS + 4)?[2..] == [8, 10] =>
        {
            AT_TCP_OPTS + 12
        }
        None => return None,
    };
    retime(ctx, &d.clock, at, Way::In, about_now(ip.dst))
}

/// A connection whose close is complete leaves the map of open ones; if
/// the decky closed first, its socket answers from TIME_WAIT a while yet.
#[inline(always)]
fn closed(key: &FlowKey, conn: &Connection) {
    if conn.closing & CLOSE_OURS_FIRST != 0
        && let Some(slot) = TIME_WAITS.get_ptr_mut(TimeWait::slot(key))
    {
        let mut tw = TimeWait {
            key: *key,
            conn: *conn,
            closed_ns: unsafe { bpf_ktime_get_ns() },
            seal: 0,
            _pad: 0,
        };
        tw.seal = tw.seal();
        // SAFETY: a map value; a racing close into the same slot leaves an
        // entry that fails its seal.
        unsafe { *slot = tw };
        if let Some(t) = DECKIES.get_ptr_mut(decky_line(key.local)) {
            // SAFETY: a map value; racing closes write about the same time.
            unsafe { (*t).closed = (tw.closed_ns >> 30).max(1) };
        }
    }
    remove_connection(key);
}

/// The connection `key` names, if the decky closed it first less than
/// TIME_WAIT ago (a copy: what its rewrites note goes nowhere).
#[inline(always)]
fn time_wait(key: &FlowKey) -> Option<Connection> {
    let tw = TIME_WAITS.get(TimeWait::slot(key))?;
    let fresh = unsafe { bpf_ktime_get_ns() }.wrapping_sub(tw.closed_ns) < TIME_WAIT_NS;
    (tw.key == *key && tw.closed_ns != 0 && fresh && tw.seal == tw.seal()).then_some(tw.conn)
}

/// A TCP segment's payload length, from the IP header's total length.
fn payload(ip: &IpHead, tcp: &TcpHead) -> u32 {
    (ip.total_len() as u32).wrapping_sub(20 + ((tcp.words()) as u32) * 4)
}

/// Remembers whether an echo request had DF, for a persona whose replies
/// copy it.
fn echo_request(ctx: &TcContext, p: &Personality, ip: &IpHead) -> Option<i32> {
    if p.echo_df != DF_SAME || ctx.load::<u8>(L4).ok()? != 8 {
        return None;
    }
    let key = EchoKey {
        remote: ip.src,
        id_seq: ctx.load(L4 + 4).ok()?,
    };
    let _ = ECHOES.insert(&key, &((ip.frag.to_ne_bytes()[0] & 0x40 != 0) as u8), 0);
    None
}

/// nmap's SYN probes, told apart by window and first option the way its
/// OS detection sends them (nmap book, "TCP/IP Fingerprinting Methods").
fn classify(ctx: &TcContext, tcp: &TcpHead) -> Option<u8> {
    let flags = tcp.flags();
    let window = u16::from_be(tcp.window);
    if flags & (TCP_ECE | TCP_CWR) == TCP_ECE | TCP_CWR {
        return Some(if window == 3 { CLASS_ECN } else { CLASS_ORDINARY });
    }
    let first: u8 = read(ctx, AT_TCP_OPTS)?;
    Some(match (window, first) {
        (1, 3) => 1,
        (63, 2) => 2,
        (4, 8) => 3,
        (4, 4) => 4,
        (16, 2) => 5,
        (512, 2) => 6,
        _ => CLASS_ORDINARY,
    })
}

/// A reply's frame, two bytes in (see `reply`).
#[repr(C, align(4))]
struct Frame([u8; 2 + BARE_REPLY + 40]);

/// Turns the probe into the persona's answer and sends it back out: a bare
/// segment, or one with the persona's SYN-ACK options (its image for window
/// scale, SACK and timestamps).
#[inline(always)]
fn reply(ctx: &TcContext, ip: &IpHead, tcp: &TcpHead, r: &Reply, p: &Personality) -> Option<i32> {
    let macs: [u8; 12] = read(ctx, 0)?;
    let seq = u32::from_be(tcp.seq);
    let ack = u32::from_be(tcp.ack);
    let flags = tcp.flags();
    let syn_fin = (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32;
    let out_seq = match r.seq {
        NUM_ECHO => ack,
        NUM_ECHO_PLUS => ack.wrapping_add(1),
        NUM_OTHER => unsafe { bpf_get_prandom_u32() },
        _ => 0,
    };
    let out_ack = match r.ack {
        NUM_ECHO => seq,
        NUM_ECHO_PLUS => seq.wrapping_add(1),
        // What a stack that counts SYN and FIN would acknowledge.
        NUM_OTHER => seq.wrapping_add(syn_fin.max(2)),
        _ => 0,
    };
    let image_len = p.options_len[7] as usize;
    let olen = if r.options != 0 && image_len <= 40 && image_len % 4 == 0 {
        image_len
    } else {
        0
    };
    let n = BARE_REPLY + olen;

    // Built two bytes into a 4-aligned buffer, so that the IP header's
    // words are aligned: the verifier refuses misaligned stack access.
    let mut frame = Frame([0; 2 + BARE_REPLY + 40]);
    let pkt = &mut frame.0[2..];
    pkt[0..6].copy_from_slice(&macs[6..12]);
    pkt[6..12].copy_from_slice(&macs[0..6]);
    pkt[12] = 0x08;
    pkt[14] = 0x45;
    pkt[16..18].copy_from_slice(&((40 + olen) as u16).to_be_bytes());
    if r.df != 0 {
        pkt[20] = 0x40;
    }
    pkt[22] = p.ttl;
    pkt[23] = 6;
    pkt[26..30].copy_from_slice(&ip.dst.to_ne_bytes());
    pkt[30..34].copy_from_slice(&ip.src.to_ne_bytes());
    let ip_sum = fold(sum16(&pkt[14..34]));
    pkt[24..26].copy_from_slice(&(!ip_sum).to_be_bytes());

    pkt[34..36].copy_from_slice(&tcp.dport.to_ne_bytes());
    pkt[36..38].copy_from_slice(&tcp.sport.to_ne_bytes());
    pkt[38..42].copy_from_slice(&out_seq.to_be_bytes());
    pkt[42..46].copy_from_slice(&out_ack.to_be_bytes());
    pkt[46] = ((5 + olen / 4) as u8) << 4;
    pkt[47] = r.flags;
    pkt[48..50].copy_from_slice(&r.window.to_be_bytes());
    let image = &p.options[7];
    each_word!(olen / 4, |at| {
        pkt[BARE_REPLY + at..BARE_REPLY + at + 4].copy_from_slice(&image[at..at + 4]);
    });
    // The timestamps go in after the copy, at the image's offset; the
    // checksum takes them by sum (they start at an even offset).
    let ts_at = p.ts_at[7] as usize;
    let stamps = if olen != 0 && ts_at + 10 <= olen {
        let val = if p.flags & F_TS_PER_CONNECTION != 0 {
            unsafe { bpf_get_prandom_u32() }
        } else {
            clock_now(p, unsafe { bpf_ktime_get_ns() })
        }
        .max(1);
        Some((val, probe_ts(ctx, tcp).unwrap_or(0)))
    } else {
        None
    };
    // Pseudo header: addresses, protocol, TCP length.
    let mut sum = sum16(&pkt[26..34]) + 6 + 20 + olen as u32 + sum16(&pkt[34..]);
    if let Some((val, ecr)) = stamps {
        sum += (val >> 16) + (val & 0xffff) + (ecr >> 16) + (ecr & 0xffff);
    }
    pkt[50..52].copy_from_slice(&(!fold(sum)).to_be_bytes());

    let len = ctx.len() as usize;
    if len != n && unsafe { bpf_skb_change_tail(ctx.skb.skb, n as u32, 0) } != 0 {
        return Some(TC_ACT_SHOT);
    }
    if ctx.len() as usize != n {
        return Some(TC_ACT_SHOT);
    }
    if unsafe {
        bpf_skb_store_bytes(
            ctx.skb.skb.cast(),
            0,
            pkt.as_ptr().cast(),
            n as u32,
            BPF_F_RECOMPUTE_CSUM,
        )
    } != 0
    {
        return Some(TC_ACT_SHOT);
    }
    if let Some((val, ecr)) = stamps {
        let at = AT_TCP_OPTS + ts_at + 2;
        ctx.store(at, &val.to_be(), BPF_F_RECOMPUTE_CSUM).ok()?;
        ctx.store(at + 4, &ecr.to_be(), BPF_F_RECOMPUTE_CSUM).ok()?;
    }
    Some(unsafe { bpf_redirect(ifindex(ctx), 0) } as i32).map(|r| if r == TC_ACT_REDIRECT { r } else { TC_ACT_SHOT })
}

/// A reply without options: Ethernet, IPv4 and TCP headers.
const BARE_REPLY: usize = 54;

/// The timestamp value of a probe whose options start with it, alone or
/// after two NOPs, or carry it after window scale, NOP and MSS (nmap's T2-T7).
fn probe_ts(ctx: &TcContext, tcp: &TcpHead) -> Option<u32> {
    if tcp.words() < 9 {
        return None;
    }
    let head: [u8; 16] = ctx.load(AT_TCP_OPTS).ok()?;
    let at = match head {
        [8, 10, ..] => 2,
        [1, 1, 8, 10, ..] => 4,
        [_, _, _, _, _, _, _, _, 8, 10, ..] => 10,
        _ => return None,
    };
    // From the packet: a word at 2 or 10 of the copy would be a misaligned
    // stack access, which the verifier refuses.
    ctx.load::<u32>(AT_TCP_OPTS + at).ok().map(u32::from_be)
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum()
}

fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
