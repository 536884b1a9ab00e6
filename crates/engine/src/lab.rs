//! The lab's bookkeeping: which private LAN this instance made (so `lab up`
//! can reuse it and `lab down` can remove it), persisted in `<state-dir>/lab.json`.

use std::net::Ipv4Addr;

use decnet_net::lab::{self, LabNames};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::engine::EngineError;

/// A lab LAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lab {
    pub subnet: Ipv4Net,
    /// The attacker's address, also the deckies' gateway.
    pub attacker_ip: Ipv4Addr,
    /// Kept free for the host hairpin.
    pub hairpin_ip: Ipv4Addr,
    pub attacker_ns: String,
    /// The deckies' parent link (the host end of the veth pair).
    pub lan: String,
}

impl Lab {
    /// Addresses deckies must not take.
    pub fn reserved(&self) -> Vec<Ipv4Addr> {
        vec![self.attacker_ip, self.hairpin_ip]
    }
}

/// A host-wide lock over lab creation.
fn host_lock() -> Result<nix::fcntl::Flock<std::fs::File>, EngineError> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/decnet-lab.lock")?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| EngineError::State(std::io::Error::from(errno)))
}

fn path(config: &EngineConfig) -> std::path::PathBuf {
    config.state_dir.join("lab.json")
}

/// The lab of this instance, if one was made.
pub fn load(config: &EngineConfig) -> Result<Option<Lab>, EngineError> {
    match std::fs::read(path(config)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path(config).display()),
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The lab LAN [`ensure`] would make now, without making anything: the
/// recorded one if any, else one of `/prefix_len` on a subnet no route of the
/// host uses. For checking a fleet against it before anything is created.
pub fn planned(config: &EngineConfig, prefix_len: u8) -> Result<Lab, EngineError> {
    let names = LabNames::for_prefix(&config.prefix);
    Ok(match load(config)? {
        Some(lab) => lab,
        None => {
            let subnet = lab::free_subnet(prefix_len, &[])?;
            let mut hosts = subnet.hosts();
            let attacker_ip = hosts.next().expect("a lab subnet (/30 or larger) has hosts");
            let hairpin_ip = hosts.next_back().expect("a lab subnet (/30 or larger) has hosts");
            Lab {
                subnet,
                attacker_ip,
                hairpin_ip,
                attacker_ns: names.attacker_ns,
                lan: names.lan,
            }
        }
    })
}

/// Makes sure the lab LAN exists: the recorded one if any (re-created if its
/// links are gone), else a new one of `/prefix_len` on a subnet no route of the
/// host uses.
pub fn ensure(config: &EngineConfig, prefix_len: u8) -> Result<Lab, EngineError> {
    decnet_net::require_network_admin()?;
    // Choosing a free subnet and taking it must be one step for every lab on
    // this host, or two labs made at once could pick the same subnet.
    let _lock = host_lock()?;
    let names = LabNames::for_prefix(&config.prefix);
    let lab = planned(config, prefix_len)?;
    lab::create(&names, lab.subnet, lab.attacker_ip)?;
    std::fs::create_dir_all(&config.state_dir)?;
    std::fs::write(
        path(config),
        serde_json::to_vec_pretty(&lab).map_err(std::io::Error::other)?,
    )?;
    Ok(lab)
}

/// Removes the lab LAN and its record; idempotent.
pub fn destroy(config: &EngineConfig) -> Result<bool, EngineError> {
    decnet_net::require_network_admin()?;
    let record = load(config)?;
    let names = LabNames::for_prefix(&config.prefix);
    // Without a record, still remove the links and namespace a crash may have left.
    lab::destroy(&names, record.as_ref().map(|lab| lab.subnet))?;
    let existed = record.is_some();
    match std::fs::remove_file(path(config)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    Ok(existed)
}
