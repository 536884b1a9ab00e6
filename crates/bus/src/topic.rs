//! Topics and patterns, after NATS subjects. A topic is dot-separated tokens
//! (`event.decky-01.ssh.auth_attempt`); a pattern may use `*` for exactly one
//! token and, as its last token, `>` for one or more. The constructors below
//! are the product's topic hierarchy; use them rather than `format!`, since
//! they make data (a decky or service name) safe to put in a topic.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use crate::BusError;

/// Longest topic or pattern, in bytes: topics are names, not payloads.
pub const MAX_TOPIC_BYTES: usize = 256;

/// Longest token the constructors keep from data, so that the longest
/// constructed topic (`event.{decky}.{service}.{kind}`) always fits.
const MAX_DATA_TOKEN_BYTES: usize = 64;

/// An IP address was seen for the first time.
pub const ATTACKER_OBSERVED: &str = "attacker.observed";
/// A connection or flow began (its `connect` event).
pub const SESSION_STARTED: &str = "attacker.session.started";
/// It ended (its `disconnect` event).
pub const SESSION_ENDED: &str = "attacker.session.ended";
/// An event carried a credential.
pub const CREDENTIAL_CAPTURED: &str = "credential.captured";
/// A captured credential was tried again elsewhere (an intel worker's finding).
pub const CREDENTIAL_REUSE_DETECTED: &str = "credential.reuse.detected";
/// An interaction was tagged with an ATT&CK technique.
pub const TTP_TAGGED: &str = "ttp.tagged";

/// Every raw event: `event.{decky}.{service}.{kind}`.
pub fn event(decky: &str, service: &str, kind: &str) -> Topic {
    constructed(format!("event.{}.{}.{}", token(decky), token(service), token(kind)))
}

/// A decky's lifecycle: `decky.{id}.state`.
pub fn decky_state(id: &str) -> Topic {
    constructed(format!("decky.{}.state", token(id)))
}

/// `canary.{id}.triggered`.
pub fn canary_triggered(id: &str) -> Topic {
    constructed(format!("canary.{}.triggered", token(id)))
}

/// A worker's heartbeat: `system.{worker}.health`.
pub fn system_health(worker: &str) -> Topic {
    constructed(format!("system.{}.health", token(worker)))
}

fn constructed(topic: String) -> Topic {
    debug_assert_eq!(check(&topic, false), Ok(()), "{topic}");
    Topic(topic)
}

/// Makes data one valid token: separators, wildcards, whitespace and control
/// characters become `_`, an empty string becomes `_`, and it is cut to
/// 64 bytes (on a character boundary).
pub fn token(data: &str) -> Cow<'_, str> {
    let mut end = data.len().min(MAX_DATA_TOKEN_BYTES);
    while !data.is_char_boundary(end) {
        end -= 1;
    }
    let data = &data[..end];
    if data.is_empty() {
        return Cow::Borrowed("_");
    }
    if data.chars().any(is_forbidden) {
        Cow::Owned(data.chars().map(|c| if is_forbidden(c) { '_' } else { c }).collect())
    } else {
        Cow::Borrowed(data)
    }
}

fn is_forbidden(c: char) -> bool {
    matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control()
}

/// Why a string is not a valid topic or pattern. Token numbers count from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("it is empty")]
    Empty,
    #[error("it is {len} bytes long, more than {MAX_TOPIC_BYTES}")]
    TooLong { len: usize },
    #[error("token {index} is empty (two dots in a row, or a dot at an end)")]
    EmptyToken { index: usize },
    #[error("token {index} contains whitespace or a control character")]
    Whitespace { index: usize },
    #[error("token {index} is a wildcard (`*` or `>`), which only patterns may contain")]
    Wildcard { index: usize },
    #[error("token {index} mixes a wildcard with other characters; `*` and `>` must be whole tokens")]
    PartialWildcard { index: usize },
    #[error("`>` (token {index}) may only be the last token")]
    TailNotLast { index: usize },
}

impl TopicError {
    /// How many kinds there are, for per-kind bookkeeping.
    pub(crate) const KINDS: usize = 7;

    /// A number per kind, below [`Self::KINDS`].
    pub(crate) fn kind_index(self) -> usize {
        match self {
            Self::Empty => 0,
            Self::TooLong { .. } => 1,
            Self::EmptyToken { .. } => 2,
            Self::Whitespace { .. } => 3,
            Self::Wildcard { .. } => 4,
            Self::PartialWildcard { .. } => 5,
            Self::TailNotLast { .. } => 6,
        }
    }
}

/// Checks `s` as a topic, or as a pattern if `wildcards`.
pub(crate) fn check(s: &str, wildcards: bool) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong { len: s.len() });
    }
    let count = s.split('.').count();
    for (i, token) in s.split('.').enumerate() {
        let index = i + 1;
        if token.is_empty() {
            return Err(TopicError::EmptyToken { index });
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TopicError::Whitespace { index });
        }
        if token.contains(['*', '>']) {
            if !wildcards {
                return Err(TopicError::Wildcard { index });
            }
            if token.len() != 1 {
                return Err(TopicError::PartialWildcard { index });
            }
            if token == ">" && index != count {
                return Err(TopicError::TailNotLast { index });
            }
        }
    }
    Ok(())
}

/// A string shortened for an error message or a log line: topics that fail
/// validation may be arbitrarily long.
pub(crate) fn shorten(s: &str) -> String {
    let mut end = s.len().min(MAX_TOPIC_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// A valid topic: something one can publish on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(String);

impl Topic {
    /// Checks `topic`: dot-separated non-empty tokens, no whitespace or
    /// wildcards, at most [`MAX_TOPIC_BYTES`].
    pub fn new(topic: &str) -> Result<Self, BusError> {
        check(topic, false).map_err(|reason| BusError::BadTopic {
            topic: shorten(topic),
            reason,
        })?;
        Ok(Self(topic.to_string()))
    }

    /// The topic as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The topic's `String`, without a copy.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// So a constructed topic can be passed where `&str` is taken
/// (`bus.publish(&topic::decky_state(id), …)`).
impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more trailing tokens.
    Tail,
}

impl Pattern {
    /// Parses a pattern: a topic whose tokens may be `*`, and whose last
    /// token may be `>`.
    pub fn parse(pattern: &str) -> Result<Self, BusError> {
        check(pattern, true).map_err(|reason| BusError::BadPattern {
            pattern: shorten(pattern),
            reason,
        })?;
        let tokens = pattern
            .split('.')
            .map(|t| match t {
                "*" => Token::One,
                ">" => Token::Tail,
                literal => Token::Literal(literal.to_string()),
            })
            .collect();
        Ok(Self {
            source: pattern.to_string(),
            tokens,
        })
    }

    /// Whether `topic` (assumed valid) matches. Allocates nothing: this runs
    /// for every subscriber on every publish.
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('.');
        for token in &self.tokens {
            match (token, parts.next()) {
                (_, None) => return false,
                (Token::Tail, Some(_)) => return true,
                (Token::One, Some(_)) => {}
                (Token::Literal(literal), Some(part)) => {
                    if literal != part {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// The pattern as it was written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn matching_table() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("a.b", "a.b.c", false),
            ("a.b.c", "a.b.d", false),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.*.c", "a.b.x.c", false),
            ("*", "a", true),
            ("*", "a.b", false),
            ("a.*", "a", false),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c.d", true),
            ("a.>", "a", false),
            (">", "a", true),
            (">", "a.b.c", true),
            ("*.>", "a", false),
            ("*.>", "a.b", true),
            ("event.*.ssh.>", "event.d1.ssh.auth_attempt", true),
            ("event.*.ssh.>", "event.d1.http.request", false),
            ("event.>", "events.d1.ssh.connect", false),
            ("attacker.session.*", "attacker.session.started", true),
            ("attacker.session.*", "attacker.observed", false),
        ];
        for (pattern, topic, expected) in cases {
            let parsed = Pattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(topic), expected, "{pattern} vs {topic}");
        }
    }

    #[test]
    fn invalid_topics_and_patterns_say_why() {
        let long = "a".repeat(MAX_TOPIC_BYTES + 1);
        let topics = [
            ("", TopicError::Empty),
            (
                long.as_str(),
                TopicError::TooLong {
                    len: MAX_TOPIC_BYTES + 1,
                },
            ),
            ("a..b", TopicError::EmptyToken { index: 2 }),
            (".a", TopicError::EmptyToken { index: 1 }),
            ("a.", TopicError::EmptyToken { index: 2 }),
            ("a.b c", TopicError::Whitespace { index: 2 }),
            ("a.\u{7}", TopicError::Whitespace { index: 2 }),
            ("a.*", TopicError::Wildcard { index: 2 }),
            ("a.>", TopicError::Wildcard { index: 2 }),
        ];
        for (topic, reason) in topics {
            match Topic::new(topic) {
                Err(BusError::BadTopic { reason: got, .. }) => assert_eq!(got, reason, "{topic:?}"),
                other => panic!("{topic:?}: {other:?}"),
            }
        }
        let patterns = [
            ("a.>.b", TopicError::TailNotLast { index: 2 }),
            ("a.b*", TopicError::PartialWildcard { index: 2 }),
            ("a.>>", TopicError::PartialWildcard { index: 2 }),
            ("a..*", TopicError::EmptyToken { index: 2 }),
        ];
        for (pattern, reason) in patterns {
            match Pattern::parse(pattern) {
                Err(BusError::BadPattern { reason: got, .. }) => assert_eq!(got, reason, "{pattern:?}"),
                other => panic!("{pattern:?}: {other:?}"),
            }
        }
        let message = Pattern::parse("a.>.b").unwrap_err().to_string();
        assert_eq!(
            message,
            "bad pattern \"a.>.b\": `>` (token 2) may only be the last token"
        );
    }

    #[test]
    fn constructors_make_data_safe() {
        assert_eq!(
            event("decky-01", "ssh", "auth_attempt").as_str(),
            "event.decky-01.ssh.auth_attempt"
        );
        assert_eq!(event("a.b", "*", "> x").as_str(), "event.a_b._.__x");
        assert_eq!(event("", "ssh", "connect").as_str(), "event._.ssh.connect");
        assert_eq!(decky_state("d 1").as_str(), "decky.d_1.state");
        assert_eq!(canary_triggered("c\n1").as_str(), "canary.c_1.triggered");
        assert_eq!(system_health("ttp.tagger").as_str(), "system.ttp_tagger.health");
        let long = "é".repeat(200);
        let topic = event(&long, &long, &long);
        assert!(topic.len() <= MAX_TOPIC_BYTES);
        assert!(Topic::new(&topic).is_ok());
        for constant in [
            ATTACKER_OBSERVED,
            SESSION_STARTED,
            SESSION_ENDED,
            CREDENTIAL_CAPTURED,
            CREDENTIAL_REUSE_DETECTED,
            TTP_TAGGED,
        ] {
            assert!(Topic::new(constant).is_ok(), "{constant}");
        }
    }

    fn topic_tokens() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[a-z0-9_-]{1,8}", 1..8)
    }

    proptest! {
        #[test]
        fn wildcards_match_what_they_replace(
            tokens in topic_tokens(),
            stars in prop::collection::vec(any::<bool>(), 8),
            tail_from in any::<prop::sample::Index>(),
            use_tail in any::<bool>(),
        ) {
            let topic = tokens.join(".");
            let mut pattern: Vec<&str> = tokens
                .iter()
                .zip(&stars)
                .map(|(t, star)| if *star { "*" } else { t.as_str() })
                .collect();
            if use_tail {
                pattern.truncate(tail_from.index(tokens.len()));
                pattern.push(">");
            }
            let pattern = Pattern::parse(&pattern.join(".")).unwrap();
            prop_assert!(pattern.matches(&topic), "{} vs {}", pattern, topic);
        }

        #[test]
        fn a_changed_literal_does_not_match(
            tokens in topic_tokens(),
            stars in prop::collection::vec(any::<bool>(), 8),
            changed in any::<prop::sample::Index>(),
        ) {
            let topic = tokens.join(".");
            let changed = changed.index(tokens.len());
            let pattern: Vec<String> = tokens
                .iter()
                .zip(&stars)
                .enumerate()
                .map(|(i, (t, star))| {
                    if i == changed {
                        format!("{t}X")
                    } else if *star {
                        "*".to_string()
                    } else {
                        t.clone()
                    }
                })
                .collect();
            let pattern = Pattern::parse(&pattern.join(".")).unwrap();
            prop_assert!(!pattern.matches(&topic), "{} vs {}", pattern, topic);
        }

        #[test]
        fn constructed_topics_are_valid(decky in any::<String>(), service in any::<String>(), kind in any::<String>()) {
            prop_assert!(Topic::new(&event(&decky, &service, &kind)).is_ok());
            prop_assert!(Topic::new(&decky_state(&decky)).is_ok());
        }
    }
}
