//! Table tests of the session: every input is a call with `now`, every output an action; no
//! socket, no WebRTC, no clock.

use super::*;
use natkit_proto::ErrorCode;

fn t0() -> Instant {
    // One fixed origin per test run; offsets make the times.
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

pub(super) fn at(secs: f64) -> Instant {
    t0() + Duration::from_secs_f64(secs)
}

fn relay() -> Vec<IceServer> {
    vec![IceServer::for_relay(
        "203.0.113.1",
        3478,
        "100:me".into(),
        "pw".into(),
    )]
}

pub(super) fn welcome(me: &str, peers: &[&str], ttl: u64) -> Welcome {
    Welcome {
        peer_id: me.into(),
        room: "r".into(),
        peers: peers.iter().map(|p| p.to_string()).collect(),
        ice_servers: relay(),
        ttl,
        version: 1,
    }
}

pub(super) fn config(mode: Mode) -> SessionConfig {
    SessionConfig {
        mode,
        relay: RelayMode::Auto,
        local_nat: LocalNat::Known(None),
        families: vec![],
        renew: true,
        restart_on_renewal: true,
        started: at(0.0),
        deadline: at(30.0),
    }
}

fn cand(n: u32) -> IceCandidate {
    IceCandidate {
        candidate: format!("candidate:{n} 1 udp 1 198.51.100.10 {n} typ host"),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
        username_fragment: None,
    }
}

/// The queued actions, each as a short word: what a table can compare.
pub(super) fn drain(s: &mut Session) -> Vec<String> {
    std::iter::from_fn(|| s.poll_action())
        .map(|a| match a {
            Action::Signal(m) => {
                let v = serde_json::to_value(&m).unwrap();
                format!("signal:{}", v["type"].as_str().unwrap())
            }
            Action::Configure {
                relay_only: false,
                direct_expected: true,
                ..
            } => "configure".into(),
            Action::Configure {
                relay_only: false,
                direct_expected: false,
                ..
            } => "configure-via-their-relay".into(),
            Action::Configure {
                relay_only: true, ..
            } => "configure-relay".into(),
            Action::ApplyServers {
                relay_only: false, ..
            } => "apply".into(),
            Action::ApplyServers {
                relay_only: true, ..
            } => "apply-relay".into(),
            Action::CreateDataChannel => "channel".into(),
            Action::CreateOffer { ice_restart: false } => "offer".into(),
            Action::CreateOffer { ice_restart: true } => "restart-offer".into(),
            Action::AcceptOffer {
                rollback: false, ..
            } => "accept-offer".into(),
            Action::AcceptOffer { rollback: true, .. } => "rollback+accept-offer".into(),
            Action::AcceptAnswer { .. } => "accept-answer".into(),
            Action::AddRemoteCandidate(c) => {
                format!("add:{}", c.candidate.split(' ').next().unwrap())
            }
            Action::Send(m) => format!("send:{}", m.to_text_lossy()),
            Action::Deliver(m) => format!("deliver:{m:?}"),
            Action::Rejoin => "rejoin".into(),
            Action::Probe { target } => format!("probe:{target}"),
            Action::Emit(e) => {
                let v = serde_json::to_value(&e).unwrap();
                let name = v["event"].as_str().unwrap().to_owned();
                let detail = v
                    .get("rule")
                    .or(v.get("reason"))
                    .or(v.get("state"))
                    .and_then(|r| r.as_str());
                match detail {
                    Some(r) => format!("emit:{name}:{r}"),
                    None => format!("emit:{name}"),
                }
            }
        })
        .collect()
}

pub(super) fn offer(from: &str) -> ServerMsg {
    ServerMsg::Offer {
        from: from.into(),
        sdp: "v=0".into(),
    }
}

/// Fresh TURN credentials valid for `ttl` seconds.
fn ice_servers(ttl: u64) -> ServerMsg {
    ServerMsg::IceServers {
        ice_servers: relay(),
        ttl,
    }
}

fn answer(from: &str) -> ServerMsg {
    ServerMsg::Answer {
        from: from.into(),
        sdp: "v=0".into(),
    }
}

fn remote_cand(n: u32) -> ServerMsg {
    ServerMsg::Candidate {
        from: "b".into(),
        candidate: Some(cand(n)),
    }
}

pub(super) fn connected() -> RtcEvent {
    RtcEvent::Connected {
        local_candidate_type: "host".into(),
        remote_candidate_type: "host".into(),
        relay_protocol: None,
    }
}

/// The offering side (`me` joined after `b`), connected with an open channel.
fn offerer_open(me: &str, mode: Mode) -> Session {
    let mut s = Session::new(config(mode), welcome(me, &["b"], 3600), at(0.0));
    s.handle_local_offer(at(0.1), "v=0".into());
    s.handle_signal(at(0.2), answer("b"));
    s.handle_rtc(at(0.3), connected());
    s.handle_rtc(at(0.4), RtcEvent::ChannelOpen);
    drain(&mut s);
    s
}

/// The answering side (`me` was first in the room), connected with an open channel.
fn answerer_open(me: &str) -> Session {
    let mut s = Session::new(config(Mode::Echo), welcome(me, &[], 3600), at(0.0));
    s.handle_signal(at(0.1), offer("b"));
    s.handle_local_answer(at(0.2), "v=0".into());
    s.handle_rtc(at(0.3), connected());
    s.handle_rtc(at(0.4), RtcEvent::ChannelOpen);
    drain(&mut s);
    s
}

#[test]
fn who_offers_and_the_first_exchange() {
    // The later joiner creates the channel and offers; the offer goes out once it exists.
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 3600), at(0.0));
    assert_eq!(
        drain(&mut s),
        ["configure", "emit:policy:no-probe", "channel", "offer"]
    );
    s.handle_local_offer(at(0.1), "v=0".into());
    assert_eq!(drain(&mut s), ["signal:offer"]);
    s.handle_signal(at(0.2), answer("b"));
    assert_eq!(drain(&mut s), ["accept-answer"]);
    s.handle_rtc(at(0.5), connected());
    assert_eq!(drain(&mut s), ["emit:connected"]);

    // The first in the room waits for the offer and answers it.
    let mut s = Session::new(config(Mode::Echo), welcome("a", &[], 3600), at(0.0));
    assert!(drain(&mut s).is_empty());
    s.handle_signal(at(1.0), offer("b"));
    assert_eq!(
        drain(&mut s),
        ["configure", "emit:policy:no-probe", "accept-offer"]
    );
    s.handle_local_answer(at(1.1), "v=0".into());
    assert_eq!(drain(&mut s), ["signal:answer"]);
}

#[test]
fn connected_reports_elapsed_time_from_the_start() {
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 3600), at(0.0));
    drain(&mut s);
    s.handle_rtc(at(0.75), connected());
    let Some(Action::Emit(Event::Connected { elapsed_ms, .. })) = s.poll_action() else {
        panic!("connected first");
    };
    assert_eq!(elapsed_ms, 750);
}

#[test]
fn glare_in_both_directions() {
    // (me, remote): the greater id is polite and rolls back; the other ignores the offer.
    let cases = [
        // "a" < "b": impolite, our offer wins; theirs is ignored and our answer still comes.
        ("a", vec![], vec!["accept-answer"]),
        // "c" > "b": polite, roll back and answer theirs; a late answer to ours is ignored.
        ("c", vec!["rollback+accept-offer"], vec![]),
    ];
    for (me, on_offer, on_answer) in cases {
        let mut s = offerer_open(me, Mode::Echo);
        // A renewal restarts ICE on our side: an offer is pending...
        s.handle_signal(at(1.0), ice_servers(3600));
        assert_eq!(
            drain(&mut s),
            [
                "emit:renewed",
                "apply",
                "restart-offer",
                "emit:ice-restart:renewal"
            ],
            "{me}"
        );
        s.handle_local_offer(at(1.1), "v=0".into());
        assert_eq!(drain(&mut s), ["signal:offer"], "{me}");
        // ...and the remote peer's offer crosses it.
        s.handle_signal(at(1.2), offer("b"));
        assert_eq!(drain(&mut s), on_offer, "{me}: their offer");
        if !on_offer.is_empty() {
            s.handle_local_answer(at(1.3), "v=0".into());
            assert_eq!(drain(&mut s), ["signal:answer"], "{me}");
        }
        s.handle_signal(at(1.4), answer("b"));
        assert_eq!(drain(&mut s), on_answer, "{me}: their answer");
        assert!(s.outcome().is_none());
    }
    // Exactly one side yields, whatever the ids.
    for (a, b) in [("a", "b"), ("peer-10", "peer-2")] {
        assert_ne!(polite(a, b), polite(b, a));
    }
}

#[test]
fn a_restart_waits_while_an_offer_is_pending() {
    let mut s = offerer_open("a", Mode::Echo);
    s.handle_signal(at(1.0), ice_servers(3600));
    drain(&mut s);
    // The path fails while our restart offer is unanswered: no second offer on top of it.
    s.handle_rtc(at(2.0), RtcEvent::Failed);
    assert_eq!(drain(&mut s), ["emit:connection-state:failed"]);
    s.handle_local_offer(at(2.1), "v=0".into());
    assert_eq!(drain(&mut s), ["signal:offer"]);
    // The answer settles the first; the wanted restart follows at once.
    s.handle_signal(at(2.5), answer("b"));
    assert_eq!(
        drain(&mut s),
        [
            "accept-answer",
            "apply",
            "restart-offer",
            "emit:ice-restart:failed"
        ]
    );
}

#[test]
fn candidates_before_the_remote_description_wait_for_it() {
    // Answering side: candidates that overtake the offer are added after it, in order.
    let mut s = Session::new(config(Mode::Echo), welcome("a", &[], 3600), at(0.0));
    for n in 1..=3 {
        s.handle_signal(at(0.1), remote_cand(n));
    }
    s.handle_signal(
        at(0.1),
        ServerMsg::Candidate {
            from: "b".into(),
            candidate: None,
        },
    );
    assert!(drain(&mut s).is_empty());
    s.handle_signal(at(0.2), offer("b"));
    assert_eq!(
        drain(&mut s),
        [
            "configure",
            "emit:policy:no-probe",
            "accept-offer",
            "add:candidate:1",
            "add:candidate:2",
            "add:candidate:3"
        ]
    );
    s.handle_signal(at(0.3), remote_cand(4));
    assert_eq!(drain(&mut s), ["add:candidate:4"]);

    // Offering side: candidates that come before the answer wait for it.
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 3600), at(0.0));
    s.handle_local_offer(at(0.1), "v=0".into());
    drain(&mut s);
    s.handle_signal(at(0.2), remote_cand(1));
    assert!(drain(&mut s).is_empty());
    s.handle_signal(at(0.3), answer("b"));
    assert_eq!(drain(&mut s), ["accept-answer", "add:candidate:1"]);
}

#[test]
fn local_candidates_trickle_only_after_our_description() {
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 3600), at(0.0));
    drain(&mut s);
    s.handle_rtc(at(0.05), RtcEvent::LocalCandidate(Some(cand(1))));
    assert!(drain(&mut s).is_empty(), "no offer sent yet");
    s.handle_local_offer(at(0.1), "v=0".into());
    assert_eq!(drain(&mut s), ["signal:offer", "signal:candidate"]);
    s.handle_rtc(at(0.2), RtcEvent::LocalCandidate(None));
    assert_eq!(drain(&mut s), ["signal:candidate"], "end-of-candidates too");

    // The answering side knows nobody to send to before the offer.
    let mut s = Session::new(config(Mode::Echo), welcome("a", &[], 3600), at(0.0));
    s.handle_rtc(at(0.05), RtcEvent::LocalCandidate(Some(cand(1))));
    assert!(drain(&mut s).is_empty());
    s.handle_signal(at(0.1), offer("b"));
    assert_eq!(
        drain(&mut s),
        ["configure", "emit:policy:no-probe", "accept-offer"]
    );
    s.handle_local_answer(at(0.2), "v=0".into());
    assert_eq!(drain(&mut s), ["signal:answer", "signal:candidate"]);
}

#[test]
fn buffered_candidates_are_bounded() {
    let mut s = Session::new(config(Mode::Echo), welcome("a", &[], 3600), at(0.0));
    for n in 0..(MAX_BUFFERED_CANDIDATES as u32 + 100) {
        s.handle_signal(at(0.1), remote_cand(n));
        s.handle_rtc(at(0.1), RtcEvent::LocalCandidate(Some(cand(n))));
    }
    s.handle_signal(at(0.2), offer("b"));
    s.handle_local_answer(at(0.3), "v=0".into());
    let actions = drain(&mut s);
    let added = actions.iter().filter(|a| a.starts_with("add:")).count();
    let sent = actions.iter().filter(|a| *a == "signal:candidate").count();
    assert_eq!(
        (added, sent),
        (MAX_BUFFERED_CANDIDATES, MAX_BUFFERED_CANDIDATES)
    );
}

#[test]
fn renewal_asks_at_half_the_ttl_and_retries() {
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 20), at(0.0));
    s.handle_rtc(at(0.5), connected());
    drain(&mut s);
    assert_eq!(s.poll_timeout(), at(10.0), "half the TTL");
    s.handle_timeout(at(10.0));
    assert_eq!(drain(&mut s), ["signal:refresh"]);
    s.handle_timeout(at(11.0));
    assert!(
        drain(&mut s).is_empty(),
        "no second refresh while one is fresh"
    );
    assert_eq!(s.poll_timeout(), at(13.0));
    s.handle_timeout(at(13.0));
    assert_eq!(drain(&mut s), ["signal:refresh"], "asked again after 3 s");
    // Not negotiated yet: the new servers apply at once, for the first gathering.
    s.handle_signal(at(13.5), ice_servers(20));
    assert_eq!(drain(&mut s), ["emit:renewed", "apply"]);
    assert_eq!(s.poll_timeout(), at(23.5));

    // Without TURN, or with --no-renew, nothing is renewed.
    let mut w = welcome("a", &["b"], 20);
    w.ice_servers = vec![IceServer {
        urls: vec!["stun:203.0.113.1:3478".into()],
        username: None,
        credential: None,
    }];
    let s = Session::new(config(Mode::Echo), w, at(0.0));
    assert_eq!(
        s.poll_timeout(),
        at(30.0),
        "only the deadline (no TURN: no renewal, no direct deadline)"
    );
    let mut c = config(Mode::Echo);
    c.renew = false;
    let mut s = Session::new(c, welcome("a", &["b"], 20), at(0.0));
    s.handle_rtc(at(0.5), connected());
    assert_eq!(s.poll_timeout(), at(30.0));
}

#[test]
fn a_renewal_restarts_ice_only_where_the_shell_cannot_hand_it_to_live_allocations() {
    for (restart_on_renewal, want) in [
        (
            true,
            vec![
                "emit:renewed",
                "apply",
                "restart-offer",
                "emit:ice-restart:renewal",
            ],
        ),
        (false, vec!["emit:renewed", "apply"]),
    ] {
        let mut c = config(Mode::App);
        c.restart_on_renewal = restart_on_renewal;
        let mut s = Session::new(c, welcome("a", &["b"], 20), at(0.0));
        s.handle_local_offer(at(0.1), "v=0".into());
        s.handle_signal(at(0.2), answer("b"));
        s.handle_rtc(at(0.3), connected());
        drain(&mut s);
        s.handle_timeout(at(10.0));
        assert_eq!(drain(&mut s), ["signal:refresh"]);
        s.handle_signal(at(10.1), ice_servers(20));
        assert_eq!(
            drain(&mut s),
            want,
            "restart_on_renewal {restart_on_renewal}"
        );
        assert_eq!(
            s.poll_timeout(),
            at(20.1),
            "the next renewal is due at half the new TTL"
        );
    }
}

#[test]
fn renewal_during_a_restart_restarts_again_after_it() {
    let mut s = answerer_open("a");
    s.handle_rtc(at(5.0), RtcEvent::Failed);
    assert_eq!(
        drain(&mut s),
        [
            "emit:connection-state:failed",
            "apply",
            "restart-offer",
            "emit:ice-restart:failed"
        ]
    );
    s.handle_local_offer(at(5.1), "v=0".into());
    drain(&mut s);
    // A credential arrives while the restart offer is unanswered: wait, then restart with it.
    s.handle_signal(at(5.2), ice_servers(3600));
    assert_eq!(drain(&mut s), ["emit:renewed"]);
    s.handle_signal(at(5.5), answer("b"));
    assert_eq!(
        drain(&mut s),
        [
            "accept-answer",
            "apply",
            "restart-offer",
            "emit:ice-restart:renewal"
        ]
    );
    s.handle_rtc(at(6.0), connected());
    assert_eq!(drain(&mut s), ["emit:reconnected"]);
}

#[test]
fn the_remote_peer_leaving_and_coming_back() {
    // Back within the grace: the session goes on, and a restart wanted meanwhile happens then.
    let mut s = answerer_open("a");
    s.handle_signal(
        at(1.0),
        ServerMsg::PeerLeft {
            peer_id: "b".into(),
        },
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), at(1.0) + REMOTE_RETURN_GRACE);
    s.handle_rtc(at(2.0), RtcEvent::Failed);
    assert_eq!(
        drain(&mut s),
        ["emit:connection-state:failed"],
        "no offer to a peer that is away"
    );
    s.handle_signal(
        at(10.0),
        ServerMsg::PeerJoined {
            peer_id: "b".into(),
        },
    );
    assert_eq!(
        drain(&mut s),
        ["apply", "restart-offer", "emit:ice-restart:failed"]
    );
    s.handle_timeout(at(17.0));
    assert!(s.outcome().is_none());

    // Another peer coming and going changes nothing.
    let mut s = answerer_open("a");
    s.handle_signal(
        at(1.0),
        ServerMsg::PeerLeft {
            peer_id: "z".into(),
        },
    );
    s.handle_timeout(at(17.0));
    assert!(s.outcome().is_none());

    // Gone for good: an echo peer that served is done, a --send peer failed.
    let cases = [
        (Mode::Echo, Ok(())),
        (
            Mode::Send("hi".into()),
            Err(Failure::new(Stage::Timeout, "the remote peer left")),
        ),
    ];
    for (mode, want) in cases {
        let mut s = offerer_open("a", mode.clone());
        s.handle_signal(
            at(1.0),
            ServerMsg::PeerLeft {
                peer_id: "b".into(),
            },
        );
        s.handle_timeout(at(15.0));
        assert!(s.outcome().is_none(), "{mode:?}: within the grace");
        s.handle_timeout(at(16.0));
        assert_eq!(s.outcome(), Some(&want), "{mode:?}");
    }

    // Before the channel opened, leaving ends the attempt at once.
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 3600), at(0.0));
    s.handle_signal(
        at(1.0),
        ServerMsg::PeerLeft {
            peer_id: "b".into(),
        },
    );
    assert_eq!(
        s.outcome(),
        Some(&Err(Failure::new(Stage::Ice, "the remote peer left")))
    );
}

#[test]
fn signaling_lost_and_rejoined() {
    let mut s = offerer_open("a", Mode::Echo);
    s.handle_signaling_lost(at(1.0));
    assert_eq!(drain(&mut s), ["emit:signaling:lost", "rejoin"]);
    // Nothing is sent while signaling is down; candidates wait.
    s.handle_rtc(at(1.5), RtcEvent::LocalCandidate(Some(cand(9))));
    s.handle_rtc(at(2.0), RtcEvent::Failed);
    assert_eq!(drain(&mut s), ["emit:connection-state:failed"]);
    s.handle_rejoined(at(3.0), welcome("a", &["b"], 3600));
    assert_eq!(
        drain(&mut s),
        [
            "emit:signaling:reconnected",
            "apply",
            "signal:candidate",
            "apply",
            "restart-offer",
            "emit:ice-restart:failed"
        ]
    );

    // An offer sent into the old connection may be lost: it is offered again.
    let mut s = offerer_open("a", Mode::Echo);
    s.handle_signal(at(1.0), ice_servers(3600));
    s.handle_local_offer(at(1.1), "v=0".into());
    drain(&mut s);
    s.handle_signaling_lost(at(1.2));
    s.handle_rejoined(at(2.0), welcome("a", &["b"], 3600));
    assert_eq!(
        drain(&mut s),
        [
            "emit:signaling:lost",
            "rejoin",
            "emit:signaling:reconnected",
            "apply",
            "apply",
            "restart-offer",
            "emit:ice-restart:signaling-reconnect"
        ]
    );

    // A draining node asks to move: the same rejoin, said as such, once.
    let mut s = offerer_open("a", Mode::Echo);
    let drain_msg = || ServerMsg::Reconnect {
        reason: "draining".into(),
    };
    s.handle_signal(at(1.0), drain_msg());
    s.handle_signal(at(1.1), drain_msg());
    assert_eq!(drain(&mut s), ["emit:signaling:draining", "rejoin"]);
    s.handle_rejoined(at(2.0), welcome("a", &["b"], 3600));
    assert_eq!(drain(&mut s)[0], "emit:signaling:reconnected");

    // Giving up: fatal before a connection, not after.
    let mut s = offerer_open("a", Mode::Echo);
    s.handle_signaling_lost(at(1.0));
    s.handle_rejoin_failed(at(2.0), "unauthorized".into());
    assert!(s.outcome().is_none());
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 3600), at(0.0));
    s.handle_signaling_lost(at(1.0));
    s.handle_rejoin_failed(at(2.0), "unauthorized".into());
    assert_eq!(
        s.outcome(),
        Some(&Err(Failure::new(Stage::Signaling, "unauthorized")))
    );
}

#[test]
fn the_deadline_names_the_stage_that_failed() {
    let with = |mode: Mode, relay: RelayMode| SessionConfig {
        relay,
        ..config(mode)
    };
    let send = || Mode::Send("x".into());
    let cases: [(SessionConfig, &[RtcEvent], Result<(), Stage>); 6] = [
        (with(send(), RelayMode::Never), &[], Err(Stage::Ice)),
        (with(send(), RelayMode::Always), &[], Err(Stage::Relay)),
        // All candidates with TURN: relay-only after the direct deadline, so relay failed last.
        (config(send()), &[], Err(Stage::Relay)),
        (config(send()), &[RtcEvent::Failed], Err(Stage::Ice)),
        (with(Mode::Chat, RelayMode::Never), &[], Err(Stage::Ice)),
        // An echo peer that served a session ends at its timeout, successfully.
        (config(Mode::Echo), &[], Ok(())),
    ];
    for (i, (cfg, events, want)) in cases.into_iter().enumerate() {
        let echo = cfg.mode == Mode::Echo;
        let mut s = Session::new(cfg, welcome("a", &["b"], 3600), at(0.0));
        if echo {
            s.handle_rtc(at(1.0), connected());
        }
        for e in events {
            s.handle_rtc(at(1.0), e.clone());
        }
        s.handle_timeout(at(29.0));
        if s.outcome().is_none() {
            s.handle_timeout(at(30.0));
        }
        let got = s.outcome().cloned().expect("ended").map_err(|f| f.stage);
        assert_eq!(got, want, "case {i}");
    }
    // Connected without a channel is a DTLS failure; with one, the reply was missing.
    let mut s = Session::new(
        config(Mode::Send("x".into())),
        welcome("a", &["b"], 3600),
        at(0.0),
    );
    s.handle_rtc(at(1.0), connected());
    s.handle_timeout(at(30.0));
    assert_eq!(
        s.outcome().cloned().unwrap().unwrap_err().stage,
        Stage::Dtls
    );
    let mut s = offerer_open("a", Mode::Send("x".into()));
    s.handle_timeout(at(30.0));
    assert_eq!(
        s.outcome().cloned().unwrap().unwrap_err().stage,
        Stage::Timeout
    );
}

#[test]
fn modes_on_the_data_channel() {
    // --send: the text goes out when the channel opens; the first reply ends the session.
    let mut s = Session::new(
        config(Mode::Send("hello".into())),
        welcome("a", &["b"], 3600),
        at(0.0),
    );
    drain(&mut s);
    s.handle_rtc(at(1.0), RtcEvent::ChannelOpen);
    assert_eq!(drain(&mut s), ["send:hello"]);
    s.handle_rtc(at(1.1), RtcEvent::Message("hello".into()));
    assert_eq!(drain(&mut s), ["emit:message"]);
    assert_eq!(s.outcome(), Some(&Ok(())));

    // --echo answers every message.
    let mut s = answerer_open("a");
    s.handle_rtc(at(1.0), RtcEvent::Message("ping".into()));
    assert_eq!(drain(&mut s), ["emit:message", "send:ping"]);

    // --chat: lines before the channel wait for it; after the input ends, a quiet second ends
    // the session, and every arrival extends it.
    let mut s = Session::new(config(Mode::Chat), welcome("a", &["b"], 3600), at(0.0));
    drain(&mut s);
    s.handle_input(at(0.1), Some("one".into()));
    s.handle_input(at(0.2), None);
    assert!(drain(&mut s).is_empty());
    s.handle_rtc(at(1.0), connected());
    s.handle_rtc(at(1.0), RtcEvent::ChannelOpen);
    assert_eq!(drain(&mut s), ["emit:connected", "send:one"]);
    assert_eq!(s.poll_timeout(), at(2.0));
    s.handle_rtc(at(1.5), RtcEvent::Message("one".into()));
    assert_eq!(s.poll_timeout(), at(2.5));
    s.handle_timeout(at(2.5));
    assert_eq!(s.outcome(), Some(&Ok(())));

    // A closed channel ends a --send attempt as a failure and other modes as done.
    let mut s = offerer_open("a", Mode::Send("x".into()));
    s.handle_rtc(at(2.0), RtcEvent::ChannelClosed);
    assert_eq!(
        s.outcome().cloned().unwrap().unwrap_err().stage,
        Stage::Dtls
    );
    let mut s = answerer_open("a");
    s.handle_rtc(at(2.0), RtcEvent::ChannelClosed);
    assert_eq!(s.outcome(), Some(&Ok(())));
}

#[test]
fn a_programs_channel_sends_and_delivers_and_has_no_deadline_once_connected() {
    let mut s = Session::new(config(Mode::App), welcome("a", &["b"], 3600), at(0.0));
    drain(&mut s);
    // What the program sends before the channel opens waits for it, text and bytes alike.
    assert!(s.handle_input(at(0.1), Some("one".into())));
    assert!(s.handle_input(at(0.1), Some(vec![0u8, 255].into())));
    assert!(drain(&mut s).is_empty());
    s.handle_local_offer(at(0.2), "v=0".into());
    s.handle_signal(at(0.3), answer("b"));
    s.handle_rtc(at(0.4), connected());
    s.handle_rtc(at(0.5), RtcEvent::ChannelOpen);
    let out = drain(&mut s);
    assert_eq!(out[out.len() - 2..], ["send:one", "send:\u{0}\u{fffd}"]);
    // Arrivals go to the program as they are (no event, no echo).
    s.handle_rtc(at(1.0), RtcEvent::Message(vec![1u8, 2].into()));
    s.handle_rtc(at(1.1), RtcEvent::Message("hi".into()));
    assert_eq!(
        drain(&mut s),
        ["deliver:Binary(2 bytes)", "deliver:Text(\"hi\")"]
    );
    // Connected, the attempt's deadline no longer applies.
    assert!(s.poll_timeout() > at(60.0), "only the renewal is due");
    s.handle_timeout(at(31.0));
    assert_eq!(s.outcome(), None);
    // The remote peer leaving for good ends it as done; then input is refused.
    s.handle_signal(
        at(40.0),
        ServerMsg::PeerLeft {
            peer_id: "b".into(),
        },
    );
    s.handle_timeout(at(40.0) + REMOTE_RETURN_GRACE);
    assert_eq!(s.outcome(), Some(&Ok(())));
    assert!(!s.handle_input(at(60.0), Some("late".into())));

    // Not connected by the deadline, it fails like any attempt; a full queue refuses input.
    let mut s = Session::new(config(Mode::App), welcome("a", &["b"], 3600), at(0.0));
    for _ in 0..MAX_UNSENT_LINES {
        assert!(s.handle_input(at(0.1), Some("x".into())));
    }
    assert!(!s.handle_input(at(0.1), Some("x".into())));
    s.handle_timeout(at(30.0));
    assert_eq!(s.outcome().cloned().unwrap().unwrap_err().stage, Stage::Ice);
}

#[test]
fn a_failure_before_connecting_ends_and_inputs_after_the_end_are_ignored() {
    let mut s = Session::new(config(Mode::Echo), welcome("a", &["b"], 3600), at(0.0));
    drain(&mut s);
    s.handle_rtc(at(1.0), RtcEvent::Failed);
    assert_eq!(
        s.outcome(),
        Some(&Err(Failure::new(Stage::Ice, "the peer connection failed")))
    );
    s.handle_signal(at(2.0), offer("b"));
    s.handle_rtc(at(2.0), RtcEvent::ChannelOpen);
    s.handle_timeout(at(40.0));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn never_mode_drops_turn_and_signaling_errors_are_only_logged() {
    let c = SessionConfig {
        relay: RelayMode::Never,
        ..config(Mode::Echo)
    };
    let mut s = Session::new(c, welcome("a", &[], 20), at(0.0));
    assert_eq!(s.servers()[0].urls, ["stun:203.0.113.1:3478"]);
    assert_eq!(s.poll_timeout(), at(30.0), "nothing to renew without TURN");
    s.handle_signal(
        at(1.0),
        ServerMsg::error(ErrorCode::RateLimited, "slow down"),
    );
    s.handle_signal(at(1.0), ServerMsg::Unknown);
    assert!(drain(&mut s).is_empty());
    assert!(s.outcome().is_none());
}
