//! RFC 5424 lines, as the original DECNET wrote them:
//!
//! `<134>1 2026-05-02T06:00:25.453826Z web01 ssh - auth_attempt [relay@55555 id="…" src_ip="…" …] MSG`
//!
//! PRI is facility local0 with the event's severity; HOSTNAME the decky,
//! APP-NAME the service, PROCID `-`, MSGID the event kind; one SD element
//! `relay@55555` carries the id, source address and port, session, every field
//! (lists and maps as JSON) and the credential in the original's shape
//! (`principal`, `secret_kind`, `secret_printable`, `secret_b64`, plus
//! `challenge_b64` and `hashcat` where they exist).
//!
//! Values are escaped per §6.3.3 (`\`, `"`, `]`). So that a line never breaks,
//! control characters are escaped too (`\n`, `\r`, `\t`, `\xHH`); a generic
//! receiver shows them literally, this module's parser restores them.
//! Formatting is pure and allocation-light: it appends to a caller's `String`.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::str::FromStr;

use uuid::Uuid;

use crate::event::{Text, Timestamp, b64, hex};
use crate::{Credential, Event, Fields, Kind, Outcome, SecretKind, Severity};

/// The SD-ID of DECNET's structured data (private enterprise number 55555).
pub const SD_ID: &str = "relay@55555";
/// Facility local0.
const FACILITY: u8 = 16;

/// SD parameter names the stamp and the credential use; a field with one of
/// these names is written as `x_<name>`.
const RESERVED: &[&str] = &[
    "id",
    "src_ip",
    "src_port",
    "session",
    "principal",
    "secret_kind",
    "secret_printable",
    "secret_b64",
    "challenge_b64",
    "outcome",
    "hashcat",
];

/// Appends `event` as one RFC 5424 line (without the line end).
pub fn format(event: &Event, out: &mut String) {
    let pri = u16::from(FACILITY) * 8 + u16::from(event.severity.code());
    out.push('<');
    out.push_str(Text::decimal(u32::from(pri)).as_str());
    out.push_str(">1 ");
    match Timestamp::new(event.time) {
        Some(stamp) => out.push_str(stamp.as_str()),
        None => {
            let _ = write!(out, "{}", humantime::format_rfc3339_micros(event.time));
        }
    }
    out.push(' ');
    out.push_str(&header(&event.decky, 255));
    out.push(' ');
    out.push_str(&header(&event.service, 48));
    out.push_str(" - ");
    out.push_str(&header(event.kind.as_str(), 32));
    out.push_str(" [");
    out.push_str(SD_ID);
    // Values that never need escaping are written without a temporary string.
    let mut uuid = Uuid::encode_buffer();
    plain_param(out, "id", event.id.hyphenated().encode_lower(&mut uuid));
    plain_param(out, "src_ip", Text::ip(event.src_ip).as_str());
    plain_param(out, "src_port", Text::decimal(u32::from(event.src_port)).as_str());
    if let Some(session) = event.session {
        plain_param(out, "session", session.hyphenated().encode_lower(&mut uuid));
    }
    for (key, value) in &event.fields {
        let name = param_name(key);
        let text: Cow<'_, str> = match value {
            serde_json::Value::String(s) => Cow::Borrowed(s),
            other => Cow::Owned(other.to_string()),
        };
        param(out, &name, &text);
    }
    if let Some(c) = &event.credential {
        if let Some(p) = &c.principal {
            param(out, "principal", p);
        }
        param(out, "secret_kind", c.secret_kind.as_str());
        param(out, "secret_printable", &c.secret_printable());
        param(out, "secret_b64", &b64::encode(&c.secret));
        if let Some(ch) = &c.challenge {
            param(out, "challenge_b64", &b64::encode(ch));
        }
        if let Some(o) = c.outcome {
            param(out, "outcome", outcome_str(o));
        }
        if let Some(h) = c.hashcat() {
            param(out, "hashcat", &h);
        }
    }
    out.push(']');
    if let Some(message) = &event.message {
        out.push(' ');
        escape_into(out, message, false);
    }
}

/// A whole line, for tests and one-off use.
pub fn to_line(event: &Event) -> String {
    let mut s = String::with_capacity(256);
    format(event, &mut s);
    s
}

fn plain_param(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    out.push_str(value);
    out.push('"');
}

fn param(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value, true);
    out.push('"');
}

/// An SD-NAME: printable ASCII except `=`, space, `]`, `"`; 1–32 characters.
fn param_name(key: &str) -> Cow<'_, str> {
    let clean = !key.is_empty()
        && key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
        && !RESERVED.contains(&key);
    if clean {
        return Cow::Borrowed(key);
    }
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if RESERVED.contains(&name.as_str()) {
        name.insert_str(0, "x_");
    }
    name.truncate(32);
    if name.is_empty() {
        name.push('_');
    }
    Cow::Owned(name)
}

/// A header field: printable ASCII without spaces, bounded; `-` when empty.
fn header(value: &str, max: usize) -> Cow<'_, str> {
    if !value.is_empty() && value.len() <= max && value.bytes().all(|b| b.is_ascii_graphic()) {
        return Cow::Borrowed(value);
    }
    let s: String = value
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    Cow::Owned(if s.is_empty() { "-".into() } else { s })
}

fn escape_into(out: &mut String, value: &str, sd: bool) {
    // Most values need no escape: copy runs of plain bytes whole. Every byte
    // that may need one is ASCII, or 0xC2 (which starts the C1 controls), so
    // runs always end on a character boundary.
    let needs = |b: u8| b < 0x20 || b == 0x7f || b == b'\\' || b == 0xc2 || (sd && (b == b'"' || b == b']'));
    let bytes = value.as_bytes();
    let mut start = 0;
    while let Some(offset) = bytes[start..].iter().position(|&b| needs(b)) {
        let at = start + offset;
        out.push_str(&value[start..at]);
        let c = value[at..].chars().next().unwrap_or_default();
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            ']' => out.push_str("\\]"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
        start = at + c.len_utf8();
    }
    out.push_str(&value[start..]);
}

fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

/// A parsed RFC 5424 line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub facility: u8,
    pub severity: Severity,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// SD elements: (SD-ID, [(name, value)]), values unescaped.
    pub structured_data: Vec<(String, Vec<(String, String)>)>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an RFC 5424 line: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parses one line (without its line end).
pub fn parse(line: &str) -> Result<Record, ParseError> {
    let rest = line.strip_prefix('<').ok_or(ParseError("no PRI"))?;
    let (pri, rest) = rest.split_once('>').ok_or(ParseError("unterminated PRI"))?;
    let pri: u16 = pri.parse().ok().filter(|p| *p <= 191).ok_or(ParseError("bad PRI"))?;
    let rest = rest.strip_prefix("1 ").ok_or(ParseError("not version 1"))?;
    let mut fields = rest.splitn(6, ' ');
    let mut next = |what| fields.next().filter(|s| !s.is_empty()).ok_or(ParseError(what));
    let timestamp = next("no TIMESTAMP")?.to_string();
    let hostname = next("no HOSTNAME")?.to_string();
    let app_name = next("no APP-NAME")?.to_string();
    let procid = next("no PROCID")?.to_string();
    let msgid = next("no MSGID")?.to_string();
    let rest = fields.next().ok_or(ParseError("no STRUCTURED-DATA"))?;
    let (structured_data, rest) = parse_sd(rest)?;
    let message = match rest {
        "" => None,
        r => Some(unescape(r.strip_prefix(' ').ok_or(ParseError("no space before MSG"))?)),
    };
    Ok(Record {
        facility: (pri / 8) as u8,
        severity: Severity::from_code((pri % 8) as u8).ok_or(ParseError("bad severity"))?,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        message,
    })
}

type Elements = Vec<(String, Vec<(String, String)>)>;

fn parse_sd(input: &str) -> Result<(Elements, &str), ParseError> {
    if let Some(rest) = input.strip_prefix('-') {
        return Ok((Vec::new(), rest));
    }
    let mut elements = Vec::new();
    let mut rest = input;
    while let Some(body) = rest.strip_prefix('[') {
        let id_end = body.find([' ', ']']).ok_or(ParseError("unterminated SD element"))?;
        let id = body[..id_end].to_string();
        let mut cursor = &body[id_end..];
        let mut params = Vec::new();
        loop {
            if let Some(after) = cursor.strip_prefix(']') {
                rest = after;
                break;
            }
            cursor = cursor
                .strip_prefix(' ')
                .ok_or(ParseError("expected a space between SD params"))?;
            let eq = cursor.find('=').ok_or(ParseError("SD param without `=`"))?;
            let name = cursor[..eq].to_string();
            cursor = cursor[eq + 1..]
                .strip_prefix('"')
                .ok_or(ParseError("SD value not quoted"))?;
            let (value, after) = quoted_value(cursor)?;
            params.push((name, value));
            cursor = after;
        }
        elements.push((id, params));
    }
    if elements.is_empty() {
        return Err(ParseError("no STRUCTURED-DATA"));
    }
    Ok((elements, rest))
}

/// Reads up to the closing unescaped `"`; returns the unescaped value and the rest.
fn quoted_value(input: &str) -> Result<(String, &str), ParseError> {
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Ok((unescape(&input[..i]), &input[i + 1..])),
            _ => i += 1,
        }
    }
    Err(ParseError("unterminated SD value"))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(']') => out.push(']'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let hexd: String = chars.clone().take(2).collect();
                match u8::from_str_radix(&hexd, 16) {
                    Ok(b) if hexd.len() == 2 => {
                        out.push(char::from(b));
                        chars.nth(1);
                    }
                    _ => out.push_str("\\x"),
                }
            }
            // §6.3.3: any other escaped character stays as written.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

impl Record {
    /// The parameters of the DECNET SD element.
    pub fn params(&self) -> Option<&[(String, String)]> {
        self.structured_data
            .iter()
            .find(|(id, _)| id == SD_ID)
            .map(|(_, p)| p.as_slice())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params()?.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The DECNET event this line carries. Field values that are JSON numbers,
    /// booleans, lists or maps come back typed; the rest as strings.
    pub fn to_event(&self) -> Result<Event, ParseError> {
        let p = |name| self.param(name).ok_or(ParseError("missing DECNET parameter"));
        let time = humantime::parse_rfc3339(&self.timestamp).map_err(|_| ParseError("bad TIMESTAMP"))?;
        let mut fields = Fields::new();
        for (name, value) in self.params().unwrap_or_default() {
            if RESERVED.contains(&name.as_str()) {
                continue;
            }
            let name = name.strip_prefix("x_").filter(|n| RESERVED.contains(n)).unwrap_or(name);
            fields.insert(name.to_string(), typed(value));
        }
        let credential = match self.param("secret_kind") {
            Some(kind) => Some(Credential {
                principal: self.param("principal").map(String::from),
                secret_kind: SecretKind::from_str(kind).map_err(|_| ParseError("bad secret_kind"))?,
                secret: b64::decode(p("secret_b64")?).ok_or(ParseError("bad secret_b64"))?,
                challenge: self
                    .param("challenge_b64")
                    .map(|c| b64::decode(c).ok_or(ParseError("bad challenge_b64")))
                    .transpose()?,
                outcome: match self.param("outcome") {
                    Some("success") => Some(Outcome::Success),
                    Some("failure") => Some(Outcome::Failure),
                    _ => None,
                },
            }),
            None => None,
        };
        Ok(Event {
            id: Uuid::parse_str(p("id")?).map_err(|_| ParseError("bad id"))?,
            time,
            decky: self.hostname.clone(),
            service: self.app_name.clone(),
            kind: Kind::from_str(&self.msgid).map_err(|_| ParseError("unknown MSGID"))?,
            severity: self.severity,
            src_ip: IpAddr::from_str(p("src_ip")?).map_err(|_| ParseError("bad src_ip"))?,
            src_port: p("src_port")?.parse().map_err(|_| ParseError("bad src_port"))?,
            session: self
                .param("session")
                .map(|s| Uuid::parse_str(s).map_err(|_| ParseError("bad session")))
                .transpose()?,
            fields,
            credential,
            message: self.message.clone(),
        })
    }
}

/// A field value as written: JSON when it is JSON other than a string.
fn typed(value: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(v) if !v.is_string() => v,
        _ => serde_json::Value::String(value.to_string()),
    }
}

/// Lowercase hex, for callers formatting binary fields.
pub fn hex_string(bytes: &[u8]) -> String {
    hex(bytes)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use proptest::prelude::*;

    use super::*;

    fn sample() -> Event {
        let mut e = Event::new("web01", "ssh", Kind::AuthAttempt, "192.0.2.7".parse().unwrap(), 40123);
        e.time = humantime::parse_rfc3339("2026-05-02T06:00:25.453826Z").unwrap();
        e.id = Uuid::parse_str("01938c0e-1f00-7000-8000-000000000001").unwrap();
        e.fields.insert("username".into(), "root".into());
        e.fields.insert("attempt".into(), 3.into());
        e.credential = Some(Credential::plaintext(Some("root"), b"hunter2"));
        e
    }

    #[test]
    fn formats_like_the_original() {
        assert_eq!(
            to_line(&sample()),
            "<134>1 2026-05-02T06:00:25.453826Z web01 ssh - auth_attempt [relay@55555 \
             id=\"01938c0e-1f00-7000-8000-000000000001\" src_ip=\"192.0.2.7\" src_port=\"40123\" \
             attempt=\"3\" username=\"root\" principal=\"root\" secret_kind=\"plaintext\" \
             secret_printable=\"hunter2\" secret_b64=\"aHVudGVyMg==\"]"
        );
        let mut warn = sample();
        warn.severity = Severity::Warning;
        assert!(to_line(&warn).starts_with("<132>1 "));
    }

    #[test]
    fn hostile_values_are_escaped_and_never_break_the_line() {
        let mut e = sample();
        let nasty = "a]b\"c\\d\ne\rf\u{0}g\u{7f}h]\"\u{85}£é";
        e.fields.insert("path".into(), nasty.into());
        e.fields.insert("bad name=\"x\"]".into(), "v".into());
        e.fields.insert("src_ip".into(), "spoofed".into());
        e.message = Some("line one\nline two]".into());
        let line = to_line(&e);
        assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\0'));
        assert!(
            line.contains(r#"path="a\]b\"c\\d\ne\rf\x00g\x7fh\]\"\x85£é""#),
            "{line}"
        );
        assert!(line.contains(r#" bad_name__x__="v""#), "{line}");
        assert!(line.contains(r#" x_src_ip="spoofed""#), "{line}");
        let back = parse(&line).unwrap().to_event().unwrap();
        assert_eq!(back.fields["path"], nasty);
        assert_eq!(back.fields["src_ip"], "spoofed");
        assert_eq!(back.src_ip, e.src_ip);
        assert_eq!(back.message, e.message);
    }

    #[test]
    fn timestamps_match_humantime_across_seconds() {
        for micros in [
            0u64,
            1,
            999_999,
            1_000_000,
            1_763_891_234_567_890,
            253_402_300_799_999_999,
        ] {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(micros);
            let fast = Timestamp::new(t).unwrap();
            assert_eq!(fast.as_str(), humantime::format_rfc3339_micros(t).to_string());
        }
        assert!(Timestamp::new(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(1)).is_none());
    }

    #[test]
    fn parses_foreign_lines_too() {
        let r = parse("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] An application event").unwrap();
        assert_eq!(r.facility, 20);
        assert_eq!(r.severity, Severity::Notice);
        assert_eq!(r.structured_data[0].1[1], ("eventSource".into(), "Application".into()));
        assert_eq!(r.message.as_deref(), Some("An application event"));
        assert!(
            parse("<34>1 2003-10-11T22:14:15.003Z host app - - -")
                .unwrap()
                .structured_data
                .is_empty()
        );
        for bad in [
            "",
            "<>1",
            "<999>1 a b c d e -",
            "<13>2 a b c d e -",
            "<13>1 a b c d e [x y=\"z]",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_with_challenges_round_trip() {
        let mut e = sample();
        e.credential = Some(Credential {
            principal: Some("CORP\\alice".into()),
            secret_kind: SecretKind::NtlmsspV2,
            secret: (0..40).collect(),
            challenge: Some(vec![1, 2, 3, 4, 5, 6, 7, 8]),
            outcome: Some(Outcome::Failure),
        });
        let line = to_line(&e);
        assert!(line.contains("hashcat=\"alice::CORP:0102030405060708:"), "{line}");
        assert_eq!(parse(&line).unwrap().to_event().unwrap().credential, e.credential);
    }

    fn plain_string() -> impl Strategy<Value = String> {
        // Strings that are not themselves JSON scalars (those come back typed).
        "\\PC{0,40}".prop_filter("JSON-looking", |s| {
            serde_json::from_str::<serde_json::Value>(s).is_err()
        })
    }

    proptest! {
        #[test]
        fn round_trip(
            decky in "[a-z][a-z0-9-]{0,20}",
            service in "[a-z_]{1,12}",
            kind in prop::sample::select(Kind::ALL.to_vec()),
            ip in any::<[u8; 4]>(),
            port in any::<u16>(),
            fields in prop::collection::btree_map("[a-z_]{1,10}", prop_oneof![
                plain_string().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                prop::collection::vec("\\PC{0,8}", 0..4).prop_map(serde_json::Value::from),
            ], 0..6),
            message in prop::option::of("\\PC{0,60}"),
            secret in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        ) {
            let mut e = Event::new(&decky, &service, kind, IpAddr::from(ip), port);
            e.session = Some(Uuid::now_v7());
            e.fields = fields;
            e.message = message;
            e.credential = secret.map(|s| Credential::plaintext(Some("user \"x\"]"), &s));
            let line = to_line(&e);
            prop_assert!(!line.contains('\n'));
            let mut back = parse(&line).unwrap().to_event().unwrap();
            // Timestamps keep microseconds.
            let micros = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros();
            prop_assert_eq!(micros(back.time), micros(e.time));
            back.time = e.time;
            prop_assert_eq!(back, e);
        }

        #[test]
        fn parse_never_panics(line in "\\PC{0,300}") {
            if let Ok(r) = parse(&line) {
                let _ = r.to_event();
            }
        }
    }
}
