//! OS families (`personas/os/families/*.toml`) and distros (`personas/distros/*.toml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::service::{ServiceDef, ServiceDefaults, parse_service_defaults, toml_message};
use crate::error::CatalogueError;

/// An `nmap_os` family: the TCP/IP stack a decky presents.
#[derive(Debug, Clone, Serialize)]
pub struct OsFamily {
    pub slug: String,
    pub display_name: String,
    pub description: String,
    /// Per-namespace sysctls (`net.ipv4.*`, `net.ipv6.*`), applied inside the decky.
    pub sysctls: BTreeMap<String, String>,
    /// `net.ipv4.ip_default_ttl`, the first thing any scanner reads.
    pub ttl: u8,
    /// Overrides the distro's hostname style (Windows names its hosts its own way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname_style: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mac_vendors: Vec<String>,
    /// The OS personality its deckies get unless they name another.
    pub personality: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_defaults: ServiceDefaults,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFamily {
    display_name: String,
    description: String,
    sysctls: BTreeMap<String, toml::Value>,
    #[serde(default)]
    hostname_style: Option<String>,
    #[serde(default)]
    mac_vendors: Vec<String>,
    personality: String,
    #[serde(default)]
    service_defaults: BTreeMap<String, toml::Table>,
}

pub(crate) fn parse_family(
    file: &str,
    slug: &str,
    text: &str,
    services: &BTreeMap<String, ServiceDef>,
) -> Result<OsFamily, CatalogueError> {
    let raw: RawFamily = toml::from_str(text).map_err(|e| CatalogueError::new(file, "", toml_message(&e)))?;
    let sysctls = parse_sysctls(file, raw.sysctls)?;
    let ttl = sysctls
        .get("net.ipv4.ip_default_ttl")
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|t| *t > 0)
        .ok_or_else(|| CatalogueError::new(file, "sysctls", "needs \"net.ipv4.ip_default_ttl\" between 1 and 255"))?;
    Ok(OsFamily {
        slug: slug.to_string(),
        display_name: raw.display_name,
        description: raw.description,
        sysctls,
        ttl,
        hostname_style: raw.hostname_style,
        mac_vendors: raw.mac_vendors,
        personality: raw.personality,
        service_defaults: parse_service_defaults(file, "", &raw.service_defaults, services)?,
    })
}

/// Per-namespace sysctls: `net.ipv4.*` / `net.ipv6.*` keys, integer values.
pub(crate) fn parse_sysctls(
    file: &str,
    raw: BTreeMap<String, toml::Value>,
) -> Result<BTreeMap<String, String>, CatalogueError> {
    let mut sysctls = BTreeMap::new();
    for (key, value) in raw {
        let path = format!("sysctls.\"{key}\"");
        if !(key.starts_with("net.ipv4.") || key.starts_with("net.ipv6."))
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        {
            // net.core.* and others are global, not per namespace: setting them would
            // change the host, so only the per-netns trees are allowed.
            return Err(CatalogueError::new(
                file,
                path,
                "only per-namespace net.ipv4.* / net.ipv6.* sysctls are allowed",
            ));
        }
        let text = match value {
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::String(s) if !s.is_empty() && s.split_whitespace().all(|w| w.parse::<i64>().is_ok()) => s,
            _ => {
                return Err(CatalogueError::new(
                    file,
                    path,
                    "value must be an integer or space-separated integers",
                ));
            }
        };
        sysctls.insert(key, text);
    }
    Ok(sysctls)
}

/// A Linux distribution a decky's userland imitates.
#[derive(Debug, Clone, Serialize)]
pub struct Distro {
    pub slug: String,
    /// Position in the round-robin over all distros.
    pub order: u32,
    pub display_name: String,
    /// The OCI image of this distro, for bring-your-own services.
    pub image: String,
    pub hostname_style: String,
    /// Login shell of root and users.
    pub shell: String,
    /// Default prompt, in bash `PS1` syntax (`\u@\h:\w\$ `).
    pub ps1: String,
    /// `/etc/issue`, shown by telnet before `login:`.
    pub issue: String,
    /// `/etc/os-release`, verbatim.
    pub os_release: String,
    pub kernel: Kernel,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_defaults: ServiceDefaults,
}

/// What a login on a decky shows of its distribution: carried in the
/// [`DeckySpec`](crate::fleet::DeckySpec), so the engine and its emulators
/// (the shell of SSH and Telnet) need no catalogue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Userland {
    /// `PRETTY_NAME`-like display name (`Debian 12 (Bookworm)`).
    pub distro_name: String,
    /// Login shell of root and users.
    pub shell: String,
    /// Default prompt, in bash `PS1` syntax.
    pub ps1: String,
    /// `/etc/issue`.
    pub issue: String,
    /// `/etc/os-release`, verbatim.
    pub os_release: String,
    pub kernel: Kernel,
}

/// What `uname` and `/proc/version` say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// `uname -r`, e.g. `6.1.0-28-amd64`.
    pub release: String,
    /// `uname -v`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)`.
    pub version: String,
    /// `uname -m`.
    pub machine: String,
    /// `uname -a` with `{hostname}`, `{release}`, `{version}`, `{machine}` placeholders
    /// (distros print different trailing fields).
    pub uname_a: String,
    /// `/proc/version`, with the same placeholders.
    pub proc_version: String,
}

impl Distro {
    /// What a login on a decky of this distro shows.
    pub fn userland(&self) -> Userland {
        Userland {
            distro_name: self.display_name.clone(),
            shell: self.shell.clone(),
            ps1: self.ps1.clone(),
            issue: self.issue.clone(),
            os_release: self.os_release.clone(),
            kernel: self.kernel.clone(),
        }
    }

    /// `uname -a` on a host called `hostname`.
    pub fn uname_a(&self, hostname: &str) -> String {
        self.kernel_template(&self.kernel.uname_a, hostname)
    }

    pub fn proc_version(&self) -> String {
        self.kernel_template(&self.kernel.proc_version, "")
    }

    /// A field of `/etc/os-release` with its quotes removed.
    pub fn os_release_field(&self, name: &str) -> Option<String> {
        parse_os_release(&self.os_release).ok()?.remove(name)
    }

    fn kernel_template(&self, template: &str, hostname: &str) -> String {
        template
            .replace("{hostname}", hostname)
            .replace("{release}", &self.kernel.release)
            .replace("{version}", &self.kernel.version)
            .replace("{machine}", &self.kernel.machine)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistro {
    order: u32,
    display_name: String,
    image: String,
    hostname_style: String,
    shell: String,
    ps1: String,
    issue: String,
    os_release: String,
    kernel: Kernel,
    #[serde(default)]
    service_defaults: BTreeMap<String, toml::Table>,
}

pub(crate) fn parse_distro(
    file: &str,
    slug: &str,
    text: &str,
    services: &BTreeMap<String, ServiceDef>,
) -> Result<Distro, CatalogueError> {
    let raw: RawDistro = toml::from_str(text).map_err(|e| CatalogueError::new(file, "", toml_message(&e)))?;
    let fields = parse_os_release(&raw.os_release).map_err(|m| CatalogueError::new(file, "os_release", m))?;
    for required in ["NAME", "ID", "PRETTY_NAME"] {
        if !fields.contains_key(required) {
            return Err(CatalogueError::new(file, "os_release", format!("missing {required}=")));
        }
    }
    for (key, template) in [
        ("kernel.uname_a", &raw.kernel.uname_a),
        ("kernel.proc_version", &raw.kernel.proc_version),
    ] {
        check_placeholders(template).map_err(|m| CatalogueError::new(file, key, m))?;
    }
    if !raw.shell.starts_with('/') {
        return Err(CatalogueError::new(file, "shell", "must be an absolute path"));
    }
    Ok(Distro {
        slug: slug.to_string(),
        order: raw.order,
        display_name: raw.display_name,
        image: raw.image,
        hostname_style: raw.hostname_style,
        shell: raw.shell,
        ps1: raw.ps1,
        issue: raw.issue,
        os_release: raw.os_release,
        kernel: raw.kernel,
        service_defaults: parse_service_defaults(file, "", &raw.service_defaults, services)?,
    })
}

/// Parses os-release(5): `KEY=value` or `KEY="value"` lines, `#` comments.
fn parse_os_release(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=value", i + 1))?;
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!("line {}: `{key}` is not an os-release key", i + 1));
        }
        let value = value.trim_matches('"').trim_matches('\'');
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

fn check_placeholders(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').ok_or("unclosed `{`")? + start;
        let name = &rest[start + 1..end];
        if !matches!(name, "hostname" | "release" | "version" | "machine") {
            return Err(format!(
                "unknown placeholder `{{{name}}}` (known: hostname, release, version, machine)"
            ));
        }
        rest = &rest[end + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_parsing() {
        let f = parse_os_release("# c\nNAME=\"Debian GNU/Linux\"\nID=debian\n\n").unwrap();
        assert_eq!(f["NAME"], "Debian GNU/Linux");
        assert_eq!(f["ID"], "debian");
        assert!(parse_os_release("NAME").is_err());
        assert!(parse_os_release("name=x").is_err());
    }

    #[test]
    fn family_sysctls_are_checked() {
        let services = BTreeMap::new();
        let ok = "display_name = \"L\"\ndescription = \"d\"\npersonality = \"linux\"\n[sysctls]\n\"net.ipv4.ip_default_ttl\" = 64\n\"net.ipv4.tcp_rmem\" = \"4096 131072 6291456\"\n";
        let f = parse_family("os/families/l.toml", "l", ok, &services).unwrap();
        assert_eq!(f.ttl, 64);
        let global = ok.replace("net.ipv4.tcp_rmem", "net.core.rmem_default");
        let e = parse_family("os/families/l.toml", "l", &global, &services).unwrap_err();
        assert!(e.key.contains("net.core.rmem_default"), "{e}");
        let no_ttl = ok.replace("ip_default_ttl", "tcp_sack");
        assert!(parse_family("os/families/l.toml", "l", &no_ttl, &services).is_err());
        // Packet shaping lives in personalities now: a family's own is refused.
        let bad_shape = format!("{ok}[shaping]\nip_id = \"sometimes\"\n");
        assert!(parse_family("os/families/l.toml", "l", &bad_shape, &services).is_err());
        let no_personality = ok.replace("personality = \"linux\"\n", "");
        assert!(parse_family("os/families/l.toml", "l", &no_personality, &services).is_err());
    }
}
