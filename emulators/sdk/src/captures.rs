//! Where sessions' evidence goes: files an attacker dropped, quarantined by
//! SHA-256 under `<state-dir>/artifacts/`, and terminal sessions recorded as
//! asciinema v2 casts under `<state-dir>/sessions/<day>/<session>.cast`.
//! Both are bounded (per file, and a floor of free disk space below which
//! nothing is written), and a capture that is refused says why, so the event
//! can say it too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Bounds of what is kept.
#[derive(Debug, Clone, Copy)]
pub struct CaptureLimits {
    /// Largest quarantined file.
    pub max_artifact: u64,
    /// Largest recording; the rest of the session is not recorded.
    pub max_recording: u64,
    /// Nothing is written while the disk has less free space than this.
    pub min_free: u64,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        Self {
            max_artifact: 64 << 20,
            max_recording: 10 << 20,
            min_free: 512 << 20,
        }
    }
}

/// The engine's evidence directories (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Captures {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    artifacts: PathBuf,
    sessions: PathBuf,
    limits: CaptureLimits,
}

/// A file in quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Lower-case hex SHA-256 of the contents: also the file's name.
    pub sha256: String,
    pub path: PathBuf,
    pub size: u64,
    /// False when the same contents were already there.
    pub new: bool,
}

impl Captures {
    /// Captures under `state_dir`.
    pub fn new(state_dir: &Path, limits: CaptureLimits) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                artifacts: state_dir.join("artifacts"),
                sessions: state_dir.join("sessions"),
                limits,
            })),
        }
    }

    /// No captures (tests, tools): every capture is refused, with that reason.
    pub fn disabled() -> Self {
        Self::default()
    }

    fn inner(&self) -> Result<&Inner, String> {
        self.inner.as_deref().ok_or_else(|| "captures are disabled".to_string())
    }

    /// Stores `data` read-only under its SHA-256; `Err` says why not.
    pub fn quarantine(&self, data: &[u8]) -> Result<Quarantined, String> {
        let inner = self.inner()?;
        let sha256 = hex(&Sha256::digest(data));
        if data.len() as u64 > inner.limits.max_artifact {
            return Err(format!(
                "{} bytes is over the {}-byte quarantine limit",
                data.len(),
                inner.limits.max_artifact
            ));
        }
        let path = inner.artifacts.join(&sha256);
        if path.exists() {
            return Ok(Quarantined {
                sha256,
                path,
                size: data.len() as u64,
                new: false,
            });
        }
        ensure_room(&inner.artifacts, inner.limits.min_free, data.len() as u64)?;
        let write = || -> io::Result<()> {
            // Written aside, then renamed: a reader never sees half a file.
            let partial = inner.artifacts.join(format!(".{sha256}.{}", Uuid::now_v7()));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)?;
            file.write_all(data)?;
            file.sync_all()?;
            fs::set_permissions(&partial, fs::Permissions::from_mode(0o400))?;
            fs::rename(&partial, &path)
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(Quarantined {
            sha256,
            path,
            size: data.len() as u64,
            new: true,
        })
    }

    /// Starts recording a terminal session (asciinema v2) of `width` ×
    /// `height` that begins `now`; a recording that cannot start says why
    /// when finished.
    pub fn record(&self, session: Uuid, now: SystemTime, width: u16, height: u16, term: Option<&str>) -> Recording {
        let start = || -> Result<Active, String> {
            let inner = self.inner()?;
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let dir = inner.sessions.join(day(secs));
            ensure_room(&inner.sessions, inner.limits.min_free, inner.limits.max_recording)?;
            let path = dir.join(format!("{session}.cast"));
            let open = || -> io::Result<File> {
                fs::create_dir_all(&dir)?;
                OpenOptions::new().write(true).create_new(true).mode(0o640).open(&path)
            };
            let file = open().map_err(|e| format!("creating {}: {e}", path.display()))?;
            let header = serde_json::json!({
                "version": 2,
                "width": width.max(1),
                "height": height.max(1),
                "timestamp": secs,
                "env": { "TERM": term.unwrap_or("xterm"), "SHELL": "/bin/bash" },
            });
            let mut active = Active {
                file: BufWriter::new(file),
                path,
                bytes: 0,
                max: inner.limits.max_recording,
                started: Instant::now(),
                truncated: false,
                failed: None,
            };
            active.line(&header.to_string());
            Ok(active)
        };
        match start() {
            Ok(active) => Recording::Active(Box::new(active)),
            Err(reason) => Recording::Skipped(reason),
        }
    }
}

/// A terminal session being recorded.
#[derive(Debug)]
pub enum Recording {
    Active(Box<Active>),
    Skipped(String),
}

#[derive(Debug)]
pub struct Active {
    file: BufWriter<File>,
    path: PathBuf,
    bytes: u64,
    max: u64,
    started: Instant,
    truncated: bool,
    failed: Option<String>,
}

impl Active {
    fn line(&mut self, line: &str) {
        if self.truncated || self.failed.is_some() {
            return;
        }
        if self.bytes + line.len() as u64 + 1 > self.max {
            self.truncated = true;
            return;
        }
        match self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.write_all(b"\n"))
        {
            Ok(()) => self.bytes += line.len() as u64 + 1,
            Err(e) => self.failed = Some(format!("writing {}: {e}", self.path.display())),
        }
    }

    fn event(&mut self, code: &str, data: &str) {
        let t = self.started.elapsed().as_secs_f64();
        let line = serde_json::json!([(t * 1e6).round() / 1e6, code, data]).to_string();
        self.line(&line);
    }
}

/// How a recording ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordingSummary {
    Recorded {
        path: PathBuf,
        bytes: u64,
        duration_s: f64,
        truncated: bool,
    },
    Skipped {
        reason: String,
    },
}

impl RecordingSummary {
    /// The event that announces it: `session_recorded` (path, bytes,
    /// duration, whether it was cut) or `session_skipped` (why).
    pub fn event(self) -> (crate::Kind, crate::Fields) {
        match self {
            RecordingSummary::Recorded {
                path,
                bytes,
                duration_s,
                truncated,
            } => (
                crate::Kind::SessionRecorded,
                crate::fields! {
                    "path" => path.display().to_string(),
                    "bytes" => bytes,
                    "duration_s" => duration_s,
                    "truncated" => truncated,
                },
            ),
            RecordingSummary::Skipped { reason } => {
                (crate::Kind::SessionSkipped, crate::fields! { "reason" => reason })
            }
        }
    }
}

impl Recording {
    /// What the terminal showed.
    pub fn output(&mut self, data: &[u8]) {
        if let Recording::Active(a) = self {
            a.event("o", &String::from_utf8_lossy(data));
        }
    }

    /// What the user typed.
    pub fn input(&mut self, data: &[u8]) {
        if let Recording::Active(a) = self {
            a.event("i", &String::from_utf8_lossy(data));
        }
    }

    /// The terminal was resized.
    pub fn resize(&mut self, width: u16, height: u16) {
        if let Recording::Active(a) = self {
            a.event("r", &format!("{width}x{height}"));
        }
    }

    pub fn finish(self) -> RecordingSummary {
        match self {
            Recording::Skipped(reason) => RecordingSummary::Skipped { reason },
            Recording::Active(mut a) => {
                if let Err(e) = a.file.flush() {
                    a.failed.get_or_insert(format!("writing {}: {e}", a.path.display()));
                }
                match a.failed {
                    Some(reason) => RecordingSummary::Skipped { reason },
                    None => RecordingSummary::Recorded {
                        path: a.path,
                        bytes: a.bytes,
                        duration_s: (a.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                        truncated: a.truncated,
                    },
                }
            }
        }
    }
}

/// Refuses a write of `need` bytes that would leave less than `min_free`
/// free on the filesystem of `dir` (created if missing).
fn ensure_room(dir: &Path, min_free: u64, need: u64) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("checking free space of {}: {e}", dir.display()))?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    if free < min_free.saturating_add(need) {
        return Err(format!(
            "only {} MiB free on {} (keeping {} MiB free)",
            free >> 20,
            dir.display(),
            min_free >> 20
        ));
    }
    Ok(())
}

/// `YYYY-MM-DD` of a Unix time (UTC).
fn day(secs: u64) -> String {
    let c = crate::clock::civil(secs as i64);
    format!("{:04}-{:02}-{:02}", c.year, c.month, c.day)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_civil_dates() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(951_782_400), "2000-02-29");
        assert_eq!(day(1_795_392_000), "2026-11-23");
    }

    #[test]
    fn quarantine_keeps_one_read_only_copy_per_content() {
        let dir = tempfile::tempdir().unwrap();
        let captures = Captures::new(
            dir.path(),
            CaptureLimits {
                min_free: 0,
                ..Default::default()
            },
        );
        let first = captures.quarantine(b"#!/bin/sh\nwget http://x/y\n").unwrap();
        assert!(first.new);
        assert_eq!(first.sha256, hex(&Sha256::digest(b"#!/bin/sh\nwget http://x/y\n")));
        assert_eq!(fs::read(&first.path).unwrap(), b"#!/bin/sh\nwget http://x/y\n");
        assert_eq!(fs::metadata(&first.path).unwrap().permissions().mode() & 0o777, 0o400);
        let again = captures.quarantine(b"#!/bin/sh\nwget http://x/y\n").unwrap();
        assert!(!again.new);
        assert_eq!(fs::read_dir(dir.path().join("artifacts")).unwrap().count(), 1);
    }

    #[test]
    fn quarantine_refuses_what_is_too_big_or_would_fill_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let small = CaptureLimits {
            max_artifact: 4,
            min_free: 0,
            ..Default::default()
        };
        assert!(
            Captures::new(dir.path(), small)
                .quarantine(b"12345")
                .unwrap_err()
                .contains("limit")
        );
        let full = CaptureLimits {
            min_free: u64::MAX / 2,
            ..Default::default()
        };
        assert!(
            Captures::new(dir.path(), full)
                .quarantine(b"1")
                .unwrap_err()
                .contains("free")
        );
        assert!(Captures::disabled().quarantine(b"1").unwrap_err().contains("disabled"));
    }

    #[test]
    fn recordings_are_asciinema_v2_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CaptureLimits {
            max_recording: 300,
            min_free: 0,
            ..Default::default()
        };
        let captures = Captures::new(dir.path(), limits);
        let mut rec = captures.record(Uuid::now_v7(), UNIX_EPOCH, 100, 30, Some("xterm-256color"));
        rec.output(b"root@web01:~# ");
        rec.input(b"id\r");
        rec.output(&[b'x'; 400]);
        rec.output(b"never kept");
        let RecordingSummary::Recorded {
            path, bytes, truncated, ..
        } = rec.finish()
        else {
            panic!("not recorded");
        };
        assert!(truncated);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len() as u64, bytes);
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 100);
        assert_eq!(lines[0]["env"]["TERM"], "xterm-256color");
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "root@web01:~# ");
        assert_eq!(lines[2][1], "i");
        assert_eq!(lines.len(), 3);
        assert!(path.starts_with(dir.path().join("sessions").join("1970-01-01")));
    }
}
