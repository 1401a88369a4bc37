//! The UDP echo peer: a dedicated thread that sends every datagram back to its sender.

use std::net::SocketAddr;

/// Starts an echo peer on `127.0.0.1:0` and returns its address. The thread lives as long as
/// the process (a benchmark's lifetime).
pub fn start() -> SocketAddr {
    let sock = crate::sock::bind_std(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind echo");
    let addr = sock.local_addr().expect("echo addr");
    std::thread::Builder::new()
        .name("echo".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        })
        .expect("spawn echo");
    addr
}
