//! Read-only facts about the host's network, for auto-detecting the interface,
//! subnet and gateway the way the original did. Reading them sends no packet and
//! changes nothing.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The host's IPv4 interfaces and default route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub interfaces: Vec<HostInterface>,
    pub default_route: Option<DefaultRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    /// Addresses with their prefix, e.g. 192.168.1.5/24.
    pub addrs: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    pub interface: String,
    pub gateway: Ipv4Addr,
}

impl HostFacts {
    /// Reads this host's interfaces and default route. Missing information (no
    /// default route, an unreadable /proc) just leaves the fields empty.
    pub fn detect() -> Self {
        Self {
            interfaces: read_interfaces(),
            default_route: std::fs::read_to_string("/proc/net/route")
                .ok()
                .and_then(|t| parse_default_route(&t)),
        }
    }

    pub fn interface(&self, name: &str) -> Option<&HostInterface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

fn read_interfaces() -> Vec<HostInterface> {
    // Every interface, with or without an address (a lab's veth has none).
    let mut out: Vec<HostInterface> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .map(|name| HostInterface {
                    name,
                    addrs: Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for ifa in addrs {
        let (Some(addr), Some(mask)) = (
            ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|a| a.ip()),
            ifa.netmask.as_ref().and_then(|a| a.as_sockaddr_in()).map(|a| a.ip()),
        ) else {
            continue;
        };
        let prefix = u32::from(mask).leading_ones() as u8;
        let Ok(net) = Ipv4Net::new(addr, prefix) else {
            continue;
        };
        match out.iter_mut().find(|i| i.name == ifa.interface_name) {
            Some(i) => i.addrs.push(net),
            None => out.push(HostInterface {
                name: ifa.interface_name.clone(),
                addrs: vec![net],
            }),
        }
    }
    out
}

/// Finds the default route in /proc/net/route (destination and mask 0; the
/// addresses are little-endian hex).
fn parse_default_route(table: &str) -> Option<DefaultRoute> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 || cols[1] != "00000000" || cols[7] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(cols[2], 16).ok()?;
        Some(DefaultRoute {
            interface: cols[0].to_string(),
            gateway: Ipv4Addr::from(gw.swap_bytes()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            parse_default_route(table),
            Some(DefaultRoute {
                interface: "eth0".into(),
                gateway: "192.168.1.1".parse().unwrap()
            })
        );
        assert_eq!(parse_default_route("Iface\n"), None);
    }

    #[test]
    fn detect_finds_loopback() {
        let facts = HostFacts::detect();
        let lo = facts.interface("lo").expect("every Linux host has lo");
        assert!(lo.addrs.iter().any(|n| n.addr() == Ipv4Addr::LOCALHOST));
    }
}
