//! What a session knows: the decky, the service, the peer, and the emitter
//! that stamps every event with all of them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use decnet_core::catalogue::{Port, Userland};
use decnet_core::persona::PersonaConfig;
use decnet_core::seed::DeckySeed;
use decnet_events::{Credential, Emitter, Event, Fields, Kind};
use decnet_net::DeckyNet;
use uuid::Uuid;

use crate::{Captures, Limits};

/// The decky a service runs on.
#[derive(Debug, Clone)]
pub struct DeckyInfo {
    pub name: String,
    pub hostname: String,
    pub ip: Ipv4Addr,
    /// The LAN's prefix length and default gateway, as the decky's own
    /// interface and routes show them.
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: [u8; 6],
    pub os_family: String,
    pub distro: String,
    /// What a login shows of the distro (files, kernel, prompt).
    pub userland: Userland,
    pub seed: DeckySeed,
}

/// One service of one decky.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub decky: Arc<DeckyInfo>,
    pub slug: String,
    pub ports: Vec<Port>,
    pub persona: PersonaConfig,
    /// Where this service may keep this decky's state across restarts
    /// (`<state-dir>/services/<decky>/<slug>`, created by whoever writes to
    /// it); `None` when there is no state dir (tests).
    pub state_dir: Option<std::path::PathBuf>,
}

/// Live counters of one service of one decky (shown by `decnet status`).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    pub connections: AtomicU64,
    pub active: AtomicU64,
    /// Sessions refused by a limit.
    pub rejected: AtomicU64,
    pub events: AtomicU64,
    pub panics: AtomicU64,
}

/// Everything a session may use.
#[derive(Clone)]
pub struct SessionCx {
    service: Arc<ServiceInfo>,
    peer: SocketAddr,
    local: SocketAddr,
    session: Uuid,
    emitter: Emitter,
    counters: Arc<ServiceCounters>,
    net: DeckyNet,
    limits: Limits,
    captures: Captures,
}

impl SessionCx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: Arc<ServiceInfo>,
        peer: SocketAddr,
        local: SocketAddr,
        emitter: Emitter,
        counters: Arc<ServiceCounters>,
        net: DeckyNet,
        limits: Limits,
        captures: Captures,
    ) -> Self {
        Self {
            service,
            peer,
            local,
            session: Uuid::now_v7(),
            emitter,
            counters,
            net,
            limits,
            captures,
        }
    }

    pub fn decky(&self) -> &DeckyInfo {
        &self.service.decky
    }

    pub fn service(&self) -> &ServiceInfo {
        &self.service
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn session(&self) -> Uuid {
        self.session
    }

    /// The decky's socket factory: the only way to get another socket.
    pub fn net(&self) -> &DeckyNet {
        &self.net
    }

    /// Where dropped files and session recordings go.
    pub fn captures(&self) -> &Captures {
        &self.captures
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The decky's seed, for identifiers that must differ per decky but stay
    /// stable across redeploys.
    pub fn seed(&self) -> &DeckySeed {
        &self.service.decky.seed
    }

    /// The current time (one place to read the clock, so tests can control it later).
    pub fn now(&self) -> SystemTime {
        #[allow(clippy::disallowed_methods)] // This is the one place the clock is read.
        SystemTime::now()
    }

    /// Fresh unpredictable bytes for per-connection nonces and challenges.
    pub fn random_bytes(&self, out: &mut [u8]) {
        // The OS's CSPRNG; it only fails when the kernel has no entropy source at all.
        getrandom::fill(out).expect("the OS random number generator is available");
    }

    /// Emits an event stamped with decky, service, peer and session.
    pub fn emit(&self, kind: Kind, fields: Fields) {
        self.emit_event(kind, fields, None);
    }

    /// Emits an event that carries a captured credential.
    pub fn emit_credential(&self, kind: Kind, fields: Fields, credential: Credential) {
        self.emit_event(kind, fields, Some(credential));
    }

    fn emit_event(&self, kind: Kind, fields: Fields, credential: Option<Credential>) {
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        self.emitter.emit(Event {
            id: Uuid::now_v7(),
            time: self.now(),
            decky: self.service.decky.name.clone(),
            service: self.service.slug.clone(),
            kind,
            severity: kind.default_severity(),
            src_ip: self.peer.ip(),
            src_port: self.peer.port(),
            session: Some(self.session),
            fields,
            credential,
            message: None,
        });
    }
}

/// Builds [`Fields`] from `key => value` pairs of anything serializable.
#[macro_export]
macro_rules! fields {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut f = $crate::Fields::new();
        $( f.insert(String::from($key), $crate::__to_json(&$value)); )*
        f
    }};
}

#[doc(hidden)]
pub fn __to_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
