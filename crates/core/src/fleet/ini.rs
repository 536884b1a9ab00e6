//! Reading the sections of a fleet INI file into a [`FleetRequest`].
//!
//! Section kinds: `[general]`; `[custom-NAME]` bring-your-own services;
//! `[<decky>.<service>]` persona sub-sections; every other section is a decky
//! (or, with `amount =`, a group of deckies).

use std::path::{Path, PathBuf};

use super::request::{
    DeckyGroup, FleetRequest, MAX_AMOUNT, Origin, PersonaSection, Setting, parse_interface, parse_ip, parse_subnet,
    split_slugs,
};
use super::{CustomService, LogTarget};
use crate::catalogue::{Catalogue, Port, Transport};
use crate::error::{ConfigError, did_you_mean};
use crate::ini::{IniDocument, IniSection};

const GENERAL_KEYS: &[&str] = &[
    "net",
    "gw",
    "interface",
    "log_target",
    "log_file",
    "log_tls_ca",
    "log_tls_cert",
    "log_tls_key",
    "insecure_syslog",
    "seed",
    "mutate_interval",
    "ip_start",
];
const CUSTOM_PREFIX: &str = "custom-";

pub(crate) fn read(doc: &IniDocument, catalogue: &Catalogue) -> Result<FleetRequest, ConfigError> {
    let mut request = FleetRequest {
        source: doc.file.clone(),
        ..FleetRequest::default()
    };
    let file = doc.file.as_str();

    // Custom services first: persona sub-sections may name them.
    for section in &doc.sections {
        if let Some(name) = section.name.strip_prefix(CUSTOM_PREFIX) {
            let custom = read_custom(file, section, name, catalogue, &mut request.warnings)?;
            request.custom_services.push(custom);
        }
    }
    let customs = request.custom_services.clone();
    let is_service = |slug: &str| catalogue.service(slug).is_some() || customs.iter().any(|c| c.slug == slug);

    let mut groups = Vec::new();
    let mut persona_sections = Vec::new();
    for section in &doc.sections {
        let origin = Origin::Section {
            file: file.to_string(),
            section: section.name.clone(),
            line: section.line,
        };
        if section.name.eq_ignore_ascii_case("general") {
            read_general(file, section, &mut request)?;
        } else if section.name.starts_with(CUSTOM_PREFIX) {
            continue;
        } else if let Some((target, service)) = section.name.rsplit_once('.') {
            let service = service.trim().to_ascii_lowercase();
            if !is_service(&service) {
                let known = catalogue
                    .services()
                    .map(|s| s.slug.as_str())
                    .chain(customs.iter().map(|c| c.slug.as_str()));
                return Err(origin
                    .error(format!("`{service}` is not a service, so this is not a persona section (decky names cannot contain `.`)"))
                    .hint(did_you_mean(&service, known)));
            }
            persona_sections.push(PersonaSection {
                target: target.trim().to_string(),
                service,
                origin,
                entries: section
                    .entries
                    .iter()
                    .map(|e| Setting::new(e.value.clone(), Origin::key(file, &section.name, e)))
                    .collect(),
            });
        } else {
            groups.push(read_decky(file, section, origin)?);
        }
    }
    request.groups = groups;
    request.persona_sections = persona_sections;
    Ok(request)
}

fn read_general(file: &str, section: &IniSection, request: &mut FleetRequest) -> Result<(), ConfigError> {
    let g = &mut request.general;
    for e in &section.entries {
        let origin = Origin::key(file, &section.name, e);
        let v = e.value.as_str();
        match e.key.as_str() {
            "net" => g.subnet = Some(Setting::new(parse_subnet(v, &origin, &mut request.warnings)?, origin)),
            "gw" => g.gateway = Some(Setting::new(parse_ip(v, &origin)?, origin)),
            "ip_start" => g.ip_start = Some(Setting::new(parse_ip(v, &origin)?, origin)),
            "interface" => g.interface = Some(Setting::new(parse_interface(v, &origin)?, origin)),
            "log_target" => {
                let target = LogTarget::parse(v).map_err(|m| origin.error(m))?;
                g.log_target = Some(Setting::new(target, origin));
            }
            "log_file" => g.log_file = Some(Setting::new(ini_path(file, v), origin)),
            "log_tls_ca" => g.log_tls_ca = Some(Setting::new(ini_path(file, v), origin)),
            "log_tls_cert" => g.log_tls_cert = Some(Setting::new(ini_path(file, v), origin)),
            "log_tls_key" => g.log_tls_key = Some(Setting::new(ini_path(file, v), origin)),
            "insecure_syslog" => g.insecure_syslog = Some(Setting::new(parse_bool(v, &origin)?, origin)),
            "seed" => g.seed = Some(Setting::new(v.to_string(), origin)),
            "mutate_interval" => g.mutate_interval = Some(Setting::new(parse_minutes(v, &origin)?, origin)),
            other => request.warnings.push(origin.warning(format!(
                "unknown key, ignored{}",
                did_you_mean(other, GENERAL_KEYS.iter().copied()).map(|h| format!("; {h}")).unwrap_or_default()
            ))),
        }
    }
    Ok(())
}

/// A path in an INI file is relative to the file's directory.
fn ini_path(file: &str, value: &str) -> PathBuf {
    let value = Path::new(value.trim());
    let dir = Path::new(file).parent().unwrap_or(Path::new("."));
    let joined = dir.join(value);
    std::path::absolute(&joined).unwrap_or(joined)
}

fn parse_bool(value: &str, origin: &Origin) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        other => Err(origin.error(format!("`{other}` is not a boolean (true or false)"))),
    }
}

fn read_decky(file: &str, section: &IniSection, origin: Origin) -> Result<DeckyGroup, ConfigError> {
    let mut group = DeckyGroup::new(&section.name, origin, true);
    for e in &section.entries {
        let origin = Origin::key(file, &section.name, e);
        let v = e.value.trim();
        match e.key.as_str() {
            "ip" => group.ip = Some(Setting::new(parse_ip(v, &origin)?, origin)),
            "services" => group.services = Some(Setting::new(split_slugs(v), origin)),
            "archetype" => group.archetype = Some(Setting::new(v.to_ascii_lowercase(), origin)),
            "nmap_os" => group.nmap_os = Some(Setting::new(v.to_ascii_lowercase(), origin)),
            "os_personality" => group.os_personality = Some(Setting::new(v.to_ascii_lowercase(), origin)),
            "hostname" => group.hostname = Some(Setting::new(v.to_string(), origin)),
            "distro" => group.distros = Some(Setting::new(split_slugs(v), origin)),
            "mutate_interval" => group.mutate_interval = Some(Setting::new(parse_minutes(v, &origin)?, origin)),
            "amount" => {
                let n: u32 = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_AMOUNT).contains(n))
                    .ok_or_else(|| origin.error(format!("`{v}` is not a number between 1 and {MAX_AMOUNT}")))?;
                group.amount = Setting::new(n, origin);
            }
            _ => group.extra.push(Setting::new(e.value.clone(), origin)),
        }
    }
    if let (Some(ip), n) = (&group.ip, group.amount.value)
        && n > 1
    {
        return Err(ip.origin.error(format!(
            "cannot be combined with `amount = {n}` (each decky needs its own IP)"
        )));
    }
    Ok(group)
}

fn read_custom(
    file: &str,
    section: &IniSection,
    name: &str,
    catalogue: &Catalogue,
    warnings: &mut Vec<String>,
) -> Result<CustomService, ConfigError> {
    let origin = Origin::Section {
        file: file.to_string(),
        section: section.name.clone(),
        line: section.line,
    };
    let slug = name.trim().to_ascii_lowercase();
    let valid = !slug.is_empty() && slug.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(origin.error("custom service names are letters, digits, `_` and `-`"));
    }
    if catalogue.service(&slug).is_some() {
        return Err(origin.error(format!(
            "`{slug}` is a built-in service; give the custom service another name"
        )));
    }
    let mut image = None;
    let mut exec = Vec::new();
    let mut ports = Vec::new();
    for e in &section.entries {
        let origin = Origin::key(file, &section.name, e);
        match e.key.as_str() {
            "binary" | "image" => image = Some(e.value.trim().to_string()),
            "exec" => exec = split_command(&e.value).map_err(|m| origin.error(m))?,
            "ports" => {
                for item in crate::persona::split_list(&e.value) {
                    let port = Port::parse_with_default(&item, Transport::Tcp).map_err(|m| origin.error(m))?;
                    if ports.iter().any(|p: &Port| p.clashes_with(&port)) {
                        return Err(origin.error(format!("{port} is listed twice")));
                    }
                    ports.push(port);
                }
            }
            other => warnings.push(origin.warning(format!(
                "unknown key, ignored{}",
                did_you_mean(other, ["binary", "exec", "ports"]).map(|h| format!("; {h}")).unwrap_or_default()
            ))),
        }
    }
    let image = image
        .filter(|i| !i.is_empty())
        .ok_or_else(|| origin.error("missing `binary =` (the OCI image to run)"))?;
    if ports.is_empty() {
        return Err(origin.error("missing `ports =` (e.g. `ports = 9999, 5353/udp`)"));
    }
    Ok(CustomService {
        slug,
        image,
        exec,
        ports,
    })
}

fn parse_minutes(raw: &str, origin: &Origin) -> Result<u32, ConfigError> {
    raw.trim()
        .parse()
        .ok()
        .filter(|m| *m >= 1)
        .ok_or_else(|| origin.error(format!("`{}` is not a number of minutes (1 or more)", raw.trim())))
}

/// Splits a command line on whitespace, honouring single and double quotes.
fn split_command(raw: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in raw.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_splitting() {
        assert_eq!(
            split_command("/usr/bin/myapp -p 9999").unwrap(),
            ["/usr/bin/myapp", "-p", "9999"]
        );
        assert_eq!(
            split_command("sh -c 'echo hi there'").unwrap(),
            ["sh", "-c", "echo hi there"]
        );
        assert_eq!(split_command("a \"\" b").unwrap(), ["a", "", "b"]);
        assert!(split_command("sh -c 'oops").is_err());
    }
}
