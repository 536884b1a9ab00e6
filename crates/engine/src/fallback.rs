//! What a port does while its service has no protocol emulator yet: accept,
//! read what the peer says (briefly), log it, close. Never silent forever, so
//! scanners move on quickly.

use std::sync::Arc;
use std::time::Duration;

use decnet_emu_sdk::{BoxFuture, Close, Conn, Kind, ServeError, Service, SessionCx, UdpFlow, fields};
use tokio::io::AsyncReadExt;

/// How long a fallback port waits for the peer to speak first.
const LISTEN_FOR: Duration = Duration::from_secs(5);
/// Once it has spoken, how long a pause ends its turn (a scanner's probe is
/// one burst; waiting longer only slows every scan down).
const PAUSE: Duration = Duration::from_millis(500);
/// How much of what the peer says is kept in the event.
const KEEP: usize = 256;

pub(crate) struct Fallback;

impl Service for Fallback {
    fn serve_tcp(self: Arc<Self>, mut conn: Conn, cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        Box::pin(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            let close = loop {
                let wait = if seen.is_empty() { LISTEN_FOR } else { PAUSE };
                match tokio::time::timeout(wait, conn.read(&mut buf)).await {
                    Err(_) if seen.is_empty() => break Close::Timeout,
                    Err(_) => break Close::Done,
                    Ok(Ok(0)) => break Close::PeerEof,
                    Ok(Ok(n)) => {
                        let room = KEEP.saturating_sub(seen.len());
                        seen.extend_from_slice(&buf[..n.min(room)]);
                        if seen.len() >= KEEP {
                            break Close::Done;
                        }
                    }
                    Ok(Err(e)) => break Close::from_io(&e).ok_or(ServeError::Io(e))?,
                }
            };
            if !seen.is_empty() {
                cx.emit(Kind::Request, fields! { "data" => hex(&seen), "bytes" => seen.len() });
            }
            Ok(close)
        })
    }

    fn serve_udp(self: Arc<Self>, mut flow: UdpFlow, cx: SessionCx) -> BoxFuture<'static, Result<Close, ServeError>> {
        Box::pin(async move {
            while let Some(datagram) = flow.recv().await {
                let keep = &datagram[..datagram.len().min(KEEP)];
                cx.emit(
                    Kind::Request,
                    fields! { "data" => hex(keep), "bytes" => datagram.len() },
                );
            }
            Ok(Close::Timeout)
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
