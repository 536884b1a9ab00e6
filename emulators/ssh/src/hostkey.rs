//! Host keys derived from a per-decky seed (so a redeploy shows the same
//! keys), their public blobs, and signatures on the exchange hash; also
//! verification of client public-key signatures and SHA256 fingerprints.

use std::path::PathBuf;
use std::sync::OnceLock;

use ed25519_dalek::{Signer as _, Verifier as _};
use rand_chacha03::ChaCha20Rng;
use rand_chacha03::rand_core::SeedableRng;
use rsa::signature::SignatureEncoding as _;
use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha512};

use crate::wire::{Reader, put_mpint, put_string};

/// OpenSSH's default RSA host key size (ssh-keygen since 8.x).
pub const RSA_BITS: usize = 3072;

pub struct HostKeys {
    seed: [u8; 32],
    ed25519: ed25519_dalek::SigningKey,
    ecdsa: p256::ecdsa::SigningKey,
    rsa: OnceLock<RsaPrivateKey>,
    rsa_cache: Option<PathBuf>,
}

fn derive(seed: &[u8; 32], label: &str, counter: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"decnet-ssh-hostkey\0");
    h.update(label.as_bytes());
    h.update(counter.to_be_bytes());
    h.update(seed);
    h.finalize().into()
}

impl HostKeys {
    /// Keys for one decky. `rsa_cache` names a file where the RSA primes are
    /// kept, since generating 3072-bit RSA takes seconds.
    pub fn from_seed(seed: &[u8], rsa_cache: Option<PathBuf>) -> Self {
        let seed: [u8; 32] = Sha256::digest(seed).into();
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(&derive(&seed, "ed25519", 0));
        let mut counter = 0;
        let ecdsa = loop {
            // A hash is a valid P-256 scalar with overwhelming probability.
            if let Ok(k) = p256::ecdsa::SigningKey::from_bytes(&derive(&seed, "ecdsa-p256", counter).into()) {
                break k;
            }
            counter += 1;
        };
        Self {
            seed,
            ed25519,
            ecdsa,
            rsa: OnceLock::new(),
            rsa_cache,
        }
    }

    fn rsa(&self) -> &RsaPrivateKey {
        self.rsa.get_or_init(|| {
            if let Some(key) = self.rsa_cache.as_ref().and_then(|p| load_rsa(p)) {
                return key;
            }
            let mut rng = ChaCha20Rng::from_seed(derive(&self.seed, "rsa", 0));
            let key = RsaPrivateKey::new(&mut rng, RSA_BITS).expect("RSA key generation from a seeded RNG");
            if let Some(path) = &self.rsa_cache {
                store_rsa(path, &key);
            }
            key
        })
    }

    /// Builds the RSA key now (it is otherwise built on first use).
    pub fn warm_rsa(&self) {
        let _ = self.rsa();
    }

    /// The public key blob for a host-key algorithm name.
    pub fn public_blob(&self, alg: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match alg {
            "ssh-ed25519" => {
                put_string(&mut out, b"ssh-ed25519");
                put_string(&mut out, self.ed25519.verifying_key().as_bytes());
            }
            "ecdsa-sha2-nistp256" => {
                put_string(&mut out, b"ecdsa-sha2-nistp256");
                put_string(&mut out, b"nistp256");
                put_string(&mut out, self.ecdsa.verifying_key().to_encoded_point(false).as_bytes());
            }
            "rsa-sha2-512" | "rsa-sha2-256" | "ssh-rsa" => {
                let key = self.rsa();
                put_string(&mut out, b"ssh-rsa");
                put_mpint(&mut out, &key.e().to_bytes_be());
                put_mpint(&mut out, &key.n().to_bytes_be());
            }
            _ => return None,
        }
        Some(out)
    }

    /// The signature blob (`string alg, string sig`) over `data`.
    pub fn sign(&self, alg: &str, data: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match alg {
            "ssh-ed25519" => {
                put_string(&mut out, b"ssh-ed25519");
                put_string(&mut out, &self.ed25519.sign(data).to_bytes());
            }
            "ecdsa-sha2-nistp256" => {
                let sig: p256::ecdsa::Signature = self.ecdsa.sign(data);
                let mut inner = Vec::new();
                put_mpint(&mut inner, &sig.r().to_bytes());
                put_mpint(&mut inner, &sig.s().to_bytes());
                put_string(&mut out, b"ecdsa-sha2-nistp256");
                put_string(&mut out, &inner);
            }
            "rsa-sha2-512" => {
                let k = rsa::pkcs1v15::SigningKey::<Sha512>::new(self.rsa().clone());
                put_string(&mut out, b"rsa-sha2-512");
                put_string(&mut out, &k.sign(data).to_vec());
            }
            "rsa-sha2-256" => {
                let k = rsa::pkcs1v15::SigningKey::<Sha256>::new(self.rsa().clone());
                put_string(&mut out, b"rsa-sha2-256");
                put_string(&mut out, &k.sign(data).to_vec());
            }
            "ssh-rsa" => {
                let k = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(self.rsa().clone());
                put_string(&mut out, b"ssh-rsa");
                put_string(&mut out, &k.sign(data).to_vec());
            }
            _ => return None,
        }
        Some(out)
    }
}

fn load_rsa(path: &std::path::Path) -> Option<RsaPrivateKey> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let p = BigUint::parse_bytes(lines.next()?.as_bytes(), 16)?;
    let q = BigUint::parse_bytes(lines.next()?.as_bytes(), 16)?;
    let key = RsaPrivateKey::from_p_q(p, q, BigUint::from(65537u32)).ok()?;
    (key.size() * 8 == RSA_BITS).then_some(key)
}

fn store_rsa(path: &std::path::Path, key: &RsaPrivateKey) {
    let primes = key.primes();
    if primes.len() == 2 {
        let text = format!("{}\n{}\n", primes[0].to_str_radix(16), primes[1].to_str_radix(16));
        // A cache: failing to write it only costs time on the next start.
        let _ = std::fs::write(path, text);
    }
}

/// `SHA256:<base64>` as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64_nopad(&Sha256::digest(blob)))
}

/// The key type named inside a public key blob.
pub fn blob_type(blob: &[u8]) -> Option<String> {
    Reader::new(blob).utf8().ok()
}

fn base64_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Verifies a client's signature blob over `data` with the public key
/// `blob` for algorithm `alg`. Unknown or malformed keys do not verify.
pub fn verify(alg: &str, blob: &[u8], data: &[u8], signature: &[u8]) -> bool {
    verify_inner(alg, blob, data, signature).unwrap_or(false)
}

fn verify_inner(alg: &str, blob: &[u8], data: &[u8], signature: &[u8]) -> Option<bool> {
    let mut sig = Reader::new(signature);
    let sig_alg = sig.utf8().ok()?;
    let sig_bytes = sig.string().ok()?;
    if sig_alg != alg {
        return Some(false);
    }
    let mut key = Reader::new(blob);
    let key_type = key.utf8().ok()?;
    match (key_type.as_str(), alg) {
        ("ssh-ed25519", "ssh-ed25519") => {
            let pk: [u8; 32] = key.string().ok()?.try_into().ok()?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).ok()?;
            let s = ed25519_dalek::Signature::from_slice(sig_bytes).ok()?;
            Some(vk.verify(data, &s).is_ok())
        }
        ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
            let _curve = key.string().ok()?;
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(key.string().ok()?).ok()?;
            let mut inner = Reader::new(sig_bytes);
            let r = fixed32(inner.mpint().ok()?)?;
            let s = fixed32(inner.mpint().ok()?)?;
            let s = p256::ecdsa::Signature::from_scalars(r, s).ok()?;
            Some(vk.verify(data, &s).is_ok())
        }
        ("ssh-rsa", "rsa-sha2-512" | "rsa-sha2-256" | "ssh-rsa") => {
            let e = BigUint::from_bytes_be(key.mpint().ok()?);
            let n = BigUint::from_bytes_be(key.mpint().ok()?);
            let pk = RsaPublicKey::new(n, e).ok()?;
            let s = rsa::pkcs1v15::Signature::try_from(sig_bytes).ok()?;
            Some(match alg {
                "rsa-sha2-512" => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(pk).verify(data, &s).is_ok(),
                "rsa-sha2-256" => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(pk).verify(data, &s).is_ok(),
                _ => rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(pk)
                    .verify(data, &s)
                    .is_ok(),
            })
        }
        _ => Some(false),
    }
}

fn fixed32(v: &[u8]) -> Option<[u8; 32]> {
    if v.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_per_seed_and_differ_between_seeds() {
        let a = HostKeys::from_seed(b"decky-1", None);
        let b = HostKeys::from_seed(b"decky-1", None);
        let c = HostKeys::from_seed(b"decky-2", None);
        for alg in ["ssh-ed25519", "ecdsa-sha2-nistp256"] {
            assert_eq!(a.public_blob(alg), b.public_blob(alg));
            assert_ne!(a.public_blob(alg), c.public_blob(alg));
            let blob = a.public_blob(alg).expect("known alg");
            let sig = a.sign(alg, b"exchange hash").expect("known alg");
            assert!(verify(alg, &blob, b"exchange hash", &sig), "{alg}");
            assert!(!verify(alg, &blob, b"other hash", &sig), "{alg}");
        }
    }

    #[test]
    fn rsa_is_deterministic_and_its_cache_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("rsa.primes");
        let a = HostKeys::from_seed(b"decky-rsa", Some(cache.clone()));
        let blob = a.public_blob("rsa-sha2-512").expect("rsa");
        assert!(cache.exists());
        let b = HostKeys::from_seed(b"decky-rsa", Some(cache));
        assert_eq!(b.public_blob("rsa-sha2-512"), Some(blob.clone()));
        let c = HostKeys::from_seed(b"decky-rsa", None);
        assert_eq!(
            c.public_blob("ssh-rsa"),
            Some(blob.clone()),
            "same key without the cache"
        );
        for alg in ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] {
            let sig = b.sign(alg, b"H").expect("sign");
            assert!(verify(alg, &blob, b"H", &sig), "{alg}");
        }
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_nopad(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_nopad(b"fooba"), "Zm9vYmE");
        assert_eq!(base64_nopad(b"f"), "Zg");
    }
}
