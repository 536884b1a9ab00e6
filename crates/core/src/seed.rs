//! Deterministic variety: every decky derives its identifiers from a seed.
//!
//! The fleet seed is a per-installation secret; a decky's seed is
//! HMAC-SHA256(fleet seed, decky name), so the same name in two installations
//! yields unrelated deckies, while a redeploy of one installation looks the same.
//! Per-decky values are drawn from labelled streams (`rng_for("mac")`), so adding
//! a new use of the seed never shifts the values of existing ones.

use std::fmt;

use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file in the state directory that holds the installation's fleet seed.
pub const FLEET_SEED_FILE: &str = "fleet.seed";

/// The installation-wide secret every decky seed derives from.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetSeed([u8; 32]);

impl FleetSeed {
    /// A seed taken from operator input (`--seed`, `[general] seed`): any text, hashed.
    pub fn from_passphrase(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }

    /// A seed from its 64-hex-digit form, as stored in `<state-dir>/fleet.seed`.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = decode_hex(text.trim())?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// A fresh random seed for a new installation.
    pub fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom_bytes(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The fixed seed used when no installation seed exists yet (dry runs on a new
    /// machine). Public by construction, so the identifiers it gives are placeholders.
    pub fn placeholder() -> Self {
        Self::from_passphrase("decnet placeholder seed")
    }

    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// The installation's seed from `<state-dir>/fleet.seed`; `None` when there is
    /// none yet (or it cannot be read: a dry run by a user who cannot see the
    /// state directory plans with placeholders rather than failing).
    pub fn read_installation(state_dir: &std::path::Path) -> Result<Option<Self>, crate::ConfigError> {
        let path = state_dir.join(FLEET_SEED_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_hex(&text).map(Some).ok_or_else(|| {
                crate::ConfigError::new(path.display().to_string(), "is not a fleet seed (64 hex digits)")
            }),
            Err(_) => Ok(None),
        }
    }

    /// The installation's seed, created (random, mode 0600) if there is none
    /// yet. Called by the first real deploy.
    pub fn ensure_installation(state_dir: &std::path::Path) -> std::io::Result<Self> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = state_dir.join(FLEET_SEED_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Self::from_hex(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a fleet seed (64 hex digits)", path.display()),
                )
            });
        }
        std::fs::create_dir_all(state_dir)?;
        let seed = Self::random()?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        writeln!(file, "{}", seed.to_hex())?;
        file.sync_all()?;
        Ok(seed)
    }

    /// The seed of the decky called `name` in this fleet.
    pub fn decky(&self, name: &str) -> DeckySeed {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(b"decnet decky seed v1\0");
        mac.update(name.as_bytes());
        DeckySeed(mac.finalize().into_bytes().into())
    }

    /// A stream for fleet-wide choices (random distros, random service sets).
    pub fn rng_for(&self, label: &str) -> SeedRng {
        SeedRng::derive(&self.0, label)
    }
}

impl fmt::Debug for FleetSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret itself in logs.
        f.write_str("FleetSeed(..)")
    }
}

/// A decky's own seed: everything that must look different per decky but stay the
/// same across redeploys derives from it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeckySeed([u8; 32]);

impl DeckySeed {
    /// A deterministic stream for one purpose, e.g. `"mac"`, `"hostname"`, `"redis.run_id"`.
    pub fn rng_for(&self, label: &str) -> SeedRng {
        SeedRng::derive(&self.0, label)
    }

    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = decode_hex(text)?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for DeckySeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeckySeed({}…)", &self.to_hex()[..8])
    }
}

impl Serialize for DeckySeed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for DeckySeed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("a decky seed is 64 hex digits"))
    }
}

/// A labelled, deterministic random stream (ChaCha20).
pub struct SeedRng(ChaCha20Rng);

impl SeedRng {
    fn derive(key: &[u8; 32], label: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(key);
        hash.update(b"\0");
        hash.update(label.as_bytes());
        Self(ChaCha20Rng::from_seed(hash.finalize().into()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    /// A uniform value in `0..n` (rejection sampling, so no modulo bias). `n` must be > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SeedRng::below(0)");
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// A uniform value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A uniformly shuffled copy of `items` (Fisher–Yates).
    pub fn shuffled<T: Clone>(&mut self, items: &[T]) -> Vec<T> {
        let mut out = items.to_vec();
        for i in (1..out.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            out.swap(i, j);
        }
        out
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn getrandom_bytes(out: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decky_seeds_differ_by_name_and_by_fleet() {
        let a = FleetSeed::from_passphrase("site-a");
        let b = FleetSeed::from_passphrase("site-b");
        assert_ne!(a.decky("decky-01"), a.decky("decky-02"));
        assert_ne!(a.decky("decky-01"), b.decky("decky-01"));
        assert_eq!(a.decky("decky-01"), a.decky("decky-01"));
    }

    #[test]
    fn labelled_streams_are_independent_and_repeatable() {
        let seed = FleetSeed::from_passphrase("x").decky("d");
        let mac1 = seed.rng_for("mac").next_u64();
        let mac2 = seed.rng_for("mac").next_u64();
        let host = seed.rng_for("hostname").next_u64();
        assert_eq!(mac1, mac2);
        assert_ne!(mac1, host);
    }

    #[test]
    fn hex_round_trips() {
        let s = FleetSeed::random().unwrap();
        assert_eq!(FleetSeed::from_hex(&s.to_hex()), Some(s.clone()));
        let d = s.decky("n");
        assert_eq!(DeckySeed::from_hex(&d.to_hex()), Some(d));
        assert_eq!(FleetSeed::from_hex("zz"), None);
        assert_eq!(FleetSeed::from_hex("ab"), None);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = FleetSeed::placeholder().rng_for("t");
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[rng.below(7) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
