//! Prometheus metrics of the relay. Names carry the `natkit_relay_` prefix; labels are small
//! fixed sets (direction, transport, reason, scope), never a user name or an address.
//!
//! Relayed packet and byte counters move with every datagram, not when a session ends.

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use natkit_turn_core::family::Family;
use natkit_turn_core::five_tuple::Transport;
pub use natkit_turn_core::observe::{AuthFailure, Dropped};
use natkit_turn_core::observe::{Event, Observer, QuotaScope};
use natkit_turn_core::policy::DenyReason;

/// Packets the kernel path matched and left to the relay, by reason (the `reason` label of
/// `natkit_relay_kernel_path_passed_total`), with the index of their counter in the program
/// (`bpf/relay.bpf.c`); `kernel_path` reads the counters by these indices.
pub const KERNEL_PASSED: [(usize, &str); 3] = [(4, "expired"), (5, "route"), (6, "checksum")];

/// Why a stream connection was refused at accept or during the TLS handshake
/// (`natkit_relay_stream_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefusal {
    /// The source IP holds `stream_per_ip` connections already.
    PerIp,
    /// The relay holds `stream_total` connections already.
    Total,
    /// The TLS handshake failed (bad ClientHello, no shared version or cipher).
    Handshake,
    /// The TLS handshake did not finish within the deadline.
    HandshakeTimeout,
    /// Plaintext STUN on the TLS port.
    NotTls,
    /// A PROXY protocol header from a source not in `trusted_proxies`, or a trusted balancer's
    /// that was malformed or did not come within the deadline.
    ProxyHeader,
}

impl StreamRefusal {
    pub const ALL: [StreamRefusal; 6] = [
        StreamRefusal::PerIp,
        StreamRefusal::Total,
        StreamRefusal::Handshake,
        StreamRefusal::HandshakeTimeout,
        StreamRefusal::NotTls,
        StreamRefusal::ProxyHeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamRefusal::PerIp => "per_ip_limit",
            StreamRefusal::Total => "total_limit",
            StreamRefusal::Handshake => "tls_handshake",
            StreamRefusal::HandshakeTimeout => "tls_handshake_timeout",
            StreamRefusal::NotTls => "not_tls",
            StreamRefusal::ProxyHeader => "proxy_header",
        }
    }
}

/// Why the relay closed an established stream connection (`natkit_relay_stream_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamClose {
    /// The client closed it (or reset it).
    Client,
    /// No complete request within the first-request deadline (slowloris).
    FirstRequestTimeout,
    /// Nothing received for the idle timeout, and no allocation to keep it.
    Idle,
    /// A frame longer than the 64 KiB limit.
    FrameTooLarge,
    /// Bytes that are neither STUN nor ChannelData: the stream cannot be resynchronised.
    NotStun,
    /// The relay is shutting down.
    Shutdown,
}

impl StreamClose {
    pub const ALL: [StreamClose; 6] = [
        StreamClose::Client,
        StreamClose::FirstRequestTimeout,
        StreamClose::Idle,
        StreamClose::FrameTooLarge,
        StreamClose::NotStun,
        StreamClose::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamClose::Client => "client",
            StreamClose::FirstRequestTimeout => "first_request_timeout",
            StreamClose::Idle => "idle",
            StreamClose::FrameTooLarge => "frame_too_large",
            StreamClose::NotStun => "not_stun",
            StreamClose::Shutdown => "shutdown",
        }
    }
}

/// The packet and byte counters of one relay direction over one transport.
#[derive(Clone)]
pub(crate) struct DirectionCounters {
    packets: IntCounter,
    bytes: IntCounter,
}

impl DirectionCounters {
    pub(crate) fn relayed(&self, bytes: usize) {
        self.packets.inc();
        self.bytes.inc_by(bytes as u64);
    }

    /// What the kernel path relayed since the last reading.
    pub(crate) fn relayed_many(&self, packets: u64, bytes: u64) {
        self.packets.inc_by(packets);
        self.bytes.inc_by(bytes);
    }
}

#[derive(Clone)]
pub struct RelayMetrics {
    registry: Registry,
    /// By `transport` (udp, tcp, tls).
    pub allocations_active: IntGaugeVec,
    pub reservations_active: IntGauge,
    /// 1 while draining (SIGUSR1): new allocations are refused.
    pub draining: IntGauge,
    /// By `transport`.
    pub allocations_created: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub binding_requests: IntCounter,
    /// Relayed addresses open now, by `family` (a dual allocation holds one of each).
    pub relayed_addresses_active: IntGaugeVec,
    /// Allocations created with a relayed address in each family (ADDITIONAL-ADDRESS-FAMILY).
    pub dual_allocations: IntCounter,
    /// By `direction`, `transport` and the peer's `family`.
    pub relayed_packets: IntCounterVec,
    pub relayed_bytes: IntCounterVec,
    pub peer_refused: IntCounterVec,
    pub quota_rejections: IntCounterVec,
    pub dropped_packets: IntCounterVec,
    /// Stream connections open now, by `transport` (tcp, tls).
    pub stream_active: IntGaugeVec,
    pub stream_accepted: IntCounterVec,
    /// By `transport` and `reason` ([`StreamRefusal`]).
    pub stream_refused: IntCounterVec,
    /// By `transport` and `reason` ([`StreamClose`]).
    pub stream_closed: IntCounterVec,
    /// Datagrams from peers dropped because a stream client's outgoing queue was full.
    pub stream_queue_drops: IntCounterVec,
    /// Datagrams the kernel path relayed, by `direction` (also in `relayed_packets`).
    pub kernel_path_packets: IntCounterVec,
    /// Datagrams the kernel path matched but left to the relay, by `reason`.
    pub kernel_path_passed: IntCounterVec,
    /// Entries in the kernel path's maps (one per direction of a channel binding).
    pub kernel_path_entries: IntGauge,
    /// Map writes the kernel refused (its maps full): those bindings stay in userspace.
    pub kernel_path_refused: IntCounter,
    /// Relayed addresses opened while the kernel path is on that it does not take, by `reason`
    /// (ipv6: an IPv6 client or relayed address; stream: a TCP/TLS client).
    pub kernel_path_userspace: IntCounterVec,
    /// ACME orders, by `result` (issued, failed).
    pub acme_orders: IntCounterVec,
    /// When the TLS certificate in use expires (Unix seconds; 0: none yet).
    pub tls_certificate_expiry: IntGauge,
}

fn slices<'a>(v: &'a [Vec<&'static str>]) -> Vec<&'a [&'static str]> {
    v.iter().map(|x| x.as_slice()).collect()
}

impl RelayMetrics {
    /// Registers the relay's metrics in a fresh registry.
    pub fn new() -> Self {
        Self::with_registry(Registry::new())
    }

    /// Registers the relay's metrics in `registry`, so an embedding server can serve one page.
    pub fn with_registry(registry: Registry) -> Self {
        fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let gauge = |name: &str, help: &str| {
            register(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        // Every series is created at start, so dashboards see zeros, not gaps.
        let vec = |name: &str, help: &str, labels: &[&str], values: &[&[&str]]| {
            let c = register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            );
            for v in values {
                c.with_label_values(v);
            }
            c
        };
        let gauge_vec = |name: &str, help: &str, label: &str, values: &[&str]| {
            let g = register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
            );
            for v in values {
                g.with_label_values(&[v]);
            }
            g
        };
        let one = |values: &[&'static str]| -> Vec<Vec<&'static str>> {
            values.iter().map(|v| vec![*v]).collect()
        };
        let cross = |a: &[&'static str], b: &[&'static str]| -> Vec<Vec<&'static str>> {
            a.iter()
                .flat_map(|x| b.iter().map(move |y| vec![*x, *y]))
                .collect()
        };
        let transports: Vec<&'static str> = Transport::ALL.iter().map(|t| t.as_str()).collect();
        let streams = ["tcp", "tls"];
        let directions = ["client_to_peer", "peer_to_client"];
        let deny: Vec<&'static str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        let auth: Vec<&'static str> = AuthFailure::ALL.iter().map(|r| r.as_str()).collect();
        let refused: Vec<&'static str> = StreamRefusal::ALL.iter().map(|r| r.as_str()).collect();
        let closed: Vec<&'static str> = StreamClose::ALL.iter().map(|r| r.as_str()).collect();
        let by_transport = one(&transports);
        let families: Vec<&'static str> = Family::ALL.iter().map(|f| f.as_str()).collect();
        let relayed: Vec<Vec<&'static str>> = cross(&directions, &transports)
            .into_iter()
            .flat_map(|dt| {
                families.iter().map(move |f| {
                    let mut v = dt.clone();
                    v.push(*f);
                    v
                })
            })
            .collect();
        RelayMetrics {
            allocations_active: gauge_vec(
                "natkit_relay_allocations_active",
                "TURN allocations currently alive, by client transport.",
                "transport",
                &transports,
            ),
            reservations_active: gauge(
                "natkit_relay_reservations_active",
                "Relay ports reserved for a later Allocate (EVEN-PORT with R); each counts against its user's quota.",
            ),
            draining: gauge(
                "natkit_relay_draining",
                "1 while the relay drains: new allocations are refused, existing ones go on.",
            ),
            allocations_created: vec(
                "natkit_relay_allocations_created_total",
                "TURN allocations created since start, by client transport.",
                &["transport"],
                &slices(&by_transport),
            ),
            auth_failures: vec(
                "natkit_relay_auth_failures_total",
                "Authenticated requests refused, by reason.",
                &["reason"],
                &slices(&one(&auth)),
            ),
            binding_requests: counter(
                "natkit_relay_binding_requests_total",
                "STUN Binding requests answered on any RFC 5780 socket or stream.",
            ),
            relayed_addresses_active: gauge_vec(
                "natkit_relay_relayed_addresses_active",
                "Relayed transport addresses open now, by address family (a dual allocation holds one of each).",
                "family",
                &families,
            ),
            dual_allocations: counter(
                "natkit_relay_dual_allocations_total",
                "Allocations created with a relayed address in each family (RFC 8656 ADDITIONAL-ADDRESS-FAMILY).",
            ),
            relayed_packets: vec(
                "natkit_relay_relayed_packets_total",
                "Datagrams relayed, by direction, client transport and the peer's address family.",
                &["direction", "transport", "family"],
                &slices(&relayed),
            ),
            relayed_bytes: vec(
                "natkit_relay_relayed_bytes_total",
                "Payload bytes relayed, by direction, client transport and the peer's address family.",
                &["direction", "transport", "family"],
                &slices(&relayed),
            ),
            peer_refused: vec(
                "natkit_relay_peer_refused_total",
                "Permissions, channel bindings and Send indications refused by the peer policy.",
                &["reason"],
                &slices(&one(&deny)),
            ),
            quota_rejections: vec(
                "natkit_relay_quota_rejections_total",
                "Allocate requests refused for capacity, by scope: user or total quota (486), or draining (300 Try Alternate, or 486 with no alternate).",
                &["scope"],
                &slices(&one(&QuotaScope::ALL.map(QuotaScope::as_str))),
            ),
            dropped_packets: vec(
                "natkit_relay_dropped_packets_total",
                "Messages dropped without an answer, by reason.",
                &["reason"],
                &slices(&one(&Dropped::ALL.map(Dropped::as_str))),
            ),
            stream_active: gauge_vec(
                "natkit_relay_stream_connections_active",
                "TCP and TLS connections open now.",
                "transport",
                &streams,
            ),
            stream_accepted: vec(
                "natkit_relay_stream_connections_accepted_total",
                "TCP and TLS connections accepted (TLS: handshake done).",
                &["transport"],
                &slices(&one(&streams)),
            ),
            stream_refused: vec(
                "natkit_relay_stream_connections_refused_total",
                "TCP and TLS connections refused at accept or in the TLS handshake, by reason.",
                &["transport", "reason"],
                &slices(&cross(&streams, &refused)),
            ),
            stream_closed: vec(
                "natkit_relay_stream_connections_closed_total",
                "Established TCP and TLS connections closed, by reason.",
                &["transport", "reason"],
                &slices(&cross(&streams, &closed)),
            ),
            stream_queue_drops: vec(
                "natkit_relay_stream_queue_drops_total",
                "Peer datagrams dropped because a stream client was not reading (its queue was full).",
                &["transport"],
                &slices(&one(&streams)),
            ),
            kernel_path_packets: vec(
                "natkit_relay_kernel_path_packets_total",
                "Datagrams relayed by the kernel path (--kernel-path), by direction; they are counted in natkit_relay_relayed_packets_total too.",
                &["direction"],
                &slices(&one(&directions)),
            ),
            kernel_path_passed: vec(
                "natkit_relay_kernel_path_passed_total",
                "Datagrams of a kernel-path binding left to the relay's sockets, by reason: expired (the relay decides), route (local, too big, or no neighbour yet), checksum (none, or offload pending).",
                &["reason"],
                &slices(&one(&KERNEL_PASSED.map(|(_, r)| r))),
            ),
            kernel_path_entries: gauge(
                "natkit_relay_kernel_path_entries",
                "Entries in the kernel path's maps, one per direction of a channel binding.",
            ),
            kernel_path_refused: counter(
                "natkit_relay_kernel_path_refused_total",
                "Kernel path map writes refused (maps full); those bindings are relayed in userspace.",
            ),
            kernel_path_userspace: vec(
                "natkit_relay_kernel_path_userspace_total",
                "Relayed addresses opened with the kernel path on that it does not take, relayed in userspace, by reason: ipv6 (the kernel path is IPv4 only), stream (TCP/TLS clients).",
                &["reason"],
                &slices(&one(&["ipv6", "stream"])),
            ),
            acme_orders: vec(
                "natkit_relay_acme_orders_total",
                "ACME certificate orders, by result: issued, or failed (the certificate in use stays).",
                &["result"],
                &slices(&one(&["issued", "failed"])),
            ),
            tls_certificate_expiry: gauge(
                "natkit_relay_tls_certificate_expiry_timestamp_seconds",
                "When the ACME certificate in use expires, in Unix seconds (0 while there is none).",
            ),
            registry,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric in the registry.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }

    /// Counters of one direction, transport and peer family, resolved once: the per-packet
    /// path must not hash labels.
    pub(crate) fn direction(
        &self,
        direction: &str,
        transport: Transport,
        family: Family,
    ) -> DirectionCounters {
        let labels = [direction, transport.as_str(), family.as_str()];
        DirectionCounters {
            packets: self.relayed_packets.with_label_values(&labels),
            bytes: self.relayed_bytes.with_label_values(&labels),
        }
    }

    pub(crate) fn kernel_path_userspace(&self, reason: &str) {
        self.kernel_path_userspace
            .with_label_values(&[reason])
            .inc();
    }

    pub(crate) fn acme_order(&self, issued: bool) {
        let result = if issued { "issued" } else { "failed" };
        self.acme_orders.with_label_values(&[result]).inc();
    }

    pub(crate) fn tls_certificate_expiry(&self, not_after: std::time::SystemTime) {
        let secs = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.tls_certificate_expiry
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    pub(crate) fn drop(&self, reason: Dropped) {
        self.dropped_packets
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub(crate) fn allocation_created(&self, transport: Transport) {
        self.allocations_created
            .with_label_values(&[transport.as_str()])
            .inc();
        self.allocations_active
            .with_label_values(&[transport.as_str()])
            .inc();
    }

    /// Allocations active now, every transport.
    pub fn active_allocations(&self) -> u64 {
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .iter()
            .map(|t| {
                self.allocations_active
                    .with_label_values(&[t.as_str()])
                    .get()
                    .max(0) as u64
            })
            .sum()
    }

    pub(crate) fn allocation_ended(&self, transport: Transport) {
        self.allocations_active
            .with_label_values(&[transport.as_str()])
            .dec();
    }

    pub(crate) fn stream_refused(&self, transport: Transport, reason: StreamRefusal) {
        self.stream_refused
            .with_label_values(&[transport.as_str(), reason.as_str()])
            .inc();
    }

    pub(crate) fn stream_closed(&self, transport: Transport, reason: StreamClose) {
        self.stream_closed
            .with_label_values(&[transport.as_str(), reason.as_str()])
            .inc();
    }
}

/// The core's events, counted.
impl Observer for RelayMetrics {
    fn observe(&self, event: Event) {
        match event {
            Event::Dropped(reason) => self.drop(reason),
            Event::AuthFailed(reason) => self
                .auth_failures
                .with_label_values(&[reason.as_str()])
                .inc(),
            Event::Binding => self.binding_requests.inc(),
            Event::AllocationCreated(transport) => self.allocation_created(transport),
            Event::AllocationEnded(transport) => self.allocation_ended(transport),
            Event::PeerRefused(reason) => self
                .peer_refused
                .with_label_values(&[reason.as_str()])
                .inc(),
            Event::QuotaRefused(scope) => self
                .quota_rejections
                .with_label_values(&[scope.as_str()])
                .inc(),
            Event::Reservations(n) => self.reservations_active.set(n as i64),
            Event::Draining => self.draining.set(1),
            Event::RelayedAddressOpened(f) => self
                .relayed_addresses_active
                .with_label_values(&[f.as_str()])
                .inc(),
            Event::RelayedAddressClosed(f) => self
                .relayed_addresses_active
                .with_label_values(&[f.as_str()])
                .dec(),
            Event::DualAllocation => self.dual_allocations.inc(),
        }
    }
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}
