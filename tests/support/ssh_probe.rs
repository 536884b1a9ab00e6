//! A small SSH client for poking at servers the way a scanner or a fuzzer
//! would: raw bytes in, what came back and how the connection ended out,
//! and, for what only happens after a key exchange, a minimal SSH-2 client
//! (curve25519-sha256, one cipher and MAC of the caller's choice, password
//! or Ed25519 authentication) built on `decnet_emu_ssh`'s packet layer,
//! whose messages the caller writes byte by byte (or corrupts).
//!
//! Sockets are made on a thread inside a lab's attacker namespace
//! ([`in_namespace`]), so they reach deckies the way an attacker's tools do.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use decnet_emu_ssh::cipher::{CipherAlg, Direction};
use decnet_emu_ssh::kex::{HashAlg, HashInput, derive_key, exchange_hash};
use decnet_emu_ssh::mac::MacAlg;
use decnet_emu_ssh::wire::{Reader, put_bool, put_string, put_u32};

/// The identification Debian 12's `ssh` sends.
pub(crate) const CLIENT_IDENT: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6";

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut out)
        .unwrap();
    out
}

pub(crate) fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The public-key blob of an Ed25519 key.
pub(crate) fn ed25519_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, public);
    blob
}

/// Runs `f` on a thread that has entered the network namespace `ns`
/// (`/run/netns/<ns>`): the sockets it makes live there.
pub(crate) fn in_namespace<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Still open when we stopped listening.
    Open,
    /// The server closed (FIN).
    Eof,
    /// The server reset the connection (it closed with our bytes unread).
    Reset,
}

/// Reads from `stream` until it ends or stays quiet for `quiet` (from the
/// last byte received), at most `limit` in all.
fn drain(stream: &mut TcpStream, into: &mut Vec<u8>, quiet: Duration, limit: Duration) -> End {
    let start = Instant::now();
    let mut last = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return End::Eof,
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return End::Reset,
            Err(e) => panic!("read: {e}"),
        }
        if last.elapsed() >= quiet || start.elapsed() >= limit {
            return End::Open;
        }
    }
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

/// Reads the server's identification line (with its CRLF).
fn read_ident(stream: &mut TcpStream, got: &mut Vec<u8>) -> Vec<u8> {
    // Generous: the emulator makes a decky's RSA key at its first connection.
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            other => panic!("no identification from the server: {other:?} after {got:?}"),
        }
    }
    std::mem::take(got)
}

/// What a server answered to raw bytes: everything after its own
/// identification line, and how the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) ident: Vec<u8>,
    pub(crate) after: Vec<u8>,
    pub(crate) end: End,
}

/// Connects, waits for the server's identification unless `speak_first`,
/// sends `bytes`, and listens until the server closes or has been quiet
/// for `quiet`.
pub(crate) fn raw(addr: &str, bytes: &[u8], speak_first: bool, quiet: Duration) -> Answer {
    let mut stream = connect(addr);
    let mut got = Vec::new();
    if speak_first {
        stream.write_all(bytes).unwrap();
    }
    let ident = read_ident(&mut stream, &mut got);
    if !speak_first {
        // A server that hangs up first makes the write fail; what it said
        // before is still to be read.
        let _ = stream.write_all(bytes);
    }
    let end = drain(&mut stream, &mut got, quiet, Duration::from_secs(10));
    Answer { ident, after: got, end }
}

/// The unencrypted packets at the start of `bytes`, as payloads, and any
/// bytes left that do not make a whole packet.
pub(crate) fn plain_packets(mut bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut out = Vec::new();
    let mut rx = Direction::default();
    while let Ok(Some((payload, used))) = rx.open(bytes) {
        out.push(payload);
        bytes = &bytes[used..];
    }
    (out, bytes.to_vec())
}

/// A payload made comparable across servers: a KEXINIT's random cookie is
/// zeroed; the host keys announced after login (`hostkeys-00@openssh.com`)
/// are counted, not compared (each server has its own).
pub(crate) fn comparable(payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    if p.first() == Some(&20) && p.len() >= 17 {
        p[1..17].fill(0);
    }
    if p.first() == Some(&80) {
        let mut r = Reader::new(&p[1..]);
        if let (Ok(name), Ok(reply)) = (r.string(), r.bool())
            && name == b"hostkeys-00@openssh.com"
        {
            let mut count = 0;
            while r.string().is_ok() {
                count += 1;
            }
            let mut out = vec![80];
            put_string(&mut out, name);
            put_bool(&mut out, reply);
            out.extend_from_slice(format!("<{count} host keys>").as_bytes());
            return out;
        }
    }
    p
}

/// A readable rendering of a payload (for failure messages).
pub(crate) fn show(payload: &[u8]) -> String {
    let text: String = payload
        .iter()
        .take(120)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    if payload.len() > 120 {
        format!("{text}…({} bytes)", payload.len())
    } else {
        text
    }
}

/// Algorithms the client offers (one of each).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Algs {
    pub(crate) cipher: &'static str,
    pub(crate) mac: &'static str,
    /// Offer strict kex (`kex-strict-c-v00@openssh.com`), as OpenSSH ≥ 9.6
    /// and patched 9.x clients do.
    pub(crate) strict: bool,
}

impl Default for Algs {
    fn default() -> Self {
        Self {
            cipher: "chacha20-poly1305@openssh.com",
            mac: "hmac-sha2-256-etm@openssh.com",
            strict: true,
        }
    }
}

/// An SSH-2 connection after the key exchange.
pub(crate) struct Session {
    stream: TcpStream,
    rx: Direction,
    tx: Direction,
    input: Vec<u8>,
    /// Messages received but not yet taken.
    queue: VecDeque<Vec<u8>>,
    pub(crate) server_kexinit: Vec<u8>,
    session_id: Vec<u8>,
}

fn kexinit_payload(algs: Algs) -> Vec<u8> {
    let mut p = vec![20];
    p.extend_from_slice(&random_bytes::<16>());
    let kex = if algs.strict {
        "curve25519-sha256,ext-info-c,kex-strict-c-v00@openssh.com"
    } else {
        "curve25519-sha256,ext-info-c"
    };
    let mac = if CipherAlg::from_name(algs.cipher).is_some_and(CipherAlg::is_aead) {
        "hmac-sha2-256-etm@openssh.com"
    } else {
        algs.mac
    };
    for list in [
        kex,
        "ssh-ed25519",
        algs.cipher,
        algs.cipher,
        mac,
        mac,
        "none",
        "none",
        "",
        "",
    ] {
        put_string(&mut p, list.as_bytes());
    }
    put_bool(&mut p, false);
    put_u32(&mut p, 0);
    p
}

impl Session {
    /// Identification, KEXINIT, curve25519-sha256 and NEWKEYS; the server's
    /// host-key signature is checked.
    pub(crate) fn connect(addr: &str, algs: Algs) -> Session {
        let mut stream = connect(addr);
        let mut got = Vec::new();
        let server_ident = read_ident(&mut stream, &mut got);
        let server_ident = server_ident.strip_suffix(b"\r\n").unwrap().to_vec();
        stream.write_all(format!("{CLIENT_IDENT}\r\n").as_bytes()).unwrap();
        let client_kexinit = kexinit_payload(algs);
        let mut s = Session {
            stream,
            rx: Direction::default(),
            tx: Direction::default(),
            input: got,
            queue: VecDeque::new(),
            server_kexinit: Vec::new(),
            session_id: Vec::new(),
        };
        s.send(&client_kexinit);
        let secret: [u8; 32] = random_bytes();
        let public = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        let mut init = vec![30];
        put_string(&mut init, &public);
        s.send(&init);
        s.server_kexinit = s.expect(20, "KEXINIT");
        let reply = s.expect(31, "KEX_ECDH_REPLY");
        let mut r = Reader::new(&reply[1..]);
        let host_key = r.string().unwrap().to_vec();
        let server_public: [u8; 32] = r.string().unwrap().try_into().unwrap();
        let signature = r.string().unwrap().to_vec();
        let mut shared = Vec::new();
        decnet_emu_ssh::wire::put_mpint(&mut shared, &x25519_dalek::x25519(secret, server_public));
        let h = exchange_hash(
            HashAlg::Sha256,
            &HashInput {
                client_ident: CLIENT_IDENT.as_bytes(),
                server_ident: &server_ident,
                client_kexinit: &client_kexinit,
                server_kexinit: &s.server_kexinit,
                host_key: &host_key,
                gex: &[],
                client_public: &public,
                server_public: &server_public,
                mpint: false,
                shared: &shared,
            },
        );
        assert!(
            decnet_emu_ssh::hostkey::verify("ssh-ed25519", &host_key, &h, &signature),
            "the server's host-key signature does not verify"
        );
        s.expect(21, "NEWKEYS");
        s.send(&[21]);
        let strict = algs.strict && String::from_utf8_lossy(&s.server_kexinit).contains("kex-strict-s-v00@openssh.com");
        let derive = |letter: u8, len: usize| derive_key(HashAlg::Sha256, &shared, &h, letter, &h, len);
        let cipher = CipherAlg::from_name(algs.cipher).unwrap();
        let mac = MacAlg::from_name(algs.mac).unwrap();
        let mac_len = if cipher.is_aead() { 1 } else { mac.key_len() };
        let direction = |iv: u8, key: u8, integrity: u8, seq: u32| {
            Direction::new(
                cipher,
                &derive(key, cipher.key_len()),
                &derive(iv, cipher.iv_len()),
                mac,
                &derive(integrity, mac_len),
                seq,
            )
        };
        let (tx_seq, rx_seq) = if strict { (0, 0) } else { (s.tx.seq, s.rx.seq) };
        s.tx = direction(b'A', b'C', b'E', tx_seq);
        s.rx = direction(b'B', b'D', b'F', rx_seq);
        s.session_id = h;
        s
    }

    /// Seals and sends one payload.
    pub(crate) fn send(&mut self, payload: &[u8]) {
        let wire = self.seal(payload);
        self.stream.write_all(&wire).unwrap();
    }

    /// The wire bytes of one payload (the sequence number advances).
    pub(crate) fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        self.tx.seal(payload, &mut |b| b.fill(0x5a), &mut wire);
        wire
    }

    /// Sends bytes as they are; a server that has hung up makes it fail,
    /// which is fine.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The next message, waiting at most `wait`; `Err` with how the
    /// connection ended once it has, `Ok(None)` if nothing came.
    pub(crate) fn recv(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, End> {
        if let Some(p) = self.queue.pop_front() {
            return Ok(Some(p));
        }
        let deadline = Instant::now() + wait;
        loop {
            match self.rx.open(&self.input) {
                Ok(Some((payload, used))) => {
                    self.input.drain(..used);
                    return Ok(Some(payload));
                }
                Ok(None) => {}
                Err(e) => panic!("the server sent a packet we cannot open: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left.min(Duration::from_millis(50)).max(Duration::from_millis(1))))
                .unwrap();
            let mut buf = [0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(End::Eof),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(End::Reset),
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Waits for a message of type `kind` (others before it are kept for
    /// later).
    pub(crate) fn expect(&mut self, kind: u8, what: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut skipped = VecDeque::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(Some(p)) if p.first() == Some(&kind) => {
                    skipped.extend(self.queue.drain(..));
                    self.queue = skipped;
                    return p;
                }
                Ok(Some(p)) => skipped.push_back(p),
                other => panic!(
                    "no {what}: {other:?}; got {:?}",
                    skipped.iter().map(|p| show(p)).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Everything the server sends until it closes or has been quiet for
    /// `quiet`.
    pub(crate) fn collect(&mut self, quiet: Duration) -> (Vec<Vec<u8>>, End) {
        let mut out = Vec::new();
        loop {
            match self.recv(quiet) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => return (out, End::Open),
                Err(end) => return (out, end),
            }
        }
    }

    /// Drops messages received so far (EXT_INFO, host-key announcements).
    pub(crate) fn settle(&mut self, quiet: Duration) {
        let _ = self.collect(quiet);
    }

    /// SERVICE_REQUEST `ssh-userauth`, answered by SERVICE_ACCEPT.
    pub(crate) fn userauth_service(&mut self) {
        let mut p = vec![5];
        put_string(&mut p, b"ssh-userauth");
        self.send(&p);
        self.expect(6, "SERVICE_ACCEPT");
    }

    /// Logs in with a password; true on USERAUTH_SUCCESS.
    pub(crate) fn password(&mut self, user: &str, password: &str) -> bool {
        let mut p = vec![50];
        put_string(&mut p, user.as_bytes());
        put_string(&mut p, b"ssh-connection");
        put_string(&mut p, b"password");
        put_bool(&mut p, false);
        put_string(&mut p, password.as_bytes());
        self.send(&p);
        self.auth_result()
    }

    /// Logs in with the Ed25519 key of `seed`; true on USERAUTH_SUCCESS.
    pub(crate) fn publickey(&mut self, user: &str, seed: &[u8; 32]) -> bool {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let blob = ed25519_blob(key.verifying_key().as_bytes());
        let mut body = vec![50];
        put_string(&mut body, user.as_bytes());
        put_string(&mut body, b"ssh-connection");
        put_string(&mut body, b"publickey");
        put_bool(&mut body, true);
        put_string(&mut body, b"ssh-ed25519");
        put_string(&mut body, &blob);
        let mut signed = Vec::new();
        put_string(&mut signed, &self.session_id);
        signed.extend_from_slice(&body);
        let mut signature = Vec::new();
        put_string(&mut signature, b"ssh-ed25519");
        put_string(&mut signature, &key.sign(&signed).to_bytes());
        put_string(&mut body, &signature);
        self.send(&body);
        self.auth_result()
    }

    fn auth_result(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(Some(p)) if p[0] == 52 => return true,
                Ok(Some(p)) if p[0] == 51 => return false,
                Ok(Some(_)) => {}
                other => panic!("no answer to a login: {other:?}"),
            }
        }
    }
}
