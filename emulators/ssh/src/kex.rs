//! Key-exchange methods (server side), the exchange hash and key
//! derivation (RFC 4253 §7–8, RFC 5656, RFC 8731, and OpenSSH's
//! sntrup761x25519 / mlkem768x25519 hybrids).

use ml_kem::kem::Encapsulate as _;
use ml_kem::{EncodedSizeUser as _, MlKem768};
use rand_core06::{OsRng, RngCore as _};
use sha2::{Digest, Sha256, Sha384, Sha512};
use thiserror::Error;

use rsa::BigUint;

use crate::wire::{put_mpint, put_string};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Self::Sha1 => run::<sha1::Sha1>(parts),
            Self::Sha256 => run::<Sha256>(parts),
            Self::Sha384 => run::<Sha384>(parts),
            Self::Sha512 => run::<Sha512>(parts),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KexAlg {
    Curve25519,
    Sntrup761X25519,
    MlKem768X25519,
    EcdhP256,
    EcdhP384,
    EcdhP521,
    /// diffie-hellman-group14/16/18 (fixed RFC 3526 groups).
    DhGroup {
        bits: usize,
        hash: HashAlg,
    },
    /// diffie-hellman-group-exchange-sha256 (RFC 4419).
    DhGex,
}

impl KexAlg {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "curve25519-sha256" | "curve25519-sha256@libssh.org" => Self::Curve25519,
            "sntrup761x25519-sha512" | "sntrup761x25519-sha512@openssh.com" => Self::Sntrup761X25519,
            "mlkem768x25519-sha256" => Self::MlKem768X25519,
            "ecdh-sha2-nistp256" => Self::EcdhP256,
            "ecdh-sha2-nistp384" => Self::EcdhP384,
            "ecdh-sha2-nistp521" => Self::EcdhP521,
            "diffie-hellman-group14-sha1" => Self::DhGroup {
                bits: 2048,
                hash: HashAlg::Sha1,
            },
            "diffie-hellman-group14-sha256" => Self::DhGroup {
                bits: 2048,
                hash: HashAlg::Sha256,
            },
            "diffie-hellman-group16-sha512" => Self::DhGroup {
                bits: 4096,
                hash: HashAlg::Sha512,
            },
            "diffie-hellman-group18-sha512" => Self::DhGroup {
                bits: 8192,
                hash: HashAlg::Sha512,
            },
            "diffie-hellman-group-exchange-sha256" => Self::DhGex,
            _ => return None,
        })
    }

    pub fn hash(self) -> HashAlg {
        match self {
            Self::Curve25519 | Self::MlKem768X25519 | Self::EcdhP256 | Self::DhGex => HashAlg::Sha256,
            Self::DhGroup { hash, .. } => hash,
            Self::EcdhP384 => HashAlg::Sha384,
            Self::Sntrup761X25519 | Self::EcdhP521 => HashAlg::Sha512,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KexError {
    #[error("client public value has the wrong size ({0} bytes)")]
    Size(usize),
    #[error("client public value is not a valid point")]
    Point,
}

/// The server's half of an exchange: its public value and the shared
/// secret K, already encoded as it enters hashes (mpint or string).
pub struct KexReply {
    pub server_public: Vec<u8>,
    pub shared: Vec<u8>,
    /// Public values are mpints (finite-field DH), not strings.
    pub mpint: bool,
}

/// A finite-field group: prime and generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhGroup {
    pub p: BigUint,
    pub g: BigUint,
}

impl DhGroup {
    pub fn fixed(bits: usize) -> Option<Self> {
        let hex = crate::modp::prime_hex(bits)?;
        Some(Self {
            p: BigUint::parse_bytes(hex.as_bytes(), 16)?,
            g: BigUint::from(2u32),
        })
    }

    /// sshd's group for a group exchange when no moduli file has one that
    /// fits (dh.c's dh_new_group_fallback): the fixed group for `max`.
    pub fn fallback(max: u32) -> Self {
        Self::fixed(if max < 3072 {
            2048
        } else if max < 6144 {
            4096
        } else {
            8192
        })
        .expect("the fixed groups parse")
    }

    /// Our half of the exchange for the client's `e`: (f, K as mpint).
    pub fn exchange(&self, e: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KexError> {
        let e = BigUint::from_bytes_be(e);
        let one = BigUint::from(1u32);
        // sshd's dh_pub_is_valid: 1 < e < p - 1.
        if e <= one || e >= &self.p - &one {
            return Err(KexError::Point);
        }
        let mut secret = [0u8; 128];
        OsRng.fill_bytes(&mut secret);
        let x = BigUint::from_bytes_be(&secret);
        let f = self.g.modpow(&x, &self.p);
        let k = e.modpow(&x, &self.p);
        let mut shared = Vec::new();
        put_mpint(&mut shared, &k.to_bytes_be());
        Ok((f.to_bytes_be(), shared))
    }
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

/// X25519 with a fresh secret: (our public, shared). An all-zero shared
/// secret (a low-order client point) is refused, as OpenSSH does.
fn x25519(client: &[u8]) -> Result<([u8; 32], [u8; 32]), KexError> {
    let client: [u8; 32] = client.try_into().map_err(|_| KexError::Size(client.len()))?;
    let secret = x25519_dalek::StaticSecret::from(random32());
    // From the precomputed base-point table: ~40% less work than the ladder.
    let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(client)).to_bytes();
    if shared == [0; 32] {
        return Err(KexError::Point);
    }
    Ok((public, shared))
}

/// The reply to a client's public value. For group exchange, `group` is the
/// group sent earlier.
pub fn server_reply(alg: KexAlg, client_public: &[u8], group: Option<&DhGroup>) -> Result<KexReply, KexError> {
    if let KexAlg::DhGroup { bits, .. } = alg {
        let group = DhGroup::fixed(bits).ok_or(KexError::Point)?;
        let (server_public, shared) = group.exchange(client_public)?;
        return Ok(KexReply {
            server_public,
            shared,
            mpint: true,
        });
    }
    if alg == KexAlg::DhGex {
        let (server_public, shared) = group.ok_or(KexError::Point)?.exchange(client_public)?;
        return Ok(KexReply {
            server_public,
            shared,
            mpint: true,
        });
    }
    let mut shared = Vec::new();
    let server_public = match alg {
        KexAlg::Curve25519 => {
            let (public, k) = x25519(client_public)?;
            put_mpint(&mut shared, &k);
            public.to_vec()
        }
        KexAlg::Sntrup761X25519 => {
            const PK: usize = sntrup761::PUBLIC_KEY_SIZE;
            if client_public.len() != PK + 32 {
                return Err(KexError::Size(client_public.len()));
            }
            let ek = sntrup761::EncapsulationKey::try_from(&client_public[..PK]).map_err(|_| KexError::Point)?;
            let (ct, ss) = ek.encapsulate_deterministic(random32());
            let (public, k) = x25519(&client_public[PK..])?;
            let hashed = Sha512::new().chain_update(ss.as_ref()).chain_update(k).finalize();
            put_string(&mut shared, &hashed);
            let mut out = ct.as_ref().to_vec();
            out.extend_from_slice(&public);
            out
        }
        KexAlg::MlKem768X25519 => {
            type Ek = <MlKem768 as ml_kem::KemCore>::EncapsulationKey;
            const PK: usize = 1184;
            if client_public.len() != PK + 32 {
                return Err(KexError::Size(client_public.len()));
            }
            let encoded = ml_kem::Encoded::<Ek>::try_from(&client_public[..PK]).map_err(|_| KexError::Point)?;
            let ek = Ek::from_bytes(&encoded);
            let (ct, ss) = ek.encapsulate(&mut OsRng).map_err(|_| KexError::Point)?;
            let (public, k) = x25519(&client_public[PK..])?;
            let hashed = Sha256::new().chain_update(ss.as_slice()).chain_update(k).finalize();
            put_string(&mut shared, &hashed);
            let mut out = ct.as_slice().to_vec();
            out.extend_from_slice(&public);
            out
        }
        KexAlg::EcdhP256 => {
            let peer = p256::PublicKey::from_sec1_bytes(client_public).map_err(|_| KexError::Point)?;
            let secret = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            let k = secret.diffie_hellman(&peer);
            put_mpint(&mut shared, k.raw_secret_bytes());
            p256::EncodedPoint::from(secret.public_key()).as_bytes().to_vec()
        }
        KexAlg::EcdhP384 => {
            let peer = p384::PublicKey::from_sec1_bytes(client_public).map_err(|_| KexError::Point)?;
            let secret = p384::ecdh::EphemeralSecret::random(&mut OsRng);
            let k = secret.diffie_hellman(&peer);
            put_mpint(&mut shared, k.raw_secret_bytes());
            p384::EncodedPoint::from(secret.public_key()).as_bytes().to_vec()
        }
        KexAlg::EcdhP521 => {
            let peer = p521::PublicKey::from_sec1_bytes(client_public).map_err(|_| KexError::Point)?;
            let secret = p521::ecdh::EphemeralSecret::random(&mut OsRng);
            let k = secret.diffie_hellman(&peer);
            put_mpint(&mut shared, k.raw_secret_bytes());
            p521::EncodedPoint::from(secret.public_key()).as_bytes().to_vec()
        }
        KexAlg::DhGroup { .. } | KexAlg::DhGex => return Err(KexError::Point),
    };
    Ok(KexReply {
        server_public,
        shared,
        mpint: false,
    })
}

/// Everything the exchange hash covers, in RFC order.
pub struct HashInput<'a> {
    pub client_ident: &'a [u8],
    pub server_ident: &'a [u8],
    pub client_kexinit: &'a [u8],
    pub server_kexinit: &'a [u8],
    pub host_key: &'a [u8],
    /// Group-exchange parameters (min, n, max, p, g), already encoded.
    pub gex: &'a [u8],
    pub client_public: &'a [u8],
    pub server_public: &'a [u8],
    /// Public values are mpints (finite-field DH) rather than strings.
    pub mpint: bool,
    /// K, already encoded.
    pub shared: &'a [u8],
}

pub fn exchange_hash(hash: HashAlg, h: &HashInput<'_>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4096);
    for s in [
        h.client_ident,
        h.server_ident,
        h.client_kexinit,
        h.server_kexinit,
        h.host_key,
    ] {
        put_string(&mut buf, s);
    }
    buf.extend_from_slice(h.gex);
    for s in [h.client_public, h.server_public] {
        if h.mpint {
            put_mpint(&mut buf, s);
        } else {
            put_string(&mut buf, s);
        }
    }
    buf.extend_from_slice(h.shared);
    hash.digest(&[&buf])
}

/// RFC 4253 §7.2: key material for letter `x` ('A'..='F'), `len` bytes.
pub fn derive_key(hash: HashAlg, shared: &[u8], h: &[u8], x: u8, session_id: &[u8], len: usize) -> Vec<u8> {
    let mut out = hash.digest(&[shared, h, &[x], session_id]);
    while out.len() < len {
        let more = hash.digest(&[shared, h, &out]);
        out.extend_from_slice(&more);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve25519_agrees_with_a_client() {
        let client_secret = random32();
        let client_public = x25519_dalek::x25519(client_secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        let reply = server_reply(KexAlg::Curve25519, &client_public, None).expect("valid point");
        let server_public: [u8; 32] = reply.server_public.try_into().expect("32 bytes");
        let k = x25519_dalek::x25519(client_secret, server_public);
        let mut want = Vec::new();
        put_mpint(&mut want, &k);
        assert_eq!(reply.shared, want);
        assert_eq!(
            server_reply(KexAlg::Curve25519, &[0; 32], None).err(),
            Some(KexError::Point)
        );
        assert_eq!(
            server_reply(KexAlg::Curve25519, &[1; 31], None).err(),
            Some(KexError::Size(31))
        );
    }

    #[test]
    fn sntrup761_hybrid_agrees_with_a_client() {
        let (ek, dk) = sntrup761::generate_key_from_seed([9; 32]);
        let client_secret = random32();
        let mut client_public = ek.as_ref().to_vec();
        client_public.extend_from_slice(&x25519_dalek::x25519(
            client_secret,
            x25519_dalek::X25519_BASEPOINT_BYTES,
        ));
        let reply = server_reply(KexAlg::Sntrup761X25519, &client_public, None).expect("valid");
        let (ct, xpub) = reply.server_public.split_at(sntrup761::CIPHERTEXT_SIZE);
        let ss = dk.decapsulate(&sntrup761::Ciphertext::try_from(ct).expect("size"));
        let k = x25519_dalek::x25519(client_secret, xpub.try_into().expect("32"));
        let mut want = Vec::new();
        put_string(
            &mut want,
            &Sha512::new().chain_update(ss.as_ref()).chain_update(k).finalize(),
        );
        assert_eq!(reply.shared, want);
    }

    #[test]
    fn mlkem768_hybrid_agrees_with_a_client() {
        use ml_kem::KemCore as _;
        use ml_kem::kem::Decapsulate as _;
        let (dk, ek) = MlKem768::generate(&mut OsRng);
        let client_secret = random32();
        let mut client_public = ek.as_bytes().to_vec();
        client_public.extend_from_slice(&x25519_dalek::x25519(
            client_secret,
            x25519_dalek::X25519_BASEPOINT_BYTES,
        ));
        let reply = server_reply(KexAlg::MlKem768X25519, &client_public, None).expect("valid");
        let (ct, xpub) = reply.server_public.split_at(1088);
        let ct = ml_kem::Ciphertext::<MlKem768>::try_from(ct).expect("size");
        let ss = dk.decapsulate(&ct).expect("decapsulates");
        let k = x25519_dalek::x25519(client_secret, xpub.try_into().expect("32"));
        let mut want = Vec::new();
        put_string(
            &mut want,
            &Sha256::new().chain_update(ss.as_slice()).chain_update(k).finalize(),
        );
        assert_eq!(reply.shared, want);
    }

    /// pi * 2^bits by Machin's formula, in integers.
    fn pi_fixed(bits: usize) -> BigUint {
        let one = BigUint::from(1u32) << (bits + 64);
        let atan_inv = |x: u32| {
            let x = BigUint::from(x);
            let x2 = &x * &x;
            let mut term = &one / &x;
            let mut plus = term.clone();
            let mut minus = BigUint::from(0u32);
            let mut n = 1u32;
            let mut positive = false;
            while term > BigUint::from(0u32) {
                term /= &x2;
                n += 2;
                if positive {
                    plus += &term / BigUint::from(n);
                } else {
                    minus += &term / BigUint::from(n);
                }
                positive = !positive;
            }
            plus - minus
        };
        (atan_inv(5) * BigUint::from(16u32) - atan_inv(239) * BigUint::from(4u32)) >> 64
    }

    #[test]
    fn modp_primes_follow_rfc3526s_formula() {
        for (bits, k) in [(2048usize, 124_476u32), (4096, 240_904), (8192, 4_743_158)] {
            let one = BigUint::from(1u32);
            let want = (one.clone() << bits) - (one.clone() << (bits - 64)) - one.clone()
                + ((pi_fixed(bits - 130) + BigUint::from(k)) << 64);
            assert_eq!(DhGroup::fixed(bits).expect("known").p, want, "{bits}");
        }
    }

    #[test]
    fn finite_field_dh_agrees_and_checks_bounds() {
        let group = DhGroup::fixed(2048).expect("group 14");
        let x = BigUint::from(0x1234_5678_9abc_def0u64);
        let e = group.g.modpow(&x, &group.p);
        let alg = KexAlg::from_name("diffie-hellman-group14-sha256").expect("known");
        let reply = server_reply(alg, &e.to_bytes_be(), None).expect("valid e");
        let k = BigUint::from_bytes_be(&reply.server_public).modpow(&x, &group.p);
        let mut want = Vec::new();
        put_mpint(&mut want, &k.to_bytes_be());
        assert_eq!(reply.shared, want);
        assert!(group.exchange(&[1]).is_err());
        assert!(group.exchange(&(&group.p - BigUint::from(1u32)).to_bytes_be()).is_err());
        assert_eq!(DhGroup::fallback(8192).p.bits(), 8192);
        assert_eq!(DhGroup::fallback(6143).p.bits(), 4096);
        assert_eq!(DhGroup::fallback(3072).p.bits(), 4096);
        assert_eq!(DhGroup::fallback(3071).p.bits(), 2048);
    }

    #[test]
    fn key_derivation_extends_past_one_digest() {
        let k = derive_key(HashAlg::Sha256, b"K", b"H", b'C', b"S", 64);
        assert_eq!(&k[..32], &HashAlg::Sha256.digest(&[b"K", b"H", b"C", b"S"])[..]);
        assert_eq!(&k[32..], &HashAlg::Sha256.digest(&[b"K", b"H", &k[..32]])[..]);
    }
}
