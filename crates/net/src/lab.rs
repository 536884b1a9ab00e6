//! The lab: a private LAN on this machine for trying DECNET out and for every
//! test. A veth pair: the host end is the deckies' "NIC" (their macvlan
//! parent), the other end sits in an attacker namespace with its own address,
//! from which scanners and clients reach the deckies. Nothing touches a real
//! interface. The lab's subnet gets an `unreachable` route in the host's
//! namespace: the host then never sends packets for lab addresses to its real
//! default gateway, and the subnet is visibly taken for the next lab.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::NetError;
use crate::error::Context as _;
use crate::netns::Netns;
use crate::rtnl::Rtnl;

/// The names of one lab's pieces, derived from the instance prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    /// The attacker's namespace (`decnet.attacker`; `.` cannot occur in decky names).
    pub attacker_ns: String,
    /// The host end of the veth pair: the deckies' parent link (`decnet.lan`).
    pub lan: String,
}

impl LabNames {
    pub fn for_prefix(prefix: &str) -> Self {
        Self {
            attacker_ns: format!("{prefix}.attacker"),
            lan: format!("{prefix}.lan"),
        }
    }
}

/// Creates the lab network: the attacker namespace with `attacker_ip` on its
/// `eth0`, and the host end up (without an address). Must run in the host's
/// namespace. Idempotent: an existing lab with these names is kept.
pub fn create(names: &LabNames, subnet: Ipv4Net, attacker_ip: Ipv4Addr) -> Result<(), NetError> {
    let mut host = Rtnl::new().op(|| "open netlink".into())?;
    let ns = match Netns::open(&names.attacker_ns)? {
        Some(ns) => ns,
        None => Netns::create(&names.attacker_ns)?,
    };
    let made = (|| {
        if host.link(&names.lan).op(|| format!("look up {}", names.lan))?.is_none() {
            host.add_veth(&names.lan, "eth0", Some(&ns))
                .op(|| format!("create veth {} <-> {}:eth0", names.lan, names.attacker_ns))?;
        }
        let lan = host
            .link(&names.lan)
            .op(|| format!("look up {}", names.lan))?
            .ok_or_else(|| NetError::NoSuchInterface(names.lan.clone()))?;
        host.set_up(lan.index).op(|| format!("bring {} up", names.lan))?;
        host.add_unreachable(subnet.network(), subnet.prefix_len())
            .op(|| format!("reserve {subnet} in the host's routes"))?;
        let guard = ns.enter()?;
        let inside = (|| {
            let mut rtnl = Rtnl::new().op(|| "open netlink in the attacker namespace".into())?;
            for name in ["lo", "eth0"] {
                let link = rtnl
                    .link(name)
                    .op(|| format!("find {name} in {}", names.attacker_ns))?
                    .ok_or_else(|| NetError::NoSuchInterface(format!("{name} in {}", names.attacker_ns)))?;
                if name == "eth0" {
                    rtnl.add_address(link.index, attacker_ip, subnet.prefix_len())
                        .op(|| format!("add {attacker_ip} to the attacker"))?;
                }
                rtnl.set_up(link.index)
                    .op(|| format!("bring {name} up in {}", names.attacker_ns))?;
            }
            Ok(())
        })();
        guard.leave()?;
        inside
    })();
    if made.is_err() {
        let _ = destroy(names, Some(subnet));
    }
    made
}

/// Removes the lab network (the veth pair, the attacker namespace and the
/// subnet's route); idempotent.
/// `subnet` is the lab's subnet when known (its reserving route goes too).
pub fn destroy(names: &LabNames, subnet: Option<Ipv4Net>) -> Result<(), NetError> {
    let mut host = Rtnl::new().op(|| "open netlink".into())?;
    if let Some(subnet) = subnet {
        host.delete_unreachable(subnet.network(), subnet.prefix_len())
            .op(|| format!("remove the route reserving {subnet}"))?;
    }
    if let Some(lan) = host.link(&names.lan).op(|| format!("look up {}", names.lan))? {
        host.delete_link(lan.index).op(|| format!("delete {}", names.lan))?;
    }
    Netns::delete(&names.attacker_ns)?;
    Ok(())
}

/// The first subnet of length `prefix_len` in 10.213.0.0/16 (then
/// 172.31.0.0/16) that overlaps no route and no address of the host, nor any of
/// `avoid`.
pub fn free_subnet(prefix_len: u8, avoid: &[Ipv4Net]) -> Result<Ipv4Net, NetError> {
    let mut host = Rtnl::new().op(|| "open netlink".into())?;
    let mut taken: Vec<Ipv4Net> = avoid.to_vec();
    for (ip, prefix) in host.route_destinations().op(|| "list routes".into())? {
        // The default route overlaps everything; it does not make a subnet busy.
        if prefix > 0 {
            taken.extend(Ipv4Net::new(ip, prefix).ok());
        }
    }
    for (ip, prefix) in host.all_addresses().op(|| "list addresses".into())? {
        taken.extend(Ipv4Net::new(ip, prefix).ok().map(|n| n.trunc()));
    }
    let pools = [Ipv4Addr::new(10, 213, 0, 0), Ipv4Addr::new(172, 31, 0, 0)];
    for pool in pools {
        let Ok(pool) = Ipv4Net::new(pool, 16) else { continue };
        let Ok(candidates) = pool.subnets(prefix_len.clamp(16, 30)) else {
            continue;
        };
        for net in candidates {
            if !taken
                .iter()
                .any(|t| t.contains(&net.network()) || net.contains(&t.network()))
            {
                return Ok(net);
            }
        }
    }
    Err(NetError::Conflict(format!(
        "no free /{prefix_len} in 10.213.0.0/16 or 172.31.0.0/16 for the lab"
    )))
}
