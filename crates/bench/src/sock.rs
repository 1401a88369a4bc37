//! Sockets of the load generator and the echo peer, with the same 4 MiB buffers as the relays
//! (2 MiB asked, doubled by the kernel): a burst a relay forwards must not be dropped by the
//! generator's own receive buffer and then counted as the relay's loss.

use std::net::{SocketAddr, UdpSocket};

/// Size asked for SO_RCVBUF and SO_SNDBUF.
pub const BUFFER_BYTES: usize = 2 << 20;

/// A blocking std socket on `addr` with large buffers.
pub fn bind_std(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&s);
    sock.set_recv_buffer_size(BUFFER_BYTES)?;
    sock.set_send_buffer_size(BUFFER_BYTES)?;
    Ok(s)
}

/// A tokio socket on an ephemeral port with large buffers, for talking to `server`: on loopback
/// when it is there, else on every address (a relay in another network namespace), in the
/// server's family.
pub fn bind_towards(server: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip: IpAddr = match (server.is_ipv6(), server.ip().is_loopback()) {
        (false, true) => Ipv4Addr::LOCALHOST.into(),
        (false, false) => Ipv4Addr::UNSPECIFIED.into(),
        (true, true) => Ipv6Addr::LOCALHOST.into(),
        (true, false) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let s = bind_std(SocketAddr::new(ip, 0))?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s)
}
