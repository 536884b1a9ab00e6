//! Per-release server profiles (`personas/ssh/*.toml`): what a stock sshd
//! of that OpenSSH release offers, and HASSH fingerprints of KEXINITs.

use std::path::Path;

use md5::{Digest, Md5};
use serde::Deserialize;
use thiserror::Error;

use crate::kexinit::KexInit;
use crate::wire::NameList;

pub const STRICT_KEX_SERVER: &str = "kex-strict-s-v00@openssh.com";
pub const STRICT_KEX_CLIENT: &str = "kex-strict-c-v00@openssh.com";

/// One OpenSSH release's server offer, as stored in `personas/ssh/`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub release: String,
    #[serde(default)]
    pub source: String,
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub ciphers: Vec<String>,
    pub macs: Vec<String>,
    pub compression: Vec<String>,
    #[serde(default)]
    pub ext_info_s: bool,
    #[serde(default)]
    pub strict_kex: bool,
    #[serde(default)]
    pub server_sig_algs: Vec<String>,
    #[serde(default)]
    pub publickey_hostbound: bool,
    /// EXT_INFO advertises `ping@openssh.com` (OpenSSH 9.5 and later).
    #[serde(default)]
    pub ping: bool,
    /// The extensions the release's `sftp-server` offers in its VERSION
    /// packet, name and data, in its order.
    #[serde(default)]
    pub sftp_extensions: Vec<(String, String)>,
}

#[derive(Debug, Error)]
pub enum ProfileError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Toml { path: String, source: toml::de::Error },
    #[error("{path}: release {release:?} is not X.Y or X.YpZ")]
    Release { path: String, release: String },
    #[error("no profiles in {0}")]
    Empty(String),
}

impl Profile {
    /// The kex name-list exactly as sshd sends it, pseudo-algorithms last.
    pub fn kex_list(&self) -> NameList {
        let mut names = self.kex.clone();
        if self.ext_info_s {
            names.push("ext-info-s".into());
        }
        if self.strict_kex {
            names.push(STRICT_KEX_SERVER.into());
        }
        NameList(names)
    }

    /// The KEXINIT this profile sends (with the given cookie).
    pub fn kexinit(&self, cookie: [u8; 16]) -> KexInit {
        KexInit {
            cookie,
            kex: self.kex_list(),
            host_key: NameList(self.host_key.clone()),
            enc_c2s: NameList(self.ciphers.clone()),
            enc_s2c: NameList(self.ciphers.clone()),
            mac_c2s: NameList(self.macs.clone()),
            mac_s2c: NameList(self.macs.clone()),
            comp_c2s: NameList(self.compression.clone()),
            comp_s2c: NameList(self.compression.clone()),
            lang_c2s: NameList::default(),
            lang_s2c: NameList::default(),
            first_kex_follows: false,
        }
    }

    pub fn version(&self) -> Option<Version> {
        Version::parse(&self.release)
    }
}

/// An OpenSSH release number: major, minor, portable patch level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parses `9.2p1`, `10.3`, `OpenSSH_8.9p1 Ubuntu-3ubuntu0.17`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix("SSH-2.0-").unwrap_or(text);
        let text = text.strip_prefix("OpenSSH_").unwrap_or(text);
        let word = text.split([' ', '-']).next()?;
        let (major, rest) = word.split_once('.')?;
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let minor = &rest[..digits_end];
        let patch = rest[digits_end..]
            .strip_prefix('p')
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Some(Self(major.parse().ok()?, minor.parse().ok()?, patch))
    }
}

/// Every profile found in a directory.
#[derive(Debug, Clone)]
pub struct Profiles {
    sorted: Vec<(Version, Profile)>,
}

/// `personas/ssh/*.toml`, compiled in (as the Telnet emulator does with its
/// daemons), so a plain binary needs no data files.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "openssh-7.4.toml",
        include_str!("../../../personas/ssh/openssh-7.4.toml"),
    ),
    (
        "openssh-8.2p1.toml",
        include_str!("../../../personas/ssh/openssh-8.2p1.toml"),
    ),
    (
        "openssh-8.7.toml",
        include_str!("../../../personas/ssh/openssh-8.7.toml"),
    ),
    (
        "openssh-8.9p1.toml",
        include_str!("../../../personas/ssh/openssh-8.9p1.toml"),
    ),
    (
        "openssh-9.2p1.toml",
        include_str!("../../../personas/ssh/openssh-9.2p1.toml"),
    ),
    (
        "openssh-9.3.toml",
        include_str!("../../../personas/ssh/openssh-9.3.toml"),
    ),
    (
        "openssh-9.6.toml",
        include_str!("../../../personas/ssh/openssh-9.6.toml"),
    ),
    (
        "openssh-10.0.toml",
        include_str!("../../../personas/ssh/openssh-10.0.toml"),
    ),
];

impl Profiles {
    /// The profiles compiled into the binary.
    pub fn embedded() -> Result<Self, ProfileError> {
        Self::from_files(
            EMBEDDED
                .iter()
                .map(|(p, t)| (format!("personas/ssh/{p}"), t.to_string())),
        )
    }

    /// Parses (path, contents) pairs.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<Self, ProfileError> {
        let mut sorted = Vec::new();
        for (path, text) in files {
            let profile: Profile = toml::from_str(&text).map_err(|source| ProfileError::Toml {
                path: path.clone(),
                source,
            })?;
            let version = profile.version().ok_or_else(|| ProfileError::Release {
                path: path.clone(),
                release: profile.release.clone(),
            })?;
            sorted.push((version, profile));
        }
        if sorted.is_empty() {
            return Err(ProfileError::Empty("personas/ssh".into()));
        }
        sorted.sort_by_key(|(v, _)| *v);
        Ok(Self { sorted })
    }

    pub fn load_dir(dir: &Path) -> Result<Self, ProfileError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|source| ProfileError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| ProfileError::Io {
                    path: shown.clone(),
                    source,
                })?
                .path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let path_text = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Io {
                path: path_text.clone(),
                source,
            })?;
            files.push((path_text, text));
        }
        if files.is_empty() {
            return Err(ProfileError::Empty(shown));
        }
        Self::from_files(files)
    }

    /// The profile for a software version: the highest release not above
    /// it, or the oldest one when the version is older than all (or is not
    /// an OpenSSH version at all).
    pub fn closest(&self, software_version: &str) -> &Profile {
        let oldest = &self.sorted[0].1;
        let Some(wanted) = Version::parse(software_version) else {
            return oldest;
        };
        self.sorted
            .iter()
            .rev()
            .find(|(v, _)| *v <= wanted)
            .map_or(oldest, |(_, p)| p)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.sorted.iter().map(|(_, p)| p)
    }
}

/// Salesforce's HASSH: md5 of `kex;enc;mac;cmp` (client-to-server lists)
/// as lowercase hex. The same formula over a server's KEXINIT is HASSHServer.
pub fn hassh(kexinit: &KexInit) -> String {
    let text = hassh_string(kexinit);
    let digest = Md5::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The string HASSH hashes (kept in events for analysts).
pub fn hassh_string(kexinit: &KexInit) -> String {
    format!(
        "{};{};{};{}",
        kexinit.kex.joined(),
        kexinit.enc_c2s.joined(),
        kexinit.mac_c2s.joined(),
        kexinit.comp_c2s.joined()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn profiles() -> Profiles {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../personas/ssh");
        Profiles::load_dir(&dir).expect("personas/ssh loads")
    }

    #[test]
    fn debian_9_2_hassh_server_matches_the_real_sshd() {
        let p = profiles();
        let profile = p.closest("OpenSSH_9.2p1 Debian-2+deb12u10");
        assert_eq!(profile.release, "9.2p1");
        assert_eq!(hassh(&profile.kexinit([0; 16])), "425d29fe50d8e4f5e37efb6e24bcf660");
    }

    #[test]
    fn versions_map_to_the_closest_release() {
        let p = profiles();
        let pick = |v: &str| p.closest(v).release.clone();
        assert_eq!(pick("OpenSSH_8.9p1 Ubuntu-3ubuntu0.17"), "8.9p1");
        assert_eq!(pick("OpenSSH_8.2p1 Ubuntu-4ubuntu0.13"), "8.2p1");
        assert_eq!(pick("OpenSSH_7.4"), "7.4");
        assert_eq!(pick("OpenSSH_8.7"), "8.7");
        assert_eq!(pick("OpenSSH_9.3"), "9.3");
        assert_eq!(pick("OpenSSH_9.6"), "9.6");
        assert_eq!(pick("OpenSSH_9.9p2"), "9.6");
        assert_eq!(pick("OpenSSH_10.3"), "10.0");
        assert_eq!(pick("OpenSSH_10.4p1 Debian-5"), "10.0");
        assert_eq!(pick("OpenSSH_5.3"), "7.4");
        assert_eq!(pick("dropbear_2022.83"), "7.4");
    }

    #[test]
    fn every_distro_version_has_a_profile_and_every_profile_offers_what_we_implement() {
        let p = profiles();
        for profile in p.iter() {
            assert!(profile.kex.iter().any(|k| crate::kex::KexAlg::from_name(k).is_some()));
            for c in &profile.ciphers {
                assert!(crate::cipher::CipherAlg::from_name(c).is_some(), "{c}");
            }
            for m in &profile.macs {
                assert!(crate::mac::MacAlg::from_name(m).is_some(), "{m}");
            }
        }
    }

    #[test]
    fn the_embedded_profiles_are_every_file_in_personas_ssh() {
        let from_disk: Vec<Profile> = profiles().iter().cloned().collect();
        let embedded: Vec<Profile> = Profiles::embedded().expect("embedded").iter().cloned().collect();
        assert_eq!(embedded, from_disk, "add new personas/ssh files to EMBEDDED");
    }

    #[test]
    fn version_parsing() {
        assert_eq!(Version::parse("OpenSSH_9.2p1 Debian-2"), Some(Version(9, 2, 1)));
        assert_eq!(Version::parse("10.3"), Some(Version(10, 3, 0)));
        assert_eq!(Version::parse("SSH-2.0-OpenSSH_7.4"), Some(Version(7, 4, 0)));
        assert_eq!(Version::parse("nonsense"), None);
    }
}
