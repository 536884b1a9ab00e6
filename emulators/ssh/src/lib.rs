//! DECNET's SSH-2 server transport, written so that it can offer exactly
//! what a given OpenSSH release offers (sntrup761x25519, mlkem768x25519,
//! umac-64/128, strict kex …) and behave like that release's sshd.
//!
//! Layers: [`wire`] codecs, [`ident`] identification exchange,
//! [`kexinit`] negotiation, [`profile`] per-release offers from
//! `personas/ssh/`, [`kex`] / [`hostkey`] / [`moduli`] key exchange, host
//! keys and group exchange's groups, [`cipher`] / [`mac`] / [`umac`] the
//! binary packet protocol, [`transport`] the sans-IO connection state machine, [`server`] a tokio
//! driver. The caller decides authentication and runs sessions through
//! [`handler::Handler`].

#![forbid(unsafe_code)]

pub mod cipher;
pub mod emulator;
pub mod handler;
pub mod hostkey;
pub mod ident;
pub mod kex;
pub mod kexinit;
pub mod mac;
pub mod modp;
pub mod moduli;
pub mod profile;
pub mod scp;
pub mod server;
pub mod sftp;
pub mod transport;
pub mod umac;
pub mod wire;
pub mod zlib;

pub use handler::{Action, AuthAttempt, AuthDecision, AuthMethod, ChannelRequest, Handler, Observation};
pub use hostkey::HostKeys;
pub use profile::{Profile, Profiles};
pub use transport::{Connection, ServerConfig};
