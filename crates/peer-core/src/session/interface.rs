//! The session's interface: what it is configured with ([`SessionConfig`], [`Mode`]), what the
//! shell feeds it ([`RtcEvent`]), what it asks the shell to do ([`Action`]), and how an attempt
//! ends ([`Failure`], [`Stage`], [`RestartReason`]).

use std::time::Instant;

use natkit_proto::{AddressFamily, ClientMsg, IceCandidate, IceServer, NatSummary};

use crate::events::Event;
use crate::policy::RelayMode;

/// What to do once the data channel is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Answer every message with the same text, until the remote peer leaves.
    Echo,
    /// Send the text, wait for the reply, print it, and finish.
    Send(String),
    /// Send each line read from standard input; print what arrives; finish at end of input.
    Chat,
    /// A program's channel: what it sends ([`Session::handle_input`]) goes out once the channel
    /// is open, what arrives is handed to it ([`Action::Deliver`]). Connected, it has no
    /// deadline; it ends when the remote peer leaves for good or the channel closes.
    ///
    /// [`Session::handle_input`]: super::Session::handle_input
    App,
}

/// A data-channel message: text (a string message) or binary.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

impl Message {
    /// The text, or the bytes read as UTF-8 with replacement characters.
    pub fn to_text_lossy(&self) -> String {
        match self {
            Message::Text(t) => t.clone(),
            Message::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Text(t) => f.debug_tuple("Text").field(t).finish(),
            Message::Binary(b) => write!(f, "Binary({} bytes)", b.len()),
        }
    }
}

impl From<&str> for Message {
    fn from(t: &str) -> Message {
        Message::Text(t.to_owned())
    }
}

impl From<String> for Message {
    fn from(t: String) -> Message {
        Message::Text(t)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Message {
        Message::Binary(b)
    }
}

impl From<&[u8]> for Message {
    fn from(b: &[u8]) -> Message {
        Message::Binary(b.to_vec())
    }
}

/// Where an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The servers handed out are wrong (a STUN URL where nothing listens): not a network's fault.
    Config,
    Signaling,
    Ice,
    Relay,
    Dtls,
    Timeout,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Config => "config",
            Stage::Signaling => "signaling",
            Stage::Ice => "ice",
            Stage::Relay => "relay",
            Stage::Dtls => "dtls",
            Stage::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt failed; `stage` says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct Failure {
    pub stage: Stage,
    pub message: String,
}

impl Failure {
    pub fn new(stage: Stage, message: impl Into<String>) -> Failure {
        Failure {
            stage,
            message: message.into(),
        }
    }
}

/// Why an ICE restart is offered (the `reason` of the `ice-restart` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// A new TURN credential arrived: a new allocation must carry it.
    Renewal,
    /// A connection that worked failed.
    Failed,
    /// An offer may have been lost with the old signaling connection.
    SignalingReconnect,
    /// No direct pair connected before [`DIRECT_DEADLINE`]: relay only from now on.
    DirectDeadline,
}

impl RestartReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Renewal => "renewal",
            RestartReason::Failed => "failed",
            RestartReason::SignalingReconnect => "signaling-reconnect",
            RestartReason::DirectDeadline => "direct-deadline",
        }
    }
}

/// What the peer connection and the data channel report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcEvent {
    /// A gathered local candidate; `None` when gathering is complete.
    LocalCandidate(Option<IceCandidate>),
    /// The peer connection is `connected`, over a pair of these candidate types.
    Connected {
        local_candidate_type: String,
        remote_candidate_type: String,
        /// How the relay was reached (`udp`, `tcp`, `tls`) when the local candidate is `relay`.
        relay_protocol: Option<String>,
    },
    Disconnected,
    Failed,
    /// The peer connection stopped delivering events altogether.
    Gone,
    ChannelOpen,
    Message(Message),
    ChannelClosed,
    /// Sending on the data channel failed.
    SendFailed(String),
    /// Everything sent on the data channel has been acknowledged (the shell watches after a
    /// program's end of input): a closing [`Mode::App`] session ends now rather than after
    /// its quiet second.
    Flushed,
}

/// What the shell is asked to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message over the signaling connection (only asked while it is up).
    Signal(ClientMsg),
    /// Create the peer connection with these ICE servers and transport policy (once, before
    /// any other WebRTC action).
    Configure {
        servers: Vec<IceServer>,
        relay_only: bool,
        /// Can a pair without a relay work ([`crate::policy::Policy::direct_expected`])? When
        /// not (a relay-only policy, or the offering side of a pair that goes through the
        /// answerer's relay), the shell does not hold relayed pairs back for a direct one.
        direct_expected: bool,
    },
    /// `set_configuration` with these ICE servers and transport policy; they take effect at the
    /// next gathering.
    ApplyServers {
        servers: Vec<IceServer>,
        relay_only: bool,
    },
    /// Create the data channel (the offering side, before its first offer).
    CreateDataChannel,
    /// Create an offer (after `restart_ice` when `ice_restart`), set it as the local
    /// description, and hand its SDP to [`Session::handle_local_offer`].
    CreateOffer {
        ice_restart: bool,
    },
    /// Roll our own offer back first when `rollback`; set this remote offer, create an answer,
    /// set it, and hand its SDP to [`Session::handle_local_answer`].
    AcceptOffer {
        sdp: String,
        rollback: bool,
    },
    /// Set this remote answer.
    AcceptAnswer {
        sdp: String,
    },
    AddRemoteCandidate(IceCandidate),
    /// Send this on the open data channel.
    Send(Message),
    /// Hand this message, arrived on the data channel, to the program ([`Mode::App`]).
    Deliver(Message),
    /// Rejoin the room with our peer id, retrying; report through
    /// [`Session::handle_rejoined`] or [`Session::handle_rejoin_failed`].
    Rejoin,
    /// Run nat-probe against this STUN server (`host:port`) and report through
    /// [`Session::handle_probe`]; nothing else happens until then.
    Probe {
        target: String,
    },
    /// Report this event to the user.
    Emit(Event),
}

/// What a session knows of its own NAT when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalNat {
    /// Not probed yet: with `relay` `auto` and a STUN server in the welcome, the session asks
    /// for a probe first ([`Action::Probe`]); otherwise it goes on without a summary.
    Probe,
    /// Known already (or deliberately unknown): no probe.
    Known(Option<NatSummary>),
}

/// The session's fixed inputs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub mode: Mode,
    pub relay: RelayMode,
    /// This side's NAT: to be probed (the session decides whether, and asks with
    /// [`Action::Probe`]), or already known.
    pub local_nat: LocalNat,
    /// The address families this host reaches the internet in (empty: not known). The probe
    /// goes to a STUN URL of one of them, and the NAT summary names them, so that a pair with
    /// no family in common relays (`no-common-family`).
    pub families: Vec<AddressFamily>,
    /// Renew TURN credentials at half their TTL.
    pub renew: bool,
    /// Apply a renewed credential with an ICE restart (a new allocation carries it); false:
    /// with [`Action::ApplyServers`] alone, for a shell that hands it to its live allocations
    /// (natkit's relay lets a renewed credential of the same user refresh an allocation).
    pub restart_on_renewal: bool,
    /// When the attempt started (before joining): `elapsed_ms` counts from here.
    pub started: Instant,
    /// When an attempt that has not succeeded fails (and an echo peer that served ends).
    pub deadline: Instant,
}
