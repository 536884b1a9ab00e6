//! Debian's real `sshd` as a peer for side-by-side tests: started by hand
//! inside one decky's namespace of a test's own lab, so it answers on the
//! lab LAN like a decky does and listens nowhere else.
//!
//! The binary is never installed (the openssh-server package would start a
//! system sshd on the machine's real interfaces): `.ci/run` unpacks the
//! package with `dpkg-deb -x` under [`DEFAULT_SSHD`]'s tree, installs its
//! libraries, and makes the privilege-separation user `sshd`.
//! `DECNET_PEER_SSHD` names another binary. Without one the tests skip,
//! except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Lab;

/// Where `.ci/run` unpacks Debian's openssh-server.
pub(crate) const DEFAULT_SSHD: &str = "/var/cache/decnet-ci/peers/openssh-server/usr/sbin/sshd";

/// The peer sshd binary, or `None` (skip) when there is none outside CI.
pub(crate) fn sshd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("DECNET_PEER_SSHD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SSHD));
    let usable = path.is_file() && nix::unistd::User::from_name("sshd").ok().flatten().is_some();
    if !usable {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide Debian's sshd at {} and the user `sshd` (.ci/run unpacks openssh-server)",
            path.display()
        );
        eprintln!(
            "skipped: no peer sshd at {} (or no user `sshd`); .ci/run sets it up",
            path.display()
        );
        return None;
    }
    Some(path)
}

/// The moduli file the package ships (`/etc/ssh/moduli` when installed),
/// beside the unpacked binary (`<root>/usr/sbin/sshd`).
pub(crate) fn moduli_file(binary: &Path) -> PathBuf {
    let root = binary.ancestors().nth(3).expect("<root>/usr/sbin/sshd");
    let path = root.join("etc/ssh/moduli");
    assert!(
        path.is_file(),
        "the openssh-server package's moduli at {}",
        path.display()
    );
    path
}

/// The software version the binary announces after `SSH-2.0-`, e.g.
/// `OpenSSH_9.2p1 Debian-2+deb12u10`: Debian's release string is compiled
/// in as `OpenSSH_<version> <distro-version>`.
pub(crate) fn software_version(binary: &Path) -> String {
    let bytes = std::fs::read(binary).unwrap();
    bytes
        .split(|&b| b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .find(|s| s.starts_with("OpenSSH_") && s.contains(' ') && s.len() < 80)
        .unwrap_or_else(|| panic!("no `OpenSSH_… Debian-…` string in {}", binary.display()))
        .to_string()
}

/// A running peer sshd; killed (by its own process id) on drop.
pub(crate) struct PeerSshd {
    child: Child,
    dir: tempfile::TempDir,
    /// Where it listens: `ip:22`.
    pub(crate) addr: String,
    /// Seed of the Ed25519 key that `root` may log in with.
    pub(crate) client_seed: [u8; 32],
}

impl PeerSshd {
    /// Runs `binary` in the namespace of `decky` (its address `ip`), with
    /// freshly made host keys (RSA, ECDSA, Ed25519 in sshd's default order)
    /// and Debian's stock settings where they matter to a client. Returns
    /// once it listens.
    pub(crate) fn start(lab: &Lab, binary: &Path, decky: &str, ip: &str) -> PeerSshd {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for kind in ["rsa", "ecdsa", "ed25519"] {
            let key = path(&format!("ssh_host_{kind}_key"));
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
                .arg(&key)
                .output()
                .unwrap();
            assert!(out.status.success(), "ssh-keygen -t {kind}: {out:?}");
        }
        let client_seed: [u8; 32] = super::ssh_probe::random_bytes();
        let public = ed25519_dalek::SigningKey::from_bytes(&client_seed).verifying_key();
        std::fs::write(
            path("authorized_keys"),
            format!(
                "ssh-ed25519 {}\n",
                super::ssh_probe::base64(&super::ssh_probe::ed25519_blob(public.as_bytes()))
            ),
        )
        .unwrap();
        // Debian's /etc/ssh/sshd_config, minus what needs the package
        // installed: PAM (no /etc/pam.d/sshd; keyboard-interactive is off in
        // Debian's file anyway, so clients see the same methods) and the
        // sftp subsystem. The host keys, the authorized keys and the pid
        // file are the test's own; StrictModes would refuse a temporary
        // directory's permissions.
        let config = format!(
            "ListenAddress {ip}\n\
             HostKey {dir}/ssh_host_rsa_key\n\
             HostKey {dir}/ssh_host_ecdsa_key\n\
             HostKey {dir}/ssh_host_ed25519_key\n\
             PidFile none\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             StrictModes no\n\
             ModuliFile {moduli}\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             X11Forwarding yes\n\
             PrintMotd no\n\
             AcceptEnv LANG LC_*\n",
            dir = dir.path().display(),
            moduli = moduli_file(binary).display()
        );
        std::fs::write(path("sshd_config"), config).unwrap();
        // Its privilege-separation directory (the package's tmpfiles.d makes it).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(path("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-{decky}", lab.prefix)])
            .arg(binary)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let peer = PeerSshd {
            child,
            dir,
            addr: format!("{ip}:22"),
            client_seed,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !peer.log().contains("Server listening on") {
            assert!(
                Instant::now() < deadline,
                "the peer sshd did not start:\n{}",
                peer.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        peer
    }

    /// What it logged (`-e`: to stderr, captured in its directory).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for PeerSshd {
    fn drop(&mut self) {
        // `ip netns exec` execs sshd: the child is sshd itself. Its
        // per-connection children end with their connections (or with the
        // lab's namespace).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
