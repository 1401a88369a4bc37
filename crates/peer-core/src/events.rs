//! What `natkit-peer --json` prints: one JSON object per line per event.

use natkit_proto::NatSummary;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The nat-probe report (its fields inline).
    Probe(Value),
    /// The ICE transport policy and the row of the rule table (`--relay auto`) that chose it,
    /// with both NAT summaries (`remote_nat` is null when the remote peer sent none).
    Policy {
        ice_transport_policy: &'static str,
        rule: &'static str,
        reason: String,
        local_nat: Option<NatSummary>,
        remote_nat: Option<NatSummary>,
    },
    Joined {
        peer_id: String,
        room: String,
        peers: Vec<String>,
    },
    /// A peer joined the room (a program's session: natkit-peer's library API).
    PeerJoined {
        peer_id: String,
    },
    /// A peer left the room.
    PeerLeft {
        peer_id: String,
    },
    Connected {
        local_candidate_type: String,
        remote_candidate_type: String,
        /// `udp`, `tcp` or `tls`: how this side reached its relay, when its candidate is `relay`.
        #[serde(skip_serializing_if = "Option::is_none")]
        relay_protocol: Option<String>,
        elapsed_ms: u64,
    },
    Message {
        data: String,
    },
    /// A new TURN credential arrived (valid `ttl` seconds); an ICE restart applies it.
    Renewed {
        ttl: u64,
    },
    /// An ICE restart was offered: `reason` is `renewal`, `failed` or `signaling-reconnect`.
    IceRestart {
        reason: &'static str,
    },
    /// The connection works again after a restart, over the pair named.
    Reconnected {
        local_candidate_type: String,
        remote_candidate_type: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        relay_protocol: Option<String>,
    },
    /// The peer connection left `connected`: `disconnected` or `failed`.
    ConnectionState {
        state: &'static str,
    },
    /// The signaling connection: `lost`, `reconnected` (with the room's peers) or `gave-up`.
    Signaling {
        state: &'static str,
        peers: Vec<String>,
    },
    Closed {
        reason: String,
    },
    /// A failed attempt: `stage` is `signaling`, `ice`, `dtls`, `relay` or `timeout`.
    Failed {
        stage: &'static str,
        message: String,
    },
}

impl Event {
    /// The line a person reads without `--json`.
    pub fn human(&self) -> String {
        match self {
            Event::Probe(v) => format!(
                "probe: {} NAT (mapping {}, filtering {})",
                v["nat_type"].as_str().unwrap_or("?"),
                v["mapping"].as_str().unwrap_or("not determined"),
                v["filtering"].as_str().unwrap_or("not determined")
            ),
            Event::Policy {
                ice_transport_policy,
                rule,
                reason,
                ..
            } => format!("ICE policy {ice_transport_policy} ({rule}): {reason}"),
            Event::Joined {
                peer_id,
                room,
                peers,
            } => format!("joined {room} as {peer_id}; {} other peer(s)", peers.len()),
            Event::Connected {
                local_candidate_type,
                remote_candidate_type,
                relay_protocol,
                elapsed_ms,
            } => {
                let via = relay_protocol
                    .as_ref()
                    .map(|p| format!(" (relay over {p})"))
                    .unwrap_or_default();
                format!("connected in {elapsed_ms} ms: local {local_candidate_type}{via} <-> remote {remote_candidate_type}")
            }
            Event::PeerJoined { peer_id } => format!("{peer_id} joined"),
            Event::PeerLeft { peer_id } => format!("{peer_id} left"),
            Event::Message { data } => format!("message: {data}"),
            Event::Renewed { ttl } => format!("TURN credentials renewed, valid {ttl} s"),
            Event::IceRestart { reason } => format!("ICE restart ({reason})"),
            Event::Reconnected {
                local_candidate_type,
                remote_candidate_type,
                ..
            } => format!(
                "reconnected: local {local_candidate_type} <-> remote {remote_candidate_type}"
            ),
            Event::ConnectionState { state } => format!("connection {state}"),
            Event::Signaling { state, peers } => {
                format!("signaling {state}; {} other peer(s)", peers.len())
            }
            Event::Closed { reason } => format!("closed: {reason}"),
            Event::Failed { stage, message } => format!("failed ({stage}): {message}"),
        }
    }
}
