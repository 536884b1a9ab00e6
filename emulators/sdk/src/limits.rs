//! Bounds on what one peer can make a decky do.

use std::time::Duration;

/// Per-connection and per-source limits the engine enforces around every
/// session, so that one scanner (or a slowloris) cannot starve the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent TCP sessions per decky, over all its services.
    pub per_decky: usize,
    /// Concurrent sessions per service of a decky.
    pub per_service: usize,
    /// Concurrent TCP sessions per source address on one decky.
    pub per_source: usize,
    /// Concurrent UDP flows per decky, over all its services: a budget of its
    /// own, so that datagrams (whose source is easily forged) can never use
    /// up the TCP sessions' places, nor the other way round.
    pub udp_per_decky: usize,
    /// Concurrent UDP flows per source address on one decky.
    pub udp_per_source: usize,
    /// A source refused by a limit is reported (one `error` event) at most
    /// once per this interval, however often it is refused.
    pub notice_interval: Duration,
    /// A session that reads nothing for this long ends.
    pub idle_timeout: Duration,
    /// No session lasts longer than this.
    pub total_timeout: Duration,
    /// Bytes a session may read from the peer.
    pub max_bytes_read: u64,
    /// Live UDP flows per service of a decky.
    pub udp_flows: usize,
    /// A UDP flow whose peer sends nothing for this long ends (datagram
    /// services answer at once; peers that retry do so within seconds).
    pub udp_idle_timeout: Duration,
    /// Datagrams queued per UDP flow before further ones are dropped (and counted).
    pub udp_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_decky: 2048,
            per_service: 1024,
            per_source: 128,
            udp_per_decky: 1024,
            udp_per_source: 128,
            notice_interval: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(30 * 60),
            max_bytes_read: 64 * 1024 * 1024,
            udp_flows: 1024,
            udp_idle_timeout: Duration::from_secs(5),
            udp_queue: 16,
        }
    }
}
