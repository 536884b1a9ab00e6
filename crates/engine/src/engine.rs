//! The engine: holds the desired fleet and the running deckies, and converges
//! one to the other on deploy, teardown and start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet_core::fleet::{DeckySpec, FleetSpec, LinkDriver};
use decnet_emu_sdk::Limits;
use decnet_events::Emitter;
use decnet_net::{ChildKind, DeckyLink, DeckyNet, NetError, Netns, NetnsExecutor, Rtnl, arp, hairpin};
use futures_util::future::join_all;
use tokio::sync::Mutex;

use crate::config::EngineConfig;
use crate::hosting::{Host, Services};
use crate::reconcile::{Action, NetIdentity, Running, plan};
use crate::registry::Registry;
use crate::state;
use crate::status::{
    DeckyState, DeckyStatus, DeployReport, EngineStatus, Failure, HairpinStatus, TeardownReport, TeardownRequest,
};

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request cannot work on this host as asked (unknown interface,
    /// subnet mismatch, address conflict …): the operator must change it.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("state file: {0}")]
    State(#[from] std::io::Error),
}

impl EngineError {
    pub fn is_bad_input(&self) -> bool {
        match self {
            EngineError::BadInput(_) => true,
            EngineError::Net(e) => matches!(
                e,
                NetError::NoSuchInterface(_)
                    | NetError::Unsupported(_)
                    | NetError::Conflict(_)
                    | NetError::Privilege { .. }
            ),
            EngineError::State(_) => false,
        }
    }
}

pub struct Engine {
    config: EngineConfig,
    executor: NetnsExecutor,
    host: Host,
    started: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    desired: Option<FleetSpec>,
    deckies: BTreeMap<String, RunningDecky>,
    /// Desired deckies that could not be built, with the reason.
    failed: BTreeMap<String, String>,
    hairpin: Option<Hairpin>,
}

struct RunningDecky {
    running: Running,
    netns: Arc<Netns>,
    services: Services,
}

#[derive(Debug, Clone)]
struct Hairpin {
    name: String,
    ip: Ipv4Addr,
    index: u32,
}

/// The host NIC of a fleet, as the kernel knows it.
struct Parent {
    index: u32,
    mac: [u8; 6],
}

impl Engine {
    pub fn new(config: EngineConfig, registry: Registry, emitter: Emitter, limits: Limits) -> Self {
        // Namespace work waits on the kernel (RCU, mounts) more than it computes.
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get() * 2)
            .clamp(4, 8);
        Self {
            config,
            executor: NetnsExecutor::start(threads),
            host: Host {
                registry: Arc::new(registry),
                emitter,
                limits,
            },
            started: Instant::now(),
            inner: Mutex::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// At start-up: serve the persisted desired fleet again, adopting the
    /// namespaces that survived and removing leftovers nothing wants.
    pub async fn recover(&self) -> Result<DeployReport, EngineError> {
        let desired = state::load(&self.config.fleet_path())?;
        let mut inner = self.inner.lock().await;
        inner.desired = desired;
        self.converge(&mut inner, None).await
    }

    /// Makes `fleet` the desired fleet and converges to it.
    pub async fn deploy(&self, fleet: FleetSpec) -> Result<DeployReport, EngineError> {
        let mut inner = self.inner.lock().await;
        let started = Instant::now();
        let busy = self.validate(&fleet, &inner).await?;
        let validated = started.elapsed();
        state::save(&self.config.fleet_path(), Some(&fleet))?;
        inner.desired = Some(fleet);
        let report = self.converge(&mut inner, Some(busy)).await?;
        tracing::info!(
            message = "Deployed.",
            validate_ms = validated.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            created = report.created.len(),
            failed = report.failed.len()
        );
        Ok(report)
    }

    /// Removes one decky, or all of them (and the hairpin).
    pub async fn teardown(&self, request: &TeardownRequest) -> Result<TeardownReport, EngineError> {
        let mut inner = self.inner.lock().await;
        let had_hairpin = inner.hairpin.is_some();
        let current = inner.desired.take();
        inner.desired = match (&request.id, current) {
            _ if request.all => None,
            (Some(id), Some(mut fleet)) => {
                fleet.deckies.retain(|d| &d.name != id);
                (!fleet.deckies.is_empty()).then_some(fleet)
            }
            (_, current) => current,
        };
        state::save(&self.config.fleet_path(), inner.desired.as_ref())?;
        let report = self.converge(&mut inner, None).await?;
        Ok(TeardownReport {
            removed: report.removed,
            hairpin_removed: had_hairpin && inner.hairpin.is_none(),
        })
    }

    /// Stops serving (listeners and sessions end); namespaces stay for the
    /// next engine to adopt.
    pub async fn stop(&self) {
        let mut inner = self.inner.lock().await;
        let deckies = std::mem::take(&mut inner.deckies);
        join_all(
            deckies
                .into_values()
                .map(|mut d| async move { d.services.stop().await }),
        )
        .await;
    }

    pub async fn status(&self) -> EngineStatus {
        let inner = self.inner.lock().await;
        let fleet = inner.desired.as_ref();
        let deckies = fleet
            .map(|f| f.deckies.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|spec| {
                let (state, services) = match (inner.deckies.get(&spec.name), inner.failed.get(&spec.name)) {
                    (Some(d), _) => (DeckyState::Running, d.services.status()),
                    (None, Some(reason)) => (DeckyState::Failed { reason: reason.clone() }, Vec::new()),
                    (None, None) => (
                        DeckyState::Failed {
                            reason: "not built".into(),
                        },
                        Vec::new(),
                    ),
                };
                decky_status(&self.config, spec, state, services)
            })
            .collect();
        EngineStatus {
            running: true,
            pid: Some(std::process::id()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            prefix: self.config.prefix.clone(),
            interface: fleet.and_then(|f| f.interface.clone()),
            subnet: fleet.map(|f| f.subnet.to_string()),
            hairpin: inner.hairpin.as_ref().map(|h| HairpinStatus {
                name: h.name.clone(),
                ip: h.ip,
            }),
            events: self.host.emitter.stats(),
            deckies,
        }
    }

    /// Checks a fleet against this host before anything changes.
    /// Returns the hairpin candidates that something on the LAN answered for,
    /// probed together with the fleet's new addresses.
    async fn validate(&self, fleet: &FleetSpec, inner: &Inner) -> Result<BTreeSet<Ipv4Addr>, EngineError> {
        let interface = fleet.interface.clone().ok_or_else(|| {
            EngineError::BadInput("no interface: pass --interface or set `interface =` in [general]".into())
        })?;
        if interface == "lo" || interface == self.config.hairpin_name() {
            return Err(EngineError::BadInput(format!("`{interface}` cannot carry deckies")));
        }
        let subnet = fleet.subnet;
        let ipvlan_probe = (fleet.driver == LinkDriver::Ipvlan).then(|| format!("{}.ipv", self.config.prefix));
        let addresses = self
            .executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                let link = rtnl
                    .link(&interface)
                    .map_err(|e| NetError::io(format!("look up {interface}"), e))?
                    .ok_or_else(|| NetError::NoSuchInterface(interface.clone()))?;
                if let Some(probe) = ipvlan_probe {
                    check_ipvlan(&mut rtnl, link.index, &probe)?;
                }
                rtnl.addresses(link.index)
                    .map_err(|e| NetError::io(format!("list addresses of {interface}"), e))
            })
            .await?;
        if !addresses.is_empty() && !addresses.iter().any(|(ip, _)| subnet.contains(ip)) {
            let have: Vec<String> = addresses.iter().map(|(ip, p)| format!("{ip}/{p}")).collect();
            return Err(EngineError::BadInput(format!(
                "subnet {subnet} does not match interface {} (its addresses: {}); deckies there would be unreachable",
                fleet.interface.as_deref().unwrap_or_default(),
                have.join(", ")
            )));
        }
        // Deckies already running keep their addresses; every new address must be free.
        let ours: BTreeSet<Ipv4Addr> = inner.deckies.values().map(|d| d.running.spec.ip).collect();
        let fresh: Vec<Ipv4Addr> = fleet
            .deckies
            .iter()
            .map(|d| d.ip)
            .filter(|ip| !ours.contains(ip))
            .collect();
        let candidates = hairpin_candidates(fleet);
        let mut answered = self
            .probe(fleet, fresh.iter().chain(&candidates).copied().collect())
            .await?;
        let busy: BTreeSet<Ipv4Addr> = candidates
            .iter()
            .filter(|ip| answered.contains_key(ip))
            .copied()
            .collect();
        answered.retain(|ip, _| fresh.contains(ip));
        let conflicts = answered;
        if !conflicts.is_empty() {
            let list: Vec<String> = conflicts
                .iter()
                .map(|(ip, mac)| format!("{ip} (answered by {})", decnet_core::fleet::MacAddr(*mac)))
                .collect();
            return Err(EngineError::BadInput(format!(
                "address already in use on the LAN: {}; pick other addresses (or --ip-start) so no real host is impersonated",
                list.join(", ")
            )));
        }
        Ok(busy)
    }

    async fn parent(&self, interface: &str) -> Result<Parent, EngineError> {
        let name = interface.to_string();
        Ok(self
            .executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                let link = rtnl
                    .link(&name)
                    .map_err(|e| NetError::io(format!("look up {name}"), e))?
                    .ok_or_else(|| NetError::NoSuchInterface(name.clone()))?;
                Ok(Parent {
                    index: link.index,
                    mac: link.mac.unwrap_or_default(),
                })
            })
            .await?)
    }

    /// ARP-probes `targets` on the fleet's interface; returns who answered.
    async fn probe(
        &self,
        fleet: &FleetSpec,
        targets: Vec<Ipv4Addr>,
    ) -> Result<BTreeMap<Ipv4Addr, [u8; 6]>, EngineError> {
        if targets.is_empty() {
            return Ok(BTreeMap::new());
        }
        let parent = self.parent(fleet.interface.as_deref().unwrap_or_default()).await?;
        Ok(self
            .executor
            .run(None, move || {
                arp::probe(
                    parent.index,
                    parent.mac,
                    &targets,
                    Duration::from_millis(50),
                    Duration::from_millis(250),
                )
            })
            .await?)
    }

    /// Takes the running fleet to `inner.desired`. `busy`: hairpin candidates
    /// already probed and found taken (`None`: probe them here if needed).
    async fn converge(&self, inner: &mut Inner, busy: Option<BTreeSet<Ipv4Addr>>) -> Result<DeployReport, EngineError> {
        let mut report = DeployReport::default();
        let namespaces: BTreeSet<String> = Netns::list(&self.config.netns_prefix())?
            .iter()
            .filter_map(|n| self.config.decky_of_netns(n).map(String::from))
            .collect();
        let running: BTreeMap<String, Running> = inner
            .deckies
            .iter()
            .map(|(k, v)| (k.clone(), v.running.clone()))
            .collect();
        let fleet = inner.desired.clone();
        let actions = plan(fleet.as_ref(), &running, &namespaces);
        inner.failed.clear();

        let mut to_build: Vec<(&DeckySpec, bool)> = Vec::new();
        for action in &actions {
            match action {
                Action::Remove(name) | Action::RemoveStray(name) => {
                    self.remove(inner, name).await?;
                    report.removed.push(name.clone());
                }
                Action::Recreate(name) => {
                    self.remove(inner, name).await?;
                    report.recreated.push(name.clone());
                    to_build.push((spec_of(&fleet, name), false));
                }
                Action::Create(name) => {
                    report.created.push(name.clone());
                    to_build.push((spec_of(&fleet, name), false));
                }
                Action::Adopt(name) => {
                    report.adopted.push(name.clone());
                    to_build.push((spec_of(&fleet, name), true));
                }
                Action::Rebind(name) => {
                    if let Some(mut d) = inner.deckies.remove(name) {
                        d.services.stop().await;
                        let spec = spec_of(&fleet, name).clone();
                        let services = self.start_services(&spec, &d.netns).await;
                        let running = Running {
                            identity: NetIdentity::of(fleet.as_ref().expect("rebind implies a fleet"), &spec),
                            spec,
                        };
                        inner.deckies.insert(
                            name.clone(),
                            RunningDecky {
                                running,
                                netns: d.netns,
                                services,
                            },
                        );
                    }
                    report.rebound.push(name.clone());
                }
                Action::Keep(name) => report.unchanged.push(name.clone()),
            }
        }

        let Some(fleet) = fleet.as_ref() else {
            self.remove_hairpin(inner).await?;
            return Ok(report);
        };
        if to_build.is_empty() && inner.hairpin.is_some() {
            return Ok(report);
        }
        let parent = self.parent(fleet.interface.as_deref().unwrap_or_default()).await?;
        let deckies = fleet.deckies.len();
        let raised = self
            .executor
            .run(None, move || decnet_net::sysctl::size_neighbour_tables(deckies))
            .await?;
        if !raised.is_empty() {
            tracing::info!(message = "Raised the host's neighbour-table limits for the fleet.", sysctls = ?raised);
        }
        let building = Instant::now();
        let built = join_all(
            to_build
                .iter()
                .map(|(spec, adopt)| self.build(fleet, spec, &parent, *adopt)),
        )
        .await;
        tracing::info!(
            message = "Built deckies.",
            deckies = built.len(),
            ms = building.elapsed().as_millis() as u64
        );
        for ((spec, _), result) in to_build.iter().zip(built) {
            match result {
                Ok(decky) => {
                    inner.deckies.insert(spec.name.clone(), decky);
                }
                Err(e) => {
                    tracing::error!(message = "Building a decky failed.", decky = %spec.name, error = %e);
                    report.failed.push(Failure {
                        decky: spec.name.clone(),
                        reason: e.to_string(),
                    });
                    inner.failed.insert(spec.name.clone(), e.to_string());
                }
            }
        }
        let hairpin = Instant::now();
        self.ensure_hairpin(inner, fleet, &parent, busy).await?;
        tracing::info!(message = "Hairpin ready.", ms = hairpin.elapsed().as_millis() as u64);
        Ok(report)
    }

    /// Builds (or adopts) one decky's network and starts its services.
    async fn build(
        &self,
        fleet: &FleetSpec,
        spec: &DeckySpec,
        parent: &Parent,
        adopt: bool,
    ) -> Result<RunningDecky, EngineError> {
        let link = DeckyLink {
            netns: self.config.netns_name(&spec.name),
            parent: parent.index,
            kind: match fleet.driver {
                LinkDriver::Macvlan => ChildKind::Macvlan,
                LinkDriver::Ipvlan => ChildKind::Ipvlan,
            },
            mac: spec.mac.0,
            ip: spec.ip,
            prefix: fleet.subnet.prefix_len(),
            gateway: fleet.gateway,
            sysctls: spec.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let netns = self
            .executor
            .run(None, move || {
                if adopt && let Some(ns) = Netns::open(&link.netns)? {
                    if link.matches(&ns)? {
                        return Ok(ns);
                    }
                    drop(ns);
                    Netns::delete(&link.netns)?;
                }
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                link.create(&mut rtnl)
            })
            .await?;
        let netns = Arc::new(netns);
        let services = self.start_services(spec, &netns).await;
        Ok(RunningDecky {
            running: Running {
                identity: NetIdentity::of(fleet, spec),
                spec: spec.clone(),
            },
            netns,
            services,
        })
    }

    async fn start_services(&self, spec: &DeckySpec, netns: &Arc<Netns>) -> Services {
        let net = DeckyNet::new(Arc::clone(netns), self.executor.clone(), spec.ip);
        Services::start(spec, net, &self.host).await
    }

    /// Stops a decky's services and removes its namespace (and hairpin route).
    async fn remove(&self, inner: &mut Inner, name: &str) -> Result<(), EngineError> {
        let ip = inner.deckies.get(name).map(|d| d.running.spec.ip);
        if let Some(mut decky) = inner.deckies.remove(name) {
            decky.services.stop().await;
            drop(decky.netns);
        }
        let netns = self.config.netns_name(name);
        let hairpin = inner.hairpin.clone();
        self.executor
            .run(None, move || {
                if let (Some(h), Some(ip)) = (hairpin, ip) {
                    let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                    hairpin::unroute(&mut rtnl, h.index, ip)?;
                }
                Netns::delete(&netns).map(|_| ())
            })
            .await?;
        Ok(())
    }

    /// The hairpin: the highest free address of the subnet that no decky
    /// uses and nothing answers for; a /32 route to every running decky.
    async fn ensure_hairpin(
        &self,
        inner: &mut Inner,
        fleet: &FleetSpec,
        parent: &Parent,
        busy: Option<BTreeSet<Ipv4Addr>>,
    ) -> Result<(), EngineError> {
        let used: BTreeSet<Ipv4Addr> = fleet.deckies.iter().map(|d| d.ip).collect();
        let usable = |ip: &Ipv4Addr| fleet.subnet.contains(ip) && !used.contains(ip) && *ip != fleet.gateway;
        let current = match &inner.hairpin {
            Some(h) => Some(h.ip),
            // After a restart: the hairpin the previous engine made, if any.
            None => self.existing_hairpin_ip().await?,
        };
        let keep = current.filter(usable);
        let ip = match keep {
            Some(ip) => ip,
            None => {
                self.remove_hairpin(inner).await?;
                let candidates = hairpin_candidates(fleet);
                let busy = match busy {
                    Some(busy) => busy,
                    None => self.probe(fleet, candidates.clone()).await?.into_keys().collect(),
                };
                match candidates.into_iter().find(|ip| !busy.contains(ip)) {
                    Some(ip) => ip,
                    None => {
                        tracing::warn!(
                            message = "No free address for the host hairpin; the host cannot reach its deckies."
                        );
                        return Ok(());
                    }
                }
            }
        };
        let name = self.config.hairpin_name();
        let routes: Vec<Ipv4Addr> = inner.deckies.values().map(|d| d.running.spec.ip).collect();
        let parent_index = parent.index;
        let link_name = name.clone();
        let index = self
            .executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                let index = hairpin::ensure(&mut rtnl, &link_name, parent_index, ip)?;
                for decky in routes {
                    hairpin::route(&mut rtnl, index, decky)?;
                }
                Ok(index)
            })
            .await?;
        inner.hairpin = Some(Hairpin { name, ip, index });
        Ok(())
    }

    /// The /32 address of a hairpin link that exists already.
    async fn existing_hairpin_ip(&self) -> Result<Option<Ipv4Addr>, EngineError> {
        let name = self.config.hairpin_name();
        Ok(self
            .executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                let Some(link) = rtnl
                    .link(&name)
                    .map_err(|e| NetError::io(format!("look up {name}"), e))?
                else {
                    return Ok(None);
                };
                let addrs = rtnl
                    .addresses(link.index)
                    .map_err(|e| NetError::io(format!("list addresses of {name}"), e))?;
                Ok(addrs.into_iter().find(|(_, prefix)| *prefix == 32).map(|(ip, _)| ip))
            })
            .await?)
    }

    async fn remove_hairpin(&self, inner: &mut Inner) -> Result<(), EngineError> {
        let name = self.config.hairpin_name();
        self.executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                hairpin::remove(&mut rtnl, &name).map(|_| ())
            })
            .await?;
        inner.hairpin = None;
        Ok(())
    }
}

/// Fails with a clear message when the kernel has no ipvlan, by creating (and
/// at once deleting) a probe link on the parent.
fn check_ipvlan(rtnl: &mut Rtnl, parent: u32, probe: &str) -> Result<(), NetError> {
    match rtnl.add_child(ChildKind::Ipvlan, parent, probe, None, None) {
        Ok(()) => {
            if let Some(link) = rtnl
                .link(probe)
                .map_err(|e| NetError::io(format!("look up {probe}"), e))?
            {
                rtnl.delete_link(link.index)
                    .map_err(|e| NetError::io(format!("delete {probe}"), e))?;
            }
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => Err(NetError::Unsupported(
            "this kernel has no ipvlan support; use macvlan (drop --ipvlan)".into(),
        )),
        Err(e) => Err(NetError::io("probe ipvlan support", e)),
    }
}

/// Where the hairpin may go: the highest addresses of the subnet that are not
/// a decky's or the gateway.
fn hairpin_candidates(fleet: &FleetSpec) -> Vec<Ipv4Addr> {
    let used: BTreeSet<Ipv4Addr> = fleet.deckies.iter().map(|d| d.ip).collect();
    fleet
        .subnet
        .hosts()
        .rev()
        .filter(|ip| !used.contains(ip) && *ip != fleet.gateway)
        .take(8)
        .collect()
}

fn spec_of<'a>(fleet: &'a Option<FleetSpec>, name: &str) -> &'a DeckySpec {
    fleet
        .as_ref()
        .and_then(|f| f.decky(name))
        .expect("plan only names deckies of the desired fleet for builds")
}

/// A decky's status line (shared with the offline status).
pub(crate) fn decky_status(
    config: &EngineConfig,
    spec: &DeckySpec,
    state: DeckyState,
    services: Vec<crate::status::ServiceStatus>,
) -> DeckyStatus {
    DeckyStatus {
        name: spec.name.clone(),
        ip: spec.ip,
        mac: spec.mac,
        hostname: spec.hostname.clone(),
        os_family: spec.os_family.clone(),
        distro: spec.distro.clone(),
        netns: config.netns_name(&spec.name),
        state,
        services,
    }
}
