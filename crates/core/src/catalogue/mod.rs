//! The persona catalogue: OS families, distros, archetypes, services, hostname
//! styles and MAC vendors, loaded from `personas/` and validated once at start.
//!
//! Raw TOML is deserialized with unknown fields denied, then checked and
//! cross-referenced (an archetype's services exist, a default fits its key's
//! type …). After [`Catalogue::load`] succeeds every reference in it is valid, so
//! the rest of DECNET looks things up without re-checking.

pub mod hostname;
mod os;
mod personality;
pub mod port;
mod service;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::hostname::HostnameStyle;
pub use self::os::{Distro, Kernel, OsFamily, Userland};
pub use self::personality::{
    AckChoice, ClosedReply, EchoDf, Icmp, IpIdPolicy, IpIds, Isn, OPTION_SETS, PROBE_CLASSES, Personality, ProbeReply,
    RstAck, SeqChoice, Shaping, Tcp, tcp_flags, template_len,
};
pub use self::port::{Port, Transport};
pub use self::service::{DeckyFact, DefaultRule, KeyDef, ServiceDef, ServiceDefaults};
use self::service::{is_identifier, parse_service_defaults, toml_message};
use crate::error::{CatalogueError, did_you_mean};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_personas.rs"));
}

/// A machine identity: services, OS family and distros in one slug.
#[derive(Debug, Clone, Serialize)]
pub struct Archetype {
    pub slug: String,
    pub description: String,
    pub services: Vec<String>,
    pub os_family: String,
    /// Preferred distros, cycled round-robin.
    pub distros: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mac_vendors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname_style: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_defaults: ServiceDefaults,
}

/// A NIC vendor whose OUIs a persona's MACs may carry.
#[derive(Debug, Clone, Serialize)]
pub struct Vendor {
    pub slug: String,
    pub name: String,
    #[serde(serialize_with = "serialize_ouis")]
    pub ouis: Vec<[u8; 3]>,
}

/// Everything under `personas/`, validated.
#[derive(Debug, Clone)]
pub struct Catalogue {
    families: BTreeMap<String, OsFamily>,
    personalities: BTreeMap<String, Personality>,
    distros: Vec<Distro>,
    archetypes: Vec<Archetype>,
    services: BTreeMap<String, ServiceDef>,
    hostname_styles: BTreeMap<String, HostnameStyle>,
    vendors: BTreeMap<String, Vendor>,
}

/// The family a decky gets when nothing else says.
pub const DEFAULT_FAMILY: &str = "linux";

impl Catalogue {
    /// The catalogue compiled into the binary.
    pub fn embedded() -> Result<Self, CatalogueError> {
        Self::load(
            embedded::EMBEDDED
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        )
    }

    /// Loads every `*.toml` under `dir` (a copy of `personas/`).
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogueError> {
        let mut files = Vec::new();
        read_tree(dir, dir, &mut files)
            .map_err(|e| CatalogueError::new(dir.display().to_string(), "", e.to_string()))?;
        files.sort();
        Self::load(files)
    }

    /// Loads from (path relative to the catalogue root, contents) pairs.
    pub fn load(files: Vec<(String, String)>) -> Result<Self, CatalogueError> {
        let find = |name: &str| files.iter().find(|(p, _)| p == name).map(|(_, t)| t.as_str());
        let in_dir = |dir: &str| {
            files
                .iter()
                .filter_map(move |(p, t)| {
                    let rest = p.strip_prefix(dir)?.strip_prefix('/')?;
                    let stem = rest.strip_suffix(".toml")?;
                    (!stem.contains('/')).then_some((p.as_str(), stem, t.as_str()))
                })
                .collect::<Vec<_>>()
        };

        let service_files = in_dir("services");
        for (file, slug, _) in &service_files {
            check_slug(file, slug)?;
        }
        let services = service::parse_services(&service_files)?;
        let mut families = BTreeMap::new();
        for (file, slug, text) in in_dir("os/families") {
            check_slug(file, slug)?;
            families.insert(slug.to_string(), os::parse_family(file, slug, text, &services)?);
        }
        let mut personalities = BTreeMap::new();
        for (file, slug, text) in in_dir("os/personalities") {
            check_slug(file, slug)?;
            personalities.insert(slug.to_string(), personality::parse_personality(file, slug, text)?);
        }
        let mut distros = Vec::new();
        for (file, slug, text) in in_dir("distros") {
            check_slug(file, slug)?;
            distros.push(os::parse_distro(file, slug, text, &services)?);
        }
        distros.sort_by(|a, b| (a.order, &a.slug).cmp(&(b.order, &b.slug)));

        let hostnames = find("hostnames.toml").ok_or_else(|| CatalogueError::new("hostnames.toml", "", "missing"))?;
        let hostname_styles = parse_hostnames(hostnames)?;
        let vendors_text =
            find("mac_vendors.toml").ok_or_else(|| CatalogueError::new("mac_vendors.toml", "", "missing"))?;
        let vendors = parse_vendors(vendors_text)?;
        let archetypes_text =
            find("archetypes.toml").ok_or_else(|| CatalogueError::new("archetypes.toml", "", "missing"))?;
        let archetypes = parse_archetypes(archetypes_text, &services)?;

        let catalogue = Self {
            families,
            personalities,
            distros,
            archetypes,
            services,
            hostname_styles,
            vendors,
        };
        catalogue.cross_check()?;
        Ok(catalogue)
    }

    pub fn families(&self) -> impl Iterator<Item = &OsFamily> {
        self.families.values()
    }

    pub fn family(&self, slug: &str) -> Option<&OsFamily> {
        self.families.get(slug)
    }

    pub fn personalities(&self) -> impl Iterator<Item = &Personality> {
        self.personalities.values()
    }

    pub fn personality(&self, slug: &str) -> Option<&Personality> {
        self.personalities.get(slug)
    }

    /// Distros in round-robin order.
    pub fn distros(&self) -> &[Distro] {
        &self.distros
    }

    pub fn distro(&self, slug: &str) -> Option<&Distro> {
        self.distros.iter().find(|d| d.slug == slug)
    }

    /// Archetypes in catalogue order.
    pub fn archetypes(&self) -> &[Archetype] {
        &self.archetypes
    }

    pub fn archetype(&self, slug: &str) -> Option<&Archetype> {
        self.archetypes.iter().find(|a| a.slug == slug)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceDef> {
        self.services.values()
    }

    pub fn service(&self, slug: &str) -> Option<&ServiceDef> {
        self.services.get(slug)
    }

    pub fn hostname_style(&self, name: &str) -> Option<&HostnameStyle> {
        self.hostname_styles.get(name)
    }

    pub fn vendor(&self, slug: &str) -> Option<&Vendor> {
        self.vendors.get(slug)
    }

    pub fn vendors(&self) -> impl Iterator<Item = &Vendor> {
        self.vendors.values()
    }

    /// References between files: styles, vendors, families, distros, services.
    fn cross_check(&self) -> Result<(), CatalogueError> {
        let style_names = || self.hostname_styles.keys().map(String::as_str);
        let check_style = |file: &str, key: &str, style: &str| {
            if self.hostname_styles.contains_key(style) {
                Ok(())
            } else {
                Err(unknown(file, key, "hostname style", style, style_names()))
            }
        };
        let check_vendors = |file: &str, key: &str, vendors: &[String]| {
            vendors.iter().try_for_each(|v| {
                if self.vendors.contains_key(v) {
                    Ok(())
                } else {
                    Err(unknown(
                        file,
                        key,
                        "MAC vendor",
                        v,
                        self.vendors.keys().map(String::as_str),
                    ))
                }
            })
        };
        if !self.families.contains_key(DEFAULT_FAMILY) {
            return Err(CatalogueError::new(
                "os/families",
                "",
                format!("the `{DEFAULT_FAMILY}` family is required"),
            ));
        }
        if self.distros.is_empty() {
            return Err(CatalogueError::new("distros", "", "at least one distro is required"));
        }
        for f in self.families.values() {
            let file = format!("os/families/{}.toml", f.slug);
            if let Some(style) = &f.hostname_style {
                check_style(&file, "hostname_style", style)?;
            }
            check_vendors(&file, "mac_vendors", &f.mac_vendors)?;
            if !self.personalities.contains_key(&f.personality) {
                return Err(unknown(
                    &file,
                    "personality",
                    "OS personality",
                    &f.personality,
                    self.personalities.keys().map(String::as_str),
                ));
            }
        }
        for p in self.personalities.values() {
            if !self.families.contains_key(&p.family) {
                return Err(unknown(
                    &format!("os/personalities/{}.toml", p.slug),
                    "family",
                    "OS family",
                    &p.family,
                    self.families.keys().map(String::as_str),
                ));
            }
        }
        for d in &self.distros {
            check_style(&format!("distros/{}.toml", d.slug), "hostname_style", &d.hostname_style)?;
        }
        for a in &self.archetypes {
            let key = |k: &str| format!("{}.{k}", a.slug);
            let file = "archetypes.toml";
            if !self.families.contains_key(&a.os_family) {
                return Err(unknown(
                    file,
                    &key("os_family"),
                    "OS family",
                    &a.os_family,
                    self.families.keys().map(String::as_str),
                ));
            }
            for s in &a.services {
                if !self.services.contains_key(s) {
                    return Err(unknown(
                        file,
                        &key("services"),
                        "service",
                        s,
                        self.services.keys().map(String::as_str),
                    ));
                }
            }
            if a.distros.is_empty() {
                return Err(CatalogueError::new(file, key("distros"), "needs at least one distro"));
            }
            for d in &a.distros {
                if self.distro(d).is_none() {
                    return Err(unknown(
                        file,
                        &key("distros"),
                        "distro",
                        d,
                        self.distros.iter().map(|d| d.slug.as_str()),
                    ));
                }
            }
            check_vendors(file, &key("mac_vendors"), &a.mac_vendors)?;
            if let Some(style) = &a.hostname_style {
                check_style(file, &key("hostname_style"), style)?;
            }
        }
        Ok(())
    }
}

fn unknown<'a>(file: &str, key: &str, what: &str, value: &str, known: impl Iterator<Item = &'a str>) -> CatalogueError {
    let hint = did_you_mean(value, known).map(|h| format!("; {h}")).unwrap_or_default();
    CatalogueError::new(file, key, format!("unknown {what} `{value}`{hint}"))
}

fn check_slug(file: &str, slug: &str) -> Result<(), CatalogueError> {
    let ok = !slug.is_empty()
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CatalogueError::new(
            file,
            "",
            "file names (slugs) are lower case letters, digits, `_` and `-`",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostnames {
    words: Vec<String>,
    styles: BTreeMap<String, RawStyle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStyle {
    pattern: String,
    #[serde(default)]
    words: Option<Vec<String>>,
}

fn parse_hostnames(text: &str) -> Result<BTreeMap<String, HostnameStyle>, CatalogueError> {
    let file = "hostnames.toml";
    let raw: RawHostnames = toml::from_str(text).map_err(|e| CatalogueError::new(file, "", toml_message(&e)))?;
    raw.styles
        .into_iter()
        .map(|(name, style)| {
            let words = style.words.unwrap_or_else(|| raw.words.clone());
            HostnameStyle::parse(&style.pattern, words)
                .map(|s| (name.clone(), s))
                .map_err(|m| CatalogueError::new(file, format!("styles.{name}"), m))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVendor {
    name: String,
    ouis: Vec<String>,
}

fn parse_vendors(text: &str) -> Result<BTreeMap<String, Vendor>, CatalogueError> {
    let file = "mac_vendors.toml";
    let raw: BTreeMap<String, RawVendor> =
        toml::from_str(text).map_err(|e| CatalogueError::new(file, "", toml_message(&e)))?;
    let mut out = BTreeMap::new();
    for (slug, v) in raw {
        if v.ouis.is_empty() {
            return Err(CatalogueError::new(
                file,
                format!("{slug}.ouis"),
                "needs at least one OUI",
            ));
        }
        let ouis = v
            .ouis
            .iter()
            .map(|o| parse_oui(o).map_err(|m| CatalogueError::new(file, format!("{slug}.ouis"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(
            slug.clone(),
            Vendor {
                slug,
                name: v.name,
                ouis,
            },
        );
    }
    Ok(out)
}

/// `3C:D9:2B` → bytes; must be a globally administered unicast prefix.
fn parse_oui(text: &str) -> Result<[u8; 3], String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let bytes: Option<Vec<u8>> = parts
        .iter()
        .map(|p| (p.len() == 2).then(|| u8::from_str_radix(p, 16).ok()).flatten())
        .collect();
    let bytes: [u8; 3] = bytes
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("`{text}` is not an OUI like `3C:D9:2B`"))?;
    if bytes[0] & 0b11 != 0 {
        return Err(format!(
            "`{text}` is a multicast or locally administered prefix, not a vendor OUI"
        ));
    }
    Ok(bytes)
}

fn serialize_ouis<S: serde::Serializer>(ouis: &[[u8; 3]], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ouis.iter().map(|o| format!("{:02X}:{:02X}:{:02X}", o[0], o[1], o[2])))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchetypes {
    archetype: Vec<RawArchetype>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchetype {
    slug: String,
    description: String,
    services: Vec<String>,
    os_family: String,
    distros: Vec<String>,
    #[serde(default)]
    mac_vendors: Vec<String>,
    #[serde(default)]
    hostname_style: Option<String>,
    #[serde(default)]
    service_defaults: BTreeMap<String, toml::Table>,
}

fn parse_archetypes(text: &str, services: &BTreeMap<String, ServiceDef>) -> Result<Vec<Archetype>, CatalogueError> {
    let file = "archetypes.toml";
    let raw: RawArchetypes = toml::from_str(text).map_err(|e| CatalogueError::new(file, "", toml_message(&e)))?;
    let mut out: Vec<Archetype> = Vec::new();
    for a in raw.archetype {
        if !is_identifier(&a.slug.replace('-', "_")) {
            return Err(CatalogueError::new(
                file,
                &a.slug,
                "archetype slugs are lower case letters, digits and `-`",
            ));
        }
        if out.iter().any(|b| b.slug == a.slug) {
            return Err(CatalogueError::new(file, &a.slug, "defined twice"));
        }
        let service_defaults = parse_service_defaults(file, &format!("{}.", a.slug), &a.service_defaults, services)?;
        out.push(Archetype {
            slug: a.slug,
            description: a.description,
            services: a.services,
            os_family: a.os_family,
            distros: a.distros,
            mac_vendors: a.mac_vendors,
            hostname_style: a.hostname_style,
            service_defaults,
        });
    }
    Ok(out)
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            let rel = path
                .strip_prefix(root)
                .map_err(std::io::Error::other)?
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oui_parsing() {
        assert_eq!(parse_oui("3C:D9:2B"), Ok([0x3c, 0xd9, 0x2b]));
        assert_eq!(parse_oui("00-00-0c"), Ok([0, 0, 0x0c]));
        assert!(parse_oui("02:00:00").is_err());
        assert!(parse_oui("3C:D9").is_err());
        assert!(parse_oui("3C:D9:2BX").is_err());
    }
}
