//! A small synchronous rtnetlink client.
//!
//! The socket belongs to the namespace of the thread that opens it, so setup
//! code opens one after entering a decky's namespace and works there with plain
//! blocking calls: no runtime, nothing to spawn.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoVeth, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::netns::Netns;

/// A route netlink socket in the calling thread's namespace.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// `macvlan`, `veth` …, when the link has a kind.
    pub kind: Option<String>,
    /// The index of the link this one hangs off (a macvlan's parent), when it
    /// has one. For a link whose parent lives in another namespace the index
    /// is that namespace's.
    pub parent: Option<u32>,
}

/// How a decky's link hangs off the host NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// Own MAC, bridge mode (children reach each other).
    Macvlan,
    /// IPvlan L2: the parent's MAC.
    Ipvlan,
}

impl ChildKind {
    /// The kernel's name of the link kind (`ip -d link` shows it).
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Macvlan => "macvlan",
            ChildKind::Ipvlan => "ipvlan",
        }
    }

    /// The kind that cannot share a parent NIC with this one.
    pub fn other(self) -> ChildKind {
        match self {
            ChildKind::Macvlan => ChildKind::Ipvlan,
            ChildKind::Ipvlan => ChildKind::Macvlan,
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Rtnl {
    pub fn new() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_ext_ack(true).ok();
        Ok(Self { socket, sequence: 0 })
    }

    /// Sends one request and collects the replies until the ACK or DONE.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut replies = Vec::new();
        let mut rx = Vec::with_capacity(64 * 1024);
        loop {
            rx.clear();
            self.socket.recv(&mut rx, 0)?;
            let mut offset = 0;
            while offset < rx.len() {
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = message.header.length as usize;
                if length == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "zero-length netlink message",
                    ));
                }
                offset += length;
                if message.header.sequence_number != self.sequence {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every link of this namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(&l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a macvlan/ipvlan child of `parent` (a link of *this* namespace)
    /// directly inside `target`, already named `name`, so it never appears in
    /// the host's namespace under a temporary name.
    pub fn add_child(
        &mut self,
        kind: ChildKind,
        parent: u32,
        name: &str,
        mac: Option<[u8; 6]>,
        target: Option<&Netns>,
    ) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Link(parent));
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(ns) = target {
            msg.attributes.push(LinkAttribute::NetNsFd(ns_fd(ns)));
        }
        let info = match kind {
            ChildKind::Macvlan => vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(MacVlanMode::Bridge)])),
            ],
            ChildKind::Ipvlan => vec![
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
            ],
        };
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }

    /// Creates a veth pair `name` ↔ `peer`; the peer goes into `peer_ns` if given.
    pub fn add_veth(&mut self, name: &str, peer: &str, peer_ns: Option<&Netns>) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_string()));
        if let Some(ns) = peer_ns {
            peer_msg.attributes.push(LinkAttribute::NetNsFd(ns_fd(ns)));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Adds `ip/prefix` to the link (replacing an identical one).
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        msg.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix < 31 {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(ip) | !mask);
            msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// IPv4 addresses of a link, with their prefix lengths.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self
            .ipv4_addresses()?
            .into_iter()
            .filter(|(link, _, _)| *link == index)
            .map(|(_, ip, prefix)| (ip, prefix))
            .collect())
    }

    /// Every IPv4 address of every link, with its prefix length.
    pub fn all_addresses(&mut self) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self
            .ipv4_addresses()?
            .into_iter()
            .map(|(_, ip, prefix)| (ip, prefix))
            .collect())
    }

    /// (link index, address, prefix length) of every IPv4 address.
    fn ipv4_addresses(&mut self) -> io::Result<Vec<(u32, Ipv4Addr, u8)>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some((a.header.index, *ip, a.header.prefix_len)),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    /// Destinations of the IPv4 routes of every table, e.g. for choosing a
    /// subnet that overlaps none of them.
    pub fn route_destinations(&mut self) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if matches!(
                        r.header.kind,
                        RouteType::Unicast | RouteType::Unreachable | RouteType::BlackHole | RouteType::Prohibit
                    ) =>
                {
                    let dest = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                        _ => None,
                    });
                    Some((
                        dest.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        r.header.destination_prefix_length,
                    ))
                }
                _ => None,
            })
            .collect())
    }

    /// The main table's IPv4 default routes: (gateway, outgoing link) of each.
    pub fn default_routes(&mut self) -> io::Result<Vec<(Option<Ipv4Addr>, Option<u32>)>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.kind == RouteType::Unicast
                        && r.header.destination_prefix_length == 0
                        && r.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    let gateway = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                        _ => None,
                    });
                    let oif = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    });
                    Some((gateway, oif))
                }
                _ => None,
            })
            .collect())
    }

    /// Adds an `unreachable` route for `destination/prefix`: packets to it fail
    /// at once instead of following the default route.
    pub fn add_unreachable(&mut self, destination: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = route_message(destination, prefix, RouteType::Unreachable);
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Removes an `unreachable` route; absent is fine.
    pub fn delete_unreachable(&mut self, destination: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.delete_route_message(route_message(destination, prefix, RouteType::Unreachable))
    }

    /// Removes the route to `destination/prefix` on link `oif`; absent is fine.
    pub fn delete_route(&mut self, destination: Ipv4Addr, prefix: u8, oif: u32) -> io::Result<()> {
        let mut msg = route_message(destination, prefix, RouteType::Unspec);
        msg.header.scope = RouteScope::NoWhere;
        msg.attributes.push(RouteAttribute::Oif(oif));
        self.delete_route_message(msg)
    }

    fn delete_route_message(&mut self, msg: RouteMessage) -> io::Result<()> {
        match self.request(RouteNetlinkMessage::DelRoute(msg), NLM_F_ACK) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Adds a route to `destination/prefix` (`0.0.0.0/0` for the default route),
    /// via `gateway` or directly on the link.
    pub fn add_route(
        &mut self,
        destination: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        oif: u32,
    ) -> io::Result<()> {
        let mut msg = route_message(destination, prefix, RouteType::Unicast);
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if let Some(gw) = gateway {
            msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }
}

/// A main-table IPv4 route message for `destination/prefix` (no destination
/// attribute for the default route).
fn route_message(destination: Ipv4Addr, prefix: u8, kind: RouteType) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = prefix;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.kind = kind;
    if prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    }
    msg
}

fn ns_fd(ns: &Netns) -> i32 {
    use std::os::fd::AsFd;
    ns.as_fd().as_raw_fd()
}

fn to_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
        parent: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Link(parent) => link.parent = Some(*parent),
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0; 6];
                mac.copy_from_slice(a);
                link.mac = Some(mac);
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}
