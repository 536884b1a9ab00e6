//! `Conn`: an accepted TCP connection with the session's limits built in. A
//! read that waits longer than the idle timeout, or that would take the
//! session past its byte budget, fails with a [`LimitError`], so no emulator
//! can forget to bound a peer. The idle timeout counts from the last byte
//! moved either way: a session that has just sent a long answer is not idle.

use std::fmt;
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep};

/// Which bound a session hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitError {
    Idle,
    BytesRead,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitError::Idle => "the peer was idle too long",
            LimitError::BytesRead => "the peer sent more than the session allows",
        })
    }
}

impl std::error::Error for LimitError {}

/// Bytes moved by a session, shared with the engine for the disconnect event.
#[derive(Debug, Default)]
pub struct ConnStats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// An accepted TCP connection, bounded by idle time and bytes read.
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    max_read: u64,
    stats: Arc<ConnStats>,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, local: SocketAddr, idle: Duration, max_read: u64) -> Self {
        Self {
            stream,
            peer,
            local,
            idle,
            idle_timer: Box::pin(sleep(idle)),
            max_read,
            stats: Arc::default(),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn stats(&self) -> Arc<ConnStats> {
        Arc::clone(&self.stats)
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .finish()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                let total = this.stats.bytes_in.fetch_add(n, Ordering::Relaxed) + n;
                if total > this.max_read {
                    return Poll::Ready(Err(io::Error::other(LimitError::BytesRead)));
                }
                let deadline = Instant::now() + this.idle;
                this.idle_timer.as_mut().reset(deadline);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.idle_timer.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, LimitError::Idle)))
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.stream).poll_write(cx, data))?;
        this.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        if n > 0 {
            let deadline = Instant::now() + this.idle;
            this.idle_timer.as_mut().reset(deadline);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests stand in for the engine, which binds.
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::Close;

    async fn pair(idle: Duration, max_read: u64) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let local = server.local_addr().unwrap();
        (Conn::new(server, peer, local, idle, max_read), client)
    }

    #[tokio::test]
    async fn idle_peer_times_out() {
        let (mut conn, _client) = pair(Duration::from_millis(50), 1024).await;
        let mut buf = [0; 8];
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(Close::from_io(&err), Some(Close::Timeout));
    }

    #[tokio::test]
    async fn byte_budget_is_enforced() {
        let (mut conn, mut client) = pair(Duration::from_secs(5), 10).await;
        client.write_all(&[b'a'; 32]).await.unwrap();
        let mut buf = [0; 64];
        let mut total = 0;
        let err = loop {
            match conn.read(&mut buf).await {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert!(total <= 32);
        assert_eq!(Close::from_io(&err), Some(Close::LimitExceeded("bytes read")));
    }

    #[tokio::test]
    async fn writing_resets_the_idle_timer() {
        let idle = Duration::from_millis(200);
        let (mut conn, mut client) = pair(idle, 1024).await;
        // The session talks for longer than the idle timeout, reading nothing …
        for _ in 0..6 {
            conn.write_all(b"x").await.unwrap();
            sleep(Duration::from_millis(60)).await;
        }
        // … then waits for the peer, who answers within the timeout of the
        // last write: the read must not fail as idle.
        let peer = tokio::spawn(async move {
            sleep(Duration::from_millis(80)).await;
            client.write_all(b"y").await.unwrap();
            client
        });
        let mut buf = [0; 1];
        let started = std::time::Instant::now();
        let read = conn.read(&mut buf).await;
        assert!(read.is_ok(), "idle after {:?} of writing: {read:?}", started.elapsed());
        assert_eq!(&buf, b"y");
        drop(peer.await.unwrap());
    }

    #[tokio::test]
    async fn counts_bytes_both_ways() {
        let (mut conn, mut client) = pair(Duration::from_secs(5), 1024).await;
        let stats = conn.stats();
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0; 5];
        conn.read_exact(&mut buf).await.unwrap();
        conn.write_all(b"hi").await.unwrap();
        assert_eq!(stats.bytes_in.load(Ordering::Relaxed), 5);
        assert_eq!(stats.bytes_out.load(Ordering::Relaxed), 2);
    }
}
