//! Addresses: MACs, and IP allocation inside the decky subnet.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::catalogue::Vendor;
use crate::seed::SeedRng;

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A MAC for a decky: one of the vendors' OUIs plus three random bytes, or,
    /// with no vendor, six random bytes with the locally-administered bit set and
    /// the multicast bit clear (so it can never equal a real NIC's address).
    pub fn generate(rng: &mut SeedRng, vendors: &[&Vendor]) -> Self {
        let mut bytes = [0u8; 6];
        rng.fill(&mut bytes);
        if vendors.is_empty() {
            bytes[0] = (bytes[0] & 0b1111_1100) | 0b0000_0010;
        } else {
            let vendor = rng.pick(vendors);
            let oui = rng.pick(&vendor.ouis);
            bytes[..3].copy_from_slice(oui);
        }
        Self(bytes)
    }

    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0b10 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bytes: Option<Vec<u8>> = parts
            .iter()
            .map(|p| {
                if p.len() == 2 {
                    u8::from_str_radix(p, 16).ok()
                } else {
                    None
                }
            })
            .collect();
        bytes
            .and_then(|b| <[u8; 6]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| format!("`{s}` is not a MAC address"))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Number of assignable host addresses in `net` (network and broadcast excluded).
pub fn usable_hosts(net: &Ipv4Net) -> u64 {
    match net.prefix_len() {
        32 | 31 => 0,
        p => (1u64 << (32 - p)) - 2,
    }
}

/// Why an address cannot be given to a decky.
pub(crate) fn unusable_reason(net: &Ipv4Net, gateway: Ipv4Addr, ip: Ipv4Addr) -> Option<String> {
    if !net.contains(&ip) {
        Some(format!("is outside the subnet {net}"))
    } else if ip == net.network() {
        Some(format!("is the network address of {net}"))
    } else if ip == net.broadcast() {
        Some(format!("is the broadcast address of {net}"))
    } else if ip == gateway {
        Some("is the gateway".into())
    } else {
        None
    }
}

/// Hands out free addresses from `start` upwards, skipping network, broadcast,
/// gateway and everything already taken.
pub(crate) struct IpAllocator {
    net: Ipv4Net,
    gateway: Ipv4Addr,
    taken: BTreeSet<Ipv4Addr>,
    next: u32,
}

impl IpAllocator {
    pub(crate) fn new(net: Ipv4Net, gateway: Ipv4Addr, start: Ipv4Addr, taken: BTreeSet<Ipv4Addr>) -> Self {
        Self {
            net,
            gateway,
            taken,
            next: u32::from(start),
        }
    }

    pub(crate) fn next_free(&mut self) -> Option<Ipv4Addr> {
        let last = u32::from(self.net.broadcast());
        while self.next < last {
            let ip = Ipv4Addr::from(self.next);
            self.next += 1;
            if unusable_reason(&self.net, self.gateway, ip).is_none() && self.taken.insert(ip) {
                return Some(ip);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::FleetSeed;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn local_macs_have_the_local_bit_and_no_multicast_bit() {
        for i in 0..200 {
            let mut rng = FleetSeed::placeholder().decky(&i.to_string()).rng_for("mac");
            let mac = MacAddr::generate(&mut rng, &[]);
            assert!(mac.is_locally_administered());
            assert_eq!(mac.0[0] & 1, 0);
        }
    }

    #[test]
    fn vendor_macs_carry_the_oui() {
        let v = Vendor {
            slug: "hp".into(),
            name: "HP".into(),
            ouis: vec![[0x3c, 0xd9, 0x2b]],
        };
        let mut rng = FleetSeed::placeholder().rng_for("m");
        let mac = MacAddr::generate(&mut rng, &[&v]);
        assert_eq!(&mac.0[..3], &[0x3c, 0xd9, 0x2b]);
        assert!(!mac.is_locally_administered());
        assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn allocation_skips_reserved_addresses() {
        let n = net("10.0.0.0/29");
        let taken = BTreeSet::from(["10.0.0.3".parse().unwrap()]);
        let mut a = IpAllocator::new(n, "10.0.0.1".parse().unwrap(), n.network(), taken);
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| a.next_free()).collect();
        let want: Vec<Ipv4Addr> = ["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn usable_host_counts() {
        assert_eq!(usable_hosts(&net("10.0.0.0/24")), 254);
        assert_eq!(usable_hosts(&net("10.0.0.0/30")), 2);
        assert_eq!(usable_hosts(&net("10.0.0.0/31")), 0);
    }
}
