//! `UdpFlow`: the datagrams of one peer on one UDP port, as a session. The
//! engine reads the shared socket and routes each datagram to its peer's flow;
//! replies go out through the same socket, from the service's port.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The datagrams one peer sends to a service port.
#[derive(Debug)]
pub struct UdpFlow {
    datagrams: mpsc::Receiver<Bytes>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    idle: Duration,
}

impl UdpFlow {
    pub fn new(datagrams: mpsc::Receiver<Bytes>, socket: Arc<UdpSocket>, peer: SocketAddr, idle: Duration) -> Self {
        Self {
            datagrams,
            socket,
            peer,
            idle,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The next datagram; `None` once the peer has been quiet for the idle
    /// timeout or the service is stopping.
    pub async fn recv(&mut self) -> Option<Bytes> {
        tokio::time::timeout(self.idle, self.datagrams.recv())
            .await
            .ok()
            .flatten()
    }

    /// Replies to the peer from the service's own port.
    pub async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, self.peer).await.map(|_| ())
    }
}
