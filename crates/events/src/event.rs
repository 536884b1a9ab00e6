//! The Event and Credential contracts of DESIGN.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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
    #[serde(default)]
    pub severity: Severity,
    pub src_ip: IpAddr,
    pub src_port: u16,
    /// The connection (or UDP flow) this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Uuid>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: Fields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// Free text (the RFC 5424 MSG part), for the original's text-only events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Bounds on what one event may carry, so a hostile peer cannot make one
/// event (and one log line) arbitrarily large.
pub mod limits {
    /// Longest string value of a field, in bytes.
    pub const FIELD_BYTES: usize = 16 * 1024;
    /// All fields together, as JSON.
    pub const FIELDS_BYTES: usize = 64 * 1024;
    /// The message and the credential's secret and challenge.
    pub const MESSAGE_BYTES: usize = 16 * 1024;
}

impl Event {
    /// A new event now, with a fresh id and the kind's default severity.
    pub fn new(decky: &str, service: &str, kind: Kind, src_ip: IpAddr, src_port: u16) -> Self {
        Self {
            id: Uuid::now_v7(),
            time: SystemTime::now(),
            decky: decky.to_string(),
            service: service.to_string(),
            kind,
            severity: kind.default_severity(),
            src_ip,
            src_port,
            session: None,
            fields: Fields::new(),
            credential: None,
            message: None,
        }
    }

    /// Cuts what exceeds [`limits`]: long strings are truncated (on a character
    /// boundary, marked `…[+N bytes]`), and if the fields are still too big the
    /// largest are dropped; the names of everything cut are listed in the field
    /// `truncated`.
    pub fn bounded(mut self) -> Self {
        let mut cut: Vec<String> = Vec::new();
        for (key, value) in self.fields.iter_mut() {
            if bound_value(value, limits::FIELD_BYTES) {
                cut.push(key.clone());
            }
        }
        let size = |f: &Fields| serde_json::to_vec(f).map(|v| v.len()).unwrap_or(usize::MAX);
        while size(&self.fields) > limits::FIELDS_BYTES {
            let Some(largest) = self
                .fields
                .iter()
                .max_by_key(|(_, v)| serde_json::to_vec(v).map(|v| v.len()).unwrap_or(0))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.fields.remove(&largest);
            cut.push(largest);
        }
        if let Some(message) = &mut self.message
            && truncate_string(message, limits::MESSAGE_BYTES)
        {
            cut.push("message".into());
        }
        if let Some(c) = &mut self.credential {
            if c.secret.len() > limits::MESSAGE_BYTES {
                c.secret.truncate(limits::MESSAGE_BYTES);
                cut.push("secret".into());
            }
            if let Some(ch) = &mut c.challenge
                && ch.len() > limits::MESSAGE_BYTES
            {
                ch.truncate(limits::MESSAGE_BYTES);
                cut.push("challenge".into());
            }
        }
        if !cut.is_empty() {
            cut.sort();
            cut.dedup();
            self.fields.insert("truncated".into(), serde_json::Value::from(cut));
        }
        self
    }
}

/// Truncates strings (recursively) longer than `max`; whole arrays and objects
/// bigger than `max` become a truncated string of their JSON. Returns whether
/// anything was cut.
fn bound_value(value: &mut serde_json::Value, max: usize) -> bool {
    match value {
        serde_json::Value::String(s) => truncate_string(s, max),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            let text = value.to_string();
            if text.len() <= max {
                return false;
            }
            let mut text = text;
            truncate_string(&mut text, max);
            *value = serde_json::Value::String(text);
            true
        }
        _ => false,
    }
}

fn truncate_string(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = s.len() - end;
    s.truncate(end);
    let _ = write!(s, "…[+{dropped} bytes]");
    true
}

/// Syslog severities (RFC 5424 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    #[default]
    Info,
    Debug,
}

impl Severity {
    /// The numeric code (0 emergency … 7 debug).
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        use Severity::*;
        [Emergency, Alert, Critical, Error, Warning, Notice, Info, Debug]
            .get(usize::from(code))
            .copied()
    }
}

/// A captured secret, kept losslessly, with what cracking it offline needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The account (for NTLM `DOMAIN\user`, as the original wrote it).
    pub principal: Option<String>,
    pub secret_kind: SecretKind,
    /// The raw secret: the password, or the client's response.
    #[serde(with = "b64")]
    pub secret: Vec<u8>,
    /// The server's challenge or salt, for challenge–response kinds.
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// Whether the emulated service let the attempt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

/// How a secret is encoded, with the original DECNET's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretKind {
    Plaintext,
    /// MySQL `mysql_native_password`: 20-byte SHA1 scramble; challenge = 20-byte salt.
    MysqlNativePassword,
    /// PostgreSQL MD5: `md5` + 32 hex digits; challenge = 4-byte salt.
    PostgresMd5Challenge,
    /// NTLMv1 (24-byte NT response); challenge = 8-byte server challenge; secret = LM ‖ NT response.
    NtlmsspV1,
    /// NTLMv2 (NTProofStr ‖ blob); challenge = 8-byte server challenge.
    NtlmsspV2,
    ScramSha1,
    ScramSha256,
    ScramUnknown,
    /// VNC authentication: 16-byte DES response; challenge = 16 bytes.
    VncDesResponse,
    SnmpCommunity,
    HttpBasic,
    HttpBearer,
    HttpDigestMd5,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Plaintext => "plaintext",
            SecretKind::MysqlNativePassword => "mysql_native_password",
            SecretKind::PostgresMd5Challenge => "postgres_md5_challenge",
            SecretKind::NtlmsspV1 => "ntlmssp_v1",
            SecretKind::NtlmsspV2 => "ntlmssp_v2",
            SecretKind::ScramSha1 => "scram_sha1",
            SecretKind::ScramSha256 => "scram_sha256",
            SecretKind::ScramUnknown => "scram_unknown",
            SecretKind::VncDesResponse => "vnc_des_response",
            SecretKind::SnmpCommunity => "snmp_community",
            SecretKind::HttpBasic => "http_basic",
            SecretKind::HttpBearer => "http_bearer",
            SecretKind::HttpDigestMd5 => "http_digest_md5",
        }
    }
}

impl std::str::FromStr for SecretKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown secret kind `{s}`"))
    }
}

impl Credential {
    /// A password seen in the clear.
    pub fn plaintext(principal: Option<&str>, secret: &[u8]) -> Self {
        Self {
            principal: principal.map(String::from),
            secret_kind: SecretKind::Plaintext,
            secret: secret.to_vec(),
            challenge: None,
            outcome: None,
        }
    }

    /// The secret with bytes outside printable ASCII shown as `?` (the
    /// original's `secret_printable`).
    pub fn secret_printable(&self) -> String {
        self.secret
            .iter()
            .map(|b| if (0x20..0x7f).contains(b) { *b as char } else { '?' })
            .collect()
    }

    /// The credential in hashcat's input format, for the kinds hashcat cracks
    /// (modes 11200, 11100, 5500, 5600); `None` for the others or when a part
    /// is missing.
    pub fn hashcat(&self) -> Option<String> {
        let challenge = self.challenge.as_deref();
        match self.secret_kind {
            // -m 11200: $mysqlna$<salt>*<scramble>
            SecretKind::MysqlNativePassword => {
                let salt = challenge.filter(|c| c.len() == 20)?;
                (self.secret.len() == 20).then(|| format!("$mysqlna${}*{}", hex(salt), hex(&self.secret)))
            }
            // -m 11100: $postgres$<user>*<salt>*<md5 of the response, without "md5">
            SecretKind::PostgresMd5Challenge => {
                let salt = challenge.filter(|c| c.len() == 4)?;
                let response = std::str::from_utf8(&self.secret).ok()?.strip_prefix("md5")?;
                let valid = response.len() == 32 && response.bytes().all(|b| b.is_ascii_hexdigit());
                valid.then(|| {
                    format!(
                        "$postgres${}*{}*{}",
                        self.principal.as_deref().unwrap_or(""),
                        hex(salt),
                        response
                    )
                })
            }
            // -m 5500: user::domain:<LM response>:<NT response>:<challenge>
            SecretKind::NtlmsspV1 => {
                let challenge = challenge.filter(|c| c.len() == 8)?;
                let (domain, user) = self.ntlm_principal();
                (self.secret.len() == 48).then(|| {
                    format!(
                        "{user}::{domain}:{}:{}:{}",
                        hex(&self.secret[..24]),
                        hex(&self.secret[24..]),
                        hex(challenge)
                    )
                })
            }
            // -m 5600: user::domain:<challenge>:<NTProofStr>:<blob>
            SecretKind::NtlmsspV2 => {
                let challenge = challenge.filter(|c| c.len() == 8)?;
                let (domain, user) = self.ntlm_principal();
                (self.secret.len() > 16).then(|| {
                    format!(
                        "{user}::{domain}:{}:{}:{}",
                        hex(challenge),
                        hex(&self.secret[..16]),
                        hex(&self.secret[16..])
                    )
                })
            }
            _ => None,
        }
    }

    /// `DOMAIN\user` → (`DOMAIN`, `user`).
    fn ntlm_principal(&self) -> (&str, &str) {
        let p = self.principal.as_deref().unwrap_or("");
        p.split_once('\\').unwrap_or(("", p))
    }
}

/// Short text on the stack: an address or a number as both logs write them,
/// without `fmt`'s machinery (each event writes its address and port twice).
pub(crate) struct Text {
    buf: [u8; 40],
    len: usize,
}

impl Text {
    /// An address as `IpAddr`'s `Display` writes it.
    pub(crate) fn ip(ip: IpAddr) -> Self {
        let mut text = Self { buf: [0; 40], len: 0 };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    text.number(u32::from(octet));
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                // At most 39 characters, so the buffer never fills.
                let mut rest = &mut text.buf[..];
                let _ = write!(rest, "{v6}");
                text.len = 40 - rest.len();
            }
        }
        text
    }

    /// A number in decimal.
    pub(crate) fn decimal(n: u32) -> Self {
        let mut text = Self { buf: [0; 40], len: 0 };
        text.number(n);
        text
    }

    fn number(&mut self, n: u32) {
        let mut digits = [0u8; 10];
        let mut at = digits.len();
        let mut n = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[at..] {
            self.push(d);
        }
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2026-11-23T10:00:00.123456Z`, the logs' time format, built fast: every
/// event is stamped twice (JSON and RFC 5424), so each thread keeps the date
/// and time of the last second it formatted and only writes the microseconds.
pub(crate) struct Timestamp([u8; 27]);

impl Timestamp {
    /// `None` outside years 1970–9999 (the caller falls back to humantime).
    pub(crate) fn new(t: SystemTime) -> Option<Self> {
        use std::cell::Cell;
        thread_local! {
            static LAST: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
        }
        let since = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        let secs = since.as_secs();
        if secs >= 253_402_300_800 {
            return None;
        }
        let mut out = [0u8; 27];
        let (cached, head) = LAST.get();
        let head = if cached == secs {
            head
        } else {
            let mut head = [0u8; 19];
            let text = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .to_string();
            head.copy_from_slice(&text.as_bytes()[..19]);
            LAST.set((secs, head));
            head
        };
        out[..19].copy_from_slice(&head);
        out[19] = b'.';
        let mut micros = since.subsec_micros();
        for i in (20..26).rev() {
            out[i] = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out[26] = b'Z';
        Some(Self(out))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        match super::Timestamp::new(*t) {
            Some(stamp) => s.serialize_str(stamp.as_str()),
            None => s.collect_str(&humantime::format_rfc3339_micros(*t)),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// Each byte's value in [`ALPHABET`], or 0xff.
    const VALUES: [u8; 256] = {
        let mut values = [0xffu8; 256];
        let mut i = 0;
        while i < 64 {
            values[ALPHABET[i] as usize] = i as u8;
            i += 1;
        }
        values
    };

    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                out.push(if i <= chunk.len() {
                    ALPHABET[(n >> (18 - 6 * i) & 63) as usize]
                } else {
                    b'='
                });
            }
        }
        // Only bytes of ALPHABET and '=' were pushed.
        String::from_utf8(out).unwrap_or_default()
    }

    pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0);
        for c in text.bytes().filter(|c| *c != b'=') {
            let v = VALUES[c as usize];
            if v == 0xff {
                return None;
            }
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Some(out)
    }

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }
}

mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&super::b64::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| super::b64::decode(&t).ok_or_else(|| serde::de::Error::custom("invalid base64")))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn credential(kind: SecretKind, principal: &str, secret: Vec<u8>, challenge: &str) -> Credential {
        Credential {
            principal: Some(principal.into()),
            secret_kind: kind,
            secret,
            challenge: Some(unhex(challenge)),
            outcome: None,
        }
    }

    #[test]
    fn json_round_trip() {
        let mut event = Event::new("web01", "ssh", Kind::AuthAttempt, "10.0.0.9".parse().unwrap(), 51234);
        event.time = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        event.session = Some(Uuid::now_v7());
        event.fields.insert("username".into(), "root".into());
        event.credential = Some(Credential::plaintext(Some("root"), b"to\xffor"));
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"time\":\"2023-11-14T22:13:20.123456Z\""), "{json}");
        assert!(json.contains("\"kind\":\"auth_attempt\""));
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }

    /// hashcat's published example hashes, taken apart into credentials and
    /// put back together by `hashcat()`.
    #[test]
    fn hashcat_formats_match_the_published_examples() {
        let mysql = credential(
            SecretKind::MysqlNativePassword,
            "root",
            unhex("437e93572f18ae44d9e779160c2505271f85821d"),
            "1c24ab8d0ee94d70ab1f2e814d8f0948a14d10b9",
        );
        assert_eq!(
            mysql.hashcat().unwrap(),
            "$mysqlna$1c24ab8d0ee94d70ab1f2e814d8f0948a14d10b9*437e93572f18ae44d9e779160c2505271f85821d"
        );
        let postgres = credential(
            SecretKind::PostgresMd5Challenge,
            "postgres",
            b"md52091bb7d4725d1ca85e8de6ec349baf6".to_vec(),
            "f0784ea5",
        );
        assert_eq!(
            postgres.hashcat().unwrap(),
            "$postgres$postgres*f0784ea5*2091bb7d4725d1ca85e8de6ec349baf6"
        );
        let v1 = credential(
            SecretKind::NtlmsspV1,
            "kNS\\u4-netntlm",
            unhex(
                "338d08f8e26de93300000000000000000000000000000000\
                   9526fb8c23a90751cdd619b6cea564742e1e4bf33006ba41",
            ),
            "cb8086049ec4736c",
        );
        assert_eq!(
            v1.hashcat().unwrap(),
            "u4-netntlm::kNS:338d08f8e26de93300000000000000000000000000000000:9526fb8c23a90751cdd619b6cea564742e1e4bf33006ba41:cb8086049ec4736c"
        );
        let v2 = credential(
            SecretKind::NtlmsspV2,
            "N46iSNekpT\\admin",
            unhex(
                "88dcbe4446168966a153a0064958dac6\
                   5c7830315c7830310000000000000b45c67103d07d7b95acd12ffa11230e0000000052920b85f78d013c31cdb3b92f5d765c783030",
            ),
            "08ca45b7d7ea58ee",
        );
        assert_eq!(
            v2.hashcat().unwrap(),
            "admin::N46iSNekpT:08ca45b7d7ea58ee:88dcbe4446168966a153a0064958dac6:5c7830315c7830310000000000000b45c67103d07d7b95acd12ffa11230e0000000052920b85f78d013c31cdb3b92f5d765c783030"
        );
        assert_eq!(Credential::plaintext(Some("root"), b"toor").hashcat(), None);
        let mut short = mysql.clone();
        short.challenge = None;
        assert_eq!(short.hashcat(), None);
    }

    #[test]
    fn addresses_and_numbers_read_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "198.51.100.7",
            "255.255.255.255",
            "::",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(Text::ip(ip).as_str(), ip.to_string());
        }
        let max: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(Text::ip(max).as_str(), max.to_string());
        for n in [0, 7, 10, 65_535, u32::MAX] {
            assert_eq!(Text::decimal(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn printable_secret_hides_control_bytes() {
        assert_eq!(
            Credential::plaintext(None, b"a\x00b\xffc ~").secret_printable(),
            "a?b?c ~"
        );
    }

    #[test]
    fn oversized_events_are_bounded_and_say_so() {
        let mut event = Event::new("d", "http", Kind::Request, "10.0.0.1".parse().unwrap(), 1);
        event.fields.insert("body".into(), "é".repeat(600_000).into());
        event.fields.insert("path".into(), "/".into());
        for i in 0..10 {
            event.fields.insert(format!("h{i}"), "x".repeat(15_000).into());
        }
        let event = event.bounded();
        let body = event.fields.get("body").map(|v| v.as_str().unwrap().len());
        assert!(body.is_none_or(|n| n <= limits::FIELD_BYTES + 32));
        assert!(serde_json::to_vec(&event.fields).unwrap().len() <= limits::FIELDS_BYTES + 1024);
        let truncated = event.fields["truncated"].as_array().unwrap();
        assert!(truncated.contains(&"body".into()));
        assert_eq!(event.fields["path"], "/");
    }
}
