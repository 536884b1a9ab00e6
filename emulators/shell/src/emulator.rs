//! What the login emulators (SSH, Telnet) share around the shell: the
//! decky's shell world built from what the engine tells them, and the events
//! a session's shell output becomes.

use decnet_emu_sdk::{Accounts, Credential, DeckyInfo, Kind, Outcome, Port, ServeError, SessionCx, Transport, fields};

use crate::{Account, HostFacts, OverlayScope, ShellEvent, ShellHost, distro_of};

/// What a login emulator knows of the shell world it serves.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The host name the shell shows.
    pub hostname: &'a str,
    /// Who may log in.
    pub accounts: &'a Accounts,
    /// The program `netstat`/`ss` show on the service's ports (`sshd`).
    pub program: &'a str,
    pub ports: &'a [Port],
    /// Whether writes last for one login or for the decky.
    pub overlay: OverlayScope,
}

/// The shell world of `decky` as `login` describes it. Its boot time and
/// file dates are anchored to now: a service is prepared before any session
/// (and its clock) exists.
pub fn host_for(decky: &DeckyInfo, login: Login<'_>) -> Result<ShellHost, ServeError> {
    let Login {
        hostname,
        accounts,
        program,
        ports,
        overlay,
    } = login;
    let facts = HostFacts {
        hostname: hostname.to_string(),
        ip: decky.ip,
        prefix_len: decky.prefix_len,
        gateway: decky.gateway,
        mac: decky.mac,
        distro: distro_of(&decky.distro, &decky.userland),
        kernel_release: None,
        accounts: accounts
            .names()
            .into_iter()
            .map(|name| Account {
                name: name.to_string(),
                password: accounts.password_of(name).unwrap_or_default().to_string(),
            })
            .collect(),
        seed: decky.seed,
        listening: ports
            .iter()
            .map(|p| (p.number, p.transport == Transport::Udp, program.to_string()))
            .collect(),
        overlay,
        overlay_limits: Default::default(),
        now: prepared_at(),
    };
    ShellHost::new(facts).map_err(|e| ServeError::Persona(e.0))
}

/// Logs what the shell of `login`'s session reported: command lines,
/// download attempts, dropped files (quarantined here) and passwords typed
/// at `sudo`/`su`/`passwd`.
pub fn log_event(cx: &SessionCx, event: ShellEvent, login: &str) {
    match event {
        ShellEvent::Command { line, cwd, user } => cx.emit(
            Kind::Command,
            fields! { "command" => line, "cwd" => cwd, "user" => user, "login" => login },
        ),
        ShellEvent::Download { tool, url } => cx.emit(
            Kind::DownloadAttempt,
            fields! { "tool" => tool, "url" => url, "user" => login },
        ),
        ShellEvent::FileCaptured {
            path,
            sha256,
            data,
            via,
        } => {
            let stored = cx.captures().quarantine(&data);
            cx.emit(
                Kind::FileCaptured,
                fields! {
                    "path" => path,
                    "sha256" => sha256,
                    "size" => data.len(),
                    "via" => via,
                    "user" => login,
                    "quarantine" => stored.as_ref().ok().map(|q| q.path.display().to_string()),
                    "not_stored" => stored.err(),
                },
            );
        }
        ShellEvent::Password {
            tool,
            user,
            password,
            accepted,
        } => {
            let mut credential = Credential::plaintext(Some(&user), password.as_bytes());
            credential.outcome = Some(if accepted { Outcome::Success } else { Outcome::Failure });
            cx.emit_credential(
                Kind::AuthAttempt,
                fields! { "username" => user, "method" => tool, "login" => login },
                credential,
            );
        }
    }
}

#[allow(clippy::disallowed_methods)] // See `host_for`.
fn prepared_at() -> i64 {
    decnet_emu_sdk::clock::unix_secs(std::time::SystemTime::now())
}
