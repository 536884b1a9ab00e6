//! The local log: `<log-dir>/decnet.log` (RFC 5424, the forensic record) and
//! `<log-dir>/decnet.json` (one JSON object per event, what the store
//! ingests). Each batch goes to decnet.json first, then decnet.log, so every
//! event in decnet.log is also in decnet.json (and so in the database).
//! Files rotate by size (`decnet.log` → `decnet.log.1` …) and are reopened on
//! request, so logrotate's rename-then-SIGHUP works too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::pipeline::{Sink, SinkCounters};
use crate::{Event, json, rfc5424};

/// The JSON-lines event log, in the log directory.
pub const JSON_LOG: &str = "decnet.json";
/// The RFC 5424 event log, in the log directory.
pub const RFC5424_LOG: &str = "decnet.log";

#[derive(Debug, Clone)]
pub struct FileLogConfig {
    pub dir: PathBuf,
    /// Rotate a file when it would grow past this size.
    pub max_bytes: u64,
    /// Rotated files kept (`.1` … `.keep`).
    pub keep: usize,
}

impl FileLogConfig {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            max_bytes: 100 * 1024 * 1024,
            keep: 7,
        }
    }
}

/// The file sink.
pub struct FileLog {
    json: Rotating,
    rfc: Rotating,
    written: Arc<Notify>,
    counters: Arc<SinkCounters>,
    /// A batch as JSON lines, then as RFC 5424 lines (reused across batches).
    buf: Vec<u8>,
    lines: String,
}

impl FileLog {
    pub fn open(config: &FileLogConfig, counters: Arc<SinkCounters>) -> io::Result<Self> {
        fs::create_dir_all(&config.dir)?;
        Ok(Self {
            json: Rotating::open(config.dir.join(JSON_LOG), config)?,
            rfc: Rotating::open(config.dir.join(RFC5424_LOG), config)?,
            written: Arc::new(Notify::new()),
            counters,
            buf: Vec::with_capacity(256 * 1024),
            lines: String::with_capacity(256 * 1024),
        })
    }

    /// Notified after every batch reaches the files (the store's ingester waits on it).
    pub fn written(&self) -> Arc<Notify> {
        Arc::clone(&self.written)
    }

    /// Writes a batch synchronously (the benchmark and the sink use this).
    pub fn write_batch(&mut self, batch: &[Arc<Event>]) -> io::Result<()> {
        self.buf.clear();
        for event in batch {
            json::write(event, &mut self.buf)?;
            self.buf.push(b'\n');
        }
        self.json.write(&self.buf)?;
        self.lines.clear();
        for event in batch {
            rfc5424::format(event, &mut self.lines);
            self.lines.push('\n');
        }
        self.rfc.write(self.lines.as_bytes())
    }
}

impl Sink for FileLog {
    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.write_batch(batch) {
                self.counters.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(message = "Writing the event log failed.", %error, events = batch.len());
                // A file removed or a disk remounted: start again on fresh handles.
                let _ = self.json.reopen();
                let _ = self.rfc.reopen();
            }
            self.written.notify_waiters();
        })
    }

    fn reopen(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for file in [&mut self.json, &mut self.rfc] {
                if let Err(error) = file.reopen() {
                    tracing::error!(message = "Reopening the event log failed.", path = %file.path.display(), %error);
                }
            }
        })
    }
}

/// An RFC 5424 copy of the event log at a path of the operator's choosing
/// (`--log-file`), rotated and reopened like the main log.
pub struct Rfc5424File {
    file: Rotating,
    counters: Arc<SinkCounters>,
    lines: String,
}

impl Rfc5424File {
    pub fn open(path: &Path, counters: Arc<SinkCounters>) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let config = FileLogConfig::new(path.parent().unwrap_or(Path::new(".")));
        Ok(Self {
            file: Rotating::open(path.to_path_buf(), &config)?,
            counters,
            lines: String::with_capacity(256 * 1024),
        })
    }
}

impl Sink for Rfc5424File {
    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Event>]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.lines.clear();
            for event in batch {
                rfc5424::format(event, &mut self.lines);
                self.lines.push('\n');
            }
            if let Err(error) = self.file.write(self.lines.as_bytes()) {
                self.counters.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(message = "Writing the log file failed.", path = %self.file.path.display(), %error);
                let _ = self.file.reopen();
            }
        })
    }

    fn reopen(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(error) = self.file.reopen() {
                tracing::error!(message = "Reopening the log file failed.", path = %self.file.path.display(), %error);
            }
        })
    }
}

/// A file that rotates by size.
struct Rotating {
    path: PathBuf,
    /// Written a whole batch at a time, so no buffer of its own.
    out: File,
    size: u64,
    max: u64,
    keep: usize,
}

impl Rotating {
    fn open(path: PathBuf, config: &FileLogConfig) -> io::Result<Self> {
        let mut file = OpenOptions::new().create(true).append(true).read(true).open(&path)?;
        let mut size = file.metadata()?.len();
        if size > 0 && !ends_with_newline(&mut file, size)? {
            // A crash tore the last line: end it, so the next event starts a
            // line of its own (readers skip the torn one).
            file.write_all(b"\n")?;
            size += 1;
        }
        Ok(Self {
            path,
            out: file,
            size,
            max: config.max_bytes,
            keep: config.keep.max(1),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.max {
            self.rotate()?;
        }
        self.out.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `x.(k-1)` → `x.k` …, `x` → `x.1`, then a fresh `x`.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let from = numbered(n);
            if from.exists() {
                fs::rename(&from, numbered(n + 1))?;
            }
        }
        fs::rename(&self.path, numbered(1))?;
        self.reopen()
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = file.metadata()?.len();
        self.out = file;
        Ok(())
    }
}

fn ends_with_newline(file: &mut File, size: u64) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(size - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::Kind;

    fn event(n: u16) -> Arc<Event> {
        let mut e = Event::new("d", "ssh", Kind::Request, Ipv4Addr::new(10, 0, 0, 2).into(), n);
        e.fields.insert("line".into(), "x\ny".into());
        Arc::new(e)
    }

    #[test]
    fn writes_both_files_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileLogConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: 4000,
            keep: 3,
        };
        let mut log = FileLog::open(&config, Arc::default()).unwrap();
        for n in 0..100 {
            log.write_batch(&[event(n)]).unwrap();
        }
        let mut ports = Vec::new();
        for suffix in [".3", ".2", ".1", ""] {
            let path = dir.path().join(format!("{RFC5424_LOG}{suffix}"));
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.len() <= 4000, "{} is {} bytes", path.display(), text.len());
            for line in text.lines() {
                let e = rfc5424::parse(line).unwrap().to_event().unwrap();
                assert_eq!(e.fields["line"], "x\ny");
                ports.push(e.src_port);
            }
        }
        // Older files were dropped; what is kept is the newest, in order.
        assert!(ports.windows(2).all(|w| w[1] == w[0] + 1), "{ports:?}");
        assert_eq!(*ports.last().unwrap(), 99);
        assert!(!dir.path().join(format!("{RFC5424_LOG}.4")).exists());
        let json = fs::read_to_string(dir.path().join(JSON_LOG)).unwrap();
        let last: Event = serde_json::from_str(json.lines().last().unwrap()).unwrap();
        assert_eq!(last.src_port, 99);
    }

    #[test]
    fn a_torn_last_line_is_ended_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JSON_LOG);
        fs::write(&path, "{\"complete\":1}\n{\"torn\":").unwrap();
        let mut log = FileLog::open(&FileLogConfig::new(dir.path()), Arc::default()).unwrap();
        log.write_batch(&[event(7)]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "{\"torn\":");
        let e: Event = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(e.src_port, 7);
    }

    #[tokio::test]
    async fn the_extra_file_gets_rfc5424_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/extra.log");
        let mut sink = Rfc5424File::open(&path, Arc::default()).unwrap();
        sink.deliver(&[event(1), event(2)]).await;
        let text = fs::read_to_string(&path).unwrap();
        let ports: Vec<u16> = text
            .lines()
            .map(|l| rfc5424::parse(l).unwrap().to_event().unwrap().src_port)
            .collect();
        assert_eq!(ports, [1, 2]);
    }

    #[test]
    fn reopen_follows_an_external_rename() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(&FileLogConfig::new(dir.path()), Arc::default()).unwrap();
        log.write_batch(&[event(1)]).unwrap();
        fs::rename(dir.path().join(RFC5424_LOG), dir.path().join("rotated")).unwrap();
        log.rfc.reopen().unwrap();
        log.write_batch(&[event(2)]).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("rotated")).unwrap().lines().count(),
            1
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(RFC5424_LOG))
                .unwrap()
                .lines()
                .count(),
            1
        );
    }
}
