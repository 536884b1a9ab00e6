//! Hostile bytes against the SSH server: the identification reader, the
//! KEXINIT decoder, the packet opener for every cipher/MAC, and a whole
//! server connection fed a valid identification then the fuzz input.
//! Nothing may panic; a decoded KEXINIT re-encodes to an equal one.
#![no_main]

use std::sync::{Arc, OnceLock};

use decnet_emu_ssh::cipher::{CipherAlg, Direction};
use decnet_emu_ssh::ident::IdentReader;
use decnet_emu_ssh::kexinit::KexInit;
use decnet_emu_ssh::mac::MacAlg;
use decnet_emu_ssh::{AuthAttempt, AuthDecision, Connection, Handler, HostKeys, Profile, ServerConfig};
use libfuzzer_sys::fuzz_target;

struct Deny;

impl Handler for Deny {
    fn auth(&mut self, _: &AuthAttempt) -> AuthDecision {
        AuthDecision::Reject
    }
}

fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            // Ed25519 only: RSA generation would dominate every run.
            let profile = Profile {
                release: "9.2p1".into(),
                source: String::new(),
                kex: names(&[
                    "curve25519-sha256",
                    "sntrup761x25519-sha512@openssh.com",
                    "ecdh-sha2-nistp256",
                ]),
                host_key: names(&["ssh-ed25519"]),
                ciphers: names(&["chacha20-poly1305@openssh.com", "aes128-ctr"]),
                macs: names(&["hmac-sha2-256", "umac-64-etm@openssh.com"]),
                compression: names(&["none", "zlib@openssh.com"]),
                ext_info_s: false,
                strict_kex: true,
                server_sig_algs: names(&["ssh-ed25519"]),
                publickey_hostbound: true,
                ping: true,
                sftp_extensions: Vec::new(),
            };
            let keys = Arc::new(HostKeys::from_seed(b"fuzz", None));
            Arc::new(ServerConfig::new("OpenSSH_9.2p1 Debian-2+deb12u10", profile, keys))
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let _ = IdentReader::default().feed(data);
    if let Ok(k) = KexInit::decode(data) {
        assert_eq!(KexInit::decode(&k.encode()), Ok(k));
    }
    if let Some((&selector, rest)) = data.split_first() {
        let ciphers = ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-ctr"];
        let macs = ["hmac-sha1", "umac-64-etm@openssh.com", "umac-128@openssh.com"];
        let cipher = CipherAlg::from_name(ciphers[usize::from(selector) % 3]).expect("known");
        let mac = MacAlg::from_name(macs[usize::from(selector / 3) % 3]).expect("known");
        let mut d = Direction::new(cipher, &[1; 64], &[2; 16], mac, &[3; 64], 0);
        let _ = d.open(rest);
        let _ = Direction::default().open(rest);
    }
    let mut conn = Connection::new(config(), Deny);
    conn.feed(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n");
    for chunk in data.chunks(97) {
        conn.feed(chunk);
    }
    let _ = conn.take_output();
});
