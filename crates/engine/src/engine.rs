//! The engine: holds the desired fleet and the running deckies, and converges
//! one to the other on deploy, teardown and start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet_core::fleet::{DeckySpec, FleetSpec, LinkDriver, Mode};
use decnet_emu_sdk::{CaptureLimits, Captures, Limits};
use decnet_events::Emitter;
use decnet_fingerprint::Shaper;
use decnet_net::{
    ChildKind, DeckyLink, DeckyNet, NetError, Netns, NetnsExecutor, Rtnl, arp, child_link_error, hairpin,
};
use decnet_store::IngestCounters;
use futures_util::future::join_all;
use tokio::sync::Mutex;

use crate::config::EngineConfig;
use crate::hosting::{Host, Lan, Services};
use crate::reconcile::{Action, NetIdentity, Running, plan};
use crate::registry::Registry;
use crate::sinks::EventSinks;
use crate::state;
use crate::status::{
    DeckyState, DeckyStatus, DeployReport, EngineStatus, Failure, HairpinStatus, ShapingState, TeardownReport,
    TeardownRequest,
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
    /// The fleet's syslog target and log file follow each deploy.
    sinks: Option<Arc<EventSinks>>,
    /// The store's ingester, for status.
    ingest: Option<Arc<IngestCounters>>,
    /// The OS-personality packet shaper; `Err`: why deckies go unshaped.
    shaper: Result<Arc<Shaper>, String>,
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
    /// `Err`: why its packets are not shaped to its personality.
    shaped: Result<(), String>,
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
        let captures = Captures::new(&config.state_dir, CaptureLimits::default());
        let state_dir = config.state_dir.clone();
        // Namespace work waits on the kernel (RCU, mounts) more than it computes.
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get() * 2)
            .clamp(4, 8);
        Self {
            config,
            sinks: None,
            ingest: None,
            shaper: Err("the packet shaper was not loaded".into()),
            executor: NetnsExecutor::start(threads),
            host: Host {
                registry: Arc::new(registry),
                emitter,
                limits,
                captures,
                state_dir: Some(state_dir),
            },
            started: Instant::now(),
            inner: Mutex::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Lets deploys configure the event sinks (the fleet's log target and file).
    pub fn with_sinks(mut self, sinks: Arc<EventSinks>) -> Self {
        self.sinks = Some(sinks);
        self
    }

    /// Shapes every decky's packets to its OS personality (or says why not).
    pub fn with_shaper(mut self, shaper: Result<Arc<Shaper>, String>) -> Self {
        self.shaper = shaper;
        self
    }

    /// Reports the store's ingestion in status.
    pub fn with_ingest(mut self, counters: Arc<IngestCounters>) -> Self {
        self.ingest = Some(counters);
        self
    }

    async fn apply_sinks(&self, fleet: Option<&FleetSpec>) -> Result<(), EngineError> {
        match &self.sinks {
            Some(sinks) => sinks.apply(fleet).await.map_err(EngineError::BadInput),
            None => Ok(()),
        }
    }

    /// At start-up: serve the persisted desired fleet again, adopting the
    /// namespaces that survived (if they still match) and removing leftovers
    /// nothing wants. The deckies it must create (after a reboot: all of
    /// them) are ARP-probed first; one whose address something else now
    /// answers for is not deployed and marked failed.
    pub async fn recover(&self) -> Result<DeployReport, EngineError> {
        // Locked first: the control socket already listens, and a status
        // request must wait for the restored fleet, not see none.
        let mut inner = self.inner.lock().await;
        let desired = state::load(&self.config.fleet_path())?;
        if let Err(error) = self.apply_sinks(desired.as_ref()).await {
            tracing::error!(message = "The fleet's log target could not start; events stay in the local log.", %error);
        }
        inner.desired = desired;
        self.converge(&mut inner, None).await
    }

    /// Makes `fleet` the desired fleet and converges to it.
    pub async fn deploy(&self, fleet: FleetSpec) -> Result<DeployReport, EngineError> {
        check_fleet(&fleet)?;
        let mut inner = self.inner.lock().await;
        let started = Instant::now();
        let busy = self.validate(&fleet, &inner).await?;
        self.apply_sinks(Some(&fleet)).await?;
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
        // A decky that could not be removed fails the teardown (one that is
        // still wanted and could not be built is a matter for status).
        let wanted = |name: &str| inner.desired.as_ref().is_some_and(|f| f.decky(name).is_some());
        if let Some(failure) = report.failed.iter().find(|f| !wanted(&f.decky)) {
            return Err(EngineError::Net(NetError::io(
                format!("remove {}", failure.decky),
                std::io::Error::other(failure.reason.clone()),
            )));
        }
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
                let mut status = decky_status(&self.config, spec, state, services);
                status.shaping = inner.deckies.get(&spec.name).map(|d| match &d.shaped {
                    Ok(()) => ShapingState::Shaped,
                    Err(reason) => ShapingState::Unshaped { reason: reason.clone() },
                });
                status
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
            bus: self.sinks.as_ref().map(|s| s.bus().stats()),
            store: self.ingest.as_ref().map(|c| c.stats()),
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
        if interface == "lo" || interface == self.config.hairpin_name() || interface == self.config.probe_link_name() {
            return Err(EngineError::BadInput(format!("`{interface}` cannot carry deckies")));
        }
        // macvlan and ipvlan children cannot share a parent NIC: changing the
        // driver needs the running fleet gone first.
        if let Some(other) = inner
            .deckies
            .values()
            .find(|d| d.running.identity.driver != fleet.driver)
        {
            return Err(EngineError::BadInput(format!(
                "the running deckies (e.g. {}) use {} links, and {} links cannot share a parent NIC with them; \
                 remove the running fleet first (`decnet teardown --all`), then deploy again",
                other.running.spec.name, other.running.identity.driver, fleet.driver
            )));
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
        let parent = self.parent(&fleet.interface.clone().unwrap_or_default()).await?;
        let mut answered = self
            .probe(fleet, &parent, fresh.iter().chain(&candidates).copied().collect())
            .await?;
        let busy: BTreeSet<Ipv4Addr> = candidates
            .iter()
            .filter(|ip| answered.contains_key(ip))
            .copied()
            .collect();
        // A namespace of this instance that survived (to be adopted) answers
        // for its own address with its own MAC: that is no conflict.
        let survivors: BTreeSet<String> = Netns::list(&self.config.netns_prefix())?.into_iter().collect();
        answered.retain(|ip, mac| {
            fresh.contains(ip)
                && !fleet
                    .deckies
                    .iter()
                    .any(|d| d.ip == *ip && d.mac.0 == *mac && survivors.contains(&self.config.netns_name(&d.name)))
        });
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
    /// For a macvlan fleet the probes go out of a temporary bridge-mode
    /// macvlan child, so the NIC's other bridge-mode children answer too.
    async fn probe(
        &self,
        fleet: &FleetSpec,
        parent: &Parent,
        targets: Vec<Ipv4Addr>,
    ) -> Result<BTreeMap<Ipv4Addr, [u8; 6]>, EngineError> {
        if targets.is_empty() {
            return Ok(BTreeMap::new());
        }
        let (index, mac) = (parent.index, parent.mac);
        let driver = fleet.driver;
        let probe_link = self.config.probe_link_name();
        let (gap, wait) = (Duration::from_millis(50), Duration::from_millis(250));
        Ok(self
            .executor
            .run(None, move || match driver {
                LinkDriver::Macvlan => arp::probe_from_child(index, &probe_link, &targets, gap, wait),
                // ipvlan children share the parent's MAC: answers reach the parent.
                LinkDriver::Ipvlan => arp::probe(index, mac, &targets, gap, wait),
            })
            .await?)
    }

    /// Takes the running fleet to `inner.desired`. `busy`: hairpin candidates
    /// already probed and found taken, when a deploy has validated (and
    /// ARP-probed) the fleet; `None` (start-up, teardown): the deckies to
    /// create are probed here. A decky that cannot be built, removed or
    /// probed is reported as failed; the others go on.
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

        let mut creates: Vec<(&DeckySpec, Built)> = Vec::new();
        let mut adopts: Vec<&DeckySpec> = Vec::new();
        for action in &actions {
            match action {
                Action::Remove(name) | Action::RemoveStray(name) => match self.remove(inner, name).await {
                    Ok(()) => report.removed.push(name.clone()),
                    Err(e) => fail(&mut report, inner, name, format!("removing it failed: {e}")),
                },
                Action::Recreate(name) => match self.remove(inner, name).await {
                    Ok(()) => creates.push((spec_of(&fleet, name), Built::Recreated)),
                    Err(e) => fail(
                        &mut report,
                        inner,
                        name,
                        format!("removing it to rebuild it failed: {e}"),
                    ),
                },
                Action::Create(name) => creates.push((spec_of(&fleet, name), Built::Created)),
                Action::Adopt(name) => adopts.push(spec_of(&fleet, name)),
                Action::Rebind(name) => {
                    if let Some(mut d) = inner.deckies.remove(name) {
                        d.services.stop().await;
                        let spec = spec_of(&fleet, name).clone();
                        let shaped = self.shape(&spec, &d.netns).await;
                        let fleet = fleet.as_ref().expect("rebind implies a fleet");
                        let services = self.start_services(fleet, &spec, &d.netns).await;
                        let running = Running {
                            identity: NetIdentity::of(fleet, &spec),
                            spec,
                        };
                        inner.deckies.insert(
                            name.clone(),
                            RunningDecky {
                                running,
                                netns: d.netns,
                                services,
                                shaped,
                            },
                        );
                    }
                    report.rebound.push(name.clone());
                }
                Action::Keep(name) => report.unchanged.push(name.clone()),
            }
        }

        let Some(fleet) = fleet.as_ref() else {
            if let Err(e) = self.remove_hairpin(inner).await {
                tracing::warn!(message = "Removing the host hairpin failed.", error = %e);
                report.warnings.push(format!("removing the host hairpin failed: {e}"));
            }
            return Ok(report);
        };
        if creates.is_empty() && adopts.is_empty() && inner.hairpin.is_some() {
            return Ok(report);
        }
        let parent = match self.parent(fleet.interface.as_deref().unwrap_or_default()).await {
            Ok(parent) => parent,
            Err(e) => {
                for spec in creates.iter().map(|(s, _)| *s).chain(adopts.iter().copied()) {
                    fail(&mut report, inner, &spec.name, e.to_string());
                }
                return Ok(report);
            }
        };
        let deckies = fleet.deckies.len();
        match self
            .executor
            .run(None, move || decnet_net::sysctl::size_neighbour_tables(deckies))
            .await
        {
            Ok(raised) if !raised.is_empty() => {
                tracing::info!(message = "Raised the host's neighbour-table limits for the fleet.", sysctls = ?raised);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(message = "Raising the host's neighbour-table limits failed.", error = %e);
                report
                    .warnings
                    .push(format!("raising the host's neighbour-table limits failed: {e}"));
            }
        }
        // A hairpin of the other driver (or on another NIC) would keep every
        // decky from being built: out of the way first.
        if let Err(e) = self.clear_foreign_hairpin(inner, fleet, &parent).await {
            tracing::warn!(message = "Removing an unfit host hairpin failed.", error = %e);
            report
                .warnings
                .push(format!("removing an unfit host hairpin failed: {e}"));
        }

        // Survivors: adopted if they still match, else removed and built again.
        let checked = join_all(adopts.iter().map(|spec| self.check_survivor(fleet, spec, &parent))).await;
        let mut adopted: Vec<(&DeckySpec, Netns)> = Vec::new();
        for (spec, result) in adopts.iter().zip(checked) {
            match result {
                Ok(Some(ns)) => adopted.push((spec, ns)),
                Ok(None) => creates.push((spec, Built::Recreated)),
                Err(e) => fail(
                    &mut report,
                    inner,
                    &spec.name,
                    format!("checking its namespace failed: {e}"),
                ),
            }
        }

        // Never take an address something else answers for. A deploy has
        // probed its new addresses already; otherwise probe them here.
        if busy.is_none() && !creates.is_empty() {
            let ours: BTreeSet<Ipv4Addr> = inner
                .deckies
                .values()
                .map(|d| d.running.spec.ip)
                .chain(adopted.iter().map(|(s, _)| s.ip))
                .collect();
            let targets: Vec<Ipv4Addr> = creates
                .iter()
                .map(|(s, _)| s.ip)
                .filter(|ip| !ours.contains(ip))
                .collect();
            let answered = self.probe(fleet, &parent, targets).await;
            let mut kept = Vec::new();
            for (spec, how) in creates {
                match &answered {
                    Ok(answered) => match answered.get(&spec.ip) {
                        Some(mac) => fail(
                            &mut report,
                            inner,
                            &spec.name,
                            format!(
                                "address {} already in use on the LAN (answered by {}); not deployed, so no host is impersonated",
                                spec.ip,
                                decnet_core::fleet::MacAddr(*mac)
                            ),
                        ),
                        None => kept.push((spec, how)),
                    },
                    Err(e) => fail(
                        &mut report,
                        inner,
                        &spec.name,
                        format!("probing its address {} failed: {e}", spec.ip),
                    ),
                }
            }
            creates = kept;
        }

        let building = Instant::now();
        let (created, adopted_back) = futures_util::future::join(
            join_all(creates.iter().map(|(spec, _)| self.build(fleet, spec, &parent))),
            join_all(adopted.into_iter().map(|(spec, ns)| self.serve(fleet, spec, ns))),
        )
        .await;
        tracing::info!(
            message = "Built deckies.",
            deckies = created.len() + adopted_back.len(),
            ms = building.elapsed().as_millis() as u64
        );
        for ((spec, how), result) in creates.iter().zip(created) {
            match result {
                Ok(decky) => {
                    inner.deckies.insert(spec.name.clone(), decky);
                    match how {
                        Built::Created => report.created.push(spec.name.clone()),
                        Built::Recreated => report.recreated.push(spec.name.clone()),
                    }
                }
                Err(e) => fail(&mut report, inner, &spec.name, e.to_string()),
            }
        }
        for decky in adopted_back {
            report.adopted.push(decky.running.spec.name.clone());
            inner.deckies.insert(decky.running.spec.name.clone(), decky);
        }
        let hairpin = Instant::now();
        match self.ensure_hairpin(inner, fleet, &parent, busy).await {
            Ok(()) => tracing::info!(message = "Hairpin ready.", ms = hairpin.elapsed().as_millis() as u64),
            Err(e) => {
                tracing::warn!(message = "The host hairpin could not be made; the host cannot reach its deckies.", error = %e);
                report.warnings.push(format!(
                    "the host hairpin could not be made (the host cannot reach its deckies): {e}"
                ));
            }
        }
        Ok(report)
    }

    /// The network of a decky.
    fn link(&self, fleet: &FleetSpec, spec: &DeckySpec, parent: &Parent) -> DeckyLink {
        DeckyLink {
            netns: self.config.netns_name(&spec.name),
            parent: parent.index,
            kind: child_kind(fleet.driver),
            mac: spec.mac.0,
            ip: spec.ip,
            prefix: fleet.subnet.prefix_len(),
            gateway: fleet.gateway,
            sysctls: spec.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// A surviving namespace of a decky: `Some` if it matches the decky's
    /// network and can be adopted; `None` if it did not (it is removed).
    async fn check_survivor(
        &self,
        fleet: &FleetSpec,
        spec: &DeckySpec,
        parent: &Parent,
    ) -> Result<Option<Netns>, EngineError> {
        let link = self.link(fleet, spec, parent);
        Ok(self
            .executor
            .run(None, move || {
                let Some(ns) = Netns::open(&link.netns)? else {
                    return Ok(None);
                };
                if link.matches(&ns)? {
                    return Ok(Some(ns));
                }
                drop(ns);
                tracing::info!(message = "Rebuilding a decky whose namespace does not match.", netns = %link.netns);
                DeckyLink::remove(&link.netns)?;
                Ok(None)
            })
            .await?)
    }

    /// Builds one decky's network and starts its services.
    async fn build(&self, fleet: &FleetSpec, spec: &DeckySpec, parent: &Parent) -> Result<RunningDecky, EngineError> {
        let link = self.link(fleet, spec, parent);
        let netns = self
            .executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                link.create(&mut rtnl)
            })
            .await?;
        Ok(self.serve(fleet, spec, netns).await)
    }

    /// Starts serving a decky whose network is ready.
    async fn serve(&self, fleet: &FleetSpec, spec: &DeckySpec, netns: Netns) -> RunningDecky {
        let netns = Arc::new(netns);
        let shaped = self.shape(spec, &netns).await;
        let services = self.start_services(fleet, spec, &netns).await;
        RunningDecky {
            running: Running {
                identity: NetIdentity::of(fleet, spec),
                spec: spec.clone(),
            },
            netns,
            services,
            shaped,
        }
    }

    /// Attaches the packet shaper inside the decky, before its services
    /// answer anyone. A decky without shaping still serves (with Linux's
    /// stack), and status says so.
    async fn shape(&self, spec: &DeckySpec, netns: &Arc<Netns>) -> Result<(), String> {
        let (ip, record) = (spec.ip, decnet_fingerprint::record(spec));
        if !decnet_fingerprint::shapes_anything(&record) {
            // Its personality is the kernel's stack: nothing to attach (and
            // a rebind drops what an earlier personality attached).
            if let Ok(shaper) = &self.shaper {
                shaper.detach(ip);
            }
            return Ok(());
        }
        let shaper = Arc::clone(self.shaper.as_ref()?);
        let result = self
            .executor
            .run(Some(Arc::clone(netns)), move || {
                Ok(shaper.attach("eth0", ip, &record).map_err(|e| e.to_string()))
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        if let Err(reason) = &result {
            tracing::warn!(message = "A decky's packets are not shaped to its OS personality.", decky = %spec.name, %reason);
        }
        result
    }

    async fn start_services(&self, fleet: &FleetSpec, spec: &DeckySpec, netns: &Arc<Netns>) -> Services {
        let net = DeckyNet::new(Arc::clone(netns), self.executor.clone(), spec.ip);
        Services::start(spec, Lan::of(fleet), net, &self.host).await
    }

    /// Stops a decky's services (every session has ended when this returns),
    /// then removes its link, at once, and its namespace (and hairpin route).
    async fn remove(&self, inner: &mut Inner, name: &str) -> Result<(), EngineError> {
        let ip = inner.deckies.get(name).map(|d| d.running.spec.ip);
        if let Some(mut decky) = inner.deckies.remove(name) {
            if let Ok(shaper) = &self.shaper {
                shaper.detach(decky.running.spec.ip);
            }
            decky.services.stop().await;
            drop(decky.netns);
        }
        let netns = self.config.netns_name(name);
        let hairpin = inner.hairpin.clone();
        self.executor
            .run(None, move || {
                DeckyLink::remove(&netns)?;
                if let (Some(h), Some(ip)) = (hairpin, ip) {
                    let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                    hairpin::unroute(&mut rtnl, h.index, ip)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Removes the hairpin if it is not a child of the fleet's kind on the
    /// fleet's NIC.
    async fn clear_foreign_hairpin(
        &self,
        inner: &mut Inner,
        fleet: &FleetSpec,
        parent: &Parent,
    ) -> Result<(), EngineError> {
        let name = self.config.hairpin_name();
        let kind = child_kind(fleet.driver);
        let index = parent.index;
        let removed = self
            .executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                hairpin::remove_unless(&mut rtnl, &name, kind, index)
            })
            .await?;
        if removed {
            tracing::info!(message = "Removed a host hairpin of another kind or NIC.");
            inner.hairpin = None;
        }
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
                    None => self
                        .probe(fleet, parent, candidates.clone())
                        .await?
                        .into_keys()
                        .collect(),
                };
                match candidates.into_iter().find(|ip| !busy.contains(ip)) {
                    Some(ip) => ip,
                    None => {
                        return Err(EngineError::BadInput(
                            "no free address for it at the top of the subnet".into(),
                        ));
                    }
                }
            }
        };
        let name = self.config.hairpin_name();
        let routes: Vec<Ipv4Addr> = inner.deckies.values().map(|d| d.running.spec.ip).collect();
        let parent_index = parent.index;
        let kind = child_kind(fleet.driver);
        let link_name = name.clone();
        let index = self
            .executor
            .run(None, move || {
                let mut rtnl = Rtnl::new().map_err(|e| NetError::io("open netlink", e))?;
                let index = hairpin::ensure(&mut rtnl, &link_name, kind, parent_index, ip)?;
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

/// How a decky to build came to be built.
#[derive(Debug, Clone, Copy)]
enum Built {
    Created,
    Recreated,
}

/// Records that `decky` could not be served, in the report and for status.
fn fail(report: &mut DeployReport, inner: &mut Inner, decky: &str, reason: String) {
    tracing::error!(message = "A decky failed.", %decky, %reason);
    report.failed.push(Failure {
        decky: decky.to_string(),
        reason: reason.clone(),
    });
    inner.failed.insert(decky.to_string(), reason);
}

fn child_kind(driver: LinkDriver) -> ChildKind {
    match driver {
        LinkDriver::Macvlan => ChildKind::Macvlan,
        LinkDriver::Ipvlan => ChildKind::Ipvlan,
    }
}

/// Re-checks what the planner guarantees, since a deploy may come from any
/// client of the control API: decky names valid and unique, addresses and
/// MACs unique, every address inside the subnet and not the gateway's.
fn check_fleet(fleet: &FleetSpec) -> Result<(), EngineError> {
    if fleet.mode == Mode::Swarm {
        return Err(EngineError::BadInput(
            "swarm mode shards deckies over enrolled sensors, which this engine cannot do yet: deploy with --mode unihost"
                .into(),
        ));
    }
    if let Some(why) = fleet.log_target.as_ref().and_then(|t| t.plaintext_refusal()) {
        return Err(EngineError::BadInput(why));
    }
    let mut names = BTreeSet::new();
    let mut ips = BTreeMap::new();
    let mut macs = BTreeMap::new();
    let bad = |text: String| Err(EngineError::BadInput(format!("invalid fleet: {text}")));
    for d in &fleet.deckies {
        let valid_name = !d.name.is_empty()
            && d.name.len() <= 63
            && d.name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && d.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return bad(format!("`{}` is not a valid decky name", d.name));
        }
        if !names.insert(d.name.as_str()) {
            return bad(format!("two deckies are named `{}`", d.name));
        }
        if let Some(other) = ips.insert(d.ip, d.name.as_str()) {
            return bad(format!("deckies `{other}` and `{}` both have address {}", d.name, d.ip));
        }
        if let Some(other) = macs.insert(d.mac, d.name.as_str()) {
            return bad(format!("deckies `{other}` and `{}` both have MAC {}", d.name, d.mac));
        }
        if !fleet.subnet.contains(&d.ip) || d.ip == fleet.gateway {
            return bad(format!(
                "address {} of `{}` is outside {} or the gateway's",
                d.ip, d.name, fleet.subnet
            ));
        }
    }
    Ok(())
}

/// Fails with a clear message when the kernel has no ipvlan, or the parent
/// carries macvlan links, by creating (and at once deleting) a probe link on it.
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
        Err(e) => Err(child_link_error(
            ChildKind::Ipvlan,
            || format!("probe ipvlan support with {probe}"),
            e,
        )),
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
        personality: spec.personality.clone(),
        shaping: None,
        distro: spec.distro.clone(),
        netns: config.netns_name(&spec.name),
        state,
        services,
    }
}
