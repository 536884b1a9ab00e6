//! `cargo xtask <task>`: project automation that needs no shell scripts.
//!
//! - `ci`: what CI runs after installing tools: format check, clippy, every test.
//! - `test`: every test of the workspace.
//! - `bench deploy [--deckies N]`: deploy N deckies (default 1000) with three TCP
//!   services each on a lab LAN; report time until every port accepts, teardown
//!   time, engine RSS and kernel memory per decky, against the targets.
//! - `bench events`: the event pipeline's throughput (format + file sink,
//!   SQLite ingestion) and emit → stored latency, against the targets.
//! - `bench shaping`: HTTP throughput and latency of a decky shaped by the
//!   personality programs against an unshaped one in the same lab.
//! - `bench ssh`: SSH handshakes per second and memory per idle shell session
//!   of the SSH emulator against Debian's sshd in the same lab.
//! - `build-ebpf`: rebuilds the committed personality eBPF object (nightly).

mod bench;
mod ebpf;
mod shaping_bench;
mod ssh_bench;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("build-ebpf") => ebpf::build(&workspace_root()),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | test [cargo test args] | bench deploy [--deckies N] | bench events | bench shaping [--rounds N] | bench ssh | build-ebpf>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ci() -> anyhow::Result<()> {
    // The eBPF crate is outside the workspace (it builds on nightly); its
    // source is formatted with the rest.
    let ebpf = workspace_root().join("ebpf/personality/src/main.rs");
    cargo(&["fmt", "--all", "--", "--check", ebpf.to_str().context("a UTF-8 path")?])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    emulator_rules_are_enforced()?;
    fuzz_targets_build()?;
    test(&[])
}

/// The fuzz targets live outside the workspace (cargo-fuzz runs them on
/// nightly); checking them here on stable keeps them compiling as the code
/// they drive changes (libFuzzer's C++ part needs a C++ compiler). Not
/// `--locked`: their lock file keeps its pins, and gains whatever a
/// workspace crate's new dependency needs without a separate update.
fn fuzz_targets_build() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = root.join("fuzz/Cargo.toml");
    let target = root.join("target/fuzz-check");
    let manifest = manifest.to_str().context("a UTF-8 path")?;
    cargo(&["fmt", "--manifest-path", manifest, "--", "--check"])?;
    cargo(&[
        "clippy",
        "--manifest-path",
        manifest,
        "--target-dir",
        target.to_str().context("a UTF-8 path")?,
        "--",
        "-D",
        "warnings",
    ])
}

/// clippy must reject the canary's direct `bind`, or emulators/clippy.toml is
/// not being read and the rule that keeps sockets inside deckies is not enforced.
fn emulator_rules_are_enforced() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .args(["clippy", "--quiet", "--manifest-path"])
        .arg(root.join("emulators/clippy-canary/Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("target/clippy-canary"))
        .args(["--", "-D", "warnings"])
        .output()
        .context("running clippy on the canary")?;
    let said = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !said.contains("use of a disallowed method `std::net::UdpSocket::bind`") {
        bail!("clippy did not enforce emulators/clippy.toml on the canary:\n{said}");
    }
    eprintln!("+ emulators/clippy.toml is enforced (the canary's direct bind was rejected)");
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    let mut args = vec!["test", "--workspace", "--locked"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("+ cargo {}", args.join(" "));
    let status = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args[0]))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The repository root (xtask lives one level below it).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
