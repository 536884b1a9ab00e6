//! Ciphers and the binary packet protocol (RFC 4253 §6): framing, padding,
//! sequence numbers, encryption and MACs for one direction.

use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce};
use chacha20::ChaCha20Legacy;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use poly1305::Poly1305;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::mac::{MacAlg, MacKey};

/// OpenSSH's PACKET_MAX_SIZE: the largest `packet_length` accepted.
pub const MAX_PACKET: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherAlg {
    ChaCha20Poly1305,
    Aes128Gcm,
    Aes256Gcm,
    Aes128Ctr,
    Aes192Ctr,
    Aes256Ctr,
}

impl CipherAlg {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "chacha20-poly1305@openssh.com" => Self::ChaCha20Poly1305,
            "aes128-gcm@openssh.com" => Self::Aes128Gcm,
            "aes256-gcm@openssh.com" => Self::Aes256Gcm,
            "aes128-ctr" => Self::Aes128Ctr,
            "aes192-ctr" => Self::Aes192Ctr,
            "aes256-ctr" => Self::Aes256Ctr,
            _ => return None,
        })
    }

    pub fn key_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => 64,
            Self::Aes128Gcm | Self::Aes128Ctr => 16,
            Self::Aes192Ctr => 24,
            Self::Aes256Gcm | Self::Aes256Ctr => 32,
        }
    }

    pub fn iv_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => 0,
            Self::Aes128Gcm | Self::Aes256Gcm => 12,
            _ => 16,
        }
    }

    /// AEAD ciphers carry their own tag and ignore the negotiated MAC.
    pub fn is_aead(self) -> bool {
        matches!(self, Self::ChaCha20Poly1305 | Self::Aes128Gcm | Self::Aes256Gcm)
    }
}

/// Why an incoming packet was rejected; every one ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("Bad packet length {0}.")]
    Length(u32),
    #[error("padding error: packet length {0} is not a multiple of the block size")]
    Alignment(u32),
    #[error("bad padding length {0}")]
    Padding(u8),
    #[error("Corrupted MAC on input.")]
    Mac,
}

enum Ctr {
    A128(ctr::Ctr128BE<Aes128>),
    A192(ctr::Ctr128BE<Aes192>),
    A256(ctr::Ctr128BE<Aes256>),
}

impl Ctr {
    fn apply(&mut self, data: &mut [u8]) {
        match self {
            Ctr::A128(c) => c.apply_keystream(data),
            Ctr::A192(c) => c.apply_keystream(data),
            Ctr::A256(c) => c.apply_keystream(data),
        }
    }
}

enum Gcm {
    A128(Box<Aes128Gcm>),
    A256(Box<Aes256Gcm>),
}

enum Engine {
    Plain,
    ChaCha { main: [u8; 32], header: [u8; 32] },
    Gcm { cipher: Gcm, iv: [u8; 12] },
    Ctr { cipher: Box<Ctr>, mac: Box<MacKey> },
}

/// One direction of a connection: its keys and its sequence number.
pub struct Direction {
    engine: Engine,
    pub seq: u32,
    /// CTR without ETM: the first block is decrypted to read the length,
    /// which advances the keystream, so it is kept until the rest arrives.
    first_block: Option<Vec<u8>>,
}

impl Default for Direction {
    fn default() -> Self {
        Self {
            engine: Engine::Plain,
            seq: 0,
            first_block: None,
        }
    }
}

impl Direction {
    /// Keys from the key exchange; `mac` is ignored for AEAD ciphers.
    pub fn new(cipher: CipherAlg, key: &[u8], iv: &[u8], mac: MacAlg, mac_key: &[u8], seq: u32) -> Self {
        let engine = match cipher {
            CipherAlg::ChaCha20Poly1305 => {
                let mut main = [0u8; 32];
                let mut header = [0u8; 32];
                main.copy_from_slice(&key[..32]);
                header.copy_from_slice(&key[32..64]);
                Engine::ChaCha { main, header }
            }
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm => {
                let mut fixed = [0u8; 12];
                fixed.copy_from_slice(&iv[..12]);
                let g = if cipher == CipherAlg::Aes128Gcm {
                    Gcm::A128(Box::new(Aes128Gcm::new(aes_gcm::Key::<Aes128Gcm>::from_slice(
                        &key[..16],
                    ))))
                } else {
                    Gcm::A256(Box::new(Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(
                        &key[..32],
                    ))))
                };
                Engine::Gcm { cipher: g, iv: fixed }
            }
            CipherAlg::Aes128Ctr | CipherAlg::Aes192Ctr | CipherAlg::Aes256Ctr => {
                let iv = &iv[..16];
                let c = match cipher {
                    CipherAlg::Aes128Ctr => Ctr::A128(ctr::Ctr128BE::new(key[..16].into(), iv.into())),
                    CipherAlg::Aes192Ctr => Ctr::A192(ctr::Ctr128BE::new(key[..24].into(), iv.into())),
                    _ => Ctr::A256(ctr::Ctr128BE::new(key[..32].into(), iv.into())),
                };
                Engine::Ctr {
                    cipher: Box::new(c),
                    mac: Box::new(MacKey::new(mac, mac_key)),
                }
            }
        };
        Self {
            engine,
            seq,
            first_block: None,
        }
    }

    fn block_size(&self) -> usize {
        match self.engine {
            Engine::Plain | Engine::ChaCha { .. } => 8,
            _ => 16,
        }
    }

    /// Whether the length field travels outside the padded, encrypted part.
    fn length_apart(&self) -> bool {
        match &self.engine {
            Engine::Plain => false,
            Engine::ChaCha { .. } | Engine::Gcm { .. } => true,
            Engine::Ctr { mac, .. } => mac.alg.etm,
        }
    }

    fn tag_len(&self) -> usize {
        match &self.engine {
            Engine::Plain => 0,
            Engine::ChaCha { .. } | Engine::Gcm { .. } => 16,
            Engine::Ctr { mac, .. } => mac.alg.tag_len(),
        }
    }

    /// Frames, pads, encrypts and authenticates one payload, appending the
    /// wire bytes to `out`. `pad` supplies random padding bytes.
    pub fn seal(&mut self, payload: &[u8], pad: &mut dyn FnMut(&mut [u8]), out: &mut Vec<u8>) {
        let block = self.block_size();
        let counted = 1 + payload.len() + if self.length_apart() { 0 } else { 4 };
        let mut padlen = block - counted % block;
        if padlen < 4 {
            padlen += block;
        }
        let packet_len = 1 + payload.len() + padlen;
        let start = out.len();
        out.extend_from_slice(&u32::try_from(packet_len).unwrap_or(u32::MAX).to_be_bytes());
        out.push(padlen as u8); // < 2 * block = 32
        out.extend_from_slice(payload);
        let pad_start = out.len();
        out.resize(pad_start + padlen, 0);
        pad(&mut out[pad_start..]);
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        match &mut self.engine {
            Engine::Plain => {}
            Engine::ChaCha { main, header } => {
                let nonce = u64::from(seq).to_be_bytes();
                let mut h = ChaCha20Legacy::new((&*header).into(), (&nonce).into());
                h.apply_keystream(&mut out[start..start + 4]);
                let mut m = ChaCha20Legacy::new((&*main).into(), (&nonce).into());
                let mut poly_key = [0u8; 32];
                m.apply_keystream(&mut poly_key);
                m.seek(64u64);
                m.apply_keystream(&mut out[start + 4..]);
                let tag = Poly1305::new((&poly_key).into()).compute_unpadded(&out[start..]);
                out.extend_from_slice(&tag);
            }
            Engine::Gcm { cipher, iv } => {
                let (head, body) = out[start..].split_at_mut(4);
                let nonce = Nonce::from_slice(&iv[..]);
                let tag = match cipher {
                    Gcm::A128(c) => c.encrypt_in_place_detached(nonce, head, body),
                    Gcm::A256(c) => c.encrypt_in_place_detached(nonce, head, body),
                }
                // Encryption fails only for inputs beyond 64 GiB.
                .expect("GCM encrypts any SSH packet");
                out.extend_from_slice(&tag);
                bump_gcm(iv);
            }
            Engine::Ctr { cipher, mac } => {
                if mac.alg.etm {
                    cipher.apply(&mut out[start + 4..]);
                    let tag = mac.compute(seq, &out[start..]);
                    out.extend_from_slice(&tag);
                } else {
                    let tag = mac.compute(seq, &out[start..]);
                    cipher.apply(&mut out[start..]);
                    out.extend_from_slice(&tag);
                }
            }
        }
    }

    /// Takes one complete packet from the front of `buf`, if it has arrived.
    /// Returns the payload and how many bytes of `buf` it used.
    pub fn open(&mut self, buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, PacketError> {
        let block = self.block_size();
        let tag_len = self.tag_len();
        let apart = self.length_apart();
        if buf.len() < 4 || (!apart && self.first_block.is_none() && buf.len() < block) {
            return Ok(None);
        }
        let seq = self.seq;
        // The packet length, decrypted if need be.
        let packet_len = match &mut self.engine {
            Engine::Plain => be32(buf),
            Engine::ChaCha { header, .. } => {
                let nonce = u64::from(seq).to_be_bytes();
                let mut len = [buf[0], buf[1], buf[2], buf[3]];
                ChaCha20Legacy::new((&*header).into(), (&nonce).into()).apply_keystream(&mut len);
                u32::from_be_bytes(len)
            }
            Engine::Gcm { .. } => be32(buf),
            Engine::Ctr { cipher, mac } => {
                if mac.alg.etm {
                    be32(buf)
                } else {
                    let first = self.first_block.get_or_insert_with(|| {
                        let mut b = buf[..block].to_vec();
                        cipher.apply(&mut b);
                        b
                    });
                    be32(first)
                }
            }
        };
        let len = packet_len as usize;
        if !(5..=MAX_PACKET).contains(&len) {
            return Err(PacketError::Length(packet_len));
        }
        let aligned = if apart { len } else { len + 4 };
        if aligned % block != 0 {
            return Err(PacketError::Alignment(packet_len));
        }
        let total = 4 + len + tag_len;
        if buf.len() < total {
            return Ok(None);
        }
        let mut packet = buf[..4 + len].to_vec();
        let tag = &buf[4 + len..total];
        match &mut self.engine {
            Engine::Plain => {}
            Engine::ChaCha { main, .. } => {
                let nonce = u64::from(seq).to_be_bytes();
                let mut m = ChaCha20Legacy::new((&*main).into(), (&nonce).into());
                let mut poly_key = [0u8; 32];
                m.apply_keystream(&mut poly_key);
                let want = Poly1305::new((&poly_key).into()).compute_unpadded(&packet);
                if !bool::from(want.as_slice().ct_eq(tag)) {
                    return Err(PacketError::Mac);
                }
                m.seek(64u64);
                m.apply_keystream(&mut packet[4..]);
            }
            Engine::Gcm { cipher, iv } => {
                let (head, body) = packet.split_at_mut(4);
                let nonce = Nonce::from_slice(&iv[..]);
                let ok = match cipher {
                    Gcm::A128(c) => c.decrypt_in_place_detached(nonce, head, body, tag.into()),
                    Gcm::A256(c) => c.decrypt_in_place_detached(nonce, head, body, tag.into()),
                };
                ok.map_err(|_| PacketError::Mac)?;
                bump_gcm(iv);
            }
            Engine::Ctr { cipher, mac } => {
                if mac.alg.etm {
                    if !mac.verify(seq, &packet, tag) {
                        return Err(PacketError::Mac);
                    }
                    cipher.apply(&mut packet[4..]);
                } else {
                    let first = self.first_block.take().unwrap_or_default();
                    packet[..first.len()].copy_from_slice(&first);
                    cipher.apply(&mut packet[first.len()..]);
                    if !mac.verify(seq, &packet, tag) {
                        return Err(PacketError::Mac);
                    }
                }
            }
        }
        let padlen = packet[4];
        if usize::from(padlen) < 4 || usize::from(padlen) + 1 > len {
            return Err(PacketError::Padding(padlen));
        }
        self.seq = self.seq.wrapping_add(1);
        let payload = packet[5..4 + len - usize::from(padlen)].to_vec();
        Ok(Some((payload, total)))
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// RFC 5647 §7.1: the invocation counter is the IV's last 8 bytes.
fn bump_gcm(iv: &mut [u8; 12]) {
    let mut c = [0u8; 8];
    c.copy_from_slice(&iv[4..]);
    iv[4..].copy_from_slice(&u64::from_be_bytes(c).wrapping_add(1).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pair(cipher: &str, mac: &str) -> (Direction, Direction) {
        let c = CipherAlg::from_name(cipher).expect("known cipher");
        let m = MacAlg::from_name(mac).expect("known mac");
        let key: Vec<u8> = (0..64u8).collect();
        let iv: Vec<u8> = (100..116u8).collect();
        let mk: Vec<u8> = (7..71u8).collect();
        (
            Direction::new(c, &key, &iv, m, &mk, 3),
            Direction::new(c, &key, &iv, m, &mk, 3),
        )
    }

    const CIPHERS: [&str; 6] = [
        "chacha20-poly1305@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
    ];
    const MACS: [&str; 10] = [
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha1",
        "umac-64@openssh.com",
        "umac-128@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha1-etm@openssh.com",
        "umac-64-etm@openssh.com",
        "umac-128-etm@openssh.com",
    ];

    #[test]
    fn every_cipher_and_mac_round_trips_and_detects_tampering() {
        for cipher in CIPHERS {
            for mac in MACS {
                let (mut tx, mut rx) = pair(cipher, mac);
                let mut wire = Vec::new();
                for n in [0usize, 1, 15, 16, 300] {
                    wire.clear();
                    let payload = vec![n as u8; n];
                    tx.seal(&payload, &mut |p| p.fill(0xAA), &mut wire);
                    assert_eq!(rx.open(&wire[..wire.len() - 1]), Ok(None), "{cipher} {mac}: partial");
                    let (got, used) = rx.open(&wire).expect("valid").expect("complete");
                    assert_eq!((got, used), (payload, wire.len()), "{cipher} {mac}");
                }
                wire.clear();
                tx.seal(b"hello", &mut |p| p.fill(0), &mut wire);
                let last = wire.len() - 1;
                wire[last] ^= 1;
                assert!(rx.open(&wire).is_err(), "{cipher} {mac}: tamper");
            }
        }
    }

    #[test]
    fn plain_packets_follow_rfc4253_padding() {
        let mut d = Direction::default();
        let mut out = Vec::new();
        d.seal(&[20; 10], &mut |p| p.fill(0), &mut out);
        assert_eq!(out.len() % 8, 0);
        assert!(out[4] >= 4);
        assert_eq!(
            Direction::default().open(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            Err(PacketError::Length(u32::MAX))
        );
    }

    proptest! {
        #[test]
        fn open_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), ci in 0usize..6, mi in 0usize..10) {
            let (_, mut rx) = pair(CIPHERS[ci], MACS[mi]);
            let _ = rx.open(&data);
            let _ = Direction::default().open(&data);
        }
    }
}
