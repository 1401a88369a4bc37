//! Table tests of the pair's path: the NAT summaries exchanged, the policy decided from both (or
//! from this side alone), and the relay-only restart when no direct pair connects in time.

use super::tests::{at, config, connected, drain, offer, welcome};
use super::*;
use natkit_proto::NatBehaviour;

fn summary(m: &[NatBehaviour], f: &[NatBehaviour]) -> NatSummary {
    NatSummary {
        mapping: m.to_vec(),
        filtering: f.to_vec(),
        udp_blocked: false,
        families: vec![],
        ipv6: None,
    }
}

fn symmetric() -> NatSummary {
    summary(
        &[NatBehaviour::AddressAndPortDependent],
        &[NatBehaviour::AddressAndPortDependent],
    )
}

fn open() -> NatSummary {
    summary(
        &[NatBehaviour::EndpointIndependent],
        &[NatBehaviour::EndpointIndependent],
    )
}

fn probed(nat: NatSummary) -> SessionConfig {
    SessionConfig {
        local_nat: LocalNat::Known(Some(nat)),
        ..config(Mode::Echo)
    }
}

fn nat_from(from: &str, nat: NatSummary) -> ServerMsg {
    ServerMsg::NatSummary {
        from: from.into(),
        nat,
    }
}

#[test]
fn the_offerer_tells_its_nat_and_decides_with_the_answering_sides() {
    // One relay hop is enough for a symmetric pair: the answerer relays, the offerer does not.
    let cases = [
        (
            symmetric(),
            symmetric(),
            "configure-via-their-relay",
            "symmetric-pair",
        ),
        (
            symmetric(),
            summary(
                &[NatBehaviour::EndpointIndependent],
                &[NatBehaviour::AddressAndPortDependent],
            ),
            "configure-via-their-relay",
            "symmetric-restricted",
        ),
        (symmetric(), open(), "configure", "direct-possible"),
        (open(), symmetric(), "configure", "direct-possible"),
    ];
    for (mine, theirs, configure, rule) in cases {
        let mut s = Session::new(probed(mine.clone()), welcome("a", &["b"], 3600), at(0.0));
        assert_eq!(drain(&mut s), ["signal:nat-summary"]);
        assert_eq!(s.poll_timeout(), at(0.0) + SUMMARY_WAIT, "waits for theirs");
        // A summary from someone else decides nothing.
        s.handle_signal(at(0.1), nat_from("z", theirs.clone()));
        assert!(drain(&mut s).is_empty());
        s.handle_signal(at(0.2), nat_from("b", theirs.clone()));
        let want = [
            configure,
            &format!("emit:policy:{rule}"),
            "channel",
            "offer",
        ];
        assert_eq!(drain(&mut s), want, "{mine:?} vs {theirs:?}");
    }
    // The policy event names both summaries.
    let mut s = Session::new(probed(symmetric()), welcome("a", &["b"], 3600), at(0.0));
    drain(&mut s);
    s.handle_signal(at(0.2), nat_from("b", open()));
    let policy = std::iter::from_fn(|| s.poll_action())
        .find_map(|a| match a {
            Action::Emit(e @ Event::Policy { .. }) => Some(e),
            _ => None,
        })
        .unwrap();
    let v = serde_json::to_value(&policy).unwrap();
    assert_eq!(v["local_nat"]["mapping"][0], "address-and-port-dependent");
    assert_eq!(v["remote_nat"]["mapping"][0], "endpoint-independent");
    assert_eq!(v["ice_transport_policy"], "all");
}

#[test]
fn without_a_summary_the_offerer_decides_alone_after_the_wait() {
    for (mine, configure) in [(symmetric(), "configure-relay"), (open(), "configure")] {
        let mut s = Session::new(probed(mine), welcome("a", &["b"], 3600), at(0.0));
        drain(&mut s);
        s.handle_timeout(at(0.5));
        assert!(drain(&mut s).is_empty(), "still waiting");
        s.handle_timeout(at(0.0) + SUMMARY_WAIT);
        assert_eq!(
            drain(&mut s),
            [configure, "emit:policy:this-side-only", "channel", "offer"]
        );
    }
}

#[test]
fn the_answerer_tells_newcomers_its_nat_and_decides_on_their_summary() {
    let mut s = Session::new(probed(symmetric()), welcome("a", &[], 3600), at(0.0));
    assert!(drain(&mut s).is_empty(), "nobody to tell yet");
    s.handle_signal(
        at(1.0),
        ServerMsg::PeerJoined {
            peer_id: "b".into(),
        },
    );
    assert_eq!(drain(&mut s), ["signal:nat-summary"]);
    s.handle_signal(
        at(1.0),
        ServerMsg::PeerJoined {
            peer_id: "b".into(),
        },
    );
    assert!(drain(&mut s).is_empty(), "told once");
    // The newcomer's summary comes just before its offer: the peer connection is made
    // meanwhile.
    s.handle_signal(at(1.5), nat_from("b", symmetric()));
    assert_eq!(
        drain(&mut s),
        ["configure-relay", "emit:policy:symmetric-pair"]
    );
    s.handle_signal(at(1.6), offer("b"));
    assert_eq!(drain(&mut s), ["accept-offer"]);
    assert_eq!(s.partner(), Some("b"));

    // Still probing: the summary waits for the probe and the offer.
    let probing = SessionConfig {
        local_nat: LocalNat::Probe,
        ..config(Mode::App)
    };
    let mut s = Session::new(probing, welcome("a", &[], 600), at(0.0));
    assert_eq!(drain(&mut s), ["probe:203.0.113.1:3478"]);
    s.handle_signal(at(0.1), nat_from("b", symmetric()));
    assert!(drain(&mut s).is_empty(), "no decision before the probe");

    // An offer from a peer that sent no summary (aiortc, a browser): this side alone.
    let mut s = Session::new(probed(open()), welcome("a", &[], 3600), at(0.0));
    s.handle_signal(at(1.6), offer("b"));
    assert_eq!(
        drain(&mut s),
        ["configure", "emit:policy:this-side-only", "accept-offer"]
    );
}

#[test]
fn no_direct_pair_in_time_restarts_ice_relay_only() {
    let mut s = Session::new(probed(open()), welcome("a", &[], 3600), at(0.0));
    s.handle_signal(at(1.0), nat_from("b", open()));
    s.handle_signal(at(1.0), offer("b"));
    s.handle_local_answer(at(1.1), "v=0".into());
    drain(&mut s);
    assert_eq!(s.poll_timeout(), at(1.0) + DIRECT_DEADLINE);
    s.handle_timeout(at(1.0) + DIRECT_DEADLINE);
    assert_eq!(
        drain(&mut s),
        [
            "emit:policy:direct-deadline",
            "apply-relay",
            "restart-offer",
            "emit:ice-restart:direct-deadline"
        ]
    );
    assert_eq!(s.stage(), Stage::Relay);

    // Connected in time: no restart.
    let mut s = Session::new(probed(open()), welcome("a", &[], 3600), at(0.0));
    s.handle_signal(at(1.0), offer("b"));
    s.handle_local_answer(at(1.1), "v=0".into());
    s.handle_rtc(at(2.0), connected());
    drain(&mut s);
    s.handle_timeout(at(1.0) + DIRECT_DEADLINE);
    assert!(drain(&mut s).is_empty());
}

/// The session decides whether to probe: with `relay` auto and a STUN server in the welcome it
/// asks for one and does nothing else until the result; the result (or its failure) then drives
/// the summary and the policy as a known NAT would.
#[test]
fn the_session_asks_for_a_probe_when_it_needs_one() {
    let asking = |relay: RelayMode| SessionConfig {
        local_nat: LocalNat::Probe,
        relay,
        ..config(Mode::Echo)
    };
    // (relay mode, peers in the room, first actions, after the probe reports)
    type Row = (
        RelayMode,
        bool,
        Vec<&'static str>,
        Option<Vec<&'static str>>,
    );
    let cases: [Row; 4] = [
        (
            RelayMode::Auto,
            true,
            vec!["probe:203.0.113.1:3478"],
            Some(vec!["signal:nat-summary"]),
        ),
        (
            RelayMode::Auto,
            false,
            vec!["probe:203.0.113.1:3478"],
            Some(vec![]),
        ),
        (
            RelayMode::Always,
            true,
            vec!["configure-relay", "channel", "offer"],
            None,
        ),
        (
            RelayMode::Never,
            true,
            vec!["configure", "channel", "offer"],
            None,
        ),
    ];
    for (i, (relay, peers, first, after)) in cases.into_iter().enumerate() {
        let mut s = Session::new(
            asking(relay),
            welcome("me", if peers { &["a"] } else { &[] }, 600),
            at(0.0),
        );
        // What the session asks of the shell, its events left out.
        let asked = |s: &mut Session| -> Vec<String> {
            drain(s)
                .into_iter()
                .filter(|a| !a.starts_with("emit:"))
                .collect()
        };
        assert_eq!(asked(&mut s), first, "case {i}");
        if let Some(after) = after {
            s.handle_probe(at(0.3), Some(symmetric()));
            assert_eq!(asked(&mut s), after, "case {i} after the probe");
        }
    }
    // A failed probe: no summary to send, the policy is decided from this side alone at once.
    let mut s = Session::new(asking(RelayMode::Auto), welcome("me", &["a"], 600), at(0.0));
    drain(&mut s);
    s.handle_probe(at(0.3), None);
    let got = drain(&mut s);
    assert!(got.contains(&"configure".to_string()), "{got:?}");
    assert!(!got.iter().any(|a| a == "signal:nat-summary"), "{got:?}");
    // A second report is ignored.
    s.handle_probe(at(0.4), Some(symmetric()));
    assert!(drain(&mut s).is_empty());
}
