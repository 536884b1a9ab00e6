//! DECNET's network side: named network namespaces, macvlan/ipvlan/veth links,
//! addresses, routes and sysctls over netlink (no `ip` command), ARP probes,
//! the host hairpin, the lab LAN, and [`DeckyNet`], the one place that makes
//! sockets inside deckies.

pub mod arp;
mod decky;
mod decky_net;
mod error;
mod executor;
pub mod hairpin;
pub mod lab;
pub mod netns;
mod privilege;
pub mod rtnl;
pub mod sysctl;

pub use decky::{DECKY_IFACE, DeckyLink};
pub use decky_net::DeckyNet;
pub use error::{NetError, child_link_error};
pub use executor::NetnsExecutor;
pub use netns::Netns;
pub use privilege::require_network_admin;
pub use rtnl::{ChildKind, Link, Rtnl};
