//! Loads the personality programs once and attaches them inside each decky.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::tc::SchedClassifierLink;
use aya::programs::{SchedClassifier, TcAttachType};
use aya::{Ebpf, include_bytes_aligned};
use decnet_ebpf_common::{Decky, IsnClock, Personality, SLOTS};

use crate::decky_lines::DeckyLines;

/// Built by `cargo xtask build-ebpf` from `ebpf/personality` and committed,
/// so that building DECNET needs no nightly toolchain.
static OBJECT: &[u8] = include_bytes_aligned!("../bpf/decnet-personality.o");

#[derive(Debug, thiserror::Error)]
pub enum ShaperError {
    #[error("cannot load the personality eBPF programs: {0}")]
    Load(String),
    #[error("cannot attach the personality programs to {interface}: {reason}")]
    Attach { interface: String, reason: String },
}

/// The loaded programs and every decky's attachment. Dropping it detaches
/// everything (the links are TCX links owned here).
pub struct Shaper {
    inner: Mutex<Inner>,
}

struct Inner {
    ebpf: Ebpf,
    personalities: HashMap<MapData, u32, Personality>,
    /// The per-decky state, by slot: reset when a slot is given out.
    ip_ids: Array<MapData, u64>,
    far_ids: Array<MapData, [u16; 4]>,
    isn_clocks: Array<MapData, IsnClock>,
    probed_at: Array<MapData, u64>,
    /// What untracked segments need of each decky's personality (see `DeckyLine`).
    deckies: DeckyLines,
    /// Each decky's slot (`Personality::slot`), kept while it is attached.
    slots: BTreeMap<Ipv4Addr, u16>,
    attached: BTreeMap<Ipv4Addr, [SchedClassifierLink; 2]>,
}

impl Shaper {
    /// Loads and verifies the programs (needs root: CAP_BPF and CAP_NET_ADMIN).
    pub fn load() -> Result<Self, ShaperError> {
        let load = |e: &dyn std::fmt::Display| ShaperError::Load(e.to_string());
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| load(&e))?;
        for name in ["egress", "ingress"] {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| ShaperError::Load(format!("the object has no `{name}` program")))?
                .try_into()
                .map_err(|e| load(&e))?;
            program.load().map_err(|e| load(&e))?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| ShaperError::Load(format!("the object has no {name} map")))
        };
        let personalities = HashMap::try_from(take("PERSONALITIES")?).map_err(|e| load(&e))?;
        let ip_ids = Array::try_from(take("IP_IDS")?).map_err(|e| load(&e))?;
        let far_ids = Array::try_from(take("FAR_IDS")?).map_err(|e| load(&e))?;
        let isn_clocks = Array::try_from(take("ISN_CLOCKS")?).map_err(|e| load(&e))?;
        let probed_at = Array::try_from(take("PROBED_AT")?).map_err(|e| load(&e))?;
        let deckies = DeckyLines::map(take("DECKIES")?).map_err(|e| load(&e))?;
        Ok(Self {
            inner: Mutex::new(Inner {
                ebpf,
                personalities,
                ip_ids,
                far_ids,
                isn_clocks,
                probed_at,
                deckies,
                slots: BTreeMap::new(),
                attached: BTreeMap::new(),
            }),
        })
    }

    /// Gives the decky at `ip` its personality and attaches the programs to
    /// `interface` of the calling thread's network namespace: call it from a
    /// thread inside the decky's namespace. Re-attaching replaces.
    pub fn attach(&self, interface: &str, ip: Ipv4Addr, personality: &Personality) -> Result<(), ShaperError> {
        let fail = |reason: String| ShaperError::Attach {
            interface: interface.to_string(),
            reason,
        };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.attached.remove(&ip);
        // A decky re-attached keeps its slot, so its counters run on.
        let slot = match inner.slots.get(&ip) {
            Some(&slot) => slot,
            None => {
                let slot = (0..SLOTS)
                    .map(|s| s as u16)
                    .find(|s| !inner.slots.values().any(|used| used == s))
                    .ok_or_else(|| fail(format!("more than {SLOTS} deckies")))?;
                let index = u32::from(slot);
                let reset = |e: aya::maps::MapError| fail(e.to_string());
                inner.ip_ids.set(index, 0, 0).map_err(reset)?;
                inner.far_ids.set(index, [0; 4], 0).map_err(reset)?;
                inner.isn_clocks.set(index, IsnClock::default(), 0).map_err(reset)?;
                inner.probed_at.set(index, 0, 0).map_err(reset)?;
                inner.slots.insert(ip, slot);
                slot
            }
        };
        let personality = Personality { slot, ..*personality };
        inner
            .personalities
            .insert(key(ip), personality, 0)
            .map_err(|e| fail(e.to_string()))?;
        // Its line in DECKIES, unless another decky holds that one.
        inner.deckies.hold(Decky::of(key(ip), &personality));
        let mut links = Vec::with_capacity(2);
        for (name, direction) in [("ingress", TcAttachType::Ingress), ("egress", TcAttachType::Egress)] {
            let program: &mut SchedClassifier = inner
                .ebpf
                .program_mut(name)
                .and_then(|p| p.try_into().ok())
                .ok_or_else(|| fail(format!("no `{name}` program")))?;
            let id = program
                .attach(interface, direction)
                .map_err(|e| fail(format!("{name}: {e}")))?;
            links.push(program.take_link(id).map_err(|e| fail(e.to_string()))?);
        }
        let links: [SchedClassifierLink; 2] = links.try_into().map_err(|_| fail("two links expected".into()))?;
        inner.attached.insert(ip, links);
        Ok(())
    }

    /// Detaches the programs from the decky at `ip` and forgets it.
    pub fn detach(&self, ip: Ipv4Addr) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Dropping the links detaches them (if the interface still exists).
        inner.attached.remove(&ip);
        let _ = inner.personalities.remove(&key(ip));
        inner.deckies.release(key(ip));
        inner.slots.remove(&ip);
    }
}

/// The map key: the address as the programs read it from a packet.
fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}
