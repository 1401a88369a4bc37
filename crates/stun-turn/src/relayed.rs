//! The relayed sockets' shell: datagrams from peers, framed and sent on to the clients.
//!
//! One [`Poller`] per worker thread watches the relayed sockets of the allocations given to it
//! through an epoll set of its own, which tokio watches as one descriptor. When it wakes, it reads
//! every ready socket a batch at a time (`recvmmsg`), frames what the allocation's permissions
//! and channels let through, and sends the frames of all those allocations towards UDP clients
//! together, out of the primary socket in one `sendmmsg` (consecutive frames to one client of one
//! size as one GSO send). With many allocations each relayed socket holds about one datagram when
//! it wakes, so a task per allocation would cost a wake-up and a system call per datagram; this
//! is what batches them. Frames for TCP and TLS clients go into their connection's bounded queue.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use stun::agent::TransactionId;
use stun::attributes::ATTR_XOR_PEER_ADDRESS;
use stun::message::{MessageType, CLASS_INDICATION};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::debug;
use turn::proto::data::Data;

use crate::core::Transport;
use crate::family::{Family, PerFamily};
use crate::metrics::{DirectionCounters, Dropped, RelayMetrics};
use crate::queue::StreamQueue;
use crate::udp::{Datagram, RecvBatch, Udp, SLOTS};
use crate::wire::{self, XorMappedAddressAs};

/// An allocation's permissions and channels as the pollers read them: the shell's copy, written
/// from the core's [`Change`](crate::core::Change)s.
pub(crate) type PeerView = Arc<Mutex<crate::allocation::AllocState>>;

/// Where an allocation's datagrams from peers go.
#[derive(Clone)]
pub(crate) enum ClientSink {
    /// A UDP client, through the primary socket of its family.
    Udp(SocketAddr),
    Stream(StreamQueue),
}

/// What the poller needs of one allocation.
struct Entry {
    socket: Arc<Udp>,
    sink: ClientSink,
    state: PeerView,
    counters: DirectionCounters,
}

/// Epoll events taken per wake-up at most.
const EVENTS: usize = 256;

/// Frames queued for UDP clients during one wake-up.
#[derive(Default)]
struct Outgoing {
    bytes: Vec<u8>,
    /// (start in `bytes`, length, client, payload length and the peer's family for the
    /// counters)
    items: Vec<(usize, usize, SocketAddr, usize, Family)>,
}

/// Watches the relayed sockets of its allocations and forwards what their peers send.
pub(crate) struct Poller {
    /// The primary socket of each family, which UDP clients' frames leave from.
    primaries: PerFamily<Option<Arc<Udp>>>,
    // Declared before `epoll`, so it is deregistered before the descriptor closes.
    ready: AsyncFd<RawFd>,
    epoll: OwnedFd,
    entries: Mutex<Slab>,
    /// UDP clients' counters, by the peer's family.
    counters: PerFamily<DirectionCounters>,
    metrics: RelayMetrics,
    /// The time the permissions are checked at.
    clock: natkit_daemon::Clock,
}

#[derive(Default)]
struct Slab {
    items: Vec<Option<Entry>>,
    free: Vec<usize>,
}

/// An allocation's place in a poller; dropping it stops the forwarding (the allocation ended).
pub(crate) struct Registration {
    poller: Arc<Poller>,
    key: usize,
    fd: RawFd,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: epoll_ctl on descriptors owned by the poller and the entry's socket, which the
        // slab still holds here; DEL ignores the event argument.
        unsafe {
            libc::epoll_ctl(
                self.poller.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.fd,
                std::ptr::null_mut(),
            );
        }
        let mut slab = self.poller.entries.lock().expect("poller lock");
        slab.items[self.key] = None;
        slab.free.push(self.key);
    }
}

impl Poller {
    /// Must be called inside the runtime. `metrics` is what it counts drops and relayed
    /// datagrams towards UDP clients with.
    pub(crate) fn new(
        primaries: PerFamily<Option<Arc<Udp>>>,
        metrics: RelayMetrics,
        clock: natkit_daemon::Clock,
    ) -> io::Result<Poller> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the descriptor stays open until `ready` has been dropped (field order).
        let ready = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Poller {
            primaries,
            ready,
            epoll,
            entries: Mutex::new(Slab::default()),
            counters: PerFamily {
                v4: metrics.direction("peer_to_client", Transport::Udp, Family::V4),
                v6: metrics.direction("peer_to_client", Transport::Udp, Family::V6),
            },
            metrics,
            clock,
        })
    }

    /// Starts forwarding datagrams that arrive on `socket` to `sink`, as `state` allows.
    pub(crate) fn add(
        self: &Arc<Self>,
        socket: Arc<Udp>,
        sink: ClientSink,
        state: PeerView,
        counters: DirectionCounters,
    ) -> io::Result<Registration> {
        let fd = socket.raw_fd();
        let key = {
            let mut slab = self.entries.lock().expect("poller lock");
            let entry = Some(Entry {
                socket,
                sink,
                state,
                counters,
            });
            match slab.free.pop() {
                Some(k) => {
                    slab.items[k] = entry;
                    k
                }
                None => {
                    slab.items.push(entry);
                    slab.items.len() - 1
                }
            }
        };
        // Edge-triggered: a socket is read until a batch comes back short, or kept for the next
        // round.
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: key as u64,
        };
        // SAFETY: both descriptors are open; `ev` lives for the call.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        let registration = Registration {
            poller: Arc::clone(self),
            key,
            fd,
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(registration)
    }

    /// Forwards until `stop`.
    pub(crate) async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut batch = crate::udp::recv_batch();
        let mut out = Outgoing::default();
        // SAFETY: epoll_event is plain old data.
        let mut events: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; EVENTS];
        // Sockets whose last read filled the batch: read again next round, with no new event.
        let mut again: Vec<usize> = Vec::new();
        let mut keys: Vec<usize> = Vec::new();
        loop {
            let ready = tokio::select! {
                r = self.ready.readable() => r,
                _ = stop.changed() => return,
            };
            let mut ready = match ready {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "relayed sockets' poller stopped");
                    return;
                }
            };
            // SAFETY: `events` has EVENTS entries for the kernel to fill.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    debug!(error = %e, "epoll_wait failed");
                }
                continue;
            }
            let n = n as usize;
            keys.clear();
            keys.append(&mut again);
            keys.extend(events[..n].iter().map(|e| e.u64 as usize));
            {
                let slab = self.entries.lock().expect("poller lock");
                for &key in &keys {
                    let Some(Some(entry)) = slab.items.get(key) else {
                        continue;
                    };
                    match entry.socket.recv_batch(&mut batch) {
                        Ok(k) => {
                            if k == SLOTS && !again.contains(&key) {
                                again.push(key);
                            }
                            self.forward(&mut batch, entry, &mut out);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        // An ICMP error surfaced; datagrams may still be queued behind it, and
                        // edge-triggered epoll will not say so again.
                        Err(e) => {
                            debug!(error = %e, "relay socket recv error");
                            if !again.contains(&key) {
                                again.push(key);
                            }
                        }
                    }
                }
            }
            self.send(&mut out).await;
            if n < EVENTS && again.is_empty() {
                // Every ready socket was read dry: wait for the next event.
                ready.clear_ready();
            } else {
                drop(ready);
                tokio::task::yield_now().await;
            }
        }
    }

    /// Sends the frames queued for UDP clients.
    async fn send(&self, out: &mut Outgoing) {
        if out.items.is_empty() {
            return;
        }
        // Each family's frames leave from that family's primary socket, in order.
        for family in Family::ALL {
            let items: Vec<&(usize, usize, SocketAddr, usize, Family)> = out
                .items
                .iter()
                .filter(|it| Family::of(it.2.ip()) == family)
                .collect();
            if items.is_empty() {
                continue;
            }
            let Some(primary) = self.primaries.get(family) else {
                continue;
            };
            let datagrams: Vec<Datagram> = items
                .iter()
                .map(|&&(start, len, to, _, _)| Datagram {
                    bytes: &out.bytes[start..start + len],
                    to: Some(to),
                })
                .collect();
            let done = primary
                .send_batch(&datagrams, |i| {
                    self.counters.get(items[i].4).relayed(items[i].3)
                })
                .await;
            (done..datagrams.len()).for_each(|_| self.metrics.drop(Dropped::SendBufferFull));
        }
        out.items.clear();
        out.bytes.clear();
    }

    /// Frames a batch read from one relayed socket: ChannelData where the peer has a channel, a
    /// Data indication where it has only a permission, nothing without one.
    fn forward(&self, batch: &mut RecvBatch, entry: &Entry, out: &mut Outgoing) {
        let n = batch.len();
        let mut framing = [Framing::Dropped; SLOTS];
        {
            let now = self.clock.now();
            let st = entry.state.lock().expect("state lock");
            for (i, f) in framing.iter_mut().enumerate().take(n) {
                let Some(peer) = batch.source(i) else {
                    continue;
                };
                if !st.has_permission(peer.ip(), now) {
                    self.metrics.drop(Dropped::NoPermission);
                    continue;
                }
                *f = match st.peer_channel(peer, now) {
                    Some(number) if batch.payload(i).len() <= u16::MAX as usize => {
                        Framing::Channel(number)
                    }
                    _ => Framing::Indication,
                };
            }
        }
        let client = match &entry.sink {
            ClientSink::Stream(q) => {
                for (i, f) in framing.iter().enumerate().take(n) {
                    let payload = batch.payload(i);
                    let pushed = match *f {
                        Framing::Dropped => continue,
                        Framing::Channel(number) => {
                            // Header, payload and padding straight into the queue.
                            let len = payload.len();
                            let padded = crate::framing::padded(len);
                            q.push_with(4 + padded, |buf| {
                                buf.extend_from_slice(&wire::channel_data_header(number, len));
                                buf.extend_from_slice(payload);
                                buf.resize(buf.len() + padded - len, 0);
                            })
                        }
                        Framing::Indication => q.push(&indication(batch, i)),
                    };
                    if pushed {
                        entry.counters.relayed(payload.len());
                    }
                }
                return;
            }
            ClientSink::Udp(client) => *client,
        };
        for (i, f) in framing.iter().enumerate().take(n) {
            let start = out.bytes.len();
            match *f {
                Framing::Dropped => continue,
                Framing::Channel(number) => {
                    let payload = batch.payload(i);
                    out.bytes
                        .extend_from_slice(&wire::channel_data_header(number, payload.len()));
                    out.bytes.extend_from_slice(payload);
                }
                Framing::Indication => out.bytes.extend_from_slice(&indication(batch, i)),
            }
            let len = out.bytes.len() - start;
            let peer = batch.source(i).map_or(Family::V4, |p| Family::of(p.ip()));
            out.items
                .push((start, len, client, batch.payload(i).len(), peer));
        }
    }
}

/// How one datagram from a peer goes to the client.
#[derive(Clone, Copy)]
enum Framing {
    Dropped,
    Channel(u16),
    Indication,
}

/// A Data indication carrying datagram `i` of `batch` (the peer has a permission, no channel).
fn indication(batch: &RecvBatch, i: usize) -> Vec<u8> {
    wire::build(
        TransactionId::new(),
        MessageType::new(stun::message::METHOD_DATA, CLASS_INDICATION),
        vec![
            Box::new(XorMappedAddressAs(
                batch.source(i).expect("framed datagrams have a source"),
                ATTR_XOR_PEER_ADDRESS,
            )),
            Box::new(Data(batch.payload(i).to_vec())),
        ],
    )
}
