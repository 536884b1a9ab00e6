//! MACs: hmac-sha2-256/512, hmac-sha1, umac-64/128 and their
//! encrypt-then-MAC (`-etm@openssh.com`) forms.

use hmac::Hmac;
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::umac::Umac;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacKind {
    HmacSha256,
    HmacSha512,
    HmacSha1,
    Umac64,
    Umac128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAlg {
    pub kind: MacKind,
    pub etm: bool,
}

impl MacAlg {
    pub fn from_name(name: &str) -> Option<Self> {
        let (base, etm) = match name.strip_suffix("-etm@openssh.com") {
            Some(base) => (base, true),
            None => (name.strip_suffix("@openssh.com").unwrap_or(name), false),
        };
        let kind = match base {
            "hmac-sha2-256" => MacKind::HmacSha256,
            "hmac-sha2-512" => MacKind::HmacSha512,
            "hmac-sha1" => MacKind::HmacSha1,
            "umac-64" => MacKind::Umac64,
            "umac-128" => MacKind::Umac128,
            _ => return None,
        };
        // umac names always carry @openssh.com; hmac names never do
        // without -etm.
        let is_umac = matches!(kind, MacKind::Umac64 | MacKind::Umac128);
        if !etm && is_umac != name.ends_with("@openssh.com") {
            return None;
        }
        Some(Self { kind, etm })
    }

    pub fn key_len(self) -> usize {
        match self.kind {
            MacKind::HmacSha256 => 32,
            MacKind::HmacSha512 => 64,
            MacKind::HmacSha1 => 20,
            MacKind::Umac64 | MacKind::Umac128 => 16,
        }
    }

    pub fn tag_len(self) -> usize {
        match self.kind {
            MacKind::HmacSha256 => 32,
            MacKind::HmacSha512 => 64,
            MacKind::HmacSha1 => 20,
            MacKind::Umac64 => 8,
            MacKind::Umac128 => 16,
        }
    }
}

/// A keyed MAC for one direction.
#[derive(Clone)]
pub struct MacKey {
    pub alg: MacAlg,
    key: Vec<u8>,
    umac: Option<Umac>,
}

impl MacKey {
    pub fn new(alg: MacAlg, key: &[u8]) -> Self {
        let key = key[..alg.key_len()].to_vec();
        let umac = match alg.kind {
            MacKind::Umac64 | MacKind::Umac128 => {
                let mut k = [0u8; 16];
                k.copy_from_slice(&key);
                Some(Umac::new(&k, alg.tag_len()))
            }
            _ => None,
        };
        Self { alg, key, umac }
    }

    /// The tag over `data` for packet `seq`: HMAC covers `uint32 seq || data`,
    /// UMAC uses the 64-bit sequence number as nonce (OpenSSH's convention).
    pub fn compute(&self, seq: u32, data: &[u8]) -> Vec<u8> {
        fn hmac<M: hmac::Mac + hmac::digest::KeyInit>(key: &[u8], seq: u32, data: &[u8]) -> Vec<u8> {
            // HMAC accepts keys of any length.
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(&seq.to_be_bytes());
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match (self.alg.kind, &self.umac) {
            (MacKind::HmacSha256, _) => hmac::<Hmac<Sha256>>(&self.key, seq, data),
            (MacKind::HmacSha512, _) => hmac::<Hmac<Sha512>>(&self.key, seq, data),
            (MacKind::HmacSha1, _) => hmac::<Hmac<Sha1>>(&self.key, seq, data),
            (_, Some(umac)) => umac
                .tag(data, &u64::from(seq).to_be_bytes())
                // Packets are bounded far below UMAC's limit; an empty tag
                // never verifies, so a violation fails closed.
                .unwrap_or_default(),
            (_, None) => Vec::new(),
        }
    }

    pub fn verify(&self, seq: u32, data: &[u8], tag: &[u8]) -> bool {
        let want = self.compute(seq, data);
        want.len() == tag.len() && bool::from(want.ct_eq(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            MacAlg::from_name("umac-64-etm@openssh.com"),
            Some(MacAlg {
                kind: MacKind::Umac64,
                etm: true
            })
        );
        assert_eq!(MacAlg::from_name("umac-64").map(|m| m.etm), None);
        assert_eq!(MacAlg::from_name("hmac-sha1").map(|m| m.etm), Some(false));
        assert_eq!(MacAlg::from_name("hmac-sha1@openssh.com"), None);
        assert_eq!(MacAlg::from_name("hmac-md5"), None);
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        // RFC 4231 test case 2 with the 4-byte sequence number as the first
        // bytes of data: key "Jefe", data "what do ya want for nothing?".
        let m = MacKey::new(
            MacAlg {
                kind: MacKind::HmacSha256,
                etm: false,
            },
            &{
                let mut k = b"Jefe".to_vec();
                k.resize(32, 0);
                k
            },
        );
        let data = b"what do ya want for nothing?";
        let seq = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let tag = m.compute(seq, &data[4..]);
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
