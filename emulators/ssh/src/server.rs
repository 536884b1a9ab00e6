//! A thin tokio driver: pumps bytes between any AsyncRead + AsyncWrite
//! stream and a [`Connection`], honouring its auth-failure delays and
//! LoginGraceTime. Like sshd, it reads the client's identification one byte
//! at a time and makes the writes the connection asks for one by one, so
//! what a client sees on the wire (including a reset when the connection
//! ends with its bytes unread) is what sshd's would show.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use crate::handler::{Action, Handler};
use crate::transport::{Connection, ServerConfig};

/// Serves one accepted connection until it ends; returns the handler.
/// `actions` lets other tasks (a shell) write to channels.
pub async fn serve<S, H>(
    mut stream: S,
    config: Arc<ServerConfig>,
    handler: H,
    mut actions: Option<mpsc::Receiver<Action>>,
) -> std::io::Result<H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let grace = Instant::now() + config.login_grace;
    if config
        .profile
        .host_key
        .iter()
        .any(|k| k.starts_with("rsa-") || k == "ssh-rsa")
    {
        // RSA generation takes seconds; keep it off the async workers.
        let keys = config.host_keys.clone();
        tokio::task::spawn_blocking(move || keys.warm_rsa())
            .await
            .map_err(std::io::Error::other)?;
    }
    if !config.ident_delay.is_zero() {
        let mut jitter = [0u8; 1];
        rand_core06::RngCore::fill_bytes(&mut rand_core06::OsRng, &mut jitter);
        // 75% to 125% of the configured delay.
        let factor = 0.75 + f64::from(jitter[0]) / 510.0;
        sleep(config.ident_delay.mul_f64(factor)).await;
    }
    let mut conn = Connection::new(config, handler);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(d) = conn.take_delay() {
            sleep(d).await;
        }
        for out in conn.take_writes() {
            stream.write_all(&out).await?;
        }
        if conn.is_closed() {
            break;
        }
        let want = if conn.awaiting_ident() { 1 } else { buf.len() };
        tokio::select! {
            n = stream.read(&mut buf[..want]) => {
                match n {
                    Ok(0) => conn.close("connection closed by peer"),
                    Ok(n) => conn.feed(&buf[..n]),
                    Err(e) => {
                        conn.close(&format!("read error: {e}"));
                        return Err(e);
                    }
                }
            }
            () = sleep_until(grace), if !conn.is_authenticated() => {
                // sshd: "Timeout before authentication", no message sent.
                conn.close("Timeout before authentication");
            }
            Some(action) = async {
                match actions.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => conn.act(action),
        }
    }
    if !conn.ident_failed() {
        let _ = stream.shutdown().await;
    }
    // After a refused identification sshd just exits: the close resets the
    // connection if the client sent more than sshd read.
    Ok(conn.into_handler())
}
