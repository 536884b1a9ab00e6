//! SSH_MSG_KEXINIT (RFC 4253 §7.1) and algorithm negotiation.

use crate::wire::{NameList, Reader, WireError, put_bool, put_name_list, put_u8, put_u32};

pub const MSG_KEXINIT: u8 = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KexInit {
    pub cookie: [u8; 16],
    pub kex: NameList,
    pub host_key: NameList,
    pub enc_c2s: NameList,
    pub enc_s2c: NameList,
    pub mac_c2s: NameList,
    pub mac_s2c: NameList,
    pub comp_c2s: NameList,
    pub comp_s2c: NameList,
    pub lang_c2s: NameList,
    pub lang_s2c: NameList,
    pub first_kex_follows: bool,
}

impl KexInit {
    /// Decodes a KEXINIT payload (message byte included).
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let msg = r.u8()?;
        if msg != MSG_KEXINIT {
            return Err(WireError::Truncated { needed: 1, left: 0 });
        }
        let mut cookie = [0u8; 16];
        cookie.copy_from_slice(r.take(16)?);
        let k = Self {
            cookie,
            kex: r.name_list()?,
            host_key: r.name_list()?,
            enc_c2s: r.name_list()?,
            enc_s2c: r.name_list()?,
            mac_c2s: r.name_list()?,
            mac_s2c: r.name_list()?,
            comp_c2s: r.name_list()?,
            comp_s2c: r.name_list()?,
            lang_c2s: r.name_list()?,
            lang_s2c: r.name_list()?,
            first_kex_follows: r.bool()?,
        };
        // The reserved uint32; anything after it is ignored, as sshd does.
        r.u32()?;
        Ok(k)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        put_u8(&mut out, MSG_KEXINIT);
        out.extend_from_slice(&self.cookie);
        for list in [
            &self.kex,
            &self.host_key,
            &self.enc_c2s,
            &self.enc_s2c,
            &self.mac_c2s,
            &self.mac_s2c,
            &self.comp_c2s,
            &self.comp_s2c,
            &self.lang_c2s,
            &self.lang_s2c,
        ] {
            put_name_list(&mut out, list);
        }
        put_bool(&mut out, self.first_kex_follows);
        put_u32(&mut out, 0);
        out
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub kex: String,
    pub host_key: String,
    pub enc_c2s: String,
    pub enc_s2c: String,
    pub mac_c2s: String,
    pub mac_s2c: String,
    pub comp_c2s: String,
    pub comp_s2c: String,
}

/// Which list had no algorithm in common (sshd's "no matching … found").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMatch(pub &'static str);

/// The first client algorithm the server also lists (RFC 4253 §7.1).
/// `usable` filters out names the server lists but this build cannot run.
fn first_match(client: &NameList, server: &NameList, what: &'static str) -> Result<String, NoMatch> {
    client
        .0
        .iter()
        .find(|c| server.contains(c))
        .cloned()
        .ok_or(NoMatch(what))
}

pub fn negotiate(client: &KexInit, server: &KexInit) -> Result<Negotiated, NoMatch> {
    // A MAC is not negotiated for AEAD ciphers; sshd still requires a common
    // MAC name, so we do too.
    Ok(Negotiated {
        kex: first_match(&client.kex, &server.kex, "key exchange method")?,
        host_key: first_match(&client.host_key, &server.host_key, "host key type")?,
        enc_c2s: first_match(&client.enc_c2s, &server.enc_c2s, "cipher")?,
        enc_s2c: first_match(&client.enc_s2c, &server.enc_s2c, "cipher")?,
        mac_c2s: first_match(&client.mac_c2s, &server.mac_c2s, "MAC")?,
        mac_s2c: first_match(&client.mac_s2c, &server.mac_s2c, "MAC")?,
        comp_c2s: first_match(&client.comp_c2s, &server.comp_c2s, "compression method")?,
        comp_s2c: first_match(&client.comp_s2c, &server.comp_s2c, "compression method")?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> KexInit {
        let l = |s: &str| NameList::parse(s);
        KexInit {
            cookie: [7; 16],
            kex: l("curve25519-sha256,ext-info-c,kex-strict-c-v00@openssh.com"),
            host_key: l("ssh-ed25519,rsa-sha2-512"),
            enc_c2s: l("aes128-ctr,chacha20-poly1305@openssh.com"),
            enc_s2c: l("chacha20-poly1305@openssh.com"),
            mac_c2s: l("hmac-sha2-256"),
            mac_s2c: l("hmac-sha2-256"),
            comp_c2s: l("none"),
            comp_s2c: l("none,zlib@openssh.com"),
            lang_c2s: l(""),
            lang_s2c: l(""),
            first_kex_follows: false,
        }
    }

    #[test]
    fn round_trip_and_negotiate() {
        let k = sample();
        assert_eq!(KexInit::decode(&k.encode()), Ok(k.clone()));
        let mut server = k.clone();
        server.enc_c2s = NameList::parse("chacha20-poly1305@openssh.com,aes128-ctr");
        let n = negotiate(&k, &server).expect("common algorithms");
        assert_eq!(n.enc_c2s, "aes128-ctr", "the client's preference wins");
        server.host_key = NameList::parse("ssh-dss");
        assert_eq!(negotiate(&k, &server), Err(NoMatch("host key type")));
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = KexInit::decode(&data);
        }
    }
}
