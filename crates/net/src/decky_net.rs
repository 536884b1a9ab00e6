//! `DeckyNet`: the socket factory of one decky. Every socket an emulator needs
//! (its listeners, an FTP data connection, a TFTP transfer port) is made here,
//! inside the decky's namespace; emulators never bind or connect themselves.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

use crate::NetError;
use crate::executor::NetnsExecutor;
use crate::netns::Netns;

/// Makes sockets inside one decky's network namespace.
#[derive(Clone, Debug)]
pub struct DeckyNet {
    netns: Arc<Netns>,
    executor: NetnsExecutor,
    ip: Ipv4Addr,
}

impl DeckyNet {
    pub fn new(netns: Arc<Netns>, executor: NetnsExecutor, ip: Ipv4Addr) -> Self {
        Self { netns, executor, ip }
    }

    /// The decky's own address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn netns(&self) -> &Arc<Netns> {
        &self.netns
    }

    /// A listening TCP socket on `port` of every address of the decky.
    pub async fn tcp_listener(&self, port: u16) -> Result<tokio::net::TcpListener, NetError> {
        let listener = self
            .make(format!("listen on {port}/tcp"), move || {
                let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
                s.set_reuse_address(true)?;
                s.bind(&any(port).into())?;
                s.listen(1024)?;
                s.set_nonblocking(true)?;
                Ok(std::net::TcpListener::from(s))
            })
            .await?;
        tokio::net::TcpListener::from_std(listener).map_err(|e| NetError::io("register listener", e))
    }

    /// A UDP socket on `port` (0: an ephemeral port, as a TFTP server's transfer socket).
    pub async fn udp_socket(&self, port: u16) -> Result<tokio::net::UdpSocket, NetError> {
        let socket = self
            .make(format!("bind {port}/udp"), move || {
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                if port != 0 {
                    s.set_reuse_address(true)?;
                }
                s.bind(&any(port).into())?;
                s.set_nonblocking(true)?;
                Ok(std::net::UdpSocket::from(s))
            })
            .await?;
        tokio::net::UdpSocket::from_std(socket).map_err(|e| NetError::io("register UDP socket", e))
    }

    /// An outgoing TCP connection from the decky (e.g. FTP active mode).
    pub async fn tcp_connect(&self, peer: SocketAddr) -> Result<tokio::net::TcpStream, NetError> {
        let stream = self
            .make(format!("socket for {peer}"), move || {
                let domain = if peer.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
                let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
                s.set_nonblocking(true)?;
                Ok(std::net::TcpStream::from(s))
            })
            .await?;
        let socket = tokio::net::TcpSocket::from_std_stream(stream);
        socket
            .connect(peer)
            .await
            .map_err(|e| NetError::io(format!("connect to {peer}"), e))
    }

    async fn make<T: Send + 'static>(
        &self,
        what: String,
        build: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, NetError> {
        let op = format!("{what} in netns {}", self.netns.name());
        self.executor
            .run(Some(Arc::clone(&self.netns)), move || {
                build().map_err(|e| NetError::io(op, e))
            })
            .await
    }
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}
