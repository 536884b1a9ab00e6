//! The ingester: tails the engine's JSON event log (`<log-dir>/decnet.json`,
//! rotated to `decnet.json.1` …) into the store.
//!
//! Exactly once: the position reached — the file's inode and a byte offset
//! at the end of a line — is committed in the same transaction as the rows
//! read up to it, and events are keyed by id. After `kill -9` the next start
//! resumes from the last commit; lines read again insert nothing.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use decnet_events::Event;
use decnet_events::file::JSON_LOG;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{IngestOffset, PreparedEvents, Store, StoreError};

/// The source name the ingester's offset is stored under.
pub const SOURCE: &str = JSON_LOG;
/// Lines per transaction at most. At a steady rate a batch is whatever was
/// logged since the last one (~100 ms of events); a backlog (a restart, a
/// burst) goes in big transactions, which cost SQLite far less per event
/// (each commit rewrites the index pages it touched) — measured 1.3–1.7×
/// the throughput of 1,000-line batches.
pub const BATCH_LINES: usize = 8192;
/// How often the log is looked at when no write wakes the ingester.
const TICK: Duration = Duration::from_millis(100);
/// The longest wait before retrying after a failure.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Longer than any bounded event's line: such a "line" is skipped in pieces
/// rather than buffered without end.
const MAX_LINE: usize = 4 << 20;
const READ_CHUNK: usize = 256 << 10;
/// Bytes of a file's start kept with the offset (see [`IngestOffset::head`]).
const HEAD: usize = 64;
/// Rotated files looked for at most (`decnet.json.1` …).
const MAX_ROTATED: usize = 100;
/// Skipped lines are reported at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The ingester's counters, shared with whoever reports status.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Events newly stored.
    pub ingested: AtomicU64,
    /// Lines that were not events (torn by a crash, corrupted).
    pub skipped_lines: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Bytes of the log not yet ingested, as of the last read.
    pub lag_bytes: AtomicU64,
}

impl IngestCounters {
    /// A snapshot.
    pub fn stats(&self) -> IngestStats {
        IngestStats {
            ingested: self.ingested.load(Ordering::Relaxed),
            skipped_lines: self.skipped_lines.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            lag_bytes: self.lag_bytes.load(Ordering::Relaxed),
        }
    }
}

/// What the ingester has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestStats {
    pub ingested: u64,
    pub skipped_lines: u64,
    pub batches: u64,
    pub lag_bytes: u64,
}

/// Reads the JSON event log into a store.
pub struct Ingester {
    store: Store,
    dir: PathBuf,
    /// Where ingestion got to, once read from the store.
    position: Option<IngestOffset>,
    loaded: bool,
    counters: Arc<IngestCounters>,
    unreported_skips: u64,
    last_warning: Option<Instant>,
}

impl Ingester {
    /// An ingester of `<log_dir>/decnet.json` into `store`; it resumes from
    /// the offset stored there.
    pub fn new(store: Store, log_dir: &Path) -> Self {
        Self {
            store,
            dir: log_dir.to_path_buf(),
            position: None,
            loaded: false,
            counters: Arc::default(),
            unreported_skips: 0,
            last_warning: None,
        }
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<IngestCounters> {
        Arc::clone(&self.counters)
    }

    /// Stores every complete line now in the log files, in batches of at most
    /// [`BATCH_LINES`], and returns how many events were new. A line still
    /// being written is left for the next call.
    pub async fn catch_up(&mut self) -> Result<usize, StoreError> {
        if !self.loaded {
            self.position = self.store.ingest_offset(SOURCE).await?;
            self.loaded = true;
        }
        let (files, first, offset) = self.locate().await?;
        let mut lag = files
            .iter()
            .skip(first)
            .map(|f| f.len)
            .sum::<u64>()
            .saturating_sub(offset);
        self.counters.lag_bytes.store(lag, Ordering::Relaxed);
        let mut inserted = 0;
        for (index, log) in files.into_iter().enumerate().skip(first) {
            let start = if index == first { offset } else { 0 };
            let mut reading = Some(read_ahead(LineReader::new(log.file, start), self.store.clone()));
            while let Some(pending) = reading.take() {
                let io_error = |source| StoreError::Io {
                    op: "reading",
                    path: log.path.clone(),
                    source,
                };
                let (reader, read) = pending.await.map_err(|e| io_error(io::Error::other(e)))?;
                let (batch, prepared) = read.map_err(io_error)?;
                if batch.lines == 0 {
                    break;
                }
                if !batch.at_end {
                    // Reading and parsing the next batch overlaps storing this one.
                    reading = Some(read_ahead(reader, self.store.clone()));
                }
                let position = IngestOffset {
                    source: SOURCE.to_string(),
                    inode: log.inode,
                    offset: batch.end,
                    head: batch.head.clone(),
                };
                let n = self.store.ingest_prepared(prepared, Some(&position)).await?;
                self.position = Some(position);
                inserted += n;
                lag = lag.saturating_sub(batch.bytes);
                self.counters.ingested.fetch_add(n as u64, Ordering::Relaxed);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.skipped_lines.fetch_add(batch.skipped, Ordering::Relaxed);
                self.counters.lag_bytes.store(lag, Ordering::Relaxed);
                self.report_skips(&log.path, &batch);
            }
        }
        Ok(inserted)
    }

    /// Catches up whenever `wake` is notified (the file sink does after each
    /// batch) and every 100 ms, until `shutdown`; then catches up once more.
    pub async fn run(mut self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let mut retry = TICK;
        loop {
            // Registered before catching up, so a write during it still wakes us.
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let wait = match self.catch_up().await {
                Ok(_) => {
                    retry = TICK;
                    TICK
                }
                Err(error) => {
                    retry = (retry * 2).min(MAX_RETRY);
                    warn!(message = "Ingesting the event log failed; will retry.", %error, retry = ?retry);
                    retry
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = &mut woken, if wait == TICK => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Err(error) = self.catch_up().await {
            warn!(message = "The last ingest before shutdown failed; the next start resumes it.", %error);
        }
    }

    /// The log files, oldest first, with the index and offset to resume at.
    async fn locate(&mut self) -> Result<(Vec<LogFile>, usize, u64), StoreError> {
        let mut attempts = 0;
        loop {
            let files = open_logs(&self.dir)?;
            let Some(position) = &self.position else {
                return Ok((files, 0, 0));
            };
            if let Some(index) = files.iter().position(|f| f.holds(position)) {
                return Ok((files, index, position.offset));
            }
            if files.is_empty() {
                return Ok((files, 0, 0));
            }
            attempts += 1;
            if attempts == 3 {
                warn!(
                    message = "The log file being ingested was rotated away before it was finished; events logged in it may be missing from the store.",
                    files = files.len(),
                    resuming_at = %files[0].path.display(),
                );
                // Said once: from here on, read as if from scratch.
                self.position = None;
                return Ok((files, 0, 0));
            }
            // A rotation renames the files one by one: look again once it is done.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn report_skips(&mut self, path: &Path, batch: &Batch) {
        let Some((offset, error)) = &batch.first_error else {
            return;
        };
        self.unreported_skips += batch.skipped;
        if self.last_warning.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        warn!(
            message = "Skipped log lines that are not events.",
            lines = self.unreported_skips,
            file = %path.display(),
            offset,
            %error,
        );
        self.unreported_skips = 0;
        self.last_warning = Some(Instant::now());
    }
}

/// What [`read_ahead`] hands back: the reader, and the next batch read and
/// encoded for the store.
type ReadAhead = (LineReader, io::Result<(Batch, PreparedEvents)>);

/// Reads the next batch and encodes it for the store, on a blocking thread.
fn read_ahead(mut reader: LineReader, store: Store) -> JoinHandle<ReadAhead> {
    tokio::task::spawn_blocking(move || {
        let batch = reader.read_batch().map(|mut batch| {
            let prepared = store.prepare(std::mem::take(&mut batch.events));
            (batch, prepared)
        });
        (reader, batch)
    })
}

/// One of the log files, opened.
struct LogFile {
    path: PathBuf,
    file: File,
    inode: u64,
    len: u64,
}

impl LogFile {
    /// Whether this is the file `position` points into.
    fn holds(&self, position: &IngestOffset) -> bool {
        let mut head = vec![0; position.head.len()];
        self.inode == position.inode
            && self.len >= position.offset
            && self.file.read_exact_at(&mut head, 0).is_ok()
            && head == position.head
    }
}

/// Opens `decnet.json` and its rotated predecessors, oldest first. Newest is
/// opened first: a rotation meanwhile can then only show a file twice (under
/// its old and new name), never hide one.
fn open_logs(dir: &Path) -> Result<Vec<LogFile>, StoreError> {
    let mut files: Vec<LogFile> = Vec::new();
    for n in 0..=MAX_ROTATED {
        let path = match n {
            0 => dir.join(JSON_LOG),
            n => dir.join(format!("{JSON_LOG}.{n}")),
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            // Between the rename of decnet.json and its re-creation.
            Err(e) if e.kind() == io::ErrorKind::NotFound && n == 0 => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(source) => {
                return Err(StoreError::Io {
                    op: "opening",
                    path,
                    source,
                });
            }
        };
        let meta = file.metadata().map_err(|source| StoreError::Io {
            op: "inspecting",
            path: path.clone(),
            source,
        })?;
        if files.iter().all(|f| f.inode != meta.ino()) {
            files.push(LogFile {
                path,
                file,
                inode: meta.ino(),
                len: meta.len(),
            });
        }
    }
    files.reverse();
    Ok(files)
}

/// Lines read from a file, and where reading got to.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<Event>,
    /// Lines consumed, events or not.
    lines: usize,
    skipped: u64,
    /// Where the first skipped line starts, and why it is not an event.
    first_error: Option<(u64, String)>,
    /// The offset after the last line consumed.
    end: u64,
    /// Bytes consumed.
    bytes: u64,
    /// The file's first bytes, up to `end`.
    head: Vec<u8>,
    /// No complete line is left in the file.
    at_end: bool,
}

impl Batch {
    fn take(&mut self, line: &[u8], at: u64) {
        self.lines += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(event) => self.events.push(event),
            Err(error) => self.skip(at, error.to_string()),
        }
    }

    fn skip(&mut self, at: u64, error: String) {
        self.skipped += 1;
        self.first_error.get_or_insert((at, error));
    }
}

/// Complete lines from a file, from an offset on.
struct LineReader {
    file: File,
    /// The file offset of `buf[0]`: everything before it is consumed.
    offset: u64,
    /// Bytes read but not consumed: a partial line, or lines past a full batch.
    buf: Vec<u8>,
}

impl LineReader {
    fn new(file: File, offset: u64) -> Self {
        Self {
            file,
            offset,
            buf: Vec::new(),
        }
    }

    /// Up to [`BATCH_LINES`] complete lines (blocking I/O).
    fn read_batch(&mut self) -> io::Result<Batch> {
        let mut batch = Batch::default();
        let first = self.offset;
        let mut start = 0; // the first unconsumed byte of buf
        let mut searched = 0; // buf[start..searched] holds no newline
        loop {
            while batch.lines < BATCH_LINES {
                let Some(i) = self.buf[searched..].iter().position(|b| *b == b'\n') else {
                    break;
                };
                batch.take(&self.buf[start..searched + i], self.offset + start as u64);
                start = searched + i + 1;
                searched = start;
            }
            if batch.lines == BATCH_LINES {
                break;
            }
            if self.buf.len() - start > MAX_LINE {
                batch.lines += 1;
                batch.skip(
                    self.offset + start as u64,
                    format!("a line longer than {MAX_LINE} bytes"),
                );
                start = self.buf.len();
            }
            self.buf.drain(..start);
            self.offset += start as u64;
            // What is left has no newline: only new bytes need searching.
            searched = self.buf.len();
            start = 0;
            let filled = self.buf.len();
            self.buf.resize(filled + READ_CHUNK, 0);
            let read = loop {
                match self.file.read_at(&mut self.buf[filled..], self.offset + filled as u64) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            // On error the caller drops this reader and resumes from the stored offset.
            let read = read?;
            self.buf.truncate(filled + read);
            if read == 0 {
                batch.at_end = true;
                break;
            }
        }
        self.buf.drain(..start);
        self.offset += start as u64;
        batch.end = self.offset;
        batch.bytes = self.offset - first;
        batch.head = vec![0; HEAD.min(usize::try_from(self.offset).unwrap_or(HEAD))];
        self.file.read_exact_at(&mut batch.head, 0)?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn reader(content: &[u8]) -> (tempfile::NamedTempFile, LineReader) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        let file = File::open(f.path()).unwrap();
        (f, LineReader::new(file, 0))
    }

    #[test]
    fn consumes_complete_lines_only() {
        let (mut f, mut r) = reader(b"not json\n\n{\"torn\":");
        let batch = r.read_batch().unwrap();
        assert_eq!((batch.lines, batch.skipped, batch.end, batch.at_end), (2, 1, 10, true));
        assert_eq!(batch.first_error.unwrap().0, 0);
        assert_eq!(batch.head, b"not json\n\n");
        f.write_all(b"}\n").unwrap();
        let batch = r.read_batch().unwrap();
        assert_eq!((batch.lines, batch.skipped, batch.end), (1, 1, 20));
    }

    #[test]
    fn stops_at_a_full_batch_and_resumes() {
        let content = "x\n".repeat(BATCH_LINES + 5);
        let (_f, mut r) = reader(content.as_bytes());
        let batch = r.read_batch().unwrap();
        assert_eq!(
            (batch.lines, batch.end, batch.at_end),
            (BATCH_LINES, 2 * BATCH_LINES as u64, false)
        );
        let batch = r.read_batch().unwrap();
        assert_eq!((batch.lines, batch.at_end), (5, true));
        assert_eq!(batch.head.len(), HEAD);
    }

    #[test]
    fn an_endless_line_is_skipped_in_pieces() {
        let mut content = vec![b'a'; MAX_LINE + READ_CHUNK + 10];
        content.extend_from_slice(b"\nb\n");
        let (_f, mut r) = reader(&content);
        let batch = r.read_batch().unwrap();
        assert!(batch.skipped >= 2, "{batch:?}");
        assert_eq!(batch.end, content.len() as u64);
    }
}
