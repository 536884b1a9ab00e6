//! What the CLI can do without a running engine: report the fleet from the
//! state files, and tear deckies down directly (the engine may be dead).

use std::collections::BTreeSet;

use decnet_events::PipelineStats;
use decnet_net::{DeckyLink, NetError, Netns, Rtnl, hairpin};

use crate::config::EngineConfig;
use crate::engine::{EngineError, decky_status};
use crate::state;
use crate::status::{DeckyState, EngineStatus, TeardownReport, TeardownRequest};

/// The fleet as the state files and namespaces show it.
pub fn status(config: &EngineConfig) -> Result<EngineStatus, EngineError> {
    let fleet = state::load(&config.fleet_path())?;
    let namespaces: BTreeSet<String> = Netns::list(&config.netns_prefix())?.into_iter().collect();
    let deckies = fleet
        .as_ref()
        .map(|f| f.deckies.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|spec| {
            let state = if namespaces.contains(&config.netns_name(&spec.name)) {
                DeckyState::Stopped
            } else {
                DeckyState::Missing
            };
            decky_status(config, spec, state, Vec::new())
        })
        .collect();
    Ok(EngineStatus {
        running: false,
        pid: None,
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: 0,
        prefix: config.prefix.clone(),
        interface: fleet.as_ref().and_then(|f| f.interface.clone()),
        subnet: fleet.as_ref().map(|f| f.subnet.to_string()),
        hairpin: None,
        events: PipelineStats::default(),
        bus: None,
        store: None,
        deckies,
    })
}

/// Tears down without an engine: removes the namespaces (and with `all`, the
/// hairpin and every namespace of this instance) and updates the state file.
pub fn teardown(config: &EngineConfig, request: &TeardownRequest) -> Result<TeardownReport, EngineError> {
    decnet_net::require_network_admin()?;
    let mut fleet = state::load(&config.fleet_path())?;
    let mut report = TeardownReport::default();
    let doomed: Vec<String> = if request.all {
        fleet = None;
        Netns::list(&config.netns_prefix())?
    } else if let Some(id) = &request.id {
        if let Some(f) = fleet.as_mut() {
            f.deckies.retain(|d| &d.name != id);
            if f.deckies.is_empty() {
                fleet = None;
            }
        }
        vec![config.netns_name(id)]
    } else {
        Vec::new()
    };
    for netns in doomed {
        // Its eth0 first, from inside: the decky leaves the LAN at once.
        if DeckyLink::remove(&netns)? {
            report
                .removed
                .push(config.decky_of_netns(&netns).unwrap_or(&netns).to_string());
        }
    }
    if fleet.is_none() {
        let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
        report.hairpin_removed = hairpin::remove(&mut rtnl, &config.hairpin_name())?;
    }
    state::save(&config.fleet_path(), fleet.as_ref())?;
    Ok(report)
}
