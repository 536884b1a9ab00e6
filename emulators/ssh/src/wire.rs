//! SSH wire encodings (RFC 4251 §5): bounded readers for `byte`, `boolean`,
//! `uint32`, `string`, `name-list` and `mpint`, and their writers.

use thiserror::Error;

/// Longest string field we accept inside a packet. A packet is at most
/// 256 KiB, so this only guards against length fields that lie.
pub const MAX_STRING: usize = 256 * 1024;

/// A malformed field: the peer sent bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("truncated: needed {needed} more bytes, {left} left")]
    Truncated { needed: usize, left: usize },
    #[error("string of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("name-list is not printable ASCII without spaces")]
    BadNameList,
    #[error("mpint is not in canonical form")]
    BadMpint,
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// A cursor over untrusted bytes; every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError::Truncated {
                needed: n,
                left: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        if len > MAX_STRING {
            return Err(WireError::TooLong(len));
        }
        self.take(len)
    }

    /// A string read as UTF-8, lossily: user names and commands are logged
    /// whatever they contain.
    pub fn utf8(&mut self) -> Result<String, WireError> {
        Ok(String::from_utf8_lossy(self.string()?).into_owned())
    }

    /// A comma-separated name-list; names are printable ASCII (RFC 4251 §6).
    pub fn name_list(&mut self) -> Result<NameList, WireError> {
        let raw = self.string()?;
        if raw.iter().any(|&c| !(0x21..=0x7e).contains(&c)) {
            return Err(WireError::BadNameList);
        }
        let text = std::str::from_utf8(raw).map_err(|_| WireError::BadNameList)?;
        Ok(NameList::parse(text))
    }

    /// An mpint's magnitude (big-endian, no sign byte). Negative values are
    /// refused: no SSH key-exchange value is negative.
    pub fn mpint(&mut self) -> Result<&'a [u8], WireError> {
        let raw = self.string()?;
        match raw {
            [] => Ok(raw),
            [first, ..] if first & 0x80 != 0 => Err(WireError::BadMpint),
            [0, second, ..] if second & 0x80 == 0 => Err(WireError::BadMpint),
            [0] => Err(WireError::BadMpint),
            [0, rest @ ..] => Ok(rest),
            _ => Ok(raw),
        }
    }

    pub fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.buf.len()))
        }
    }
}

/// A decoded name-list, kept in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameList(pub Vec<String>);

impl NameList {
    pub fn parse(text: &str) -> Self {
        if text.is_empty() {
            return Self(Vec::new());
        }
        Self(text.split(',').map(str::to_owned).collect())
    }

    pub fn from_strs<S: AsRef<str>>(names: &[S]) -> Self {
        Self(names.iter().map(|s| s.as_ref().to_owned()).collect())
    }

    pub fn joined(&self) -> String {
        self.0.join(",")
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a string. Every string we write is far below 4 GiB; a longer one
/// would be a bug of ours, so its length is clamped rather than wrapped.
pub fn put_string(out: &mut Vec<u8>, v: &[u8]) {
    put_u32(out, u32::try_from(v.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(v);
}

pub fn put_name_list(out: &mut Vec<u8>, names: &NameList) {
    put_string(out, names.joined().as_bytes());
}

/// Writes a non-negative integer given as big-endian magnitude bytes.
pub fn put_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude.iter().position(|&b| b != 0).unwrap_or(magnitude.len());
    let trimmed = &magnitude[start..];
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        put_u32(out, u32::try_from(trimmed.len() + 1).unwrap_or(u32::MAX));
        out.push(0);
        out.extend_from_slice(trimmed);
    } else {
        put_string(out, trimmed);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn mpint_examples_from_rfc4251() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0x00]);
        assert_eq!(out, [0, 0, 0, 0]);
        out.clear();
        put_mpint(&mut out, &[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]);
        assert_eq!(out, [0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]);
        out.clear();
        put_mpint(&mut out, &[0x80]);
        assert_eq!(out, [0, 0, 0, 2, 0, 0x80]);
        assert_eq!(Reader::new(&[0, 0, 0, 2, 0xed, 0xcc]).mpint(), Err(WireError::BadMpint));
    }

    #[test]
    fn lying_lengths_are_refused() {
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).string(),
            Err(WireError::TooLong(_))
        ));
        assert!(matches!(
            Reader::new(&[0, 0, 0, 9, 1]).string(),
            Err(WireError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn string_round_trips(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            put_string(&mut out, &data);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.string()?, &data[..]);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn mpint_round_trips(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut out = Vec::new();
            put_mpint(&mut out, &data);
            let got = Reader::new(&out).mpint()?.to_vec();
            let start = data.iter().position(|&b| b != 0).unwrap_or(data.len());
            prop_assert_eq!(got, data[start..].to_vec());
        }

        #[test]
        fn name_list_round_trips(names in proptest::collection::vec("[a-z0-9@.-]{1,20}", 0..10)) {
            let list = NameList::from_strs(&names);
            let mut out = Vec::new();
            put_name_list(&mut out, &list);
            prop_assert_eq!(Reader::new(&out).name_list()?, list);
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.name_list();
            let _ = r.mpint();
            let _ = r.u32();
            let _ = r.bool();
        }
    }
}
