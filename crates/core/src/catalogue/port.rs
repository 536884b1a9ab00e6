//! A port a service serves: number, transport, and whether TLS wraps it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

/// `443/tcp+tls`, `161/udp`, `22/tcp`. Written the same way in persona files,
/// INI `ports =` of custom services (where `/tcp` is the default) and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub number: u16,
    pub transport: Transport,
    pub tls: bool,
}

impl Port {
    pub fn tcp(number: u16) -> Self {
        Self {
            number,
            transport: Transport::Tcp,
            tls: false,
        }
    }

    /// Whether two ports would need the same socket (TLS does not matter).
    pub fn clashes_with(&self, other: &Port) -> bool {
        self.number == other.number && self.transport == other.transport
    }

    /// Parses with a default transport when no `/…` suffix is given.
    pub fn parse_with_default(text: &str, default: Transport) -> Result<Self, String> {
        let text = text.trim();
        let (number, suffix) = match text.split_once('/') {
            Some((n, s)) => (n.trim(), Some(s.trim().to_ascii_lowercase())),
            None => (text, None),
        };
        let number: u16 = number
            .parse()
            .ok()
            .filter(|n| *n != 0)
            .ok_or_else(|| format!("`{number}` is not a port number (1-65535)"))?;
        let (transport, tls) = match suffix.as_deref() {
            None => (default, false),
            Some("tcp") => (Transport::Tcp, false),
            Some("udp") => (Transport::Udp, false),
            Some("tcp+tls" | "tls") => (Transport::Tcp, true),
            Some(other) => return Err(format!("`/{other}` is not a transport (tcp, udp, tcp+tls)")),
        };
        Ok(Self { number, transport, tls })
    }
}

impl FromStr for Port {
    type Err = String;

    /// The strict form used in persona files: the transport must be written.
    fn from_str(text: &str) -> Result<Self, String> {
        if !text.contains('/') {
            return Err(format!("`{text}` needs a transport, e.g. `{text}/tcp`"));
        }
        Self::parse_with_default(text, Transport::Tcp)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.transport)?;
        if self.tls {
            f.write_str("+tls")?;
        }
        Ok(())
    }
}

impl Serialize for Port {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in ["22/tcp", "161/udp", "443/tcp+tls"] {
            assert_eq!(s.parse::<Port>().unwrap().to_string(), s);
        }
        assert_eq!("443/tls".parse::<Port>().unwrap().to_string(), "443/tcp+tls");
        assert!("22".parse::<Port>().is_err());
        assert!("0/tcp".parse::<Port>().is_err());
        assert!("70000/tcp".parse::<Port>().is_err());
        assert!("22/sctp".parse::<Port>().is_err());
        assert_eq!(
            Port::parse_with_default("9999", Transport::Tcp).unwrap(),
            Port::tcp(9999)
        );
        assert_eq!(
            Port::parse_with_default(" 53/UDP ", Transport::Tcp).unwrap().transport,
            Transport::Udp
        );
    }

    #[test]
    fn tls_does_not_avoid_a_clash() {
        let a: Port = "443/tcp".parse().unwrap();
        let b: Port = "443/tcp+tls".parse().unwrap();
        let c: Port = "443/udp".parse().unwrap();
        assert!(a.clashes_with(&b));
        assert!(!a.clashes_with(&c));
    }
}
