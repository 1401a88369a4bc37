//! natkit-signal's Prometheus metrics (`natkit_signal_*`), every series created at start.

use natkit_proto::{ClientMsg, ErrorCode};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct SignalMetrics {
    pub peers_connected: IntGauge,
    pub rooms: IntGauge,
    pub messages_relayed: IntCounterVec,
    pub rejected: IntCounterVec,
    pub credentials_issued: IntCounter,
    pub credentials_refused: IntCounterVec,
    pub connections_refused: IntCounterVec,
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
        for t in ClientMsg::RELAYED_TYPES {
            messages_relayed.with_label_values(&[t]);
        }
        for c in ErrorCode::ALL {
            rejected.with_label_values(&[c.as_str()]);
        }
        for r in ["frame-too-big", "slow-consumer", "invalid-utf8"] {
            rejected.with_label_values(&[r]);
        }
        let credentials_refused = IntCounterVec::new(
            Opts::new(
                "natkit_signal_credentials_refused_total",
                "TURN credentials not handed out because of a rate limit, by limit.",
            ),
            &["limit"],
        )
        .expect("metric");
        for l in ["per_ip", "per_token"] {
            credentials_refused.with_label_values(&[l]);
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
        reg(Box::new(peers_connected.clone()));
        reg(Box::new(rooms.clone()));
        reg(Box::new(messages_relayed.clone()));
        reg(Box::new(rejected.clone()));
        reg(Box::new(credentials_issued.clone()));
        SignalMetrics {
            peers_connected,
            rooms,
            messages_relayed,
            rejected,
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
