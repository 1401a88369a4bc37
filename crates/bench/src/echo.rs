//! The UDP echo peer: a dedicated thread that sends every datagram back to its sender, up to 64
//! at a time in each direction (`recvmmsg`/`sendmmsg`), so that the peer every benchmark shares
//! costs the machine as little as it can.

use std::net::SocketAddr;

use natkit_udp::{RecvBatch, SendBatch, Wait};

/// Starts an echo peer on `127.0.0.1:0` and returns its address. The thread lives as long as
/// the process (a benchmark's lifetime).
pub fn start() -> SocketAddr {
    start_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind the echo peer on loopback")
}

/// Starts an echo peer on `addr`; see [`start`].
pub fn start_on(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let sock = crate::sock::bind_std(addr)?;
    let addr = sock.local_addr()?;
    std::thread::Builder::new()
        .name("echo".into())
        .spawn(move || {
            let mut rx = RecvBatch::new(natkit_udp::MAX_PER_CALL, 65536);
            let mut tx = SendBatch::new();
            loop {
                let n = match rx.recv(&sock, Wait::ForOne) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // ICMP port unreachable from a sender that went away: not ours to end on.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(_) => return,
                };
                for i in 0..n {
                    if let (data, Some(from)) = rx.get(i) {
                        tx.push(data, Some(from));
                    }
                }
                let _ = tx.flush(&sock);
            }
        })?;
    Ok(addr)
}
