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
//! Not yet: the `sftp` subsystem (refused as by an sshd without one), so
//! OpenSSH 9's `scp` (which speaks SFTP) fails too.
//!
//! Persona keys: `ssh_version`, `users`, `password`, `user`,
//! `user_password`, `hostname`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use decnet_emu_sdk::{
    Accounts, BoxFuture, Close, Conn, Credential, Emulator, Kind, Outcome, Port, Recording, RecordingSummary,
    ServeError, Service, ServiceInfo, SessionCx, Transport, fields,
};
use decnet_shell::{Limits, Mode, ShellHost, ShellOutput, ShellSession};

use crate::{
    Action, AuthAttempt, AuthDecision, AuthMethod, ChannelRequest, Handler, HostKeys, Observation, Profiles,
    ServerConfig,
};

/// The SSH emulator.
pub struct Ssh {
    profiles: Profiles,
}

impl Ssh {
    /// With the OpenSSH release profiles compiled in from `personas/ssh/`.
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            profiles: Profiles::embedded().map_err(|e| e.to_string())?,
        })
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
        let version = text("ssh_version").unwrap_or_else(|| "OpenSSH_9.2p1 Debian-2+deb12u10".into());
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
        let host = decnet_shell::emulator::host_for(
            &service.decky,
            &hostname,
            &accounts,
            "sshd",
            &service.ports,
            unix(prepared_at()),
        )?;
        Ok(Arc::new(SshService {
            config: Arc::new(ServerConfig::new(&version, profile, keys)),
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
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let handler = Login {
                svc: Arc::clone(&self),
                cx,
                user: None,
                client: None,
                channels: HashMap::new(),
                _actions: tx,
            };
            match crate::server::serve(conn, Arc::clone(&self.config), handler, Some(rx)).await {
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
    /// Keeps the driver's action channel open for the connection's life.
    _actions: tokio::sync::mpsc::Sender<Action>,
}

#[derive(Default)]
struct Channel {
    pty: Option<(String, u16, u16)>,
    env: Vec<(String, String)>,
    shell: Option<ShellSession>,
    recording: Option<Recording>,
}

impl Login {
    fn now(&self) -> i64 {
        unix(self.cx.now())
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
        match recording.finish() {
            RecordingSummary::Recorded {
                path,
                bytes,
                duration_s,
                truncated,
            } => self.cx.emit(
                Kind::SessionRecorded,
                fields! {
                    "path" => path.display().to_string(),
                    "bytes" => bytes,
                    "duration_s" => duration_s,
                    "truncated" => truncated,
                    "channel" => id,
                },
            ),
            RecordingSummary::Skipped { reason } => self.cx.emit(Kind::SessionSkipped, fields! { "reason" => reason }),
        }
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
                hassh, hassh_string, ..
            } => self.cx.emit(
                Kind::Version,
                fields! {
                    "client" => self.client.clone(),
                    "hassh" => hassh.clone(),
                    "hassh_string" => hassh_string.clone(),
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
            ChannelRequest::Exec { command } if channel.shell.is_none() => {
                let line = String::from_utf8_lossy(command).into_owned();
                self.start(id, Some(line), out);
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
        let Some(shell) = channel.shell.as_mut() else {
            return;
        };
        let outputs = shell.feed(now, data);
        self.deliver(id, outputs, out);
    }

    fn channel_eof(&mut self, id: u32, out: &mut Vec<Action>) {
        let now = self.now();
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

fn clamp(n: u32) -> u16 {
    n.clamp(1, 1000) as u16
}

/// When the decky's shell world is built (a service is prepared before any
/// session has a clock).
#[allow(clippy::disallowed_methods)]
fn prepared_at() -> SystemTime {
    SystemTime::now()
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
