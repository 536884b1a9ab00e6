//! TFTP packets (RFC 1350, options RFC 2347). Pure: no I/O.

use std::collections::BTreeMap;

/// Longest request we parse; RFC 1350 requests fit in one 512-byte block.
pub const MAX_REQUEST: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read (RRQ) or write (WRQ) request.
    Request {
        op: Op,
        filename: Vec<u8>,
        mode: Vec<u8>,
        /// RFC 2347 options (`blksize`, `tsize` …), lower-cased names.
        options: BTreeMap<String, String>,
    },
    Data {
        block: u16,
        data: Vec<u8>,
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: Vec<u8>,
    },
    /// An opcode TFTP does not define.
    Unknown {
        opcode: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "RRQ",
            Op::Write => "WRQ",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    Malformed(&'static str),
    TooLarge { limit: usize, got: usize },
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Malformed(what) => write!(f, "malformed packet: {what}"),
            CodecError::TooLarge { limit, got } => write!(f, "packet of {got} bytes exceeds {limit}"),
        }
    }
}

/// TFTP error codes (RFC 1350 §5).
pub mod error_code {
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const ILLEGAL_OPERATION: u16 = 4;
}

pub fn decode(bytes: &[u8]) -> Result<Packet, CodecError> {
    if bytes.len() > MAX_REQUEST {
        return Err(CodecError::TooLarge {
            limit: MAX_REQUEST,
            got: bytes.len(),
        });
    }
    let (head, body) = bytes
        .split_at_checked(2)
        .ok_or(CodecError::Malformed("shorter than an opcode"))?;
    let opcode = u16::from_be_bytes([head[0], head[1]]);
    match opcode {
        1 | 2 => {
            let mut fields = body.split(|b| *b == 0);
            let filename = fields
                .next()
                .filter(|f| !f.is_empty())
                .ok_or(CodecError::Malformed("no filename"))?;
            let mode = fields.next().ok_or(CodecError::Malformed("no mode"))?;
            if !body.ends_with(&[0]) {
                return Err(CodecError::Malformed("request not NUL-terminated"));
            }
            let mut rest: Vec<&[u8]> = fields.collect();
            // The terminating NUL leaves one empty trailing field.
            rest.pop();
            let mut options = BTreeMap::new();
            for pair in rest.chunks(2) {
                if let [name, value] = pair {
                    options.insert(
                        String::from_utf8_lossy(name).to_ascii_lowercase(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
            }
            Ok(Packet::Request {
                op: if opcode == 1 { Op::Read } else { Op::Write },
                filename: filename.to_vec(),
                mode: mode.to_vec(),
                options,
            })
        }
        3 => {
            let (block, data) = body.split_at_checked(2).ok_or(CodecError::Malformed("short DATA"))?;
            Ok(Packet::Data {
                block: u16::from_be_bytes([block[0], block[1]]),
                data: data.to_vec(),
            })
        }
        4 => {
            let block: [u8; 2] = body
                .try_into()
                .map_err(|_| CodecError::Malformed("ACK is not 4 bytes"))?;
            Ok(Packet::Ack {
                block: u16::from_be_bytes(block),
            })
        }
        5 => {
            let (code, message) = body.split_at_checked(2).ok_or(CodecError::Malformed("short ERROR"))?;
            let message = message.strip_suffix(&[0]).unwrap_or(message);
            Ok(Packet::Error {
                code: u16::from_be_bytes([code[0], code[1]]),
                message: message.to_vec(),
            })
        }
        other => Ok(Packet::Unknown { opcode: other }),
    }
}

/// An ERROR packet.
pub fn encode_error(code: u16, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.extend_from_slice(&5u16.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_requests_with_options() {
        let p = decode(b"\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00tsize\x000\x00").unwrap();
        let Packet::Request {
            op,
            filename,
            mode,
            options,
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!(op, Op::Read);
        assert_eq!(filename, b"pxelinux.0");
        assert_eq!(mode, b"octet");
        assert_eq!(options["blksize"], "1468");
        assert_eq!(options["tsize"], "0");
        let p = decode(b"\x00\x02running-config\x00netascii\x00").unwrap();
        assert!(matches!(p, Packet::Request { op: Op::Write, .. }));
    }

    #[test]
    fn refuses_malformed_packets() {
        assert_eq!(decode(b"\x00"), Err(CodecError::Malformed("shorter than an opcode")));
        assert_eq!(
            decode(b"\x00\x01\x00octet\x00"),
            Err(CodecError::Malformed("no filename"))
        );
        assert_eq!(decode(b"\x00\x01file"), Err(CodecError::Malformed("no mode")));
        assert_eq!(
            decode(b"\x00\x01file\x00octet"),
            Err(CodecError::Malformed("request not NUL-terminated"))
        );
        assert!(matches!(decode(&[0; 2000]), Err(CodecError::TooLarge { .. })));
        assert_eq!(decode(b"\x00\x09abc"), Ok(Packet::Unknown { opcode: 9 }));
    }

    #[test]
    fn error_packets_round_trip() {
        let bytes = encode_error(error_code::ACCESS_VIOLATION, "Access violation");
        assert_eq!(
            decode(&bytes),
            Ok(Packet::Error {
                code: 2,
                message: b"Access violation".to_vec()
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1500)) {
            let _ = decode(&bytes);
        }
    }
}
