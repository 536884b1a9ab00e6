//! Telnet (TCP 23), as a Linux telnetd and its login program: GNU inetutils
//! telnetd with util-linux login (servers) or BusyBox telnetd and login
//! (routers, IoT), per the persona's `daemon`. The option negotiation, banner,
//! prompts, messages, delays and retry limits are the chosen daemon's
//! (`personas/telnet/*.toml`). Every login attempt is an `auth_attempt` event
//! with the credential; an account of the persona's `users` gets the emulated
//! shell (`decnet-shell`), whose command lines, downloads, captured files and
//! passwords become events too.
//!
//! Persona keys: `daemon`, `users`, `password`, `user`, `user_password`,
//! `hostname`.

#![forbid(unsafe_code)]

pub mod codec;
pub mod profile;

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use decnet_emu_sdk::{
    Accounts, BoxFuture, Close, Conn, Credential, DeckyInfo, Emulator, Kind, Outcome, Port, Recording, ServeError,
    Service, ServiceInfo, SessionCx, Transport, fields,
};
use decnet_shell::{Limits, Mode, ShellHost, ShellOutput, ShellSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use crate::codec::{Decoder, IS, Token, Verb};
use crate::profile::Profile;

/// The longest login name or password kept (util-linux login reads 256).
const MAX_FIELD: usize = 256;
/// How long the client gets to answer a round of negotiation; the round ends
/// earlier once it has been quiet for [`QUIET`].
const NEGOTIATION: Duration = Duration::from_secs(2);
const QUIET: Duration = Duration::from_millis(250);

/// The Telnet emulator.
pub struct Telnet;

impl Emulator for Telnet {
    fn slug(&self) -> &'static str {
        "telnet"
    }

    fn serves(&self, port: &Port) -> bool {
        port.transport == Transport::Tcp
    }

    fn prepare(&self, service: &ServiceInfo) -> Result<Arc<dyn Service>, ServeError> {
        let persona = &service.persona;
        let text = |key: &str| persona.get(key).and_then(|v| v.as_str()).map(String::from);
        // The catalogue's default (`personas/services/telnet.toml`) fills it.
        let daemon = text("daemon").ok_or_else(|| ServeError::Persona("no `daemon`".into()))?;
        let profile = Profile::named(&daemon).map_err(ServeError::Persona)?;
        let accounts = Accounts::from_persona(persona);
        let hostname = text("hostname").unwrap_or_else(|| service.decky.hostname.clone());
        let host = decnet_shell::emulator::host_for(
            &service.decky,
            decnet_shell::emulator::Login {
                hostname: &hostname,
                accounts: &accounts,
                program: "telnetd",
                ports: &service.ports,
                overlay: decnet_shell::OverlayScope::Session,
            },
        )?;
        Ok(Arc::new(TelnetService {
            profile,
            accounts,
            host,
            hostname,
            decky: Arc::clone(&service.decky),
        }))
    }
}

struct TelnetService {
    profile: Profile,
    accounts: Accounts,
    host: ShellHost,
    hostname: String,
    decky: Arc<DeckyInfo>,
}

impl Service for TelnetService {
    fn serve_tcp(self: Arc<Self>, conn: Conn, cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        Box::pin(async move {
            let mut session = Session::new(conn, &self, &cx);
            match session.run().await {
                Ok(close) => Ok(close),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Close::PeerEof),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(Close::Timeout),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// What the client told about itself during negotiation.
#[derive(Debug, Default)]
struct Client {
    /// Options it agreed to (WILL) or asked for.
    agreed: BTreeSet<u8>,
    ttype: Option<String>,
    window: Option<(u16, u16)>,
}

struct Session<'a> {
    conn: Conn,
    svc: &'a TelnetService,
    cx: &'a SessionCx,
    decoder: Decoder,
    input: VecDeque<u8>,
    /// A CR was the last byte: a NUL or LF right after it belongs to it.
    after_cr: bool,
    client: Client,
    /// Options the daemon itself negotiates (its own offers are not refused).
    offered: BTreeSet<u8>,
    tty: String,
    /// The shell's terminal, once logged in.
    recording: Option<Recording>,
}

impl<'a> Session<'a> {
    fn new(conn: Conn, svc: &'a TelnetService, cx: &'a SessionCx) -> Self {
        let mut offered = BTreeSet::new();
        for bytes in [&svc.profile.opening, &svc.profile.settle] {
            offered.extend(bytes.chunks(3).filter(|c| c.len() == 3).map(|c| c[2]));
        }
        let mut pts = [0u8; 1];
        cx.random_bytes(&mut pts);
        Self {
            conn,
            svc,
            cx,
            decoder: Decoder::default(),
            input: VecDeque::new(),
            after_cr: false,
            client: Client::default(),
            offered,
            tty: format!("pts/{}", pts[0] % 4),
            recording: None,
        }
    }

    async fn run(&mut self) -> io::Result<Close> {
        let profile = &self.svc.profile;
        self.send(&profile.opening.clone()).await?;
        self.negotiation_round().await?;
        let requests = profile.requests(|o| self.client.agreed.contains(&o));
        if !requests.is_empty() {
            self.send(&requests).await?;
            self.negotiation_round().await?;
        }
        if !profile.settle.is_empty() {
            self.send(&profile.settle.clone()).await?;
        }
        let banner = self.expand(&profile.banner);
        self.send_text(&banner).await?;

        let deadline = Instant::now() + profile.login_timeout;
        let user = match timeout_at(deadline, self.login()).await {
            Ok(result) => result?,
            Err(_) => {
                let message = profile.timed_out.clone();
                self.send_text(&message).await?;
                return Ok(Close::Timeout);
            }
        };
        let Some(user) = user else {
            return Ok(Close::Done);
        };
        let (width, height) = self.client.window.unwrap_or((80, 24));
        self.recording = Some(self.cx.captures().record(
            self.cx.session(),
            self.cx.now(),
            width,
            height,
            self.client.ttype.as_deref(),
        ));
        let result = self.shell(&user).await;
        self.finish_recording();
        result
    }

    /// Logs how the session's recording ended.
    fn finish_recording(&mut self) {
        let Some(recording) = self.recording.take() else {
            return;
        };
        let (kind, fields) = recording.finish().event();
        self.cx.emit(kind, fields);
    }

    /// Reads the client's answers until it is quiet (or the round's time is up).
    async fn negotiation_round(&mut self) -> io::Result<()> {
        let end = Instant::now() + NEGOTIATION;
        while Instant::now() < end {
            let quiet = (Instant::now() + QUIET).min(end);
            if !self.fill_until(quiet).await? {
                break;
            }
        }
        Ok(())
    }

    /// Reads once, before `deadline`; false when nothing came in time.
    async fn fill_until(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut buf = [0u8; 4096];
        let n = match timeout_at(deadline, self.conn.read(&mut buf)).await {
            Err(_) => return Ok(false),
            Ok(read) => read?,
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.absorb(&buf[..n]).await?;
        Ok(true)
    }

    /// Reads once, waiting as long as the connection's idle limit allows.
    async fn fill(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        let n = self.conn.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.absorb(&buf[..n]).await
    }

    /// Decodes what arrived: data is queued for the login or shell, option
    /// negotiation is remembered and answered.
    async fn absorb(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut tokens = Vec::new();
        self.decoder.feed(bytes, &mut tokens);
        let mut reply = Vec::new();
        for token in tokens {
            match token {
                Token::Data(data) => {
                    for b in data {
                        // Telnet's end of line is CR LF or CR NUL; the pty sees CR.
                        let follows_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
                        if follows_cr && (b == 0 || b == b'\n') {
                            continue;
                        }
                        if self.input.len() < MAX_QUEUED {
                            self.input.push_back(b);
                        }
                    }
                }
                Token::Negotiate(verb, option) => {
                    let offered = self.offered.contains(&option);
                    match verb {
                        Verb::Will | Verb::Do if offered => {
                            self.client.agreed.insert(option);
                        }
                        // An offer of its own the daemon did not make: refused.
                        Verb::Will => reply.extend(codec::negotiate(Verb::Dont, option)),
                        Verb::Do => reply.extend(codec::negotiate(Verb::Wont, option)),
                        Verb::Wont | Verb::Dont => {
                            self.client.agreed.remove(&option);
                        }
                    }
                }
                Token::Sub(option, payload) => self.subnegotiation(option, &payload),
                Token::Command(_) => {}
            }
        }
        if !reply.is_empty() {
            self.send(&reply).await?;
        }
        Ok(())
    }

    fn subnegotiation(&mut self, option: u8, payload: &[u8]) {
        match (
            codec::OPTIONS.iter().find(|(_, c)| *c == option).map(|(n, _)| *n),
            payload,
        ) {
            (Some("TTYPE"), [IS, name @ ..]) => {
                self.client.ttype = Some(printable(name, 40).to_ascii_lowercase());
            }
            (Some("NAWS"), [w1, w0, h1, h0, ..]) => {
                self.client.window = Some((u16::from_be_bytes([*w1, *w0]), u16::from_be_bytes([*h1, *h0])));
            }
            _ => {}
        }
    }

    /// The login program: up to `max_tries` name and password prompts.
    /// Returns the user that logged in, or `None` when the tries ran out.
    async fn login(&mut self) -> io::Result<Option<String>> {
        let profile = &self.svc.profile;
        for _ in 0..profile.max_tries {
            let prompt = self.expand(&profile.login_prompt);
            self.send_text(&prompt).await?;
            let user = loop {
                let Some(line) = self.read_line(true).await? else {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                };
                // An empty name asks again, like login(1).
                if !line.is_empty() {
                    break line;
                }
                self.send_text(&prompt).await?;
            };
            self.send_text(&profile.password_prompt.clone()).await?;
            let Some(password) = self.read_line(false).await? else {
                return Err(io::ErrorKind::UnexpectedEof.into());
            };
            self.send(b"\r\n").await?;
            let name = String::from_utf8_lossy(&user).into_owned();
            let ok = self.svc.accounts.check(&name, &password);
            let mut credential = Credential::plaintext(Some(&name), &password);
            credential.outcome = Some(if ok { Outcome::Success } else { Outcome::Failure });
            self.cx.emit_credential(
                Kind::AuthAttempt,
                fields! {
                    "username" => name.clone(),
                    "method" => "password",
                    "ttype" => self.client.ttype.clone(),
                },
                credential,
            );
            if ok {
                return Ok(Some(name));
            }
            tokio::time::sleep(profile.fail_delay).await;
            self.send_text(&profile.incorrect.clone()).await?;
        }
        let message = profile.too_many.clone();
        self.send_text(&message).await?;
        Ok(None)
    }

    /// One line typed at a login prompt, echoed (or not, for a password),
    /// with erase and kill; `None` on ^D at an empty line.
    async fn read_line(&mut self, echo: bool) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        loop {
            let Some(b) = self.input.pop_front() else {
                self.fill().await?;
                continue;
            };
            match b {
                b'\r' | b'\n' => {
                    if echo {
                        self.send(b"\r\n").await?;
                    }
                    return Ok(Some(line));
                }
                // Backspace or DEL erases the last character typed.
                0x7f | 0x08 => {
                    let erased = line.pop().is_some();
                    if erased && echo {
                        self.send(b"\x08 \x08").await?;
                    }
                }
                0x15 => {
                    if echo {
                        let erase = b"\x08 \x08".repeat(line.len());
                        self.send(&erase).await?;
                    }
                    line.clear();
                }
                0x04 if line.is_empty() => return Ok(None),
                b if b >= 0x20 && line.len() < MAX_FIELD => {
                    line.push(b);
                    if echo {
                        self.send(&[b]).await?;
                    }
                }
                _ => {}
            }
        }
    }

    /// The logged-in user's shell, until it exits or the client leaves.
    async fn shell(&mut self, user: &str) -> io::Result<Close> {
        let mut seed = [0u8; 8];
        self.cx.random_bytes(&mut seed);
        let mut shell = ShellSession::new(
            &self.svc.host,
            user,
            Mode::Interactive,
            Limits::default(),
            u64::from_le_bytes(seed),
        );
        if let Some(term) = self.client.ttype.clone() {
            shell.set_env("TERM", &term);
        }
        // login(1) shows the message of the day (pam_motd) before the shell starts.
        let motd = self.svc.host.motd().replace('\n', "\r\n");
        if let Some(recording) = &mut self.recording {
            recording.output(motd.as_bytes());
        }
        self.send_text(&motd).await?;
        let outputs = shell.start(self.now());
        if self.handle(outputs, user).await? {
            return Ok(Close::Done);
        }
        loop {
            if self.input.is_empty()
                && let Err(e) = self.fill().await
            {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    let outputs = shell.eof(self.now());
                    self.handle(outputs, user).await.ok();
                }
                return Err(e);
            }
            let typed: Vec<u8> = self.input.drain(..).collect();
            if let Some(recording) = &mut self.recording {
                recording.input(&typed);
            }
            let outputs = shell.feed(self.now(), &typed);
            if self.handle(outputs, user).await? || shell.is_closed() {
                return Ok(Close::Done);
            }
        }
    }

    /// Sends the shell's output and logs its events; true once it exited.
    async fn handle(&mut self, outputs: Vec<ShellOutput>, user: &str) -> io::Result<bool> {
        for output in outputs {
            match output {
                ShellOutput::Stdout(bytes) | ShellOutput::Stderr(bytes) => {
                    if let Some(recording) = &mut self.recording {
                        recording.output(&bytes);
                    }
                    self.send(&codec::escape(&bytes)).await?
                }
                ShellOutput::Event(event) => decnet_shell::emulator::log_event(self.cx, event, user),
                ShellOutput::Exit(_) => return Ok(true),
            }
        }
        Ok(false)
    }

    /// A profile text with its placeholders filled, and bare LFs made CR LF.
    fn expand(&self, template: &str) -> String {
        let kernel = &self.svc.decky.userland.kernel;
        let issue = issue(&self.svc.decky.userland.issue, &self.svc.hostname, &self.tty, kernel);
        template
            .replace("{sysname}", "Linux")
            .replace("{release}", &kernel.release)
            .replace("{hostname}", &self.svc.hostname)
            .replace("{tty}", &self.tty)
            .replace("{issue}", &issue)
    }

    async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(&codec::escape(text.as_bytes())).await
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.write_all(bytes).await
    }

    fn now(&self) -> i64 {
        decnet_emu_sdk::clock::unix_secs(self.cx.now())
    }
}

/// Input queued ahead of the login or shell (a paste, a script).
const MAX_QUEUED: usize = 64 << 10;

/// `/etc/issue` as getty and BusyBox print it: `\n` host, `\l` tty, `\s`
/// system, `\r` release, `\m` machine, `\v` version; lines end CR LF.
fn issue(text: &str, hostname: &str, tty: &str, kernel: &decnet_emu_sdk::Kernel) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c == '\n' {
                out.push('\r');
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push_str(hostname),
            Some('l') => out.push_str(tty.trim_start_matches("pts/").trim_start_matches("/dev/")),
            Some('s') => out.push_str("Linux"),
            Some('r') => out.push_str(&kernel.release),
            Some('m') => out.push_str(&kernel.machine),
            Some('v') => out.push_str(&kernel.version),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn printable(bytes: &[u8], max: usize) -> String {
    bytes
        .iter()
        .take(max)
        .map(|b| if b.is_ascii_graphic() { *b as char } else { '?' })
        .collect()
}
