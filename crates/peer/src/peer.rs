//! The peer: join a room through natkit-signal, probe the NAT, choose the ICE transport policy,
//! connect a data channel with trickle ICE, and run `--echo` or `--send`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natkit_nat_probe::{probe, ProbeConfig};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, RTCStatsReportEntry,
    SettingEngineBuilder, StatsSelector,
};

use crate::events::Event;
use crate::policy::{decide, RelayMode};
use crate::signaling::{self, Welcome};

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

/// Runs one attempt. `emit` receives every event as it happens.
pub async fn run(cfg: &PeerConfig, emit: &(dyn Fn(Event) + Send + Sync)) -> Result<(), Failure> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    let (mut sig, welcome) = tokio::time::timeout_at(
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
    let Welcome {
        peer_id,
        room,
        peers,
        ice_servers: ice_json,
        ..
    } = welcome;
    emit(Event::Joined {
        peer_id,
        room,
        peers: peers.clone(),
    });

    let mut servers = ice_servers(&ice_json);
    if cfg.relay == RelayMode::Never {
        // `never` means no TURN at all: with TURN URLs, ICE would still fall back to relay pairs.
        for s in &mut servers {
            s.urls
                .retain(|u| !u.starts_with("turn:") && !u.starts_with("turns:"));
        }
        servers.retain(|s| !s.urls.is_empty());
    }
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

    let local_ip = stun_target(&servers)
        .and_then(|t| local_ip_towards(&t))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(servers)
        .with_ice_transport_policy(if policy.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        })
        .build();
    let runtime =
        webrtc::runtime::default_runtime().ok_or_else(|| fail("ice", "no async runtime"))?;
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_handler(Arc::new(Handler(ev_tx.clone())))
            .with_setting_engine(if policy.relay_only {
                // Relay-only: there is no direct pair to wait for, accept relayed pairs at once.
                SettingEngineBuilder::new()
                    .with_relay_acceptance_min_wait(Some(Duration::ZERO))
                    .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
                    .build()
            } else {
                // A remote relay candidate that checks in before its trickled description arrives
                // is learned as peer-reflexive, whose priority beats server-reflexive: give such
                // candidates the relay wait too, so a working direct pair is nominated first.
                SettingEngineBuilder::new()
                    .with_prflx_acceptance_min_wait(Some(Duration::from_secs(2)))
                    .build()
            })
            .with_runtime(runtime)
            .with_udp_addrs(vec![format!("{local_ip}:0")])
            .build()
            .await
            .map_err(|e| fail("ice", format!("cannot create the peer connection: {e}")))?,
    );

    // Convention: the peer that joins a room where others already are sends the offer.
    let mut remote: Option<String> = peers.first().cloned();
    if let Some(to) = &remote {
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
        let _ = sig
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
            m = sig.incoming.recv() => {
                let Some(m) = m else { break Err(fail("signaling", "the signaling server closed the connection")) };
                match m["type"].as_str().unwrap_or_default() {
                    "offer" => {
                        remote = m["from"].as_str().map(str::to_owned);
                        let desc = RTCSessionDescription::offer(m["sdp"].as_str().unwrap_or_default().to_owned())
                            .map_err(|e| fail("signaling", format!("bad offer: {e}")))?;
                        pc.set_remote_description(desc).await.map_err(|e| fail("ice", e.to_string()))?;
                        have_remote_desc = true;
                        for c in pending.drain(..) { let _ = pc.add_ice_candidate(c).await; }
                        let answer = pc.create_answer(None).await.map_err(|e| fail("ice", e.to_string()))?;
                        pc.set_local_description(answer.clone()).await.map_err(|e| fail("ice", e.to_string()))?;
                        let _ = sig.out.send(json!({"type": "answer", "to": remote, "sdp": answer.sdp})).await;
                        for c in local_candidates.drain(..) {
                            let _ = sig.out.send(json!({"type": "candidate", "to": remote, "candidate": c})).await;
                        }
                    }
                    "answer" => {
                        let desc = RTCSessionDescription::answer(m["sdp"].as_str().unwrap_or_default().to_owned())
                            .map_err(|e| fail("signaling", format!("bad answer: {e}")))?;
                        pc.set_remote_description(desc).await.map_err(|e| fail("ice", e.to_string()))?;
                        have_remote_desc = true;
                        for c in pending.drain(..) { let _ = pc.add_ice_candidate(c).await; }
                    }
                    "candidate" => {
                        // null = end-of-candidates; remote descriptions with all candidates
                        // inline (aiortc) simply never trickle.
                        if let Ok(c) = serde_json::from_value::<RTCIceCandidateInit>(m["candidate"].clone()) {
                            if have_remote_desc { let _ = pc.add_ice_candidate(c).await; } else { pending.push(c); }
                        }
                    }
                    "peer-left" if m["peer_id"].as_str() == remote.as_deref() => {
                        break if !matches!(cfg.mode, Mode::Send(_)) && connected { Ok(()) } else { Err(fail(stage, "the remote peer left")) };
                    }
                    "error" => tracing::warn!(message = %m, "signaling error"),
                    _ => {}
                }
            }
            ev = ev_rx.recv() => match ev {
                Some(Ev::Candidate(c)) => {
                    // Trickle once the remote peer is known; before that, keep them.
                    match &remote {
                        Some(to) if pc.local_description().await.is_some() => {
                            let _ = sig.out.send(json!({"type": "candidate", "to": to, "candidate": c})).await;
                        }
                        _ => local_candidates.push(c),
                    }
                }
                Some(Ev::State(RTCPeerConnectionState::Connected)) if !connected => {
                    connected = true;
                    // The nominated pair can show in the stats a moment after "connected".
                    let mut pair = None;
                    for _ in 0..40 {
                        pair = selected_pair(&pc).await;
                        if pair.is_some() { break; }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let (l, r) = pair.unwrap_or(("unknown".into(), "unknown".into()));
                    emit(Event::Connected { local_candidate_type: l, remote_candidate_type: r, elapsed_ms: started.elapsed().as_millis() as u64 });
                }
                Some(Ev::State(RTCPeerConnectionState::Failed)) => break Err(fail(stage, "the peer connection failed")),
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
