//! Desired versus actual: what to do to make the running fleet match the
//! desired one. Pure, so every case is unit-tested without root.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use decnet_core::fleet::{DeckySpec, FleetSpec, LinkDriver, MacAddr};

/// What makes a decky's network: if any of it changes, the decky is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetIdentity {
    pub interface: Option<String>,
    pub driver: LinkDriver,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub sysctls: BTreeMap<String, String>,
}

impl NetIdentity {
    pub fn of(fleet: &FleetSpec, decky: &DeckySpec) -> Self {
        Self {
            interface: fleet.interface.clone(),
            driver: fleet.driver,
            prefix: fleet.subnet.prefix_len(),
            gateway: fleet.gateway,
            ip: decky.ip,
            mac: decky.mac,
            sysctls: decky.sysctls.clone(),
        }
    }
}

/// A decky the engine is running, as it was deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub identity: NetIdentity,
    pub spec: DeckySpec,
}

/// One step of convergence, by decky name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop a running decky that is no longer wanted and remove its namespace.
    Remove(String),
    /// Remove a namespace of this instance that nothing wants (a leftover).
    RemoveStray(String),
    /// Tear down and build again: its network changed.
    Recreate(String),
    /// Build it.
    Create(String),
    /// Its namespace survived an engine restart: check it and serve it again.
    Adopt(String),
    /// Same network, changed services or persona: re-bind its services.
    Rebind(String),
    /// Nothing to do.
    Keep(String),
}

/// The actions that take `running` (what this engine serves) and `namespaces`
/// (deckies whose namespace exists) to `desired`. Removals come first, so that
/// addresses they free can be reused in the same pass.
pub fn plan(
    desired: Option<&FleetSpec>,
    running: &BTreeMap<String, Running>,
    namespaces: &BTreeSet<String>,
) -> Vec<Action> {
    let wanted: BTreeMap<&str, &DeckySpec> = desired
        .map(|f| f.deckies.iter().map(|d| (d.name.as_str(), d)).collect())
        .unwrap_or_default();
    let mut removals = Vec::new();
    let mut builds = Vec::new();
    for name in running.keys() {
        if !wanted.contains_key(name.as_str()) {
            removals.push(Action::Remove(name.clone()));
        }
    }
    for name in namespaces {
        if !wanted.contains_key(name.as_str()) && !running.contains_key(name) {
            removals.push(Action::RemoveStray(name.clone()));
        }
    }
    if let Some(fleet) = desired {
        for decky in &fleet.deckies {
            let name = decky.name.clone();
            builds.push(match running.get(&decky.name) {
                Some(r) if r.identity != NetIdentity::of(fleet, decky) => Action::Recreate(name),
                Some(r) if r.spec != *decky => Action::Rebind(name),
                Some(_) => Action::Keep(name),
                None if namespaces.contains(&decky.name) => Action::Adopt(name),
                None => Action::Create(name),
            });
        }
    }
    removals.extend(builds);
    removals
}

#[cfg(test)]
mod tests {
    use decnet_core::Catalogue;
    use decnet_core::fleet::{self, CliFleet, FleetRequest, PlanOptions};
    use decnet_core::host::HostFacts;

    use super::*;

    fn fleet(n: u32, services: &str) -> FleetSpec {
        let cat = Catalogue::embedded().unwrap();
        let flags = CliFleet {
            deckies: Some(n),
            services: Some(services.into()),
            subnet: Some("10.0.0.0/24".into()),
            interface: Some("lab0".into()),
            seed: Some("s".into()),
            ..CliFleet::default()
        };
        let request = FleetRequest::build(&flags, None, &cat).unwrap();
        fleet::plan(&request, &cat, &HostFacts::default(), &PlanOptions::default()).unwrap()
    }

    fn running(f: &FleetSpec) -> BTreeMap<String, Running> {
        f.deckies
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    Running {
                        identity: NetIdentity::of(f, d),
                        spec: d.clone(),
                    },
                )
            })
            .collect()
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fresh_fleet_is_created() {
        let f = fleet(2, "ssh");
        let actions = plan(Some(&f), &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(
            actions,
            [Action::Create("decky-01".into()), Action::Create("decky-02".into())]
        );
    }

    #[test]
    fn deploying_the_same_fleet_twice_changes_nothing() {
        let f = fleet(2, "ssh");
        let actions = plan(Some(&f), &running(&f), &names(&["decky-01", "decky-02"]));
        assert_eq!(
            actions,
            [Action::Keep("decky-01".into()), Action::Keep("decky-02".into())]
        );
    }

    #[test]
    fn changed_fleets_converge() {
        let old = fleet(3, "ssh");
        let new = fleet(2, "ssh,http");
        let actions = plan(
            Some(&new),
            &running(&old),
            &names(&["decky-01", "decky-02", "decky-03"]),
        );
        assert_eq!(
            actions,
            [
                Action::Remove("decky-03".into()),
                Action::Rebind("decky-01".into()),
                Action::Rebind("decky-02".into()),
            ]
        );
    }

    #[test]
    fn a_changed_address_rebuilds_the_decky() {
        let old = fleet(1, "ssh");
        let mut new = old.clone();
        new.deckies[0].ip = "10.0.0.77".parse().unwrap();
        assert_eq!(
            plan(Some(&new), &running(&old), &names(&["decky-01"])),
            [Action::Recreate("decky-01".into())]
        );
        let mut new = old.clone();
        new.deckies[0]
            .sysctls
            .insert("net.ipv4.ip_default_ttl".into(), "128".into());
        assert_eq!(
            plan(Some(&new), &running(&old), &names(&["decky-01"])),
            [Action::Recreate("decky-01".into())]
        );
    }

    #[test]
    fn after_a_restart_survivors_are_adopted_and_strays_removed() {
        let f = fleet(2, "ssh");
        let actions = plan(Some(&f), &BTreeMap::new(), &names(&["decky-01", "old-thing"]));
        assert_eq!(
            actions,
            [
                Action::RemoveStray("old-thing".into()),
                Action::Adopt("decky-01".into()),
                Action::Create("decky-02".into()),
            ]
        );
    }

    #[test]
    fn no_desired_fleet_removes_everything() {
        let f = fleet(1, "ssh");
        let actions = plan(None, &running(&f), &names(&["decky-01", "x"]));
        assert_eq!(
            actions,
            [Action::Remove("decky-01".into()), Action::RemoveStray("x".into())]
        );
    }
}
