//! Bounded line framing for the socket protocol (the tokio-util `LinesCodec`
//! idea, with a maximum): a peer cannot make us buffer more than one line's
//! limit, and after an over-long line we skip to the next newline instead of
//! dropping the connection.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// What the next line is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A line without its `\n` (or `\r\n`).
    Text(&'a [u8]),
    /// A line longer than the limit; its bytes are being skipped.
    TooLong,
}

pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// `buf[start..scanned]` has no newline: don't search it again.
    scanned: usize,
    max: usize,
    /// Skipping the rest of an over-long line.
    discarding: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(8 * 1024),
            start: 0,
            scanned: 0,
            max,
            discarding: false,
        }
    }

    /// The next line, or `None` at the end of the stream. Cancel safe: the
    /// state lives in `self`, and the only await is a `read_buf`, which reads
    /// nothing if cancelled.
    pub(crate) async fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let begin = self.start;
                let end = self.scanned + pos;
                self.start = end + 1;
                self.scanned = self.start;
                if std::mem::take(&mut self.discarding) {
                    continue; // the tail of a line already reported as too long
                }
                if end - begin > self.max {
                    return Ok(Some(Line::TooLong));
                }
                return Ok(Some(Line::Text(trim_cr(&self.buf[begin..end]))));
            }
            self.scanned = self.buf.len();
            if self.buf.len() - self.start > self.max {
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
                if !std::mem::replace(&mut self.discarding, true) {
                    return Ok(Some(Line::TooLong));
                }
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            self.buf.reserve(8 * 1024);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                // The end: a last line without a newline still counts.
                let len = self.buf.len();
                self.start = len;
                self.scanned = len;
                if len == 0 || std::mem::take(&mut self.discarding) {
                    return Ok(None);
                }
                return Ok(Some(Line::Text(trim_cr(&self.buf[..len]))));
            }
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Option<String>> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(match line {
                Line::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                Line::TooLong => None,
            });
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_recovers_after_an_over_long_one() {
        let s = |t: &str| Some(t.to_string());
        assert_eq!(lines(b"a\nbb\r\n\nccc", 8).await, [s("a"), s("bb"), s(""), s("ccc")]);
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend(b"\nafter\n");
        input.extend(std::iter::repeat_n(b'y', 100_000));
        assert_eq!(lines(&input, 16).await, [s("ok"), None, s("after"), None]);
        assert_eq!(lines(b"0123456789abcdefg\nz\n", 16).await, [None, s("z")]);
        assert_eq!(lines(b"0123456789abcdef\n", 16).await, [s("0123456789abcdef")]);
    }
}
