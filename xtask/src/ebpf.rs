//! `cargo xtask build-ebpf`: builds `ebpf/personality` with nightly and
//! bpf-linker, and copies the object where `crates/fingerprint` embeds it
//! (the object is committed, so normal builds and CI need stable only).
//!
//! bpf-linker 0.13 needs LLVM 21–23, newer than Debian's; it is built once,
//! into `target/bpf-linker`, against the LLVM 22 that rustup's nightly ships.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};

const OBJECT: &str = "crates/fingerprint/bpf/decnet-personality.o";

pub(crate) fn build(root: &Path) -> anyhow::Result<()> {
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    let linker_bin = ensure_bpf_linker(root)?;
    let crate_dir = root.join("ebpf/personality");
    let path = format!("{}:{}", linker_bin.display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new("cargo")
        .current_dir(&crate_dir)
        .env("PATH", path)
        .env_remove("RUSTUP_TOOLCHAIN")
        .args([
            "+nightly",
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ]))?;
    let built = crate_dir.join("target/bpfel-unknown-none/release/decnet-personality");
    std::fs::copy(&built, root.join(OBJECT)).with_context(|| format!("copying {}", built.display()))?;
    println!("{OBJECT} updated; commit it.");
    Ok(())
}

/// `bpf-linker` from PATH, or one built into `target/bpf-linker`.
fn ensure_bpf_linker(root: &Path) -> anyhow::Result<PathBuf> {
    let prefix = root.join("target/bpf-linker");
    let bin = prefix.join("bin");
    if bin.join("bpf-linker").exists() {
        return Ok(bin);
    }
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(bin);
    }
    let sysroot = String::from_utf8(
        Command::new("rustc")
            .args(["+nightly", "--print", "sysroot"])
            .output()
            .context("rustc +nightly")?
            .stdout,
    )?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let llvm = std::fs::read_dir(&lib)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.22"))
        .context("nightly ships no libLLVM.so.22 (bpf-linker 0.13 needs LLVM 21-23)")?;
    // A copy, so that a nightly update does not pull the library away.
    let llvm_dir = prefix.join("llvm/lib");
    std::fs::create_dir_all(&llvm_dir)?;
    std::fs::copy(lib.join(&llvm), llvm_dir.join(&llvm))?;
    let link = llvm_dir.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link)?;
    run(Command::new("cargo")
        .env("LLVM_PREFIX", prefix.join("llvm"))
        .args([
            "install",
            "bpf-linker",
            "--version",
            "0.13.0",
            "--no-default-features",
            "--features",
            "llvm-22",
            "--root",
        ])
        .arg(&prefix))?;
    ensure!(bin.join("bpf-linker").exists(), "bpf-linker was not installed");
    Ok(bin)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
