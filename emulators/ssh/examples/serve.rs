//! A stand-alone server for poking at with real tools (`ssh -vvv`,
//! `ssh-audit`, `nmap`): `cargo run -p decnet-emu-ssh --example serve --
//! PORT "OpenSSH_9.2p1 Debian-2+deb12u10"`. Logs in `root:toor` and any
//! public key that signs; `exec` echoes the command. Binds 127.0.0.1 only.

// A tool, not an emulator: it binds its own listener and fails loudly.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use decnet_emu_ssh::{
    Action, AuthAttempt, AuthDecision, AuthMethod, ChannelRequest, Handler, HostKeys, Observation, Profiles,
    ServerConfig,
};

struct Echo;

impl Handler for Echo {
    fn auth(&mut self, attempt: &AuthAttempt) -> AuthDecision {
        if std::env::var_os("QUIET").is_none() {
            eprintln!("auth {attempt:?}");
        }
        match &attempt.method {
            AuthMethod::Password { password, .. } if attempt.user == "root" && password == "toor" => {
                AuthDecision::Accept
            }
            // Any key whose signature verifies (for benchmarks against sshd
            // with the same client key).
            AuthMethod::PublicKey { signed, verified, .. } if !signed || *verified => AuthDecision::Accept,
            _ => AuthDecision::Reject,
        }
    }

    fn observe(&mut self, what: &Observation) {
        eprintln!("observed {what:?}");
    }

    fn channel_request(&mut self, channel: u32, request: &ChannelRequest, out: &mut Vec<Action>) -> bool {
        eprintln!("request {request:?}");
        if let ChannelRequest::Exec { command } = request {
            let mut echo = command.clone();
            echo.push(b'\n');
            out.extend([
                Action::Data(channel, echo),
                Action::ExitStatus(channel, 0),
                Action::Eof(channel),
                Action::Close(channel),
            ]);
            return true;
        }
        matches!(
            request,
            ChannelRequest::Pty { .. } | ChannelRequest::WindowChange { .. }
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(2222);
    let version = args.next().unwrap_or_else(|| "OpenSSH_9.2p1 Debian-2+deb12u10".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../personas/ssh");
    let profile = Profiles::load_dir(&dir).unwrap().closest(&version).clone();
    eprintln!("profile {} for {version}", profile.release);
    let keys = Arc::new(HostKeys::from_seed(b"example-decky", None));
    // Generate the RSA key before the first client, as a deployment would.
    keys.warm_rsa();
    let config = Arc::new(ServerConfig::new(&version, profile, keys));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    loop {
        let (stream, peer) = listener.accept().await.unwrap();
        eprintln!("connection from {peer}");
        let config = config.clone();
        tokio::spawn(async move {
            let r = decnet_emu_ssh::server::serve(stream, config, Echo, None).await;
            eprintln!("{peer} done: {:?}", r.err());
        });
    }
}
