//! ARP probes (RFC 5227 §2.1.1): before a decky takes an address, ask the LAN
//! whether anything already answers for it. The probe's sender address is
//! 0.0.0.0, so it does not pollute anyone's ARP cache.
//!
//! On a macvlan fleet the probes go out of a temporary bridge-mode macvlan
//! child of the NIC ([`probe_from_child`]): a raw socket on the parent itself
//! would reach the wire only, never the parent's other bridge-mode children
//! (macvlan or macvtap hosts: another instance's deckies, VMs …), which then
//! could not answer.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read as _};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use crate::NetError;
use crate::error::{Context as _, child_link_error};
use crate::rtnl::{ChildKind, Rtnl};

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// Probes every address in `targets` out of interface `ifindex` (whose MAC is
/// `mac`) and returns those that answered, with the MAC that answered.
/// Each address is asked twice, `gap` apart; replies are collected until `wait`
/// after the last probe.
pub fn probe(
    ifindex: u32,
    mac: [u8; 6],
    targets: &[Ipv4Addr],
    gap: Duration,
    wait: Duration,
) -> Result<BTreeMap<Ipv4Addr, [u8; 6]>, NetError> {
    let op = |what: &str| format!("ARP probe on interface {ifindex}: {what}");
    let socket = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))),
    )
    .map_err(|e| NetError::io(op("open packet socket"), e))?;
    socket
        .bind(&link_addr(ifindex))
        .map_err(|e| NetError::io(op("bind"), e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| NetError::io(op("nonblocking"), e))?;

    let mut answered = BTreeMap::new();
    let wanted: BTreeSet<Ipv4Addr> = targets.iter().copied().collect();
    for round in 0..2 {
        for target in targets {
            let frame = request_frame(mac, *target);
            // A full transmit queue is not a conflict; back off briefly and retry once.
            if let Err(e) = socket.send(&frame) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(NetError::io(op("send"), e));
                }
                std::thread::sleep(Duration::from_millis(1));
                let _ = socket.send(&frame);
            }
            collect(&socket, &wanted, &mut answered);
        }
        let until = Instant::now() + if round == 0 { gap } else { wait };
        while Instant::now() < until {
            collect(&socket, &wanted, &mut answered);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(answered)
}

/// Like [`probe`], from a temporary bridge-mode macvlan child `name` of
/// `parent`, so that the parent's other bridge-mode children see the probes
/// and their answers come back. The child has IPv6 disabled and no IPv4
/// address (so it sends nothing but the probes, and answers nothing); it is
/// removed afterwards, and a stale one of that name (from a crash) first.
/// Runs in the host's namespace.
pub fn probe_from_child(
    parent: u32,
    name: &str,
    targets: &[Ipv4Addr],
    gap: Duration,
    wait: Duration,
) -> Result<BTreeMap<Ipv4Addr, [u8; 6]>, NetError> {
    let mut rtnl = Rtnl::new().op(|| "open netlink".into())?;
    if let Some(stale) = rtnl.link(name).op(|| format!("look up {name}"))? {
        rtnl.delete_link(stale.index).op(|| format!("delete stale {name}"))?;
    }
    rtnl.add_child(ChildKind::Macvlan, parent, name, None, None)
        .map_err(|e| child_link_error(ChildKind::Macvlan, || format!("create ARP probe link {name}"), e))?;
    let result = (|| {
        let link = rtnl
            .link(name)
            .op(|| format!("look up {name}"))?
            .ok_or_else(|| NetError::NoSuchInterface(name.to_string()))?;
        quiet(name)?;
        rtnl.set_up(link.index).op(|| format!("bring {name} up"))?;
        probe(link.index, link.mac.unwrap_or_default(), targets, gap, wait)
    })();
    let removed = match rtnl.link(name) {
        Ok(Some(link)) => rtnl.delete_link(link.index),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    let answered = result?;
    removed.op(|| format!("delete {name}"))?;
    Ok(answered)
}

/// Makes a fresh, still-down link `name` of the calling thread's namespace
/// silent: no IPv6 (no router solicitations, DAD or MLD reports once up), and
/// no ARP replies for the namespace's other addresses.
fn quiet(name: &str) -> Result<(), NetError> {
    let settings = [
        (format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1"),
        (format!("/proc/sys/net/ipv4/conf/{name}/arp_ignore"), "8"),
    ];
    for (path, value) in settings {
        match std::fs::write(&path, value) {
            Ok(()) => {}
            // A kernel without IPv6 has nothing to disable.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.contains("/ipv6/") => {}
            Err(e) => return Err(NetError::io(format!("set {path} = {value}"), e)),
        }
    }
    Ok(())
}

fn collect(mut socket: &Socket, wanted: &BTreeSet<Ipv4Addr>, answered: &mut BTreeMap<Ipv4Addr, [u8; 6]>) {
    let mut buf = [0u8; 128];
    while let Ok(n) = socket.read(&mut buf) {
        if let Some((ip, mac)) = parse_reply(&buf[..n])
            && wanted.contains(&ip)
        {
            answered.insert(ip, mac);
        }
    }
}

/// An Ethernet broadcast carrying an ARP probe for `target`.
fn request_frame(mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&ARP_REQUEST.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]); // sender IP 0.0.0.0: a probe
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// The sender of an ARP reply (or of a request for the same address, which
/// RFC 5227 also counts as a conflict).
fn parse_reply(frame: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    if frame.len() < 42 || frame[12..14] != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let arp = &frame[14..];
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    if arp[0..6] != [0, 1, 8, 0, 6, 4] || !(op == ARP_REPLY || op == ARP_REQUEST) {
        return None;
    }
    let mut mac = [0; 6];
    mac.copy_from_slice(&arp[8..14]);
    let sender = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    if sender.is_unspecified() {
        return None;
    }
    Some((sender, mac))
}

/// A `sockaddr_ll` for interface `ifindex`.
#[allow(unsafe_code)]
fn link_addr(ifindex: u32) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_ll` is smaller than `sockaddr_storage`, and `view_as`
    // hands out a correctly aligned reference into the zeroed storage.
    let ll: &mut nix::libc::sockaddr_ll = unsafe { storage.view_as() };
    ll.sll_family = nix::libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = ifindex as i32;
    let len = size_of::<nix::libc::sockaddr_ll>() as nix::libc::socklen_t;
    // SAFETY: the storage holds an initialised `sockaddr_ll` of length `len`.
    unsafe { SockAddr::new(storage, len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::Netns;

    /// A wire (veth pair: `a` in the host, `b` in namespace `far`) with a
    /// bridge-mode macvlan sibling on `a`, in namespace `sib`, holding
    /// 10.77.0.7. Removed on drop.
    struct Wire {
        tag: String,
        parent: u32,
        parent_mac: [u8; 6],
        sibling_mac: [u8; 6],
    }

    impl Wire {
        fn new() -> Option<Self> {
            if !nix::unistd::geteuid().is_root() {
                assert!(std::env::var("CI").is_err(), "CI runs as root; this test needs it");
                eprintln!("skipped: needs root");
                return None;
            }
            let mut wire = Wire {
                tag: format!("dta{}", std::process::id()),
                parent: 0,
                parent_mac: [0; 6],
                sibling_mac: [2, 0x77, 0, 0, 0, 7],
            };
            wire.build().expect("build the test wire");
            Some(wire)
        }

        fn build(&mut self) -> Result<(), NetError> {
            let far = Netns::create(&format!("{}-far", self.tag))?;
            let sib = Netns::create(&format!("{}-sib", self.tag))?;
            let mut host = Rtnl::new().op(|| "netlink".into())?;
            host.add_veth(&format!("{}a", self.tag), "eth0", Some(&far))
                .op(|| "veth".into())?;
            let a = host
                .link(&format!("{}a", self.tag))
                .op(|| "find a".into())?
                .ok_or_else(|| NetError::NoSuchInterface("a".into()))?;
            host.set_up(a.index).op(|| "a up".into())?;
            self.parent = a.index;
            self.parent_mac = a.mac.unwrap_or_default();
            host.add_child(ChildKind::Macvlan, a.index, "eth0", Some(self.sibling_mac), Some(&sib))
                .op(|| "sibling".into())?;
            for (ns, address) in [(&far, None), (&sib, Some(Ipv4Addr::new(10, 77, 0, 7)))] {
                let guard = ns.enter()?;
                let done = (|| {
                    let mut rtnl = Rtnl::new().op(|| "netlink".into())?;
                    let eth = rtnl
                        .link("eth0")
                        .op(|| "find eth0".into())?
                        .ok_or_else(|| NetError::NoSuchInterface("eth0".into()))?;
                    if let Some(ip) = address {
                        rtnl.add_address(eth.index, ip, 24).op(|| "address".into())?;
                    }
                    rtnl.set_up(eth.index).op(|| "eth0 up".into())
                })();
                guard.leave()?;
                done?;
            }
            Ok(())
        }
    }

    impl Drop for Wire {
        fn drop(&mut self) {
            if let Ok(mut host) = Rtnl::new()
                && let Ok(Some(a)) = host.link(&format!("{}a", self.tag))
            {
                let _ = host.delete_link(a.index);
            }
            let _ = Netns::delete(&format!("{}-far", self.tag));
            let _ = Netns::delete(&format!("{}-sib", self.tag));
        }
    }

    #[test]
    fn a_bridge_mode_sibling_answers_the_child_probe() {
        let Some(wire) = Wire::new() else { return };
        let target = [Ipv4Addr::new(10, 77, 0, 7), Ipv4Addr::new(10, 77, 0, 8)];
        let (gap, wait) = (Duration::from_millis(50), Duration::from_millis(250));
        // From the parent itself the sibling never hears the probe.
        let from_parent = probe(wire.parent, wire.parent_mac, &target, gap, wait).unwrap();
        assert!(from_parent.is_empty(), "{from_parent:?}");
        let probe_link = format!("{}p", wire.tag);
        let answered = probe_from_child(wire.parent, &probe_link, &target, gap, wait).unwrap();
        assert_eq!(
            answered.into_iter().collect::<Vec<_>>(),
            [(target[0], wire.sibling_mac)]
        );
        let mut host = Rtnl::new().unwrap();
        assert_eq!(host.link(&probe_link).unwrap(), None, "the probe link must go");
    }

    #[test]
    fn probe_frame_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = request_frame(mac, Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[28..32], &[0, 0, 0, 0], "sender IP of a probe is 0.0.0.0");
        assert_eq!(&f[38..42], &[10, 0, 0, 7]);
    }

    #[test]
    fn parses_replies_and_ignores_probes() {
        let mut reply = request_frame([2, 0, 0, 0, 0, 9], Ipv4Addr::new(10, 0, 0, 1));
        reply[20..22].copy_from_slice(&ARP_REPLY.to_be_bytes());
        reply[28..32].copy_from_slice(&[10, 0, 0, 7]);
        assert_eq!(
            parse_reply(&reply),
            Some((Ipv4Addr::new(10, 0, 0, 7), [2, 0, 0, 0, 0, 9]))
        );
        // Another host's probe (sender 0.0.0.0) says nothing about ownership.
        let probe = request_frame([2, 0, 0, 0, 0, 9], Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(parse_reply(&probe), None);
        assert_eq!(parse_reply(&[0; 10]), None);
    }
}
