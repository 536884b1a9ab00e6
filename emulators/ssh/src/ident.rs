//! The identification exchange (RFC 4253 §4.2), read the way sshd reads it:
//! a line ends with LF (CR before it is optional), is at most 8192 bytes,
//! may not contain NUL, and must start with `SSH-`. A server does not accept
//! lines before the client's identification (sshd since 7.x answers them
//! with "Invalid SSH identification string."); protocol 1 is refused with
//! "Protocol major versions differ.".

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
}

impl IdentError {
    /// The text sshd sends before hanging up.
    pub fn reply(&self) -> &'static str {
        match self {
            IdentError::Invalid(_) => "Invalid SSH identification string.\r\n",
            IdentError::Version(_) => "Protocol major versions differ.\r\n",
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
    /// identification line. Returns how many bytes were used and, once the
    /// line is complete, the identification without its line ending.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Result<Option<String>, IdentError>) {
        for (i, &c) in input.iter().enumerate() {
            match c {
                b'\r' if !self.saw_cr => self.saw_cr = true,
                b'\n' => return (i + 1, self.finish()),
                0 | b'\r' => return (i + 1, Err(IdentError::Invalid(self.lossy()))),
                _ if self.saw_cr => return (i + 1, Err(IdentError::Invalid(self.lossy()))),
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
        let text = self.lossy_full();
        if self.line.len() <= 4 || !self.line.starts_with(b"SSH-") {
            return Err(IdentError::Invalid(text));
        }
        // "SSH-<major>.<minor>-<software>", software non-empty.
        let rest = &text[4..];
        let Some((proto, software)) = rest.split_once('-') else {
            return Err(IdentError::Invalid(text));
        };
        let Some((major, minor)) = proto.split_once('.') else {
            return Err(IdentError::Invalid(text));
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            return Err(IdentError::Invalid(text));
        };
        if software.is_empty() {
            return Err(IdentError::Invalid(text));
        }
        if !(major == 2 || (major == 1 && minor == 99)) {
            return Err(IdentError::Version(text));
        }
        Ok(Some(text))
    }

    fn lossy_full(&self) -> String {
        String::from_utf8_lossy(&self.line).into_owned()
    }
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
