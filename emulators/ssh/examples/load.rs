//! An SSH client that loads a server, for `cargo xtask bench ssh`. It is
//! built on this crate's transport pieces (KEXINIT, curve25519, the packet
//! codec), so one small process drives many connections and leaves the CPU
//! to the servers under test; the emulator and Debian's sshd get the same
//! client. It offers one choice of each: curve25519-sha256,
//! chacha20-poly1305@openssh.com, an ssh-ed25519 host key (whose signature
//! it verifies), no compression; strict kex and ext-info as OpenSSH 9.2 does.
//!
//! - `load handshakes ADDR USER PASSWORD WORKERS SECONDS`: WORKERS loops at
//!   once, each doing connect → key exchange → password → exec `true` (until
//!   its exit status, which must be 0, and the channel's close) →
//!   disconnect, starting new ones for SECONDS. Prints one JSON line:
//!   `{"handshakes":…,"errors":…,"seconds":…,"first_error":…}`.
//! - `load hold ADDR USER PASSWORD SESSIONS SOURCE[,SOURCE…]`: opens SESSIONS
//!   connections (round robin over the source addresses), each logged in
//!   with a pty and a shell sitting at its prompt; prints `ready N` and keeps
//!   them idle until stdin closes. Each sends SSH_MSG_IGNORE every 20 s (as
//!   ServerAliveInterval would), so that idle timeouts do not end them.

// A client tool, not an emulator: it makes its own sockets and reads the clock.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use decnet_emu_ssh::cipher::{CipherAlg, Direction};
use decnet_emu_ssh::hostkey;
use decnet_emu_ssh::ident::IdentReader;
use decnet_emu_ssh::kex::{HashAlg, HashInput, derive_key, exchange_hash};
use decnet_emu_ssh::kexinit::KexInit;
use decnet_emu_ssh::mac::MacAlg;
use decnet_emu_ssh::transport::msg;
use decnet_emu_ssh::wire::{NameList, Reader, put_bool, put_mpint, put_string, put_u32};
use rand_core06::{OsRng, RngCore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

const IDENT: &str = "SSH-2.0-decnet_bench_load";
const CIPHER: &str = "chacha20-poly1305@openssh.com";
const HOST_KEY: &str = "ssh-ed25519";
/// Our receive window, and the largest packet we take (OpenSSH's defaults).
const WINDOW: u32 = 2 * 1024 * 1024;
const MAX_PACKET: u32 = 32 * 1024;
const KEEPALIVE: Duration = Duration::from_secs(20);
/// Handshakes under way at once while `hold` opens its sessions.
const OPENING: usize = 32;
/// SSH_MSG_USERAUTH_BANNER (the server never needs to send it).
const USERAUTH_BANNER: u8 = 53;

fn fail<T>(what: impl Into<String>) -> Result<T> {
    Err(what.into().into())
}

fn pad(buf: &mut [u8]) {
    OsRng.fill_bytes(buf);
}

/// One connection: the socket, both directions' keys, unread bytes.
struct Ssh {
    stream: TcpStream,
    input: Vec<u8>,
    rx: Direction,
    tx: Direction,
    out: Vec<u8>,
}

impl Ssh {
    /// Seals a packet into the pending output; `flush` writes it.
    fn queue(&mut self, payload: &[u8]) {
        self.tx.seal(payload, &mut pad, &mut self.out);
    }

    async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    async fn send(&mut self, payload: &[u8]) -> Result<()> {
        self.queue(payload);
        self.flush().await
    }

    async fn read_more(&mut self) -> Result<()> {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await?;
        if n == 0 {
            return fail("the server closed the connection");
        }
        self.input.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// The next packet that matters: transport chatter (ignore, debug,
    /// ext-info, global requests) is dealt with here.
    async fn recv(&mut self) -> Result<Vec<u8>> {
        loop {
            let Some((payload, used)) = self.rx.open(&self.input).map_err(|e| e.to_string())? else {
                self.read_more().await?;
                continue;
            };
            self.input.drain(..used);
            match payload.first().copied() {
                Some(msg::IGNORE | msg::DEBUG | msg::EXT_INFO | USERAUTH_BANNER) => {}
                Some(msg::GLOBAL_REQUEST) => {
                    let mut r = Reader::new(&payload[1..]);
                    r.string()?;
                    if r.bool()? {
                        self.send(&[msg::REQUEST_FAILURE]).await?;
                    }
                }
                Some(msg::DISCONNECT) => {
                    let mut r = Reader::new(&payload[1..]);
                    let code = r.u32()?;
                    return fail(format!("disconnected ({code}): {}", r.utf8()?));
                }
                Some(_) => return Ok(payload),
                None => return fail("an empty packet"),
            }
        }
    }

    async fn expect(&mut self, want: u8, what: &str) -> Result<Vec<u8>> {
        let p = self.recv().await?;
        if p[0] != want {
            return fail(format!("expected {what} ({want}), got message {}", p[0]));
        }
        Ok(p)
    }
}

fn kexinit() -> KexInit {
    let mut cookie = [0u8; 16];
    OsRng.fill_bytes(&mut cookie);
    let l = NameList::parse;
    KexInit {
        cookie,
        kex: l("curve25519-sha256,ext-info-c,kex-strict-c-v00@openssh.com"),
        host_key: l(HOST_KEY),
        enc_c2s: l(CIPHER),
        enc_s2c: l(CIPHER),
        // Not used with an AEAD cipher, but a MAC must still be agreed on.
        mac_c2s: l("hmac-sha2-256-etm@openssh.com,hmac-sha2-256"),
        mac_s2c: l("hmac-sha2-256-etm@openssh.com,hmac-sha2-256"),
        comp_c2s: l("none"),
        comp_s2c: l("none"),
        lang_c2s: l(""),
        lang_s2c: l(""),
        first_kex_follows: false,
    }
}

async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, exchanges keys and logs in with a password.
async fn login(addr: SocketAddr, source: Option<IpAddr>, user: &str, password: &str) -> Result<Ssh> {
    let mut ssh = Ssh {
        stream: connect(addr, source).await?,
        input: Vec::new(),
        rx: Direction::default(),
        tx: Direction::default(),
        out: Vec::new(),
    };
    // Our identification and KEXINIT go together; the server's come back.
    ssh.out.extend_from_slice(format!("{IDENT}\r\n").as_bytes());
    let ours = kexinit().encode();
    ssh.send(&ours).await?;
    let mut ident = IdentReader::default();
    let server_ident = loop {
        let (used, got) = ident.feed(&ssh.input);
        ssh.input.drain(..used);
        match got.map_err(|e| e.to_string())? {
            Some(line) => break line,
            None => ssh.read_more().await?,
        }
    };
    let theirs = ssh.expect(msg::KEXINIT, "KEXINIT").await?;
    let server = KexInit::decode(&theirs)?;
    for (list, name) in [
        (&server.kex, "curve25519-sha256"),
        (&server.host_key, HOST_KEY),
        (&server.enc_s2c, CIPHER),
    ] {
        if !list.contains(name) {
            return fail(format!("the server does not offer {name}"));
        }
    }
    let strict = server.kex.contains("kex-strict-s-v00@openssh.com");

    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let secret = x25519_dalek::StaticSecret::from(secret);
    let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let mut init = vec![msg::KEX_ECDH_INIT];
    put_string(&mut init, &public);
    ssh.send(&init).await?;
    let reply = ssh.expect(msg::KEX_ECDH_REPLY, "KEX_ECDH_REPLY").await?;
    let mut r = Reader::new(&reply[1..]);
    let (host_key, server_public, signature) = (r.string()?, r.string()?, r.string()?);
    let server_public: [u8; 32] = server_public
        .try_into()
        .map_err(|_| "a server public value of the wrong size")?;
    let shared = secret
        .diffie_hellman(&x25519_dalek::PublicKey::from(server_public))
        .to_bytes();
    let mut k = Vec::new();
    put_mpint(&mut k, &shared);
    let h = exchange_hash(
        HashAlg::Sha256,
        &HashInput {
            client_ident: IDENT.as_bytes(),
            server_ident: server_ident.as_bytes(),
            client_kexinit: &ours,
            server_kexinit: &theirs,
            host_key,
            gex: &[],
            client_public: &public,
            server_public: &server_public,
            mpint: false,
            shared: &k,
        },
    );
    if !hostkey::verify(HOST_KEY, host_key, &h, signature) {
        return fail("the host key's signature does not verify");
    }
    let keys = |letter: u8, seq: u32| {
        let key = derive_key(
            HashAlg::Sha256,
            &k,
            &h,
            letter,
            &h,
            CipherAlg::ChaCha20Poly1305.key_len(),
        );
        // The MAC is ignored by the AEAD cipher.
        let mac = MacAlg::from_name("hmac-sha2-256").expect("a MAC this crate knows");
        Direction::new(CipherAlg::ChaCha20Poly1305, &key, &[], mac, &[0], seq)
    };
    ssh.send(&[msg::NEWKEYS]).await?;
    ssh.tx = keys(b'C', if strict { 0 } else { ssh.tx.seq });
    ssh.expect(msg::NEWKEYS, "NEWKEYS").await?;
    ssh.rx = keys(b'D', if strict { 0 } else { ssh.rx.seq });

    let mut service = vec![msg::SERVICE_REQUEST];
    put_string(&mut service, b"ssh-userauth");
    ssh.send(&service).await?;
    ssh.expect(msg::SERVICE_ACCEPT, "SERVICE_ACCEPT").await?;
    let mut auth = vec![msg::USERAUTH_REQUEST];
    for field in [user.as_bytes(), b"ssh-connection", b"password"] {
        put_string(&mut auth, field);
    }
    put_bool(&mut auth, false);
    put_string(&mut auth, password.as_bytes());
    ssh.send(&auth).await?;
    match ssh.recv().await?[0] {
        msg::USERAUTH_SUCCESS => Ok(ssh),
        msg::USERAUTH_FAILURE => fail(format!("the password of {user} was refused")),
        other => fail(format!("unexpected message {other} after the password")),
    }
}

/// Opens a session channel; returns the server's channel id.
async fn open_session(ssh: &mut Ssh) -> Result<u32> {
    let mut open = vec![msg::CHANNEL_OPEN];
    put_string(&mut open, b"session");
    for v in [0, WINDOW, MAX_PACKET] {
        put_u32(&mut open, v);
    }
    ssh.send(&open).await?;
    let p = ssh.recv().await?;
    if p[0] != msg::CHANNEL_OPEN_CONFIRMATION {
        return fail(format!("the session channel was refused (message {})", p[0]));
    }
    let mut r = Reader::new(&p[1..]);
    r.u32()?;
    Ok(r.u32()?)
}

fn request(remote: u32, name: &str, extra: &[u8]) -> Vec<u8> {
    let mut p = vec![msg::CHANNEL_REQUEST];
    put_u32(&mut p, remote);
    put_string(&mut p, name.as_bytes());
    put_bool(&mut p, true);
    p.extend_from_slice(extra);
    p
}

/// Waits for the answer to a channel request, skipping window adjustments.
async fn confirmed(ssh: &mut Ssh, what: &str) -> Result<()> {
    loop {
        match ssh.recv().await?[0] {
            msg::CHANNEL_SUCCESS => return Ok(()),
            msg::CHANNEL_WINDOW_ADJUST => {}
            other => return fail(format!("{what}: got message {other}")),
        }
    }
}

/// One complete `ssh HOST true`.
async fn exec_true(addr: SocketAddr, user: &str, password: &str) -> Result<()> {
    let mut ssh = login(addr, None, user, password).await?;
    let remote = open_session(&mut ssh).await?;
    let mut command = Vec::new();
    put_string(&mut command, b"true");
    ssh.send(&request(remote, "exec", &command)).await?;
    let mut status = None;
    loop {
        let p = ssh.recv().await?;
        match p[0] {
            msg::CHANNEL_SUCCESS
            | msg::CHANNEL_WINDOW_ADJUST
            | msg::CHANNEL_DATA
            | msg::CHANNEL_EXTENDED_DATA
            | msg::CHANNEL_EOF => {}
            msg::CHANNEL_REQUEST => {
                let mut r = Reader::new(&p[1..]);
                r.u32()?;
                if r.string()? == b"exit-status" {
                    r.bool()?;
                    status = Some(r.u32()?);
                }
            }
            msg::CHANNEL_CLOSE => break,
            other => return fail(format!("exec: got message {other}")),
        }
    }
    if status != Some(0) {
        return fail(format!("`true` ended with status {status:?}"));
    }
    // What OpenSSH's client sends last: its close, then a disconnect.
    let mut close = vec![msg::CHANNEL_CLOSE];
    put_u32(&mut close, remote);
    ssh.queue(&close);
    let mut bye = vec![msg::DISCONNECT];
    put_u32(&mut bye, 11); // SSH2_DISCONNECT_BY_APPLICATION
    put_string(&mut bye, b"disconnected by user");
    put_string(&mut bye, b"");
    ssh.send(&bye).await?;
    let _ = ssh.stream.shutdown().await;
    Ok(())
}

async fn handshakes(addr: SocketAddr, user: String, password: String, workers: usize, seconds: f64) -> Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let user = Arc::new(user);
    let password = Arc::new(password);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (user, password) = (Arc::clone(&user), Arc::clone(&password));
        tasks.spawn(async move {
            let (mut done, mut errors, mut first_error) = (0u64, 0u64, None::<String>);
            while Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(30), exec_true(addr, &user, &password)).await {
                    Ok(Ok(())) => done += 1,
                    failed => {
                        errors += 1;
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out after 30 s".to_string(),
                        };
                        first_error.get_or_insert(why);
                        // Do not spin on a server that refuses at once.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (done, errors, first_error)
        });
    }
    let (mut done, mut errors, mut first_error) = (0, 0, None);
    while let Some(joined) = tasks.join_next().await {
        let (d, e, f) = joined?;
        done += d;
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    // Handshakes under way at the deadline finish and count, over the time
    // they took.
    let elapsed = started.elapsed().as_secs_f64();
    let first_error = first_error.map_or("null".to_string(), |e| format!("{e:?}"));
    println!("{{\"handshakes\":{done},\"errors\":{errors},\"seconds\":{elapsed:.3},\"first_error\":{first_error}}}");
    Ok(())
}

/// Logs in, opens a pty shell and reads until its prompt.
async fn shell(addr: SocketAddr, source: IpAddr, user: &str, password: &str) -> Result<Ssh> {
    let mut ssh = login(addr, Some(source), user, password).await?;
    let remote = open_session(&mut ssh).await?;
    let mut pty = Vec::new();
    put_string(&mut pty, b"xterm");
    for v in [80, 24, 0, 0] {
        put_u32(&mut pty, v);
    }
    put_string(&mut pty, &[0]); // no terminal modes: TTY_OP_END
    ssh.send(&request(remote, "pty-req", &pty)).await?;
    confirmed(&mut ssh, "pty-req").await?;
    ssh.send(&request(remote, "shell", &[])).await?;
    let mut seen = Vec::new();
    loop {
        let p = ssh.recv().await?;
        match p[0] {
            msg::CHANNEL_DATA => {
                let mut r = Reader::new(&p[1..]);
                r.u32()?;
                seen.extend_from_slice(r.string()?);
                // A prompt: `user@host:~$ ` (or `# `), and no more output.
                if seen.ends_with(b"$ ") || seen.ends_with(b"# ") {
                    return Ok(ssh);
                }
                let keep = seen.len().saturating_sub(64);
                seen.drain(..keep);
            }
            msg::CHANNEL_SUCCESS | msg::CHANNEL_WINDOW_ADJUST | msg::CHANNEL_EXTENDED_DATA => {}
            other => return fail(format!("shell: got message {other}")),
        }
    }
}

/// Keeps one session open and idle until `stop` changes.
async fn idle(mut ssh: Ssh, mut stop: watch::Receiver<bool>) {
    let mut buf = [0u8; 4096];
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticks.tick() => {
                let mut ignore = vec![msg::IGNORE];
                put_string(&mut ignore, b"");
                if ssh.send(&ignore).await.is_err() {
                    break;
                }
            }
            // Whatever the server sends now is left unread: nothing answers it.
            n = ssh.stream.read(&mut buf) => if !matches!(n, Ok(n) if n > 0) { break },
        }
    }
}

async fn hold(addr: SocketAddr, user: String, password: String, sessions: usize, sources: Vec<IpAddr>) -> Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    let opening = Arc::new(Semaphore::new(OPENING));
    let user = Arc::new(user);
    let password = Arc::new(password);
    let mut opened = tokio::task::JoinSet::new();
    for i in 0..sessions {
        let source = sources[i % sources.len()];
        let (user, password, opening) = (Arc::clone(&user), Arc::clone(&password), Arc::clone(&opening));
        opened.spawn(async move {
            let _turn = opening.acquire_owned().await?;
            let timeout = Duration::from_secs(60);
            match tokio::time::timeout(timeout, shell(addr, source, &user, &password)).await {
                Ok(ssh) => ssh,
                Err(_) => fail(format!("session {i} from {source}: no prompt within 60 s")),
            }
        });
    }
    let mut idle_tasks = tokio::task::JoinSet::new();
    while let Some(joined) = opened.join_next().await {
        let ssh = joined??;
        idle_tasks.spawn(idle(ssh, stop.clone()));
    }
    println!("ready {sessions}");
    // The bench measures now; it closes our stdin when it is done.
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while lines.next_line().await?.is_some() {}
    stop_tx.send(true)?;
    while idle_tasks.join_next().await.is_some() {}
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let arg = |i: usize| args.get(i).cloned().ok_or("missing arguments; see the file's header");
    let addr: SocketAddr = arg(1)?.parse()?;
    let (user, password) = (arg(2)?, arg(3)?);
    match args.first().map(String::as_str) {
        Some("handshakes") => runtime.block_on(handshakes(addr, user, password, arg(4)?.parse()?, arg(5)?.parse()?)),
        Some("hold") => {
            let sources = arg(5)?
                .split(',')
                .map(str::parse)
                .collect::<std::result::Result<Vec<IpAddr>, _>>()?;
            runtime.block_on(hold(addr, user, password, arg(4)?.parse()?, sources))
        }
        _ => {
            fail("usage: load handshakes ADDR USER PASSWORD WORKERS SECONDS | hold ADDR USER PASSWORD SESSIONS SOURCES")
        }
    }
}
