//! The host hairpin: a child link on the host side of the NIC
//! (`decnet_macvlan0`), so that the host itself can reach its deckies, which a
//! macvlan (or ipvlan) parent never can. It is of the fleet's kind (macvlan or
//! ipvlan: the two cannot share a parent NIC). It carries one /32 address, and
//! a /32 route per decky, so the host's own routes for the LAN stay as they were.

use std::net::Ipv4Addr;

use crate::NetError;
use crate::error::{Context as _, child_link_error};
use crate::rtnl::{ChildKind, Link, Rtnl};

/// Creates (or adopts) the hairpin `name`, a `kind` child of `parent`, with
/// address `ip`. An existing link of that name is adopted only if it is a
/// `kind` child of `parent`; anything else of that name (left by an engine
/// with another driver or NIC) is replaced. Runs in the host's namespace.
pub fn ensure(rtnl: &mut Rtnl, name: &str, kind: ChildKind, parent: u32, ip: Ipv4Addr) -> Result<u32, NetError> {
    let existing = rtnl.link(name).op(|| format!("look up {name}"))?;
    let adopted = match existing {
        Some(link) if fits(&link, kind, parent) => Some(link.index),
        Some(link) => {
            tracing::info!(
                message = "Replacing a hairpin of another kind or parent.",
                hairpin = name,
                kind = link.kind.as_deref().unwrap_or("none"),
                parent = ?link.parent,
                wanted_kind = %kind,
                wanted_parent = parent
            );
            rtnl.delete_link(link.index).op(|| format!("delete {name}"))?;
            None
        }
        None => None,
    };
    let index = match adopted {
        Some(index) => index,
        None => {
            rtnl.add_child(kind, parent, name, None, None)
                .map_err(|e| child_link_error(kind, || format!("create hairpin {name}"), e))?;
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

/// Whether `link` is a `kind` child of `parent`.
pub fn fits(link: &Link, kind: ChildKind, parent: u32) -> bool {
    link.kind.as_deref() == Some(kind.as_str()) && link.parent == Some(parent)
}

/// Removes the hairpin unless it is a `kind` child of `parent` (a fleet of
/// another driver could not be built next to it); `true` if it was removed.
pub fn remove_unless(rtnl: &mut Rtnl, name: &str, kind: ChildKind, parent: u32) -> Result<bool, NetError> {
    match rtnl.link(name).op(|| format!("look up {name}"))? {
        Some(link) if !fits(&link, kind, parent) => {
            rtnl.delete_link(link.index).op(|| format!("delete {name}"))?;
            Ok(true)
        }
        _ => Ok(false),
    }
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
