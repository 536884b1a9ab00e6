//! Resolution of a [`FleetRequest`] into a [`FleetSpec`].
//!
//! Priorities (first that applies wins):
//! - OS family: the decky's `nmap_os`, `--nmap-os`, its OS personality's
//!   family, the archetype's, `linux`.
//! - OS personality: the decky's `os_personality`, `--os-personality`, the
//!   family's default.
//! - services: the decky's `services`, its archetype's, `--services`, the
//!   `--archetype`'s, `--randomize-services`, and for INI deckies that name none,
//!   1–3 random ones (as the original did).
//! - distro: the decky's `distro` list (cycled within the section), `--distro`
//!   (cycled over the fleet), `--randomize-distros` (within the archetype's list
//!   if any), the archetype's list, all distros round-robin.
//! - persona keys: the decky's `[name.service]` section (over its group's),
//!   keys of the decky section itself, the archetype's, OS family's and distro's
//!   defaults, the service's own default.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::network::{IpAllocator, MacAddr, unusable_reason, usable_hosts};
use super::request::{DECKY_KEYS, DeckyGroup, FleetRequest, Origin, PersonaSection, Setting};
use super::{CustomService, DeckySpec, FleetSpec, LogTarget, LogTls, LogTransport, SeedSource, ServiceSpec};
use crate::catalogue::{
    Archetype, Catalogue, DEFAULT_FAMILY, DeckyFact, DefaultRule, Distro, OsFamily, Personality, Port, ServiceDef,
};
use crate::error::{ConfigError, did_you_mean};
use crate::host::HostFacts;
use crate::persona::{PersonaConfig, PersonaValue};
use crate::seed::{DeckySeed, FleetSeed, SeedRng};

/// Inputs of planning that do not come from the operator's fleet description.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// This installation's seed (`<state-dir>/fleet.seed`), if one exists.
    pub installation_seed: Option<FleetSeed>,
    /// Addresses that must not be given to deckies (the lab's own hosts …).
    pub reserved: Vec<Ipv4Addr>,
}

/// Resolves `request` into a complete fleet.
pub fn plan(
    request: &FleetRequest,
    catalogue: &Catalogue,
    host: &HostFacts,
    options: &PlanOptions,
) -> Result<FleetSpec, ConfigError> {
    let mut warnings = request.warnings.clone();
    let (seed, seed_source) = match (&request.general.seed, &options.installation_seed) {
        (Some(s), _) => (FleetSeed::from_passphrase(&s.value), SeedSource::Configured),
        (None, Some(s)) => (s.clone(), SeedSource::Installation),
        (None, None) => (FleetSeed::placeholder(), SeedSource::Placeholder),
    };
    let net = resolve_network(request, host, &mut warnings)?;
    let cx = Context {
        catalogue,
        customs: &request.custom_services,
    };
    cx.check_defaults(request)?;

    let drafts = expand(request, &cx)?;
    let sections = assign_sections(&request.persona_sections, &drafts, &request.groups)?;

    let mut deckies = Vec::with_capacity(drafts.len());
    let mut macs = BTreeSet::new();
    let mut hostnames = BTreeSet::new();
    for (index, draft) in drafts.iter().enumerate() {
        let decky_seed = seed.decky(&draft.name);
        let resolved = cx.resolve(
            request,
            draft,
            index,
            decky_seed,
            &sections[index],
            &mut macs,
            &mut hostnames,
            &mut warnings,
        )?;
        deckies.push(resolved);
    }
    assign_ips(&drafts, &mut deckies, &net, options)?;

    Ok(FleetSpec {
        mode: request.mode,
        driver: request.driver,
        interface: net.interface,
        subnet: net.subnet,
        gateway: net.gateway,
        log_target: resolve_log_target(request, &mut warnings)?,
        log_file: request.general.log_file.as_ref().map(|s| s.value.clone()),
        seed_source,
        deckies,
        warnings,
    })
}

/// The syslog target with its TLS files, refusing what would leak events in
/// clear text over a network or could not work.
fn resolve_log_target(request: &FleetRequest, warnings: &mut Vec<String>) -> Result<Option<LogTarget>, ConfigError> {
    let g = &request.general;
    let files = [&g.log_tls_ca, &g.log_tls_cert, &g.log_tls_key];
    let Some(target) = &g.log_target else {
        if let Some(file) = files.into_iter().flatten().next() {
            return Err(file
                .origin
                .error("TLS files given but no log target (set a tls://host:port log target)"));
        }
        return Ok(None);
    };
    let mut value = target.value.clone();
    if value.transport == LogTransport::Tls {
        let Some(ca) = &g.log_tls_ca else {
            return Err(target.origin.error(
                "a tls:// log target needs the CA that signed the receiver's certificate (--log-tls-ca, or log_tls_ca in [general])",
            ));
        };
        match (&g.log_tls_cert, &g.log_tls_key) {
            (Some(_), None) => {
                return Err(target
                    .origin
                    .error("a client certificate needs its key (--log-tls-key)"));
            }
            (None, Some(_)) => {
                return Err(target
                    .origin
                    .error("a client key needs its certificate (--log-tls-cert)"));
            }
            _ => {}
        }
        value.tls = Some(LogTls {
            ca: ca.value.clone(),
            cert: g.log_tls_cert.as_ref().map(|s| s.value.clone()),
            key: g.log_tls_key.as_ref().map(|s| s.value.clone()),
        });
    } else {
        if let Some(file) = files.into_iter().flatten().next() {
            return Err(file.origin.error(format!(
                "TLS files given but the log target {value} is not TLS (use tls://{}:6514)",
                value.host
            )));
        }
        value.insecure = g.insecure_syslog.as_ref().is_some_and(|s| s.value);
        // A plan is still shown (fleet files of the original load unchanged);
        // deploying it is refused.
        if let Some(why) = value.plaintext_refusal() {
            warnings.push(target.origin.warning(format!("{why}; a deploy will refuse it")));
        }
    }
    Ok(Some(value))
}

struct Network {
    interface: Option<String>,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    start: Ipv4Addr,
    /// The host's own addresses in the subnet.
    host_ips: BTreeSet<Ipv4Addr>,
}

fn resolve_network(
    request: &FleetRequest,
    host: &HostFacts,
    warnings: &mut Vec<String>,
) -> Result<Network, ConfigError> {
    let g = &request.general;
    let interface = match &g.interface {
        Some(s) => {
            if host.interface(&s.value).is_none() {
                warnings.push(
                    s.origin
                        .warning(format!("interface `{}` does not exist on this host", s.value)),
                );
            }
            Some(s.value.clone())
        }
        None => host.default_route.as_ref().map(|r| r.interface.clone()),
    };
    let host_addrs: Vec<Ipv4Net> = interface
        .as_deref()
        .and_then(|i| host.interface(i))
        .map(|i| i.addrs.clone())
        .unwrap_or_default();
    let subnet = match &g.subnet {
        Some(s) => s.value,
        None => host_addrs
            .iter()
            .find(|a| !a.addr().is_loopback() && a.prefix_len() <= 30)
            .map(Ipv4Net::trunc)
            .ok_or_else(|| {
                ConfigError::new(
                    request.source.clone(),
                    format!(
                        "cannot tell which subnet the deckies belong to{}",
                        interface
                            .as_deref()
                            .map(|i| format!(" (`{i}` has no IPv4 subnet)"))
                            .unwrap_or_default()
                    ),
                )
                .hint(Some("set `net =` in [general] or pass --subnet CIDR".into()))
            })?,
    };
    let gateway = match &g.gateway {
        Some(s) => {
            if !subnet.contains(&s.value) || s.value == subnet.network() || s.value == subnet.broadcast() {
                return Err(s
                    .origin
                    .error(format!("{} is not a host address of the subnet {subnet}", s.value)));
            }
            s.value
        }
        None => host
            .default_route
            .as_ref()
            .map(|r| r.gateway)
            .filter(|gw| subnet.contains(gw))
            .or_else(|| subnet.hosts().next())
            .expect("a subnet of /30 or larger has hosts"),
    };
    let start = match &g.ip_start {
        Some(s) if !subnet.contains(&s.value) => {
            return Err(s.origin.error(format!("{} is outside the subnet {subnet}", s.value)));
        }
        Some(s) => s.value,
        None => subnet.network(),
    };
    let host_ips = host_addrs
        .iter()
        .map(|a| a.addr())
        .filter(|a| subnet.contains(a))
        .collect();
    Ok(Network {
        interface,
        subnet,
        gateway,
        start,
        host_ips,
    })
}

/// One decky to be, before resolution.
struct Draft<'a> {
    name: String,
    group: &'a DeckyGroup,
    /// Position within its group (for the group's own distro list and hostname suffix).
    member: usize,
    /// `-01` … for deckies expanded by `amount`.
    suffix: Option<String>,
}

const MAX_NAME: usize = 63;

fn check_name(name: &str, origin: &Origin) -> Result<(), ConfigError> {
    let valid = name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(origin.error(format!(
            "`{name}` is not a valid decky name (letters, digits, `-` and `_`, starting with a letter or digit, at most {MAX_NAME} characters)"
        )))
    }
}

fn expand<'a>(request: &'a FleetRequest, cx: &Context<'_>) -> Result<Vec<Draft<'a>>, ConfigError> {
    let mut drafts: Vec<Draft<'a>> = Vec::new();
    let mut seen: BTreeMap<String, &Origin> = BTreeMap::new();
    for group in &request.groups {
        cx.check_group(group)?;
        let n = group.amount.value as usize;
        for member in 0..n {
            let (name, suffix) = if group.amount.value > 1 || !group.from_ini {
                // `-01` … `-99`, `-100`: the original's names, so its sub-sections still match.
                let suffix = format!("-{:02}", member + 1);
                (format!("{}{suffix}", group.name), Some(suffix))
            } else {
                (group.name.clone(), None)
            };
            check_name(&name, &group.origin)?;
            if let Some(first) = seen.get(&name.to_ascii_lowercase()) {
                let at = match first {
                    Origin::Section { section, line, .. } => format!(" (from [{section}] on line {line})"),
                    _ => String::new(),
                };
                return Err(group.origin.error(format!("decky `{name}` is defined twice{at}")));
            }
            seen.insert(name.to_ascii_lowercase(), &group.origin);
            drafts.push(Draft {
                name,
                group,
                member,
                suffix,
            });
        }
    }
    if drafts.is_empty() {
        return Err(
            ConfigError::new(request.source.clone(), "the fleet has no deckies").hint(Some(
                "add a decky section, e.g. `[decky-01]` with `services = ssh`".into(),
            )),
        );
    }
    Ok(drafts)
}

/// For each draft, the persona sections that apply to it, group-level first.
fn assign_sections<'a>(
    sections: &'a [PersonaSection],
    drafts: &[Draft<'_>],
    groups: &[DeckyGroup],
) -> Result<Vec<Vec<&'a PersonaSection>>, ConfigError> {
    let mut out: Vec<Vec<&PersonaSection>> = vec![Vec::new(); drafts.len()];
    for section in sections {
        let group_level: Vec<usize> = drafts
            .iter()
            .enumerate()
            .filter(|(_, d)| d.suffix.is_some() && d.group.name == section.target)
            .map(|(i, _)| i)
            .collect();
        let exact = drafts.iter().position(|d| d.name == section.target);
        if group_level.is_empty() && exact.is_none() {
            let names = drafts
                .iter()
                .map(|d| d.name.as_str())
                .chain(groups.iter().map(|g| g.name.as_str()));
            return Err(section
                .origin
                .error(format!(
                    "no decky or group named `{}` for these {} settings",
                    section.target, section.service
                ))
                .hint(did_you_mean(&section.target, names)));
        }
        for i in group_level {
            out[i].insert(0, section);
        }
        if let Some(i) = exact {
            out[i].push(section);
        }
    }
    Ok(out)
}

struct Context<'a> {
    catalogue: &'a Catalogue,
    customs: &'a [CustomService],
}

impl<'a> Context<'a> {
    fn archetype(&self, s: &Setting<String>) -> Result<&'a Archetype, ConfigError> {
        self.catalogue.archetype(&s.value).ok_or_else(|| {
            s.origin
                .error(format!("unknown archetype `{}`", s.value))
                .hint(did_you_mean(
                    &s.value,
                    self.catalogue.archetypes().iter().map(|a| a.slug.as_str()),
                ))
        })
    }

    fn family(&self, s: &Setting<String>) -> Result<&'a OsFamily, ConfigError> {
        self.catalogue.family(&s.value).ok_or_else(|| {
            let known = self.catalogue.families().map(|f| f.slug.as_str());
            s.origin.error(format!("unknown OS family `{}`", s.value)).hint(
                did_you_mean(&s.value, known)
                    .or_else(|| Some(crate::error::one_of(self.catalogue.families().map(|f| f.slug.as_str())))),
            )
        })
    }

    fn personality(&self, s: &Setting<String>) -> Result<&'a Personality, ConfigError> {
        self.catalogue.personality(&s.value).ok_or_else(|| {
            let known = || self.catalogue.personalities().map(|p| p.slug.as_str());
            s.origin
                .error(format!("unknown OS personality `{}`", s.value))
                .hint(did_you_mean(&s.value, known()).or_else(|| Some(crate::error::one_of(known()))))
        })
    }

    fn check_services(&self, s: &Setting<Vec<String>>) -> Result<(), ConfigError> {
        if s.value.is_empty() {
            return Err(s.origin.error("lists no service"));
        }
        for (i, slug) in s.value.iter().enumerate() {
            if self.catalogue.service(slug).is_none() && !self.customs.iter().any(|c| &c.slug == slug) {
                let known = self
                    .catalogue
                    .services()
                    .map(|d| d.slug.as_str())
                    .chain(self.customs.iter().map(|c| c.slug.as_str()));
                return Err(s
                    .origin
                    .error(format!("unknown service `{slug}`"))
                    .hint(did_you_mean(slug, known).or_else(|| Some("`decnet services` lists them".into()))));
            }
            if s.value[..i].contains(slug) {
                return Err(s.origin.error(format!("`{slug}` is listed twice")));
            }
        }
        Ok(())
    }

    fn check_distros(&self, s: &Setting<Vec<String>>) -> Result<(), ConfigError> {
        if s.value.is_empty() {
            return Err(s.origin.error("lists no distro"));
        }
        for slug in &s.value {
            if self.catalogue.distro(slug).is_none() {
                return Err(s.origin.error(format!("unknown distro `{slug}`")).hint(did_you_mean(
                    slug,
                    self.catalogue.distros().iter().map(|d| d.slug.as_str()),
                )));
            }
        }
        Ok(())
    }

    fn check_defaults(&self, request: &FleetRequest) -> Result<(), ConfigError> {
        let d = &request.defaults;
        self.check(&d.archetype, &d.nmap_os, &d.services, &d.distros)?;
        d.os_personality.as_ref().map(|s| self.personality(s)).transpose()?;
        Ok(())
    }

    fn check_group(&self, g: &DeckyGroup) -> Result<(), ConfigError> {
        self.check(&g.archetype, &g.nmap_os, &g.services, &g.distros)?;
        g.os_personality.as_ref().map(|s| self.personality(s)).transpose()?;
        Ok(())
    }

    /// Checks the slugs a group (or the flags) names, before anything is resolved.
    fn check(
        &self,
        archetype: &Option<Setting<String>>,
        nmap_os: &Option<Setting<String>>,
        services: &Option<Setting<Vec<String>>>,
        distros: &Option<Setting<Vec<String>>>,
    ) -> Result<(), ConfigError> {
        archetype.as_ref().map(|s| self.archetype(s)).transpose()?;
        nmap_os.as_ref().map(|s| self.family(s)).transpose()?;
        services.as_ref().map(|s| self.check_services(s)).transpose()?;
        distros.as_ref().map(|s| self.check_distros(s)).transpose()?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn resolve(
        &self,
        request: &FleetRequest,
        draft: &Draft<'_>,
        index: usize,
        seed: DeckySeed,
        sections: &[&PersonaSection],
        macs: &mut BTreeSet<MacAddr>,
        hostnames: &mut BTreeSet<String>,
        warnings: &mut Vec<String>,
    ) -> Result<DeckySpec, ConfigError> {
        let g = draft.group;
        let d = &request.defaults;
        let cat = self.catalogue;
        let archetype = match g.archetype.as_ref().or(d.archetype.as_ref()) {
            Some(s) => Some(self.archetype(s)?),
            None => None,
        };
        // An explicit personality brings its family unless `nmap_os` names one.
        let explicit = match g.os_personality.as_ref().or(d.os_personality.as_ref()) {
            Some(s) => Some(self.personality(s)?),
            None => None,
        };
        let family = match g.nmap_os.as_ref().or(d.nmap_os.as_ref()) {
            Some(s) => self.family(s)?,
            None => {
                let slug = explicit
                    .map(|p| p.family.as_str())
                    .or(archetype.map(|a| a.os_family.as_str()))
                    .unwrap_or(DEFAULT_FAMILY);
                cat.family(slug)
                    .expect("catalogue checked archetype and personality families and the default")
            }
        };
        let personality = match explicit {
            Some(p) => p,
            None => cat
                .personality(&family.personality)
                .expect("catalogue checked family personalities"),
        };
        let mut sysctls = family.sysctls.clone();
        sysctls.extend(personality.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
        const TIMESTAMPS: &str = "net.ipv4.tcp_timestamps";
        if let Some(v) = personality
            .shaping
            .tcp
            .timestamps_sysctl(sysctls.get(TIMESTAMPS).map(String::as_str))
        {
            sysctls.insert(TIMESTAMPS.into(), v.to_string());
        }
        let distro = self.pick_distro(request, draft, index, archetype, &seed);
        let services = self.pick_services(request, draft, archetype, &seed, warnings)?;

        // MAC: the persona's vendors, else locally administered; unique in the fleet.
        let vendor_slugs = archetype
            .map(|a| &a.mac_vendors)
            .filter(|v| !v.is_empty())
            .unwrap_or(&family.mac_vendors);
        let vendors: Vec<_> = vendor_slugs
            .iter()
            .map(|v| cat.vendor(v).expect("catalogue checked vendor references"))
            .collect();
        let mut rng = seed.rng_for("mac");
        let mac = loop {
            let mac = MacAddr::generate(&mut rng, &vendors);
            if macs.insert(mac) {
                break mac;
            }
        };

        let hostname = match &g.hostname {
            Some(h) => {
                let name = format!("{}{}", h.value, draft.suffix.as_deref().unwrap_or(""));
                check_hostname(&name).map_err(|m| h.origin.error(m))?;
                if !hostnames.insert(name.to_ascii_lowercase()) {
                    return Err(h
                        .origin
                        .error(format!("hostname `{name}` is already used by another decky")));
                }
                name
            }
            None => {
                let style_name = archetype
                    .and_then(|a| a.hostname_style.as_deref())
                    .or(family.hostname_style.as_deref())
                    .unwrap_or(&distro.hostname_style);
                let style = cat
                    .hostname_style(style_name)
                    .expect("catalogue checked style references");
                let mut rng = seed.rng_for("hostname");
                let mut attempt = 0;
                loop {
                    let mut name = style.generate(&mut rng, &mac.0);
                    attempt += 1;
                    // Small styles run out of combinations in big fleets.
                    if attempt > 64 {
                        name = format!("{name}-{}", attempt);
                    }
                    if hostnames.insert(name.to_ascii_lowercase()) {
                        break name;
                    }
                }
            }
        };

        let facts = Facts {
            hostname: &hostname,
            distro,
            decky: &draft.name,
        };
        let mut used_extra = vec![false; g.extra.len()];
        let mut served: Vec<(Port, &str)> = Vec::new();
        let mut specs = Vec::new();
        for slug in &services {
            let (ports, persona, custom) = match cat.service(slug) {
                Some(def) => {
                    let persona = self.persona(def, sections, g, &mut used_extra, archetype, family, &facts, &seed)?;
                    (def.ports.clone(), persona, None)
                }
                None => {
                    let custom = self
                        .customs
                        .iter()
                        .find(|c| &c.slug == slug)
                        .expect("services were checked against customs");
                    (
                        custom.ports.clone(),
                        custom_persona(slug, sections),
                        Some(custom.clone()),
                    )
                }
            };
            let mut kept = Vec::new();
            for port in ports {
                match served.iter().find(|(p, _)| p.clashes_with(&port)) {
                    Some((_, other)) => warnings.push(format!(
                        "{}: {port} of {slug} is already served by {other}; {slug} runs without it",
                        draft.name
                    )),
                    None => {
                        served.push((port, slug));
                        kept.push(port);
                    }
                }
            }
            if kept.is_empty() {
                let origin = g.services.as_ref().map_or(&g.origin, |s| &s.origin);
                return Err(origin.error(format!(
                    "decky `{}`: every port of {slug} is already served by another of its services",
                    draft.name
                )));
            }
            specs.push(ServiceSpec {
                slug: slug.clone(),
                ports: kept,
                persona,
                custom,
            });
        }
        for section in sections {
            if !services.contains(&section.service) {
                warnings.push(section.origin.warning(format!(
                    "ignored for `{}`, which does not run {}",
                    draft.name, section.service
                )));
            }
        }
        for (extra, used) in g.extra.iter().zip(used_extra) {
            // Warn once per group, not once per expanded decky.
            if !used && draft.member == 0 {
                let key = match &extra.origin {
                    Origin::Ini { key, .. } => key.as_str(),
                    _ => "",
                };
                let hint = did_you_mean(key, DECKY_KEYS.iter().copied())
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                warnings.push(extra.origin.warning(format!(
                    "unknown key, ignored (not a decky key, nor a persona key of {}){hint}",
                    services.join(", ")
                )));
            }
        }

        Ok(DeckySpec {
            name: draft.name.clone(),
            ip: Ipv4Addr::UNSPECIFIED,
            mac,
            hostname,
            distro: distro.slug.clone(),
            userland: distro.userland(),
            os_family: family.slug.clone(),
            personality: personality.slug.clone(),
            sysctls,
            shaping: personality.shaping.clone(),
            archetype: archetype.map(|a| a.slug.clone()),
            services: specs,
            mutate_interval: g
                .mutate_interval
                .as_ref()
                .or(request.general.mutate_interval.as_ref())
                .map(|s| s.value),
            seed,
        })
    }

    fn pick_distro(
        &self,
        request: &FleetRequest,
        draft: &Draft<'_>,
        index: usize,
        archetype: Option<&Archetype>,
        seed: &DeckySeed,
    ) -> &'a Distro {
        let cat = self.catalogue;
        let get = |slug: &str| cat.distro(slug).expect("distro slugs were checked");
        if let Some(list) = &draft.group.distros {
            return get(&list.value[draft.member % list.value.len()]);
        }
        if let Some(list) = &request.defaults.distros {
            return get(&list.value[index % list.value.len()]);
        }
        let preferred: Vec<&Distro> = match archetype {
            Some(a) => a.distros.iter().map(|s| get(s)).collect(),
            None => cat.distros().iter().collect(),
        };
        if request.defaults.randomize_distros {
            let picked: &&Distro = seed.rng_for("distro").pick(&preferred);
            return picked;
        }
        preferred[index % preferred.len()]
    }

    fn pick_services(
        &self,
        request: &FleetRequest,
        draft: &Draft<'_>,
        archetype: Option<&Archetype>,
        seed: &DeckySeed,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<String>, ConfigError> {
        let g = draft.group;
        let d = &request.defaults;
        if let Some(s) = &g.services {
            return Ok(s.value.clone());
        }
        if let Some(a) = g.archetype.as_ref().and(archetype) {
            return Ok(a.services.clone());
        }
        if let Some(s) = &d.services {
            return Ok(s.value.clone());
        }
        if let Some(a) = archetype {
            return Ok(a.services.clone());
        }
        if !d.randomize_services && !g.from_ini {
            return Err(g.origin.error("no services for the deckies").hint(Some(
                "pass --services a,b, --archetype NAME or --randomize-services".into(),
            )));
        }
        if !d.randomize_services && draft.member == 0 {
            warnings.push(g.origin.warning(
                "no `services =` or `archetype =`: picking 1-3 random services (as the original DECNET did); pass --randomize-services to make this explicit",
            ));
        }
        Ok(self.random_services(&mut seed.rng_for("services")))
    }

    /// 1–3 services from the random pool whose ports do not clash.
    fn random_services(&self, rng: &mut SeedRng) -> Vec<String> {
        let pool: Vec<&ServiceDef> = self.catalogue.services().filter(|s| s.random_pool).collect();
        let want = rng.range(1, 3) as usize;
        let mut chosen: Vec<&ServiceDef> = Vec::new();
        for candidate in rng.shuffled(&pool) {
            let clashes = chosen.iter().any(|c| {
                c.ports
                    .iter()
                    .any(|p| candidate.ports.iter().any(|q| p.clashes_with(q)))
            });
            if !clashes {
                chosen.push(candidate);
            }
            if chosen.len() == want {
                break;
            }
        }
        chosen.into_iter().map(|s| s.slug.clone()).collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn persona(
        &self,
        def: &ServiceDef,
        sections: &[&PersonaSection],
        group: &DeckyGroup,
        used_extra: &mut [bool],
        archetype: Option<&Archetype>,
        family: &OsFamily,
        facts: &Facts<'_>,
        seed: &DeckySeed,
    ) -> Result<PersonaConfig, ConfigError> {
        let mut config = PersonaConfig::new();
        for section in sections.iter().filter(|s| s.service == def.slug) {
            for entry in &section.entries {
                let key_name = match &entry.origin {
                    Origin::Ini { key, .. } => key.as_str(),
                    _ => continue,
                };
                let key = def.key(key_name).ok_or_else(|| {
                    entry.origin.error(format!("not a persona key of {}", def.slug)).hint(
                        did_you_mean(key_name, def.key_names()).or_else(|| {
                            let all: Vec<&str> = def.keys.keys().map(String::as_str).collect();
                            Some(if all.is_empty() {
                                format!("{} takes no persona keys", def.slug)
                            } else {
                                crate::error::one_of(all)
                            })
                        }),
                    )
                })?;
                let value = key.ty.parse_str(&entry.value).map_err(|m| entry.origin.error(m))?;
                config.insert(key.name.clone(), value);
            }
        }
        for (i, extra) in group.extra.iter().enumerate() {
            let Origin::Ini { key: key_name, .. } = &extra.origin else {
                continue;
            };
            if let Some(key) = def.key(key_name) {
                used_extra[i] = true;
                if !config.contains_key(&key.name) {
                    let value = key.ty.parse_str(&extra.value).map_err(|m| extra.origin.error(m))?;
                    config.insert(key.name.clone(), value);
                }
            }
        }
        let layers = [
            archetype.map(|a| &a.service_defaults),
            Some(&family.service_defaults),
            Some(&facts.distro.service_defaults),
        ];
        for key in def.keys.values() {
            if config.contains_key(&key.name) {
                continue;
            }
            let rule = layers
                .iter()
                .flatten()
                .find_map(|l| l.get(&def.slug).and_then(|keys| keys.get(&key.name)))
                .or(key.default.as_ref());
            if let Some(rule) = rule {
                let label = format!("persona.{}.{}", def.slug, key.name);
                config.insert(key.name.clone(), facts.apply(rule, seed, &label));
            }
        }
        Ok(config)
    }
}

/// A custom service's persona: its sub-section's keys, as strings (passed to the image).
fn custom_persona(slug: &str, sections: &[&PersonaSection]) -> PersonaConfig {
    let mut config = PersonaConfig::new();
    for section in sections.iter().filter(|s| s.service == slug) {
        for entry in &section.entries {
            if let Origin::Ini { key, .. } = &entry.origin {
                config.insert(key.clone(), PersonaValue::String(entry.value.clone()));
            }
        }
    }
    config
}

struct Facts<'a> {
    hostname: &'a str,
    distro: &'a Distro,
    decky: &'a str,
}

impl Facts<'_> {
    fn apply(&self, rule: &DefaultRule, seed: &DeckySeed, label: &str) -> PersonaValue {
        match rule {
            DefaultRule::Value(v) => v.clone(),
            DefaultRule::Pick(values) => seed.rng_for(label).pick(values).clone(),
            DefaultRule::Fact(fact) => PersonaValue::String(match fact {
                DeckyFact::Hostname => self.hostname.to_string(),
                DeckyFact::NetbiosName => {
                    let label = self.hostname.split('.').next().unwrap_or(self.hostname);
                    label.to_ascii_uppercase().chars().take(15).collect()
                }
                DeckyFact::KernelRelease => self.distro.kernel.release.clone(),
                DeckyFact::DistroName => self.distro.display_name.clone(),
                DeckyFact::DeckyName => self.decky.to_string(),
            }),
        }
    }
}

fn check_hostname(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid hostname"))
    }
}

fn assign_ips(
    drafts: &[Draft<'_>],
    deckies: &mut [DeckySpec],
    net: &Network,
    options: &PlanOptions,
) -> Result<(), ConfigError> {
    let reserved: BTreeSet<Ipv4Addr> = options.reserved.iter().copied().collect();
    let mut explicit: BTreeMap<Ipv4Addr, &Origin> = BTreeMap::new();
    for draft in drafts {
        let Some(ip) = &draft.group.ip else {
            continue;
        };
        let (addr, origin) = (ip.value, &ip.origin);
        if let Some(reason) = unusable_reason(&net.subnet, net.gateway, addr) {
            return Err(origin.error(format!("{addr} {reason}")));
        }
        if net.host_ips.contains(&addr) {
            return Err(origin.error(format!(
                "{addr} is this host's own address on {}",
                net.interface.as_deref().unwrap_or("its interface")
            )));
        }
        if reserved.contains(&addr) {
            return Err(origin.error(format!("{addr} is reserved (used by the lab's own hosts)")));
        }
        if let Some(first) = explicit.insert(addr, origin) {
            let at = match first {
                Origin::Ini { section, line, .. } => format!(" by [{section}] on line {line}"),
                _ => String::new(),
            };
            return Err(origin.error(format!("{addr} is already used{at}")));
        }
    }
    let taken: BTreeSet<Ipv4Addr> = explicit.keys().chain(&net.host_ips).chain(&reserved).copied().collect();
    let mut allocator = IpAllocator::new(net.subnet, net.gateway, net.start, taken);
    for (draft, decky) in drafts.iter().zip(deckies.iter_mut()) {
        decky.ip = match &draft.group.ip {
            Some(ip) => ip.value,
            None => allocator.next_free().ok_or_else(|| {
                draft
                    .group
                    .origin
                    .error(format!(
                        "no free address left in {} for `{}` ({} deckies, {} usable addresses from {})",
                        net.subnet,
                        draft.name,
                        drafts.len(),
                        usable_hosts(&net.subnet),
                        net.start
                    ))
                    .hint(Some(
                        "use a larger subnet, an earlier --ip-start or fewer deckies".into(),
                    ))
            })?,
        };
    }
    Ok(())
}
