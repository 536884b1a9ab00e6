//! The host hairpin: a macvlan child on the host side of the NIC
//! (`decnet_macvlan0`), so that the host itself can reach its deckies, which a
//! macvlan parent never can. It carries one /32 address, and a /32 route per
//! decky, so the host's own routes for the LAN stay as they were.

use std::net::Ipv4Addr;

use crate::NetError;
use crate::error::Context as _;
use crate::rtnl::{ChildKind, Rtnl};

/// Creates (or adopts) the hairpin `name` on `parent` with address `ip`.
/// Runs in the host's namespace.
pub fn ensure(rtnl: &mut Rtnl, name: &str, parent: u32, ip: Ipv4Addr) -> Result<u32, NetError> {
    let existing = rtnl.link(name).op(|| format!("look up {name}"))?;
    let index = match existing {
        Some(link) => link.index,
        None => {
            rtnl.add_child(ChildKind::Macvlan, parent, name, None, None)
                .op(|| format!("create hairpin {name}"))?;
            rtnl.link(name)
                .op(|| format!("look up {name}"))?
                .ok_or_else(|| NetError::NoSuchInterface(name.to_string()))?
                .index
        }
    };
    rtnl.add_address(index, ip, 32)
        .op(|| format!("add {ip}/32 to {name}"))?;
    rtnl.set_up(index).op(|| format!("bring {name} up"))?;
    Ok(index)
}

/// Routes `decky` through the hairpin.
pub fn route(rtnl: &mut Rtnl, hairpin: u32, decky: Ipv4Addr) -> Result<(), NetError> {
    rtnl.add_route(decky, 32, None, hairpin)
        .op(|| format!("route {decky}/32 via the hairpin"))
}

/// Stops routing `decky` through the hairpin.
pub fn unroute(rtnl: &mut Rtnl, hairpin: u32, decky: Ipv4Addr) -> Result<(), NetError> {
    rtnl.delete_route(decky, 32, hairpin)
        .op(|| format!("remove route {decky}/32 via the hairpin"))
}

/// Removes the hairpin (its routes go with it); `false` if it did not exist.
pub fn remove(rtnl: &mut Rtnl, name: &str) -> Result<bool, NetError> {
    match rtnl.link(name).op(|| format!("look up {name}"))? {
        Some(link) => {
            rtnl.delete_link(link.index).op(|| format!("delete {name}"))?;
            Ok(true)
        }
        None => Ok(false),
    }
}
