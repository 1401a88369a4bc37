//! The relay's async shell: it binds the sockets, owns the clock and the relayed sockets' pollers
//! (`relayed`; the ports an Allocate opens are in `relay_ports`), and moves bytes between the sockets and the protocol core
//! ([`crate::core`]), which decides everything. The clients' side of UDP is here, read and
//! written in batches (`udp`); TCP and TLS connections are in [`crate::stream`].
//!
//! Why not `turn::server::Server`: it stores a nonce per unauthenticated request and never
//! evicts them (a flood grows memory without bound), answers expired and forged credentials with
//! 400 instead of 401, has no hook for a peer policy, quotas or RFC 5780, and truncates datagrams
//! at 1500 bytes. natkit keeps the `turn`/`stun` crates' wire types and replaces the server.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use natkit_daemon::Clock;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::RelayConfig;
use crate::core::{Change, CoreConfig, FiveTuple, Output, Payload, RelayCore, Transport};
use crate::credentials::{self, Secrets};
use crate::error::RelayError;
use crate::family::{Family, PerFamily};
use crate::kernel_path::{KernelPath, Offload};
use crate::metrics::{Dropped, RelayMetrics};
use crate::policy::{OwnSockets, PeerPolicy};
use crate::queue::StreamQueue;
use crate::relayed::{ClientSink, Poller};
use crate::revocation::{RevocationFile, Revocations};
use crate::rfc5780::Slot;
pub(crate) use crate::shared::Shared;
use crate::stream;
use crate::tls::TlsKeys;
use crate::udp::{Datagram, RecvBatch, Udp, SLOTS};

pub use crate::core::{printable, MAX_ATTRIBUTES, MAX_PEERS_PER_REQUEST, MAX_USERNAME_BYTES};
pub use crate::sockets::{advertised_ip, advertised_ip_of};
use crate::sockets::{advertised_or_loopback, bind_tcp, local_addresses, Stack};
pub use crate::tls::{announce_tls, reload_tls_on_change, reload_tls_on_sighup};

/// Where a running relay listens, as it tells clients: its first address family (IPv4 when
/// it serves both) and, for a dual-stack relay, the other one in `second`.
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
    /// TURN over TCP (the primary port), when on.
    pub tcp: Option<SocketAddr>,
    /// TURN over TLS, when on, and the name `turns:` URLs carry.
    pub tls: Option<(SocketAddr, String)>,
    /// The other address family's listener, when the relay serves both.
    pub second: Option<FamilyAddresses>,
}

/// One address family's listener, as clients see it.
#[derive(Debug, Clone)]
pub struct FamilyAddresses {
    pub primary: SocketAddr,
    pub alt_port: SocketAddr,
    pub alt_ip: Option<(SocketAddr, SocketAddr)>,
    /// The IP written into this family's XOR-RELAYED-ADDRESS.
    pub relay_ip: IpAddr,
    pub tcp: Option<SocketAddr>,
}

impl RelayAddresses {
    /// How clients reach this relay, for ICE server URLs; `host` overrides the advertised IP
    /// (a DNS name).
    pub fn endpoints(&self, host: Option<&str>) -> credentials::RelayEndpoints {
        credentials::RelayEndpoints {
            host: host.map_or_else(|| self.primary.ip().to_string(), str::to_owned),
            port: self.primary.port(),
            tcp: self.tcp.is_some(),
            tls: self.tls.as_ref().map(|(a, name)| (name.clone(), a.port())),
        }
    }

    /// How clients reach the second address family's listener (by its IP; `turns:` is in
    /// [`RelayAddresses::endpoints`]), for a dual-stack relay.
    pub fn endpoints_second(&self) -> Option<credentials::RelayEndpoints> {
        let s = self.second.as_ref()?;
        Some(credentials::RelayEndpoints {
            host: s.primary.ip().to_string(),
            port: s.primary.port(),
            tcp: s.tcp.is_some(),
            tls: None,
        })
    }
}

/// A bound relay, ready to [`run`](Relay::run).
pub struct Relay {
    shared: Arc<Shared>,
    addresses: RelayAddresses,
    /// One per address family.
    tcp: Vec<TcpListener>,
    tls: Option<TcpListener>,
    /// Set when `run` stops: every connection, its own or a [`StreamEntry`]'s, ends.
    stop: watch::Sender<bool>,
}

/// Serves TURN connections that another server accepted, decrypted and recognised (the one
/// port natkit-signal shares between HTTPS and TURN over TLS): each is served as the relay's
/// own listener would serve it, until it closes or the relay stops.
#[derive(Clone)]
pub struct StreamEntry {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

impl StreamEntry {
    /// Serves `io`, a connection from `client` to this host's `port` over `transport` (`Tls`
    /// for a decrypted TLS stream); `io` starts with the connection's first bytes.
    pub async fn serve<IO>(&self, io: IO, client: SocketAddr, port: u16, transport: Transport)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let five = FiveTuple {
            transport,
            client,
            server: SocketAddr::new(self.shared.server_ip(client), port),
        };
        stream::run(Arc::clone(&self.shared), io, five, self.stop.clone()).await
    }
}

pub(crate) use crate::shared::RelaySocket;

/// Starts a relay's drain from outside its [`Relay::run`] (natkit-relay calls it on SIGUSR1).
#[derive(Clone)]
pub struct DrainHandle(Arc<Shared>);

impl DrainHandle {
    /// Refuses new allocations from now on (300 Try Alternate with `drain_alternate`, else 486);
    /// the relay's `run` returns once the last allocation has ended or `drain_timeout` passed.
    pub fn start(&self) {
        let mut started = self.0.drain_started.lock().expect("drain lock");
        started.get_or_insert_with(Instant::now);
        self.0
            .core
            .lock()
            .expect("core lock")
            .start_drain(crate::core::Drain {
                alternate: self.0.drain.alternate,
            });
    }
}

impl Relay {
    /// Binds every socket the configuration asks for and reads the TLS keys. Nothing is served
    /// until [`Relay::run`].
    pub async fn bind(cfg: RelayConfig, metrics: RelayMetrics) -> Result<Relay, RelayError> {
        Self::bind_with_clock(cfg, metrics, Clock::system()).await
    }

    /// [`Relay::bind`] with the clock its decisions read (a test's manual clock moves
    /// credential expiry, lifetimes and permissions without sleeping).
    pub async fn bind_with_clock(
        cfg: RelayConfig,
        metrics: RelayMetrics,
        clock: Clock,
    ) -> Result<Relay, RelayError> {
        let secrets = cfg.secrets.clone();
        // Read before any socket is bound: a bad certificate is a one-line error at start.
        let tls_keys = match &cfg.streams.tls {
            Some(t) => Some(Arc::new(TlsKeys::from_config(t)?)),
            None => None,
        };
        // One primary socket per core in an SO_REUSEPORT group: clients' ChannelData is read by
        // as many tasks as there are worker threads instead of one.
        let listeners = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut stacks: Vec<Stack> = Vec::new();
        for listen in &cfg.listen {
            let family = Family::of(listen.addr.ip());
            let Some(advertised) = advertised_ip_of(listen).or_else(|| {
                // A family the user asked for is served even without a route (on its own
                // family's loopback address then, not the first listener's IP).
                (!listen.if_available).then(|| advertised_or_loopback(listen))
            }) else {
                info!(listen = %listen.addr, "no {} default route: not listening in this family (set --listen or --public-ip to force it)", family.as_str());
                continue;
            };
            match Stack::bind(&cfg, listen, advertised, listeners) {
                Ok(stack) => stacks.push(stack),
                Err(e) if listen.if_available => {
                    info!(listen = %listen.addr, error = %e, "{} unavailable on this host: not listening in this family", family.as_str());
                }
                Err(e) => return Err(e),
            }
        }
        if stacks.is_empty() {
            return Err(RelayError::NoListener);
        }
        let tls = match &cfg.streams.tls {
            Some(t) => Some(bind_tcp(t.listen, false)?),
            None => None,
        };
        let tls_port = match &tls {
            Some(l) => Some(l.local_addr().map_err(RelayError::LocalAddr)?.port()),
            None => None,
        };

        let mut sockets = HashMap::new();
        let mut origins = HashMap::new();
        let mut primary_extra = Vec::new();
        let mut tcp = Vec::new();
        let mut relay_ips = PerFamily::default();
        let mut primary_addrs = PerFamily::default();
        let mut bound_v4 = None;
        let mut relay_bind_ips = PerFamily::default();
        let mut own_ips = Vec::new();
        let mut own_nets = Vec::new();
        let mut own_ports = Vec::new();
        let mut families = Vec::new();
        for st in stacks {
            let f = st.family;
            for (slot, socket, origin) in st.sockets {
                origins.insert((f, slot), origin);
                sockets.insert((f, slot), socket);
            }
            primary_extra.extend(st.extra.into_iter().map(|s| (f, s)));
            *relay_ips.get_mut(f) = Some(st.advertised);
            *primary_addrs.get_mut(f) = Some(st.addresses.primary);
            *relay_bind_ips.get_mut(f) = Some(st.listen.addr.ip());
            if f == Family::V4 {
                bound_v4 = Some(st.bound);
            }
            own_ips.extend([st.listen.addr.ip(), st.advertised]);
            // A wildcard listener answers on every local address: all of them are the relay.
            if st.listen.addr.ip().is_unspecified() && own_nets.is_empty() {
                own_nets = local_addresses();
            }
            own_ports.extend([st.addresses.primary.port(), st.addresses.alt_port.port()]);
            if let Some(l) = st.tcp {
                tcp.push(l);
            }
            families.push(st.addresses);
        }
        own_ports.extend(tls_port);
        own_ports.sort_unstable();
        own_ports.dedup();
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
                ports: own_ports,
            },
        );
        let mut families = families.into_iter();
        let first = families.next().expect("one stack at least");
        let addresses = RelayAddresses {
            primary: first.primary,
            alt_port: first.alt_port,
            alt_ip: first.alt_ip,
            relay_ip: first.relay_ip,
            tcp: first.tcp,
            tls: tls_port
                .zip(tls_keys.as_ref())
                .map(|(port, k)| (SocketAddr::new(first.relay_ip, port), k.name().to_owned())),
            second: families.next(),
        };
        let mut core = RelayCore::new(
            CoreConfig {
                realm: cfg.realm.clone(),
                secrets,
                policy,
                relay_ips,
                default_family: cfg.default_family,
                max_lifetime: cfg.max_lifetime,
                user_quota: cfg.user_quota,
                total_quota: cfg.total_quota,
                answers_per_second: cfg.answers_per_second,
                origins,
            },
            metrics.clone(),
            rand::random(),
        );
        core.set_revocations(revoked);
        let primaries = PerFamily {
            v4: sockets.get(&(Family::V4, Slot::PRIMARY)).cloned(),
            v6: sockets.get(&(Family::V6, Slot::PRIMARY)).cloned(),
        };
        let pollers = (0..listeners)
            .map(|_| {
                Poller::new(primaries.clone(), metrics.clone(), clock.clone())
                    .map(Arc::new)
                    .map_err(RelayError::Poller)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The packets' own destination: the bound address, not an advertised public IP.
        let kernel = match (&cfg.kernel_path[..], bound_v4, relay_bind_ips.v4) {
            ([], ..) => None,
            (ifaces, Some(SocketAddr::V4(server)), Some(IpAddr::V4(relay_ip)))
                if !relay_ip.is_unspecified() =>
            {
                let k = KernelPath::start(ifaces, server, relay_ip, metrics.clone())?;
                info!(interfaces = %ifaces.join(","), %server, "kernel path attached: UDP clients' ChannelData to and from bound IPv4 peers is relayed in the kernel (IPv6 in userspace)");
                Some(Mutex::new(k))
            }
            // The configuration refuses this too; a RelayConfig made in code may not have.
            (ifaces, ..) => {
                return Err(RelayError::KernelPath {
                    ifaces: ifaces.join(","),
                    source: "the kernel path needs the relay to listen on one IPv4 address".into(),
                })
            }
        };
        let shared = Arc::new(Shared {
            kernel,
            pollers,
            next_poller: Default::default(),
            core: Mutex::new(core),
            relay_bind_ips,
            relay_ports: cfg.relay_ports.clone(),
            sockets,
            primary_extra,
            primary_addrs,
            revoked_file: revoked_file.map(Mutex::new),
            client_to_peer: Transport::ALL
                .map(|t| Family::ALL.map(|f| metrics.direction("client_to_peer", t, f))),
            metrics,
            streams: cfg.streams.clone(),
            tls: tls_keys,
            drain: cfg.drain.clone(),
            drain_started: Mutex::new(None),
            drained: tokio::sync::Notify::new(),
            clock,
        });
        Ok(Relay {
            shared,
            addresses,
            tcp,
            tls,
            stop: watch::channel(false).0,
        })
    }

    pub fn addresses(&self) -> &RelayAddresses {
        &self.addresses
    }

    /// The secrets in use.
    pub fn secrets(&self) -> Secrets {
        self.shared
            .core
            .lock()
            .expect("core lock")
            .config()
            .secrets
            .clone()
    }

    pub fn metrics(&self) -> &RelayMetrics {
        &self.shared.metrics
    }

    /// A handle that starts the drain (SIGUSR1) while the relay runs.
    pub fn drain_handle(&self) -> DrainHandle {
        DrainHandle(Arc::clone(&self.shared))
    }

    /// Connections accepted elsewhere go through this to the relay.
    pub fn stream_entry(&self) -> StreamEntry {
        StreamEntry {
            shared: Arc::clone(&self.shared),
            stop: self.stop.subscribe(),
        }
    }

    /// Takes the bound TLS listener (the relay then serves no TLS of its own): natkit-signal
    /// accepts on it, and hands TURN connections to [`Relay::stream_entry`].
    pub fn take_tls_listener(&mut self) -> Option<TcpListener> {
        self.tls.take()
    }

    /// The TLS keys, for a SIGHUP handler to [`TlsKeys::reload`] while the relay runs.
    pub fn tls_keys(&self) -> Option<Arc<TlsKeys>> {
        self.shared.tls.clone()
    }

    /// Serves until `shutdown` completes (or a drain is over), then closes every allocation and
    /// socket.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let stop_rx = self.stop.subscribe();
        let mut tasks = tokio::task::JoinSet::new();
        let extra = self
            .shared
            .primary_extra
            .iter()
            .map(|(f, s)| ((*f, Slot::PRIMARY), s));
        let all = self.shared.sockets.iter().map(|(&at, s)| (at, s));
        for (at, socket) in all.chain(extra) {
            tasks.spawn(serve_socket(
                Arc::clone(&self.shared),
                at,
                Arc::clone(socket),
                stop_rx.clone(),
            ));
        }
        let tcp = self.tcp.into_iter().map(|l| (Some(l), Transport::Tcp));
        for (listener, transport) in tcp.chain([(self.tls, Transport::Tls)]) {
            if let Some(l) = listener {
                tasks.spawn(stream::serve(
                    Arc::clone(&self.shared),
                    l,
                    transport,
                    stop_rx.clone(),
                ));
            }
        }
        for poller in &self.shared.pollers {
            let (poller, stop) = (Arc::clone(poller), stop_rx.clone());
            tasks.spawn(async move { poller.run(stop).await });
        }
        tasks.spawn(janitor(Arc::clone(&self.shared), stop_rx));
        info!(
            primary = %self.addresses.primary,
            alt_port = %self.addresses.alt_port,
            alt_ip = ?self.addresses.alt_ip,
            relay_ip = %self.addresses.relay_ip,
            tcp = ?self.addresses.tcp,
            tls = ?self.addresses.tls,
            second = ?self.addresses.second.as_ref().map(|s| s.primary),
            "relay serving"
        );
        tokio::select! {
            _ = shutdown => {}
            _ = self.shared.drained.notified() => info!("drain complete"),
        }
        let _ = self.stop.send(true);
        while tasks.join_next().await.is_some() {}
        let closed = self.shared.core.lock().expect("core lock").clear();
        info!(closed_allocations = closed, "relay stopped");
    }
}

/// ", tcp ADDR, tls ADDR (NAME)" for the start-up line, or "" (and the second family's
/// address, "; udp ADDR and tcp ADDR").
pub fn stream_summary(a: &RelayAddresses) -> String {
    let mut s = String::new();
    if let Some(t) = a.tcp {
        s.push_str(&format!(" and tcp {t}"));
    }
    if let Some(second) = &a.second {
        s.push_str(&format!("; udp {}", second.primary));
        if let Some(t) = second.tcp {
            s.push_str(&format!(" and tcp {t}"));
        }
    }
    if let Some((t, name)) = &a.tls {
        s.push_str(&format!(", tls {t} (turns:{name})"));
    }
    s
}

impl Shared {
    /// Runs a batch of datagrams read from a UDP socket of `family` through the core under one
    /// lock, then sends what it decided: the payloads for one relay socket in one batch (GSO runs
    /// towards one peer), the answers one by one.
    async fn process_batch(&self, (family, slot): (Family, Slot), batch: &RecvBatch) {
        let Some(server) = *self.primary_addrs.get(family) else {
            return;
        };
        let msgs: Vec<(FiveTuple, &[u8])> = (0..batch.len())
            .filter_map(|i| {
                let client = batch.source(i)?;
                let five = FiveTuple {
                    transport: Transport::Udp,
                    client,
                    server,
                };
                Some((five, batch.payload(i)))
            })
            .collect();
        let replies = self
            .run_batch(slot, &msgs, |five| ClientSink::Udp(five.client))
            .await;
        for (from, bytes, client) in replies {
            let Some(socket) = self.sockets.get(&(family, from)) else {
                continue;
            };
            if let Err(e) = socket.send_to(&bytes, client).await {
                debug!(error = %e, to = %client, "reply failed");
            }
        }
    }

    /// Runs one message from a stream connection through the core and carries out what it
    /// decided; answers go into the connection's queue. (One message at a time: all the
    /// messages of one read at once, their ChannelData towards one peer as one GSO send,
    /// measured no better; docs/performance.md.)
    pub(crate) async fn process_stream(&self, five: FiveTuple, msg: &[u8], queue: &StreamQueue) {
        let replies = self
            .run_batch(Slot::PRIMARY, &[(five, msg)], |_| {
                ClientSink::Stream(queue.clone())
            })
            .await;
        for (_, bytes, _) in replies {
            queue.push(&bytes);
        }
    }

    /// The core's decisions for `msgs` (one lock for all of them; an Allocate's ports are
    /// opened before the next message is handled), with the payloads for peers sent: those for
    /// one relay socket in one batch. Returns the answers, (socket, bytes, client), in order.
    async fn run_batch(
        &self,
        slot: Slot,
        msgs: &[(FiveTuple, &[u8])],
        sink: impl Fn(&FiveTuple) -> ClientSink,
    ) -> Vec<(Slot, Vec<u8>, SocketAddr)> {
        let mut to_peer: Vec<(RelaySocket, SocketAddr, usize, Payload, Transport)> = Vec::new();
        let mut replies: Vec<(Slot, Vec<u8>, SocketAddr)> = Vec::new();
        {
            let now = self.clock.now();
            let unix = self.clock.unix();
            let mut core = self.core.lock().expect("core lock");
            for (i, (five, msg)) in msgs.iter().enumerate() {
                match core.handle(slot, *five, msg, now, unix) {
                    Output::None => {}
                    Output::Reply { from, bytes } => replies.push((from, bytes, five.client)),
                    Output::ToPeer {
                        socket,
                        peer,
                        payload,
                    } => to_peer.push((socket, peer, i, payload, five.transport)),
                    Output::Open(pending) => {
                        // The allocation must exist before the next message (its ChannelBind,
                        // say) is handled.
                        drop(core);
                        let bytes = self.allocate(pending, sink(five));
                        replies.push((Slot::PRIMARY, bytes, five.client));
                        core = self.core.lock().expect("core lock");
                    }
                }
            }
            // Under the core lock, so the copies follow the state in the order it changed, and
            // before any answer leaves: after a CreatePermission's answer the peer's datagrams
            // pass; after a Refresh with lifetime 0 the kernel relays nothing.
            let changes = core.take_changes();
            let mut kernel = self
                .kernel
                .as_ref()
                .filter(|_| !changes.is_empty())
                .map(|k| k.lock().expect("kernel path lock"));
            for change in changes {
                match change {
                    Change::Peers {
                        five,
                        socket,
                        relayed,
                        state,
                    } => {
                        // The kernel path relays an IPv4 client's IPv4 relayed address only.
                        let offloaded = relayed.is_ipv4() && Offload::takes(&five);
                        if let Some(kernel) = kernel.as_mut().filter(|_| offloaded) {
                            let mut bindings = state.kernel_bindings(now);
                            bindings.retain(|b| b.peer.is_ipv4());
                            kernel.sync(&five, Some((relayed.port(), bindings)));
                        }
                        *socket.peers.lock().expect("peer view lock") = state;
                    }
                    Change::Ended(ended) => {
                        if let Some(kernel) = kernel.as_mut() {
                            kernel.sync(&ended.five, None);
                        }
                    }
                    Change::Closed { five, relayed } => {
                        if let Some(kernel) = kernel.as_mut().filter(|_| relayed.is_ipv4()) {
                            kernel.sync(&five, None);
                        }
                    }
                }
            }
        }
        let mut rest = to_peer.as_slice();
        while let Some((socket, ..)) = rest.first() {
            let same = rest
                .iter()
                .take_while(|(s, ..)| Arc::ptr_eq(&s.socket, &socket.socket))
                .count();
            let (run, tail) = rest.split_at(same);
            let out: Vec<Datagram> = run
                .iter()
                .map(|(_, peer, i, payload, _)| Datagram {
                    bytes: match payload {
                        Payload::Range(r) => &msgs[*i].1[r.clone()],
                        Payload::Owned(v) => v.as_slice(),
                    },
                    to: Some(*peer),
                })
                .collect();
            let family = Family::of(run[0].1.ip());
            let counters = &self.client_to_peer[run[0].4 as usize][family as usize];
            let done = socket
                .socket
                .send_batch(&out, |k| counters.relayed(out[k].bytes.len()))
                .await;
            (done..out.len()).for_each(|_| self.metrics.drop(Dropped::SendBufferFull));
            rest = tail;
        }
        replies
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
                self.core.lock().expect("core lock").set_revocations(r);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(path = %file.path().display(), error = %e, "revocation file not reloaded; the previous entries stay")
            }
        }
    }
}

async fn serve_socket(
    shared: Arc<Shared>,
    at: (Family, Slot),
    socket: Arc<Udp>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = crate::udp::recv_batch();
    loop {
        let ready = tokio::select! {
            r = socket.readable() => r,
            _ = stop.changed() => return,
        };
        let Ok(mut ready) = ready else { continue };
        // Read what is queued, a batch at a time (bounded, so a flood cannot starve the stop
        // signal). A short batch found the queue empty: readiness is cleared without another call.
        for _ in 0..8 {
            let n = match socket.recv_batch(&mut batch) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    break;
                }
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep serving.
                    debug!(error = %e, "recv error");
                    continue;
                }
            };
            if n < SLOTS {
                ready.clear_ready();
            }
            shared.process_batch(at, &batch).await;
            if n < SLOTS {
                break;
            }
        }
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
        shared.reload_revocations();
        let (ended, left) = {
            let now = shared.clock.now();
            let mut core = shared.core.lock().expect("core lock");
            let ended = core.expire(now);
            if let Some(kernel) = &shared.kernel {
                let mut kernel = kernel.lock().expect("kernel path lock");
                for e in &ended {
                    kernel.sync(&e.five, None);
                }
                kernel.tick(now);
            }
            (ended, core.allocation_count())
        };
        // The guards of ended allocations were dropped with them: their tasks are stopped.
        drop(ended);
        let started = *shared.drain_started.lock().expect("drain lock");
        if let Some(started) = started {
            if left == 0 {
                shared.drained.notify_one();
            } else if started.elapsed() >= shared.drain.timeout {
                warn!(
                    allocations = left,
                    timeout_s = shared.drain.timeout.as_secs(),
                    "drain deadline reached; closing the allocations left"
                );
                shared.drained.notify_one();
            }
        }
    }
}
