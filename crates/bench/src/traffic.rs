//! The traffic phase of the relay load: one thread, every flow's socket in one epoll set (mio),
//! and datagrams sent and received up to 64 per system call on each socket.
//!
//! Each datagram carries its flow and sequence number and the time it was sent (nanoseconds since
//! the run's epoch, one reading per batch); the answer carries them back, which gives the round
//! trip. An answer that arrives on another flow's socket is counted as misrouted, not received:
//! a relay that mixed up its allocations would show here.
//!
//! - `Pacing::Window(w)`: closed loop. At most `w` datagrams of a flow and `inflight` over all
//!   flows are unanswered at once. Flows with room wait in a queue, so with more flows than
//!   in-flight slots every flow takes its turn. A flow that hears nothing for 50 ms gives its
//!   slots back (what it had in flight counts as lost unless it arrives later).
//! - `Pacing::Rate(r)`: open loop. `r` datagrams per second over all flows, spread evenly, sent
//!   whatever comes back.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use natkit_udp::{RecvBatch, SendBatch, Wait, MAX_PER_CALL as BATCH};

/// How a run paces its datagrams.
#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    /// Total datagrams per second sent by all allocations together.
    Rate(u64),
    /// Packets in flight per allocation; each answer releases the next.
    Window(usize),
}

/// Silence after which a flow's unanswered datagrams are given up (window mode).
const GIVE_UP: Duration = Duration::from_millis(50);
/// How long answers are still collected after the sending stops.
const DRAIN: Duration = Duration::from_millis(300);

/// One allocation (or forwarder client): its socket, connected to the server, and how its
/// datagrams are framed.
pub struct Flow {
    pub sock: UdpSocket,
    /// Bytes before the payload: a ChannelData header, or nothing for the plain forwarder.
    pub header: Vec<u8>,
    /// Send indications to this peer instead of ChannelData.
    pub send_indication_peer: Option<SocketAddr>,
}

#[derive(Default)]
pub struct Totals {
    /// Datagrams the kernel accepted for sending.
    pub sent: u64,
    /// Answers that carried one of our stamps, on the flow that sent them.
    pub received: u64,
    /// Answers that came back on another flow's socket.
    pub misrouted: u64,
    pub rtts_us: Vec<u32>,
}

struct State {
    unanswered: usize,
    last_heard: Instant,
    queued: bool,
}

/// Runs the traffic for `duration`, then collects late answers for 300 ms.
pub fn run(
    flows: &[Flow],
    payload: usize,
    plain: bool,
    pacing: Pacing,
    inflight: usize,
    duration: Duration,
) -> std::io::Result<Totals> {
    if flows.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "no flows to send on",
        ));
    }
    let mut poll = Poll::new()?;
    // Fixed-size datagrams on a connected socket: a window's worth can leave in one GSO send.
    let datagram = |f: &Flow| f.header.len() + payload.max(16);
    let mut gso = Vec::with_capacity(flows.len());
    for (i, f) in flows.iter().enumerate() {
        gso.push(
            f.send_indication_peer.is_none()
                // NATKIT_BENCH_NO_GSO: one skb per datagram, as from a network (docs/performance.md).
                && std::env::var_os("NATKIT_BENCH_NO_GSO").is_none()
                && natkit_udp::set_udp_segment(&f.sock, datagram(f)).is_ok(),
        );
        f.sock.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&f.sock.as_raw_fd()),
            Token(i),
            Interest::READABLE,
        )?;
    }
    let epoch = Instant::now();
    let end = epoch + duration;
    let mut g = Generator {
        flows,
        gso,
        payload,
        plain,
        epoch,
        tx: SendBatch::new(),
        rx: RecvBatch::new(natkit_udp::MAX_PER_CALL, 65536),
        scratch: Vec::with_capacity(65536),
        totals: Totals::default(),
        next_seq: vec![0; flows.len()],
    };
    let mut states: Vec<State> = flows
        .iter()
        .map(|_| State {
            unanswered: 0,
            last_heard: epoch,
            queued: true,
        })
        .collect();
    let mut ready: VecDeque<usize> = (0..flows.len()).collect();
    let mut budget = inflight.max(1);
    let mut events = Events::with_capacity(1024);
    let mut paced_attempts = 0u64;
    let mut cursor = 0usize;

    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let timeout = match pacing {
            Pacing::Window(w) => {
                // Flows silent too long give their slots back.
                for (i, s) in states.iter_mut().enumerate() {
                    if s.unanswered > 0 && now - s.last_heard > GIVE_UP {
                        budget += s.unanswered;
                        s.unanswered = 0;
                        if !s.queued {
                            s.queued = true;
                            ready.push_back(i);
                        }
                    }
                }
                // Hand free slots to the flows waiting for them, in turn.
                while budget > 0 {
                    let Some(i) = ready.pop_front() else { break };
                    let s = &mut states[i];
                    s.queued = false;
                    let want = w.saturating_sub(s.unanswered).min(budget);
                    let sent = g.send(i, want)?;
                    if s.unanswered == 0 {
                        s.last_heard = now;
                    }
                    s.unanswered += sent;
                    budget -= sent;
                    if sent < want {
                        // Our own socket is full: try again after the next wake.
                        s.queued = true;
                        ready.push_back(i);
                        break;
                    }
                }
                Duration::from_millis(10)
            }
            Pacing::Rate(rate) => {
                let rate = rate.max(1) as f64;
                let due = ((now - epoch).as_secs_f64() * rate) as u64;
                let owed = due.saturating_sub(paced_attempts);
                paced_attempts = due;
                // Spread evenly: each flow in turn, from where the last round stopped.
                let n = flows.len();
                let (each, extra) = (owed / n as u64, (owed % n as u64) as usize);
                for k in 0..n {
                    let i = (cursor + k) % n;
                    let count = each as usize + usize::from(k < extra);
                    if count > 0 {
                        g.send(i, count)?;
                    }
                }
                cursor = (cursor + extra) % n;
                let next = epoch + Duration::from_secs_f64((due + 1) as f64 / rate);
                next.saturating_duration_since(Instant::now())
            }
        };
        poll.poll(&mut events, Some(timeout.min(end - now)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let answers = g.receive(i)?;
            if let Pacing::Window(w) = pacing {
                let s = &mut states[i];
                if answers > 0 {
                    s.last_heard = Instant::now();
                }
                let released = answers.min(s.unanswered);
                s.unanswered -= released;
                budget += released;
                if s.unanswered < w && !s.queued {
                    s.queued = true;
                    ready.push_back(i);
                }
            }
        }
    }

    // Late answers.
    let stop = Instant::now() + DRAIN;
    while let Some(left) = stop.checked_duration_since(Instant::now()) {
        poll.poll(&mut events, Some(left))?;
        for ev in events.iter() {
            g.receive(ev.token().0)?;
        }
    }
    Ok(g.totals)
}

struct Generator<'a> {
    flows: &'a [Flow],
    /// Per flow: sends of several datagrams are one GSO send.
    gso: Vec<bool>,
    payload: usize,
    plain: bool,
    epoch: Instant,
    tx: SendBatch,
    rx: RecvBatch,
    scratch: Vec<u8>,
    totals: Totals,
    /// Per flow, the next sequence number.
    next_seq: Vec<u64>,
}

impl Generator<'_> {
    /// Appends flow `i`'s next datagram to `scratch` and numbers the one after.
    fn append_next(&mut self, i: usize, stamp: u64) {
        let seq = self.next_seq[i];
        packet(
            &self.flows[i],
            self.payload,
            tag(i, seq),
            stamp,
            &mut self.scratch,
        );
        self.next_seq[i] = seq + 1;
    }

    /// Sends `count` datagrams on flow `i`, in batches; returns how many the kernel took.
    fn send(&mut self, i: usize, count: usize) -> std::io::Result<usize> {
        let flow = &self.flows[i];
        let size = flow.header.len() + self.payload.max(16);
        // One GSO send carries at most 64 segments and 64 KiB.
        let most = if self.gso[i] {
            BATCH.min(65000 / size).max(1)
        } else {
            BATCH
        };
        let mut sent = 0;
        let mut left = count;
        while left > 0 {
            let batch = left.min(most);
            let stamp = self.epoch.elapsed().as_nanos() as u64;
            let took = if self.gso[i] && batch > 1 {
                self.scratch.clear();
                for _ in 0..batch {
                    self.append_next(i, stamp);
                }
                match flow.sock.send(&self.scratch) {
                    Ok(_) => batch,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => 0,
                    Err(e) => return Err(e),
                }
            } else {
                for _ in 0..batch {
                    self.scratch.clear();
                    self.append_next(i, stamp);
                    self.tx.push(&self.scratch, None);
                }
                self.tx.flush(&flow.sock)?
            };
            sent += took;
            left -= batch;
            if took < batch {
                break;
            }
        }
        self.totals.sent += sent as u64;
        Ok(sent)
    }

    /// Takes every answer queued on flow `i`'s socket; returns how many were ours.
    fn receive(&mut self, i: usize) -> std::io::Result<usize> {
        let sock = &self.flows[i].sock;
        let mut ours = 0;
        loop {
            match self.rx.recv(sock, Wait::No) {
                Ok(n) => {
                    let now = self.epoch.elapsed().as_nanos() as u64;
                    for k in 0..n {
                        if let Some((seq, sent_at)) = stamp(self.rx.get(k).0, self.plain) {
                            if flow_of(seq) != i {
                                self.totals.misrouted += 1;
                                continue;
                            }
                            ours += 1;
                            let rtt_us = now.saturating_sub(sent_at) / 1000;
                            self.totals.rtts_us.push(rtt_us.min(u32::MAX as u64) as u32);
                        }
                    }
                    if n < BATCH {
                        break; // the queue ran dry within this call: no need to ask again
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.totals.received += ours as u64;
        Ok(ours)
    }
}

/// Appends one datagram of flow `flow` to `out`: the payload starts with the sequence number and
/// the send time, and is framed as ChannelData, a Send indication, or nothing (plain).
fn packet(flow: &Flow, payload: usize, seq: u64, sent_at_ns: u64, out: &mut Vec<u8>) {
    let start = out.len();
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(&seq.to_be_bytes());
    body[8..].copy_from_slice(&sent_at_ns.to_be_bytes());
    let size = payload.max(16);
    if let Some(peer) = flow.send_indication_peer {
        let mut data = vec![0u8; size];
        data[..16].copy_from_slice(&body);
        let mut m = stun::message::Message::new();
        m.build(&[
            Box::new(stun::agent::TransactionId::new()),
            Box::new(stun::message::MessageType::new(
                stun::message::METHOD_SEND,
                stun::message::CLASS_INDICATION,
            )),
            Box::new(turn::proto::peeraddr::PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(turn::proto::data::Data(data)),
        ])
        .expect("a Send indication always encodes");
        out.extend_from_slice(&m.raw);
        return;
    }
    out.extend_from_slice(&flow.header);
    out.extend_from_slice(&body);
    out.resize(start + flow.header.len() + size, 0);
}

/// A sequence number that also names its flow: the flow index above bit 40.
fn tag(flow: usize, n: u64) -> u64 {
    ((flow as u64) << 40) | (n & ((1 << 40) - 1))
}

fn flow_of(seq: u64) -> usize {
    (seq >> 40) as usize
}

/// The sequence number and send time carried by an answer (ChannelData or raw), if it is one of
/// ours.
fn stamp(buf: &[u8], plain: bool) -> Option<(u64, u64)> {
    let body = if plain {
        buf
    } else if (0x40..=0x7f).contains(buf.first()?) {
        buf.get(4..)?
    } else {
        return None; // Data indications are not expected with a channel bound
    };
    let seq = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    Some((seq, u64::from_be_bytes(body.get(8..16)?.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_flow(header: Vec<u8>) -> (Flow, std::thread::JoinHandle<u64>) {
        // A "server" that answers every datagram, stopping after 200 ms of silence.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(server.local_addr().unwrap()).unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n = 0;
            while let Ok((len, from)) = server.recv_from(&mut buf) {
                server.send_to(&buf[..len], from).unwrap();
                n += 1;
            }
            n
        });
        let flow = Flow {
            sock,
            header,
            send_indication_peer: None,
        };
        (flow, t)
    }

    /// One flow in a closed loop of `window` for 300 ms.
    fn closed_loop_300ms(flow: Flow, payload: usize, plain: bool, window: usize) -> Totals {
        let pacing = Pacing::Window(window);
        run(
            &[flow],
            payload,
            plain,
            pacing,
            window,
            Duration::from_millis(300),
        )
        .unwrap()
    }

    #[test]
    fn a_closed_loop_keeps_its_window_and_every_answer_is_counted_with_a_round_trip() {
        let (flow, server) = echo_flow(vec![0x40, 0x00, 0x00, 100]);
        let t = closed_loop_300ms(flow, 100, false, 4);
        let answered = server.join().unwrap();
        assert!(t.sent > 100, "only {} sent in 300 ms", t.sent);
        assert_eq!(t.received, t.sent, "loopback echo loses nothing");
        assert_eq!(answered, t.sent);
        assert_eq!(t.rtts_us.len() as u64, t.received);
    }

    #[test]
    fn an_open_loop_sends_at_its_rate_spread_over_the_flows() {
        let (a, sa) = echo_flow(vec![]);
        let (b, sb) = echo_flow(vec![]);
        let t = run(
            &[a, b],
            16,
            true,
            Pacing::Rate(2000),
            1,
            Duration::from_millis(500),
        )
        .unwrap();
        let (na, nb) = (sa.join().unwrap(), sb.join().unwrap());
        // 1000 due in 500 ms; the last millisecond's worth may not be due yet.
        assert!((990..=1000).contains(&t.sent), "sent {}", t.sent);
        assert!(na.abs_diff(nb) <= 1, "uneven: {na} and {nb}");
        assert_eq!(t.received, t.sent);
    }

    #[test]
    fn answers_on_the_wrong_flow_are_misrouted_not_received() {
        // A "server" that answers every datagram of flow 0 to flow 1's socket and vice versa.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let socks: Vec<UdpSocket> = (0..2)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(server.local_addr().unwrap()).unwrap();
                s
            })
            .collect();
        let addrs: Vec<SocketAddr> = socks.iter().map(|s| s.local_addr().unwrap()).collect();
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((len, from)) = server.recv_from(&mut buf) {
                let to = if from == addrs[0] { addrs[1] } else { addrs[0] };
                server.send_to(&buf[..len], to).unwrap();
            }
        });
        let flows: Vec<Flow> = socks
            .into_iter()
            .map(|sock| Flow {
                sock,
                header: vec![],
                send_indication_peer: None,
            })
            .collect();
        let t2 = run(
            &flows,
            16,
            true,
            Pacing::Rate(1000),
            1,
            Duration::from_millis(200),
        )
        .unwrap();
        t.join().unwrap();
        assert!(t2.sent > 150, "sent {}", t2.sent);
        assert_eq!(t2.received, 0);
        assert_eq!(t2.misrouted, t2.sent);
    }

    #[test]
    fn a_silent_server_costs_the_window_its_slots_only_for_a_while() {
        // Nothing answers: every 50 ms the flow gives its slots back and sends another window.
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(dead.local_addr().unwrap()).unwrap();
        let flow = Flow {
            sock,
            header: vec![],
            send_indication_peer: None,
        };
        let t = closed_loop_300ms(flow, 16, true, 8);
        assert_eq!(t.received, 0);
        // A first window, then one more after each 50 ms (+ up to 10 ms) of silence.
        assert!((24..=56).contains(&t.sent), "sent {}", t.sent);
    }
}
