//! A decky's network: its namespace, its link on the host NIC (named `eth0`
//! inside), address, default route and sysctls. Creating one is all or
//! nothing: on any error the half-made namespace is removed again.

use std::net::Ipv4Addr;

use crate::NetError;
use crate::error::{Context as _, child_link_error};
use crate::netns::Netns;
use crate::rtnl::{ChildKind, Rtnl};
use crate::sysctl;

/// Everything needed to build one decky's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeckyLink {
    /// Namespace name (`decnet-web01`).
    pub netns: String,
    /// Index of the host NIC in the host's namespace.
    pub parent: u32,
    pub kind: ChildKind,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// `net.ipv4.*` values, applied inside the namespace.
    pub sysctls: Vec<(String, String)>,
}

/// The interface name inside every decky.
pub const DECKY_IFACE: &str = "eth0";

impl DeckyLink {
    /// Creates the namespace and configures it. `host` is a netlink socket in
    /// the host's namespace (where the parent NIC lives); the calling thread
    /// must be in the host's namespace too.
    pub fn create(&self, host: &mut Rtnl) -> Result<Netns, NetError> {
        let ns = Netns::create(&self.netns)?;
        match self.build(host, &ns) {
            Ok(()) => Ok(ns),
            Err(e) => {
                drop(ns);
                let _ = Netns::delete(&self.netns);
                Err(e)
            }
        }
    }

    fn build(&self, host: &mut Rtnl, ns: &Netns) -> Result<(), NetError> {
        let mac = match self.kind {
            ChildKind::Macvlan => Some(self.mac),
            ChildKind::Ipvlan => None,
        };
        host.add_child(self.kind, self.parent, DECKY_IFACE, mac, Some(ns))
            .map_err(|e| {
                child_link_error(
                    self.kind,
                    || format!("create {} link for netns {}", self.kind, self.netns),
                    e,
                )
            })?;
        let guard = ns.enter()?;
        let inside = self.configure_inside();
        guard.leave()?;
        inside
    }

    /// Runs in the decky's namespace.
    fn configure_inside(&self) -> Result<(), NetError> {
        let what = |step: &str| format!("{step} in netns {}", self.netns);
        sysctl::apply(self.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let mut rtnl = Rtnl::new().op(|| what("open netlink"))?;
        let lo = rtnl
            .link("lo")
            .op(|| what("find lo"))?
            .ok_or_else(|| NetError::NoSuchInterface("lo".into()))?;
        rtnl.set_up(lo.index).op(|| what("bring lo up"))?;
        let eth = rtnl
            .link(DECKY_IFACE)
            .op(|| what("find eth0"))?
            .ok_or_else(|| NetError::NoSuchInterface(format!("{DECKY_IFACE} in {}", self.netns)))?;
        rtnl.add_address(eth.index, self.ip, self.prefix)
            .op(|| what(&format!("add {}/{}", self.ip, self.prefix)))?;
        rtnl.set_up(eth.index).op(|| what("bring eth0 up"))?;
        rtnl.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(self.gateway), eth.index)
            .op(|| what(&format!("add default route via {}", self.gateway)))?;
        Ok(())
    }

    /// Whether an existing namespace already carries this configuration (an
    /// `eth0` of the right kind with the MAC, the address, up, and the default
    /// route via the gateway on it), so that a restarted engine can adopt it.
    /// Re-applies the sysctls, which is cheap and idempotent.
    pub fn matches(&self, ns: &Netns) -> Result<bool, NetError> {
        let guard = ns.enter()?;
        let result = (|| {
            let what = |step: &str| format!("{step} in netns {}", self.netns);
            let mut rtnl = Rtnl::new().op(|| what("open netlink"))?;
            let Some(eth) = rtnl.link(DECKY_IFACE).op(|| what("find eth0"))? else {
                return Ok(false);
            };
            let kind_ok = eth.kind.as_deref() == Some(self.kind.as_str());
            let mac_ok = self.kind == ChildKind::Ipvlan || eth.mac == Some(self.mac);
            let addrs = rtnl.addresses(eth.index).op(|| what("list addresses"))?;
            let routes = rtnl.default_routes().op(|| what("list routes"))?;
            let route_ok = routes == [(Some(self.gateway), Some(eth.index))];
            let ok = kind_ok && mac_ok && eth.up && addrs == [(self.ip, self.prefix)] && route_ok;
            if ok {
                sysctl::apply(self.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
            } else {
                tracing::info!(
                    message = "An existing decky namespace does not match its configuration.",
                    netns = %self.netns,
                    kind = eth.kind.as_deref().unwrap_or("none"),
                    kind_ok,
                    mac_ok,
                    up = eth.up,
                    addresses = ?addrs,
                    default_routes = ?routes
                );
            }
            Ok(ok)
        })();
        guard.leave()?;
        result
    }

    /// Removes the namespace `netns` of a decky: first its `eth0`, from inside
    /// (so its MAC and address leave the LAN at once, even while something
    /// still holds the namespace open), then the name. Returns whether the
    /// namespace existed. Runs on a thread that may enter namespaces.
    pub fn remove(netns: &str) -> Result<bool, NetError> {
        if let Some(ns) = Netns::open(netns)? {
            let guard = ns.enter()?;
            let deleted = (|| {
                let what = |step: &str| format!("{step} in netns {netns}");
                let mut rtnl = Rtnl::new().op(|| what("open netlink"))?;
                if let Some(eth) = rtnl.link(DECKY_IFACE).op(|| what("find eth0"))? {
                    rtnl.delete_link(eth.index).op(|| what("delete eth0"))?;
                }
                Ok(())
            })();
            guard.leave()?;
            deleted?;
        }
        Netns::delete(netns)
    }
}
