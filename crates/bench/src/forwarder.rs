//! A plain UDP forwarder: what a relay costs with no TURN at all. One front socket; each client
//! gets its own back socket towards the peer, as a TURN relay gives each allocation one.
//!
//! One thread waits on the front socket and every back socket through one epoll set (mio). The
//! front socket is read and written up to 64 datagrams per system call (`recvmmsg`/`sendmmsg`);
//! a run of datagrams from one client goes out of its back socket in one call too. That is the
//! least a user-space relay can spend per datagram on this machine, which makes it the ceiling
//! the relays are measured against. (The first version gave each client a blocking thread for the
//! way back, and the second used two threads and one call per datagram; both were no faster than
//! the relays they were meant to bound.)

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use natkit_udp::{RecvBatch, SendBatch, Wait, MAX_PER_CALL as BATCH};

const FRONT: Token = Token(usize::MAX);

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = crate::sock::bind_std(addr)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A client's back socket, connected to the peer.
struct Back {
    sock: UdpSocket,
    client: SocketAddr,
}

/// Forwards datagrams between clients reaching `listen` and `peer`, until the process ends.
pub fn run(
    listen: SocketAddr,
    peer: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let front = bind(listen)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut SourceFd(&front.as_raw_fd()), FRONT, Interest::READABLE)?;
    ready(front.local_addr()?);

    let mut backs: Vec<Back> = Vec::new();
    let mut by_client: HashMap<SocketAddr, usize> = HashMap::new();
    let mut rx = RecvBatch::new(natkit_udp::MAX_PER_CALL, 65536);
    let (mut to_back, mut to_front) = (SendBatch::new(), SendBatch::new());
    let mut events = Events::with_capacity(1024);
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == FRONT {
                // Clients to the peer: a run of datagrams from one client is one sendmmsg.
                while received(rx.recv(&front, Wait::No))? {
                    let mut run_of: Option<usize> = None;
                    for i in 0..rx.len() {
                        let (data, Some(client)) = rx.get(i) else {
                            continue;
                        };
                        let b = match by_client.get(&client) {
                            Some(&b) => b,
                            None => {
                                let sock = bind(SocketAddr::new(listen.ip(), 0))?;
                                sock.connect(peer)?;
                                poll.registry().register(
                                    &mut SourceFd(&sock.as_raw_fd()),
                                    Token(backs.len()),
                                    Interest::READABLE,
                                )?;
                                backs.push(Back { sock, client });
                                by_client.insert(client, backs.len() - 1);
                                backs.len() - 1
                            }
                        };
                        if let Some(r) = run_of.filter(|&r| r != b || to_back.is_full()) {
                            flush(&mut to_back, &backs[r].sock)?;
                        }
                        run_of = Some(b);
                        to_back.push(data, None);
                    }
                    if let Some(r) = run_of {
                        flush(&mut to_back, &backs[r].sock)?;
                    }
                    if !rx.is_empty() && rx.len() < BATCH {
                        break; // drained within this call
                    }
                }
            } else {
                // The peer to a client, batched on the front socket (several clients' answers
                // share a batch: each datagram carries its destination).
                let back = &backs[ev.token().0];
                while received(rx.recv(&back.sock, Wait::No))? {
                    for i in 0..rx.len() {
                        to_front.push(rx.get(i).0, Some(back.client));
                        if to_front.is_full() {
                            flush(&mut to_front, &front)?;
                        }
                    }
                    if !rx.is_empty() && rx.len() < BATCH {
                        break;
                    }
                }
            }
        }
        flush(&mut to_front, &front)?;
    }
}

/// Whether a receive brought datagrams; `false` once the socket is empty. Epoll is edge-triggered
/// (mio), so each socket is read until it is empty: until a call brings fewer datagrams than it
/// could take, or none.
fn received(r: std::io::Result<usize>) -> std::io::Result<bool> {
    match r {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
        // ICMP port unreachable from a peer that went away; the socket still works.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(true),
        Err(e) => Err(e),
    }
}

/// Sends what is queued; a full send buffer drops datagrams, as a relay would.
fn flush(tx: &mut SendBatch, sock: &UdpSocket) -> std::io::Result<()> {
    if !tx.is_empty() {
        tx.flush(sock)?;
    }
    Ok(())
}
