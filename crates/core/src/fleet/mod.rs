//! The fleet model: what to deploy, fully resolved.
//!
//! A [`FleetRequest`] says what the operator asked for (flags, an INI file); the
//! planner turns it into a [`FleetSpec`] in which every decky has its name, IP,
//! MAC, hostname, distro, OS family, services with ports and typed persona
//! config, and seed. Planning is pure and deterministic for a given request,
//! catalogue, host and fleet seed.

mod ini;
mod network;
mod plan;
mod request;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use self::network::{MacAddr, usable_hosts};
pub use self::plan::{PlanOptions, plan};
pub use self::request::{CliFleet, DeckyGroup, FleetRequest, MAX_AMOUNT, Origin, PersonaSection};
use crate::catalogue::{Port, Shaping, Userland};
use crate::persona::PersonaConfig;
use crate::seed::DeckySeed;

/// A resolved fleet, ready to deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSpec {
    pub mode: Mode,
    pub driver: LinkDriver,
    /// Host NIC the deckies' links hang off; `None` when none was given or found.
    pub interface: Option<String>,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub log_target: Option<LogTarget>,
    pub log_file: Option<PathBuf>,
    /// Where the fleet seed came from (the seed itself is never printed).
    pub seed_source: SeedSource,
    pub deckies: Vec<DeckySpec>,
    /// Problems that did not stop planning (ignored keys, port clashes …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl FleetSpec {
    pub fn decky(&self, name: &str) -> Option<&DeckySpec> {
        self.deckies.iter().find(|d| d.name == name)
    }
}

/// One fake host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeckySpec {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub hostname: String,
    pub distro: String,
    /// What a login shows of the distro (files, kernel, prompt).
    #[serde(default)]
    pub userland: Userland,
    pub os_family: String,
    /// The OS personality (TCP/IP stack) it shows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub personality: String,
    /// The OS family's and personality's per-namespace sysctls, resolved.
    pub sysctls: BTreeMap<String, String>,
    /// What the packet shaper changes for the personality.
    #[serde(default, skip_serializing_if = "is_default")]
    pub shaping: Shaping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archetype: Option<String>,
    pub services: Vec<ServiceSpec>,
    /// Minutes between service re-rolls by the mutator; `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutate_interval: Option<u32>,
    pub seed: DeckySeed,
}

/// One service of a decky.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub slug: String,
    pub ports: Vec<Port>,
    pub persona: PersonaConfig,
    /// Set for bring-your-own services: the image and command to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomService>,
}

/// A bring-your-own service from a `[custom-NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomService {
    pub slug: String,
    /// OCI image reference (`binary =`).
    pub image: String,
    /// Command and arguments (`exec =`); empty: the image's own entry point.
    pub exec: Vec<String>,
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every decky on this host.
    #[default]
    Unihost,
    /// Deckies sharded over enrolled sensors.
    Swarm,
}

/// The kind of link a decky gets on the host NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkDriver {
    /// Own MAC per decky (needs a NIC in promiscuous mode).
    #[default]
    Macvlan,
    /// IPvlan L2: the host's MAC, own IP (for Wi-Fi, where APs drop unknown MACs).
    Ipvlan,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Unihost => "unihost",
            Mode::Swarm => "swarm",
        })
    }
}

impl std::fmt::Display for LinkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkDriver::Macvlan => "macvlan",
            LinkDriver::Ipvlan => "ipvlan",
        })
    }
}

/// A remote syslog receiver: `host:port`, optionally `udp://`, `tcp://` or `tls://`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTarget {
    pub transport: LogTransport,
    pub host: String,
    pub port: u16,
    /// For `tls://`: the CA that signed the receiver's certificate, and our
    /// own certificate and key when the receiver wants mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<LogTls>,
    /// Plaintext to another host was explicitly allowed (`--insecure-syslog`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// PEM files for a TLS log target (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTls {
    pub ca: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTransport {
    Udp,
    Tcp,
    Tls,
}

impl LogTarget {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (transport, rest) = match text.split_once("://") {
            Some(("udp", r)) => (LogTransport::Udp, r),
            Some(("tcp", r)) => (LogTransport::Tcp, r),
            Some(("tls", r)) => (LogTransport::Tls, r),
            Some((other, _)) => return Err(format!("`{other}://` is not a syslog transport (udp, tcp, tls)")),
            // The seed's plain `ip:port` is RFC 5426 UDP.
            None => (LogTransport::Udp, text),
        };
        let (host, port) = crate::persona::parse_host_port(rest)?;
        Ok(Self {
            transport,
            host,
            port,
            tls: None,
            insecure: false,
        })
    }

    /// Why this target must not be used as it is: plaintext (UDP or TCP)
    /// to another host would carry attacker data and credentials in clear
    /// text over the network, unless the operator allowed it.
    pub fn plaintext_refusal(&self) -> Option<String> {
        (self.transport != LogTransport::Tls && !self.insecure && !self.is_loopback()).then(|| {
            format!(
                "log target {self} would send attacker data in clear text over the network: use tls:// (RFC 5425), \
                 or allow plaintext explicitly with --insecure-syslog (insecure_syslog = true in [general])"
            )
        })
    }

    /// Whether the receiver is this host (plaintext is then acceptable).
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            LogTransport::Udp => "udp",
            LogTransport::Tcp => "tcp",
            LogTransport::Tls => "tls",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Where the fleet seed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedSource {
    /// `--seed` or `[general] seed`.
    Configured,
    /// This installation's `<state-dir>/fleet.seed`.
    Installation,
    /// None exists yet: identifiers are placeholders that a deploy will change.
    Placeholder,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_targets() {
        let t = LogTarget::parse("192.168.1.200:5140").unwrap();
        assert_eq!(t.transport, LogTransport::Udp);
        assert_eq!(t.to_string(), "udp://192.168.1.200:5140");
        assert_eq!(
            LogTarget::parse("tls://siem.corp:6514").unwrap().transport,
            LogTransport::Tls
        );
        assert!(LogTarget::parse("http://x:1").is_err());
        assert!(LogTarget::parse("x").is_err());
    }
}
