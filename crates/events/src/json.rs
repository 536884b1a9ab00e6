//! An event as one line of decnet.json, written by hand.
//!
//! The local log writes every event as JSON, and serde's generic path (its
//! string escaper above all) was the largest cost of the file sink. This
//! writer gives the same JSON value as `serde_json::to_writer(&event)`, with
//! the members in the same order, and the [`Event`] deserializer reads it back
//! (the tests check both on arbitrary events). Values other than strings in
//! `fields` (numbers, lists, maps) still go through serde_json.

use uuid::Uuid;

use crate::event::{Text, Timestamp, b64};
use crate::{Event, Outcome, Severity};

/// Appends `event` as a JSON object (without a line end). Times outside
/// 1970–9999 are left to serde, so they fare exactly as they did before.
pub fn write(event: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let Some(stamp) = Timestamp::new(event.time) else {
        // Rare enough to leave to serde, which decides what such a time becomes.
        return serde_json::to_writer(out, event);
    };
    let mut uuid = Uuid::encode_buffer();
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(event.id.hyphenated().encode_lower(&mut uuid).as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(stamp.as_str().as_bytes());
    out.extend_from_slice(b"\",\"decky\":");
    string(out, &event.decky);
    out.extend_from_slice(b",\"service\":");
    string(out, &event.service);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(event.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"severity\":\"");
    out.extend_from_slice(severity_name(event.severity).as_bytes());
    // An address's text never needs escaping.
    out.extend_from_slice(b"\",\"src_ip\":\"");
    out.extend_from_slice(Text::ip(event.src_ip).as_str().as_bytes());
    out.extend_from_slice(b"\",\"src_port\":");
    out.extend_from_slice(Text::decimal(u32::from(event.src_port)).as_str().as_bytes());
    if let Some(session) = event.session {
        out.extend_from_slice(b",\"session\":\"");
        out.extend_from_slice(session.hyphenated().encode_lower(&mut uuid).as_bytes());
        out.push(b'"');
    }
    if !event.fields.is_empty() {
        out.extend_from_slice(b",\"fields\":{");
        for (i, (key, value)) in event.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, key);
            out.push(b':');
            match value {
                serde_json::Value::String(s) => string(out, s),
                other => serde_json::to_writer(&mut *out, other)?,
            }
        }
        out.push(b'}');
    }
    if let Some(c) = &event.credential {
        out.extend_from_slice(b",\"credential\":{\"principal\":");
        match &c.principal {
            Some(p) => string(out, p),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"secret_kind\":\"");
        out.extend_from_slice(c.secret_kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"secret\":\"");
        out.extend_from_slice(b64::encode(&c.secret).as_bytes());
        out.push(b'"');
        if let Some(challenge) = &c.challenge {
            out.extend_from_slice(b",\"challenge\":\"");
            out.extend_from_slice(b64::encode(challenge).as_bytes());
            out.push(b'"');
        }
        if let Some(outcome) = c.outcome {
            out.extend_from_slice(match outcome {
                Outcome::Success => b",\"outcome\":\"success\"",
                Outcome::Failure => b",\"outcome\":\"failure\"",
            });
        }
        out.push(b'}');
    }
    if let Some(message) = &event.message {
        out.extend_from_slice(b",\"message\":");
        string(out, message);
    }
    out.push(b'}');
    Ok(())
}

/// Severity as its serde name.
fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Emergency => "emergency",
        Severity::Alert => "alert",
        Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
        Severity::Info => "info",
        Severity::Debug => "debug",
    }
}

/// A JSON string (RFC 8259 §7): `"` and `\` escaped, control characters as
/// short escapes or `\u00XX`; everything else, UTF-8 included, as is. Runs of
/// plain bytes are copied whole, since every byte that needs an escape is
/// ASCII and so never inside a multi-byte character.
fn string(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (at, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..at]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;
    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::*;
    use crate::{Credential, Kind, SecretKind};

    fn line(event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        write(event, &mut out).unwrap();
        out
    }

    /// Same value as serde's, and read back into the same event.
    fn check(event: &Event) -> Result<(), TestCaseError> {
        let ours = line(event);
        let value: serde_json::Value = serde_json::from_slice(&ours)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&ours))))?;
        // Compared as parsed text: reading a float back may round it, on both sides alike.
        let theirs: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(event).unwrap()).unwrap();
        prop_assert_eq!(&value, &theirs);
        // The same bytes, even, except where escapes may differ.
        if !String::from_utf8_lossy(&ours).contains('\\') {
            prop_assert_eq!(&ours, &serde_json::to_vec(event).unwrap());
        }
        let back: Event = serde_json::from_slice(&ours).unwrap();
        let theirs: Event = serde_json::from_slice(&serde_json::to_vec(event).unwrap()).unwrap();
        prop_assert_eq!(back, theirs);
        Ok(())
    }

    #[test]
    fn matches_serde_on_a_typical_event() {
        let mut e = Event::new("web01", "ssh", Kind::AuthAttempt, "10.0.0.9".parse().unwrap(), 51234);
        e.session = Some(Uuid::now_v7());
        e.fields.insert("username".into(), "root".into());
        e.fields.insert("attempt".into(), 3.into());
        e.fields.insert("ratio".into(), 0.25.into());
        e.fields.insert("list".into(), serde_json::json!(["a", 1, {"b": null}]));
        e.credential = Some(Credential::plaintext(Some("root"), b"to\xffor"));
        check(&e).unwrap();
        let mut hostile = e.clone();
        hostile.decky = "a\"b\\c\u{0}\u{1f}\u{7f}\u{85}é\n\r\t\u{8}\u{c}".into();
        hostile.message = Some("</script>\u{2028}".into());
        hostile.credential = Some(Credential {
            principal: None,
            secret_kind: SecretKind::NtlmsspV2,
            secret: vec![0; 40],
            challenge: Some(vec![1; 8]),
            outcome: Some(Outcome::Success),
        });
        check(&hostile).unwrap();
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            any::<String>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parses_to_the_same_value_as_serde(
            decky in any::<String>(),
            service in any::<String>(),
            kind in prop::sample::select(Kind::ALL.to_vec()),
            severity in 0u8..8,
            ip in any::<[u8; 16]>(),
            v4 in any::<bool>(),
            port in any::<u16>(),
            micros in 0u64..253_402_300_800_000_000,
            session in any::<Option<u128>>(),
            fields in prop::collection::btree_map(any::<String>(), value(), 0..6),
            message in any::<Option<String>>(),
            credential in prop::option::of((
                any::<Option<String>>(),
                prop::collection::vec(any::<u8>(), 0..40),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
                prop::option::of(any::<bool>()),
            )),
        ) {
            let ip = if v4 {
                IpAddr::from([ip[0], ip[1], ip[2], ip[3]])
            } else {
                IpAddr::from(ip)
            };
            let mut e = Event::new(&decky, &service, kind, ip, port);
            e.severity = Severity::from_code(severity).unwrap();
            e.time = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
            e.session = session.map(Uuid::from_u128);
            e.fields = fields.into_iter().collect::<BTreeMap<_, _>>();
            e.message = message;
            e.credential = credential.map(|(principal, secret, challenge, outcome)| Credential {
                principal,
                secret_kind: SecretKind::HttpBasic,
                secret,
                challenge,
                outcome: outcome.map(|ok| if ok { Outcome::Success } else { Outcome::Failure }),
            });
            check(&e)?;
        }
    }
}
