//! Debian's OpenSSH client (`/usr/bin/ssh`, 9.2p1) against our server on
//! 127.0.0.1, one connection per algorithm, with `-vvv` telling us what was
//! really negotiated.

// The test stands in for the engine, which binds listeners.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use decnet_emu_ssh::{
    Action, AuthAttempt, AuthDecision, AuthMethod, ChannelRequest, Handler, HostKeys, Observation, Profiles,
    ServerConfig, moduli::Moduli,
};
use md5::{Digest, Md5};
use tokio::net::TcpListener;

#[derive(Default)]
struct Log {
    attempts: Vec<AuthAttempt>,
    observations: Vec<Observation>,
}

/// Logs everything; `root:toor` and the one authorised key log in; `exec`
/// echoes the command back and exits 0.
struct EchoHandler {
    log: Arc<Mutex<Log>>,
    authorized: Option<Vec<u8>>,
}

impl Handler for EchoHandler {
    fn auth(&mut self, attempt: &AuthAttempt) -> AuthDecision {
        self.log.lock().expect("log").attempts.push(attempt.clone());
        let ok = match &attempt.method {
            AuthMethod::Password { password, .. } => attempt.user == "root" && password == "toor",
            AuthMethod::KeyboardInteractive { responses } => {
                attempt.user == "root" && responses.first().is_some_and(|r| r == "toor")
            }
            AuthMethod::PublicKey {
                blob, signed, verified, ..
            } => self.authorized.as_deref() == Some(blob.as_slice()) && (!signed || *verified),
            AuthMethod::None => false,
        };
        if ok { AuthDecision::Accept } else { AuthDecision::Reject }
    }

    fn observe(&mut self, what: &Observation) {
        self.log.lock().expect("log").observations.push(what.clone());
    }

    fn channel_request(&mut self, channel: u32, request: &ChannelRequest, out: &mut Vec<Action>) -> bool {
        match request {
            ChannelRequest::Exec { command } => {
                let mut echo = command.clone();
                echo.push(b'\n');
                out.push(Action::Data(channel, echo));
                out.push(Action::ExitStatus(channel, 0));
                out.push(Action::Eof(channel));
                out.push(Action::Close(channel));
                true
            }
            ChannelRequest::Env { name, .. } => name == "LANG" || name.starts_with("LC_"),
            ChannelRequest::Pty { .. } | ChannelRequest::WindowChange { .. } => true,
            _ => false,
        }
    }
}

fn profiles() -> Profiles {
    Profiles::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../personas/ssh")).expect("profiles")
}

/// One set of host keys per test process: the RSA key is generated once
/// (a few seconds), never read from a cache left by an earlier run.
fn host_keys() -> Arc<HostKeys> {
    static KEYS: std::sync::OnceLock<Arc<HostKeys>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Arc::new(HostKeys::from_seed(b"test-decky", None)))
        .clone()
}

struct Server {
    port: u16,
    log: Arc<Mutex<Log>>,
}

async fn start(version: &str, authorized: Option<Vec<u8>>, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let profile = profiles().closest(version).clone();
    // As a deployment would: RSA generated before the first client.
    let keys = host_keys();
    let warm = keys.clone();
    tokio::task::spawn_blocking(move || warm.warm_rsa())
        .await
        .expect("RSA key");
    let mut config = ServerConfig::new(version, profile, keys);
    config.auth_failure_delay = Duration::from_millis(300);
    tweak(&mut config);
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log = Arc::new(Mutex::new(Log::default()));
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = EchoHandler {
                log: shared.clone(),
                authorized: authorized.clone(),
            };
            let config = config.clone();
            tokio::spawn(async move {
                let _ = decnet_emu_ssh::server::serve(stream, config, handler, None).await;
            });
        }
    });
    Server { port, log }
}

fn ssh_base(port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-vvv",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=20",
        "-p",
        &port.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn run(program: &str, args: Vec<String>) -> Output {
    let program = program.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("60")
            .arg(&program)
            .args(&args)
            .output()
            .expect("run client")
    })
    .await
    .expect("join")
}

/// `sshpass -p PASSWORD ssh … root@127.0.0.1 COMMAND` with extra options.
async fn password_login(port: u16, password: &str, options: &[&str], command: &str) -> Output {
    let mut args = vec!["-p".to_string(), password.to_string(), "ssh".into()];
    // ssh keeps the first value given for an option: the test's own go first.
    for o in options {
        args.push("-o".into());
        args.push((*o).into());
    }
    args.extend(ssh_base(port));
    for o in [
        "PreferredAuthentications=password",
        "PubkeyAuthentication=no",
        "NumberOfPasswordPrompts=1",
    ] {
        args.push("-o".into());
        args.push(o.into());
    }
    args.push("root@127.0.0.1".into());
    args.push(command.into());
    run("sshpass", args).await
}

/// Whether the client's debug output has this exact line (after the
/// `debugN: ` prefix); ssh ends lines with CRLF when it has a tty.
fn has_line(err: &str, line: &str) -> bool {
    err.lines()
        .any(|l| l.trim_end().split_once(": ").is_some_and(|(_, rest)| rest == line))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_echo(o: &Output, command: &str, what: &str) {
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{command}\n"),
        "{what}: stdout; stderr:\n{}",
        stderr(o)
    );
    assert_eq!(o.status.code(), Some(0), "{what}: exit status; stderr:\n{}", stderr(o));
}

const DEBIAN: &str = "OpenSSH_9.2p1 Debian-2+deb12u10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kex_method_the_client_can_run() {
    let s = start(DEBIAN, None, |_| {}).await;
    // mlkem768x25519-sha256 needs an OpenSSH >= 9.9 client; it is covered by
    // kex.rs's unit test against ml-kem's decapsulation.
    for kex in [
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group14-sha256",
    ] {
        let o = password_login(s.port, "toor", &[&format!("KexAlgorithms={kex}")], "id").await;
        assert_echo(&o, "id", kex);
        assert!(
            has_line(&stderr(&o), &format!("kex: algorithm: {kex}")),
            "{kex}:\n{}",
            stderr(&o)
        );
    }
}

/// Group exchange with groups from a moduli file (the RFC 3526 primes under
/// generator 5, which no fallback group has): the client's requests for
/// 3072 (umac-64's strength) and 8192 bits (hmac-sha2-256's) are answered
/// from the file and the exchange completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_exchange_with_a_moduli_files_groups() {
    let file: String = [2048, 4096, 8192]
        .iter()
        .map(|&bits| {
            let hex = decnet_emu_ssh::modp::prime_hex(bits).expect("a fixed group");
            format!("20240101000000 2 6 100 {} 5 {hex}\n", bits - 1)
        })
        .collect();
    let moduli = Moduli::parse(&file);
    assert_eq!(moduli.len(), 3);
    let s = start(DEBIAN, None, move |c| c.moduli = Arc::new(moduli)).await;
    for mac in ["umac-64-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"] {
        let options = [
            "KexAlgorithms=diffie-hellman-group-exchange-sha256",
            "Ciphers=aes128-ctr",
            &format!("MACs={mac}"),
        ];
        let o = password_login(s.port, "toor", &options, "id").await;
        assert_echo(&o, "id", mac);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cipher() {
    let s = start(DEBIAN, None, |_| {}).await;
    for cipher in [
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    ] {
        let o = password_login(s.port, "toor", &[&format!("Ciphers={cipher}")], "uname -a").await;
        assert_echo(&o, "uname -a", cipher);
        assert!(
            stderr(&o).contains(&format!("kex: server->client cipher: {cipher} ")),
            "{cipher}:\n{}",
            stderr(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mac() {
    let s = start(DEBIAN, None, |_| {}).await;
    for mac in [
        "umac-64-etm@openssh.com",
        "umac-128-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha1-etm@openssh.com",
        "umac-64@openssh.com",
        "umac-128@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha1",
    ] {
        // A big command makes packets span several cipher blocks and MAC
        // over more than one UMAC chunk.
        let command = format!("echo {}", "x".repeat(3000));
        let o = password_login(
            s.port,
            "toor",
            &["Ciphers=aes256-ctr", &format!("MACs={mac}")],
            &command,
        )
        .await;
        assert_echo(&o, &command, mac);
        assert!(
            stderr(&o).contains(&format!("kex: client->server cipher: aes256-ctr MAC: {mac} ")),
            "{mac}:\n{}",
            stderr(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_key_type() {
    let s = start(DEBIAN, None, |_| {}).await;
    for alg in ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"] {
        let o = password_login(s.port, "toor", &[&format!("HostKeyAlgorithms={alg}")], "true").await;
        assert_echo(&o, "true", alg);
        assert!(
            has_line(&stderr(&o), &format!("kex: host key algorithm: {alg}")),
            "{alg}:\n{}",
            stderr(&o)
        );
    }
    // An old release still offers ssh-rsa (SHA-1) signatures and
    // diffie-hellman-group14-sha1.
    let old = start("OpenSSH_7.4", None, |_| {}).await;
    let o = password_login(old.port, "toor", &["KexAlgorithms=diffie-hellman-group14-sha1"], "true").await;
    assert_echo(&o, "true", "group14-sha1");
    assert!(
        has_line(&stderr(&o), "kex: algorithm: diffie-hellman-group14-sha1"),
        "{}",
        stderr(&o)
    );
    let o = password_login(old.port, "toor", &["HostKeyAlgorithms=ssh-rsa"], "true").await;
    assert_echo(&o, "true", "ssh-rsa");
    assert!(
        has_line(
            &stderr(&o),
            "Remote protocol version 2.0, remote software version OpenSSH_7.4"
        ),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identification_kexinit_and_hassh_match_what_the_client_sent() {
    let s = start(DEBIAN, None, |_| {}).await;
    let o = password_login(s.port, "toor", &[], "true").await;
    assert_echo(&o, "true", "default login");
    let err = stderr(&o);
    assert!(err.contains("Remote protocol version 2.0, remote software version OpenSSH_9.2p1 Debian-2+deb12u10"));
    // The server's offer as the client printed it, in the real sshd's order.
    let peer = err
        .split("peer server KEXINIT proposal")
        .nth(1)
        .expect("peer proposal printed");
    assert!(has_line(
        peer,
        "KEX algorithms: sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256,kex-strict-s-v00@openssh.com"
    ));
    assert!(err.contains("server-sig-algs=<ssh-ed25519,"), "EXT_INFO sent");
    // Default algorithms, with the client's own choice.
    assert!(has_line(&err, "kex: algorithm: sntrup761x25519-sha512"), "{err}");
    // HASSH recomputed from the client's own debug print of its proposal.
    let local = err
        .split("local client KEXINIT proposal")
        .nth(1)
        .expect("local proposal printed");
    let field = |name: &str| -> String {
        local
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(&format!("debug2: {name}: ")))
            .unwrap_or_default()
            .to_string()
    };
    let text = format!(
        "{};{};{};{}",
        field("KEX algorithms"),
        field("ciphers ctos"),
        field("MACs ctos"),
        field("compression ctos")
    );
    let want: String = Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let log = s.log.lock().expect("log");
    let got = log
        .observations
        .iter()
        .find_map(|o| match o {
            Observation::ClientKexInit { hassh, .. } => Some(hassh.clone()),
            _ => None,
        })
        .expect("client KEXINIT recorded");
    assert_eq!(got, want);
    let ident = log.observations.iter().find_map(|o| match o {
        Observation::ClientIdent(i) => Some(i.clone()),
        _ => None,
    });
    assert!(ident.is_some_and(|i| i.starts_with("SSH-2.0-OpenSSH_9.2p1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_denied_after_the_delay_and_captured() {
    let s = start(DEBIAN, None, |_| {}).await;
    let started = Instant::now();
    let o = password_login(s.port, "hunter2", &[], "id").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Authentications that can continue: publickey,password,keyboard-interactive"),
        "{}",
        stderr(&o)
    );
    let log = s.log.lock().expect("log");
    assert!(log.attempts.iter().any(|a| a.user == "root"
        && a.method
            == AuthMethod::Password {
                password: "hunter2".into(),
                new_password: None
            }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_login() {
    let s = start(DEBIAN, None, |_| {}).await;
    let mut args = vec!["-p".to_string(), "toor".into(), "ssh".into()];
    args.extend(ssh_base(s.port));
    for o in [
        "PreferredAuthentications=keyboard-interactive",
        "PubkeyAuthentication=no",
    ] {
        args.push("-o".into());
        args.push(o.into());
    }
    args.extend(["root@127.0.0.1".into(), "whoami".into()]);
    let o = run("sshpass", args).await;
    assert_echo(&o, "whoami", "keyboard-interactive");
    let log = s.log.lock().expect("log");
    assert!(log.attempts.iter().any(|a| matches!(&a.method,
        AuthMethod::KeyboardInteractive { responses } if responses == &["toor".to_string()])));
}

fn keygen(dir: &Path, kind: &str, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-t", kind, "-f"]).arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    assert!(cmd.status().expect("ssh-keygen").success());
    path
}

fn key_blob(pubkey: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(pubkey).expect("read .pub");
    let b64 = text.split_whitespace().nth(1).expect("base64 field");
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(b64.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64 -d");
    out.stdout
}

fn keygen_fingerprint(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pubkey)
        .output()
        .expect("ssh-keygen -lf");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

async fn key_login(port: u16, key: &Path, extra: &[String]) -> Output {
    let mut args = ssh_base(port);
    for o in [
        "PreferredAuthentications=publickey",
        "IdentitiesOnly=yes",
        "BatchMode=yes",
    ] {
        args.push("-o".into());
        args.push(o.into());
    }
    args.push("-i".into());
    args.push(key.display().to_string());
    args.extend(extra.iter().cloned());
    args.extend(["root@127.0.0.1".into(), "hostname".into()]);
    run("ssh", args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publickey_logins_capture_the_fingerprint_ssh_keygen_prints() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let key = keygen(dir.path(), kind, kind);
        let pubkey = key.with_extension("pub");
        let s = start(DEBIAN, Some(key_blob(&pubkey)), |_| {}).await;
        let o = key_login(s.port, &key, &[]).await;
        assert_echo(&o, "hostname", kind);
        let want = keygen_fingerprint(&pubkey);
        let log = s.log.lock().expect("log");
        let signed: Vec<_> = log
            .attempts
            .iter()
            .filter_map(|a| match &a.method {
                AuthMethod::PublicKey {
                    fingerprint,
                    signed: true,
                    verified,
                    algorithm,
                    ..
                } => Some((fingerprint.clone(), *verified, algorithm.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(signed.len(), 1, "{kind}: one signed attempt");
        assert_eq!(signed[0].0, want, "{kind}");
        assert!(signed[0].1, "{kind}: signature verified");
        if kind == "rsa" {
            assert_eq!(signed[0].2, "rsa-sha2-512");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_auth_tries_disconnects_like_sshd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(DEBIAN, None, |_| {}).await;
    let keys: Vec<PathBuf> = (0..8)
        .map(|i| keygen(dir.path(), "ed25519", &format!("k{i}")))
        .collect();
    let mut extra = Vec::new();
    for k in &keys[1..] {
        extra.push("-i".into());
        extra.push(k.display().to_string());
    }
    let o = key_login(s.port, &keys[0], &extra).await;
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Too many authentication failures"),
        "{}",
        stderr(&o)
    );
    let offered = s
        .log
        .lock()
        .expect("log")
        .attempts
        .iter()
        .filter(|a| matches!(a.method, AuthMethod::PublicKey { .. }))
        .count();
    assert_eq!(offered, 6, "MaxAuthTries 6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forwarding_is_refused_and_logged() {
    let s = start(DEBIAN, None, |_| {}).await;
    let mut args = vec!["-p".to_string(), "toor".into(), "ssh".into()];
    args.extend(ssh_base(s.port));
    for o in ["PreferredAuthentications=password", "PubkeyAuthentication=no"] {
        args.push("-o".into());
        args.push(o.into());
    }
    args.extend(["-W".into(), "10.1.2.3:3306".into(), "root@127.0.0.1".into()]);
    let o = run("sshpass", args).await;
    assert!(
        stderr(&o).contains("open failed: administratively prohibited: open failed"),
        "{}",
        stderr(&o)
    );
    let log = s.log.lock().expect("log");
    assert!(log.observations.iter().any(|o| matches!(o,
        Observation::ChannelRefused { kind, target: Some((host, 3306)), .. } if kind == "direct-tcpip" && host == "10.1.2.3")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_identification_gets_sshds_answer() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = start(DEBIAN, None, |_| {}).await;
    for (sent, want) in [
        (&b"GET / HTTP/1.0\r\n\r\n"[..], "Invalid SSH identification string.\r\n"),
        (b"SSH-1.5-foo\r\n", "Protocol major versions differ.\r\n"),
        (b"SSH-2.0\r\n", "Invalid SSH identification string.\r\n"),
    ] {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .expect("connect");
        let mut banner = vec![0u8; 41];
        c.read_exact(&mut banner).await.expect("banner");
        assert_eq!(&banner, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n");
        c.write_all(sent).await.expect("send");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest)).await;
        assert!(
            String::from_utf8_lossy(&rest).starts_with(want.trim_end()),
            "{sent:?} -> {rest:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_zlib_compression() {
    let s = start(DEBIAN, None, |_| {}).await;
    let command = format!("echo {}", "compressible ".repeat(500));
    let o = password_login(s.port, "toor", &["Compression=yes"], &command).await;
    assert_echo(&o, &command, "zlib");
    assert!(
        has_line(
            &stderr(&o),
            "kex: server->client cipher: chacha20-poly1305@openssh.com MAC: <implicit> compression: zlib@openssh.com"
        ),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("Enabling compression at level 6"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_initiated_rekeying() {
    let s = start(DEBIAN, None, |_| {}).await;
    // A command far above the rekey limit makes the client re-exchange keys
    // mid-session, several times.
    let command = format!("echo {}", "y".repeat(20_000));
    for opts in [
        &["RekeyLimit=4K"][..],
        &["RekeyLimit=4K", "Ciphers=aes128-gcm@openssh.com"][..],
    ] {
        let o = password_login(s.port, "toor", opts, &command).await;
        assert_echo(&o, &command, "rekey");
        let rekeys = stderr(&o).matches("SSH2_MSG_KEXINIT sent").count();
        assert!(rekeys >= 2, "expected re-exchanges:\n{}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_announced_and_proven_for_update_host_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let known = dir.path().join("known_hosts");
    let s = start(DEBIAN, None, |_| {}).await;
    // First login learns the ed25519 key only; UpdateHostKeys then asks the
    // server to prove the other two and records them.
    let known_opt = format!("UserKnownHostsFile={}", known.display());
    let first = [known_opt.as_str(), "HostKeyAlgorithms=ssh-ed25519", "UpdateHostKeys=no"];
    let o = password_login(s.port, "toor", &first, "true").await;
    assert_echo(&o, "true", "first login");
    let second = [known_opt.as_str(), "UpdateHostKeys=yes"];
    let o = password_login(s.port, "toor", &second, "true").await;
    assert_echo(&o, "true", "second login");
    assert!(
        stderr(&o).contains("client_input_global_request: rtype hostkeys-00@openssh.com"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(&known).expect("known_hosts");
    for kind in ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"] {
        assert!(text.contains(kind), "{kind} learnt:\n{text}\n{}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_releases_present_their_own_offer() {
    // 9.6 appends ext-info-s and advertises ping@openssh.com; 7.4 has no
    // strict kex and still offers ssh-rsa first.
    let s = start("OpenSSH_9.6", None, |_| {}).await;
    let o = password_login(s.port, "toor", &[], "true").await;
    assert_echo(&o, "true", "9.6");
    let err = stderr(&o);
    assert!(err.contains("ext-info-s,kex-strict-s-v00@openssh.com"), "{err}");
    assert!(err.contains("kex_input_ext_info: ping@openssh.com"), "{err}");
    let s = start("OpenSSH_7.4", None, |_| {}).await;
    let o = password_login(s.port, "toor", &[], "true").await;
    assert_echo(&o, "true", "7.4");
    let err = stderr(&o);
    assert!(
        has_line(
            &err,
            "host key algorithms: ssh-rsa,rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ssh-ed25519"
        ),
        "{err}"
    );
    assert!(!err.contains("kex-strict-s-v00@openssh.com"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_grace_time_ends_idle_unauthenticated_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = start(DEBIAN, None, |c| c.login_grace = Duration::from_millis(500)).await;
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect");
    c.write_all(b"SSH-2.0-OpenSSH_9.2p1 idle\r\n").await.expect("ident");
    let started = Instant::now();
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "server closed the connection");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Banner and KEXINIT, then silence: sshd sends no message on this timeout.
    assert!(all.starts_with(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"));
    let log = s.log.lock().expect("log");
    assert!(log.observations.iter().any(|o| matches!(o,
        Observation::Closed { reason } if reason == "Timeout before authentication")));
}
