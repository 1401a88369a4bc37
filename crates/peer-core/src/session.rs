//! The peer's session as a sans-IO state machine, in the manner of str0m and quinn-proto.
//!
//! [`Session`] never touches a socket, a WebRTC object or the clock. The shell
//! (natkit-peer's `peer` module, the Python package's session) feeds it what happened, each with `now`:
//! - [`Session::handle_signal`]: a message from natkit-signal;
//! - [`Session::handle_signaling_lost`], [`Session::handle_rejoined`],
//!   [`Session::handle_rejoin_failed`]: the signaling connection's fate;
//! - [`Session::handle_rtc`]: an [`RtcEvent`] from the peer connection or the data channel;
//! - [`Session::handle_local_offer`] / [`Session::handle_local_answer`]: a description the shell
//!   created because the session asked for it;
//! - [`Session::handle_input`]: a line of `--chat` input;
//! - [`Session::handle_timeout`]: the time [`Session::poll_timeout`] asked for has come;
//!
//! and carries out what [`Session::poll_action`] returns, in order, until [`Session::outcome`]
//! is set. Every decision lives here: the NAT summaries exchanged and the ICE policy of the pair
//! ([`crate::policy::decide`]), who offers, glare (perfect negotiation), when candidates may be
//! trickled or added, credential renewal, ICE restarts (relay-only when no direct pair worked in
//! time), the remote peer leaving and coming back, and when the session is over and why.
//!
//! The peer connection is created only once the policy is decided ([`Action::Configure`]): the
//! offering side waits up to [`SUMMARY_WAIT`] for the other peer's summary, the answering side
//! decides when the offer arrives (a natkit-peer's summary comes before its offer).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use natkit_proto::{ClientMsg, IceCandidate, IceServer, NatSummary, ServerMsg, Welcome};

use crate::events::Event;
use crate::policy::{stun_target, usable_servers, Policy, RelayMode, Rule};

mod interface;
mod pair;
use crate::renewal::{polite, renew_after};
pub use interface::{
    Action, Failure, LocalNat, Message, Mode, RestartReason, RtcEvent, SessionConfig, Stage,
};

/// How long a remote peer that left signaling (while our data channel is open) may take to come
/// back before the session is over.
pub const REMOTE_RETURN_GRACE: Duration = Duration::from_secs(15);
/// How long to wait for an answer to `refresh` before asking again.
pub const REFRESH_RETRY: Duration = Duration::from_secs(3);
/// `--chat` after the end of input: done once nothing has arrived for this long.
pub const CHAT_QUIET: Duration = Duration::from_secs(1);
/// Candidates kept while they cannot be sent or added yet; more are dropped (a remote peer
/// cannot grow our memory without bound).
pub const MAX_BUFFERED_CANDIDATES: usize = 256;
/// `--chat` lines (or a program's messages) kept until the data channel opens.
pub const MAX_UNSENT_LINES: usize = 1024;
/// How long the offering side waits for the other peer's NAT summary before deciding alone.
pub const SUMMARY_WAIT: Duration = Duration::from_secs(1);
/// With all candidates allowed: when no pair has connected this long after the decision, ICE is
/// restarted relay-only.
pub const DIRECT_DEADLINE: Duration = Duration::from_secs(5);
/// Peers told our NAT summary, at most (a room holds 16 by default).
const MAX_SUMMARY_TARGETS: usize = 64;

/// Where the offer/answer exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Negotiation {
    /// Nothing sent or received yet (the side that waits for an offer).
    Idle,
    /// We asked the shell for an offer, or sent one, and wait for the answer.
    OfferPending,
    /// A remote description is set and no offer of ours is outstanding.
    Stable,
}

/// The signaling connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignalingState {
    Up,
    /// Lost; the shell is rejoining.
    Rejoining,
    /// The shell gave up rejoining; the data channel goes on without signaling.
    GaveUp,
}

/// The remote peer, as signaling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    id: String,
    /// Left signaling at this moment, and not back yet.
    gone_since: Option<Instant>,
}

pub struct Session {
    cfg: SessionConfig,
    /// This side's NAT summary, once probed (`None`: not probed, or the probe failed).
    local_nat: Option<NatSummary>,
    /// Waiting for the probe asked for: the welcome to go on from.
    probing: Option<Welcome>,
    my_id: String,
    /// We joined a room with peers in it: we offer.
    offerer: bool,
    /// Decided once, before the peer connection exists; changed only by the direct deadline.
    policy: Option<Policy>,
    /// The last NAT summary a peer sent us, and whose.
    remote_nat: Option<(String, NatSummary)>,
    summary_sent_to: Vec<String>,
    /// The offering side decides at this moment if no summary came first.
    decide_by: Option<Instant>,
    /// With all candidates allowed: restart relay-only if not connected by then.
    direct_deadline: Option<Instant>,
    servers: Vec<IceServer>,
    renews: bool,
    remote: Option<Remote>,
    negotiation: Negotiation,
    /// A remote description has been set at least once (restarts need one).
    have_remote_desc: bool,
    /// Our local description exists (trickling needs one).
    have_local_desc: bool,
    signaling: SignalingState,
    connected: bool,
    channel_open: bool,
    /// Remote candidates that came before the remote description (or during our offer).
    pending_remote: Vec<IceCandidate>,
    /// Local candidates gathered before they could be sent.
    pending_local: Vec<Option<IceCandidate>>,
    unsent: Vec<Message>,
    input_done: bool,
    /// `--chat` after the input ended: finish at this moment (extended by every arrival).
    end_at: Option<Instant>,
    renew_at: Option<Instant>,
    refresh_sent_at: Option<Instant>,
    restart_wanted: Option<RestartReason>,
    actions: VecDeque<Action>,
    outcome: Option<Result<(), Failure>>,
}

impl Session {
    /// A session that has just joined: `welcome` is the server's answer to our `join`. The side
    /// that finds peers in the room offers to the first of them at once.
    ///
    /// With [`LocalNat::Probe`], `relay` `auto` and a STUN server among the welcome's ICE
    /// servers, the session first asks for a probe of that server ([`Action::Probe`]) and goes on
    /// once [`Session::handle_probe`] reports it.
    pub fn new(cfg: SessionConfig, welcome: Welcome, now: Instant) -> Session {
        let probe_target = match &cfg.local_nat {
            LocalNat::Probe if cfg.relay == RelayMode::Auto => stun_target(
                &usable_servers(&welcome.ice_servers, cfg.relay, None),
                &cfg.families,
            ),
            _ => None,
        };
        let local_nat = match &cfg.local_nat {
            LocalNat::Known(nat) => nat.clone(),
            LocalNat::Probe => None,
        };
        let servers = usable_servers(&welcome.ice_servers, cfg.relay, local_nat.as_ref());
        let renews = cfg.renew && servers.iter().any(IceServer::has_turn);
        let mut s = Session {
            local_nat,
            probing: None,
            my_id: welcome.peer_id.clone(),
            offerer: !welcome.peers.is_empty(),
            policy: None,
            remote_nat: None,
            summary_sent_to: Vec::new(),
            decide_by: None,
            direct_deadline: None,
            renew_at: None,
            servers,
            renews,
            remote: None,
            negotiation: Negotiation::Idle,
            have_remote_desc: false,
            have_local_desc: false,
            signaling: SignalingState::Up,
            connected: false,
            channel_open: false,
            pending_remote: Vec::new(),
            pending_local: Vec::new(),
            unsent: Vec::new(),
            input_done: false,
            end_at: None,
            refresh_sent_at: None,
            restart_wanted: None,
            actions: VecDeque::new(),
            outcome: None,
            cfg,
        };
        s.schedule_renewal(welcome.ttl, now);
        match probe_target {
            Some(target) => {
                s.push(Action::Probe { target });
                s.probing = Some(welcome);
            }
            None => s.start(&welcome, now),
        }
        s
    }

    /// The policy, once decided.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    fn relay_only(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.relay_only)
    }

    /// The partner's peer id, once there is one.
    pub fn partner(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.id.as_str())
    }

    /// The ICE servers in force (after `--relay never` removed TURN).
    pub fn servers(&self) -> &[IceServer] {
        &self.servers
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// `Some` once the session is over: `Ok` when it did what the mode asked.
    pub fn outcome(&self) -> Option<&Result<(), Failure>> {
        self.outcome.as_ref()
    }

    /// When an attempt fails, an echo peer ends; `None`: never (a connected [`Mode::App`]).
    fn deadline(&self) -> Option<Instant> {
        match self.end_at {
            Some(at) => Some(at),
            None if self.cfg.mode == Mode::App && self.connected => None,
            None => Some(self.cfg.deadline),
        }
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        // A connected program's channel has no deadline: a day is as good as never.
        let mut next = self.deadline().unwrap_or(
            self.cfg
                .deadline
                .max(self.cfg.started + Duration::from_secs(86_400)),
        );
        for at in [self.decide_by, self.direct_deadline].into_iter().flatten() {
            next = next.min(at);
        }
        if let Some(since) = self.remote.as_ref().and_then(|r| r.gone_since) {
            next = next.min(since + REMOTE_RETURN_GRACE);
        }
        if let (Some(at), SignalingState::Up) = (self.renew_at, self.signaling) {
            let due = match self.refresh_sent_at {
                Some(sent) => (sent + REFRESH_RETRY).max(at),
                None => at,
            };
            next = next.min(due);
        }
        next
    }

    /// Where a failure now would be reported.
    pub fn stage(&self) -> Stage {
        if !self.connected {
            if self.relay_only() {
                Stage::Relay
            } else {
                Stage::Ice
            }
        } else if !self.channel_open {
            Stage::Dtls
        } else {
            Stage::Timeout
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if self.deadline().is_some_and(|at| now >= at) {
            let served = !matches!(self.cfg.mode, Mode::Send(_)) && self.connected;
            if self.end_at.is_some() || served {
                // An echo peer that served its session ends at its timeout.
                return self.end(Ok(()));
            }
            let stage = self.stage();
            let what = match stage {
                Stage::Relay => "no connection with relay-only ICE: the relay refused us or no relayed path works",
                Stage::Ice => "ICE found no working candidate pair",
                Stage::Dtls => "connected, but the data channel did not open (DTLS/SCTP)",
                _ => "no reply to the message in time",
            };
            return self.end(Err(Failure::new(stage, what)));
        }
        if let Some(since) = self.remote.as_ref().and_then(|r| r.gone_since) {
            if now >= since + REMOTE_RETURN_GRACE {
                return self.remote_left();
            }
        }
        if self.decide_by.is_some_and(|at| now >= at) {
            self.decide_policy(now);
        }
        if self.direct_deadline.is_some_and(|at| now >= at) {
            self.direct_deadline = None;
            if !self.connected {
                // No direct pair in time: from now on, relay only.
                let reason = format!(
                    "no connection within {} s with all candidates: ICE restarted relay-only",
                    DIRECT_DEADLINE.as_secs()
                );
                let remote_nat = self.remote_nat.as_ref().map(|(_, n)| n.clone());
                self.policy = Some(Policy {
                    relay_only: true,
                    rule: Rule::DirectDeadline,
                    reason: reason.clone(),
                });
                self.push(Action::Emit(Event::Policy {
                    ice_transport_policy: "relay",
                    rule: Rule::DirectDeadline.as_str(),
                    reason,
                    local_nat: self.local_nat.clone(),
                    remote_nat,
                }));
                self.restart_wanted
                    .get_or_insert(RestartReason::DirectDeadline);
            }
        }
        // Renewal: ask for a new credential, again every few seconds until one arrives.
        if let (Some(at), SignalingState::Up) = (self.renew_at, self.signaling) {
            let waiting = self
                .refresh_sent_at
                .is_some_and(|t| now < t + REFRESH_RETRY);
            if now >= at && !waiting {
                self.push(Action::Signal(ClientMsg::Refresh));
                self.refresh_sent_at = Some(now);
            }
        }
        self.drive();
    }

    pub fn handle_signal(&mut self, now: Instant, msg: ServerMsg) {
        if self.outcome.is_some() {
            return;
        }
        match msg {
            ServerMsg::Offer { from, sdp } => self.remote_offer(now, from, sdp),
            ServerMsg::NatSummary { from, nat } => {
                let theirs = self.remote.as_ref().is_some_and(|r| r.id == from);
                self.remote_nat = Some((from.clone(), nat));
                if theirs && self.offerer && self.policy.is_none() {
                    self.decide_policy(now);
                } else if !self.offerer
                    && self.remote.is_none()
                    && self.policy.is_none()
                    && self.probing.is_none()
                {
                    // A peer tells the waiting side its NAT just before it offers (it sends its
                    // summary only to the peer it offers to): decide, and create the peer
                    // connection, while the offer is being made.
                    self.remote = Some(Remote {
                        id: from,
                        gone_since: None,
                    });
                    self.decide_policy(now);
                }
            }
            ServerMsg::Answer { sdp, .. } if self.negotiation == Negotiation::OfferPending => {
                self.push(Action::AcceptAnswer { sdp });
                self.negotiation = Negotiation::Stable;
                self.have_remote_desc = true;
                self.add_pending_remote();
            }
            ServerMsg::Answer { from, .. } => {
                tracing::debug!(%from, "an answer without an offer of ours; ignored");
            }
            // End-of-candidates needs no action: the remote description's candidates and the
            // trickled ones are all ICE gets either way.
            ServerMsg::Candidate {
                candidate: Some(c), ..
            } => {
                if self.have_remote_desc && self.negotiation == Negotiation::Stable {
                    self.push(Action::AddRemoteCandidate(c));
                } else if self.pending_remote.len() < MAX_BUFFERED_CANDIDATES {
                    self.pending_remote.push(c);
                } else {
                    tracing::warn!("too many early remote candidates; dropped one");
                }
            }
            ServerMsg::Candidate {
                candidate: None, ..
            } => {}
            ServerMsg::IceServers { ice_servers, ttl } => {
                self.servers =
                    usable_servers(&ice_servers, self.cfg.relay, self.local_nat.as_ref());
                self.schedule_renewal(ttl, now);
                self.push(Action::Emit(Event::Renewed { ttl }));
                if self.have_remote_desc && self.cfg.restart_on_renewal {
                    // Apply them and restart ICE, so a new allocation carries them.
                    self.restart_wanted.get_or_insert(RestartReason::Renewal);
                } else if self.policy.is_some() {
                    // Not negotiated yet, the first gathering will use them; or the shell
                    // hands them to the live allocations.
                    self.apply_servers();
                }
                // (No peer connection yet: it is created with the new servers.)
            }
            ServerMsg::PeerJoined { peer_id } => {
                if let Some(r) = self.remote.as_mut().filter(|r| r.id == peer_id) {
                    r.gone_since = None;
                }
                // A newcomer will offer to us: tell it our NAT first.
                if self.remote.as_ref().is_none_or(|r| r.id == peer_id) {
                    self.send_summary(peer_id);
                }
            }
            ServerMsg::PeerLeft { peer_id } => {
                if let Some(r) = self.remote.as_mut().filter(|r| r.id == peer_id) {
                    if self.channel_open {
                        // It may only have lost its signaling connection: give it time to come
                        // back before calling the session over.
                        r.gone_since.get_or_insert(now);
                    } else {
                        return self.remote_left();
                    }
                }
            }
            ServerMsg::Error { code, message } => {
                tracing::warn!(%code, %message, "signaling error");
            }
            // The node drains: move to another before it closes this connection.
            ServerMsg::Reconnect { .. } => self.rejoin_elsewhere("draining"),
            ServerMsg::Welcome(_) | ServerMsg::Pong | ServerMsg::Unknown => {}
        }
        self.drive();
    }

    /// The signaling connection closed: the data channel does not need it, renegotiation does.
    pub fn handle_signaling_lost(&mut self, _now: Instant) {
        self.rejoin_elsewhere("lost");
    }

    /// Drops the signaling connection and rejoins (the next signaling URL first), saying why.
    fn rejoin_elsewhere(&mut self, why: &'static str) {
        if self.outcome.is_some() || self.signaling != SignalingState::Up {
            return;
        }
        self.signaling_is(SignalingState::Rejoining, why, vec![]);
        self.push(Action::Rejoin);
    }

    /// Signaling is in `state` now; the event says so as `shown`, with the room's `peers`.
    fn signaling_is(&mut self, state: SignalingState, shown: &'static str, peers: Vec<String>) {
        self.signaling = state;
        self.push(Action::Emit(Event::Signaling {
            state: shown,
            peers,
        }));
    }

    /// Rejoined the room under our id; `welcome` carries a fresh credential.
    pub fn handle_rejoined(&mut self, now: Instant, welcome: Welcome) {
        if self.outcome.is_some() {
            return;
        }
        self.signaling_is(SignalingState::Up, "reconnected", welcome.peers.clone());
        // The welcome's credential counts as a renewal.
        self.servers = usable_servers(
            &welcome.ice_servers,
            self.cfg.relay,
            self.local_nat.as_ref(),
        );
        if self.policy.is_some() {
            self.apply_servers();
        }
        self.schedule_renewal(welcome.ttl, now);
        if let Some(r) = self.remote.as_mut() {
            if welcome.peers.contains(&r.id) {
                r.gone_since = None;
            }
        }
        // An offer sent into the old connection may be lost.
        if self.negotiation == Negotiation::OfferPending && self.connected {
            self.negotiation = Negotiation::Stable;
            self.restart_wanted
                .get_or_insert(RestartReason::SignalingReconnect);
        }
        self.flush_local();
        self.drive();
    }

    /// The shell stopped trying to rejoin, for `why`.
    pub fn handle_rejoin_failed(&mut self, _now: Instant, why: String) {
        if self.outcome.is_some() {
            return;
        }
        self.signaling_is(SignalingState::GaveUp, "gave-up", vec![]);
        if !self.connected {
            return self.end(Err(Failure::new(Stage::Signaling, why)));
        }
        tracing::warn!(%why, "signaling lost for good; the data channel goes on without it");
    }

    /// The offer the shell created for [`Action::CreateOffer`] is our local description now.
    pub fn handle_local_offer(&mut self, _now: Instant, sdp: String) {
        self.local_description(sdp, |to, sdp| ClientMsg::Offer { to, sdp });
    }

    /// The answer the shell created for [`Action::AcceptOffer`] is our local description now.
    pub fn handle_local_answer(&mut self, _now: Instant, sdp: String) {
        if self.local_description(sdp, |to, sdp| ClientMsg::Answer { to, sdp }) {
            self.drive();
        }
    }

    /// Sends our new local description as `message` and lets the held candidates trickle;
    /// false once the session has ended.
    fn local_description(&mut self, sdp: String, message: fn(String, String) -> ClientMsg) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        self.have_local_desc = true;
        if let Some(to) = self.signal_target() {
            self.push(Action::Signal(message(to, sdp)));
        }
        self.flush_local();
        true
    }

    pub fn handle_rtc(&mut self, now: Instant, event: RtcEvent) {
        if self.outcome.is_some() {
            return;
        }
        match event {
            RtcEvent::LocalCandidate(c) => {
                // Trickle once the remote peer is known; before that (or while signaling is
                // down), keep them.
                if self.pending_local.len() < MAX_BUFFERED_CANDIDATES {
                    self.pending_local.push(c);
                } else {
                    tracing::warn!("too many unsent local candidates; dropped one");
                }
                self.flush_local();
            }
            RtcEvent::Connected {
                local_candidate_type,
                remote_candidate_type,
                relay_protocol,
            } => {
                let first = !self.connected;
                self.connected = true;
                self.direct_deadline = None;
                self.push(Action::Emit(if first {
                    Event::Connected {
                        local_candidate_type,
                        remote_candidate_type,
                        relay_protocol,
                        elapsed_ms: now.saturating_duration_since(self.cfg.started).as_millis()
                            as u64,
                    }
                } else {
                    Event::Reconnected {
                        local_candidate_type,
                        remote_candidate_type,
                        relay_protocol,
                    }
                }));
            }
            RtcEvent::Failed => {
                if self.connected && self.have_remote_desc {
                    // A path that worked died (relay restart, NAT rebinding): restart ICE rather
                    // than give up. The remote peer does the same; glare is resolved.
                    self.push(Action::Emit(Event::ConnectionState { state: "failed" }));
                    self.restart_wanted = Some(RestartReason::Failed);
                } else {
                    let stage = self.stage();
                    return self.end(Err(Failure::new(stage, "the peer connection failed")));
                }
            }
            RtcEvent::Disconnected => {
                if self.connected {
                    self.push(Action::Emit(Event::ConnectionState {
                        state: "disconnected",
                    }));
                }
            }
            RtcEvent::Gone => {
                return self.end(Err(Failure::new(Stage::Ice, "the peer connection stopped")));
            }
            RtcEvent::ChannelOpen => {
                self.channel_open = true;
                if let Mode::Send(text) = &self.cfg.mode {
                    let text = text.clone();
                    self.push(Action::Send(Message::Text(text)));
                }
                for m in std::mem::take(&mut self.unsent) {
                    self.push(Action::Send(m));
                }
                if self.input_done {
                    self.end_at = Some(now + CHAT_QUIET);
                }
            }
            RtcEvent::Message(msg) if self.cfg.mode == Mode::App => self.push(Action::Deliver(msg)),
            RtcEvent::Message(msg) => {
                self.push(Action::Emit(Event::Message {
                    data: msg.to_text_lossy(),
                }));
                match &self.cfg.mode {
                    Mode::Echo => self.push(Action::Send(msg)),
                    Mode::App => unreachable!("delivered above"),
                    Mode::Send(_) => return self.end(Ok(())),
                    // After the input ended, every arrival extends the quiet second.
                    Mode::Chat => {
                        if self.end_at.is_some() {
                            self.end_at = Some(now + CHAT_QUIET);
                        }
                    }
                }
            }
            RtcEvent::SendFailed(why) => {
                if matches!(self.cfg.mode, Mode::Send(_)) {
                    return self.end(Err(Failure::new(Stage::Dtls, why)));
                }
                tracing::debug!(%why, "a data-channel send failed");
            }
            RtcEvent::Flushed => {
                if self.cfg.mode == Mode::App && self.end_at.is_some() {
                    return self.end(Ok(()));
                }
            }
            RtcEvent::ChannelClosed => {
                return self.end(if matches!(self.cfg.mode, Mode::Send(_)) {
                    Err(Failure::new(Stage::Dtls, "the data channel closed"))
                } else {
                    Ok(())
                });
            }
        }
        self.drive();
    }

    /// A line of `--chat` input, or a program's message ([`Mode::App`]); `None` at the end of
    /// input. False when it could not be taken: the session is over, or [`MAX_UNSENT_LINES`]
    /// messages already wait for the channel to open.
    pub fn handle_input(&mut self, now: Instant, input: Option<Message>) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        match input {
            Some(m) if self.channel_open => self.push(Action::Send(m)),
            Some(m) if self.unsent.len() < MAX_UNSENT_LINES => self.unsent.push(m),
            Some(_) => {
                tracing::warn!("too many messages before the data channel opened; dropped one");
                return false;
            }
            None if self.channel_open => self.end_at = Some(now + CHAT_QUIET),
            None => self.input_done = true,
        }
        true
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn apply_servers(&mut self) {
        self.push(Action::ApplyServers {
            servers: self.servers.clone(),
            relay_only: self.relay_only(),
        });
    }

    fn end(&mut self, outcome: Result<(), Failure>) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
        }
    }

    /// The remote peer is gone for good: a served echo or chat session is over, a `--send`
    /// failed.
    fn remote_left(&mut self) {
        if !matches!(self.cfg.mode, Mode::Send(_)) && self.connected {
            self.end(Ok(()))
        } else {
            let stage = self.stage();
            self.end(Err(Failure::new(stage, "the remote peer left")))
        }
    }

    fn schedule_renewal(&mut self, ttl: u64, now: Instant) {
        self.renew_at = self
            .renews
            .then(|| now + renew_after(Duration::from_secs(ttl)));
        self.refresh_sent_at = None;
    }

    /// The remote peer's id, while signaling can carry a message to it.
    fn signal_target(&self) -> Option<String> {
        match (&self.remote, self.signaling) {
            (Some(r), SignalingState::Up) => Some(r.id.clone()),
            _ => None,
        }
    }

    fn remote_offer(&mut self, now: Instant, from: String, sdp: String) {
        let mut rollback = false;
        if self.negotiation == Negotiation::OfferPending {
            // Glare: both sides offered at once (perfect negotiation).
            if !polite(&self.my_id, &from) {
                tracing::debug!(%from, "glare: our offer wins, theirs is ignored");
                return;
            }
            rollback = true;
        }
        self.remote = Some(Remote {
            id: from,
            gone_since: None,
        });
        // The answering side decides now, with the summary that came before the offer.
        self.decide_policy(now);
        self.push(Action::AcceptOffer { sdp, rollback });
        self.negotiation = Negotiation::Stable;
        self.have_remote_desc = true;
        // The answer replaces our local description: nothing to trickle until it is set.
        self.have_local_desc = false;
        self.add_pending_remote();
    }

    fn add_pending_remote(&mut self) {
        for c in std::mem::take(&mut self.pending_remote) {
            self.push(Action::AddRemoteCandidate(c));
        }
    }

    fn flush_local(&mut self) {
        if !self.have_local_desc || self.pending_local.is_empty() {
            return;
        }
        let Some(to) = self.signal_target() else {
            return;
        };
        for candidate in std::mem::take(&mut self.pending_local) {
            self.push(Action::Signal(ClientMsg::Candidate {
                to: to.clone(),
                candidate,
            }));
        }
    }

    /// Starts a wanted ICE restart as soon as signaling and the negotiation state allow it.
    fn drive(&mut self) {
        let Some(reason) = self.restart_wanted else {
            return;
        };
        let remote_here = self.remote.as_ref().is_some_and(|r| r.gone_since.is_none());
        if self.signaling == SignalingState::Up
            && remote_here
            && self.have_remote_desc
            && self.negotiation == Negotiation::Stable
        {
            self.restart_wanted = None;
            self.apply_servers();
            self.push(Action::CreateOffer { ice_restart: true });
            self.negotiation = Negotiation::OfferPending;
            self.push(Action::Emit(Event::IceRestart {
                reason: reason.as_str(),
            }));
        }
    }
}

#[cfg(test)]
mod pair_tests;
#[cfg(test)]
mod tests;
