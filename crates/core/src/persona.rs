//! Typed persona configuration: the schema of a service's persona keys and the
//! values a decky's services are configured with.
//!
//! INI values arrive as strings and TOML defaults as TOML values; both are parsed
//! once, here, into [`PersonaValue`]s of the key's declared type, so emulators read
//! typed data and never re-parse strings at run time.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The type of one persona key, as declared in `personas/services/*.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyType {
    /// One line of text.
    String {
        #[serde(default = "default_max_len")]
        max_len: usize,
    },
    /// Multi-line text; an INI value starting with `b64:` is base64-decoded.
    Text {
        #[serde(default = "default_max_text")]
        max_len: usize,
    },
    Int {
        #[serde(default = "i64_min")]
        min: i64,
        #[serde(default = "i64_max")]
        max: i64,
    },
    Float {
        #[serde(default = "f64_min")]
        min: f64,
        #[serde(default = "f64_max")]
        max: f64,
    },
    /// `true/false`, `yes/no`, `on/off`, `1/0`.
    Bool,
    Enum {
        values: Vec<String>,
    },
    /// Comma-separated items; `values`, when given, restricts each item.
    List {
        #[serde(default)]
        values: Vec<String>,
    },
    /// `user:password` pairs separated by commas (the seed's `users = root:toor,admin:admin123`).
    Credentials,
    /// A JSON document (e.g. extra HTTP headers).
    Json,
    /// `host:port`.
    HostPort,
    /// A file-system path on the sensor.
    Path,
}

fn default_max_len() -> usize {
    1024
}
fn default_max_text() -> usize {
    1024 * 1024
}
fn i64_min() -> i64 {
    i64::MIN
}
fn i64_max() -> i64 {
    i64::MAX
}
fn f64_min() -> f64 {
    f64::MIN
}
fn f64_max() -> f64 {
    f64::MAX
}

impl KeyType {
    /// Short human name of the type, for `decnet services` and error messages.
    pub fn describe(&self) -> String {
        match self {
            KeyType::String { .. } => "string".into(),
            KeyType::Text { .. } => "text".into(),
            KeyType::Int { min, max } if *min != i64::MIN || *max != i64::MAX => format!("int {min}..{max}"),
            KeyType::Int { .. } => "int".into(),
            KeyType::Float { .. } => "number".into(),
            KeyType::Bool => "bool".into(),
            KeyType::Enum { values } => values.join("|"),
            KeyType::List { values } if values.is_empty() => "list".into(),
            KeyType::List { values } => format!("list of {}", values.join("|")),
            KeyType::Credentials => "user:pass,…".into(),
            KeyType::Json => "json".into(),
            KeyType::HostPort => "host:port".into(),
            KeyType::Path => "path".into(),
        }
    }

    /// Parses an INI string value.
    pub fn parse_str(&self, raw: &str) -> Result<PersonaValue, String> {
        let raw = raw.trim();
        match self {
            KeyType::String { max_len } => {
                if raw.contains('\n') {
                    return Err("must be a single line".into());
                }
                bounded(raw, *max_len).map(PersonaValue::String)
            }
            KeyType::Text { max_len } => {
                let text = match raw.strip_prefix("b64:") {
                    Some(b64) => decode_base64(b64.trim())
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or("`b64:` value is not valid base64 of UTF-8 text")?,
                    None => raw.to_string(),
                };
                bounded(&text, *max_len).map(PersonaValue::String)
            }
            KeyType::Int { min, max } => {
                let v: i64 = raw.parse().map_err(|_| format!("`{raw}` is not an integer"))?;
                check_range(v, *min, *max).map(PersonaValue::Int)
            }
            KeyType::Float { min, max } => {
                let v: f64 = raw.parse().map_err(|_| format!("`{raw}` is not a number"))?;
                if !v.is_finite() || v < *min || v > *max {
                    return Err(format!("{v} is outside {min}..{max}"));
                }
                Ok(PersonaValue::Float(v))
            }
            KeyType::Bool => parse_bool(raw)
                .map(PersonaValue::Bool)
                .ok_or_else(|| format!("`{raw}` is not a boolean (true/false, yes/no, on/off, 1/0)")),
            KeyType::Enum { values } => {
                let lower = raw.to_ascii_lowercase();
                values
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(&lower))
                    .map(|v| PersonaValue::String(v.clone()))
                    .ok_or_else(|| format!("`{raw}` is not one of {}", values.join(", ")))
            }
            KeyType::List { values } => {
                let items: Vec<String> = split_list(raw);
                for item in &items {
                    if !values.is_empty() && !values.iter().any(|v| v.eq_ignore_ascii_case(item)) {
                        return Err(format!("`{item}` is not one of {}", values.join(", ")));
                    }
                }
                Ok(PersonaValue::List(items))
            }
            KeyType::Credentials => parse_credentials(raw).map(PersonaValue::Credentials),
            KeyType::Json => serde_json::from_str(raw)
                .map(PersonaValue::Json)
                .map_err(|e| format!("invalid JSON: {e}")),
            KeyType::HostPort => parse_host_port(raw).map(|_| PersonaValue::String(raw.to_string())),
            KeyType::Path => {
                if raw.is_empty() || raw.contains('\0') {
                    return Err("empty path".into());
                }
                Ok(PersonaValue::String(raw.to_string()))
            }
        }
    }

    /// Converts a TOML default (from a persona file) into a value of this type.
    pub fn parse_toml(&self, value: &toml::Value) -> Result<PersonaValue, String> {
        match (self, value) {
            (_, toml::Value::String(s)) => self.parse_str(s),
            (KeyType::Int { .. } | KeyType::Float { .. }, toml::Value::Integer(i)) => self.parse_str(&i.to_string()),
            (KeyType::Float { .. }, toml::Value::Float(f)) => self.parse_str(&f.to_string()),
            (KeyType::Bool, toml::Value::Boolean(b)) => Ok(PersonaValue::Bool(*b)),
            (KeyType::List { .. }, toml::Value::Array(items)) => {
                let strings: Option<Vec<&str>> = items.iter().map(|v| v.as_str()).collect();
                let strings = strings.ok_or("list items must be strings")?;
                self.parse_str(&strings.join(","))
            }
            (KeyType::Json, other) => serde_json::to_value(other)
                .map(PersonaValue::Json)
                .map_err(|e| e.to_string()),
            (ty, other) => Err(format!(
                "a {} cannot be given as TOML {}",
                ty.describe(),
                other.type_str()
            )),
        }
    }
}

/// One typed persona value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PersonaValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<String>),
    Credentials(Vec<Credential>),
    Json(serde_json::Value),
}

impl PersonaValue {
    /// The value as an operator would write it in an INI file (for tables).
    pub fn display(&self) -> String {
        match self {
            PersonaValue::Bool(b) => b.to_string(),
            PersonaValue::Int(i) => i.to_string(),
            PersonaValue::Float(f) => f.to_string(),
            PersonaValue::String(s) => s.clone(),
            PersonaValue::List(items) => items.join(","),
            PersonaValue::Credentials(creds) => creds
                .iter()
                .map(|c| format!("{}:{}", c.username, c.password))
                .collect::<Vec<_>>()
                .join(","),
            PersonaValue::Json(v) => v.to_string(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            PersonaValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A username and password that a persona accepts (e.g. SSH `users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

/// A service's resolved persona: key → typed value, in key order.
pub type PersonaConfig = BTreeMap<String, PersonaValue>;

/// Splits a comma-separated list, trimming items and dropping empty ones.
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn bounded(text: &str, max: usize) -> Result<String, String> {
    if text.len() > max {
        return Err(format!("is {} bytes; the limit is {max}", text.len()));
    }
    Ok(text.to_string())
}

fn check_range(v: i64, min: i64, max: i64) -> Result<i64, String> {
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..{max}"));
    }
    Ok(v)
}

/// configparser's boolean words.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

fn parse_credentials(raw: &str) -> Result<Vec<Credential>, String> {
    split_list(raw)
        .into_iter()
        .map(|pair| match pair.split_once(':') {
            Some((user, pass)) if !user.trim().is_empty() => Ok(Credential {
                username: user.trim().to_string(),
                password: pass.to_string(),
            }),
            _ => Err(format!("`{pair}` is not `user:password`")),
        })
        .collect()
}

/// Parses `host:port` (host: a name or an IPv4 address, or `[v6]`).
pub fn parse_host_port(raw: &str) -> Result<(String, u16), String> {
    let (host, port) = raw
        .rsplit_once(':')
        .ok_or_else(|| format!("`{raw}` is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{port}` is not a port number (1-65535)"))?;
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_name && host.parse::<IpAddr>().is_err() {
        return Err(format!("`{host}` is neither an IP address nor a host name"));
    }
    Ok((host.to_string(), port))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a' + 26) as u32),
            b'0'..=b'9' => Some((c - b'0' + 52) as u32),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    if clean.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= sextet(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string() -> KeyType {
        KeyType::String { max_len: 16 }
    }

    #[test]
    fn parses_each_type() {
        assert_eq!(string().parse_str(" nginx "), Ok(PersonaValue::String("nginx".into())));
        assert!(string().parse_str(&"x".repeat(17)).is_err());
        let int = KeyType::Int { min: 100, max: 599 };
        assert_eq!(int.parse_str("200"), Ok(PersonaValue::Int(200)));
        assert!(int.parse_str("99").is_err());
        assert!(int.parse_str("abc").is_err());
        assert_eq!(KeyType::Bool.parse_str("Yes"), Ok(PersonaValue::Bool(true)));
        assert!(KeyType::Bool.parse_str("maybe").is_err());
        let e = KeyType::Enum {
            values: vec!["none".into(), "wordpress".into()],
        };
        assert_eq!(e.parse_str("WordPress"), Ok(PersonaValue::String("wordpress".into())));
        assert!(e.parse_str("drupal").is_err());
        assert_eq!(
            KeyType::Credentials.parse_str("root:toor, admin:admin123"),
            Ok(PersonaValue::Credentials(vec![
                Credential {
                    username: "root".into(),
                    password: "toor".into()
                },
                Credential {
                    username: "admin".into(),
                    password: "admin123".into()
                },
            ]))
        );
        assert!(KeyType::Credentials.parse_str("rootonly").is_err());
        assert!(KeyType::Json.parse_str("{\"a\": 1}").is_ok());
        assert!(KeyType::Json.parse_str("{").is_err());
        assert!(KeyType::HostPort.parse_str("8.8.8.8:53").is_ok());
        assert!(KeyType::HostPort.parse_str("8.8.8.8").is_err());
        assert!(KeyType::HostPort.parse_str("host:0").is_err());
    }

    #[test]
    fn text_accepts_b64_prefix() {
        let t = KeyType::Text { max_len: 100 };
        assert_eq!(
            t.parse_str("b64:aGVsbG8gd29ybGQ="),
            Ok(PersonaValue::String("hello world".into()))
        );
        assert!(t.parse_str("b64:!!!").is_err());
    }

    #[test]
    fn toml_defaults_are_typed() {
        let int = KeyType::Int { min: 0, max: 10 };
        assert_eq!(int.parse_toml(&toml::Value::Integer(3)), Ok(PersonaValue::Int(3)));
        assert!(int.parse_toml(&toml::Value::Boolean(true)).is_err());
        let list = KeyType::List { values: vec![] };
        let arr = toml::Value::Array(vec!["h1".into(), "h2".into()]);
        assert_eq!(
            list.parse_toml(&arr),
            Ok(PersonaValue::List(vec!["h1".into(), "h2".into()]))
        );
    }
}
