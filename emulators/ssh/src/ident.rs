//! The identification exchange (RFC 4253 §4.2), read the way sshd 9.x
//! reads it (`kex_exchange_identification`), measured side by side with
//! Debian's sshd 9.2p1 (`tests/ssh_peer.rs`): one byte at a time; CRs are
//! dropped, but anything other than LF after one is refused; a line is at
//! most 8192 bytes and may not contain NUL; a server accepts no line before
//! the client's identification (the first line must start with `SSH-`,
//! else "Invalid SSH identification string."); the line must then match
//! `sscanf("SSH-%d.%d-%[^\n]")`, so `SSH- 2.0-x` and `SSH-+2.0-x` pass and
//! `SSH-2.0-` does not; any protocol but 2.x and 1.99 is refused with
//! "Protocol major versions differ.". Clients sshd's compat table marks as
//! probes or scanners are hung up on without a word.

use thiserror::Error;

/// sshd's `SSH_MAX_BANNER_LEN`.
pub const MAX_LINE: usize = 8192;

/// Why an identification was refused, and what sshd writes back before
/// closing (plain text, CRLF-terminated).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentError {
    #[error("invalid identification line {0:?}")]
    Invalid(String),
    #[error("protocol major version differs: {0:?}")]
    Version(String),
    /// sshd's compat table: `Probe-*` ("probed from … Don't panic.") and
    /// `*SSH_Version_Mapper*` ("scanned from …"): closed with no reply.
    #[error("probe or scanner {0:?}")]
    Scanner(String),
}

impl IdentError {
    /// The text sshd sends before hanging up, without its line ending:
    /// sshd writes the text and the CRLF with two `write`s (`send_error`),
    /// which a client can tell apart when sshd hangs up with bytes unread
    /// (the reset discards the CRLF still held back by Nagle).
    pub fn reply(&self) -> Option<&'static str> {
        match self {
            IdentError::Invalid(_) => Some("Invalid SSH identification string."),
            IdentError::Version(_) => Some("Protocol major versions differ."),
            IdentError::Scanner(_) => None,
        }
    }
}

/// Incremental reader of the client's identification line.
#[derive(Debug, Default)]
pub struct IdentReader {
    line: Vec<u8>,
    saw_cr: bool,
}

impl IdentReader {
    /// Consumes bytes from `input` up to and including the end of the
    /// identification line (or the byte that makes it invalid: sshd reads
    /// no further). Returns how many bytes were used and, once the line is
    /// complete, the identification without its line ending.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Result<Option<String>, IdentError>) {
        for (i, &c) in input.iter().enumerate() {
            match c {
                b'\r' => self.saw_cr = true,
                b'\n' => return (i + 1, self.finish()),
                _ if c == 0 || self.saw_cr => return (i + 1, Err(IdentError::Invalid(self.lossy()))),
                _ => {
                    self.line.push(c);
                    if self.line.len() > MAX_LINE {
                        return (i + 1, Err(IdentError::Invalid(self.lossy())));
                    }
                }
            }
        }
        (input.len(), Ok(None))
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.line[..self.line.len().min(256)]).into_owned()
    }

    fn finish(&mut self) -> Result<Option<String>, IdentError> {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        if self.line.len() <= 4 || !self.line.starts_with(b"SSH-") {
            return Err(IdentError::Invalid(text));
        }
        let Some((major, minor, software)) = scan(&self.line[4..]) else {
            return Err(IdentError::Invalid(text));
        };
        if !(major == 2 || (major == 1 && minor == 99)) {
            return Err(IdentError::Version(text));
        }
        let software = String::from_utf8_lossy(software);
        if software.starts_with("Probe-") || software.contains("SSH_Version_Mapper") {
            return Err(IdentError::Scanner(text));
        }
        Ok(Some(text))
    }
}

/// `sscanf(rest, "%d.%d-%[^\n]")` as glibc does it: each number may follow
/// white space and carry a sign, and is `strtol`'s value (saturated)
/// truncated to an `int`; the software part must be non-empty.
fn scan(rest: &[u8]) -> Option<(i32, i32, &[u8])> {
    let (major, rest) = scan_int(rest)?;
    let rest = rest.strip_prefix(b".")?;
    let (minor, rest) = scan_int(rest)?;
    let software = rest.strip_prefix(b"-")?;
    (!software.is_empty()).then_some((major, minor, software))
}

fn scan_int(s: &[u8]) -> Option<(i32, &[u8])> {
    let start = s.iter().position(|c| !matches!(c, b' ' | b'\t' | 0x0b | 0x0c))?;
    let mut s = &s[start..];
    let negative = s.first() == Some(&b'-');
    if matches!(s.first(), Some(b'+' | b'-')) {
        s = &s[1..];
    }
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in &s[..digits] {
        value = value.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    if negative {
        value = value.checked_neg().unwrap_or(i64::MIN);
    }
    // strtol's long, stored through an int.
    Some((value as i32, &s[digits..]))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(input: &[u8]) -> (usize, Result<Option<String>, IdentError>) {
        IdentReader::default().feed(input)
    }

    #[test]
    fn openssh_client_line() {
        let (used, got) = read(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n\0\0\0\x14");
        assert_eq!(used, 40);
        assert_eq!(got, Ok(Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6".into())));
    }

    #[test]
    fn what_sscanf_lets_through() {
        for ok in [
            &b"SSH-2.0-x\r\r\n"[..],
            b"SSH- 2.0-x\n",
            b"SSH-+2.0-x\n",
            b"SSH-2.-0-x\n",
            b"SSH-1.99-x\n",
            b"SSH-4294967298.0-x\n",
        ] {
            assert!(read(ok).1.is_ok(), "{}", String::from_utf8_lossy(ok));
        }
        assert!(matches!(read(b"SSH-3.0-x\n").1, Err(IdentError::Version(_))));
        assert!(matches!(read(b"SSH--2.0-x\n").1, Err(IdentError::Version(_))));
        assert!(matches!(read(b"SSH-2.x-x\n").1, Err(IdentError::Invalid(_))));
    }

    #[test]
    fn split_feed_and_bare_lf() {
        let mut r = IdentReader::default();
        assert_eq!(r.feed(b"SSH-1.99-x").1, Ok(None));
        assert_eq!(r.feed(b"y\n").1, Ok(Some("SSH-1.99-xy".into())));
    }

    #[test]
    fn refusals_like_sshd() {
        assert!(matches!(read(b"GET / HTTP/1.0\r\n").1, Err(IdentError::Invalid(_))));
        assert!(matches!(read(b"SSH-1.5-old\r\n").1, Err(IdentError::Version(_))));
        assert!(matches!(read(b"SSH-2.0\r\n").1, Err(IdentError::Invalid(_))));
        assert!(matches!(read(b"SSH-2.0-a\rb\n").1, Err(IdentError::Invalid(_))));
        assert!(matches!(read(b"SSH-2.0-\r\n").1, Err(IdentError::Invalid(_))));
        assert!(matches!(read(b"SSH-2.0-Probe-x\r\n").1, Err(IdentError::Scanner(_))));
        assert!(matches!(
            read(b"SSH-2.0-SSH_Version_Mapper\r\n").1,
            Err(IdentError::Scanner(_))
        ));
        assert!(matches!(read(b"SSH-2.0-a\0\n").1, Err(IdentError::Invalid(_))));
        let long = vec![b'A'; MAX_LINE + 10];
        assert!(matches!(read(&long).1, Err(IdentError::Invalid(_))));
    }

    proptest! {
        #[test]
        fn never_overreads(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (used, _) = read(&data);
            prop_assert!(used <= data.len());
        }
    }
}
