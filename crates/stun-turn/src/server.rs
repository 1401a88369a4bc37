//! The relay's async shell: it owns the UDP sockets, the clock and the per-allocation tasks.
//!
//! Decisions are delegated to the pure modules ([`crate::credentials`], [`crate::nonce`],
//! [`crate::policy`], [`crate::rfc5780`], [`crate::allocation`]). Each datagram is handled by
//! [`Shared::handle`], which returns an [`Action`] and touches no socket itself except to bind a
//! new relay socket for an Allocate.
//!
//! Why not `turn::server::Server`: it stores a nonce per unauthenticated request and never
//! evicts them (a flood grows memory without bound), answers expired and forged credentials with
//! 400 instead of 401, has no hook for a peer policy, quotas or RFC 5780, and truncates datagrams
//! at 1500 bytes. natkit keeps the `turn`/`stun` crates' wire types and replaces the server.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stun::addr::MappedAddress;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqfamily::{
    RequestedAddressFamily, REQUESTED_FAMILY_IPV4, REQUESTED_FAMILY_IPV6,
};
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

use crate::allocation::{granted_lifetime, AllocState, ChannelBindError, Quotas};
use crate::config::RelayConfig;
use crate::credentials::{self, Secrets};
use crate::error::{CredentialError, RelayError};
use crate::metrics::{AuthFailure, RelayMetrics};
use crate::nonce::{NonceCheck, NonceKey};
use crate::policy::{canonical as policy_canonical, Decision, OwnSockets, PeerPolicy};
use crate::ratelimit::KeyedLimiter;
use crate::revocation::{RevocationFile, Revocations};
use crate::rfc5780::{self, ChangeRequest, PlanError, Slot};
use crate::wire;

/// Largest UDP payload; datagrams are never truncated.
const MAX_DATAGRAM: usize = 65_536;
const SOFTWARE: &str = concat!("natkit-relay ", env!("CARGO_PKG_VERSION"));

/// Where a running relay listens, as it tells clients.
#[derive(Debug, Clone)]
pub struct RelayAddresses {
    /// The STUN/TURN socket.
    pub primary: SocketAddr,
    /// The RFC 5780 socket on the alternate port.
    pub alt_port: SocketAddr,
    /// The RFC 5780 sockets on the alternate IP, if configured.
    pub alt_ip: Option<(SocketAddr, SocketAddr)>,
    /// The IP written into XOR-RELAYED-ADDRESS.
    pub relay_ip: IpAddr,
}

/// A bound relay, ready to [`run`](Relay::run).
pub struct Relay {
    shared: Arc<Shared>,
    addresses: RelayAddresses,
}

struct Shared {
    realm: String,
    secrets: Secrets,
    nonce_key: NonceKey,
    policy: PeerPolicy,
    relay_bind_ip: IpAddr,
    relay_ip: IpAddr,
    relay_ports: RangeInclusive<u16>,
    have_alt_ip: bool,
    max_lifetime: Duration,
    /// Socket and the address it reports in RESPONSE-ORIGIN/OTHER-ADDRESS, per RFC 5780 slot.
    sockets: HashMap<Slot, (Arc<UdpSocket>, SocketAddr)>,
    /// More sockets on the primary address (SO_REUSEPORT), served like the primary.
    primary_extra: Vec<Arc<UdpSocket>>,
    table: Mutex<Table>,
    /// Answers that need no credential (Binding, 401 challenges) per source IP: a spoofed
    /// source cannot turn the relay into a reflector.
    answers: Mutex<KeyedLimiter<IpAddr>>,
    /// Revoked users (`revoked_file`), and the file they come from.
    revoked: Mutex<Revocations>,
    revoked_file: Option<Mutex<RevocationFile>>,
    metrics: RelayMetrics,
    client_to_peer: crate::metrics::DirectionCounters,
}

struct Table {
    allocations: HashMap<SocketAddr, Arc<Allocation>>,
    /// The relayed addresses of `allocations` (the peer policy's "really allocated").
    relayed: std::collections::HashSet<SocketAddr>,
    quotas: Quotas,
    /// Odd ports held for a later Allocate with RESERVATION-TOKEN (RFC 8656 section 14.9).
    reservations: HashMap<[u8; 8], Reservation>,
}

/// A reserved port: it counts against its user's quota, and goes with the allocation that made
/// it (or when it expires, or when an Allocate takes it).
struct Reservation {
    socket: Arc<UdpSocket>,
    expires: Instant,
    user: String,
    /// The 5-tuple of the allocation that reserved it.
    owner: SocketAddr,
}

impl Table {
    /// Drops the reservations `keep` refuses, giving their quota back.
    fn drop_reservations(&mut self, mut keep: impl FnMut(&Reservation) -> bool) {
        let quotas = &mut self.quotas;
        self.reservations.retain(|_, r| {
            let k = keep(r);
            if !k {
                quotas.release(&r.user);
            }
            k
        });
    }
}

/// How long a reserved port is held, as RFC 8656 section 7.2 suggests.
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// XOR-PEER-ADDRESS attributes one CreatePermission may carry; more get 400.
pub const MAX_PEERS_PER_REQUEST: usize = 16;
/// Attributes one message may carry before it is dropped unread: a legitimate TURN or ICE
/// request has about a dozen, and this bounds the work a datagram can cost.
pub const MAX_ATTRIBUTES: usize = 40;
/// Unknown attributes listed in a 420's UNKNOWN-ATTRIBUTES: the answer stays small.
const MAX_UNKNOWN_LISTED: usize = 8;
/// Source IPs whose unauthenticated answers are counted at once (bounded memory).
const ANSWER_LIMIT_KEYS: usize = 65_536;
/// RFC 8489 section 14.3: USERNAME is fewer than 509 bytes.
pub const MAX_USERNAME_BYTES: usize = 508;

/// A client-controlled string as logs show it: control characters escaped, at most 64
/// characters (a 500-byte username does not become a 500-byte log line).
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

struct Allocation {
    /// The client's 5-tuple (its address on the primary socket).
    client: SocketAddr,
    username: String,
    user: String,
    key: Vec<u8>,
    allocate_tid: TransactionId,
    relay_socket: Arc<UdpSocket>,
    relayed: SocketAddr,
    state: Arc<Mutex<AllocState>>,
    task: AbortHandle,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the shell does with one datagram.
enum Action {
    None,
    Reply {
        from: Slot,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Relay `buf[range]` to `to` from an allocation's relay socket.
    Relay {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
        range: std::ops::Range<usize>,
    },
    /// Relay a payload that had to be copied out of a STUN message (Send indication).
    RelayOwned {
        socket: Arc<UdpSocket>,
        to: SocketAddr,
        payload: Vec<u8>,
    },
}

/// Which relay port an Allocate asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRequest {
    Any,
    Even,
    /// EVEN-PORT with R: an even port, and the next one reserved under a token.
    EvenPair,
    Reserved([u8; 8]),
}

struct Authed {
    username: String,
    user: String,
    key: Vec<u8>,
}

/// Socket buffer size asked for on every relay socket (the kernel doubles it: 4 MiB, as coturn
/// ends up with): bursts are absorbed
/// instead of dropped. The kernel caps it at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 2 << 20;

fn bind_udp(addr: SocketAddr) -> Result<Arc<UdpSocket>, RelayError> {
    bind_udp_with(addr, false)
}

/// `reuse_port`: join the address's SO_REUSEPORT group (the primary listener's sockets), so the
/// kernel spreads clients over them by 4-tuple hash, each client always to the same socket.
fn bind_udp_with(addr: SocketAddr, reuse_port: bool) -> Result<Arc<UdpSocket>, RelayError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| RelayError::Bind { addr, source };
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    // Best effort: a smaller cap only means the kernel default.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    if reuse_port {
        s.set_reuse_port(true).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    UdpSocket::from_std(s.into()).map(Arc::new).map_err(err)
}

/// This host's local addresses and local ranges (127.0.0.0/8), from the kernel's tables
/// (`/proc/net/fib_trie`'s "host LOCAL" entries for IPv4, `/proc/net/if_inet6` for IPv6); empty
/// where they cannot be read.
fn local_addresses() -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        // "|-- 127.0.0.0" then "/8 host LOCAL": the prefix on the next line.
        let mut last: Option<std::net::Ipv4Addr> = None;
        for line in trie.lines() {
            let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
            if let Ok(ip) = t.parse::<std::net::Ipv4Addr>() {
                last = Some(ip);
            } else if let (Some(ip), Some(rest)) = (last, t.strip_prefix('/')) {
                last = None;
                let mut parts = rest.split_whitespace();
                let len = parts.next().and_then(|l| l.parse::<u8>().ok());
                if let (Some(len), true) = (len, t.contains("host LOCAL")) {
                    if let Ok(net) = ipnet::Ipv4Net::new(ip, len) {
                        let net = ipnet::IpNet::V4(net);
                        if !out.contains(&net) {
                            out.push(net);
                        }
                    }
                }
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next().filter(|h| h.len() == 32) else {
                continue;
            };
            if let Ok(bits) = u128::from_str_radix(hex, 16) {
                out.push(ipnet::IpNet::V6(
                    ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(bits), 128).expect("/128"),
                ));
            }
        }
    }
    out
}

/// The source address the kernel would pick towards the outside, for a wildcard listener with no
/// `--public-ip`. Connecting a UDP socket sends nothing.
fn default_route_ip() -> Option<IpAddr> {
    natkit_daemon::source_ip_towards("203.0.113.1:9".parse().expect("valid")).ok()
}

/// The address clients see: `public_ip`, else the concrete listen IP, else the IP of the default
/// route, else loopback (with a warning).
pub fn advertised_ip(cfg: &RelayConfig) -> IpAddr {
    cfg.public_ip.unwrap_or_else(|| {
        if cfg.listen.ip().is_unspecified() {
            default_route_ip().unwrap_or_else(|| {
                warn!("no default route and no --public-ip: advertising 127.0.0.1");
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            })
        } else {
            cfg.listen.ip()
        }
    })
}

impl Relay {
    /// Binds every socket the configuration asks for. Nothing is served until [`Relay::run`].
    pub async fn bind(cfg: RelayConfig, metrics: RelayMetrics) -> Result<Relay, RelayError> {
        let secrets = cfg.secrets.clone().unwrap_or_else(|| {
            Secrets::new(vec![credentials::Secret::generate()]).expect("one secret")
        });
        // One primary socket per core in an SO_REUSEPORT group: clients' ChannelData is read by
        // as many tasks as there are worker threads instead of one.
        let listeners = std::thread::available_parallelism().map_or(1, |n| n.get());
        // A plain bind first: the port must be free. Without it, a second relay started on the
        // same port would silently join this group and receive half of the clients.
        let probe = bind_udp(cfg.listen)?;
        let listen = probe.local_addr().map_err(RelayError::LocalAddr)?;
        drop(probe);
        let primary = bind_udp_with(listen, listeners > 1)?;
        let primary_addr = primary.local_addr().map_err(RelayError::LocalAddr)?;
        let mut primary_extra = Vec::new();
        for _ in 1..listeners {
            primary_extra.push(bind_udp_with(primary_addr, true)?);
        }
        if cfg.alt_port != 0 && cfg.alt_port == primary_addr.port() {
            return Err(RelayError::AltPortSameAsListen { port: cfg.alt_port });
        }
        let alt_port = bind_udp(SocketAddr::new(cfg.listen.ip(), cfg.alt_port))?;
        let alt_port_addr = alt_port.local_addr().map_err(RelayError::LocalAddr)?;

        let origin_ip = advertised_ip(&cfg);
        let mut sockets = HashMap::new();
        sockets.insert(
            Slot::PRIMARY,
            (primary, SocketAddr::new(origin_ip, primary_addr.port())),
        );
        sockets.insert(
            Slot::ALT_PORT,
            (alt_port, SocketAddr::new(origin_ip, alt_port_addr.port())),
        );
        let mut alt_ip_addrs = None;
        if let Some(alt_ip) = cfg.alt_ip {
            if cfg.listen.ip().is_unspecified() {
                return Err(RelayError::AltIpNeedsConcreteListen {
                    listen: cfg.listen,
                    alt_ip,
                });
            }
            if alt_ip == cfg.listen.ip() {
                return Err(RelayError::AltIpSameAsListen { alt_ip });
            }
            let a = bind_udp(SocketAddr::new(alt_ip, primary_addr.port()))?;
            let b = bind_udp(SocketAddr::new(alt_ip, alt_port_addr.port()))?;
            let a_addr = a.local_addr().map_err(RelayError::LocalAddr)?;
            let b_addr = b.local_addr().map_err(RelayError::LocalAddr)?;
            sockets.insert(Slot::ALT_IP, (a, a_addr));
            sockets.insert(Slot::ALT_BOTH, (b, b_addr));
            alt_ip_addrs = Some((a_addr, b_addr));
        }

        let mut own_ips = vec![cfg.listen.ip(), origin_ip];
        own_ips.extend(cfg.public_ip);
        // A wildcard listener answers on every local address: all of them are the relay.
        let own_nets = if cfg.listen.ip().is_unspecified() {
            local_addresses()
        } else {
            Vec::new()
        };
        let (revoked, revoked_file) = match &cfg.revoked_file {
            Some(path) => {
                let mut f = RevocationFile::new(path);
                let r = f
                    .reload()
                    .map_err(|source| RelayError::RevokedFile {
                        path: path.display().to_string(),
                        source,
                    })?
                    .unwrap_or_default();
                (r, Some(f))
            }
            None => (Revocations::default(), None),
        };
        let policy = PeerPolicy::new(
            cfg.allow_peers.clone(),
            cfg.deny_peers.clone(),
            OwnSockets {
                ips: own_ips,
                nets: own_nets,
                alt_ips: cfg.alt_ip.into_iter().collect(),
                ports: vec![primary_addr.port(), alt_port_addr.port()],
            },
        );
        let addresses = RelayAddresses {
            primary: SocketAddr::new(origin_ip, primary_addr.port()),
            alt_port: SocketAddr::new(origin_ip, alt_port_addr.port()),
            alt_ip: alt_ip_addrs,
            relay_ip: origin_ip,
        };
        let shared = Arc::new(Shared {
            realm: cfg.realm.clone(),
            secrets,
            nonce_key: NonceKey::random(),
            policy,
            relay_bind_ip: cfg.listen.ip(),
            relay_ip: origin_ip,
            relay_ports: cfg.relay_ports.clone(),
            have_alt_ip: cfg.alt_ip.is_some(),
            max_lifetime: cfg.max_lifetime,
            sockets,
            primary_extra,
            table: Mutex::new(Table {
                allocations: HashMap::new(),
                relayed: Default::default(),
                quotas: Quotas::new(cfg.user_quota, cfg.total_quota),
                reservations: HashMap::new(),
            }),
            revoked: Mutex::new(revoked),
            revoked_file: revoked_file.map(Mutex::new),
            answers: Mutex::new(KeyedLimiter::per_second(
                cfg.answers_per_second,
                cfg.answers_per_second.saturating_mul(2),
                ANSWER_LIMIT_KEYS,
            )),
            client_to_peer: metrics.direction("client_to_peer"),
            metrics,
        });
        Ok(Relay { shared, addresses })
    }

    pub fn addresses(&self) -> &RelayAddresses {
        &self.addresses
    }

    /// The secrets in use (generated when the configuration had none).
    pub fn secrets(&self) -> &Secrets {
        &self.shared.secrets
    }

    pub fn metrics(&self) -> &RelayMetrics {
        &self.shared.metrics
    }

    /// Runs one datagram from `src` through the relay's decision path as if it had arrived on
    /// the primary socket, and returns the answer it would send, without sending anything. For
    /// the fuzz harness ([`crate::fuzz`]); it may create allocations (and bind their relay
    /// sockets) like a real Allocate, so call it inside a tokio runtime.
    #[doc(hidden)]
    pub fn fuzz_datagram(&self, buf: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let now = Instant::now();
        match self
            .shared
            .handle(Slot::PRIMARY, buf, src, now, natkit_daemon::unix_now())
        {
            Action::Reply { bytes, .. } => Some(bytes),
            _ => None,
        }
    }

    /// Allocations alive now (for fuzzing: state must stay bounded).
    #[doc(hidden)]
    pub fn allocation_count(&self) -> usize {
        self.shared
            .table
            .lock()
            .expect("table lock")
            .allocations
            .len()
    }

    /// Serves until `shutdown` completes, then closes every allocation and socket.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let extra = self.shared.primary_extra.iter().map(|s| (Slot::PRIMARY, s));
        let all = self.shared.sockets.iter().map(|(&slot, (s, _))| (slot, s));
        for (slot, socket) in all.chain(extra) {
            tasks.spawn(serve_socket(
                Arc::clone(&self.shared),
                slot,
                Arc::clone(socket),
                stop_rx.clone(),
            ));
        }
        tasks.spawn(janitor(Arc::clone(&self.shared), stop_rx));
        info!(
            primary = %self.addresses.primary,
            alt_port = %self.addresses.alt_port,
            alt_ip = ?self.addresses.alt_ip,
            relay_ip = %self.addresses.relay_ip,
            "relay serving"
        );
        shutdown.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let closed = {
            let mut table = self.shared.table.lock().expect("table lock");
            let n = table.allocations.len();
            table.allocations.clear();
            table.relayed.clear();
            table.reservations.clear();
            n
        };
        self.shared.metrics.allocations_active.set(0);
        info!(closed_allocations = closed, "relay stopped");
    }
}

async fn serve_socket(
    shared: Arc<Shared>,
    slot: Slot,
    socket: Arc<UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = socket.readable() => if r.is_err() { continue },
            _ = stop.changed() => return,
        }
        // Drain what is queued (bounded, so a flood cannot starve the stop signal).
        for _ in 0..256 {
            let (n, src) = match socket.try_recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep serving.
                    debug!(error = %e, "recv error");
                    continue;
                }
            };
            let action = shared.handle(
                slot,
                &buf[..n],
                src,
                Instant::now(),
                natkit_daemon::unix_now(),
            );
            shared.execute(action, &buf).await;
        }
    }
}

/// Sends now if the socket is writable, else waits for it.
async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    match socket.try_send_to(bytes, to) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.send_to(bytes, to).await,
        r => r,
    }
}

/// Expires allocations, permissions and channel bindings once a second.
async fn janitor(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        shared.reload_revocations();
        let expired: Vec<Arc<Allocation>> = {
            let revoked = shared.revoked.lock().expect("revoked lock").clone();
            let mut table = shared.table.lock().expect("table lock");
            let mut gone = Vec::new();
            table.allocations.retain(|_, a| {
                let mut st = a.state.lock().expect("state lock");
                if st.is_expired(now) || revoked.is_user_revoked(&a.user) {
                    gone.push(Arc::clone(a));
                    false
                } else {
                    st.prune(now);
                    true
                }
            });
            for a in &gone {
                table.quotas.release(&a.user);
                table.relayed.remove(&a.relayed);
            }
            let gone_owners: Vec<SocketAddr> = gone.iter().map(|a| a.client).collect();
            table.drop_reservations(|r| now < r.expires && !gone_owners.contains(&r.owner));
            shared
                .metrics
                .reservations_active
                .set(table.reservations.len() as i64);
            gone
        };
        for a in expired {
            shared.metrics.allocations_active.dec();
            info!(user = %printable(&a.user), relayed = %a.relayed, "allocation expired");
        }
    }
}

thread_local! {
    /// Receive buffer of the relay tasks on this worker thread, with 4 bytes of headroom so a
    /// ChannelData header is written in front of the payload without copying. Shared by all
    /// allocations: an idle allocation holds no buffer.
    static RELAY_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 4 + MAX_DATAGRAM]);
}

/// What one datagram from a peer turned into.
enum PeerDatagram {
    Sent,
    /// The client's socket was not writable right now: send this when it is.
    Pending(Vec<u8>, usize),
    Dropped,
}

/// Reads datagrams from peers on one relay socket and forwards them to the client.
///
/// Waits for readiness, then drains the socket into [`RELAY_BUF`] and sends synchronously, so
/// the common case does no allocation, no copy and no await per datagram.
async fn relay_task(
    socket: Arc<UdpSocket>,
    primary: Arc<UdpSocket>,
    client: SocketAddr,
    state: Arc<Mutex<AllocState>>,
    metrics: RelayMetrics,
) {
    let counters = metrics.direction("peer_to_client");
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        loop {
            let outcome = RELAY_BUF.with_borrow_mut(|buf| {
                let (n, peer) = match socket.try_recv_from(&mut buf[4..]) {
                    Ok(v) => v,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                    Err(e) => {
                        // ICMP errors surface here; keep serving.
                        debug!(error = %e, "relay socket recv error");
                        return Some(PeerDatagram::Dropped);
                    }
                };
                let now = Instant::now();
                let channel = {
                    let st = state.lock().expect("state lock");
                    if !st.has_permission(peer.ip(), now) {
                        metrics.drop("no_permission");
                        return Some(PeerDatagram::Dropped);
                    }
                    st.peer_channel(peer, now)
                };
                let framed: &[u8] = match channel {
                    Some(number) if n <= u16::MAX as usize => {
                        buf[..4].copy_from_slice(&wire::channel_data_header(number, n));
                        &buf[..4 + n]
                    }
                    _ => {
                        let msg = wire::build(
                            TransactionId::new(),
                            MessageType::new(METHOD_DATA, CLASS_INDICATION),
                            vec![
                                Box::new(XorMappedAddressAs(peer, ATTR_XOR_PEER_ADDRESS)),
                                Box::new(Data(buf[4..4 + n].to_vec())),
                            ],
                        );
                        return Some(match primary.try_send_to(&msg, client) {
                            Ok(_) => {
                                counters.relayed(n);
                                PeerDatagram::Sent
                            }
                            Err(_) => PeerDatagram::Pending(msg, n),
                        });
                    }
                };
                Some(match primary.try_send_to(framed, client) {
                    Ok(_) => {
                        counters.relayed(n);
                        PeerDatagram::Sent
                    }
                    Err(_) => PeerDatagram::Pending(framed.to_vec(), n),
                })
            });
            match outcome {
                None => break,
                Some(PeerDatagram::Pending(bytes, n)) => {
                    match primary.send_to(&bytes, client).await {
                        Ok(_) => counters.relayed(n),
                        Err(e) => debug!(error = %e, %client, "send to client failed"),
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// An XOR address attribute of any type (XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS, ...).
struct XorMappedAddressAs(SocketAddr, AttrType);

impl Setter for XorMappedAddressAs {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        XorMappedAddress {
            ip: self.0.ip(),
            port: self.0.port(),
        }
        .add_to_as(m, self.1)
    }
}

/// A plain address attribute of any type (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS).
struct MappedAddressAs(SocketAddr, AttrType);

impl Setter for MappedAddressAs {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        MappedAddress {
            ip: self.0.ip(),
            port: self.0.port(),
        }
        .add_to_as(m, self.1)
    }
}

impl Shared {
    async fn execute(&self, action: Action, buf: &[u8]) {
        match action {
            Action::None => {}
            Action::Reply { from, to, bytes } => {
                if let Some((socket, _)) = self.sockets.get(&from) {
                    if let Err(e) = send(socket, &bytes, to).await {
                        debug!(error = %e, %to, "reply failed");
                    }
                }
            }
            Action::Relay { socket, to, range } => {
                let len = range.len();
                match send(&socket, &buf[range], to).await {
                    Ok(_) => self.client_to_peer.relayed(len),
                    Err(e) => debug!(error = %e, %to, "relay to peer failed"),
                }
            }
            Action::RelayOwned {
                socket,
                to,
                payload,
            } => match socket.send_to(&payload, to).await {
                Ok(_) => self.client_to_peer.relayed(payload.len()),
                Err(e) => debug!(error = %e, %to, "relay to peer failed"),
            },
        }
    }

    fn reply(&self, from: Slot, to: SocketAddr, bytes: Vec<u8>) -> Action {
        Action::Reply { from, to, bytes }
    }

    /// Decides what to do with one datagram received on `slot` from `src`.
    fn handle(&self, slot: Slot, buf: &[u8], src: SocketAddr, now: Instant, unix: u64) -> Action {
        let Some(&first) = buf.first() else {
            self.metrics.drop("not_stun");
            return Action::None;
        };
        if wire::is_channel_data(first) {
            if slot != Slot::PRIMARY {
                self.metrics.drop("unexpected");
                return Action::None;
            }
            return self.handle_channel_data(buf, src, now);
        }
        if first & 0xc0 != 0 || !is_message(buf) {
            self.metrics.drop("not_stun");
            return Action::None;
        }
        // Counted on the raw bytes before anything is decoded: a datagram of 10,000 attributes
        // used to cost 13 ms of CPU and a 20-32 KB 420 answer.
        if wire::attribute_count(buf) > MAX_ATTRIBUTES {
            self.metrics.drop("too_many_attributes");
            return Action::None;
        }
        let mut m = Message::new();
        m.raw = buf.to_vec();
        if m.decode().is_err() {
            self.metrics.drop("malformed");
            return Action::None;
        }
        if m.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&m).is_err() {
            self.metrics.drop("bad_fingerprint");
            return Action::None;
        }
        // What anyone gets without a credential (a Binding answer, a 401 challenge) is limited
        // per source IP: spoofed requests cannot aim a stream of answers at a victim.
        let free = m.typ.method == METHOD_BINDING || !m.contains(ATTR_MESSAGE_INTEGRITY);
        if m.typ.class == CLASS_REQUEST
            && free
            && !self
                .answers
                .lock()
                .expect("answers lock")
                .allow(&src.ip(), now)
        {
            self.metrics.drop("rate_limited");
            return Action::None;
        }
        let unknown = wire::unknown_required(&m);
        if m.typ.class == CLASS_REQUEST {
            if !unknown.is_empty() {
                debug!(%src, ?unknown, "420 unknown comprehension-required attributes");
                let listed = unknown.into_iter().take(MAX_UNKNOWN_LISTED).collect();
                let bytes = wire::error(&m, 420, vec![Box::new(UnknownAttributes(listed))]);
                return self.reply(slot, src, bytes);
            }
            if m.typ.method == METHOD_BINDING {
                return self.handle_binding(slot, &m, src);
            }
            if slot != Slot::PRIMARY {
                self.metrics.drop("unexpected");
                return Action::None;
            }
            let bytes = match m.typ.method {
                METHOD_ALLOCATE => self.handle_allocate(&mut m, src, now, unix),
                METHOD_REFRESH => self.handle_refresh(&mut m, src, now, unix),
                METHOD_CREATE_PERMISSION => self.handle_create_permission(&mut m, src, now, unix),
                METHOD_CHANNEL_BIND => self.handle_channel_bind(&mut m, src, now, unix),
                _ => wire::error(&m, 400, vec![]),
            };
            return self.reply(Slot::PRIMARY, src, bytes);
        }
        if m.typ.class == CLASS_INDICATION && m.typ.method == METHOD_SEND && slot == Slot::PRIMARY {
            if !unknown.is_empty() {
                self.metrics.drop("malformed");
                return Action::None;
            }
            return self.handle_send(&m, src, now);
        }
        // Responses, other indications (Binding keepalives included): nothing to answer.
        self.metrics.drop("unexpected");
        Action::None
    }

    fn handle_binding(&self, slot: Slot, m: &Message, src: SocketAddr) -> Action {
        self.metrics.binding_requests.inc();
        let change = match m.get(ATTR_CHANGE_REQUEST) {
            Ok(v) => match ChangeRequest::parse(&v) {
                Some(c) => c,
                None => return self.reply(slot, src, wire::error(m, 400, vec![])),
            },
            Err(_) => ChangeRequest::default(),
        };
        let plan = match rfc5780::plan(slot, change, self.have_alt_ip) {
            Ok(p) => p,
            Err(PlanError::NoAlternateIp) => {
                let bytes = wire::error(
                    m,
                    420,
                    vec![Box::new(UnknownAttributes(vec![ATTR_CHANGE_REQUEST]))],
                );
                return self.reply(slot, src, bytes);
            }
        };
        let Some((_, origin)) = self.sockets.get(&plan.respond_from) else {
            return self.reply(slot, src, wire::error(m, 500, vec![]));
        };
        let mut attrs: Vec<Box<dyn Setter>> = vec![
            Box::new(XorMappedAddress {
                ip: src.ip(),
                port: src.port(),
            }),
            Box::new(MappedAddressAs(src, ATTR_MAPPED_ADDRESS)),
            Box::new(MappedAddressAs(*origin, ATTR_RESPONSE_ORIGIN)),
        ];
        if let Some(other) = plan.other_address.and_then(|s| self.sockets.get(&s)) {
            attrs.push(Box::new(MappedAddressAs(other.1, ATTR_OTHER_ADDRESS)));
        }
        // No SOFTWARE: an answer anyone can ask for carries nothing it does not need.
        let bytes = wire::respond(m, CLASS_SUCCESS_RESPONSE, attrs);
        self.reply(plan.respond_from, src, bytes)
    }

    fn challenge(&self, m: &Message, code: u16, src: SocketAddr, unix: u64) -> Vec<u8> {
        wire::error(
            m,
            code,
            vec![
                Box::new(TextAttribute::new(ATTR_REALM, self.realm.clone())),
                Box::new(TextAttribute::new(
                    ATTR_NONCE,
                    self.nonce_key.issue(src, unix),
                )),
            ],
        )
    }

    fn is_revoked(&self, user: &str) -> bool {
        self.revoked
            .lock()
            .expect("revoked lock")
            .is_user_revoked(user)
    }

    /// Re-reads the revocation file if it changed (the janitor calls this once a second).
    fn reload_revocations(&self) {
        let Some(file) = &self.revoked_file else {
            return;
        };
        let mut file = file.lock().expect("revoked file lock");
        match file.reload() {
            Ok(Some(r)) => {
                info!(path = %file.path().display(), "revocations reloaded");
                *self.revoked.lock().expect("revoked lock") = r;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(path = %file.path().display(), error = %e, "revocation file not reloaded; the previous entries stay")
            }
        }
    }

    fn auth_failed(&self, reason: AuthFailure) {
        self.metrics
            .auth_failures
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The long-term credential mechanism (RFC 8489 section 9.2.4) with TURN REST API usernames.
    fn authenticate(&self, m: &mut Message, src: SocketAddr, unix: u64) -> Result<Authed, Vec<u8>> {
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return Err(self.challenge(m, 401, src, unix));
        }
        let text = |t| TextAttribute::get_from_as(m, t).map(|a| a.text);
        let (Ok(username), Ok(realm), Ok(nonce)) =
            (text(ATTR_USERNAME), text(ATTR_REALM), text(ATTR_NONCE))
        else {
            self.auth_failed(AuthFailure::MissingAttribute);
            return Err(wire::error(m, 400, vec![]));
        };
        if username.len() > MAX_USERNAME_BYTES {
            self.auth_failed(AuthFailure::MalformedUsername);
            debug!(%src, bytes = username.len(), "400 username too long");
            return Err(wire::error(m, 400, vec![]));
        }
        // The key is derived with our realm; a request naming another one is challenged again
        // with ours rather than accepted because the key happened to match.
        if realm != self.realm {
            self.auth_failed(AuthFailure::WrongRealm);
            debug!(%src, realm = %printable(&realm), "401 wrong realm");
            return Err(self.challenge(m, 401, src, unix));
        }
        if self.nonce_key.verify(&nonce, src, unix) != NonceCheck::Valid {
            self.auth_failed(AuthFailure::StaleNonce);
            return Err(self.challenge(m, 438, src, unix));
        }
        let user = match credentials::check_username(&username, unix) {
            Ok(v) if self.is_revoked(v.user_id) => {
                self.auth_failed(AuthFailure::Revoked);
                debug!(%src, user = %printable(v.user_id), "401 revoked user");
                return Err(self.challenge(m, 401, src, unix));
            }
            Ok(v) => v.user_id.to_owned(),
            Err(e) => {
                let reason = match e {
                    CredentialError::Expired { .. } => AuthFailure::Expired,
                    _ => AuthFailure::MalformedUsername,
                };
                self.auth_failed(reason);
                debug!(%src, error = %e, "401");
                return Err(self.challenge(m, 401, src, unix));
            }
        };
        let passwords: Vec<String> =
            credentials::candidate_passwords(&self.secrets, &username).collect();
        for password in passwords {
            let mi = MessageIntegrity::new_long_term_integrity(
                username.clone(),
                self.realm.clone(),
                password,
            );
            if mi.check(m).is_ok() {
                let user = if user.is_empty() {
                    username.clone()
                } else {
                    user
                };
                return Ok(Authed {
                    username,
                    user,
                    key: mi.0,
                });
            }
        }
        self.auth_failed(AuthFailure::BadIntegrity);
        debug!(%src, username = %printable(&username), "401 bad message integrity");
        Err(self.challenge(m, 401, src, unix))
    }

    fn allocation(&self, src: SocketAddr) -> Option<Arc<Allocation>> {
        self.table
            .lock()
            .expect("table lock")
            .allocations
            .get(&src)
            .cloned()
    }

    /// Authenticates a request on an existing allocation (Refresh, CreatePermission, ChannelBind).
    fn authenticate_on_allocation(
        &self,
        m: &mut Message,
        src: SocketAddr,
        unix: u64,
    ) -> Result<(Arc<Allocation>, Vec<u8>), Vec<u8>> {
        let auth = self.authenticate(m, src, unix)?;
        let Some(a) = self.allocation(src) else {
            return Err(wire::error(m, 437, vec![]));
        };
        // RFC 8656 wants the allocation's username on every later request. With REST API
        // credentials the username is "expiry:user", so a renewed credential for the same user
        // differs only in its expiry: accepting it lets a client rotate credentials on a live
        // allocation (webrtc-rs does so on set_configuration) instead of re-allocating.
        if a.user != auth.user {
            self.auth_failed(AuthFailure::WrongCredentials);
            return Err(wire::error(m, 441, vec![]));
        }
        Ok((a, auth.key))
    }

    fn success(&self, m: &Message, mut attrs: Vec<Box<dyn Setter>>, key: Vec<u8>) -> Vec<u8> {
        attrs.push(Box::new(TextAttribute::new(
            ATTR_SOFTWARE,
            SOFTWARE.to_owned(),
        )));
        attrs.push(Box::new(MessageIntegrity(key)));
        wire::respond(m, CLASS_SUCCESS_RESPONSE, attrs)
    }

    fn allocate_success(
        &self,
        m: &Message,
        a: &Allocation,
        lifetime: Duration,
        src: SocketAddr,
        token: Option<[u8; 8]>,
    ) -> Vec<u8> {
        let mut attrs: Vec<Box<dyn Setter>> = vec![
            Box::new(RelayedAddress {
                ip: a.relayed.ip(),
                port: a.relayed.port(),
            }),
            Box::new(Lifetime(lifetime)),
            Box::new(XorMappedAddress {
                ip: src.ip(),
                port: src.port(),
            }),
        ];
        if let Some(t) = token {
            attrs.push(Box::new(wire::RawAttribute(
                ATTR_RESERVATION_TOKEN,
                t.to_vec(),
            )));
        }
        self.success(m, attrs, a.key.clone())
    }

    fn handle_allocate(
        &self,
        m: &mut Message,
        src: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Vec<u8> {
        let auth = match self.authenticate(m, src, unix) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        if let Some(a) = self.allocation(src) {
            // A retransmitted Allocate whose success response was lost gets the same answer.
            if a.allocate_tid == m.transaction_id && a.username == auth.username {
                let remaining = a.state.lock().expect("state lock").remaining(now);
                return self.allocate_success(m, &a, remaining, src, None);
            }
            return wire::error(m, 437, vec![]);
        }
        let mut transport = RequestedTransport::default();
        if transport.get_from(m).is_err() {
            return wire::error(m, 400, vec![]);
        }
        if transport.protocol != PROTO_UDP {
            return wire::error(m, 442, vec![]);
        }
        // EVEN-PORT: one byte whose top bit (R) asks for the next port to be reserved.
        let even = m.get(ATTR_EVEN_PORT).ok();
        let reserve = even
            .as_ref()
            .is_some_and(|v| v.first().is_some_and(|b| b & 0x80 != 0));
        let token = m.get(ATTR_RESERVATION_TOKEN).ok();
        if token.is_some() && (even.is_some() || m.contains(ATTR_REQUESTED_ADDRESS_FAMILY)) {
            return wire::error(m, 400, vec![]);
        }
        let want = match token {
            Some(t) => match <[u8; 8]>::try_from(t.as_slice()) {
                Ok(t) => PortRequest::Reserved(t),
                Err(_) => return wire::error(m, 400, vec![]),
            },
            None if reserve => PortRequest::EvenPair,
            None if even.is_some() => PortRequest::Even,
            None => PortRequest::Any,
        };
        let mut family = RequestedAddressFamily::default();
        if m.contains(ATTR_REQUESTED_ADDRESS_FAMILY) {
            if family.get_from(m).is_err() {
                return wire::error(m, 440, vec![]);
            }
            let ours_v6 = self.relay_ip.is_ipv6();
            if (family == REQUESTED_FAMILY_IPV6) != ours_v6
                || (family == REQUESTED_FAMILY_IPV4) == ours_v6
            {
                return wire::error(m, 440, vec![]);
            }
        }

        let mut lifetime_attr = Lifetime::default();
        let requested = lifetime_attr.get_from(m).ok().map(|_| lifetime_attr.0);
        let lifetime = granted_lifetime(requested, self.max_lifetime);

        if let Err(q) = self
            .table
            .lock()
            .expect("table lock")
            .quotas
            .acquire(&auth.user)
        {
            self.metrics
                .quota_rejections
                .with_label_values(&[q.scope()])
                .inc();
            info!(user = %printable(&auth.user), error = %q, "486 allocation quota reached");
            return wire::error(m, 486, vec![]);
        }
        // A reserved port counts against the quota like an allocation.
        if want == PortRequest::EvenPair {
            let mut table = self.table.lock().expect("table lock");
            if let Err(q) = table.quotas.acquire(&auth.user) {
                table.quotas.release(&auth.user);
                drop(table);
                self.metrics
                    .quota_rejections
                    .with_label_values(&[q.scope()])
                    .inc();
                info!(user = %printable(&auth.user), error = %q, "486 no quota left for a reserved port");
                return wire::error(m, 486, vec![]);
            }
        }
        let (relay_socket, token) = match self.relay_socket_for(want, now, &auth.user, src) {
            Some(s) => s,
            None => {
                if want == PortRequest::EvenPair {
                    self.table
                        .lock()
                        .expect("table lock")
                        .quotas
                        .release(&auth.user);
                }
                self.table
                    .lock()
                    .expect("table lock")
                    .quotas
                    .release(&auth.user);
                warn!(range = ?self.relay_ports, "508 no free relay port");
                return wire::error(m, 508, vec![]);
            }
        };
        let port = match relay_socket.local_addr() {
            Ok(a) => a.port(),
            Err(_) => {
                self.table
                    .lock()
                    .expect("table lock")
                    .quotas
                    .release(&auth.user);
                return wire::error(m, 500, vec![]);
            }
        };
        let relayed = SocketAddr::new(self.relay_ip, port);
        let state = Arc::new(Mutex::new(AllocState::new(lifetime, now)));
        let primary = Arc::clone(&self.sockets[&Slot::PRIMARY].0);
        let task = tokio::spawn(relay_task(
            Arc::clone(&relay_socket),
            primary,
            src,
            Arc::clone(&state),
            self.metrics.clone(),
        ))
        .abort_handle();
        let a = Arc::new(Allocation {
            client: src,
            username: auth.username,
            user: auth.user,
            key: auth.key,
            allocate_tid: m.transaction_id,
            relay_socket,
            relayed,
            state,
            task,
        });
        let reply = self.allocate_success(m, &a, lifetime, src, token);
        info!(user = %printable(&a.user), client = %src, %relayed, lifetime_s = lifetime.as_secs(), "allocation created");
        {
            let mut table = self.table.lock().expect("table lock");
            table.relayed.insert(a.relayed);
            table.allocations.insert(src, a);
        }
        self.metrics.allocations_created.inc();
        self.metrics.allocations_active.inc();
        reply
    }

    /// A relay socket as the Allocate asked for, and the token of a reserved next port if any.
    fn relay_socket_for(
        &self,
        want: PortRequest,
        now: Instant,
        user: &str,
        client: SocketAddr,
    ) -> Option<(Arc<UdpSocket>, Option<[u8; 8]>)> {
        match want {
            PortRequest::Any => self.bind_relay_port(false, false).map(|(s, _)| (s, None)),
            PortRequest::Even => self.bind_relay_port(true, false).map(|(s, _)| (s, None)),
            PortRequest::EvenPair => {
                let (s, next) = self.bind_relay_port(true, true)?;
                let token: [u8; 8] = rand::random();
                let next = next.expect("pair requested");
                let mut table = self.table.lock().expect("table lock");
                table.reservations.insert(
                    token,
                    Reservation {
                        socket: next,
                        expires: now + RESERVATION_LIFETIME,
                        user: user.to_owned(),
                        owner: client,
                    },
                );
                self.metrics
                    .reservations_active
                    .set(table.reservations.len() as i64);
                Some((s, Some(token)))
            }
            PortRequest::Reserved(token) => {
                let mut table = self.table.lock().expect("table lock");
                let taken = table.reservations.remove(&token);
                self.metrics
                    .reservations_active
                    .set(table.reservations.len() as i64);
                match taken {
                    Some(r) => {
                        // The new allocation holds its own quota; the reservation's goes back.
                        table.quotas.release(&r.user);
                        (now < r.expires).then_some((r.socket, None))
                    }
                    None => None,
                }
            }
        }
    }

    /// Binds a socket on a free port of the relay range, starting at a random port; with `pair`,
    /// also the port after it (for an even port and its reserved successor).
    fn bind_relay_port(
        &self,
        even: bool,
        pair: bool,
    ) -> Option<(Arc<UdpSocket>, Option<Arc<UdpSocket>>)> {
        let (lo, hi) = (
            *self.relay_ports.start() as u32,
            *self.relay_ports.end() as u32,
        );
        let span = hi - lo + 1;
        let start = rand::random::<u32>() % span;
        for i in 0..span {
            let port = lo + (start + i) % span;
            if (even && port % 2 != 0) || (pair && port + 1 > hi) {
                continue;
            }
            let Ok(s) = bind_udp(SocketAddr::new(self.relay_bind_ip, port as u16)) else {
                continue;
            };
            if !pair {
                return Some((s, None));
            }
            if let Ok(next) = bind_udp(SocketAddr::new(self.relay_bind_ip, (port + 1) as u16)) {
                return Some((s, Some(next)));
            }
        }
        None
    }

    fn remove_allocation(&self, src: SocketAddr) {
        let removed = {
            let mut table = self.table.lock().expect("table lock");
            let a = table.allocations.remove(&src);
            if let Some(a) = &a {
                table.quotas.release(&a.user);
                table.relayed.remove(&a.relayed);
            }
            // Its reserved port goes with it (Allocate with R, then Refresh 0, held ports
            // outside any quota before).
            table.drop_reservations(|r| r.owner != src);
            self.metrics
                .reservations_active
                .set(table.reservations.len() as i64);
            a
        };
        if let Some(a) = removed {
            self.metrics.allocations_active.dec();
            info!(user = %printable(&a.user), relayed = %a.relayed, "allocation deleted by client");
        }
    }

    fn handle_refresh(&self, m: &mut Message, src: SocketAddr, now: Instant, unix: u64) -> Vec<u8> {
        let (a, key) = match self.authenticate_on_allocation(m, src, unix) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let mut family = RequestedAddressFamily::default();
        if family.get_from(m).is_ok() && (family == REQUESTED_FAMILY_IPV6) != a.relayed.is_ipv6() {
            return wire::error(m, 443, vec![]);
        }
        let mut lifetime_attr = Lifetime::default();
        let requested = lifetime_attr.get_from(m).ok().map(|_| lifetime_attr.0);
        let granted = if requested == Some(Duration::ZERO) {
            self.remove_allocation(src);
            Duration::ZERO
        } else {
            let l = granted_lifetime(requested, self.max_lifetime);
            a.state.lock().expect("state lock").refresh(l, now);
            l
        };
        self.success(m, vec![Box::new(Lifetime(granted))], key)
    }

    /// Checks peers against the policy; on refusal counts it and returns the 403.
    /// Is `peer` the relayed address of one of this relay's live allocations?
    fn is_relayed(&self, peer: SocketAddr) -> bool {
        let peer = SocketAddr::new(policy_canonical(peer.ip()), peer.port());
        self.table
            .lock()
            .expect("table lock")
            .relayed
            .contains(&peer)
    }

    fn refuse_peers(&self, m: &Message, peers: &[SocketAddr], a: &Allocation) -> Option<Vec<u8>> {
        for &p in peers {
            if p.is_ipv4() != a.relayed.is_ipv4() {
                return Some(wire::error(m, 443, vec![]));
            }
            if let Decision::Deny(reason) = self.policy.decide(p, self.is_relayed(p)) {
                self.metrics
                    .peer_refused
                    .with_label_values(&[reason.as_str()])
                    .inc();
                info!(user = %printable(&a.user), peer = %p, reason = reason.as_str(), "403 peer refused");
                return Some(wire::error(m, 403, vec![]));
            }
        }
        None
    }

    fn handle_create_permission(
        &self,
        m: &mut Message,
        src: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Vec<u8> {
        let (a, key) = match self.authenticate_on_allocation(m, src, unix) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let peers = match wire::peer_addresses(m) {
            Some(p) if !p.is_empty() && p.len() <= MAX_PEERS_PER_REQUEST => p,
            _ => return wire::error(m, 400, vec![]),
        };
        if let Some(reply) = self.refuse_peers(m, &peers, &a) {
            return reply;
        }
        let ips: Vec<IpAddr> = peers.iter().map(|p| p.ip()).collect();
        let added = a
            .state
            .lock()
            .expect("state lock")
            .add_permissions(&ips, now);
        if let Err(e) = added {
            debug!(user = %printable(&a.user), error = %e, "508 permission");
            return wire::error(m, 508, vec![]);
        }
        debug!(user = %printable(&a.user), ?peers, "permission installed");
        self.success(m, vec![], key)
    }

    fn handle_channel_bind(
        &self,
        m: &mut Message,
        src: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Vec<u8> {
        let (a, key) = match self.authenticate_on_allocation(m, src, unix) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let mut number = ChannelNumber::default();
        let peers = wire::peer_addresses(m);
        let (Ok(()), Some([peer])) = (number.get_from(m), peers.as_deref()) else {
            return wire::error(m, 400, vec![]);
        };
        if let Some(reply) = self.refuse_peers(m, &[*peer], &a) {
            return reply;
        }
        let bound = a
            .state
            .lock()
            .expect("state lock")
            .bind_channel(number.0, *peer, now);
        match bound {
            Ok(()) => {
                debug!(user = %printable(&a.user), channel = number.0, %peer, "channel bound");
                self.success(m, vec![], key)
            }
            Err(e @ ChannelBindError::Full) => {
                debug!(user = %printable(&a.user), error = %e, "508 channel bind");
                wire::error(m, 508, vec![])
            }
            Err(e) => {
                debug!(user = %printable(&a.user), error = %e, "400 channel bind");
                wire::error(m, 400, vec![])
            }
        }
    }

    fn handle_send(&self, m: &Message, src: SocketAddr, now: Instant) -> Action {
        let Some(a) = self.allocation(src) else {
            self.metrics.drop("no_allocation");
            return Action::None;
        };
        let peers = wire::peer_addresses(m);
        let (Some([peer]), Ok(data)) = (peers.as_deref(), m.get(ATTR_DATA)) else {
            self.metrics.drop("malformed");
            return Action::None;
        };
        if let Decision::Deny(reason) = self.policy.decide(*peer, self.is_relayed(*peer)) {
            self.metrics
                .peer_refused
                .with_label_values(&[reason.as_str()])
                .inc();
            return Action::None;
        }
        if !a
            .state
            .lock()
            .expect("state lock")
            .has_permission(peer.ip(), now)
        {
            self.metrics.drop("no_permission");
            return Action::None;
        }
        Action::RelayOwned {
            socket: Arc::clone(&a.relay_socket),
            to: *peer,
            payload: data,
        }
    }

    fn handle_channel_data(&self, buf: &[u8], src: SocketAddr, now: Instant) -> Action {
        let Some((number, payload)) = wire::parse_channel_data(buf) else {
            self.metrics.drop("malformed");
            return Action::None;
        };
        let Some(a) = self.allocation(src) else {
            self.metrics.drop("no_allocation");
            return Action::None;
        };
        let Some(peer) = a
            .state
            .lock()
            .expect("state lock")
            .channel_peer(number, now)
        else {
            self.metrics.drop("no_permission");
            return Action::None;
        };
        Action::Relay {
            socket: Arc::clone(&a.relay_socket),
            to: peer,
            range: 4..4 + payload.len(),
        }
    }
}
