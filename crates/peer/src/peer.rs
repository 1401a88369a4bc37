//! The driver of one partner's link in a program's room (`room.rs`, which joins, probes
//! and rejoins for every link): it drives a [`Session`] with what the link's view of signaling,
//! the WebRTC peer connection (through the glue in [`crate::rtc`]), the data channel, the
//! program's messages and the clock report, and carries out the actions it asks for. Every
//! decision is the session's ([`crate::session`]); this file only moves messages and time. Also
//! here: the first join through one of several signaling URLs, the rejoin loop, the probe.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natkit_nat_probe::{probe, ProbeConfig};
use natkit_proto::{ErrorCode, NatSummary, ServerMsg, Welcome};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, RTCSessionDescription};

use crate::events::Event;
use crate::policy::{summary, usable_servers, RelayMode};
use crate::renewal::reconnect_delay;
use crate::rtc::{
    build_peer_connection, configuration, families_of, from_rtc_candidate, ice_err, local_ips,
    selected_pair, to_rtc_candidate, PcEvent, SelectedPair,
};
pub use crate::rtc::{rtc_ice_servers, turn_tls_config};
use crate::session::{Action, LocalNat, Message, RtcEvent, Session, SessionConfig};
pub use crate::session::{Failure, Mode, Stage};
use crate::signaling::{self, Signaling, SignalingError};

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// `ws://HOST:PORT` of natkit-signal: one, or several nodes of a cluster. The first that
    /// answers is joined; a lost connection rejoins through the next ones in turn.
    pub signal: Vec<String>,
    pub room: String,
    pub peer_id: Option<String>,
    pub token: Option<String>,
    pub relay: RelayMode,
    pub mode: Mode,
    /// The whole attempt, from start to the reply (`--send`) or to a connection (`--echo`).
    pub timeout: Duration,
    /// Renew TURN credentials at half their TTL (on by default; off only to show what happens
    /// without it).
    pub renew: bool,
    /// How `turns:` relays are verified; `None`: the system's roots and `SSL_CERT_FILE`.
    pub turn_tls: Option<Arc<rustls::ClientConfig>>,
}

/// Rejoins `room` as `peer_id` until it works, with [`reconnect_delay`] between attempts. Stops
/// trying (and says why) when the server refuses for a reason a retry cannot fix.
pub(crate) async fn reconnect(
    cfg: PeerConfig,
    peer_id: String,
    signal_at: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<Result<(Signaling, Welcome), String>>,
) {
    let lost = signal_at.load(Ordering::Relaxed);
    for attempt in 0u32.. {
        tokio::time::sleep(reconnect_delay(attempt)).await;
        // The node that was lost comes last: another node of a cluster first.
        let at = (lost + 1 + attempt as usize) % cfg.signal.len();
        let signal = &cfg.signal[at];
        let join = signaling::join(
            signal,
            &cfg.room,
            Some(&peer_id),
            cfg.token.as_deref(),
            cfg.turn_tls.as_ref(),
        );
        match tokio::time::timeout(Duration::from_secs(5), join).await {
            Ok(Ok(joined)) => {
                signal_at.store(at, Ordering::Relaxed);
                let _ = tx.send(Ok(joined));
                return;
            }
            // The server may not have noticed our old connection is gone: the id is still taken.
            Ok(Err(SignalingError::Refused {
                code: ErrorCode::BadPeerId,
                ..
            })) => {}
            Ok(Err(e @ SignalingError::Refused { .. })) if e.is_permanent() => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, attempt, "signaling reconnect failed"),
            Err(_) => tracing::debug!(attempt, "signaling reconnect timed out"),
        }
    }
}

/// The next message of a live signaling connection: `None` when it closed; never resolves while
/// there is none (reconnecting).
async fn next_signal(sig: &mut Option<Signaling>) -> Option<ServerMsg> {
    match sig {
        Some(s) => s.incoming.recv().await,
        None => std::future::pending().await,
    }
}

/// What the shell owns: the WebRTC objects and the signaling connection.
struct Shell<'a> {
    cfg: &'a PeerConfig,
    /// Created when the session has decided the policy ([`Action::Configure`]).
    pc: Option<Arc<dyn PeerConnection>>,
    /// One per address family that reaches the relay.
    local_ips: Vec<IpAddr>,
    pc_events: mpsc::UnboundedSender<PcEvent>,
    relay_only: bool,
    channel: Option<Arc<dyn DataChannel>>,
    dc_tx: mpsc::UnboundedSender<(Arc<dyn DataChannel>, DataChannelEvent)>,
    /// The link's view of the room's signaling connection (`None` while the room rejoins).
    sig: Option<Signaling>,
    emit: &'a (dyn Fn(Event) + Send + Sync),
    /// Where the partner's messages go, to the program.
    deliver: mpsc::Sender<Message>,
    /// The selected pair, as last read.
    pair: Option<SelectedPair>,
}

impl Shell<'_> {
    /// The peer connection; the session asks for WebRTC actions only after `Configure`.
    fn pc(&self) -> Result<Arc<dyn PeerConnection>, Failure> {
        self.pc
            .clone()
            .ok_or_else(|| ice_err("internal: a WebRTC action before the peer connection exists"))
    }

    async fn set_local(&self, desc: RTCSessionDescription) -> Result<(), Failure> {
        self.pc()?
            .set_local_description(desc)
            .await
            .map_err(ice_err)
    }

    async fn set_remote(&self, desc: RTCSessionDescription) -> Result<(), Failure> {
        self.pc()?
            .set_remote_description(desc)
            .await
            .map_err(ice_err)
    }

    /// Takes a data channel (ours, or the remote peer's) and forwards its events to the loop.
    fn attach(&mut self, dc: Arc<dyn DataChannel>) {
        self.channel = Some(Arc::clone(&dc));
        let tx = self.dc_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = dc.poll().await {
                let close = matches!(e, DataChannelEvent::OnClose);
                if tx.send((Arc::clone(&dc), e)).is_err() || close {
                    break;
                }
            }
        });
    }

    /// Carries out every action the session has queued (which may queue more).
    async fn run_actions(&mut self, session: &mut Session) -> Result<(), Failure> {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Signal(m) => {
                    if let Some(s) = &self.sig {
                        let _ = s.out.send(m).await;
                    }
                }
                Action::Configure {
                    servers,
                    relay_only,
                    direct_expected,
                } => {
                    self.relay_only = relay_only;
                    let pc = build_peer_connection(
                        &servers,
                        relay_only,
                        direct_expected,
                        &self.local_ips,
                        self.cfg.turn_tls.clone(),
                        self.pc_events.clone(),
                    )
                    .await?;
                    self.pc = Some(pc);
                }
                Action::ApplyServers {
                    servers,
                    relay_only,
                } => {
                    self.relay_only = relay_only;
                    self.pc()?
                        .set_configuration(configuration(&servers, relay_only))
                        .await
                        .map_err(|e| ice_err(format!("cannot apply new ICE servers: {e}")))?
                }
                Action::CreateDataChannel => {
                    let dc = self
                        .pc()?
                        .create_data_channel("natkit", None)
                        .await
                        .map_err(|e| Failure::new(Stage::Dtls, e.to_string()))?;
                    self.attach(dc);
                }
                Action::CreateOffer { ice_restart } => {
                    if ice_restart {
                        self.pc()?.restart_ice().await.map_err(ice_err)?;
                    }
                    let offer = self.pc()?.create_offer(None).await.map_err(ice_err)?;
                    self.set_local(offer.clone()).await?;
                    session.handle_local_offer(Instant::now(), offer.sdp);
                }
                Action::AcceptOffer { sdp, rollback } => {
                    if rollback {
                        let rb = RTCSessionDescription::rollback(None).map_err(ice_err)?;
                        self.pc()?
                            .set_local_description(rb)
                            .await
                            .map_err(|e| ice_err(format!("cannot roll back our offer: {e}")))?;
                    }
                    let desc = RTCSessionDescription::offer(sdp)
                        .map_err(|e| Failure::new(Stage::Signaling, format!("bad offer: {e}")))?;
                    self.set_remote(desc).await?;
                    let answer = self.pc()?.create_answer(None).await.map_err(ice_err)?;
                    self.set_local(answer.clone()).await?;
                    session.handle_local_answer(Instant::now(), answer.sdp);
                }
                Action::AcceptAnswer { sdp } => {
                    let desc = RTCSessionDescription::answer(sdp)
                        .map_err(|e| Failure::new(Stage::Signaling, format!("bad answer: {e}")))?;
                    self.set_remote(desc).await?;
                }
                Action::AddRemoteCandidate(c) => {
                    if let Err(e) = self.pc()?.add_ice_candidate(to_rtc_candidate(c)).await {
                        tracing::debug!(error = %e, "remote candidate not added");
                    }
                }
                Action::Send(msg) => {
                    if let Some(dc) = &self.channel {
                        let sent = match &msg {
                            Message::Text(t) => dc.send_text(t).await,
                            Message::Binary(b) => dc.send(bytes::BytesMut::from(&b[..])).await,
                        };
                        if let Err(e) = sent {
                            session.handle_rtc(Instant::now(), RtcEvent::SendFailed(e.to_string()));
                        }
                    }
                }
                // The room rejoins for every link, and hands this one its view.
                Action::Rejoin => self.sig = None,
                Action::Probe { target } => {
                    let nat = probe_nat(&target, self.emit).await?;
                    session.handle_probe(Instant::now(), nat);
                }
                Action::Emit(e) => (self.emit)(e),
                Action::Deliver(m) => {
                    if let Err(mpsc::error::TrySendError::Full(_)) = self.deliver.try_send(m) {
                        return Err(Failure::new(
                            Stage::Dtls,
                            format!(
                                "the program left {} messages unread: the channel is closed",
                                crate::api::MAX_UNREAD
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The peer connection's event as the session's, with the selected pair once connected.
    async fn rtc_event(&mut self, ev: PcEvent) -> Option<RtcEvent> {
        match ev {
            PcEvent::Candidate(c) => Some(RtcEvent::LocalCandidate(c.map(from_rtc_candidate))),
            PcEvent::State(RTCPeerConnectionState::Connected) => {
                // The nominated pair can show in the stats a moment after "connected".
                let mut pair = None;
                for _ in 0..40 {
                    if let Some(pc) = &self.pc {
                        pair = selected_pair(pc).await;
                    }
                    if pair.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let pair = pair.unwrap_or(SelectedPair {
                    local: "unknown".into(),
                    remote: "unknown".into(),
                    relay_protocol: None,
                });
                self.pair = Some(pair.clone());
                Some(RtcEvent::Connected {
                    local_candidate_type: pair.local,
                    remote_candidate_type: pair.remote,
                    relay_protocol: pair.relay_protocol,
                })
            }
            PcEvent::State(RTCPeerConnectionState::Failed) => Some(RtcEvent::Failed),
            PcEvent::State(RTCPeerConnectionState::Disconnected) => Some(RtcEvent::Disconnected),
            PcEvent::State(_) => None,
            PcEvent::Channel(dc) => {
                self.attach(dc);
                None
            }
        }
    }
}

/// Runs nat-probe against `target`, reports the result as an event and returns this side's
/// summary; `None` when the probe could not run (the session goes on without one). A STUN
/// server whose host answers that nothing listens on its port is a configuration error: the
/// session fails with stage `config`.
pub(crate) async fn probe_nat(
    target: &str,
    emit: &(dyn Fn(Event) + Send + Sync),
) -> Result<Option<NatSummary>, Failure> {
    let config = ProbeConfig {
        servers: vec![target.to_owned()],
        tcp_rtt_seed: true,
        ..Default::default()
    };
    match probe(&config).await {
        Ok(r) => {
            emit(Event::Probe(
                serde_json::to_value(&r).expect("report serialises"),
            ));
            Ok(Some(summary(&r)))
        }
        Err(e @ natkit_nat_probe::ProbeError::NoStunServer { .. }) => Err(Failure::new(
            Stage::Config,
            format!("the STUN URL handed out is wrong: {e}"),
        )),
        Err(e) => {
            tracing::warn!(error = %e, %target, "probe failed");
            Ok(None)
        }
    }
}

/// Why [`first_join`] gave up: a refusal or an unreachable server, or no welcome in time.
#[derive(Debug)]
pub(crate) enum JoinError {
    Signaling(SignalingError),
    TimedOut(String),
}

impl From<JoinError> for Failure {
    fn from(e: JoinError) -> Failure {
        match e {
            JoinError::Signaling(e) => Failure::new(Stage::Signaling, e.to_string()),
            JoinError::TimedOut(why) => Failure::new(Stage::Signaling, why),
        }
    }
}

/// Joins through the first of `cfg.signal` that answers, going round them again (with
/// [`reconnect_delay`] between rounds) while they fail for a reason that may pass: a node of
/// several that is down, a refusal such as `cluster-unavailable`. A refusal no node would answer
/// differently ends it, and so does a single server that cannot be reached (said at once). At
/// `deadline`, the last error. Which URL it was.
pub(crate) async fn first_join(
    cfg: &PeerConfig,
    deadline: Instant,
) -> Result<(Signaling, Welcome, usize), JoinError> {
    let mut last = None;
    for round in 0u32.. {
        if round > 0 {
            let pause = reconnect_delay(round - 1);
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        for (at, signal) in cfg.signal.iter().enumerate() {
            let join = signaling::join(
                signal,
                &cfg.room,
                cfg.peer_id.as_deref(),
                cfg.token.as_deref(),
                cfg.turn_tls.as_ref(),
            );
            match tokio::time::timeout_at(deadline.into(), join).await {
                Err(_) => break,
                Ok(Ok((sig, welcome))) => return Ok((sig, welcome, at)),
                Ok(Err(e)) if e.is_permanent() => return Err(JoinError::Signaling(e)),
                Ok(Err(e @ (SignalingError::Connect { .. } | SignalingError::Closed)))
                    if cfg.signal.len() == 1 =>
                {
                    return Err(JoinError::Signaling(e))
                }
                Ok(Err(e)) => {
                    tracing::debug!(%signal, error = %e, round, "signaling node unavailable");
                    last = Some(e);
                }
            }
        }
    }
    Err(match last {
        Some(e) => JoinError::Signaling(e),
        None => JoinError::TimedOut(format!(
            "no welcome from {} in time",
            cfg.signal.join(" or ")
        )),
    })
}

/// What a program's messages go through (bounded: `send` waits while the session is busy).
pub(crate) const INPUT_QUEUE: usize = 256;

/// How the driver of one partner's link in a program's room ([`crate::room`]) meets the program
/// and the room: events, the program's messages (`None` at the end), where the partner's
/// messages and the path go, and what the room does for every link.
pub(crate) struct Io<'a> {
    pub emit: &'a (dyn Fn(Event) + Send + Sync),
    pub input: mpsc::Receiver<Option<Message>>,
    pub app: AppIo,
    pub link: LinkIo,
}

/// What a link gets from its room: the room probes once and rejoins for every link.
pub(crate) struct LinkIo {
    /// The room's signaling connection after a rejoin (each link gets its own view of it), or
    /// why the room gave up.
    pub rejoined: mpsc::UnboundedReceiver<Result<(Signaling, Welcome), String>>,
    /// This side's NAT summary, probed by the room (`None`: not probed or the probe failed).
    pub local_nat: Option<NatSummary>,
}

/// The library's side of a session ([`crate::api`]).
pub(crate) struct AppIo {
    /// The partner's messages (bounded: a program that stops reading ends the channel).
    pub deliver: mpsc::Sender<Message>,
    /// The path once the channel is open, updated after ICE restarts.
    pub path: tokio::sync::watch::Sender<Option<(String, crate::api::Path)>>,
}

/// Drives the session `joined` began, until its outcome.
pub(crate) async fn drive(
    cfg: &PeerConfig,
    joined: (Signaling, Welcome),
    started: Instant,
    io: Io<'_>,
) -> Result<(), Failure> {
    let deadline = started + cfg.timeout;
    let (sig, welcome) = joined;
    let Io {
        emit,
        input: mut line_rx,
        app,
        link,
    } = io;
    let mut input_open = true;
    let mut rejoin_rx = link.rejoined;

    // The PC binds to the interfaces that reach the relay, one per family.
    let local_ips = local_ips(&usable_servers(&welcome.ice_servers, RelayMode::Auto, None));
    let families = families_of(&local_ips);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();

    let (dc_tx, mut dc_rx) = mpsc::unbounded_channel();
    let (flushed_tx, mut flushed_rx) = mpsc::unbounded_channel();
    let mut shell = Shell {
        cfg,
        pc: None,
        local_ips,
        pc_events: ev_tx,
        relay_only: false,
        channel: None,
        dc_tx,
        sig: Some(sig),
        emit,
        deliver: app.deliver.clone(),
        pair: None,
    };
    let mut session = Session::new(
        SessionConfig {
            mode: cfg.mode.clone(),
            relay: cfg.relay,
            local_nat: LocalNat::Known(link.local_nat),
            families,
            renew: cfg.renew,
            restart_on_renewal: true,
            started,
            deadline,
        },
        welcome,
        Instant::now(),
    );

    // The program's path is published once the channel opens, and again after each peer
    // connection event (a new selected pair, a new policy): not on every message.
    let mut channel_open = false;
    let mut path_stale = false;
    let outcome = loop {
        if let Err(f) = shell.run_actions(&mut session).await {
            break Err(f);
        }
        if channel_open && std::mem::take(&mut path_stale) {
            publish_path(&shell, &session, &app);
        }
        if let Some(o) = session.outcome() {
            break o.clone();
        }
        let wake = tokio::time::Instant::from_std(session.poll_timeout());
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => session.handle_timeout(Instant::now()),
            joined = rejoin_rx.recv() => match joined {
                Some(Ok((s, w))) => {
                    shell.sig = Some(s);
                    session.handle_rejoined(Instant::now(), w);
                }
                Some(Err(why)) => session.handle_rejoin_failed(Instant::now(), why),
                None => {}
            },
            m = next_signal(&mut shell.sig) => match m {
                Some(m) => session.handle_signal(Instant::now(), m),
                None => {
                    shell.sig = None;
                    session.handle_signaling_lost(Instant::now());
                }
            },
            ev = ev_rx.recv() => {
                let ev = match ev {
                    Some(ev) => shell.rtc_event(ev).await,
                    None => Some(RtcEvent::Gone),
                };
                if let Some(ev) = ev {
                    session.handle_rtc(Instant::now(), ev);
                }
                path_stale = true;
            }
            input = line_rx.recv(), if input_open => match input {
                Some(m) => {
                    session.handle_input(Instant::now(), m);
                }
                // The program closed the channel: its end, once what it sent is acknowledged.
                None => {
                    input_open = false;
                    session.handle_input(Instant::now(), None);
                    if let Some(dc) = shell.channel.clone() {
                        let flushed = flushed_tx.clone();
                        tokio::spawn(async move {
                            while dc.outstanding_bytes().await.is_ok_and(|n| n > 0) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            let _ = flushed.send(());
                        });
                    }
                }
            },
            Some(()) = flushed_rx.recv() => {
                session.handle_rtc(Instant::now(), RtcEvent::Flushed);
            },
            Some((_, e)) = dc_rx.recv() => {
                let ev = match e {
                    DataChannelEvent::OnOpen => {
                        channel_open = true;
                        path_stale = true;
                        Some(RtcEvent::ChannelOpen)
                    }
                    DataChannelEvent::OnMessage(msg) => Some(RtcEvent::Message(if msg.is_string {
                        Message::Text(String::from_utf8_lossy(&msg.data).into_owned())
                    } else {
                        Message::Binary(msg.data.to_vec())
                    })),
                    DataChannelEvent::OnClose => Some(RtcEvent::ChannelClosed),
                    _ => None,
                };
                if let Some(ev) = ev {
                    session.handle_rtc(Instant::now(), ev);
                }
            }
        }
    };
    // Events queued with the outcome (the last message, say) still reach the user.
    while let Some(action) = session.poll_action() {
        match action {
            Action::Emit(e) => emit(e),
            Action::Deliver(m) => {
                let _ = shell.deliver.try_send(m);
            }
            _ => {}
        }
    }
    let reason = match &outcome {
        Ok(()) => "done".to_owned(),
        Err(f) => f.to_string(),
    };
    if let Some(dc) = shell.channel.take() {
        let _ = dc.close().await;
    }
    if let Some(pc) = shell.pc.take() {
        let _ = pc.close().await;
    }
    emit(Event::Closed { reason });
    outcome
}

/// Tells the program the path of its open channel (when it changed).
fn publish_path(shell: &Shell<'_>, session: &Session, app: &AppIo) {
    let (Some(pair), Some(policy), Some(partner)) =
        (&shell.pair, session.policy(), session.partner())
    else {
        return;
    };
    let path = crate::api::Path {
        local: pair.local.clone(),
        remote: pair.remote.clone(),
        relay_transport: pair.relay_protocol.clone(),
        rule: policy.rule.as_str().to_owned(),
        relay_only: policy.relay_only,
    };
    app.path.send_if_modified(|p| {
        let new = Some((partner.to_owned(), path));
        let changed = *p != new;
        *p = new;
        changed
    });
}
