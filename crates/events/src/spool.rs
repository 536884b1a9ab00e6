//! A bounded FIFO of log lines on disk, for a sink whose destination is down.
//! Lines are appended to `<name>.spool`; the read position is kept in
//! `<name>.spool.pos`, so a restart replays what was not yet sent (at least
//! once: receivers deduplicate on the event id). When fully drained the file
//! is emptied.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct Spool {
    path: PathBuf,
    pos_path: PathBuf,
    file: File,
    read_pos: u64,
    len: u64,
    limit: u64,
    pending: u64,
}

impl Spool {
    /// Opens (or creates) the spool `name` in `dir`, holding at most `limit` bytes.
    pub fn open(dir: &Path, name: &str, limit: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.spool"));
        let pos_path = dir.join(format!("{name}.spool.pos"));
        let file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        let read_pos = fs::read_to_string(&pos_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|p| *p <= len)
            .unwrap_or(0);
        let mut spool = Self {
            path,
            pos_path,
            file,
            read_pos,
            len,
            limit,
            pending: 0,
        };
        spool.pending = spool.count_pending()?;
        Ok(spool)
    }

    pub fn is_empty(&self) -> bool {
        self.read_pos >= self.len
    }

    /// Lines waiting to be sent.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends a line; `false` (and nothing written) when the spool is full.
    pub fn push(&mut self, line: &[u8]) -> io::Result<bool> {
        let size = line.len() as u64 + 1;
        if self.len - self.read_pos + size > self.limit {
            return Ok(false);
        }
        let mut record = Vec::with_capacity(line.len() + 1);
        record.extend_from_slice(line);
        record.push(b'\n');
        self.file.write_all(&record)?;
        self.len += size;
        self.pending += 1;
        Ok(true)
    }

    /// Up to `max` of the oldest lines, without removing them.
    pub fn peek(&mut self, max: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut reader = File::open(&self.path)?;
        reader.seek(SeekFrom::Start(self.read_pos))?;
        let mut reader = BufReader::new(reader.take(self.len - self.read_pos));
        let mut lines = Vec::new();
        while lines.len() < max {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
                break;
            }
            line.pop();
            lines.push(line);
        }
        Ok(lines)
    }

    /// Forgets the first `lines` lines (sent), `bytes` long with their line ends.
    pub fn advance(&mut self, lines: u64, bytes: u64) -> io::Result<()> {
        self.read_pos = (self.read_pos + bytes).min(self.len);
        self.pending = self.pending.saturating_sub(lines);
        if self.is_empty() {
            self.file.set_len(0)?;
            self.len = 0;
            self.read_pos = 0;
            self.pending = 0;
        }
        fs::write(&self.pos_path, self.read_pos.to_string())
    }

    fn count_pending(&mut self) -> io::Result<u64> {
        let mut reader = File::open(&self.path)?;
        reader.seek(SeekFrom::Start(self.read_pos))?;
        Ok(BufReader::new(reader).split(b'\n').count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded_and_persistent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), "t", 30).unwrap();
        assert!(s.is_empty());
        for line in ["one", "two", "three"] {
            assert!(s.push(line.as_bytes()).unwrap());
        }
        assert!(!s.push(b"way too long for what is left").unwrap());
        assert_eq!(s.pending(), 3);
        let first = s.peek(2).unwrap();
        assert_eq!(first, vec![b"one".to_vec(), b"two".to_vec()]);
        s.advance(2, 8).unwrap();
        drop(s);
        // A restart continues where sending stopped.
        let mut s = Spool::open(dir.path(), "t", 30).unwrap();
        assert_eq!(s.pending(), 1);
        assert_eq!(s.peek(10).unwrap(), vec![b"three".to_vec()]);
        s.advance(1, 6).unwrap();
        assert!(s.is_empty());
        assert_eq!(fs::metadata(dir.path().join("t.spool")).unwrap().len(), 0);
    }
}
