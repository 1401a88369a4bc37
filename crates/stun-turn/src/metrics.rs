//! Prometheus metrics of the relay. Names carry the `natkit_relay_` prefix; labels are small
//! fixed sets (direction, reason, scope), never a user name or an address.
//!
//! Relayed packet and byte counters move with every datagram, not when a session ends.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::policy::DenyReason;

/// Label values of `natkit_relay_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential's expiry has passed.
    Expired,
    /// The username is not `<expiry>:<user>`.
    MalformedUsername,
    /// MESSAGE-INTEGRITY matched no configured secret (forged or wrong password).
    BadIntegrity,
    /// The nonce was expired or not ours; the client gets a fresh one (438).
    StaleNonce,
    /// A Refresh/CreatePermission/ChannelBind used another username than the allocation's (441).
    WrongCredentials,
    /// USERNAME, REALM or NONCE missing next to MESSAGE-INTEGRITY (400).
    MissingAttribute,
    /// REALM is not the relay's (401 with the right one).
    WrongRealm,
    /// The user is in the revocation file (401).
    Revoked,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 8] = [
        AuthFailure::Revoked,
        AuthFailure::WrongRealm,
        AuthFailure::Expired,
        AuthFailure::MalformedUsername,
        AuthFailure::BadIntegrity,
        AuthFailure::StaleNonce,
        AuthFailure::WrongCredentials,
        AuthFailure::MissingAttribute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Expired => "expired",
            AuthFailure::MalformedUsername => "malformed_username",
            AuthFailure::BadIntegrity => "bad_integrity",
            AuthFailure::StaleNonce => "stale_nonce",
            AuthFailure::WrongCredentials => "wrong_credentials",
            AuthFailure::MissingAttribute => "missing_attribute",
            AuthFailure::WrongRealm => "wrong_realm",
            AuthFailure::Revoked => "revoked",
        }
    }
}

/// Label values of `natkit_relay_dropped_packets_total`.
pub const DROP_REASONS: [&str; 8] = [
    "rate_limited", // a source past answers_per_second (Binding, unauthenticated requests)
    "too_many_attributes", // more than MAX_ATTRIBUTES: dropped before decoding
    "not_stun",     // neither STUN nor ChannelData (wrong cookie, random bytes)
    "malformed",    // looked like STUN/ChannelData but did not decode
    "bad_fingerprint", // FINGERPRINT present and wrong
    "no_allocation", // ChannelData/Send from a 5-tuple without allocation
    "no_permission", // peer datagram or Send without permission or channel
    "unexpected",   // responses, unknown indications, non-Binding on RFC 5780 sockets
];

/// The packet and byte counters of one relay direction.
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
}

#[derive(Clone)]
pub struct RelayMetrics {
    registry: Registry,
    pub allocations_active: IntGauge,
    pub reservations_active: IntGauge,
    pub allocations_created: IntCounter,
    pub auth_failures: IntCounterVec,
    pub binding_requests: IntCounter,
    pub relayed_packets: IntCounterVec,
    pub relayed_bytes: IntCounterVec,
    pub peer_refused: IntCounterVec,
    pub quota_rejections: IntCounterVec,
    pub dropped_packets: IntCounterVec,
}

impl RelayMetrics {
    /// Registers the relay's metrics in a fresh registry.
    pub fn new() -> Self {
        Self::with_registry(Registry::new())
    }

    /// Registers the relay's metrics in `registry`, so an embedding server can serve one page.
    pub fn with_registry(registry: Registry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let vec = |name: &str, help: &str, label: &str, values: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            for v in values {
                // Pre-create every series so dashboards see zeros, not gaps.
                c.with_label_values(&[v]);
            }
            c
        };
        let directions = ["client_to_peer", "peer_to_client"];
        let deny: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        let auth: Vec<&str> = AuthFailure::ALL.iter().map(|r| r.as_str()).collect();
        RelayMetrics {
            allocations_active: gauge(
                "natkit_relay_allocations_active",
                "TURN allocations currently alive.",
            ),
            reservations_active: gauge(
                "natkit_relay_reservations_active",
                "Relay ports reserved for a later Allocate (EVEN-PORT with R); each counts against its user's quota.",
            ),
            allocations_created: counter(
                "natkit_relay_allocations_created_total",
                "TURN allocations created since start.",
            ),
            auth_failures: vec(
                "natkit_relay_auth_failures_total",
                "Authenticated requests refused, by reason.",
                "reason",
                &auth,
            ),
            binding_requests: counter(
                "natkit_relay_binding_requests_total",
                "STUN Binding requests answered on any RFC 5780 socket.",
            ),
            relayed_packets: vec(
                "natkit_relay_relayed_packets_total",
                "Datagrams relayed, by direction.",
                "direction",
                &directions,
            ),
            relayed_bytes: vec(
                "natkit_relay_relayed_bytes_total",
                "Payload bytes relayed, by direction.",
                "direction",
                &directions,
            ),
            peer_refused: vec(
                "natkit_relay_peer_refused_total",
                "Permissions, channel bindings and Send indications refused by the peer policy.",
                "reason",
                &deny,
            ),
            quota_rejections: vec(
                "natkit_relay_quota_rejections_total",
                "Allocate requests refused with 486, by quota.",
                "scope",
                &["user", "total"],
            ),
            dropped_packets: vec(
                "natkit_relay_dropped_packets_total",
                "Datagrams dropped without an answer, by reason.",
                "reason",
                &DROP_REASONS,
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

    /// Counters of one direction, resolved once: the per-packet path must not hash labels.
    pub(crate) fn direction(&self, direction: &str) -> DirectionCounters {
        DirectionCounters {
            packets: self.relayed_packets.with_label_values(&[direction]),
            bytes: self.relayed_bytes.with_label_values(&[direction]),
        }
    }

    pub(crate) fn drop(&self, reason: &str) {
        self.dropped_packets.with_label_values(&[reason]).inc();
    }
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}
