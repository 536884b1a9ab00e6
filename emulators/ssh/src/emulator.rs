//! The `ssh` service: this crate's transport, offering what the persona's
//! OpenSSH release offers, in front of the emulated shell. Every
//! authentication attempt is an `auth_attempt` event (passwords and
//! keyboard-interactive answers with the credential, public keys with their
//! type and fingerprint); the persona's accounts log in with their password.
//! The client's identification string, KEXINIT and HASSH are logged once per
//! connection (`version`), refused forwarding channels as `request` events.
//! `shell` (with or without a pty) and `exec` run the shell; its command
//! lines, downloads, dropped files and typed passwords are logged by
//! `decnet_shell::emulator::log_event`, and pty shells are recorded.
//! The `sftp` subsystem (which OpenSSH 9's `scp` also speaks) works on the
//! same fake filesystem as the login's shell: each file read, written,
//! made, removed or renamed is a `request` event with `op`, `path` and
//! `size`, and each upload is quarantined (`file_captured`). An `exec` of
//! `scp -t`/`scp -f` (legacy scp, `scp -O`) is served the same way. Other
//! subsystems are refused as sshd refuses an unconfigured one.
//!
//! Persona keys: `ssh_version`, `users`, `password`, `user`,
//! `user_password`, `hostname`, `overlay` (`session`, the default: each
//! login writes to its own copy of the filesystem; `decky`: one shared by
//! every login, so uploads stay).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use decnet_emu_sdk::{
    Accounts, BoxFuture, Close, Conn, Credential, Emulator, Kind, Outcome, Port, Recording, ServeError, Service,
    ServiceInfo, SessionCx, Transport, fields,
};
use decnet_shell::fs::{Cred, FsError, Node, NodeKind};
use decnet_shell::{Limits, Mode, OverlayScope, ShellEvent, ShellHost, ShellOutput, ShellSession};

use crate::moduli::Moduli;
use crate::scp::Scp;
use crate::sftp::{Attrs, Backend, Disk, SftpServer};
use crate::{
    Action, AuthAttempt, AuthDecision, AuthMethod, ChannelRequest, Handler, HostKeys, Observation, Profiles,
    ServerConfig,
};

/// The SSH emulator.
pub struct Ssh {
    profiles: Profiles,
    /// Moduli files read so far, by path: read once, shared by the deckies.
    moduli: Mutex<BTreeMap<PathBuf, Arc<Moduli>>>,
}

impl Ssh {
    /// With the OpenSSH release profiles compiled in from `personas/ssh/`.
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            profiles: Profiles::embedded().map_err(|e| e.to_string())?,
            moduli: Mutex::default(),
        })
    }

    /// The groups of the moduli file at `path`, read once. sshd's default
    /// file may be missing (its fallback groups then, as sshd, said once in
    /// the log); a file the persona names must be there and hold groups.
    fn moduli(&self, path: &Path, named: bool) -> Result<Arc<Moduli>, String> {
        let mut files = self.moduli.lock().unwrap_or_else(|p| p.into_inner());
        let moduli = match files.get(path) {
            Some(moduli) => moduli.clone(),
            None => {
                let loaded = match Moduli::load(path) {
                    Ok(moduli) => moduli,
                    Err(e) if named => return Err(format!("{}: {e}", path.display())),
                    Err(_) => Moduli::default(),
                };
                if loaded.is_empty() && !named {
                    tracing::info!(
                        "ssh: no usable moduli in {}: group exchange answers with sshd's fallback groups",
                        path.display()
                    );
                }
                let loaded = Arc::new(loaded);
                files.insert(path.to_path_buf(), loaded.clone());
                loaded
            }
        };
        if named && moduli.is_empty() {
            return Err(format!("{}: no usable groups", path.display()));
        }
        Ok(moduli)
    }
}

impl Emulator for Ssh {
    fn slug(&self) -> &'static str {
        "ssh"
    }

    fn serves(&self, port: &Port) -> bool {
        port.transport == Transport::Tcp
    }

    fn prepare(&self, service: &ServiceInfo) -> Result<Arc<dyn Service>, ServeError> {
        let persona = &service.persona;
        let text = |key: &str| persona.get(key).and_then(|v| v.as_str()).map(String::from);
        // The catalogue fills it from the distro; versions are persona data.
        let version = text("ssh_version").ok_or_else(|| ServeError::Persona("no `ssh_version`".into()))?;
        let profile = self.profiles.closest(&version).clone();
        // Host keys derive from the decky's seed: the same keys on every
        // redeploy. The RSA key takes a while to generate, so it is made on
        // first use and kept in the service's state dir for later starts.
        let seed = format!("{}:ssh-host-keys", service.decky.seed.to_hex());
        let rsa_cache = service.state_dir.as_ref().and_then(|dir| {
            std::fs::create_dir_all(dir).ok()?;
            Some(dir.join("ssh_host_rsa_key.primes"))
        });
        let keys = Arc::new(HostKeys::from_seed(seed.as_bytes(), rsa_cache));
        let accounts = Accounts::from_persona(persona);
        let hostname = text("hostname").unwrap_or_else(|| service.decky.hostname.clone());
        let overlay = match text("overlay").as_deref() {
            None | Some("session") => OverlayScope::Session,
            Some("decky") => OverlayScope::Decky,
            Some(other) => {
                return Err(ServeError::Persona(format!(
                    "ssh: overlay = {other:?}: expected \"session\" or \"decky\""
                )));
            }
        };
        let host = decnet_shell::emulator::host_for(
            &service.decky,
            decnet_shell::emulator::Login {
                hostname: &hostname,
                accounts: &accounts,
                program: "sshd",
                ports: &service.ports,
                overlay,
            },
        )?;
        let mut config = ServerConfig::new(&version, profile, keys);
        config.moduli = match text("moduli") {
            Some(path) => self.moduli(Path::new(&path), true),
            None => self.moduli(Path::new(crate::moduli::DEFAULT_PATH), false),
        }
        .map_err(|e| ServeError::Persona(format!("ssh: moduli = {e}")))?;
        // The distros' sshd_config (Debian's, Ubuntu's, RHEL's) turns
        // keyboard-interactive off: a login offers "publickey,password", as
        // measured against Debian's sshd (tests/ssh_peer.rs).
        config.auth_methods = vec!["publickey".into(), "password".into()];
        Ok(Arc::new(SshService {
            config: Arc::new(config),
            accounts,
            host,
        }))
    }
}

struct SshService {
    config: Arc<ServerConfig>,
    accounts: Accounts,
    host: ShellHost,
}

impl Service for SshService {
    fn serve_tcp(self: Arc<Self>, conn: Conn, cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        Box::pin(async move {
            let handler = Login {
                svc: Arc::clone(&self),
                cx,
                user: None,
                client: None,
                channels: HashMap::new(),
            };
            match crate::server::serve(conn, Arc::clone(&self.config), handler, None).await {
                Ok(mut handler) => {
                    handler.finish();
                    Ok(Close::Done)
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(Close::Timeout),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Close::PeerEof),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// One connection's side of the protocol.
struct Login {
    svc: Arc<SshService>,
    cx: SessionCx,
    /// Who logged in.
    user: Option<String>,
    /// The client's identification string.
    client: Option<String>,
    channels: HashMap<u32, Channel>,
}

#[derive(Default)]
struct Channel {
    pty: Option<(String, u16, u16)>,
    env: Vec<(String, String)>,
    shell: Option<ShellSession>,
    recording: Option<Recording>,
    sftp: Option<Sftp>,
}

/// A channel moving files (the `sftp` subsystem, or an `scp -t`/`scp -f`
/// exec): the protocol state and the login's view of the filesystem.
struct Sftp {
    server: Transfer,
    shell: ShellSession,
    /// uid and gid → name, from the fake `/etc/passwd` and `/etc/group`.
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

enum Transfer {
    Sftp(SftpServer),
    Scp(Scp),
}

impl Login {
    fn now(&self) -> i64 {
        decnet_emu_sdk::clock::unix_secs(self.cx.now())
    }

    fn login(&self) -> String {
        self.user.clone().unwrap_or_else(|| "root".into())
    }

    /// Starts the shell of `channel`, interactive or running `command`.
    fn start(&mut self, id: u32, command: Option<String>, out: &mut Vec<Action>) {
        let user = self.login();
        let mut seed = [0u8; 8];
        self.cx.random_bytes(&mut seed);
        let now = self.now();
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        let mode = match command {
            Some(line) => Mode::Exec(line),
            None => Mode::Interactive,
        };
        let interactive = matches!(mode, Mode::Interactive);
        let mut shell = ShellSession::new(&self.svc.host, &user, mode, Limits::default(), u64::from_le_bytes(seed));
        for (name, value) in &channel.env {
            shell.set_env(name, value);
        }
        if let Some((term, _, _)) = &channel.pty {
            shell.set_env("TERM", term);
        }
        if interactive && channel.pty.is_some() {
            let (term, cols, rows) = channel.pty.clone().unwrap_or_default();
            channel.recording =
                Some(
                    self.cx
                        .captures()
                        .record(self.cx.session(), self.cx.now(), cols, rows, Some(&term)),
                );
        }
        let mut outputs = Vec::new();
        if interactive {
            // sshd's PAM session prints the message of the day first.
            let motd = self.svc.host.motd().replace('\n', "\r\n");
            outputs.push(ShellOutput::Stdout(motd.into_bytes()));
        }
        outputs.extend(shell.start(now));
        channel.shell = Some(shell);
        self.deliver(id, outputs, out);
    }

    /// Starts a file transfer on `id`, with a filesystem view of the login.
    fn files(&mut self, id: u32, server: Transfer, out: &mut Vec<Action>) {
        let mut seed = [0u8; 8];
        self.cx.random_bytes(&mut seed);
        let user = self.login();
        let now = self.now();
        let mut shell = ShellSession::new(
            &self.svc.host,
            &user,
            Mode::Interactive,
            Limits::default(),
            u64::from_le_bytes(seed),
        );
        let users = id_names(&shell.read_file(now, "/etc/passwd").unwrap_or_default());
        let groups = id_names(&shell.read_file(now, "/etc/group").unwrap_or_default());
        if let Transfer::Scp(scp) = &server {
            let first = scp.start();
            if !first.is_empty() {
                out.push(Action::Data(id, first));
            }
        }
        if let Some(channel) = self.channels.get_mut(&id) {
            channel.sftp = Some(Sftp {
                server,
                shell,
                users,
                groups,
            });
        }
    }

    /// Feeds channel bytes (or, with `None`, the client's EOF) to the
    /// channel's file transfer.
    fn transfer(&mut self, id: u32, now: i64, data: Option<&[u8]>, out: &mut Vec<Action>) {
        let login = self.login();
        let Some(sftp) = self.channels.get_mut(&id).and_then(|c| c.sftp.as_mut()) else {
            return;
        };
        let mut backend = SessionFs {
            shell: &mut sftp.shell,
            users: &sftp.users,
            groups: &sftp.groups,
            cx: &self.cx,
            login: &login,
            now,
        };
        let (reply, exit) = match (&mut sftp.server, data) {
            (Transfer::Sftp(server), Some(data)) => {
                let fed = server.feed(&mut backend, now, data);
                if let Some(why) = &fed.ended {
                    self.cx
                        .emit(Kind::Request, fields! { "subsystem" => "sftp", "error" => why.0 });
                }
                // sftp-server exits on a bad message without a status.
                (fed.reply, fed.ended.map(|_| None))
            }
            // sftp-server exits when its input ends; sshd reports status 0.
            (Transfer::Sftp(_), None) => (Vec::new(), Some(Some(0))),
            (Transfer::Scp(scp), Some(data)) => {
                let step = scp.feed(&mut backend, data);
                (step.reply, step.exit.map(Some))
            }
            (Transfer::Scp(scp), None) => {
                let step = scp.eof();
                (step.reply, step.exit.map(Some))
            }
        };
        if !reply.is_empty() {
            out.push(Action::Data(id, reply));
        }
        if let Some(status) = exit {
            if let Some(code) = status {
                out.push(Action::ExitStatus(id, code));
            }
            out.extend([Action::Eof(id), Action::Close(id)]);
            if let Some(channel) = self.channels.get_mut(&id) {
                channel.sftp = None;
            }
        }
    }

    /// Turns a shell's outputs into channel actions and events.
    fn deliver(&mut self, id: u32, outputs: Vec<ShellOutput>, out: &mut Vec<Action>) {
        let login = self.login();
        for output in outputs {
            match output {
                ShellOutput::Stdout(bytes) => {
                    if let Some(rec) = self.channels.get_mut(&id).and_then(|c| c.recording.as_mut()) {
                        rec.output(&bytes);
                    }
                    out.push(Action::Data(id, bytes));
                }
                ShellOutput::Stderr(bytes) => out.push(Action::Stderr(id, bytes)),
                ShellOutput::Event(event) => decnet_shell::emulator::log_event(&self.cx, event, &login),
                ShellOutput::Exit(code) => {
                    out.extend([Action::ExitStatus(id, code as u32), Action::Eof(id), Action::Close(id)]);
                    self.end_recording(id);
                }
            }
        }
    }

    fn end_recording(&mut self, id: u32) {
        let Some(recording) = self.channels.get_mut(&id).and_then(|c| c.recording.take()) else {
            return;
        };
        let (kind, mut fields) = recording.finish().event();
        fields.insert("channel".into(), id.into());
        self.cx.emit(kind, fields);
    }

    /// The connection ended: close what is still recording.
    fn finish(&mut self) {
        let open: Vec<u32> = self.channels.keys().copied().collect();
        for id in open {
            self.end_recording(id);
        }
    }
}

impl Handler for Login {
    fn auth(&mut self, attempt: &AuthAttempt) -> AuthDecision {
        let user = attempt.user.clone();
        let (secret, ok, mut fields) = match &attempt.method {
            AuthMethod::None => (None, false, fields! {}),
            AuthMethod::Password { password, new_password } => (
                Some(password.clone()),
                self.svc.accounts.check(&user, password.as_bytes()),
                fields! { "new_password" => new_password.clone() },
            ),
            AuthMethod::KeyboardInteractive { responses } => {
                let answer = responses.first().cloned().unwrap_or_default();
                let ok = responses.len() == 1 && self.svc.accounts.check(&user, answer.as_bytes());
                (Some(answer), ok, fields! { "responses" => responses.len() })
            }
            AuthMethod::PublicKey {
                algorithm,
                key_type,
                fingerprint,
                signed,
                verified,
                ..
            } => (
                None,
                // No key is authorised: sshd with an empty authorized_keys.
                false,
                fields! {
                    "algorithm" => algorithm.clone(),
                    "key_type" => key_type.clone(),
                    "fingerprint" => fingerprint.clone(),
                    "signed" => *signed,
                    "verified" => *verified,
                },
            ),
        };
        fields.insert("username".into(), user.clone().into());
        fields.insert("method".into(), attempt.method.name().into());
        fields.insert("attempt".into(), attempt.attempt.into());
        match secret {
            Some(secret) => {
                let mut credential = Credential::plaintext(Some(&user), secret.as_bytes());
                credential.outcome = Some(if ok { Outcome::Success } else { Outcome::Failure });
                self.cx.emit_credential(Kind::AuthAttempt, fields, credential);
            }
            None => self.cx.emit(Kind::AuthAttempt, fields),
        }
        if ok {
            self.user = Some(user);
            AuthDecision::Accept
        } else {
            AuthDecision::Reject
        }
    }

    fn observe(&mut self, what: &Observation) {
        match what {
            Observation::ClientIdent(ident) => self.client = Some(ident.clone()),
            Observation::ClientKexInit {
                kexinit: k,
                hassh,
                hassh_string,
            } => self.cx.emit(
                Kind::Version,
                fields! {
                    "client" => self.client.clone(),
                    "hassh" => hassh.clone(),
                    "hassh_string" => hassh_string.clone(),
                    // The whole offer: clients differ beyond what HASSH hashes.
                    "kexinit" => fields! {
                        "kex" => k.kex.0,
                        "host_key" => k.host_key.0,
                        "enc_c2s" => k.enc_c2s.0,
                        "enc_s2c" => k.enc_s2c.0,
                        "mac_c2s" => k.mac_c2s.0,
                        "mac_s2c" => k.mac_s2c.0,
                        "comp_c2s" => k.comp_c2s.0,
                        "comp_s2c" => k.comp_s2c.0,
                        "first_kex_follows" => k.first_kex_follows,
                    },
                },
            ),
            Observation::ChannelRefused { kind, target, origin } => self.cx.emit(
                Kind::Request,
                fields! {
                    "channel" => kind.clone(),
                    "target" => target.as_ref().map(|(h, p)| format!("{h}:{p}")),
                    "origin" => origin.as_ref().map(|(h, p)| format!("{h}:{p}")),
                    "refused" => true,
                },
            ),
            _ => {}
        }
    }

    fn channel_open(&mut self, channel: u32) {
        self.channels.insert(channel, Channel::default());
    }

    fn channel_request(&mut self, id: u32, request: &ChannelRequest, out: &mut Vec<Action>) -> bool {
        let Some(channel) = self.channels.get_mut(&id) else {
            return false;
        };
        match request {
            ChannelRequest::Pty { term, cols, rows, .. } => {
                channel.pty = Some((term.clone(), clamp(*cols), clamp(*rows)));
                true
            }
            // Debian's sshd_config: AcceptEnv LANG LC_*.
            ChannelRequest::Env { name, value } if name == "LANG" || name.starts_with("LC_") => {
                channel.env.push((name.clone(), value.clone()));
                true
            }
            ChannelRequest::Env { .. } => false,
            ChannelRequest::WindowChange { cols, rows } => {
                if let Some(rec) = channel.recording.as_mut() {
                    rec.resize(clamp(*cols), clamp(*rows));
                }
                true
            }
            ChannelRequest::Shell if channel.shell.is_none() => {
                self.start(id, None, out);
                true
            }
            ChannelRequest::Subsystem { name }
                if name == "sftp" && channel.shell.is_none() && channel.sftp.is_none() =>
            {
                self.cx.emit(Kind::Request, fields! { "subsystem" => "sftp" });
                let extensions = self.svc.config.profile.sftp_extensions.clone();
                self.files(id, Transfer::Sftp(SftpServer::new(extensions)), out);
                true
            }
            ChannelRequest::Exec { command } if channel.shell.is_none() && channel.sftp.is_none() => {
                let line = String::from_utf8_lossy(command).into_owned();
                // `scp -t`/`scp -f` is the legacy scp protocol, served here;
                // any other scp line is the shell's.
                match Scp::parse(&line) {
                    Some(scp) => {
                        let login = self.login();
                        let cwd = self
                            .svc
                            .host
                            .user(&login)
                            .map_or_else(|| format!("/home/{login}"), |u| u.home.clone());
                        self.cx.emit(
                            Kind::Command,
                            fields! { "command" => line, "cwd" => cwd, "user" => login.clone(), "login" => login },
                        );
                        self.files(id, Transfer::Scp(scp), out);
                    }
                    None => self.start(id, Some(line), out),
                }
                true
            }
            ChannelRequest::Subsystem { name } => {
                self.cx.emit(
                    Kind::Request,
                    fields! { "subsystem" => name.clone(), "refused" => true },
                );
                false
            }
            _ => false,
        }
    }

    fn channel_data(&mut self, id: u32, data: &[u8], out: &mut Vec<Action>) {
        let now = self.now();
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        if let Some(rec) = channel.recording.as_mut() {
            rec.input(data);
        }
        if channel.sftp.is_some() {
            self.transfer(id, now, Some(data), out);
            return;
        }
        let Some(shell) = channel.shell.as_mut() else {
            return;
        };
        let outputs = shell.feed(now, data);
        self.deliver(id, outputs, out);
    }

    fn channel_eof(&mut self, id: u32, out: &mut Vec<Action>) {
        let now = self.now();
        if self.channels.get(&id).is_some_and(|c| c.sftp.is_some()) {
            self.transfer(id, now, None, out);
            return;
        }
        let Some(shell) = self.channels.get_mut(&id).and_then(|c| c.shell.as_mut()) else {
            return;
        };
        let outputs = shell.eof(now);
        self.deliver(id, outputs, out);
    }

    fn channel_closed(&mut self, id: u32) {
        self.end_recording(id);
        self.channels.remove(&id);
    }
}

/// The SFTP backend: one login's filesystem view, logging what it touches.
struct SessionFs<'a> {
    shell: &'a mut ShellSession,
    users: &'a HashMap<u32, String>,
    groups: &'a HashMap<u32, String>,
    cx: &'a SessionCx,
    login: &'a str,
    now: i64,
}

impl SessionFs<'_> {
    fn event(&self, op: &str, path: &str, size: Option<usize>) {
        self.cx.emit(
            Kind::Request,
            fields! { "subsystem" => "sftp", "op" => op, "path" => path, "size" => size },
        );
    }

    fn uid_gids(&self) -> (u32, Vec<u32>) {
        let user = self.shell.user();
        (user.uid, user.gids.clone())
    }

    /// Whether the user has all of `want` (rwx bits, `0o7`-style) on `node`;
    /// root has everything.
    fn allows(&self, node: &Node, want: u32) -> bool {
        let (uid, gids) = self.uid_gids();
        let bits = if uid == 0 {
            0o7
        } else if node.uid == uid {
            node.mode >> 6
        } else if gids.contains(&node.gid) {
            node.mode >> 3
        } else {
            node.mode
        };
        bits & want == want
    }

    /// Whether the user may add or remove entries in directory `dir`.
    fn may_change(&self, dir: &str) -> Result<(), FsError> {
        let (_, node) = self.shell.filesystem().stat(dir)?;
        if self.allows(&node, 0o3) {
            Ok(())
        } else {
            Err(FsError::PermissionDenied)
        }
    }
}

fn attrs(node: &Node) -> Attrs {
    let kind = match node.kind {
        NodeKind::Dir => 0o040000,
        NodeKind::Symlink(_) => 0o120000,
        NodeKind::CharDevice(_) => 0o020000,
        _ => 0o100000,
    };
    Attrs {
        size: node.size(),
        uid: node.uid,
        gid: node.gid,
        mode: kind | (node.mode & 0o7777),
        mtime: node.mtime,
    }
}

impl Backend for SessionFs<'_> {
    fn cwd(&self) -> String {
        self.shell.cwd().to_string()
    }

    fn realpath(&self, path: &str) -> Result<String, FsError> {
        self.shell.filesystem().resolve(path, true)
    }

    fn stat(&self, path: &str, follow: bool) -> Result<Attrs, FsError> {
        let fs = self.shell.filesystem();
        let (_, node) = if follow { fs.stat(path)? } else { fs.lstat(path)? };
        Ok(attrs(&node))
    }

    fn readlink(&self, path: &str) -> Result<String, FsError> {
        let (_, node) = self.shell.filesystem().lstat(path)?;
        match node.kind {
            NodeKind::Symlink(target) => Ok(target),
            // EINVAL, which sftp-server reports as a plain failure.
            _ => Err(FsError::NotADirectory),
        }
    }

    fn list(&self, path: &str) -> Result<Vec<(String, Attrs)>, FsError> {
        let list = self.shell.list_dir(path)?;
        Ok(list.into_iter().map(|(name, node)| (name, attrs(&node))).collect())
    }

    fn read(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
        let data = self.shell.read_file(self.now, path)?;
        self.event("read", path, Some(data.len()));
        Ok(data)
    }

    fn may_write(&self, path: &str) -> Result<(), FsError> {
        let fs = self.shell.filesystem();
        let real = fs.resolve(path, true)?;
        if decnet_shell::fs::is_read_only(&real) {
            return Err(FsError::ReadOnly);
        }
        match fs.lstat_raw(&real) {
            Some(node) if node.is_dir() => Err(FsError::IsADirectory),
            Some(node) if !self.allows(&node, 0o2) => Err(FsError::PermissionDenied),
            Some(_) => Ok(()),
            None => self.may_change(&decnet_shell::fs::parent_of(&real)),
        }
    }

    fn write(&mut self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let captured = self.shell.write_file(self.now, path, data)?;
        self.event("write", path, Some(data.len()));
        if let Some(event @ ShellEvent::FileCaptured { .. }) = captured {
            decnet_shell::emulator::log_event(self.cx, event, self.login);
        }
        Ok(())
    }

    fn mkdir(&mut self, path: &str) -> Result<(), FsError> {
        let (uid, gids) = self.uid_gids();
        self.shell
            .filesystem()
            .mkdir(path, Cred { uid, gids: &gids }, self.now)?;
        self.event("mkdir", path, None);
        Ok(())
    }

    fn rmdir(&mut self, path: &str) -> Result<(), FsError> {
        let (uid, gids) = self.uid_gids();
        self.shell.filesystem().rmdir(path, Cred { uid, gids: &gids })?;
        self.event("rmdir", path, None);
        Ok(())
    }

    fn remove(&mut self, path: &str) -> Result<(), FsError> {
        let (uid, gids) = self.uid_gids();
        self.shell.filesystem().unlink(path, Cred { uid, gids: &gids })?;
        self.event("remove", path, None);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        let fs = self.shell.filesystem().clone();
        let (real_from, node) = fs.lstat(from)?;
        let real_to = fs.resolve(to, false)?;
        // sftp-server's version 3 rename links then unlinks: an existing
        // target fails.
        if fs.lstat_raw(&real_to).is_some() {
            return Err(FsError::Exists);
        }
        if decnet_shell::fs::is_read_only(&real_from) || decnet_shell::fs::is_read_only(&real_to) {
            return Err(FsError::ReadOnly);
        }
        self.may_change(&decnet_shell::fs::parent_of(&real_from))?;
        self.may_change(&decnet_shell::fs::parent_of(&real_to))?;
        if real_to.starts_with(&format!("{real_from}/")) {
            return Err(FsError::NotPermitted);
        }
        // A directory moves with everything under it (bounded by the
        // overlay's entry limit, which fails the move when exceeded).
        let mut moves = vec![(real_from.clone(), real_to.clone(), node)];
        let mut i = 0;
        while i < moves.len() {
            let (src, dst, node) = moves[i].clone();
            if node.is_dir() {
                for (name, child) in fs.children(&src) {
                    moves.push((format!("{src}/{name}"), format!("{dst}/{name}"), child));
                }
            }
            i += 1;
        }
        for (_, dst, node) in &moves {
            fs.set(dst, node.clone())?;
        }
        for (src, _, _) in moves.iter().rev() {
            fs.remove_raw(src)?;
        }
        self.cx.emit(
            Kind::Request,
            fields! { "subsystem" => "sftp", "op" => "rename", "path" => real_from, "to" => real_to },
        );
        Ok(())
    }

    fn user_name(&self, uid: u32) -> String {
        self.users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    fn group_name(&self, gid: u32) -> String {
        self.groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }

    fn symlink(&mut self, target: &str, link: &str) -> Result<(), FsError> {
        let fs = self.shell.filesystem().clone();
        if fs.lstat(link).is_ok() {
            return Err(FsError::Exists);
        }
        let real = fs.resolve(link, false)?;
        self.may_change(&decnet_shell::fs::parent_of(&real))?;
        let (uid, gids) = self.uid_gids();
        let node = Node {
            kind: NodeKind::Symlink(target.to_string()),
            mode: 0o777,
            uid,
            gid: gids.first().copied().unwrap_or(uid),
            mtime: self.now,
        };
        fs.set(&real, node)?;
        self.event("symlink", link, None);
        Ok(())
    }

    fn home_of(&self, user: &str) -> Option<String> {
        self.shell.home_of(user)
    }

    fn disk(&self) -> Disk {
        let (total_kb, used_kb) = self.shell.root_disk_kb();
        Disk { total_kb, used_kb }
    }
}

/// `name:x:id:…` lines (`/etc/passwd`, `/etc/group`) → id → name.
fn id_names(text: &[u8]) -> HashMap<u32, String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            let id = parts.nth(1)?.parse().ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}

fn clamp(n: u32) -> u16 {
    n.clamp(1, 1000) as u16
}
