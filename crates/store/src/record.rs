//! What callers put into the store and get out of it: filters and rows.
//! Rows serialize as the CLI's `--json` prints them, times in RFC 3339.

use std::net::IpAddr;
use std::time::SystemTime;

use decnet_events::{Credential, Kind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which events [`Store::events`](crate::Store::events) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub decky: Option<String>,
    pub service: Option<String>,
    pub kind: Option<Kind>,
    pub src_ip: Option<IpAddr>,
    /// Only events at or after this time.
    pub since: Option<SystemTime>,
    /// Only events stored after this one (a cursor for following the log):
    /// the oldest `limit` of them. Without it, the newest `limit` events.
    pub after: Option<Uuid>,
    /// At most this many; `None`: all that match.
    pub limit: Option<u32>,
}

/// Which credentials [`Store::credentials`](crate::Store::credentials) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialFilter {
    pub decky: Option<String>,
    pub service: Option<String>,
    pub src_ip: Option<IpAddr>,
    /// At most this many, most recently tried first; `None`: all.
    pub limit: Option<u32>,
}

/// One source address and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attacker {
    pub ip: IpAddr,
    #[serde(with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(with = "rfc3339")]
    pub last_seen: SystemTime,
    pub events: u64,
    /// Distinct sessions.
    pub sessions: u64,
    /// Distinct credentials.
    pub credentials: u64,
    /// Services touched, in the order first touched.
    pub services: Vec<String>,
    /// Deckies touched, in the order first touched.
    pub deckies: Vec<String>,
}

/// A distinct credential an attacker tried against one decky's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    pub src_ip: IpAddr,
    pub decky: String,
    pub service: String,
    /// Principal, kind, raw secret and challenge of the first attempt; the
    /// outcome of the latest attempt that had one.
    #[serde(flatten)]
    pub credential: Credential,
    pub secret_printable: String,
    /// Hex SHA-256 of the raw secret.
    pub secret_sha256: String,
    /// hashcat's input line, for the kinds hashcat cracks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashcat: Option<String>,
    pub attempts: u64,
    #[serde(with = "rfc3339")]
    pub first_seen: SystemTime,
    #[serde(with = "rfc3339")]
    pub last_seen: SystemTime,
}

/// A connection (or UDP flow), from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: Uuid,
    pub decky: String,
    pub service: String,
    pub src_ip: IpAddr,
    pub src_port: u16,
    /// Its first event's time.
    #[serde(with = "rfc3339")]
    pub started: SystemTime,
    /// Its disconnect event's time, once seen.
    #[serde(default, with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub ended: Option<SystemTime>,
    pub events: u64,
}

/// A deployed decky, as the engine reports its fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetDecky {
    pub name: String,
    pub ip: IpAddr,
    pub mac: String,
    pub hostname: String,
    pub distro: String,
    pub os_family: String,
    pub services: Vec<String>,
}

/// Where ingestion of a source got to: a byte offset in the file with this
/// inode. Stored with the rows it covers, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOffset {
    /// The source's name (the ingester's is `decnet.json`).
    pub source: String,
    pub inode: u64,
    /// Bytes consumed: always the end of a line.
    pub offset: u64,
    /// The file's first bytes (up to 64), to tell a recycled inode number
    /// from the file itself.
    pub head: Vec<u8>,
}

/// SystemTime as RFC 3339 with microseconds, like the event log.
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }

    pub(crate) mod option {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}
