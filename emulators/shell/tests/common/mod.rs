//! Test helpers: a decky's shell host from the shipped persona catalogue.
#![allow(dead_code, unreachable_pub)]

use std::net::Ipv4Addr;

use decnet_core::Catalogue;
use decnet_core::seed::FleetSeed;
use decnet_shell::fs::OverlayLimits;
use decnet_shell::{Account, HostFacts, Mode, OverlayScope, ShellEvent, ShellHost, ShellOutput, ShellSession};

/// A fixed "now": 2026-11-23 05:00:00 UTC.
pub const NOW: i64 = 1_795_410_000;

pub fn host(distro: &str) -> ShellHost {
    host_with(distro, OverlayScope::Session)
}

pub fn host_with(distro: &str, overlay: OverlayScope) -> ShellHost {
    let cat = Catalogue::embedded().expect("the embedded catalogue loads");
    let distro = cat.distro(distro).expect("distro exists").clone();
    ShellHost::new(HostFacts {
        hostname: "web-01".into(),
        ip: Ipv4Addr::new(192, 168, 1, 23),
        prefix_len: 24,
        gateway: Ipv4Addr::new(192, 168, 1, 1),
        mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
        distro,
        kernel_release: None,
        accounts: vec![
            Account {
                name: "root".into(),
                password: "toor".into(),
            },
            Account {
                name: "admin".into(),
                password: "admin123".into(),
            },
        ],
        seed: FleetSeed::from_passphrase("test").decky("web-01"),
        listening: vec![(22, false, "sshd".into())],
        overlay,
        overlay_limits: OverlayLimits::default(),
        now: NOW,
    })
    .expect("host builds")
}

/// What one exec run produced.
#[derive(Debug, Default)]
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<i32>,
    pub events: Vec<ShellEvent>,
}

pub fn collect(outputs: Vec<ShellOutput>, into: &mut Ran) {
    for o in outputs {
        match o {
            ShellOutput::Stdout(b) => into.stdout.push_str(&String::from_utf8_lossy(&b)),
            ShellOutput::Stderr(b) => into.stderr.push_str(&String::from_utf8_lossy(&b)),
            ShellOutput::Event(e) => into.events.push(e),
            ShellOutput::Exit(c) => into.status = Some(c),
        }
    }
}

pub fn exec_as(host: &ShellHost, user: &str, line: &str) -> Ran {
    let mut ran = Ran::default();
    collect(ShellSession::run_exec(host, user, line, b"", NOW, 7), &mut ran);
    ran
}

pub fn exec(host: &ShellHost, line: &str) -> Ran {
    exec_as(host, "root", line)
}

/// An interactive session and everything it printed.
pub struct Pty {
    pub session: ShellSession,
    pub ran: Ran,
}

impl Pty {
    pub fn new(host: &ShellHost, user: &str) -> Self {
        let mut session = ShellSession::new(host, user, Mode::Interactive, decnet_shell::Limits::default(), 11);
        let mut ran = Ran::default();
        collect(session.start(NOW), &mut ran);
        Self { session, ran }
    }

    /// Types `text` and returns what it printed.
    pub fn type_(&mut self, text: &str) -> String {
        let before = self.ran.stdout.len();
        collect(self.session.feed(NOW, text.as_bytes()), &mut self.ran);
        self.ran.stdout[before..].to_string()
    }
}
