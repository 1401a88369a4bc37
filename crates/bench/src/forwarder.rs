//! A plain UDP forwarder: what a relay costs with no TURN at all. One front socket; each client
//! gets its own back socket towards the peer, as a TURN relay gives each allocation one.
//!
//! Two threads, as many as the relays get on this machine: one reads the front socket and sends
//! each datagram out of its client's back socket; the other waits on every back socket at once
//! (one epoll set, via mio) and sends what the peer returns out of the front socket. Each
//! datagram costs one receive and one send, whatever the number of clients, which is the least a
//! user-space relay can do. (The first version gave each client a blocking thread for the way
//! back; from 100 clients on, the thread switches made it slower than the relays it was meant
//! to bound.)

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

fn bind(addr: SocketAddr, nonblocking: bool) -> std::io::Result<UdpSocket> {
    let s = crate::sock::bind_std(addr)?;
    s.set_nonblocking(nonblocking)?;
    Ok(s)
}

/// Back sockets by token (their index), with the client each one serves.
type Backs = Arc<Mutex<Vec<(Arc<UdpSocket>, SocketAddr)>>>;

/// Forwards datagrams between clients reaching `listen` and `peer`, until the process ends.
pub fn run(
    listen: SocketAddr,
    peer: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let front = Arc::new(bind(listen, false)?);
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let backs: Backs = Arc::new(Mutex::new(Vec::new()));
    {
        let (front, backs) = (Arc::clone(&front), Arc::clone(&backs));
        std::thread::spawn(move || way_back(poll, front, backs));
    }
    ready(front.local_addr()?);
    let mut by_client: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = front.recv_from(&mut buf)?;
        let back = match by_client.get(&client) {
            Some(b) => Arc::clone(b),
            None => {
                let b = Arc::new(bind(SocketAddr::new(listen.ip(), 0), true)?);
                b.connect(peer)?;
                let token = {
                    let mut v = backs.lock().expect("backs lock");
                    v.push((Arc::clone(&b), client));
                    v.len() - 1
                };
                registry.register(
                    &mut SourceFd(&b.as_raw_fd()),
                    Token(token),
                    Interest::READABLE,
                )?;
                by_client.insert(client, Arc::clone(&b));
                b
            }
        };
        // A full send buffer drops the datagram, as a relay would.
        let _ = back.send(&buf[..n]);
    }
}

/// The peer's answers: drain every readable back socket and send to its client.
fn way_back(mut poll: Poll, front: Arc<UdpSocket>, backs: Backs) -> std::io::Result<()> {
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            let (back, client) = {
                let v = backs.lock().expect("backs lock");
                let (b, c) = &v[ev.token().0];
                (Arc::clone(b), *c)
            };
            loop {
                match back.recv(&mut buf) {
                    Ok(n) => {
                        let _ = front.send_to(&buf[..n], client);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
