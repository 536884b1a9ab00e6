//! The telnet daemons a decky can imitate, as data (`personas/telnet/*.toml`):
//! what each says first, which values it asks the client for, and its login
//! program's prompts, messages and delays.

use std::time::Duration;

use serde::Deserialize;

use crate::codec::{self, SEND};

/// The daemons, embedded: (persona `daemon` value, TOML).
const DAEMONS: &[(&str, &str)] = &[
    ("inetutils", include_str!("../../../personas/telnet/inetutils.toml")),
    ("busybox", include_str!("../../../personas/telnet/busybox.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[allow(dead_code)] // Documentation for whoever reads the file.
    description: String,
    opening: Vec<String>,
    request: Vec<String>,
    settle: Vec<String>,
    banner: String,
    login_prompt: String,
    password_prompt: String,
    incorrect: String,
    fail_delay_ms: u64,
    max_tries: u32,
    too_many: String,
    login_timeout_s: u64,
    timed_out: String,
}

/// One daemon, ready to serve.
#[derive(Debug, Clone)]
pub struct Profile {
    pub opening: Vec<u8>,
    /// Options to ask the value of, in order, when the client WILLs them.
    pub request: Vec<u8>,
    pub settle: Vec<u8>,
    pub banner: String,
    pub login_prompt: String,
    pub password_prompt: String,
    pub incorrect: String,
    pub fail_delay: Duration,
    pub max_tries: u32,
    pub too_many: String,
    pub login_timeout: Duration,
    pub timed_out: String,
}

impl Profile {
    /// The profile of `daemon` (`inetutils`, `busybox`).
    pub fn named(daemon: &str) -> Result<Self, String> {
        let (_, text) = DAEMONS
            .iter()
            .find(|(name, _)| *name == daemon)
            .ok_or_else(|| format!("no telnet daemon `{daemon}` (known: inetutils, busybox)"))?;
        let file = format!("personas/telnet/{daemon}.toml");
        let raw: Raw = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        let commands = |list: &[String]| -> Result<Vec<u8>, String> {
            let mut out = Vec::new();
            for c in list {
                out.extend(codec::parse_command(c).map_err(|e| format!("{file}: {e}"))?);
            }
            Ok(out)
        };
        let request = raw
            .request
            .iter()
            .map(|name| codec::option_code(name).ok_or_else(|| format!("{file}: unknown telnet option `{name}`")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            opening: commands(&raw.opening)?,
            request,
            settle: commands(&raw.settle)?,
            banner: raw.banner,
            login_prompt: raw.login_prompt,
            password_prompt: raw.password_prompt,
            incorrect: raw.incorrect,
            fail_delay: Duration::from_millis(raw.fail_delay_ms),
            max_tries: raw.max_tries.max(1),
            too_many: raw.too_many,
            login_timeout: Duration::from_secs(raw.login_timeout_s),
            timed_out: raw.timed_out,
        })
    }

    /// `SB <option> SEND` for each requested option the client agreed to.
    pub fn requests(&self, agreed: impl Fn(u8) -> bool) -> Vec<u8> {
        self.request
            .iter()
            .filter(|o| agreed(**o))
            .flat_map(|o| codec::sub(*o, &[SEND]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_parses() {
        for (name, _) in DAEMONS {
            Profile::named(name).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(Profile::named("telnetd-ng").unwrap_err().contains("known"));
    }

    #[test]
    fn inetutils_opens_as_captured_from_the_real_daemon() {
        // The first bytes Debian 12's inetutils-telnetd sent (nmap's
        // "Linux telnetd" signature matches their middle).
        let p = Profile::named("inetutils").unwrap();
        assert_eq!(
            p.opening,
            b"\xff\xfb%\xff\xfb&\xff\xfd\x18\xff\xfd \xff\xfd#\xff\xfd'\xff\xfd$"
        );
        // It then asked for the speed, environment and terminal type the
        // client offered, in that order.
        let agreed = [24, 32, 39];
        assert_eq!(
            p.requests(|o| agreed.contains(&o)),
            b"\xff\xfa \x01\xff\xf0\xff\xfa'\x01\xff\xf0\xff\xfa\x18\x01\xff\xf0"
        );
    }
}
