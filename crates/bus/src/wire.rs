//! The broker's socket protocol: one JSON object per line, `op` says what it is.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Client to broker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum Request {
    Sub {
        pattern: String,
    },
    Unsub {
        pattern: String,
    },
    Pub {
        topic: String,
        #[serde(default)]
        payload: serde_json::Value,
    },
}

/// Broker to client. Borrowed when the broker writes it, owned when a
/// client reads it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum Reply<'a> {
    Msg {
        topic: Cow<'a, str>,
        payload: Cow<'a, serde_json::Value>,
    },
    Lagged {
        missed: u64,
    },
    Error {
        message: Cow<'a, str>,
    },
}

impl Reply<'_> {
    /// Appends this reply and its newline to `out`.
    pub(crate) fn write_line(&self, out: &mut Vec<u8>) {
        // Serializing to a Vec fails only for maps with non-string keys,
        // which a `serde_json::Value` cannot hold.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}
