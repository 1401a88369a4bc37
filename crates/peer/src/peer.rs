//! The peer: join a room through natkit-signal, probe the NAT, choose the ICE transport policy,
//! connect a data channel with trickle ICE, and run `--echo`, `--send` or `--chat`.
//!
//! Long sessions: TURN credentials are renewed at half their TTL (`refresh` over signaling, then
//! `set_configuration` and an ICE restart); a signaling connection that drops is rejoined with
//! the same peer id while the data channel goes on; a connection that fails after working is
//! restarted. Both peers may renegotiate, so offers that cross are resolved as in the W3C's
//! "perfect negotiation" ([`polite`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natkit_nat_probe::{probe, ProbeConfig};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfiguration,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, RTCStatsReportEntry, SettingEngineBuilder, StatsSelector,
};

use crate::events::Event;
use crate::policy::{decide, RelayMode};
use crate::renewal::{polite, reconnect_delay, renew_after};
use crate::signaling::{self, Signaling, SignalingError, Welcome};

/// How long a remote peer that left signaling (while our data channel is open) may take to come
/// back before the session is over.
const REMOTE_RETURN_GRACE: Duration = Duration::from_secs(15);

/// What to do once the data channel is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Answer every message with the same text, until the remote peer leaves.
    Echo,
    /// Send the text, wait for the reply, print it, and finish.
    Send(String),
    /// Send each line read from standard input; print what arrives; finish at end of input.
    Chat,
}

#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// `ws://HOST:PORT` of natkit-signal.
    pub signal: String,
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
}

/// Why an attempt failed; `stage` says where.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct Failure {
    pub stage: &'static str,
    pub message: String,
}

fn fail(stage: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        stage,
        message: message.into(),
    }
}

/// Events from the WebRTC callbacks into the peer's loop.
enum Ev {
    Candidate(Option<RTCIceCandidateInit>),
    State(RTCPeerConnectionState),
    Channel(Arc<dyn DataChannel>),
}

struct Handler(mpsc::UnboundedSender<Ev>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.0.send(Ev::Candidate(Some(init)));
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(Ev::Candidate(None));
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(Ev::State(state));
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.0.send(Ev::Channel(dc));
    }
}

/// `welcome.ice_servers` (RTCIceServer JSON) as webrtc's type.
pub fn ice_servers(v: &Value) -> Vec<RTCIceServer> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| RTCIceServer {
                    urls: match &s["urls"] {
                        Value::String(u) => vec![u.clone()],
                        Value::Array(us) => us
                            .iter()
                            .filter_map(|u| u.as_str().map(str::to_owned))
                            .collect(),
                        _ => vec![],
                    },
                    username: s["username"].as_str().unwrap_or_default().to_owned(),
                    credential: s["credential"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The STUN server to probe: the first `stun:HOST[:PORT]` URL.
pub fn stun_target(servers: &[RTCIceServer]) -> Option<String> {
    servers.iter().flat_map(|s| s.urls.iter()).find_map(|u| {
        let rest = u.strip_prefix("stun:")?;
        Some(rest.split('?').next().unwrap_or(rest).to_owned())
    })
}

/// The local interface address towards `host` (a connected UDP socket sends nothing).
fn local_ip_towards(host: &str) -> Option<IpAddr> {
    let target: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .ok()?
        .find(|a| a.is_ipv4())?;
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(target).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// Candidate types of the nominated pair (local, remote).
async fn selected_pair(pc: &Arc<dyn PeerConnection>) -> Option<(String, String)> {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let pair = report.iter().find_map(|e| match e {
        RTCStatsReportEntry::IceCandidatePair(p) if p.nominated => Some(p),
        _ => None,
    })?;
    // webrtc 0.21 names candidates "candidate:X" in the pair but keys them as
    // "RTCLocalIceCandidate_candidate:X" / "RTCRemoteIceCandidate_candidate:X" in the report.
    let kind = |id: &str, local: bool| {
        report.iter().find_map(|e| match e {
            RTCStatsReportEntry::LocalCandidate(c) if local && c.stats.id.ends_with(id) => {
                Some(c.candidate_type.to_string())
            }
            RTCStatsReportEntry::RemoteCandidate(c) if !local && c.stats.id.ends_with(id) => {
                Some(c.candidate_type.to_string())
            }
            _ => None,
        })
    };
    // Remote candidates that arrived inside the SDP (aiortc) have no stats entry in webrtc 0.21:
    // the remote type is then reported as "unknown" rather than guessed.
    let remote = kind(&pair.remote_candidate_id, false).unwrap_or_else(|| "unknown".into());
    Some((kind(&pair.local_candidate_id, true)?, remote))
}

/// The RTCConfiguration for `servers` under the chosen policy.
fn configuration(servers: &[RTCIceServer], relay_only: bool) -> RTCConfiguration {
    RTCConfigurationBuilder::new()
        .with_ice_servers(servers.to_vec())
        .with_ice_transport_policy(if relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        })
        .build()
}

/// Applies new ICE servers; they take effect at the next gathering (an ICE restart, or the
/// first negotiation).
async fn apply_servers(
    pc: &Arc<dyn PeerConnection>,
    servers: &[RTCIceServer],
    relay_only: bool,
) -> Result<(), Failure> {
    pc.set_configuration(configuration(servers, relay_only))
        .await
        .map_err(|e| fail("ice", format!("cannot apply new ICE servers: {e}")))
}

/// `ice_servers` JSON as webrtc's type; in `never` mode without TURN URLs.
fn usable_servers(v: &Value, mode: RelayMode) -> Vec<RTCIceServer> {
    let mut servers = ice_servers(v);
    if mode == RelayMode::Never {
        // `never` means no TURN at all: with TURN URLs, ICE would still fall back to relay pairs.
        for s in &mut servers {
            s.urls
                .retain(|u| !u.starts_with("turn:") && !u.starts_with("turns:"));
        }
        servers.retain(|s| !s.urls.is_empty());
    }
    servers
}

fn has_turn(servers: &[RTCIceServer]) -> bool {
    servers
        .iter()
        .flat_map(|s| s.urls.iter())
        .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
}

/// The next message of a live signaling connection: `Some(None)` when it closed; never resolves
/// while there is none (reconnecting).
async fn next_signal(sig: &mut Option<Signaling>) -> Option<Value> {
    match sig {
        Some(s) => s.incoming.recv().await,
        None => std::future::pending().await,
    }
}

/// Rejoins `room` as `peer_id` until it works, with [`reconnect_delay`] between attempts. Stops
/// trying (and says why) when the server refuses for a reason a retry cannot fix.
async fn reconnect(
    cfg: PeerConfig,
    peer_id: String,
    tx: mpsc::UnboundedSender<Result<(Signaling, Welcome), String>>,
) {
    for attempt in 0u32.. {
        tokio::time::sleep(reconnect_delay(attempt)).await;
        let join = signaling::join(&cfg.signal, &cfg.room, Some(&peer_id), cfg.token.as_deref());
        match tokio::time::timeout(Duration::from_secs(5), join).await {
            Ok(Ok(joined)) => {
                let _ = tx.send(Ok(joined));
                return;
            }
            // The server may not have noticed our old connection is gone: the id is still taken.
            Ok(Err(SignalingError::Refused { code, .. })) if code == "bad-peer-id" => {}
            Ok(Err(e @ SignalingError::Refused { .. })) if e.is_permanent() => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, attempt, "signaling reconnect failed"),
            Err(_) => tracing::debug!(attempt, "signaling reconnect timed out"),
        }
    }
}

/// Runs one session. `emit` receives every event as it happens.
pub async fn run(cfg: &PeerConfig, emit: &(dyn Fn(Event) + Send + Sync)) -> Result<(), Failure> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    let (sig, welcome) = tokio::time::timeout_at(
        deadline,
        signaling::join(
            &cfg.signal,
            &cfg.room,
            cfg.peer_id.as_deref(),
            cfg.token.as_deref(),
        ),
    )
    .await
    .map_err(|_| {
        fail(
            "signaling",
            format!("no welcome from {} in time", cfg.signal),
        )
    })?
    .map_err(|e| fail("signaling", e.to_string()))?;
    let mut sig = Some(sig);
    let Welcome {
        peer_id: my_id,
        room,
        peers,
        ice_servers: ice_json,
        ttl,
    } = welcome;
    emit(Event::Joined {
        peer_id: my_id.clone(),
        room,
        peers: peers.clone(),
    });

    let mut servers = usable_servers(&ice_json, cfg.relay);
    let report = match (cfg.relay, stun_target(&servers)) {
        (RelayMode::Auto, Some(target)) => match probe(&ProbeConfig {
            servers: vec![target.clone()],
            ..Default::default()
        })
        .await
        {
            Ok(r) => {
                emit(Event::Probe(
                    serde_json::to_value(&r).expect("report serialises"),
                ));
                Some(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, %target, "probe failed");
                None
            }
        },
        _ => None,
    };
    let policy = decide(cfg.relay, report.as_ref());
    emit(Event::Policy {
        ice_transport_policy: if policy.relay_only { "relay" } else { "all" },
        reason: policy.reason.clone(),
    });
    // Renew TURN credentials before they expire; without TURN there is nothing to renew.
    let renews = cfg.renew && has_turn(&servers);
    let renewal_period = |ttl: u64| renews.then(|| renew_after(Duration::from_secs(ttl)));
    let mut renew_at = renewal_period(ttl).map(|d| tokio::time::Instant::now() + d);

    let local_ip = stun_target(&servers)
        .and_then(|t| local_ip_towards(&t))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let runtime =
        webrtc::runtime::default_runtime().ok_or_else(|| fail("ice", "no async runtime"))?;
    let settings = SettingEngineBuilder::new()
        // An ICE restart (renewal or recovery) binds new sockets, so it allocates afresh on the
        // relay with the current credentials instead of refreshing an allocation that may be
        // gone (a restarted relay answers 437 to the old one).
        .with_discard_local_candidates_during_ice_restart(true)
        // Notice a dead path in seconds, so recovery starts soon.
        .with_ice_timeouts(
            Some(Duration::from_secs(3)),
            Some(Duration::from_secs(8)),
            Some(Duration::from_secs(1)),
        );
    let settings = if policy.relay_only {
        // Relay-only: there is no direct pair to wait for, accept relayed pairs at once.
        settings
            .with_relay_acceptance_min_wait(Some(Duration::ZERO))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
    } else {
        // A remote relay candidate that checks in before its trickled description arrives is
        // learned as peer-reflexive, whose priority beats server-reflexive: give such candidates
        // the relay wait too, so a working direct pair is nominated first.
        settings.with_prflx_acceptance_min_wait(Some(Duration::from_secs(2)))
    };
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(configuration(&servers, policy.relay_only))
            .with_handler(Arc::new(Handler(ev_tx.clone())))
            .with_setting_engine(settings.build())
            .with_runtime(runtime)
            .with_udp_addrs(vec![format!("{local_ip}:0")])
            .build()
            .await
            .map_err(|e| fail("ice", format!("cannot create the peer connection: {e}")))?,
    );

    // Convention: the peer that joins a room where others already are sends the offer.
    let mut remote: Option<String> = peers.first().cloned();
    let mut remote_present = remote.is_some();
    let mut offer_pending = false;
    if let (Some(to), Some(s)) = (&remote, &sig) {
        let dc = pc
            .create_data_channel("natkit", None)
            .await
            .map_err(|e| fail("dtls", e.to_string()))?;
        let _ = ev_tx.send(Ev::Channel(dc));
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| fail("ice", e.to_string()))?;
        pc.set_local_description(offer.clone())
            .await
            .map_err(|e| fail("ice", e.to_string()))?;
        offer_pending = true;
        let _ = s
            .out
            .send(json!({"type": "offer", "to": to, "sdp": offer.sdp}))
            .await;
    }

    let mut pending: Vec<RTCIceCandidateInit> = Vec::new();
    let mut local_candidates: Vec<Option<RTCIceCandidateInit>> = Vec::new();
    let mut have_remote_desc = false;
    let mut connected = false;
    let mut channel_open = false;
    let (dc_tx, mut dc_rx) = mpsc::unbounded_channel::<(Arc<dyn DataChannel>, DataChannelEvent)>();
    let mut channel: Option<Arc<dyn DataChannel>> = None;

    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<Option<String>>();
    if cfg.mode == Mode::Chat {
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if line_tx.send(Some(l)).is_err() {
                    return;
                }
            }
            let _ = line_tx.send(None);
        });
    }
    let mut unsent: Vec<String> = Vec::new();
    let mut input_done = false;
    // --chat after the end of input: done once nothing has arrived for a second.
    let mut end_at: Option<tokio::time::Instant> = None;
    let grace = || Some(tokio::time::Instant::now() + Duration::from_secs(1));

    // Long-lived session state: signaling reconnects, credential renewal, ICE restarts.
    let (rejoin_tx, mut rejoin_rx) =
        mpsc::unbounded_channel::<Result<(Signaling, Welcome), String>>();
    let mut rejoining: Option<tokio::task::JoinHandle<()>> = None;
    let mut refresh_sent_at: Option<tokio::time::Instant> = None;
    // An ICE restart to perform as soon as signaling and the negotiation state allow it.
    let mut restart_wanted: Option<&'static str> = None;
    // The remote peer left signaling while our connection was up: wait for it to come back.
    let mut remote_gone_since: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // The remote peer is gone for good: a served echo or chat session is over, a `--send` failed.
    let remote_left = |connected: bool, stage: &'static str| {
        if !matches!(cfg.mode, Mode::Send(_)) && connected {
            Ok(())
        } else {
            Err(fail(stage, "the remote peer left"))
        }
    };

    let outcome = loop {
        let stage = if !connected {
            if policy.relay_only {
                "relay"
            } else {
                "ice"
            }
        } else if !channel_open {
            "dtls"
        } else {
            "timeout"
        };
        tokio::select! {
            _ = tokio::time::sleep_until(end_at.unwrap_or(deadline)) => {
                if end_at.is_some() || (!matches!(cfg.mode, Mode::Send(_)) && connected) {
                    break Ok(()); // an echo peer that served its session ends at its timeout
                }
                let what = match stage {
                    "relay" => "no connection with relay-only ICE: the relay refused us or no relayed path works",
                    "ice" => "ICE found no working candidate pair",
                    "dtls" => "connected, but the data channel did not open (DTLS/SCTP)",
                    _ => "no reply to the message in time",
                };
                break Err(fail(stage, what));
            }
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                if let Some(since) = remote_gone_since {
                    if now.duration_since(since) > REMOTE_RETURN_GRACE {
                        break remote_left(connected, stage);
                    }
                }
                // Renewal: ask for a new credential (again every few seconds until one arrives).
                if let (Some(at), Some(s)) = (renew_at, &sig) {
                    let waiting = refresh_sent_at.is_some_and(|t| now.duration_since(t) < Duration::from_secs(3));
                    if now >= at && !waiting {
                        let _ = s.out.send(json!({"type": "refresh"})).await;
                        refresh_sent_at = Some(now);
                    }
                }
                if let (Some(reason), Some(s), Some(to)) = (restart_wanted, &sig, &remote) {
                    if remote_present && have_remote_desc && !offer_pending {
                        restart_wanted = None;
                        apply_servers(&pc, &servers, policy.relay_only).await?;
                        pc.restart_ice().await.map_err(|e| fail("ice", e.to_string()))?;
                        let offer = pc.create_offer(None).await.map_err(|e| fail("ice", e.to_string()))?;
                        pc.set_local_description(offer.clone()).await.map_err(|e| fail("ice", e.to_string()))?;
                        offer_pending = true;
                        let _ = s.out.send(json!({"type": "offer", "to": to, "sdp": offer.sdp})).await;
                        emit(Event::IceRestart { reason });
                    }
                }
            }
            joined = rejoin_rx.recv() => match joined {
                Some(Ok((s, w))) => {
                    rejoining = None;
                    sig = Some(s);
                    emit(Event::Signaling { state: "reconnected", peers: w.peers.clone() });
                    // The welcome carries a fresh credential: take it as a renewal.
                    servers = usable_servers(&w.ice_servers, cfg.relay);
                    apply_servers(&pc, &servers, policy.relay_only).await?;
                    renew_at = renewal_period(w.ttl).map(|d| tokio::time::Instant::now() + d);
                    refresh_sent_at = None;
                    if let Some(r) = &remote {
                        if w.peers.contains(r) {
                            remote_present = true;
                            remote_gone_since = None;
                        }
                    }
                    // An offer sent into the old connection may be lost.
                    if offer_pending && connected {
                        offer_pending = false;
                        restart_wanted.get_or_insert("signaling-reconnect");
                    }
                }
                Some(Err(why)) => {
                    rejoining = None;
                    emit(Event::Signaling { state: "gave-up", peers: vec![] });
                    if !connected { break Err(fail("signaling", why)); }
                    tracing::warn!(%why, "signaling lost for good; the data channel goes on without it");
                }
                None => {}
            },
            m = next_signal(&mut sig) => {
                let Some(m) = m else {
                    // Signaling dropped: the data channel does not need it, renegotiation does.
                    sig = None;
                    emit(Event::Signaling { state: "lost", peers: vec![] });
                    rejoining = Some(tokio::spawn(reconnect(cfg.clone(), my_id.clone(), rejoin_tx.clone())));
                    continue;
                };
                let out = sig.as_ref().map(|s| s.out.clone()).expect("a message came from it");
                match m["type"].as_str().unwrap_or_default() {
                    "offer" => {
                        let from = m["from"].as_str().map(str::to_owned);
                        if offer_pending {
                            // Glare: both sides offered at once (perfect negotiation).
                            if !polite(&my_id, from.as_deref().unwrap_or_default()) {
                                continue; // impolite: ours wins, theirs is dropped
                            }
                            pc.set_local_description(RTCSessionDescription::rollback(None).map_err(|e| fail("ice", e.to_string()))?)
                                .await
                                .map_err(|e| fail("ice", format!("cannot roll back our offer: {e}")))?;
                            offer_pending = false;
                        }
                        remote = from;
                        remote_present = true;
                        remote_gone_since = None;
                        let desc = RTCSessionDescription::offer(m["sdp"].as_str().unwrap_or_default().to_owned())
                            .map_err(|e| fail("signaling", format!("bad offer: {e}")))?;
                        pc.set_remote_description(desc).await.map_err(|e| fail("ice", e.to_string()))?;
                        have_remote_desc = true;
                        for c in pending.drain(..) { let _ = pc.add_ice_candidate(c).await; }
                        let answer = pc.create_answer(None).await.map_err(|e| fail("ice", e.to_string()))?;
                        pc.set_local_description(answer.clone()).await.map_err(|e| fail("ice", e.to_string()))?;
                        let _ = out.send(json!({"type": "answer", "to": remote, "sdp": answer.sdp})).await;
                        for c in local_candidates.drain(..) {
                            let _ = out.send(json!({"type": "candidate", "to": remote, "candidate": c})).await;
                        }
                    }
                    "answer" if offer_pending => {
                        let desc = RTCSessionDescription::answer(m["sdp"].as_str().unwrap_or_default().to_owned())
                            .map_err(|e| fail("signaling", format!("bad answer: {e}")))?;
                        pc.set_remote_description(desc).await.map_err(|e| fail("ice", e.to_string()))?;
                        offer_pending = false;
                        have_remote_desc = true;
                        for c in pending.drain(..) { let _ = pc.add_ice_candidate(c).await; }
                    }
                    "candidate" => {
                        // null = end-of-candidates; remote descriptions with all candidates
                        // inline (aiortc) simply never trickle.
                        if let Ok(c) = serde_json::from_value::<RTCIceCandidateInit>(m["candidate"].clone()) {
                            if have_remote_desc && !offer_pending { let _ = pc.add_ice_candidate(c).await; } else { pending.push(c); }
                        }
                    }
                    "ice-servers" => {
                        let ttl = m["ttl"].as_u64().unwrap_or(0);
                        servers = usable_servers(&m["ice_servers"], cfg.relay);
                        renew_at = renewal_period(ttl).map(|d| tokio::time::Instant::now() + d);
                        refresh_sent_at = None;
                        emit(Event::Renewed { ttl });
                        if have_remote_desc {
                            // Apply them and restart ICE, so a new allocation carries them.
                            restart_wanted.get_or_insert("renewal");
                        } else {
                            // Not negotiated yet: the first gathering will use them.
                            apply_servers(&pc, &servers, policy.relay_only).await?;
                        }
                    }
                    "peer-joined" if m["peer_id"].as_str() == remote.as_deref() => {
                        remote_present = true;
                        remote_gone_since = None;
                    }
                    "peer-left" if m["peer_id"].as_str() == remote.as_deref() => {
                        remote_present = false;
                        if channel_open {
                            // It may only have lost its signaling connection: give it time to
                            // come back before calling the session over.
                            remote_gone_since = Some(tokio::time::Instant::now());
                        } else {
                            break remote_left(connected, stage);
                        }
                    }
                    "error" => tracing::warn!(message = %m, "signaling error"),
                    _ => {}
                }
            }
            ev = ev_rx.recv() => match ev {
                Some(Ev::Candidate(c)) => {
                    // Trickle once the remote peer is known; before that (or while signaling
                    // is down), keep them.
                    match (&remote, &sig) {
                        (Some(to), Some(s)) if pc.local_description().await.is_some() => {
                            for old in local_candidates.drain(..) {
                                let _ = s.out.send(json!({"type": "candidate", "to": to, "candidate": old})).await;
                            }
                            let _ = s.out.send(json!({"type": "candidate", "to": to, "candidate": c})).await;
                        }
                        _ => local_candidates.push(c),
                    }
                }
                Some(Ev::State(RTCPeerConnectionState::Connected)) => {
                    let first = !connected;
                    connected = true;
                    // The nominated pair can show in the stats a moment after "connected".
                    let mut pair = None;
                    for _ in 0..40 {
                        pair = selected_pair(&pc).await;
                        if pair.is_some() { break; }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let (l, r) = pair.unwrap_or(("unknown".into(), "unknown".into()));
                    if first {
                        emit(Event::Connected { local_candidate_type: l, remote_candidate_type: r, elapsed_ms: started.elapsed().as_millis() as u64 });
                    } else {
                        emit(Event::Reconnected { local_candidate_type: l, remote_candidate_type: r });
                    }
                }
                Some(Ev::State(RTCPeerConnectionState::Failed)) => {
                    if connected && have_remote_desc {
                        // A path that worked died (relay restart, NAT rebinding): restart ICE
                        // rather than give up. The remote peer does the same; glare is resolved.
                        emit(Event::ConnectionState { state: "failed" });
                        restart_wanted = Some("failed");
                    } else {
                        break Err(fail(stage, "the peer connection failed"));
                    }
                }
                Some(Ev::State(RTCPeerConnectionState::Disconnected)) if connected => {
                    emit(Event::ConnectionState { state: "disconnected" });
                }
                Some(Ev::State(_)) => {}
                Some(Ev::Channel(dc)) => {
                    channel = Some(Arc::clone(&dc));
                    let tx = dc_tx.clone();
                    tokio::spawn(async move {
                        while let Some(e) = dc.poll().await {
                            let close = matches!(e, DataChannelEvent::OnClose);
                            if tx.send((Arc::clone(&dc), e)).is_err() || close { break; }
                        }
                    });
                }
                None => break Err(fail("ice", "the peer connection stopped")),
            },
            Some(line) = line_rx.recv() => match (line, &channel) {
                (Some(l), Some(dc)) if channel_open => { let _ = dc.send_text(&l).await; }
                (Some(l), _) => unsent.push(l),
                (None, _) if channel_open => end_at = grace(),
                (None, _) => input_done = true,
            },
            Some((dc, e)) = dc_rx.recv() => match e {
                DataChannelEvent::OnOpen => {
                    channel_open = true;
                    if let Mode::Send(text) = &cfg.mode {
                        dc.send_text(text).await.map_err(|e| fail("dtls", e.to_string()))?;
                    }
                    for l in unsent.drain(..) {
                        let _ = dc.send_text(&l).await;
                    }
                    if input_done {
                        end_at = grace();
                    }
                }
                DataChannelEvent::OnMessage(msg) => {
                    let data = String::from_utf8_lossy(&msg.data).into_owned();
                    emit(Event::Message { data: data.clone() });
                    match &cfg.mode {
                        Mode::Echo => { let _ = dc.send_text(&data).await; }
                        Mode::Send(_) => break Ok(()),
                        // After the input ended, every arrival extends the quiet second.
                        Mode::Chat => if end_at.is_some() { end_at = grace(); },
                    }
                }
                DataChannelEvent::OnClose => {
                    break if !matches!(cfg.mode, Mode::Send(_)) { Ok(()) } else { Err(fail("dtls", "the data channel closed")) };
                }
                _ => {}
            },
        }
    };
    if let Some(task) = rejoining {
        task.abort();
    }
    let reason = match &outcome {
        Ok(()) => "done".to_owned(),
        Err(f) => f.to_string(),
    };
    if let Some(dc) = channel {
        let _ = dc.close().await;
    }
    let _ = pc.close().await;
    emit(Event::Closed { reason });
    outcome
}
