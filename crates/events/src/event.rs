//! The Event and Credential contracts of DESIGN.md.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Kind;

/// Structured fields of an event: strings, numbers, lists and maps as JSON.
pub type Fields = BTreeMap<String, serde_json::Value>;

/// One attacker interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7: unique, time-ordered, so re-deliveries can be deduplicated.
    pub id: Uuid,
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    pub decky: String,
    pub service: String,
    pub kind: Kind,
    pub src_ip: IpAddr,
    pub src_port: u16,
    /// The connection (or UDP flow) this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Uuid>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: Fields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
}

/// A captured secret, kept losslessly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub principal: Option<String>,
    pub secret_kind: SecretKind,
    /// The raw secret bytes, base64 in JSON.
    #[serde(with = "b64")]
    pub secret: Vec<u8>,
}

/// How a secret is encoded (the original's `secret_kind` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretKind {
    Plaintext,
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        s.serialize_str(&out)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in text.bytes().filter(|c| *c != b'=') {
            let v = ALPHABET
                .iter()
                .position(|a| *a == c)
                .ok_or_else(|| serde::de::Error::custom("invalid base64"))? as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let event = Event {
            id: Uuid::now_v7(),
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            decky: "web01".into(),
            service: "ssh".into(),
            kind: Kind::AuthAttempt,
            src_ip: "10.0.0.9".parse().unwrap(),
            src_port: 51234,
            session: Some(Uuid::now_v7()),
            fields: Fields::from([("username".into(), "root".into())]),
            credential: Some(Credential {
                principal: Some("root".into()),
                secret_kind: SecretKind::Plaintext,
                secret: b"to\xffor".to_vec(),
            }),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"time\":\"2023-11-14T22:13:20.123456Z\""), "{json}");
        assert!(json.contains("\"kind\":\"auth_attempt\""));
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }
}
