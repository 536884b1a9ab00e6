//! Any bytes as an exec command line and as typed keystrokes: parsing and
//! running never panic and always end (the step budget bounds every loop).
#![no_main]

use std::net::Ipv4Addr;

use decnet_core::Catalogue;
use decnet_core::seed::FleetSeed;
use decnet_shell::fs::OverlayLimits;
use decnet_shell::{Account, HostFacts, Limits, Mode, OverlayScope, ShellHost, ShellOutput, ShellSession};
use libfuzzer_sys::fuzz_target;

static HOST: std::sync::LazyLock<ShellHost> = std::sync::LazyLock::new(|| {
    let catalogue = Catalogue::embedded().expect("the embedded catalogue loads");
    ShellHost::new(HostFacts {
        hostname: "fuzz".into(),
        ip: Ipv4Addr::new(10, 0, 0, 5),
        prefix_len: 24,
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        mac: [2, 0, 0, 0, 0, 5],
        distro: catalogue.distros()[0].clone(),
        kernel_release: None,
        accounts: vec![Account {
            name: "admin".into(),
            password: "admin".into(),
        }],
        seed: FleetSeed::from_passphrase("fuzz").decky("fuzz"),
        listening: Vec::new(),
        overlay: OverlayScope::Session,
        overlay_limits: OverlayLimits::default(),
        now: 1_800_000_000,
    })
    .expect("the shell host builds")
});

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let out = ShellSession::run_exec(&HOST, "admin", &line, data, 1_800_000_000, 1);
    assert!(out.iter().any(|o| matches!(o, ShellOutput::Exit(_))));
    let mut session = ShellSession::new(&HOST, "root", Mode::Interactive, Limits::default(), 1);
    session.start(1_800_000_000);
    session.feed(1_800_000_000, data);
    session.feed(1_800_000_000, b"\r");
});
