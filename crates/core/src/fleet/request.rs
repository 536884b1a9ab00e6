//! What the operator asked for, before resolution: command-line flags and the
//! sections of an INI file, each value remembering where it was written so that
//! every later error can point at it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::{CustomService, LinkDriver, LogTarget, Mode};
use crate::catalogue::Catalogue;
use crate::error::ConfigError;
use crate::ini::{IniDocument, IniEntry};

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--services`.
    Flag(&'static str),
    /// A key in an INI section.
    Ini {
        file: String,
        section: String,
        line: usize,
        key: String,
    },
    /// An INI section as a whole.
    Section { file: String, section: String, line: usize },
}

impl Origin {
    pub(crate) fn key(file: &str, section: &str, entry: &IniEntry) -> Self {
        Origin::Ini {
            file: file.to_string(),
            section: section.to_string(),
            line: entry.line,
            key: entry.key.clone(),
        }
    }

    /// A warning about the value written here, located like an error.
    pub fn warning(&self, message: impl Into<String>) -> String {
        self.error(message).to_string()
    }

    /// An error about the value written here.
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        match self {
            Origin::Flag(flag) => ConfigError::new("command line", message).key(*flag),
            Origin::Ini {
                file,
                section,
                line,
                key,
            } => ConfigError::new(file, message).line(*line).section(section).key(key),
            Origin::Section { file, section, line } => ConfigError::new(file, message).line(*line).section(section),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Setting<T> {
    pub(crate) fn new(value: T, origin: Origin) -> Self {
        Self { value, origin }
    }
}

/// The deploy flags, as plain data (the binary's clap struct converts into this).
#[derive(Debug, Clone, Default)]
pub struct CliFleet {
    pub deckies: Option<u32>,
    pub services: Option<String>,
    pub randomize_services: bool,
    pub distro: Option<String>,
    pub randomize_distros: bool,
    pub archetype: Option<String>,
    pub nmap_os: Option<String>,
    pub os_personality: Option<String>,
    pub interface: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_start: Option<String>,
    pub log_target: Option<String>,
    pub log_file: Option<PathBuf>,
    pub log_tls_ca: Option<PathBuf>,
    pub log_tls_cert: Option<PathBuf>,
    pub log_tls_key: Option<PathBuf>,
    pub insecure_syslog: bool,
    pub ipvlan: bool,
    pub mode: Mode,
    pub seed: Option<String>,
}

/// Network and logging settings: flags override `[general]`.
#[derive(Debug, Clone, Default)]
pub struct General {
    pub interface: Option<Setting<String>>,
    pub subnet: Option<Setting<Ipv4Net>>,
    pub gateway: Option<Setting<Ipv4Addr>>,
    pub ip_start: Option<Setting<Ipv4Addr>>,
    pub log_target: Option<Setting<LogTarget>>,
    pub log_file: Option<Setting<PathBuf>>,
    pub log_tls_ca: Option<Setting<PathBuf>>,
    pub log_tls_cert: Option<Setting<PathBuf>>,
    pub log_tls_key: Option<Setting<PathBuf>>,
    /// Plaintext syslog to another host is allowed.
    pub insecure_syslog: Option<Setting<bool>>,
    pub seed: Option<Setting<String>>,
    pub mutate_interval: Option<Setting<u32>>,
}

/// A decky section (or the `--deckies N` flag): one decky, or `amount` of them.
#[derive(Debug, Clone)]
pub struct DeckyGroup {
    pub name: String,
    pub origin: Origin,
    pub amount: Setting<u32>,
    pub ip: Option<Setting<Ipv4Addr>>,
    pub services: Option<Setting<Vec<String>>>,
    pub archetype: Option<Setting<String>>,
    pub nmap_os: Option<Setting<String>>,
    pub os_personality: Option<Setting<String>>,
    pub hostname: Option<Setting<String>>,
    pub distros: Option<Setting<Vec<String>>>,
    pub mutate_interval: Option<Setting<u32>>,
    /// Keys the decky section does not define itself: applied to any of the
    /// decky's services that has a persona key of that name.
    pub extra: Vec<Setting<String>>,
    /// Whether this group came from an INI section (which falls back to random
    /// services, as the original did) or from flags (which must name some).
    pub from_ini: bool,
}

impl DeckyGroup {
    /// One decky called `name`, with nothing set yet.
    pub(crate) fn new(name: &str, origin: Origin, from_ini: bool) -> Self {
        Self {
            name: name.to_string(),
            origin: origin.clone(),
            amount: Setting::new(1, origin),
            ip: None,
            services: None,
            archetype: None,
            nmap_os: None,
            os_personality: None,
            hostname: None,
            distros: None,
            mutate_interval: None,
            extra: Vec::new(),
            from_ini,
        }
    }
}

/// An `[<decky>.<service>]` section: persona config for one decky, or for every
/// decky expanded from a group by `amount`.
#[derive(Debug, Clone)]
pub struct PersonaSection {
    pub target: String,
    pub service: String,
    pub origin: Origin,
    pub entries: Vec<Setting<String>>,
}

/// Settings that flags give to every decky lacking its own.
#[derive(Debug, Clone, Default)]
pub struct GroupDefaults {
    pub services: Option<Setting<Vec<String>>>,
    pub archetype: Option<Setting<String>>,
    pub nmap_os: Option<Setting<String>>,
    pub os_personality: Option<Setting<String>>,
    pub distros: Option<Setting<Vec<String>>>,
    pub randomize_services: bool,
    pub randomize_distros: bool,
}

/// Everything the operator asked for.
#[derive(Debug, Clone)]
pub struct FleetRequest {
    /// The INI file, or `command line`: names the input in errors about it as a whole.
    pub source: String,
    pub mode: Mode,
    pub driver: LinkDriver,
    pub general: General,
    pub defaults: GroupDefaults,
    pub groups: Vec<DeckyGroup>,
    pub persona_sections: Vec<PersonaSection>,
    pub custom_services: Vec<CustomService>,
    pub warnings: Vec<String>,
}

impl Default for FleetRequest {
    fn default() -> Self {
        Self {
            source: "command line".into(),
            mode: Mode::default(),
            driver: LinkDriver::default(),
            general: General::default(),
            defaults: GroupDefaults::default(),
            groups: Vec::new(),
            persona_sections: Vec::new(),
            custom_services: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Keys a decky section defines itself; any other key is tried as a persona key.
pub(crate) const DECKY_KEYS: &[&str] = &[
    "ip",
    "services",
    "archetype",
    "nmap_os",
    "os_personality",
    "amount",
    "hostname",
    "distro",
    "mutate_interval",
];

/// Upper bound on deckies from one section or `--deckies`.
pub const MAX_AMOUNT: u32 = 16_384;

impl FleetRequest {
    /// Builds the request from flags and, if given, a parsed INI file.
    pub fn build(cli: &CliFleet, ini: Option<&IniDocument>, catalogue: &Catalogue) -> Result<Self, ConfigError> {
        let mut request = match ini {
            Some(doc) => {
                if cli.deckies.is_some() {
                    return Err(Origin::Flag("--deckies")
                        .error("cannot be combined with --config; set `amount =` in the file instead"));
                }
                super::ini::read(doc, catalogue)?
            }
            None => FleetRequest::default(),
        };
        request.mode = cli.mode;
        request.driver = if cli.ipvlan {
            LinkDriver::Ipvlan
        } else {
            LinkDriver::Macvlan
        };
        request.apply_flags(cli)?;
        if ini.is_none() {
            let Some(n) = cli.deckies else {
                return Err(ConfigError::new("command line", "nothing to deploy").hint(Some(
                    "pass --deckies N (with --services, --archetype or --randomize-services) or --config FILE".into(),
                )));
            };
            let origin = Origin::Flag("--deckies");
            if n == 0 || n > MAX_AMOUNT {
                return Err(origin.error(format!("must be between 1 and {MAX_AMOUNT}")));
            }
            let mut group = DeckyGroup::new("decky", origin.clone(), false);
            group.amount = Setting::new(n, origin);
            request.groups.push(group);
        }
        Ok(request)
    }

    fn apply_flags(&mut self, cli: &CliFleet) -> Result<(), ConfigError> {
        let flag = |name: &'static str| Origin::Flag(name);
        let g = &mut self.general;
        if let Some(v) = &cli.interface {
            g.interface = Some(Setting::new(
                parse_interface(v, &flag("--interface"))?,
                flag("--interface"),
            ));
        }
        if let Some(v) = &cli.subnet {
            g.subnet = Some(Setting::new(
                parse_subnet(v, &flag("--subnet"), &mut self.warnings)?,
                flag("--subnet"),
            ));
        }
        if let Some(v) = &cli.gateway {
            g.gateway = Some(Setting::new(parse_ip(v, &flag("--gateway"))?, flag("--gateway")));
        }
        if let Some(v) = &cli.ip_start {
            g.ip_start = Some(Setting::new(parse_ip(v, &flag("--ip-start"))?, flag("--ip-start")));
        }
        if let Some(v) = &cli.log_target {
            let target = LogTarget::parse(v).map_err(|m| flag("--log-target").error(m))?;
            g.log_target = Some(Setting::new(target, flag("--log-target")));
        }
        for (value, slot, name) in [
            (&cli.log_file, &mut g.log_file, "--log-file"),
            (&cli.log_tls_ca, &mut g.log_tls_ca, "--log-tls-ca"),
            (&cli.log_tls_cert, &mut g.log_tls_cert, "--log-tls-cert"),
            (&cli.log_tls_key, &mut g.log_tls_key, "--log-tls-key"),
        ] {
            if let Some(v) = value {
                // The engine reads these from another working directory.
                let path = std::path::absolute(v).map_err(|e| flag(name).error(format!("{}: {e}", v.display())))?;
                *slot = Some(Setting::new(path, flag(name)));
            }
        }
        if cli.insecure_syslog {
            g.insecure_syslog = Some(Setting::new(true, flag("--insecure-syslog")));
        }
        if let Some(v) = &cli.seed {
            g.seed = Some(Setting::new(v.clone(), flag("--seed")));
        }
        let d = &mut self.defaults;
        d.services = cli
            .services
            .as_deref()
            .map(|v| Setting::new(split_slugs(v), flag("--services")));
        d.distros = cli
            .distro
            .as_deref()
            .map(|v| Setting::new(split_slugs(v), flag("--distro")));
        d.archetype = cli
            .archetype
            .as_ref()
            .map(|v| Setting::new(v.trim().to_string(), flag("--archetype")));
        d.nmap_os = cli
            .nmap_os
            .as_ref()
            .map(|v| Setting::new(v.trim().to_string(), flag("--nmap-os")));
        d.os_personality = cli
            .os_personality
            .as_ref()
            .map(|v| Setting::new(v.trim().to_string(), flag("--os-personality")));
        d.randomize_services = cli.randomize_services;
        d.randomize_distros = cli.randomize_distros;
        Ok(())
    }
}

/// Splits `ssh, http` into slugs (lower case, as the original compared them).
pub(crate) fn split_slugs(raw: &str) -> Vec<String> {
    crate::persona::split_list(raw)
        .into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

pub(crate) fn parse_subnet(raw: &str, origin: &Origin, warnings: &mut Vec<String>) -> Result<Ipv4Net, ConfigError> {
    let net: Ipv4Net = raw.trim().parse().map_err(|_| {
        origin.error(format!(
            "`{}` is not an IPv4 subnet in CIDR form, e.g. 192.168.1.0/24",
            raw.trim()
        ))
    })?;
    if net.addr() != net.network() {
        warnings.push(origin.warning(format!("{net} has host bits set; using {}", net.trunc())));
    }
    if net.prefix_len() > 30 {
        return Err(origin.error(format!(
            "/{} leaves no room for deckies; use /30 or larger",
            net.prefix_len()
        )));
    }
    Ok(net.trunc())
}

pub(crate) fn parse_ip(raw: &str, origin: &Origin) -> Result<Ipv4Addr, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|_| origin.error(format!("`{}` is not an IPv4 address", raw.trim())))
}

pub(crate) fn parse_interface(raw: &str, origin: &Origin) -> Result<String, ConfigError> {
    let name = raw.trim();
    // IFNAMSIZ is 16 including the NUL; '/' and whitespace are refused by the kernel.
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.chars().any(char::is_whitespace);
    if valid {
        Ok(name.to_string())
    } else {
        Err(origin.error(format!(
            "`{name}` is not a valid interface name (1-15 characters, no `/`, `:` or spaces)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_errors_name_the_flag() {
        let mut w = Vec::new();
        let e = parse_subnet("10.0.0.0/33", &Origin::Flag("--subnet"), &mut w).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: --subnet: `10.0.0.0/33` is not an IPv4 subnet in CIDR form, e.g. 192.168.1.0/24"
        );
        let net = parse_subnet("10.0.0.7/24", &Origin::Flag("--subnet"), &mut w).unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/24");
        assert_eq!(w.len(), 1);
        assert!(parse_interface("eth0", &Origin::Flag("-i")).is_ok());
        assert!(parse_interface("a-very-long-interface", &Origin::Flag("-i")).is_err());
    }
}
