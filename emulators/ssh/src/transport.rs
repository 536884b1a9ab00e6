//! The server connection as a sans-IO state machine: bytes in through
//! [`Connection::feed`], bytes out through [`Connection::take_output`].
//! Transport (RFC 4253), user authentication (RFC 4252, 4256) and the
//! connection protocol's session channels (RFC 4254), each answering the
//! way OpenSSH's sshd answers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand_core06::{OsRng, RngCore as _};

use crate::cipher::{CipherAlg, Direction, PacketError};
use crate::handler::{Action, AuthAttempt, AuthDecision, AuthMethod, ChannelRequest, Handler, Observation};
use crate::hostkey::{HostKeys, blob_type, fingerprint, verify};
use crate::ident::IdentReader;
use crate::kex::{self, DhGroup, HashInput, KexAlg};
use crate::kexinit::{KexInit, Negotiated, negotiate};
use crate::mac::MacAlg;
use crate::moduli::Moduli;
use crate::profile::{Profile, STRICT_KEX_CLIENT, hassh, hassh_string};
use crate::wire::{Reader, WireError, put_bool, put_name_list, put_string, put_u8, put_u32};
use crate::zlib::{Deflater, Inflater};

pub mod msg {
    pub const DISCONNECT: u8 = 1;
    pub const IGNORE: u8 = 2;
    pub const UNIMPLEMENTED: u8 = 3;
    pub const DEBUG: u8 = 4;
    pub const SERVICE_REQUEST: u8 = 5;
    pub const SERVICE_ACCEPT: u8 = 6;
    pub const EXT_INFO: u8 = 7;
    pub const KEXINIT: u8 = 20;
    pub const NEWKEYS: u8 = 21;
    pub const KEX_ECDH_INIT: u8 = 30;
    pub const KEX_ECDH_REPLY: u8 = 31;
    pub const KEX_DH_GEX_GROUP: u8 = 31;
    pub const KEX_DH_GEX_INIT: u8 = 32;
    pub const KEX_DH_GEX_REPLY: u8 = 33;
    pub const KEX_DH_GEX_REQUEST: u8 = 34;
    pub const USERAUTH_REQUEST: u8 = 50;
    pub const USERAUTH_FAILURE: u8 = 51;
    pub const USERAUTH_SUCCESS: u8 = 52;
    pub const USERAUTH_PK_OK: u8 = 60;
    pub const USERAUTH_INFO_REQUEST: u8 = 60;
    pub const USERAUTH_INFO_RESPONSE: u8 = 61;
    pub const GLOBAL_REQUEST: u8 = 80;
    pub const REQUEST_SUCCESS: u8 = 81;
    pub const REQUEST_FAILURE: u8 = 82;
    pub const CHANNEL_OPEN: u8 = 90;
    pub const CHANNEL_OPEN_CONFIRMATION: u8 = 91;
    pub const CHANNEL_OPEN_FAILURE: u8 = 92;
    pub const CHANNEL_WINDOW_ADJUST: u8 = 93;
    pub const CHANNEL_DATA: u8 = 94;
    pub const CHANNEL_EXTENDED_DATA: u8 = 95;
    pub const CHANNEL_EOF: u8 = 96;
    pub const CHANNEL_CLOSE: u8 = 97;
    pub const CHANNEL_REQUEST: u8 = 98;
    pub const CHANNEL_SUCCESS: u8 = 99;
    pub const CHANNEL_FAILURE: u8 = 100;
    pub const PING: u8 = 192;
    pub const PONG: u8 = 193;
}

/// SSH2_DISCONNECT_PROTOCOL_ERROR, what sshd's packet_disconnect uses.
const DISCONNECT_PROTOCOL_ERROR: u32 = 2;
/// sshd's CHAN_SES_PACKET_DEFAULT and CHAN_SES_WINDOW_DEFAULT.
const SESSION_MAX_PACKET: u32 = 32 * 1024;
const SESSION_WINDOW: u32 = 64 * SESSION_MAX_PACKET;
/// SSH2_OPEN_ADMINISTRATIVELY_PROHIBITED / SSH2_OPEN_CONNECT_FAILED.
const OPEN_ADMIN_PROHIBITED: u32 = 1;
const OPEN_CONNECT_FAILED: u32 = 2;
/// Channel output held for a peer whose window is full, per channel.
const MAX_QUEUED: usize = 1024 * 1024;
/// sshd's keyboard-interactive (PAM) prompt.
const KBD_PROMPT: &str = "Password: ";

/// How the server presents itself and what it tolerates.
pub struct ServerConfig {
    /// Full identification line without CRLF, e.g.
    /// `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10`.
    pub ident: String,
    pub profile: Profile,
    pub host_keys: Arc<HostKeys>,
    /// Offered methods in OpenSSH's order.
    pub auth_methods: Vec<String>,
    /// sshd's MaxAuthTries.
    pub max_auth_tries: u32,
    /// How long a failed password/keyboard-interactive answer is held
    /// back (sshd with PAM: about 2 s).
    pub auth_failure_delay: Duration,
    /// sshd's LoginGraceTime (enforced by the driver).
    pub login_grace: Duration,
    pub max_channels: usize,
    /// How long sshd takes to greet a new connection (it forks and
    /// re-executes itself first: 20-30 ms measured for Debian's 9.2p1 on
    /// the test machine). Answering in microseconds is a tell, e.g. in
    /// ssh-audit's connection-rate test. The driver adds ±25% jitter.
    pub ident_delay: Duration,
    /// The groups group exchange draws from (sshd's moduli file).
    pub moduli: Arc<Moduli>,
}

impl ServerConfig {
    pub fn new(software_version: &str, profile: Profile, host_keys: Arc<HostKeys>) -> Self {
        Self {
            ident: format!("SSH-2.0-{software_version}"),
            profile,
            host_keys,
            auth_methods: vec!["publickey".into(), "password".into(), "keyboard-interactive".into()],
            max_auth_tries: 6,
            auth_failure_delay: Duration::from_secs(2),
            login_grace: Duration::from_secs(120),
            max_channels: 10,
            ident_delay: Duration::from_millis(20),
            moduli: Arc::default(),
        }
    }
}

struct KexState {
    server_kexinit: Vec<u8>,
    client_kexinit: Option<Vec<u8>>,
    negotiated: Option<Negotiated>,
    /// The client guessed wrong with first_kex_packet_follows.
    skip_guess: bool,
    /// Keys for our receive direction, installed on the client's NEWKEYS.
    rx_next: Option<Direction>,
    sent_newkeys: bool,
    /// Group exchange: the encoded (min, n, max, p, g) and the group.
    gex: Option<(Vec<u8>, DhGroup)>,
}

#[derive(Debug)]
enum Out {
    Data(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(u32),
    Eof,
    Close,
}

struct Channel {
    remote_id: u32,
    remote_window: u64,
    remote_max_packet: u32,
    local_window: u32,
    queue: VecDeque<Out>,
    eof_sent: bool,
    close_sent: bool,
    started: bool,
}

#[derive(Default)]
struct AuthState {
    service_accepted: bool,
    done: bool,
    attempts: u32,
    failures: u32,
    principal: Option<(String, String)>,
    kbd_user: Option<String>,
}

pub struct Connection<H: Handler> {
    config: Arc<ServerConfig>,
    handler: H,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Offsets in `output` where a new `write` starts (sshd writes some
    /// replies in parts, which a client can see).
    breaks: Vec<usize>,
    ident: Option<IdentReader>,
    /// The identification was refused: sshd exits at once, leaving what
    /// the client sent after the offending byte unread.
    ident_failed: bool,
    client_ident: Vec<u8>,
    rx: Direction,
    tx: Direction,
    last_rx_seq: u32,
    session_id: Option<Vec<u8>>,
    kex: Option<KexState>,
    initial_kex_done: bool,
    strict: bool,
    client_ext_info: bool,
    kex_queue: Vec<Vec<u8>>,
    auth: AuthState,
    channels: BTreeMap<u32, Channel>,
    delay: Option<Duration>,
    closed: bool,
    /// zlib@openssh.com negotiated (client-to-server, server-to-client);
    /// it starts once authentication has succeeded.
    zlib: (bool, bool),
    deflate: Option<Deflater>,
    inflate: Option<Inflater>,
}

/// Why processing stopped: the connection ends after `output` is flushed.
#[derive(Debug)]
enum Stop {
    /// Send SSH_MSG_DISCONNECT with this text, then close.
    Disconnect(String),
    /// Close without a word (what sshd does on fatal errors before keys).
    Silent(String),
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Self {
        Stop::Silent(format!("malformed message: {e}"))
    }
}

/// sshd's channel_from_packet_id: a message for a channel that does not
/// exist ends the connection.
fn nonexistent(what: &str, id: u32) -> Stop {
    Stop::Disconnect(format!("{what} packet referred to nonexistent channel {id}"))
}

/// sshd's channel_parse_id.
fn channel_id(r: &mut Reader<'_>, what: &str) -> Result<u32, Stop> {
    r.u32().map_err(|_| Stop::Disconnect(format!("Invalid {what} message")))
}

fn random_pad(buf: &mut [u8]) {
    OsRng.fill_bytes(buf);
}

impl<H: Handler> Connection<H> {
    /// A new connection; the server's identification is already queued, as
    /// sshd sends it before reading anything.
    pub fn new(config: Arc<ServerConfig>, handler: H) -> Self {
        let mut output = Vec::with_capacity(2048);
        output.extend_from_slice(config.ident.as_bytes());
        output.extend_from_slice(b"\r\n");
        Self {
            config,
            handler,
            input: Vec::new(),
            output,
            breaks: Vec::new(),
            ident: Some(IdentReader::default()),
            ident_failed: false,
            client_ident: Vec::new(),
            rx: Direction::default(),
            tx: Direction::default(),
            last_rx_seq: 0,
            session_id: None,
            kex: None,
            initial_kex_done: false,
            strict: false,
            client_ext_info: false,
            kex_queue: Vec::new(),
            auth: AuthState::default(),
            channels: BTreeMap::new(),
            delay: None,
            closed: false,
            zlib: (false, false),
            deflate: None,
            inflate: None,
        }
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    pub fn into_handler(self) -> H {
        self.handler
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn is_authenticated(&self) -> bool {
        self.auth.done
    }

    /// Bytes to write to the peer.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.breaks.clear();
        std::mem::take(&mut self.output)
    }

    /// Bytes to write to the peer, as the separate writes sshd would make.
    pub fn take_writes(&mut self) -> Vec<Vec<u8>> {
        let breaks = std::mem::take(&mut self.breaks);
        let mut out = std::mem::take(&mut self.output);
        let mut writes = Vec::new();
        for &at in breaks.iter().rev() {
            if at > 0 && at < out.len() {
                writes.push(out.split_off(at));
            }
        }
        if !out.is_empty() {
            writes.push(out);
        }
        writes.reverse();
        writes
    }

    /// Still reading the client's identification line: sshd reads it one
    /// byte at a time, so bytes after a refused line stay unread (and its
    /// exit resets the connection instead of closing it).
    pub fn awaiting_ident(&self) -> bool {
        self.ident.is_some() && !self.closed
    }

    /// The connection ended because the identification was refused.
    pub fn ident_failed(&self) -> bool {
        self.ident_failed
    }

    /// A pause the driver must observe before writing the pending output
    /// (sshd's delay on a failed password).
    pub fn take_delay(&mut self) -> Option<Duration> {
        self.delay.take()
    }

    /// Ends the connection from our side (e.g. LoginGraceTime expired).
    pub fn close(&mut self, reason: &str) {
        if !self.closed {
            self.closed = true;
            self.handler.observe(&Observation::Closed { reason: reason.into() });
        }
    }

    /// Consumes bytes from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        if self.closed {
            return;
        }
        self.input.extend_from_slice(data);
        if let Err(stop) = self.process() {
            let reason = match stop {
                Stop::Disconnect(text) => {
                    let mut p = vec![msg::DISCONNECT];
                    put_u32(&mut p, DISCONNECT_PROTOCOL_ERROR);
                    put_string(&mut p, text.as_bytes());
                    put_string(&mut p, b"");
                    self.seal(&p);
                    text
                }
                Stop::Silent(text) => text,
            };
            self.input.clear();
            self.close(&reason);
        }
    }

    /// Applies channel output produced outside a handler callback (e.g. by
    /// a shell task).
    pub fn act(&mut self, action: Action) {
        if !self.closed {
            self.apply(vec![action]);
        }
    }

    fn process(&mut self) -> Result<(), Stop> {
        if let Some(reader) = &mut self.ident {
            let (used, got) = reader.feed(&self.input);
            self.input.drain(..used);
            match got {
                Ok(None) => return Ok(()),
                Ok(Some(line)) => {
                    self.ident = None;
                    self.client_ident = line.clone().into_bytes();
                    self.handler.observe(&Observation::ClientIdent(line));
                    self.send_kexinit();
                }
                Err(e) => {
                    // sshd's send_error: the text, then CRLF, in two writes.
                    if let Some(text) = e.reply() {
                        self.output.extend_from_slice(text.as_bytes());
                        self.breaks.push(self.output.len());
                        self.output.extend_from_slice(b"\r\n");
                    }
                    self.ident_failed = true;
                    self.input.clear();
                    return Err(Stop::Silent(e.to_string()));
                }
            }
        }
        let mut used_total = 0;
        let result = loop {
            if self.closed {
                break Ok(());
            }
            match self.rx.open(&self.input[used_total..]) {
                Ok(Some((payload, used))) => {
                    used_total += used;
                    self.last_rx_seq = self.rx.seq.wrapping_sub(1);
                    let payload = match &mut self.inflate {
                        Some(z) => match z.decompress(&payload) {
                            Some(p) => p,
                            None => break Err(Stop::Disconnect("Invalid compressed data".into())),
                        },
                        None => payload,
                    };
                    if let Err(e) = self.packet(&payload) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                // sshd flushes a disconnect for a padding length below 4 (and
                // only for that: every other bad packet ends in silence).
                Err(PacketError::Padding(n)) if n < 4 => {
                    break Err(Stop::Disconnect(format!("Corrupted padlen {n} on input.")));
                }
                Err(e) => break Err(Stop::Silent(e.to_string())),
            }
        };
        self.input.drain(..used_total.min(self.input.len()));
        result
    }

    /// Seals a payload now, regardless of key-exchange state.
    fn seal(&mut self, payload: &[u8]) {
        if let Some(z) = &mut self.deflate
            && let Some(packed) = z.compress(payload)
        {
            self.tx.seal(&packed, &mut random_pad, &mut self.output);
            return;
        }
        self.tx.seal(payload, &mut random_pad, &mut self.output);
    }

    /// Starts delayed compression in the directions that negotiated it.
    fn start_compression(&mut self) {
        if self.zlib.0 && self.inflate.is_none() {
            self.inflate = Some(Inflater::default());
        }
        if self.zlib.1 && self.deflate.is_none() {
            self.deflate = Some(Deflater::default());
        }
    }

    /// Sends a payload, holding back non-transport messages while a key
    /// exchange is under way (RFC 4253 §7.1).
    fn send(&mut self, payload: Vec<u8>) {
        let held = self.kex.as_ref().is_some_and(|k| !k.sent_newkeys);
        let transport = payload.first().is_some_and(|&m| m < 50);
        if held && !transport {
            self.kex_queue.push(payload);
        } else {
            self.seal(&payload);
        }
    }

    fn send_kexinit(&mut self) {
        let mut cookie = [0u8; 16];
        OsRng.fill_bytes(&mut cookie);
        let payload = self.config.profile.kexinit(cookie).encode();
        self.seal(&payload);
        self.kex = Some(KexState {
            server_kexinit: payload,
            client_kexinit: None,
            negotiated: None,
            skip_guess: false,
            rx_next: None,
            sent_newkeys: false,
            gex: None,
        });
    }

    fn unimplemented(&mut self) {
        let mut p = vec![msg::UNIMPLEMENTED];
        put_u32(&mut p, self.last_rx_seq);
        self.seal(&p);
    }

    fn packet(&mut self, payload: &[u8]) -> Result<(), Stop> {
        // What sshd 9.2p1 does with each message type, measured side by
        // side with it (tests/ssh_peer.rs). The packet layer refuses type 0
        // and the local-extension range out loud, and always honours
        // DISCONNECT.
        let Some(&kind) = payload.first() else {
            return Err(Stop::Silent("empty packet".into()));
        };
        let ping = self.config.profile.ping && matches!(kind, msg::PING | msg::PONG);
        if kind == 0 || (kind >= 192 && !ping) {
            return Err(Stop::Disconnect(format!("Invalid ssh2 packet type: {kind}")));
        }
        if kind == msg::DISCONNECT {
            let mut r = Reader::new(&payload[1..]);
            let _code = r.u32();
            let text = r.utf8().unwrap_or_default();
            self.close(&format!("client disconnected: {text}"));
            return Ok(());
        }
        if !self.initial_kex_done {
            return self.initial_kex_packet(kind, payload);
        }
        let in_kex = self.kex.is_some();
        match kind {
            msg::IGNORE | msg::DEBUG | msg::UNIMPLEMENTED => self.implicit(kind, payload),
            msg::KEXINIT if self.kex.as_ref().is_none_or(|k| k.client_kexinit.is_none()) => self.kexinit(payload),
            _ if in_kex && self.kex_expects(kind) => self.kex_message(kind, payload),
            msg::SERVICE_REQUEST if !self.auth.done => self.service_request(payload),
            _ if kind < 50 => {
                self.unimplemented();
                Ok(())
            }
            msg::USERAUTH_REQUEST if self.auth.service_accepted && !self.auth.done => self.userauth(payload),
            msg::USERAUTH_INFO_RESPONSE if self.auth.kbd_user.is_some() && !self.auth.done => {
                self.kbd_response(payload)
            }
            msg::GLOBAL_REQUEST if self.auth.done => self.global_request(payload),
            msg::CHANNEL_OPEN if self.auth.done => self.channel_open(payload),
            msg::CHANNEL_REQUEST if self.auth.done => self.channel_request(payload),
            msg::CHANNEL_DATA | msg::CHANNEL_EXTENDED_DATA if self.auth.done => self.channel_data(payload),
            msg::CHANNEL_WINDOW_ADJUST if self.auth.done => self.window_adjust(payload),
            msg::CHANNEL_EOF if self.auth.done => self.channel_eof(payload),
            msg::CHANNEL_CLOSE if self.auth.done => self.channel_close(payload),
            msg::CHANNEL_SUCCESS | msg::CHANNEL_FAILURE if self.auth.done => Ok(()),
            msg::CHANNEL_OPEN_CONFIRMATION | msg::CHANNEL_OPEN_FAILURE if self.auth.done => self.open_answer(payload),
            msg::PING if self.auth.done && self.config.profile.ping => {
                // ping@openssh.com: echo the data back in a PONG.
                let data = Reader::new(&payload[1..]).string()?.to_vec();
                let mut p = vec![msg::PONG];
                put_string(&mut p, &data);
                self.send(p);
                Ok(())
            }
            _ => {
                self.unimplemented();
                Ok(())
            }
        }
    }

    /// IGNORE, DEBUG and UNIMPLEMENTED, which sshd's packet layer handles
    /// itself; a DEBUG or UNIMPLEMENTED that does not parse ends the
    /// connection (IGNORE is not parsed).
    fn implicit(&mut self, kind: u8, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        match kind {
            msg::DEBUG => {
                r.bool()?;
                r.string()?;
                r.string()?;
            }
            msg::UNIMPLEMENTED => {
                r.u32()?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A message before the first key exchange is over. sshd's dispatch
    /// table then has the key-exchange handlers and, for every other
    /// transport message (1-49), `kex_protocol_error`: UNIMPLEMENTED, or
    /// with strict kex a disconnect. Anything from 50 up has no handler:
    /// sshd gives up without flushing its "protocol error" disconnect.
    fn initial_kex_packet(&mut self, kind: u8, payload: &[u8]) -> Result<(), Stop> {
        if kind >= 50 {
            return Err(Stop::Silent(format!("protocol error: rcvd type {kind}")));
        }
        let first_kexinit = kind == msg::KEXINIT && self.kex.as_ref().is_none_or(|k| k.client_kexinit.is_none());
        if first_kexinit {
            return self.kexinit(payload);
        }
        if self.kex_expects(kind) {
            return self.kex_message(kind, payload);
        }
        if !self.strict && matches!(kind, msg::IGNORE | msg::DEBUG | msg::UNIMPLEMENTED) {
            return self.implicit(kind, payload);
        }
        self.kex_protocol_error(kind)
    }

    /// sshd's `kex_protocol_error`.
    fn kex_protocol_error(&mut self, kind: u8) -> Result<(), Stop> {
        if self.strict && !self.initial_kex_done {
            return Err(Stop::Disconnect(format!(
                "strict KEX violation: unexpected packet type {kind} (seqnr {})",
                self.last_rx_seq
            )));
        }
        self.unimplemented();
        Ok(())
    }

    /// Whether the key exchange under way has a handler for `kind` now:
    /// the negotiated method's first message until the reply is sent, the
    /// group-exchange request before the group, NEWKEYS after ours.
    fn kex_expects(&self, kind: u8) -> bool {
        let Some(kex) = &self.kex else {
            return false;
        };
        let Some(alg) = kex.negotiated.as_ref().and_then(|n| KexAlg::from_name(&n.kex)) else {
            return false;
        };
        let replied = kex.rx_next.is_some() || kex.sent_newkeys;
        match kind {
            msg::NEWKEYS => kex.rx_next.is_some(),
            msg::KEX_DH_GEX_REQUEST => alg == KexAlg::DhGex && kex.gex.is_none(),
            msg::KEX_DH_GEX_INIT => alg == KexAlg::DhGex && kex.gex.is_some() && !replied,
            msg::KEX_ECDH_INIT => alg != KexAlg::DhGex && !replied,
            _ => false,
        }
    }

    fn kex_message(&mut self, kind: u8, payload: &[u8]) -> Result<(), Stop> {
        match kind {
            msg::NEWKEYS => self.newkeys(),
            msg::KEX_DH_GEX_REQUEST => self.gex_request(payload),
            _ => self.kex_init_message(payload),
        }
    }

    // --- key exchange -------------------------------------------------

    fn kexinit(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let client = KexInit::decode(payload)?;
        // sshd's sshpkt_get_end: nothing may follow the reserved field.
        if client.encode().len() != payload.len() {
            return Err(Stop::Silent("KEXINIT with trailing bytes".into()));
        }
        if self.kex.is_none() {
            // The client starts a re-exchange: answer with our KEXINIT.
            self.send_kexinit();
        }
        let first = !self.initial_kex_done;
        if first {
            self.strict = self.config.profile.strict_kex && client.kex.contains(STRICT_KEX_CLIENT);
            if self.strict && self.last_rx_seq != 0 {
                return Err(Stop::Disconnect(
                    "strict KEX violation: KEXINIT was not the first packet".into(),
                ));
            }
            self.client_ext_info = client.kex.contains("ext-info-c");
            self.handler.observe(&Observation::ClientKexInit {
                hassh: hassh(&client),
                hassh_string: hassh_string(&client),
                kexinit: Box::new(client.clone()),
            });
        }
        let kex = self.kex.as_mut().expect("set above");
        if kex.client_kexinit.is_some() {
            return Err(Stop::Disconnect("kex_input_kexinit: unexpected KEXINIT".into()));
        }
        let server = KexInit::decode(&kex.server_kexinit)?;
        let negotiated = negotiate(&client, &server).map_err(|e| {
            Stop::Silent(format!(
                "Unable to negotiate: no matching {} found. Their offer: {}",
                e.0,
                client.kex.joined()
            ))
        })?;
        if KexAlg::from_name(&negotiated.kex).is_none() {
            return Err(Stop::Silent(format!(
                "negotiated {} which this build cannot run",
                negotiated.kex
            )));
        }
        let zlib = |name: &str| -> Result<bool, Stop> {
            match name {
                "none" => Ok(false),
                "zlib@openssh.com" => Ok(true),
                other => Err(Stop::Silent(format!("compression {other} is not supported"))),
            }
        };
        self.zlib = (zlib(&negotiated.comp_c2s)?, zlib(&negotiated.comp_s2c)?);
        let kex = self.kex.as_mut().expect("set above");
        // sshd's proposals_match: the guess is wrong unless both sides put
        // the same kex and host-key algorithms first.
        kex.skip_guess = client.first_kex_follows
            && (client.kex.0.first() != server.kex.0.first() || client.host_key.0.first() != server.host_key.0.first());
        kex.client_kexinit = Some(payload.to_vec());
        self.handler
            .observe(&Observation::Negotiated(Box::new(negotiated.clone())));
        self.kex.as_mut().expect("set above").negotiated = Some(negotiated);
        Ok(())
    }

    /// RFC 4419: the client asks for a group size; we answer with a group.
    fn gex_request(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let is_gex = self
            .kex
            .as_ref()
            .and_then(|k| k.negotiated.as_ref())
            .is_some_and(|n| KexAlg::from_name(&n.kex) == Some(KexAlg::DhGex));
        let Some(kex) = self.kex.as_mut().filter(|k| is_gex && k.gex.is_none()) else {
            self.unimplemented();
            return Ok(());
        };
        let mut r = Reader::new(&payload[1..]);
        let (min, n, max) = (r.u32()?, r.u32()?, r.u32()?);
        let group = self
            .config
            .moduli
            .choose(min, n, max, |count| (OsRng.next_u32() as usize) % count)
            // sshd dies on it without a word (measured: tests/ssh_peer.rs).
            .ok_or_else(|| Stop::Silent("DH_GEX_REQUEST, bad parameters".into()))?;
        let mut encoded = Vec::new();
        put_u32(&mut encoded, min);
        put_u32(&mut encoded, n);
        put_u32(&mut encoded, max);
        crate::wire::put_mpint(&mut encoded, &group.p.to_bytes_be());
        crate::wire::put_mpint(&mut encoded, &group.g.to_bytes_be());
        let mut p = vec![msg::KEX_DH_GEX_GROUP];
        crate::wire::put_mpint(&mut p, &group.p.to_bytes_be());
        crate::wire::put_mpint(&mut p, &group.g.to_bytes_be());
        kex.gex = Some((encoded, group));
        self.seal(&p);
        Ok(())
    }

    fn kex_init_message(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let Some(kex) = self.kex.as_mut() else {
            return Err(Stop::Disconnect("unexpected key exchange message".into()));
        };
        let (Some(negotiated), Some(client_kexinit)) = (kex.negotiated.clone(), kex.client_kexinit.clone()) else {
            self.unimplemented();
            return Ok(());
        };
        if kex.skip_guess {
            kex.skip_guess = false;
            return Ok(());
        }
        if kex.rx_next.is_some() {
            return Err(Stop::Disconnect("duplicate key exchange message".into()));
        }
        let server_kexinit = kex.server_kexinit.clone();
        let gex = kex.gex.clone();
        let alg = KexAlg::from_name(&negotiated.kex).ok_or_else(|| Stop::Silent("kex vanished".into()))?;
        let want = if alg == KexAlg::DhGex {
            msg::KEX_DH_GEX_INIT
        } else {
            msg::KEX_ECDH_INIT
        };
        if payload[0] != want || (alg == KexAlg::DhGex && gex.is_none()) {
            self.unimplemented();
            return Ok(());
        }
        let finite_field = matches!(alg, KexAlg::DhGroup { .. } | KexAlg::DhGex);
        let mut r = Reader::new(&payload[1..]);
        let client_public = if finite_field { r.mpint()? } else { r.string()? };
        let reply = kex::server_reply(alg, client_public, gex.as_ref().map(|g| &g.1))
            .map_err(|e| Stop::Silent(e.to_string()))?;
        let host_key = self
            .config
            .host_keys
            .public_blob(&negotiated.host_key)
            .ok_or_else(|| Stop::Silent(format!("no host key for {}", negotiated.host_key)))?;
        let hash = alg.hash();
        let h = kex::exchange_hash(
            hash,
            &HashInput {
                client_ident: &self.client_ident,
                server_ident: self.config.ident.as_bytes(),
                client_kexinit: &client_kexinit,
                server_kexinit: &server_kexinit,
                host_key: &host_key,
                gex: gex.as_ref().map_or(&[][..], |g| &g.0),
                client_public,
                server_public: &reply.server_public,
                mpint: reply.mpint,
                shared: &reply.shared,
            },
        );
        let session_id = self.session_id.get_or_insert_with(|| h.clone()).clone();
        let signature = self
            .config
            .host_keys
            .sign(&negotiated.host_key, &h)
            .ok_or_else(|| Stop::Silent("signing failed".into()))?;
        let mut p = vec![if alg == KexAlg::DhGex {
            msg::KEX_DH_GEX_REPLY
        } else {
            msg::KEX_ECDH_REPLY
        }];
        put_string(&mut p, &host_key);
        if reply.mpint {
            crate::wire::put_mpint(&mut p, &reply.server_public);
        } else {
            put_string(&mut p, &reply.server_public);
        }
        put_string(&mut p, &signature);
        self.seal(&p);
        self.seal(&[msg::NEWKEYS]);

        let derive = |letter: u8, len: usize| kex::derive_key(hash, &reply.shared, &h, letter, &session_id, len);
        let make = |cipher_name: &str, mac_name: &str, iv: u8, key: u8, mac: u8| -> Result<Direction, Stop> {
            let cipher =
                CipherAlg::from_name(cipher_name).ok_or_else(|| Stop::Silent(format!("cipher {cipher_name}")))?;
            // AEAD ciphers ignore the MAC; any valid name keeps types simple.
            let mac_alg = MacAlg::from_name(mac_name)
                .or_else(|| cipher.is_aead().then(|| MacAlg::from_name("hmac-sha2-256")).flatten())
                .ok_or_else(|| Stop::Silent(format!("mac {mac_name}")))?;
            let mac_len = if cipher.is_aead() { 0 } else { mac_alg.key_len() };
            Ok(Direction::new(
                cipher,
                &derive(key, cipher.key_len()),
                &derive(iv, cipher.iv_len()),
                mac_alg,
                &derive(mac, mac_len.max(1)),
                0,
            ))
        };
        let mut tx = make(&negotiated.enc_s2c, &negotiated.mac_s2c, b'B', b'D', b'F')?;
        let mut rx = make(&negotiated.enc_c2s, &negotiated.mac_c2s, b'A', b'C', b'E')?;
        // Without strict kex, sequence numbers carry on across NEWKEYS.
        if !self.strict {
            tx.seq = self.tx.seq;
            rx.seq = 0; // set from the live direction when installed
        }
        self.tx = tx;
        let kex = self.kex.as_mut().expect("checked above");
        kex.rx_next = Some(rx);
        kex.sent_newkeys = true;
        if !self.initial_kex_done && self.client_ext_info {
            self.send_ext_info();
        }
        for queued in std::mem::take(&mut self.kex_queue) {
            self.seal(&queued);
        }
        let ids: Vec<u32> = self.channels.keys().copied().collect();
        for id in ids {
            self.flush_channel(id);
        }
        Ok(())
    }

    fn send_ext_info(&mut self) {
        let profile = &self.config.profile;
        let mut p = vec![msg::EXT_INFO];
        let mut count = 0u32;
        let mut body = Vec::new();
        if !profile.server_sig_algs.is_empty() {
            put_string(&mut body, b"server-sig-algs");
            put_string(&mut body, profile.server_sig_algs.join(",").as_bytes());
            count += 1;
        }
        if profile.publickey_hostbound {
            put_string(&mut body, b"publickey-hostbound@openssh.com");
            put_string(&mut body, b"0");
            count += 1;
        }
        if profile.ping {
            put_string(&mut body, b"ping@openssh.com");
            put_string(&mut body, b"0");
            count += 1;
        }
        put_u32(&mut p, count);
        p.extend_from_slice(&body);
        self.seal(&p);
    }

    fn newkeys(&mut self) -> Result<(), Stop> {
        let Some(kex) = self.kex.as_mut() else {
            return Err(Stop::Disconnect("unexpected NEWKEYS".into()));
        };
        let Some(mut rx) = kex.rx_next.take() else {
            return Err(Stop::Disconnect("NEWKEYS before key exchange".into()));
        };
        if !self.strict {
            rx.seq = self.rx.seq;
        }
        self.rx = rx;
        self.kex = None;
        self.initial_kex_done = true;
        if self.auth.done {
            self.start_compression();
        }
        Ok(())
    }

    // --- user authentication -----------------------------------------

    fn service_request(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let service = r.utf8()?;
        // sshd accepts ssh-userauth as often as it is asked until a login
        // succeeds, and hangs up on any other service.
        if service != "ssh-userauth" {
            return Err(Stop::Disconnect(format!("bad service request {service}")));
        }
        self.auth.service_accepted = true;
        let mut p = vec![msg::SERVICE_ACCEPT];
        put_string(&mut p, service.as_bytes());
        self.send(p);
        Ok(())
    }

    fn methods_list(&self) -> Vec<u8> {
        let mut p = vec![msg::USERAUTH_FAILURE];
        put_name_list(&mut p, &crate::wire::NameList(self.config.auth_methods.clone()));
        put_bool(&mut p, false);
        p
    }

    fn userauth(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let user = r.utf8()?;
        let service = r.utf8()?;
        let method = r.utf8()?;
        match &self.auth.principal {
            Some((u, s)) if *u != user || *s != service => {
                return Err(Stop::Disconnect(format!(
                    "Change of username or service not allowed: ({u},{s}) -> ({user},{service})"
                )));
            }
            None => self.auth.principal = Some((user.clone(), service.clone())),
            _ => {}
        }
        self.auth.attempts += 1;
        self.auth.kbd_user = None;
        let offered = self.config.auth_methods.contains(&method)
            || (method == "publickey-hostbound-v00@openssh.com"
                && self.config.profile.publickey_hostbound
                && self.config.auth_methods.iter().any(|m| m == "publickey"));
        let attempt = |m: AuthMethod, n| AuthAttempt {
            user: user.clone(),
            attempt: n,
            method: m,
        };
        let n = self.auth.attempts;
        match method.as_str() {
            "none" => {
                let decision = self.handler.auth(&attempt(AuthMethod::None, n));
                self.finish_auth(decision == AuthDecision::Accept, method == "none", false)
            }
            "password" if offered => {
                let change = r.bool()?;
                let password = r.utf8()?;
                let new_password = if change { Some(r.utf8()?) } else { None };
                let decision = self
                    .handler
                    .auth(&attempt(AuthMethod::Password { password, new_password }, n));
                self.finish_auth(decision == AuthDecision::Accept, false, true)
            }
            "publickey" | "publickey-hostbound-v00@openssh.com" if offered => {
                let signed = r.bool()?;
                let algorithm = r.utf8()?;
                let blob = r.string()?.to_vec();
                let hostbound = method != "publickey";
                let bound_key = if hostbound { Some(r.string()?.to_vec()) } else { None };
                let signature = if signed { Some(r.string()?.to_vec()) } else { None };
                let verified = signature.as_ref().is_some_and(|sig| {
                    let mut data = Vec::new();
                    put_string(&mut data, self.session_id.as_deref().unwrap_or_default());
                    put_u8(&mut data, msg::USERAUTH_REQUEST);
                    put_string(&mut data, user.as_bytes());
                    put_string(&mut data, service.as_bytes());
                    put_string(&mut data, method.as_bytes());
                    put_bool(&mut data, true);
                    put_string(&mut data, algorithm.as_bytes());
                    put_string(&mut data, &blob);
                    if let Some(k) = &bound_key {
                        put_string(&mut data, k);
                    }
                    verify(&algorithm, &blob, &data, sig)
                });
                let m = AuthMethod::PublicKey {
                    key_type: blob_type(&blob).unwrap_or_default(),
                    fingerprint: fingerprint(&blob),
                    algorithm: algorithm.clone(),
                    blob: blob.clone(),
                    signed,
                    verified,
                };
                let decision = self.handler.auth(&attempt(m, n));
                if !signed && decision == AuthDecision::Accept {
                    // PK_OK: the client will now sign. Not a failure (sshd
                    // marks the request "postponed").
                    let mut p = vec![msg::USERAUTH_PK_OK];
                    put_string(&mut p, algorithm.as_bytes());
                    put_string(&mut p, &blob);
                    self.send(p);
                    return Ok(());
                }
                self.finish_auth(signed && verified && decision == AuthDecision::Accept, false, false)
            }
            "keyboard-interactive" if offered => {
                let _language = r.utf8()?;
                let _submethods = r.utf8()?;
                self.auth.kbd_user = Some(user);
                let mut p = vec![msg::USERAUTH_INFO_REQUEST];
                put_string(&mut p, b"");
                put_string(&mut p, b"");
                put_string(&mut p, b"");
                put_u32(&mut p, 1);
                put_string(&mut p, KBD_PROMPT.as_bytes());
                put_bool(&mut p, false);
                self.send(p);
                Ok(())
            }
            _ => self.finish_auth(false, false, false),
        }
    }

    fn kbd_response(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let count = r.u32()?;
        if count > 100 {
            return Err(Stop::Disconnect(
                "input_userauth_info_response: too many replies".into(),
            ));
        }
        let mut responses = Vec::new();
        for _ in 0..count {
            responses.push(r.utf8()?);
        }
        let user = self.auth.kbd_user.take().unwrap_or_default();
        let decision = self.handler.auth(&AuthAttempt {
            user,
            attempt: self.auth.attempts,
            method: AuthMethod::KeyboardInteractive { responses },
        });
        self.finish_auth(decision == AuthDecision::Accept, false, true)
    }

    /// sshd's userauth_finish: success, or a failure that counts unless it
    /// was the first "none" probe, then MaxAuthTries.
    fn finish_auth(&mut self, success: bool, is_none: bool, delayed: bool) -> Result<(), Stop> {
        if success {
            self.auth.done = true;
            self.send(vec![msg::USERAUTH_SUCCESS]);
            self.start_compression();
            self.send_hostkeys();
            return Ok(());
        }
        if delayed {
            self.delay = Some(self.config.auth_failure_delay);
        }
        if self.auth.attempts > 1 || !is_none {
            self.auth.failures += 1;
        }
        if self.auth.failures >= self.config.max_auth_tries {
            return Err(Stop::Disconnect("Too many authentication failures".into()));
        }
        let p = self.methods_list();
        self.send(p);
        Ok(())
    }

    // --- connection protocol -----------------------------------------

    /// The public-key blobs sshd would load, in its default HostKey order
    /// (RSA, ECDSA, Ed25519), limited to the types the profile offers.
    fn host_key_blobs(&self) -> Vec<(&'static str, Vec<u8>)> {
        let offered = &self.config.profile.host_key;
        let mut out = Vec::new();
        for (sign_alg, names) in [
            ("rsa-sha2-512", &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"][..]),
            ("ecdsa-sha2-nistp256", &["ecdsa-sha2-nistp256"][..]),
            ("ssh-ed25519", &["ssh-ed25519"][..]),
        ] {
            if let Some(name) = names.iter().find(|n| offered.iter().any(|o| o == *n))
                && let Some(blob) = self.config.host_keys.public_blob(name)
            {
                let alg = if *name == "ssh-rsa" && !offered.iter().any(|o| o.starts_with("rsa-")) {
                    "ssh-rsa"
                } else {
                    sign_alg
                };
                out.push((alg, blob));
            }
        }
        out
    }

    /// sshd announces all its host keys once the user is in
    /// (`hostkeys-00@openssh.com`, for the client's UpdateHostKeys).
    fn send_hostkeys(&mut self) {
        let mut p = vec![msg::GLOBAL_REQUEST];
        put_string(&mut p, b"hostkeys-00@openssh.com");
        put_bool(&mut p, false);
        for (_, blob) in self.host_key_blobs() {
            put_string(&mut p, &blob);
        }
        self.send(p);
    }

    /// Answers `hostkeys-prove-00@openssh.com`: one signature per key asked
    /// about, over the session id; an unknown key fails the whole request.
    fn prove_hostkeys(&mut self, r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, Stop> {
        let ours = self.host_key_blobs();
        let session_id = self.session_id.clone().unwrap_or_default();
        let mut p = vec![msg::REQUEST_SUCCESS];
        let mut count = 0;
        while r.remaining() > 0 {
            let blob = r.string()?;
            count += 1;
            if count > 16 {
                return Ok(None);
            }
            let Some((alg, _)) = ours.iter().find(|(_, b)| b == blob) else {
                return Ok(None);
            };
            let mut data = Vec::new();
            put_string(&mut data, b"hostkeys-prove-00@openssh.com");
            put_string(&mut data, &session_id);
            put_string(&mut data, blob);
            let Some(sig) = self.config.host_keys.sign(alg, &data) else {
                return Ok(None);
            };
            put_string(&mut p, &sig);
        }
        Ok(Some(p))
    }

    fn global_request(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let name = r.utf8()?;
        let want_reply = r.bool()?;
        let proof = if name == "hostkeys-prove-00@openssh.com" {
            self.prove_hostkeys(&mut r)?
        } else {
            None
        };
        self.handler.observe(&Observation::GlobalRequest { name });
        if want_reply {
            self.send(proof.unwrap_or_else(|| vec![msg::REQUEST_FAILURE]));
        }
        Ok(())
    }

    fn channel_open(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let kind = r.utf8()?;
        let sender = r.u32()?;
        let window = r.u32()?;
        let max_packet = r.u32()?;
        let refuse = |this: &mut Self, reason: u32| {
            let mut p = vec![msg::CHANNEL_OPEN_FAILURE];
            put_u32(&mut p, sender);
            put_u32(&mut p, reason);
            put_string(&mut p, b"open failed");
            put_string(&mut p, b"");
            this.send(p);
        };
        if kind != "session" {
            let (target, origin, reason) = match kind.as_str() {
                "direct-tcpip" | "forwarded-tcpip" => {
                    let host = r.utf8()?;
                    let port = r.u32()?;
                    let ohost = r.utf8()?;
                    let oport = r.u32()?;
                    (Some((host, port)), Some((ohost, oport)), OPEN_ADMIN_PROHIBITED)
                }
                _ => (None, None, OPEN_CONNECT_FAILED),
            };
            if kind == "tun@openssh.com" {
                // sshd (PermitTunnel no) says why in a debug message first.
                let mut p = vec![msg::DEBUG];
                put_bool(&mut p, false);
                put_string(&mut p, b"Server has rejected tunnel device forwarding");
                put_string(&mut p, b"");
                self.send(p);
            }
            self.handler
                .observe(&Observation::ChannelRefused { kind, target, origin });
            refuse(self, reason);
            return Ok(());
        }
        if self.channels.len() >= self.config.max_channels {
            refuse(self, OPEN_CONNECT_FAILED);
            return Ok(());
        }
        let id = (0..).find(|i| !self.channels.contains_key(i)).unwrap_or(0);
        self.channels.insert(
            id,
            Channel {
                remote_id: sender,
                remote_window: u64::from(window),
                remote_max_packet: max_packet.clamp(1, SESSION_MAX_PACKET),
                local_window: 0,
                queue: VecDeque::new(),
                eof_sent: false,
                close_sent: false,
                started: false,
            },
        );
        // sshd confirms a session with an empty window and opens it once
        // the session has a command to feed.
        let mut p = vec![msg::CHANNEL_OPEN_CONFIRMATION];
        put_u32(&mut p, sender);
        put_u32(&mut p, id);
        put_u32(&mut p, 0);
        put_u32(&mut p, SESSION_MAX_PACKET);
        self.send(p);
        self.handler.channel_open(id);
        Ok(())
    }

    fn channel_request(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let id = r.u32()?;
        let name = r.utf8()?;
        let want_reply = r.bool()?;
        let Some(remote_id) = self.channels.get(&id).map(|c| c.remote_id) else {
            return Err(Stop::Disconnect(format!(
                "server_input_channel_req: unknown channel {id}"
            )));
        };
        let request = match name.as_str() {
            "pty-req" => {
                let term = r.utf8()?;
                let cols = r.u32()?;
                let rows = r.u32()?;
                let _wpx = r.u32()?;
                let _hpx = r.u32()?;
                let modes = r.string()?.to_vec();
                ChannelRequest::Pty {
                    term,
                    cols,
                    rows,
                    modes,
                }
            }
            "env" => ChannelRequest::Env {
                name: r.utf8()?,
                value: r.utf8()?,
            },
            "window-change" => ChannelRequest::WindowChange {
                cols: r.u32()?,
                rows: r.u32()?,
            },
            "shell" => ChannelRequest::Shell,
            "exec" => ChannelRequest::Exec {
                command: r.string()?.to_vec(),
            },
            "subsystem" => ChannelRequest::Subsystem { name: r.utf8()? },
            "signal" => ChannelRequest::Signal { name: r.utf8()? },
            _ => ChannelRequest::Other { name },
        };
        let starts = matches!(
            request,
            ChannelRequest::Shell | ChannelRequest::Exec { .. } | ChannelRequest::Subsystem { .. }
        );
        let already = self.channels.get(&id).is_some_and(|c| c.started);
        let mut actions = Vec::new();
        let ok = if starts && already {
            false
        } else {
            self.handler.channel_request(id, &request, &mut actions)
        };
        // sshd opens the window as the session starts, before it replies.
        if ok && starts {
            if let Some(c) = self.channels.get_mut(&id) {
                c.started = true;
                c.local_window = SESSION_WINDOW;
            }
            let mut p = vec![msg::CHANNEL_WINDOW_ADJUST];
            put_u32(&mut p, remote_id);
            put_u32(&mut p, SESSION_WINDOW);
            self.send(p);
        }
        if want_reply {
            let mut p = vec![if ok { msg::CHANNEL_SUCCESS } else { msg::CHANNEL_FAILURE }];
            put_u32(&mut p, remote_id);
            self.send(p);
        }
        self.apply(actions);
        Ok(())
    }

    fn channel_data(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let what = if payload[0] == msg::CHANNEL_EXTENDED_DATA {
            "extended data"
        } else {
            "data"
        };
        let id = channel_id(&mut r, what)?;
        if !self.channels.contains_key(&id) {
            return Err(nonexistent(what, id));
        }
        if payload[0] == msg::CHANNEL_EXTENDED_DATA {
            let _code = r.u32()?;
        }
        let data = r.string()?;
        let Some(c) = self.channels.get_mut(&id) else {
            return Err(nonexistent(what, id));
        };
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        if len > c.local_window {
            // sshd logs "rcvd too much data" and drops it.
            return Ok(());
        }
        c.local_window -= len;
        let mut adjust = None;
        if c.started && c.local_window < SESSION_WINDOW / 2 {
            adjust = Some((c.remote_id, SESSION_WINDOW - c.local_window));
            c.local_window = SESSION_WINDOW;
        }
        let mut actions = Vec::new();
        if payload[0] == msg::CHANNEL_DATA {
            self.handler.channel_data(id, data, &mut actions);
        }
        if let Some((remote, n)) = adjust {
            let mut p = vec![msg::CHANNEL_WINDOW_ADJUST];
            put_u32(&mut p, remote);
            put_u32(&mut p, n);
            self.send(p);
        }
        self.apply(actions);
        Ok(())
    }

    fn window_adjust(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let mut r = Reader::new(&payload[1..]);
        let id = channel_id(&mut r, "window adjust")?;
        let Some(c) = self.channels.get_mut(&id) else {
            return Err(nonexistent("window adjust", id));
        };
        let n = r.u32()?;
        c.remote_window = (c.remote_window + u64::from(n)).min(u64::from(u32::MAX));
        self.flush_channel(id);
        Ok(())
    }

    fn channel_eof(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let id = channel_id(&mut Reader::new(&payload[1..]), "ieof")?;
        if !self.channels.contains_key(&id) {
            return Err(nonexistent("ieof", id));
        }
        let mut actions = Vec::new();
        self.handler.channel_eof(id, &mut actions);
        self.apply(actions);
        Ok(())
    }

    fn channel_close(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let id = channel_id(&mut Reader::new(&payload[1..]), "oclose")?;
        let Some(c) = self.channels.remove(&id) else {
            return Err(nonexistent("oclose", id));
        };
        if !c.close_sent {
            let mut p = vec![msg::CHANNEL_CLOSE];
            put_u32(&mut p, c.remote_id);
            self.send(p);
        }
        self.handler.channel_closed(id);
        Ok(())
    }

    /// The client confirming or refusing a channel we opened: we open
    /// none, so like sshd it refers to a channel that is not opening.
    fn open_answer(&mut self, payload: &[u8]) -> Result<(), Stop> {
        let (what, verb) = if payload[0] == msg::CHANNEL_OPEN_CONFIRMATION {
            ("open confirmation", "open confirmation")
        } else {
            ("open failure", "open failure")
        };
        let id = channel_id(&mut Reader::new(&payload[1..]), what)?;
        if !self.channels.contains_key(&id) {
            return Err(nonexistent(what, id));
        }
        Err(Stop::Disconnect(format!(
            "Received {verb} for non-opening channel {id}."
        )))
    }

    fn apply(&mut self, actions: Vec<Action>) {
        let mut touched = Vec::new();
        for a in actions {
            let (id, out) = match a {
                Action::Data(id, d) => (id, Out::Data(d)),
                Action::Stderr(id, d) => (id, Out::Stderr(d)),
                Action::ExitStatus(id, s) => (id, Out::Exit(s)),
                Action::Eof(id) => (id, Out::Eof),
                Action::Close(id) => (id, Out::Close),
            };
            if let Some(c) = self.channels.get_mut(&id) {
                let queued: usize = c
                    .queue
                    .iter()
                    .map(|o| match o {
                        Out::Data(d) | Out::Stderr(d) => d.len(),
                        _ => 0,
                    })
                    .sum();
                // A client that never opens its window cannot make us
                // buffer without bound: output beyond the cap is dropped.
                if matches!(&out, Out::Data(_) | Out::Stderr(_)) && queued > MAX_QUEUED {
                    continue;
                }
                c.queue.push_back(out);
                touched.push(id);
            }
        }
        touched.dedup();
        for id in touched {
            self.flush_channel(id);
        }
    }

    /// Sends queued channel output in order, as far as the peer's window
    /// allows.
    fn flush_channel(&mut self, id: u32) {
        // During a key exchange channel output stays in its (capped) queue
        // rather than piling up behind the exchange.
        if self.kex.as_ref().is_some_and(|k| !k.sent_newkeys) {
            return;
        }
        let mut packets = Vec::new();
        let mut finished = false;
        if let Some(c) = self.channels.get_mut(&id) {
            while let Some(front) = c.queue.front_mut() {
                if c.close_sent {
                    c.queue.clear();
                    break;
                }
                match front {
                    Out::Data(_) | Out::Stderr(_) => {
                        let stderr = matches!(front, Out::Stderr(_));
                        let d = match front {
                            Out::Data(d) | Out::Stderr(d) => d,
                            _ => break,
                        };
                        if d.is_empty() {
                            c.queue.pop_front();
                            continue;
                        }
                        if c.eof_sent {
                            c.queue.pop_front();
                            continue;
                        }
                        let room = c.remote_window.min(u64::from(c.remote_max_packet)) as usize;
                        if room == 0 {
                            break;
                        }
                        let n = room.min(d.len());
                        let chunk: Vec<u8> = d.drain(..n).collect();
                        c.remote_window -= n as u64;
                        let mut p = vec![if stderr {
                            msg::CHANNEL_EXTENDED_DATA
                        } else {
                            msg::CHANNEL_DATA
                        }];
                        put_u32(&mut p, c.remote_id);
                        if stderr {
                            put_u32(&mut p, 1);
                        }
                        put_string(&mut p, &chunk);
                        packets.push(p);
                        if d.is_empty() {
                            c.queue.pop_front();
                        }
                    }
                    Out::Exit(status) => {
                        let mut p = vec![msg::CHANNEL_REQUEST];
                        put_u32(&mut p, c.remote_id);
                        put_string(&mut p, b"exit-status");
                        put_bool(&mut p, false);
                        put_u32(&mut p, *status);
                        packets.push(p);
                        c.queue.pop_front();
                    }
                    Out::Eof => {
                        if !c.eof_sent {
                            let mut p = vec![msg::CHANNEL_EOF];
                            put_u32(&mut p, c.remote_id);
                            packets.push(p);
                            c.eof_sent = true;
                        }
                        c.queue.pop_front();
                    }
                    Out::Close => {
                        let mut p = vec![msg::CHANNEL_CLOSE];
                        put_u32(&mut p, c.remote_id);
                        packets.push(p);
                        c.close_sent = true;
                        finished = true;
                        c.queue.pop_front();
                    }
                }
            }
        }
        let _ = finished;
        for p in packets {
            self.send(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::kexinit::KexInit;
    use crate::wire::NameList;

    struct Deny;

    impl Handler for Deny {
        fn auth(&mut self, _: &AuthAttempt) -> AuthDecision {
            AuthDecision::Reject
        }
    }

    fn config(strict: bool) -> Arc<ServerConfig> {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let profile = Profile {
            release: "9.2p1".into(),
            source: String::new(),
            kex: names(&["curve25519-sha256"]),
            host_key: names(&["ssh-ed25519"]),
            ciphers: names(&["aes128-ctr"]),
            macs: names(&["hmac-sha2-256"]),
            compression: names(&["none"]),
            ext_info_s: false,
            strict_kex: strict,
            server_sig_algs: Vec::new(),
            publickey_hostbound: false,
            ping: false,
            sftp_extensions: Vec::new(),
        };
        Arc::new(ServerConfig::new(
            "OpenSSH_9.2p1",
            profile,
            Arc::new(HostKeys::from_seed(b"unit", None)),
        ))
    }

    fn client_kexinit(strict: bool) -> Vec<u8> {
        let l = |s: &str| NameList::parse(s);
        KexInit {
            cookie: [1; 16],
            kex: l(if strict {
                "curve25519-sha256,kex-strict-c-v00@openssh.com"
            } else {
                "curve25519-sha256"
            }),
            host_key: l("ssh-ed25519"),
            enc_c2s: l("aes128-ctr"),
            enc_s2c: l("aes128-ctr"),
            mac_c2s: l("hmac-sha2-256"),
            mac_s2c: l("hmac-sha2-256"),
            comp_c2s: l("none"),
            comp_s2c: l("none"),
            lang_c2s: l(""),
            lang_s2c: l(""),
            first_kex_follows: false,
        }
        .encode()
    }

    /// Runs a plaintext client: identification, then packets. Returns the
    /// server's packets (payloads) after its identification.
    fn exchange(server_strict: bool, packets: &[Vec<u8>]) -> (Vec<Vec<u8>>, bool) {
        let mut conn = Connection::new(config(server_strict), Deny);
        let mut client = Direction::default();
        let mut wire = b"SSH-2.0-OpenSSH_9.2p1 test\r\n".to_vec();
        for p in packets {
            client.seal(p, &mut |b| b.fill(0), &mut wire);
        }
        conn.feed(&wire);
        let out = conn.take_output();
        let start = out.windows(2).position(|w| w == b"\r\n").expect("ident") + 2;
        let mut rx = Direction::default();
        let mut at = start;
        let mut payloads = Vec::new();
        while let Ok(Some((p, used))) = rx.open(&out[at..]) {
            payloads.push(p);
            at += used;
        }
        (payloads, conn.is_closed())
    }

    #[test]
    fn strict_kex_refuses_anything_before_kexinit() {
        let ignore = vec![msg::IGNORE, 0, 0, 0, 0];
        let (out, closed) = exchange(true, &[ignore.clone(), client_kexinit(true)]);
        assert!(closed);
        let last = out.last().expect("a disconnect");
        assert_eq!(last[0], msg::DISCONNECT);
        assert!(String::from_utf8_lossy(last).contains("strict KEX violation: KEXINIT was not the first packet"));
        // Without strict kex on either side, IGNORE is fine.
        let (_, closed) = exchange(true, &[ignore.clone(), client_kexinit(false)]);
        assert!(!closed);
        let (_, closed) = exchange(false, &[ignore, client_kexinit(true)]);
        assert!(!closed);
    }

    #[test]
    fn strict_kex_refuses_unexpected_messages_during_initial_kex() {
        let (out, closed) = exchange(true, &[client_kexinit(true), vec![msg::SERVICE_REQUEST, 0, 0, 0, 0]]);
        assert!(closed);
        assert!(
            String::from_utf8_lossy(out.last().expect("disconnect"))
                .contains("strict KEX violation: unexpected packet type 5 (seqnr 1)")
        );
        // Not strict: sshd answers SSH_MSG_UNIMPLEMENTED for that sequence number.
        let (out, closed) = exchange(false, &[client_kexinit(true), vec![msg::SERVICE_REQUEST, 0, 0, 0, 0]]);
        assert!(!closed);
        assert_eq!(
            out.last().expect("unimplemented"),
            &vec![msg::UNIMPLEMENTED, 0, 0, 0, 1]
        );
    }

    #[test]
    fn a_corrupt_length_closes_silently_like_sshd() {
        // sshd logs "Bad packet length 4294967295." and hangs up without a
        // message: the client sees the banner, the KEXINIT, then EOF.
        let mut conn = Connection::new(config(true), Deny);
        conn.feed(b"SSH-2.0-x\r\n\xff\xff\xff\xff\0\0\0\0\0\0\0\0");
        assert!(conn.is_closed());
        let out = conn.take_output();
        let start = out.windows(2).position(|w| w == b"\r\n").expect("ident") + 2;
        let (payload, used) = Direction::default()
            .open(&out[start..])
            .expect("valid")
            .expect("one packet");
        assert_eq!(payload[0], msg::KEXINIT);
        assert_eq!(start + used, out.len(), "nothing after KEXINIT");
    }

    /// The answers of Debian's sshd 9.2p1 to messages out of place during
    /// the first key exchange, as measured side by side (tests/ssh_peer.rs).
    #[test]
    fn messages_out_of_place_during_the_first_kex_like_sshd() {
        let disconnect = |out: &[Vec<u8>]| {
            let last = out.last().expect("a message");
            assert_eq!(last[0], msg::DISCONNECT, "{last:?}");
            let mut r = Reader::new(&last[1..]);
            r.u32().expect("code");
            r.utf8().expect("text")
        };
        // Type 0 and the local range: refused out loud, in every phase.
        for t in [0u8, 192, 255] {
            let (out, closed) = exchange(true, &[vec![t, 0, 0, 0, 0]]);
            assert!(closed);
            assert_eq!(disconnect(&out), format!("Invalid ssh2 packet type: {t}"));
            let (out, closed) = exchange(true, &[client_kexinit(true), vec![t, 0, 0, 0, 0]]);
            assert!(closed);
            assert_eq!(disconnect(&out), format!("Invalid ssh2 packet type: {t}"));
        }
        // 50 and up: no handler yet, a silent hang-up (even with strict kex).
        for strict in [false, true] {
            let (out, closed) = exchange(true, &[client_kexinit(strict), vec![60, 0, 0, 0, 0]]);
            assert!(closed);
            assert_eq!(out.len(), 1, "only the KEXINIT");
        }
        // NEWKEYS and a second KEXINIT before their time: UNIMPLEMENTED, or
        // a strict-kex violation.
        let (out, closed) = exchange(true, &[vec![msg::NEWKEYS]]);
        assert!(!closed);
        assert_eq!(out.last(), Some(&vec![msg::UNIMPLEMENTED, 0, 0, 0, 0]));
        let (out, closed) = exchange(true, &[client_kexinit(false), client_kexinit(false)]);
        assert!(!closed);
        assert_eq!(out.last(), Some(&vec![msg::UNIMPLEMENTED, 0, 0, 0, 1]));
        let (out, closed) = exchange(true, &[client_kexinit(true), vec![msg::NEWKEYS]]);
        assert!(closed);
        assert_eq!(
            disconnect(&out),
            "strict KEX violation: unexpected packet type 21 (seqnr 1)"
        );
        // A DEBUG that does not parse ends the connection; IGNORE is not parsed.
        let (_, closed) = exchange(false, &[vec![msg::DEBUG, 0, 0]]);
        assert!(closed);
        let (_, closed) = exchange(false, &[vec![msg::IGNORE, 0, 0]]);
        assert!(!closed);
        // KEXINIT with anything after its reserved field: silence.
        let mut long = client_kexinit(false);
        long.extend_from_slice(b"junk");
        let (out, closed) = exchange(true, &[long]);
        assert!(closed);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_padding_length_below_4_is_named_like_sshd() {
        let mut conn = Connection::new(config(true), Deny);
        // Length 12, padding 3, NEWKEYS.
        conn.feed(b"SSH-2.0-x\r\n\0\0\0\x0c\x03\x15\0\0\0\0\0\0\0\0\0\0");
        assert!(conn.is_closed());
        let out = conn.take_output();
        let start = out.windows(2).position(|w| w == b"\r\n").expect("ident") + 2;
        let mut rx = Direction::default();
        let (_, used) = rx.open(&out[start..]).expect("valid").expect("KEXINIT");
        let (p, _) = rx.open(&out[start + used..]).expect("valid").expect("DISCONNECT");
        assert!(String::from_utf8_lossy(&p).contains("Corrupted padlen 3 on input."));
    }

    #[test]
    fn a_refused_identification_is_written_in_two_parts() {
        let mut conn = Connection::new(config(true), Deny);
        assert!(conn.awaiting_ident());
        conn.feed(b"GET / HTTP/1.0\r\n\r\n");
        assert!(conn.is_closed() && conn.ident_failed());
        let writes = conn.take_writes();
        // (Our identification went out with the first write here; the
        // driver sends it before reading anything.)
        assert_eq!(writes.len(), 2, "{writes:?}");
        assert!(writes[0].starts_with(b"SSH-2.0-OpenSSH_9.2p1\r\n"));
        assert!(writes[0].ends_with(b"Invalid SSH identification string."));
        assert_eq!(writes[1], b"\r\n");
    }

    proptest! {
        #[test]
        fn hostile_bytes_after_identification_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut conn = Connection::new(config(true), Deny);
            conn.feed(b"SSH-2.0-x\r\n");
            for chunk in data.chunks(61) {
                conn.feed(chunk);
            }
            let _ = conn.take_output();
        }

        #[test]
        fn hostile_packets_after_kexinit_never_panic(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
        ) {
            let mut all = vec![client_kexinit(false)];
            all.extend(packets);
            let _ = exchange(false, &all);
        }
    }
}
