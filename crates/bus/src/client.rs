//! A client of the [`broker`](crate::broker), for other processes.
//!
//! The protocol is JSON lines over the UNIX socket. Client to broker:
//! `{"op":"sub","pattern":"event.>"}`, `{"op":"unsub","pattern":"…"}`,
//! `{"op":"pub","topic":"…","payload":{…}}`. Broker to client:
//! `{"op":"msg","topic":"…","payload":{…}}`, `{"op":"lagged","missed":N}`,
//! `{"op":"error","message":"…"}`. Requests are not acknowledged; a refused
//! one comes back as an error from [`BusClient::next`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::broker::MAX_LINE_BYTES;
use crate::lines::{Line, LineReader};
use crate::topic::{Pattern, Topic};
use crate::wire::{Reply, Request};
use crate::{BusError, Delivery, Message};

/// Longest line accepted from the broker. Larger than the broker's request
/// limit: in-process publishers are not held to it.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A connection to the bus broker.
pub struct BusClient {
    path: PathBuf,
    lines: LineReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    out: Vec<u8>,
}

impl std::fmt::Debug for BusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusClient").field("path", &self.path).finish()
    }
}

impl BusClient {
    /// Connects to the broker's socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, BusError> {
        let path = path.as_ref().to_owned();
        let stream = match UnixStream::connect(&path).await {
            Ok(stream) => stream,
            Err(source) => return Err(BusError::Connect { path, source }),
        };
        let (read, write) = stream.into_split();
        Ok(Self {
            path,
            lines: LineReader::new(read, MAX_REPLY_BYTES),
            write,
            out: Vec::new(),
        })
    }

    /// Subscribes to `pattern`, checked here first so a typo fails at once.
    pub async fn subscribe(&mut self, pattern: &str) -> Result<(), BusError> {
        Pattern::parse(pattern)?;
        self.send(&Request::Sub {
            pattern: pattern.to_string(),
        })
        .await
    }

    /// Unsubscribes from `pattern` (written as it was subscribed).
    pub async fn unsubscribe(&mut self, pattern: &str) -> Result<(), BusError> {
        self.send(&Request::Unsub {
            pattern: pattern.to_string(),
        })
        .await
    }

    /// Publishes `payload` on `topic`, checked here first.
    pub async fn publish(&mut self, topic: &str, payload: serde_json::Value) -> Result<(), BusError> {
        Topic::new(topic)?;
        self.send(&Request::Pub {
            topic: topic.to_string(),
            payload,
        })
        .await
    }

    /// The next delivery, or `None` when the broker closed the connection.
    /// An error the broker sent is returned as [`BusError::Refused`]; the
    /// connection stays usable. Cancel safe.
    pub async fn next(&mut self) -> Result<Option<Delivery>, BusError> {
        loop {
            let line = match self.lines.next_line().await {
                Ok(None) => return Ok(None),
                Ok(Some(Line::Text(line))) => line,
                Ok(Some(Line::TooLong)) => {
                    return Err(BusError::Protocol {
                        path: self.path.clone(),
                        reason: format!("a line longer than {MAX_REPLY_BYTES} bytes (skipped)"),
                    });
                }
                Err(source) => {
                    return Err(BusError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            };
            if line.trim_ascii().is_empty() {
                continue;
            }
            let reply = serde_json::from_slice::<Reply<'_>>(line).map_err(|e| BusError::Protocol {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            return match reply {
                Reply::Msg { topic, payload } => Ok(Some(Delivery::Message(Arc::new(Message {
                    topic: topic.into_owned(),
                    payload: payload.into_owned(),
                })))),
                Reply::Lagged { missed } => Ok(Some(Delivery::Lagged { missed })),
                Reply::Error { message } => Err(BusError::Refused {
                    path: self.path.clone(),
                    message: message.into_owned(),
                }),
            };
        }
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn send(&mut self, request: &Request) -> Result<(), BusError> {
        self.out.clear();
        serde_json::to_writer(&mut self.out, request).map_err(|e| BusError::Protocol {
            path: self.path.clone(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        if self.out.len() > MAX_LINE_BYTES {
            return Err(BusError::TooLarge {
                limit: MAX_LINE_BYTES,
                got: self.out.len(),
            });
        }
        self.out.push(b'\n');
        self.write.write_all(&self.out).await.map_err(|source| BusError::Io {
            path: self.path.clone(),
            source,
        })
    }
}
