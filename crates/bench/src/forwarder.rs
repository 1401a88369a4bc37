//! A plain UDP forwarder: what a relay costs with no TURN at all. One front socket; each client
//! gets its own back socket towards the peer, as a TURN relay gives each allocation one. Blocking
//! sockets on dedicated threads (one for the front, one per client for the way back): the
//! cheapest user-space relay there is, so its figures are the ceiling of this machine.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

/// Forwards datagrams between clients reaching `listen` and `peer`, until the process ends.
pub fn run(
    listen: SocketAddr,
    peer: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let front = Arc::new(UdpSocket::bind(listen)?);
    ready(front.local_addr()?);
    let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = front.recv_from(&mut buf)?;
        let back = match backs.get(&client) {
            Some(b) => Arc::clone(b),
            None => {
                let b = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
                b.connect(peer)?;
                let (b2, f2) = (Arc::clone(&b), Arc::clone(&front));
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = b2.recv(&mut buf) {
                        let _ = f2.send_to(&buf[..n], client);
                    }
                });
                backs.insert(client, Arc::clone(&b));
                b
            }
        };
        let _ = back.send(&buf[..n]);
    }
}
