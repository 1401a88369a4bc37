//! natkit-signal's Prometheus metrics (`natkit_signal_*`), every series created at start.

use natkit_proto::{ClientMsg, ErrorCode};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct SignalMetrics {
    pub peers_connected: IntGauge,
    pub rooms: IntGauge,
    pub messages_relayed: IntCounterVec,
    rejected: IntCounterVec,
    /// The series of `messages_relayed` and `rejected`, resolved at start: counting one on the
    /// message path neither formats a label nor looks one up.
    relayed_by_type: Vec<(&'static str, IntCounter)>,
    rejected_by_reason: Vec<(Rejection, IntCounter)>,
    pub credentials_issued: IntCounter,
    pub credentials_refused: IntCounterVec,
    pub connections_refused: IntCounterVec,
    /// Connections to the shared TLS port (`tls_listen`), by what they turned out to be.
    pub port_connections: IntCounterVec,
    /// 1 while the node drains (SIGUSR1).
    pub draining: IntGauge,
    /// 1 while a clustered node reaches its store (always 0 single-node).
    pub cluster_up: IntGauge,
    /// Frames from other nodes, by kind (`message`, `joined`, `left`, `bad`).
    pub cluster_frames: IntCounterVec,
    /// Messages for a peer on another node that could not be delivered (sender told).
    pub cluster_undelivered: IntCounter,
}

impl SignalMetrics {
    pub fn new(registry: &Registry) -> Self {
        let reg =
            |c: Box<dyn prometheus::core::Collector>| registry.register(c).expect("unique metric");
        let peers_connected = IntGauge::new(
            "natkit_signal_peers_connected",
            "WebSocket connections open.",
        )
        .expect("metric");
        let rooms =
            IntGauge::new("natkit_signal_rooms", "Rooms with at least one peer.").expect("metric");
        let messages_relayed = IntCounterVec::new(
            Opts::new(
                "natkit_signal_messages_relayed_total",
                "Signaling messages delivered to their addressee, by type.",
            ),
            &["type"],
        )
        .expect("metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "natkit_signal_rejected_messages_total",
                "Messages refused, by reason.",
            ),
            &["reason"],
        )
        .expect("metric");
        let credentials_issued = IntCounter::new(
            "natkit_signal_credentials_issued_total",
            "TURN credentials handed out.",
        )
        .expect("metric");
        let relayed_by_type = ClientMsg::RELAYED_TYPES
            .iter()
            .map(|t| (*t, messages_relayed.with_label_values(&[&snake(t)])))
            .collect();
        let rejected_by_reason = Rejection::all()
            .map(|r| (r, rejected.with_label_values(&[&r.label()])))
            .collect();
        let credentials_refused = IntCounterVec::new(
            Opts::new(
                "natkit_signal_credentials_refused_total",
                "TURN credentials not handed out because of a rate limit, by limit.",
            ),
            &["limit"],
        )
        .expect("metric");
        for l in crate::admission::Limit::ALL {
            credentials_refused.with_label_values(&[l.as_str()]);
        }
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "natkit_signal_connections_refused_total",
                "TCP connections closed at once, by reason.",
            ),
            &["reason"],
        )
        .expect("metric");
        connections_refused.with_label_values(&["per_ip_limit"]);
        let port_connections = IntCounterVec::new(
            Opts::new(
                "natkit_signal_port_connections_total",
                "Connections to the shared ports, by what they turned out to be: on the TLS \
                 port https (the page, the HTTP API), wss (a WebSocket), turn (TURN over TLS), acme \
                 (an ACME server validating the certificate order, TLS-ALPN-01), or why they were closed (handshake_timeout, handshake_failed, silent, unknown); on the web \
                 port turn_tcp (TURN over TCP).",
            ),
            &["kind"],
        )
        .expect("metric");
        for k in crate::server::PORT_KINDS {
            port_connections.with_label_values(&[k]);
        }
        let cluster_up = IntGauge::new(
            "natkit_signal_cluster_up",
            "1 while this clustered node reaches the cluster store and is in step with it.",
        )
        .expect("metric");
        let cluster_frames = IntCounterVec::new(
            Opts::new(
                "natkit_signal_cluster_frames_total",
                "Frames received from other nodes through the cluster store, by kind.",
            ),
            &["kind"],
        )
        .expect("metric");
        for k in ["message", "joined", "left", "bad"] {
            cluster_frames.with_label_values(&[k]);
        }
        let cluster_undelivered = IntCounter::new(
            "natkit_signal_cluster_undelivered_total",
            "Messages between nodes not delivered (store unreachable, addressee's node gone).",
        )
        .expect("metric");
        let draining = IntGauge::new(
            "natkit_signal_draining",
            "1 while this node drains: no new joins, peers told to reconnect elsewhere.",
        )
        .expect("metric");
        reg(Box::new(draining.clone()));
        reg(Box::new(cluster_up.clone()));
        reg(Box::new(cluster_frames.clone()));
        reg(Box::new(cluster_undelivered.clone()));
        reg(Box::new(credentials_refused.clone()));
        reg(Box::new(connections_refused.clone()));
        reg(Box::new(port_connections.clone()));
        reg(Box::new(peers_connected.clone()));
        reg(Box::new(rooms.clone()));
        reg(Box::new(messages_relayed.clone()));
        reg(Box::new(rejected.clone()));
        reg(Box::new(credentials_issued.clone()));
        SignalMetrics {
            port_connections,
            peers_connected,
            rooms,
            messages_relayed,
            rejected,
            relayed_by_type,
            rejected_by_reason,
            credentials_issued,
            credentials_refused,
            connections_refused,
            draining,
            cluster_up,
            cluster_frames,
            cluster_undelivered,
        }
    }
}

/// Why a message was refused: the `reason` label of `natkit_signal_rejected_messages_total`.
/// Every label value of natkit's metrics is snake_case: a refusal answered with a protocol error
/// code is labelled with that code, `-` written `_` (`rate_limited` for `rate-limited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Answered with this error code.
    Refused(ErrorCode),
    /// Closed with 1009.
    FrameTooBig,
    /// Closed with 1013: its outgoing queue was full.
    SlowConsumer,
    /// Closed with 1007.
    InvalidUtf8,
}

impl Rejection {
    pub fn all() -> impl Iterator<Item = Rejection> {
        ErrorCode::ALL.into_iter().map(Rejection::Refused).chain([
            Rejection::FrameTooBig,
            Rejection::SlowConsumer,
            Rejection::InvalidUtf8,
        ])
    }

    pub fn label(self) -> String {
        match self {
            Rejection::Refused(code) => snake(code.as_str()),
            Rejection::FrameTooBig => "frame_too_big".into(),
            Rejection::SlowConsumer => "slow_consumer".into(),
            Rejection::InvalidUtf8 => "invalid_utf8".into(),
        }
    }
}

impl SignalMetrics {
    /// Counts one relayed message of this `type` (`nat-summary` labelled `nat_summary`).
    pub fn relayed(&self, kind: &str) {
        match self.relayed_by_type.iter().find(|(t, _)| *t == kind) {
            Some((_, c)) => c.inc(),
            None => self
                .messages_relayed
                .with_label_values(&[&snake(kind)])
                .inc(),
        }
    }

    /// Counts one refused message.
    pub fn reject(&self, why: Rejection) {
        match self.rejected_by_reason.iter().find(|(r, _)| *r == why) {
            Some((_, c)) => c.inc(),
            None => self.rejected.with_label_values(&[&why.label()]).inc(),
        }
    }
}

/// A protocol name as a label value: snake_case (`nat-summary` -> `nat_summary`).
fn snake(name: &str) -> String {
    name.replace('-', "_")
}
