//! Event kinds: the original DECNET's MSGIDs (its inventory §2.3), spelled as
//! it spelled them, so that SIEM rules written for it keep working.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Severity;

macro_rules! kinds {
    ($($variant:ident = $name:literal, $severity:ident, $doc:literal;)*) => {
        /// What happened.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Kind {
            $(#[doc = $doc] $variant,)*
        }

        impl Kind {
            /// Every kind, in catalogue order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name on the wire (RFC 5424 MSGID, JSON `kind`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// The syslog severity an event of this kind gets unless its emitter says otherwise.
            pub fn default_severity(self) -> Severity {
                match self {
                    $(Kind::$variant => Severity::$severity,)*
                }
            }
        }

        impl FromStr for Kind {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, UnknownKind> {
                match s {
                    $($name => Ok(Kind::$variant),)*
                    _ => Err(UnknownKind(s.chars().take(64).collect())),
                }
            }
        }
    };
}

kinds! {
    AuthAttempt = "auth_attempt", Info, "A login or other authentication attempt.";
    Command = "command", Info, "A shell command.";
    SessionRecorded = "session_recorded", Info, "A terminal session was recorded.";
    SessionSkipped = "session_skipped", Info, "A terminal session could not be recorded.";
    FileCaptured = "file_captured", Info, "A file an attacker dropped was captured.";
    Request = "request", Info, "A protocol request (HTTP request, TFTP RRQ/WRQ, SIP message …).";
    HttpRequestFingerprint = "http_request_fingerprint", Info, "An HTTP request's fingerprint (JA4H, header order).";
    Http2Settings = "http2_settings", Info, "An HTTP/2 client's SETTINGS.";
    Http3Settings = "http3_settings", Info, "An HTTP/3 client's SETTINGS.";
    HttpAccess = "http_access", Info, "An HTTP access-log line.";
    Connection = "connection", Info, "A connection began (the original's FTP/SMB/RDP name).";
    Connect = "connect", Info, "A TCP connection or UDP flow began.";
    Disconnect = "disconnect", Info, "It ended (reason, duration, bytes).";
    User = "user", Info, "A user name was given (FTP USER).";
    DownloadAttempt = "download_attempt", Info, "A file was requested for download.";
    UnknownOpcode = "unknown_opcode", Info, "A protocol opcode the service does not know.";
    Error = "error", Warning, "Something went wrong serving a session (an emulator panic …).";
    RdpCookie = "rdp_cookie", Info, "An RDP connection request with a cookie.";
    ConnectionRequest = "connection_request", Info, "An RDP connection request.";
    TlsHandshakeFailed = "tls_handshake_failed", Warning, "A TLS handshake failed.";
    Version = "version", Info, "A client announced its protocol version.";
    SecurityChoice = "security_choice", Info, "A client chose a security type (VNC).";
    AuthResponse = "auth_response", Info, "An authentication response (VNC).";
    Ehlo = "ehlo", Info, "An SMTP EHLO/HELO.";
    MailFrom = "mail_from", Info, "An SMTP MAIL FROM.";
    RcptTo = "rcpt_to", Info, "An SMTP RCPT TO that was accepted.";
    RcptDenied = "rcpt_denied", Warning, "An SMTP RCPT TO that was refused (relay denied).";
    RcptGreylisted = "rcpt_greylisted", Info, "An SMTP RCPT TO that was greylisted.";
    RcptRejectedSyntax = "rcpt_rejected_syntax", Warning, "An SMTP RCPT TO with a malformed address.";
    RcptRejectedTld = "rcpt_rejected_tld", Warning, "An SMTP RCPT TO to a reserved TLD.";
    MessageAccepted = "message_accepted", Info, "An SMTP message was accepted.";
    MessageStored = "message_stored", Info, "An SMTP message was stored for analysis.";
    Vrfy = "vrfy", Info, "An SMTP VRFY.";
    UnknownCommand = "unknown_command", Info, "A command the service does not know.";
    Auth = "auth", Info, "An authentication exchange and its outcome.";
    Retr = "retr", Info, "A mail message was retrieved (POP3).";
    Delete = "delete", Info, "A mail message was deleted (POP3).";
    Bind = "bind", Info, "An LDAP bind.";
    Query = "query", Info, "A name query (DNS, LLMNR, mDNS).";
    RawPacket = "raw_packet", Info, "A packet that could not be parsed as a query.";
    FingerprintProbe = "fingerprint_probe", Warning, "A DNS server-fingerprinting probe.";
    ZoneTransfer = "zone_transfer", Warning, "A DNS zone-transfer attempt.";
    AmpProbe = "amp_probe", Warning, "A DNS amplification probe.";
    TunnelingSuspect = "tunneling_suspect", Warning, "DNS traffic that looks like a tunnel.";
    FloodSuspect = "flood_suspect", Warning, "A DNS query flood.";
    TrackingEvicted = "tracking_evicted", Info, "DNS source tracking evicted entries.";
    ReconBurst = "recon_burst", Warning, "Several DNS reconnaissance probes in a short time.";
    MalformedPacket = "malformed_packet", Notice, "A malformed DNS packet.";
    EmptyQuestionSection = "empty_question_section", Notice, "A DNS query without a question.";
    QuestionParseError = "question_parse_error", Notice, "A DNS question that could not be parsed.";
    MultiQuestion = "multi_question", Notice, "A DNS query with several questions.";
    Startup = "startup", Info, "A service started.";
    Shutdown = "shutdown", Info, "A service stopped.";
    UnknownPacket = "unknown_packet", Info, "A packet type the service does not know.";
    Message = "message", Info, "A protocol message (MongoDB).";
    AuthStart = "auth_start", Info, "An authentication exchange began (SASL start).";
    Subscribe = "subscribe", Info, "An MQTT SUBSCRIBE.";
    Publish = "publish", Info, "An MQTT PUBLISH.";
    Packet = "packet", Info, "An MQTT packet type outside the session.";
    ProtocolError = "protocol_error", Warning, "A protocol violation.";
    ConfigError = "config_error", Warning, "A configuration problem of the service.";
    GetRequest = "get_request", Info, "An SNMP get.";
    ParseError = "parse_error", Warning, "A packet that could not be parsed.";
    RootProbe = "root_probe", Info, "A request for an API's root document.";
    CatApi = "cat_api", Info, "An Elasticsearch _cat request.";
    ClusterRecon = "cluster_recon", Info, "An Elasticsearch cluster request.";
    NodesRecon = "nodes_recon", Info, "An Elasticsearch nodes request.";
    SecurityProbe = "security_probe", Info, "An Elasticsearch security-API probe.";
    PostRequest = "post_request", Info, "An HTTP POST.";
    PutRequest = "put_request", Info, "An HTTP PUT.";
    DeleteRequest = "delete_request", Info, "An HTTP DELETE.";
    HeadRequest = "head_request", Info, "An HTTP HEAD.";
    Warning = "warning", Warning, "A warning from a service.";
    Log = "log", Info, "A log line from a service.";
}

/// A kind name outside the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown event kind `{}`", self.0)
    }
}

impl std::error::Error for UnknownKind {}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_fit_a_msgid() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(*kind));
            // RFC 5424 MSGID: 1-32 printable ASCII characters.
            assert!((1..=32).contains(&kind.as_str().len()), "{kind}");
            assert!(
                kind.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
        }
        assert!("bogus".parse::<Kind>().is_err());
    }

    #[test]
    fn severities_follow_the_original() {
        assert_eq!(Kind::AuthAttempt.default_severity(), Severity::Info);
        assert_eq!(Kind::RcptDenied.default_severity(), Severity::Warning);
        assert_eq!(Kind::MalformedPacket.default_severity(), Severity::Notice);
    }
}
