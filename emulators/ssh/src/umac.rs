//! UMAC (RFC 4418) with AES-128, for `umac-64@openssh.com` and
//! `umac-128@openssh.com`. Written from the RFC's pseudocode; checked against
//! its appendix vectors. Messages are bounded by the SSH packet limit
//! (256 KiB), far below the 2^17-bit L2 threshold where the RFC switches to
//! a 128-bit polynomial, so only the 64-bit polynomial is implemented and
//! longer inputs are refused.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};

/// Longest message accepted: L1 output must stay within 2^17 bits (2^14
/// bytes), i.e. 2^11 chunks of 1024 bytes.
pub const MAX_MESSAGE: usize = 1 << 21;

const P64: u64 = 0xFFFF_FFFF_FFFF_FFC5; // 2^64 - 59
const P36: u64 = 0x0000_000F_FFFF_FFFB; // 2^36 - 5

/// A keyed UMAC instance producing `taglen` bytes (4, 8, 12 or 16).
#[derive(Clone)]
pub struct Umac {
    taglen: usize,
    /// Nonce cipher key K' = KDF(K, 0, 16).
    pdf: Aes128,
    /// L1 key as 32-bit words (big-endian reads of the KDF output).
    l1: Vec<u32>,
    /// Per-iteration (k64) L2 keys.
    l2: Vec<u64>,
    /// Per-iteration L3 keys: 8 words mod p36, and the 4-byte xor key.
    l3a: Vec<[u64; 8]>,
    l3b: Vec<[u8; 4]>,
}

/// RFC 4418 §3.2.1: AES in a counter-like mode keyed by K.
fn kdf(cipher: &Aes128, index: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    let mut counter: u64 = 1;
    while out.len() < len {
        let mut block = [0u8; 16];
        block[7] = index;
        block[8..].copy_from_slice(&counter.to_be_bytes());
        let mut b = GenericArray::from(block);
        cipher.encrypt_block(&mut b);
        out.extend_from_slice(&b);
        counter += 1;
    }
    out.truncate(len);
    out
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl Umac {
    pub fn new(key: &[u8; 16], taglen: usize) -> Self {
        let cipher = Aes128::new(GenericArray::from_slice(key));
        let iters = taglen / 4;
        let l1_bytes = kdf(&cipher, 1, 1024 + (iters - 1) * 16);
        let l1 = l1_bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let l2_bytes = kdf(&cipher, 2, iters * 24);
        let l2 = (0..iters)
            .map(|i| be64(&l2_bytes[i * 24..]) & 0x01FF_FFFF_01FF_FFFF)
            .collect();
        let l3a_bytes = kdf(&cipher, 3, iters * 64);
        let l3a = (0..iters)
            .map(|i| {
                let mut k = [0u64; 8];
                for (j, slot) in k.iter_mut().enumerate() {
                    *slot = be64(&l3a_bytes[i * 64 + j * 8..]) % P36;
                }
                k
            })
            .collect();
        let l3b_bytes = kdf(&cipher, 4, iters * 4);
        let l3b = (0..iters)
            .map(|i| {
                let mut k = [0u8; 4];
                k.copy_from_slice(&l3b_bytes[i * 4..i * 4 + 4]);
                k
            })
            .collect();
        let pdf_key = kdf(&cipher, 0, 16);
        Self {
            taglen,
            pdf: Aes128::new(GenericArray::from_slice(&pdf_key)),
            l1,
            l2,
            l3a,
            l3b,
        }
    }

    /// The tag of `message` under `nonce` (1 to 16 bytes), or `None` when
    /// the message is longer than [`MAX_MESSAGE`].
    pub fn tag(&self, message: &[u8], nonce: &[u8]) -> Option<Vec<u8>> {
        if message.len() > MAX_MESSAGE || nonce.is_empty() || nonce.len() > 16 {
            return None;
        }
        let mut tag = self.uhash(message);
        let pad = self.pdf(nonce);
        for (t, p) in tag.iter_mut().zip(pad) {
            *t ^= p;
        }
        Some(tag)
    }

    /// RFC 4418 §3.3: the pad for a nonce. Short tags use a slice of the
    /// AES block chosen by the nonce's low bits, so consecutive nonces share
    /// one block.
    fn pdf(&self, nonce: &[u8]) -> Vec<u8> {
        let mut block = [0u8; 16];
        block[..nonce.len()].copy_from_slice(nonce);
        let mut index = 0;
        if self.taglen == 4 || self.taglen == 8 {
            let slots = 16 / self.taglen; // 4 or 2: a power of two
            index = usize::from(block[nonce.len() - 1]) % slots;
            block[nonce.len() - 1] ^= index as u8;
        }
        let mut b = GenericArray::from(block);
        self.pdf.encrypt_block(&mut b);
        if self.taglen == 4 || self.taglen == 8 {
            b[index * self.taglen..(index + 1) * self.taglen].to_vec()
        } else {
            b[..self.taglen].to_vec()
        }
    }

    fn uhash(&self, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.taglen);
        for i in 0..self.taglen / 4 {
            let key = &self.l1[i * 4..i * 4 + 256];
            let a = l1_hash(key, message);
            let b: [u8; 16] = if message.len() <= 1024 {
                let mut b = [0u8; 16];
                b[8..].copy_from_slice(&a);
                b
            } else {
                let y = poly64(self.l2[i], &a);
                let mut b = [0u8; 16];
                b[8..].copy_from_slice(&y.to_be_bytes());
                b
            };
            out.extend_from_slice(&l3_hash(&self.l3a[i], &self.l3b[i], &b));
        }
        out
    }
}

/// NH over one zero-padded chunk whose message words are little-endian
/// (the RFC's ENDIAN-SWAP), key words big-endian.
fn nh(key: &[u32], chunk: &[u8]) -> u64 {
    let words: Vec<u32> = chunk
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut y: u64 = 0;
    for (m, k) in words.chunks_exact(8).zip(key.chunks_exact(8)) {
        for j in 0..4 {
            let a = u64::from(m[j].wrapping_add(k[j]));
            let b = u64::from(m[j + 4].wrapping_add(k[j + 4]));
            y = y.wrapping_add(a.wrapping_mul(b));
        }
    }
    y
}

/// L1-HASH: NH of each 1024-byte chunk plus its bit length, concatenated.
fn l1_hash(key: &[u32], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunks: Vec<&[u8]> = message.chunks(1024).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for chunk in chunks {
        let bits = (chunk.len() as u64) * 8;
        // zeropad to a positive multiple of 32 bytes.
        let padded_len = chunk.len().div_ceil(32).max(1) * 32;
        let mut padded = chunk.to_vec();
        padded.resize(padded_len, 0);
        let y = nh(key, &padded).wrapping_add(bits);
        out.extend_from_slice(&y.to_be_bytes());
    }
    out
}

/// POLY(64, 2^64 - 2^32, k, M) over 8-byte big-endian words.
fn poly64(k: u64, message: &[u8]) -> u64 {
    let mul_add = |y: u64, m: u64| -> u64 {
        let v = (u128::from(k) * u128::from(y) + u128::from(m)) % u128::from(P64);
        v as u64 // < p64 < 2^64
    };
    let marker = P64 - 1;
    let offset = 59u64;
    let max_word = 0xFFFF_FFFF_0000_0000u64; // 2^64 - 2^32
    let mut y: u64 = 1;
    for w in message.chunks_exact(8) {
        let m = be64(w);
        if m >= max_word {
            y = mul_add(y, marker);
            y = mul_add(y, m - offset);
        } else {
            y = mul_add(y, m);
        }
    }
    y
}

/// L3-HASH: inner product mod 2^36 - 5 of 16-bit words, xored with K2.
fn l3_hash(k1: &[u64; 8], k2: &[u8; 4], m: &[u8; 16]) -> [u8; 4] {
    let mut y: u64 = 0;
    for (i, k) in k1.iter().enumerate() {
        let word = u64::from(u16::from_be_bytes([m[2 * i], m[2 * i + 1]]));
        y = (y + word * k) % P36;
    }
    let y = (y as u32).to_be_bytes(); // y < 2^36; the RFC keeps the low 32 bits
    [y[0] ^ k2[0], y[1] ^ k2[1], y[2] ^ k2[2], y[3] ^ k2[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn tag(msg: &[u8], taglen: usize) -> String {
        hex(&Umac::new(b"abcdefghijklmnop", taglen)
            .tag(msg, b"bcdefghi")
            .expect("within limits"))
    }

    /// RFC 4418 Appendix (Test Vectors), K = "abcdefghijklmnop", N = "bcdefghi".
    #[test]
    fn rfc4418_appendix_vectors() {
        let a = |n: usize| vec![b'a'; n];
        let abc = |n: usize| b"abc".repeat(n);
        let cases: Vec<(Vec<u8>, &str, &str, &str)> = vec![
            (vec![], "113145fb", "6e155fad26900be1", "32fedb100c79ad58f07ff764"),
            (a(3), "3b91d102", "44b5cb542f220104", "185e4fe905cba7bd85e4c2dc"),
            (a(1 << 10), "599b350b", "26bf2f5d60118bd9", "7a54abe04af82d60fb298c3c"),
            (a(1 << 15), "58dcf532", "27f8ef643b0d118d", "7b136bd911e4b734286ef2be"),
            (a(1 << 20), "db6364d1", "a4477e87e9f55853", "f8acfa3ac31cfeea047f7b11"),
            (abc(1), "abf3a3a0", "d4d7b9f6bd4fbfcf", "883c3d4b97a61976ffcf2323"),
            (abc(500), "abeb3c8b", "d4cf26ddefd5c01a", "8824a260c53c66a36c9260a6"),
        ];
        for (msg, t32, t64, t96) in cases {
            assert_eq!(tag(&msg, 4), t32, "32-bit, {} bytes", msg.len());
            assert_eq!(tag(&msg, 8), t64, "64-bit, {} bytes", msg.len());
            assert_eq!(tag(&msg, 12), t96, "96-bit, {} bytes", msg.len());
            assert!(tag(&msg, 16).starts_with(t96), "128-bit extends 96-bit");
        }
        assert_eq!(tag(b"", 16), "32fedb100c79ad58f07ff7643cc60465");
    }

    #[test]
    fn oversized_and_bad_nonces_are_refused() {
        let u = Umac::new(&[0; 16], 8);
        assert!(u.tag(&vec![0; MAX_MESSAGE + 1], b"12345678").is_none());
        assert!(u.tag(b"x", b"").is_none());
    }
}
