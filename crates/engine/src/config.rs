//! Where an engine keeps its files and how it names what it creates.

use std::path::{Path, PathBuf};

/// The default instance prefix: namespaces `decnet-<decky>`, hairpin `decnet_macvlan0`.
pub const DEFAULT_PREFIX: &str = "decnet";

/// One DECNET instance on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Names every namespace and link this instance creates, so that it never
    /// touches anything it did not create (and instances do not touch each other).
    pub prefix: String,
}

impl EngineConfig {
    /// Checks an instance prefix: a lower-case letter, then up to nine lower-case
    /// letters or digits. No `-`: `dn` must never match another instance `dn-x`.
    pub fn check_prefix(prefix: &str) -> Result<(), String> {
        let ok = (1..=10).contains(&prefix.len())
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok {
            Ok(())
        } else {
            Err(format!(
                "`{prefix}` is not a valid prefix (a lower-case letter, then up to 9 letters or digits)"
            ))
        }
    }

    /// The namespace of decky `name`.
    pub fn netns_name(&self, decky: &str) -> String {
        format!("{}-{decky}", self.prefix)
    }

    /// The decky a namespace of this instance belongs to.
    pub fn decky_of_netns<'a>(&self, netns: &'a str) -> Option<&'a str> {
        netns.strip_prefix(&self.prefix)?.strip_prefix('-')
    }

    /// The namespace-name prefix of this instance's deckies.
    pub fn netns_prefix(&self) -> String {
        format!("{}-", self.prefix)
    }

    /// The host-side hairpin link (the original's name for the default instance).
    pub fn hairpin_name(&self) -> String {
        if self.prefix == DEFAULT_PREFIX {
            "decnet_macvlan0".to_string()
        } else {
            format!("{}.hp", self.prefix)
        }
    }

    /// The temporary macvlan link ARP probes go out of (it exists only
    /// while a probe runs; `.` cannot occur in decky names).
    pub fn probe_link_name(&self) -> String {
        format!("{}.arp", self.prefix)
    }

    pub fn socket_path(&self) -> PathBuf {
        self.run_dir.join("engine.sock")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.run_dir.join("engine.lock")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.run_dir.join("engine.pid")
    }

    /// The bus broker's socket (`decnet logs --follow`, the API and workers subscribe there).
    pub fn bus_socket_path(&self) -> PathBuf {
        self.run_dir.join("bus.sock")
    }

    /// The event store (SQLite).
    pub fn db_path(&self) -> PathBuf {
        self.state_dir.join("decnet.db")
    }

    /// Where events wait while a syslog target is down.
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }

    /// The desired fleet, persisted.
    pub fn fleet_path(&self) -> PathBuf {
        self.state_dir.join("fleet.json")
    }

    /// The engine's own log when it runs detached.
    pub fn engine_log_path(&self) -> PathBuf {
        self.log_dir.join("engine.log")
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str) -> EngineConfig {
        EngineConfig {
            state_dir: "/s".into(),
            run_dir: "/r".into(),
            log_dir: "/l".into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn names() {
        let c = config("decnet");
        assert_eq!(c.netns_name("web01"), "decnet-web01");
        assert_eq!(c.decky_of_netns("decnet-web01"), Some("web01"));
        assert_eq!(c.decky_of_netns("decnetx-web01"), None);
        assert_eq!(c.decky_of_netns("decnet.attacker"), None);
        assert_eq!(c.hairpin_name(), "decnet_macvlan0");
        assert_eq!(config("dt42").hairpin_name(), "dt42.hp");
        assert_eq!(config("dt42").probe_link_name(), "dt42.arp");
        // Every link name fits the kernel's 15 characters, for the longest prefix.
        let longest = config("abcdefghij");
        assert!(longest.probe_link_name().len() <= 15 && longest.hairpin_name().len() <= 15);
        assert!(EngineConfig::check_prefix("dt42").is_ok());
        assert!(EngineConfig::check_prefix("dn-x").is_err());
        assert!(EngineConfig::check_prefix("4dn").is_err());
        assert!(EngineConfig::check_prefix("abcdefghijk").is_err());
    }
}
