//! Service definitions (`personas/services/<slug>.toml`): ports, description, and
//! the typed schema of the service's persona keys with their defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::port::Port;
use crate::error::CatalogueError;
use crate::persona::{KeyType, PersonaValue};

/// One service DECNET can run on a decky.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceDef {
    pub slug: String,
    pub description: String,
    pub ports: Vec<Port>,
    /// Whether `--randomize-services` may pick it.
    pub random_pool: bool,
    pub keys: BTreeMap<String, KeyDef>,
}

impl ServiceDef {
    /// The key called `name` or having `name` as an alias.
    pub fn key(&self, name: &str) -> Option<&KeyDef> {
        self.keys
            .get(name)
            .or_else(|| self.keys.values().find(|k| k.aliases.iter().any(|a| a == name)))
    }

    /// Every accepted spelling (names and aliases), for hints.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys
            .values()
            .flat_map(|k| std::iter::once(k.name.as_str()).chain(k.aliases.iter().map(String::as_str)))
    }
}

/// One persona key of a service.
#[derive(Debug, Clone, Serialize)]
pub struct KeyDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: KeyType,
    pub description: String,
    /// Other spellings accepted in INI files (the original's env-style names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<DefaultRule>,
}

/// How a persona key gets a value when the fleet file does not set it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultRule {
    /// This value.
    Value(PersonaValue),
    /// One of these, chosen by the decky's seed (so deckies differ, redeploys don't).
    Pick(Vec<PersonaValue>),
    /// A fact about the decky itself.
    Fact(DeckyFact),
}

/// Facts about a decky that a persona default can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeckyFact {
    /// The decky's hostname.
    Hostname,
    /// The hostname's first label, upper case, at most 15 characters (NetBIOS).
    NetbiosName,
    /// The distro's kernel release (`uname -r`).
    KernelRelease,
    /// The distro's display name.
    DistroName,
    /// The decky's name in the fleet.
    DeckyName,
}

/// Per-service default values from an archetype, OS family or distro:
/// service slug → key → rule.
pub type ServiceDefaults = BTreeMap<String, BTreeMap<String, DefaultRule>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    description: String,
    ports: Vec<String>,
    #[serde(default = "yes")]
    random_pool: bool,
    /// Take every key of another service first (https from http, smtp_relay from smtp).
    #[serde(default)]
    keys_from: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, toml::Table>,
}

fn yes() -> bool {
    true
}

/// Parses every service file: (file, slug, text) triples.
pub(crate) fn parse_services(files: &[(&str, &str, &str)]) -> Result<BTreeMap<String, ServiceDef>, CatalogueError> {
    let mut raws = BTreeMap::new();
    for (file, slug, text) in files {
        let raw: RawService = toml::from_str(text).map_err(|e| CatalogueError::new(*file, "", toml_message(&e)))?;
        raws.insert(slug.to_string(), (*file, raw));
    }
    let mut out = BTreeMap::new();
    for (slug, (file, raw)) in &raws {
        let mut keys = BTreeMap::new();
        if let Some(base) = &raw.keys_from {
            let Some((_, base_raw)) = raws.get(base) else {
                let hint = crate::error::did_you_mean(base, raws.keys().map(String::as_str));
                return Err(CatalogueError::new(
                    *file,
                    "keys_from",
                    format!("unknown service `{base}`{}", suffix(hint)),
                ));
            };
            if base_raw.keys_from.is_some() {
                return Err(CatalogueError::new(
                    *file,
                    "keys_from",
                    format!("`{base}` itself uses keys_from; chains are not allowed"),
                ));
            }
            keys.extend(base_raw.keys.clone());
        }
        keys.extend(raw.keys.clone());
        out.insert(slug.clone(), build_service(file, slug, raw, keys)?);
    }
    Ok(out)
}

fn suffix(hint: Option<String>) -> String {
    hint.map(|h| format!("; {h}")).unwrap_or_default()
}

/// Parses one service file alone (no `keys_from`).
#[cfg(test)]
fn parse_service(file: &str, slug: &str, text: &str) -> Result<ServiceDef, CatalogueError> {
    let raw: RawService = toml::from_str(text).map_err(|e| CatalogueError::new(file, "", toml_message(&e)))?;
    let keys = raw.keys.clone();
    build_service(file, slug, &raw, keys)
}

fn build_service(
    file: &str,
    slug: &str,
    raw: &RawService,
    raw_keys: BTreeMap<String, toml::Table>,
) -> Result<ServiceDef, CatalogueError> {
    let mut ports = Vec::new();
    for (i, p) in raw.ports.iter().enumerate() {
        let port: Port = p
            .parse()
            .map_err(|e: String| CatalogueError::new(file, format!("ports[{i}]"), e))?;
        if ports.iter().any(|q: &Port| q.clashes_with(&port)) {
            return Err(CatalogueError::new(
                file,
                format!("ports[{i}]"),
                format!("{port} is listed twice"),
            ));
        }
        ports.push(port);
    }
    if ports.is_empty() {
        return Err(CatalogueError::new(file, "ports", "a service needs at least one port"));
    }
    let mut keys = BTreeMap::new();
    for (name, table) in raw_keys {
        let path = format!("keys.{name}");
        if !is_identifier(&name) {
            return Err(CatalogueError::new(file, path, "key names are lower_snake_case"));
        }
        let key = parse_key(&name, table).map_err(|(sub, msg)| CatalogueError::new(file, join(&path, &sub), msg))?;
        keys.insert(name, key);
    }
    let def = ServiceDef {
        slug: slug.to_string(),
        description: raw.description.clone(),
        ports,
        random_pool: raw.random_pool,
        keys,
    };
    // An alias must not shadow another key or alias.
    let mut seen = BTreeMap::new();
    for key in def.keys.values() {
        for spelling in std::iter::once(&key.name).chain(&key.aliases) {
            if let Some(other) = seen.insert(spelling.clone(), key.name.clone()) {
                return Err(CatalogueError::new(
                    file,
                    format!("keys.{}.aliases", key.name),
                    format!("`{spelling}` already names key `{other}`"),
                ));
            }
        }
    }
    Ok(def)
}

/// Parses a key table; errors carry the sub-key path and message.
fn parse_key(name: &str, mut table: toml::Table) -> Result<KeyDef, (String, String)> {
    let description = match table.remove("description") {
        Some(toml::Value::String(s)) => s,
        Some(_) => return Err(("description".into(), "must be a string".into())),
        None => return Err(("description".into(), "missing".into())),
    };
    let aliases = match table.remove("aliases") {
        None => Vec::new(),
        Some(v) => v
            .try_into::<Vec<String>>()
            .map_err(|_| ("aliases".to_string(), "must be a list of strings".to_string()))?,
    };
    let default = table.remove("default");
    let ty: KeyType = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ("type".to_string(), e.message().to_string()))?;
    let default = default
        .map(|v| parse_default(&ty, &v))
        .transpose()
        .map_err(|m| ("default".to_string(), m))?;
    Ok(KeyDef {
        name: name.to_string(),
        ty,
        description,
        aliases,
        default,
    })
}

/// Reads a default: a plain value, `{ pick = [...] }` or `{ fact = "hostname" }`.
pub(crate) fn parse_default(ty: &KeyType, value: &toml::Value) -> Result<DefaultRule, String> {
    if let toml::Value::Table(t) = value {
        if let (1, Some(items)) = (t.len(), t.get("pick")) {
            let items = items.as_array().ok_or("`pick` must be a list")?;
            if items.is_empty() {
                return Err("`pick` needs at least one value".into());
            }
            let values = items.iter().map(|v| ty.parse_toml(v)).collect::<Result<Vec<_>, _>>()?;
            return Ok(DefaultRule::Pick(values));
        }
        if let (1, Some(fact)) = (t.len(), t.get("fact")) {
            let fact: DeckyFact = fact.clone().try_into().map_err(|_| {
                format!(
                    "unknown fact {fact:?} (known: hostname, netbios_name, kernel_release, distro_name, decky_name)"
                )
            })?;
            return Ok(DefaultRule::Fact(fact));
        }
    }
    ty.parse_toml(value).map(DefaultRule::Value)
}

/// Parses a `[service_defaults.<service>]` table of an archetype, family or distro
/// against the service schemas.
pub(crate) fn parse_service_defaults(
    file: &str,
    prefix: &str,
    raw: &BTreeMap<String, toml::Table>,
    services: &BTreeMap<String, ServiceDef>,
) -> Result<ServiceDefaults, CatalogueError> {
    let mut out = ServiceDefaults::new();
    for (slug, table) in raw {
        let path = format!("{prefix}service_defaults.{slug}");
        let service = services.get(slug).ok_or_else(|| {
            let hint = crate::error::did_you_mean(slug, services.keys().map(String::as_str));
            CatalogueError::new(file, &path, format!("unknown service{}", suffix(hint)))
        })?;
        let mut keys = BTreeMap::new();
        for (key, value) in table {
            let def = service.key(key).ok_or_else(|| {
                let hint = crate::error::did_you_mean(key, service.key_names());
                CatalogueError::new(
                    file,
                    format!("{path}.{key}"),
                    format!("not a persona key of {slug}{}", suffix(hint)),
                )
            })?;
            let rule =
                parse_default(&def.ty, value).map_err(|m| CatalogueError::new(file, format!("{path}.{key}"), m))?;
            keys.insert(def.name.clone(), rule);
        }
        out.insert(slug.clone(), keys);
    }
    Ok(out)
}

pub(crate) fn toml_message(e: &toml::de::Error) -> String {
    // toml's Display spans several lines with a source excerpt; keep it to one.
    match e.span() {
        Some(_) => e.to_string().lines().next().unwrap_or_default().to_string() + ": " + e.message(),
        None => e.message().to_string(),
    }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn join(a: &str, b: &str) -> String {
    if b.is_empty() {
        a.to_string()
    } else {
        format!("{a}.{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH: &str = r#"
description = "SSH"
ports = ["22/tcp"]
[keys.users]
type = "credentials"
description = "accepted logins"
default = "root:toor"
[keys.ssh_version]
type = "string"
description = "banner"
aliases = ["version"]
default = { pick = ["OpenSSH_9.2p1", "OpenSSH_8.9p1"] }
[keys.kernel_version]
type = "string"
description = "uname -r"
default = { fact = "kernel_release" }
"#;

    #[test]
    fn parses_keys_defaults_and_aliases() {
        let s = parse_service("services/ssh.toml", "ssh", SSH).unwrap();
        assert_eq!(s.ports, vec![Port::tcp(22)]);
        assert!(matches!(s.key("version").unwrap().default, Some(DefaultRule::Pick(ref v)) if v.len() == 2));
        assert_eq!(
            s.key("kernel_version").unwrap().default,
            Some(DefaultRule::Fact(DeckyFact::KernelRelease))
        );
        assert!(s.key("nope").is_none());
    }

    #[test]
    fn errors_name_the_key_path() {
        let bad = SSH.replace("type = \"credentials\"", "type = \"credentialz\"");
        let e = parse_service("services/ssh.toml", "ssh", &bad).unwrap_err();
        assert_eq!(e.key, "keys.users.type");
        let bad = SSH.replace("default = \"root:toor\"", "default = \"roottoor\"");
        let e = parse_service("services/ssh.toml", "ssh", &bad).unwrap_err();
        assert_eq!(e.key, "keys.users.default");
        let bad = SSH.replace("description = \"uname -r\"", "description = \"uname -r\"\ndefualt = 1");
        let e = parse_service("services/ssh.toml", "ssh", &bad).unwrap_err();
        assert_eq!(e.key, "keys.kernel_version.type", "{e}");
        assert!(e.message.contains("defualt"), "{e}");
        let bad = SSH.replace("aliases = [\"version\"]", "aliases = [\"users\"]");
        let e = parse_service("services/ssh.toml", "ssh", &bad).unwrap_err();
        assert!(e.message.contains("already names"), "{e}");
        let bad = SSH.replace("ports = [\"22/tcp\"]", "ports = [\"22\"]");
        let e = parse_service("services/ssh.toml", "ssh", &bad).unwrap_err();
        assert_eq!(e.key, "ports[0]");
    }
}
