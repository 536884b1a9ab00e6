//! ARP probes (RFC 5227 §2.1.1): before a decky takes an address, ask the LAN
//! whether anything already answers for it. The probe's sender address is
//! 0.0.0.0, so it does not pollute anyone's ARP cache.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read as _};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use crate::NetError;

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
