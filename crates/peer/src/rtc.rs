//! The WebRTC glue: webrtc-rs's peer connection built for the policy the session chose, its
//! callbacks turned into [`PcEvent`]s for the driver's loop, candidates and ICE servers converted
//! between natkit-proto's types and webrtc's, and the selected pair read from the stats. No
//! decision is made here ([`crate::session`] makes them); the driver ([`crate::peer`]) calls it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natkit_proto::{AddressFamily, IceCandidate, IceServer};
use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfiguration,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType, RTCIceGatheringState,
    RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCStatsReportEntry, SettingEngineBuilder, StatsSelector,
};

use crate::session::{Failure, Stage};

/// The TLS configuration for `turns:` relays: the system's roots, `SSL_CERT_FILE`, and the CA
/// certificates in the PEM file `ca`. An error names the file.
pub fn turn_tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use webrtc::peer_connection::turn_tls;
    let pem = std::fs::read(ca).map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    let mut roots = turn_tls::system_roots();
    if turn_tls::add_pem_roots(&mut roots, &pem) == 0 {
        return Err(format!(
            "--tls-ca {}: no PEM certificate in it",
            ca.display()
        ));
    }
    Ok(turn_tls::client_config(roots))
}

/// Events from the WebRTC callbacks into the shell's loop.
pub(crate) enum PcEvent {
    Candidate(Option<RTCIceCandidateInit>),
    State(RTCPeerConnectionState),
    Channel(Arc<dyn DataChannel>),
}

pub(crate) struct Handler(mpsc::UnboundedSender<PcEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.0.send(PcEvent::Candidate(Some(init)));
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(PcEvent::Candidate(None));
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PcEvent::State(state));
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.0.send(PcEvent::Channel(dc));
    }
}

/// natkit-proto's `RTCIceServer` as webrtc's type.
pub fn rtc_ice_servers(servers: &[IceServer]) -> Vec<RTCIceServer> {
    servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect()
}

pub(crate) fn to_rtc_candidate(c: IceCandidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_m_line_index,
        username_fragment: c.username_fragment,
        url: None,
    }
}

pub(crate) fn from_rtc_candidate(c: RTCIceCandidateInit) -> IceCandidate {
    IceCandidate {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_m_line_index: c.sdp_mline_index,
        username_fragment: c.username_fragment,
    }
}

/// The local interface address towards `host` (a connected UDP socket sends nothing).
pub(crate) fn local_ip_towards(host: &str, family: AddressFamily) -> Option<IpAddr> {
    let target: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .ok()?
        .find(|a| a.is_ipv6() == (family == AddressFamily::Ipv6))?;
    natkit_daemon::source_ip_towards(target).ok()
}

/// The local address of each family in which this host reaches a STUN server of `servers`
/// (IPv4 first): the peer connection gathers on each, and the NAT summary names their families.
/// Loopback alone when none is reachable (a relay on this host).
pub(crate) fn local_ips(servers: &[IceServer]) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
        let ip = crate::policy::stun_target(servers, &[family])
            .and_then(|t| local_ip_towards(&t, family));
        ips.extend(ip.filter(|ip| !ips.contains(ip)));
    }
    if ips.is_empty() {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    ips
}

/// The address families of `ips`, for the NAT summary (none for loopback alone: it says
/// nothing about the internet).
pub(crate) fn families_of(ips: &[IpAddr]) -> Vec<AddressFamily> {
    let mut families: Vec<AddressFamily> = ips
        .iter()
        .filter(|ip| !ip.is_loopback())
        .map(|ip| match ip {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        })
        .collect();
    families.dedup();
    families
}

/// The nominated pair: local and remote candidate types, and how the local relay was reached.
#[derive(Clone)]
pub(crate) struct SelectedPair {
    pub(crate) local: String,
    pub(crate) remote: String,
    pub(crate) relay_protocol: Option<String>,
}

/// The nominated pair, from the stats.
pub(crate) async fn selected_pair(pc: &Arc<dyn PeerConnection>) -> Option<SelectedPair> {
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
    // webrtc 0.21 keeps stats only for trickled remote candidates: not for those inside the SDP
    // (aiortc) nor for a peer-reflexive one learnt from a check that overtook the trickle. The
    // ICE transport knows the selected remote candidate in every case.
    let remote = match kind(&pair.remote_candidate_id, false) {
        Some(k) => k,
        None => remote_type_from_ice(pc)
            .await
            .unwrap_or_else(|| "unknown".into()),
    };
    let local = kind(&pair.local_candidate_id, true)?;
    // webrtc 0.21 leaves the stats' relay_protocol unset: the URL the candidate was gathered
    // through says it.
    let relay_protocol = (local == "relay")
        .then(|| {
            report.iter().find_map(|e| match e {
                RTCStatsReportEntry::LocalCandidate(c)
                    if c.stats.id.ends_with(&pair.local_candidate_id) && !c.url.is_empty() =>
                {
                    Some(crate::policy::relay_protocol(&c.url).to_owned())
                }
                _ => None,
            })
        })
        .flatten();
    Some(SelectedPair {
        local,
        remote,
        relay_protocol,
    })
}

/// The selected remote candidate's type as the ICE agent has it. A peer-reflexive candidate whose
/// address was also signalled takes the signalled type: the check arrived before the candidate.
pub(crate) async fn remote_type_from_ice(pc: &Arc<dyn PeerConnection>) -> Option<String> {
    let ice = pc.sctp().await?.transport().ice_transport();
    let pair = ice.get_selected_candidate_pair().await.ok()??;
    let seen = pair.remote();
    if seen.typ != RTCIceCandidateType::Prflx {
        return Some(seen.typ.to_string());
    }
    let signalled = ice.get_remote_candidates().await.unwrap_or_default();
    let same = signalled.iter().find(|c| {
        c.typ != RTCIceCandidateType::Prflx
            && c.address == seen.address
            && c.port == seen.port
            && c.protocol == seen.protocol
    });
    Some(same.unwrap_or(seen).typ.to_string())
}

/// The RTCConfiguration for `servers` under the chosen policy.
pub(crate) fn configuration(servers: &[IceServer], relay_only: bool) -> RTCConfiguration {
    RTCConfigurationBuilder::new()
        .with_ice_servers(rtc_ice_servers(servers))
        .with_ice_transport_policy(if relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        })
        .build()
}

pub(crate) fn ice_err(e: impl std::fmt::Display) -> Failure {
    Failure::new(Stage::Ice, e.to_string())
}

/// How long after checking starts the offering side of a pair that goes through the answerer's
/// relay waits before it nominates a relayed pair, so the one-hop pair (from its own address)
/// can win over the relay-to-relay one.
const ONE_HOP_WAIT: Duration = Duration::from_millis(100);

/// The webrtc peer connection for the chosen policy, bound to `local_ips` (one per family).
pub(crate) async fn build_peer_connection(
    servers: &[IceServer],
    relay_only: bool,
    direct_expected: bool,
    local_ips: &[IpAddr],
    turn_tls: Option<Arc<rustls::ClientConfig>>,
    events: mpsc::UnboundedSender<PcEvent>,
) -> Result<Arc<dyn PeerConnection>, Failure> {
    let runtime = webrtc::runtime::default_runtime()
        .ok_or_else(|| Failure::new(Stage::Ice, "no async runtime"))?;
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
        )
        // Check pairs every 25 ms rather than webrtc's 200 ms: the controlled side is connected
        // (and starts DTLS, as the answering client) only once its own check of the nominated
        // pair succeeded, and a check that missed the partner's candidates cost a whole
        // interval (measured in the lab: DTLS began up to 200 ms after Chromium's ICE was
        // connected). 56 tries keep the 1.4 s a pair is tried for.
        .with_ice_connection_attempts(Some(Duration::from_millis(25)), Some(56));
    let settings = if relay_only {
        // Relay-only: there is no direct pair to wait for, accept relayed pairs at once.
        settings
            .with_relay_acceptance_min_wait(Some(Duration::ZERO))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
    } else if !direct_expected {
        // Through the other side's relay: no direct pair to wait for (webrtc waits 2 s before it
        // nominates a pair with a relay candidate at either end), but a moment for the pair from
        // our own address to succeed beside the one from our relay, which would put the data
        // through the relay twice.
        settings
            .with_relay_acceptance_min_wait(Some(ONE_HOP_WAIT))
            .with_prflx_acceptance_min_wait(Some(ONE_HOP_WAIT))
    } else {
        // A remote relay candidate that checks in before its trickled description arrives is
        // learned as peer-reflexive, whose priority beats server-reflexive: give such candidates
        // the relay wait too, so a working direct pair is nominated first.
        settings.with_prflx_acceptance_min_wait(Some(Duration::from_secs(2)))
    };
    // Multicast DNS (resolving a browser's `.local` host candidates) joins an IPv4 group: a
    // host without IPv4 cannot, and the peer connection would fail to build (ENODEV).
    let settings = if local_ips.iter().any(IpAddr::is_ipv4) {
        settings
    } else {
        settings.with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
    };
    let mut builder = PeerConnectionBuilder::new();
    if let Some(tls) = turn_tls {
        builder = builder.with_turn_tls_config(tls);
    }
    let pc = builder
        .with_configuration(configuration(servers, relay_only))
        .with_handler(Arc::new(Handler(events)))
        .with_setting_engine(settings.build())
        .with_runtime(runtime)
        .with_udp_addrs(
            local_ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, 0).to_string())
                .collect(),
        )
        .build()
        .await
        .map_err(|e| ice_err(format!("cannot create the peer connection: {e}")))?;
    Ok(Arc::new(pc))
}
