//! Binds a socket directly, which emulators must never do.

pub fn forbidden() -> std::io::Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind("127.0.0.1:0")
}
