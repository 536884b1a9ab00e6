//! A decky's network: its namespace, its link on the host NIC (named `eth0`
//! inside), address, default route and sysctls. Creating one is all or
//! nothing: on any error the half-made namespace is removed again.

use std::net::Ipv4Addr;

use crate::NetError;
use crate::error::Context as _;
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
            .map_err(|e| match (self.kind, e.raw_os_error()) {
                (ChildKind::Ipvlan, Some(nix::libc::EOPNOTSUPP)) => {
                    NetError::Unsupported("this kernel has no ipvlan support; use macvlan (drop --ipvlan)".into())
                }
                _ => NetError::io(format!("create {:?} link for netns {}", self.kind, self.netns), e),
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

    /// Whether an existing namespace already carries this configuration (MAC,
    /// address, link up), so that a restarted engine can adopt it. Re-applies
    /// the sysctls, which is cheap and idempotent.
    pub fn matches(&self, ns: &Netns) -> Result<bool, NetError> {
        let guard = ns.enter()?;
        let result = (|| {
            let mut rtnl = Rtnl::new().op(|| format!("open netlink in netns {}", self.netns))?;
            let Some(eth) = rtnl
                .link(DECKY_IFACE)
                .op(|| format!("find eth0 in netns {}", self.netns))?
            else {
                return Ok(false);
            };
            let mac_ok = self.kind == ChildKind::Ipvlan || eth.mac == Some(self.mac);
            let addrs = rtnl
                .addresses(eth.index)
                .op(|| format!("list addresses in netns {}", self.netns))?;
            let ok = mac_ok && eth.up && addrs.contains(&(self.ip, self.prefix));
            if ok {
                sysctl::apply(self.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
            }
            Ok(ok)
        })();
        guard.leave()?;
        result
    }
}
