use super::*;
use serde_json::json;

fn ctx(id: &str) -> JoinContext {
    JoinContext {
        generated_id: id.into(),
        ice_servers: vec![],
        ttl: 60,
    }
}

fn codes(out: &(impl AsRef<[Out]> + ?Sized)) -> Vec<(ConnId, String)> {
    out.as_ref()
        .iter()
        .map(|o| {
            let v = serde_json::to_value(&o.msg).unwrap();
            let label = match v["type"].as_str().unwrap() {
                "error" => format!("error:{}", v["code"].as_str().unwrap()),
                t => t.to_owned(),
            };
            (o.to, label)
        })
        .collect()
}

#[test]
fn join_relay_leave_sequence() {
    let mut r = Rooms::new(RoomLimits {
        peers_per_room: 2,
        rooms: 2,
    });
    // (step, effects as (connection, type))
    let welcome_a = r.join(1, "room1", None, ctx("a"));
    assert_eq!(codes(&welcome_a), [(1, "welcome".into())]);
    assert!(
        matches!(&welcome_a.outs[0].msg, ServerMsg::Welcome(Welcome { peers, .. }) if peers.is_empty())
    );
    let welcome_b = r.join(2, "room1", Some("bob"), ctx("ignored"));
    assert_eq!(
        codes(&welcome_b),
        [(1, "peer-joined".into()), (2, "welcome".into())]
    );
    assert!(
        matches!(&welcome_b.outs[1].msg, ServerMsg::Welcome(Welcome { peers, peer_id, .. }) if peers == &["a"] && peer_id == "bob")
    );

    // (sender, message, what each connection receives)
    type Row = (ConnId, ClientMsg, Vec<(ConnId, &'static str)>);
    let cases: Vec<Row> = vec![
        (
            2,
            ClientMsg::Offer {
                to: "a".into(),
                sdp: "o".into(),
            },
            vec![(1, "offer")],
        ),
        (
            1,
            ClientMsg::Answer {
                to: "bob".into(),
                sdp: "a".into(),
            },
            vec![(2, "answer")],
        ),
        (
            1,
            ClientMsg::Candidate {
                to: "bob".into(),
                candidate: None,
            },
            vec![(2, "candidate")],
        ),
        (
            1,
            ClientMsg::Offer {
                to: "carol".into(),
                sdp: "o".into(),
            },
            vec![(1, "error:unknown-peer")],
        ),
        (
            1,
            ClientMsg::Offer {
                to: "a".into(),
                sdp: "o".into(),
            },
            vec![(1, "error:unknown-peer")],
        ),
        (
            9,
            ClientMsg::Offer {
                to: "a".into(),
                sdp: "o".into(),
            },
            vec![(9, "error:not-joined")],
        ),
        (9, ClientMsg::Leave, vec![(9, "error:not-joined")]),
        (9, ClientMsg::Ping, vec![(9, "pong")]),
        (1, ClientMsg::Ping, vec![(1, "pong")]),
    ];
    for (conn, msg, want) in cases {
        let got = codes(&r.route(conn, msg.clone()));
        let want: Vec<(ConnId, String)> =
            want.into_iter().map(|(c, s)| (c, s.to_owned())).collect();
        assert_eq!(got, want, "{conn} {msg:?}");
    }
    // `from` is added and the payload passes through untouched.
    let out = r.route(
        2,
        ClientMsg::Candidate {
            to: "a".into(),
            candidate: serde_json::from_value(
                json!({"candidate":"c","sdpMid":"0","sdpMLineIndex":0}),
            )
            .unwrap(),
        },
    );
    assert_eq!(
        serde_json::to_value(&out.outs[0].msg).unwrap(),
        json!({"type":"candidate","from":"bob","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}})
    );

    // Limits: room full, second room fine, third room refused.
    assert_eq!(
        codes(&r.join(3, "room1", None, ctx("c"))),
        [(3, "error:room-full".into())]
    );
    assert_eq!(
        codes(&r.join(3, "room2", None, ctx("c"))),
        [(3, "welcome".into())]
    );
    assert_eq!(
        codes(&r.join(4, "room3", None, ctx("d"))),
        [(4, "error:server-full".into())]
    );
    assert_eq!(
        codes(&r.join(3, "room2", None, ctx("c"))),
        [(3, "error:already-joined".into())]
    );

    // Leaving tells the room; an empty room disappears.
    assert_eq!(codes(&r.leave(1)), [(2, "peer-left".into())]);
    assert_eq!(codes(&r.leave(2)), []);
    assert_eq!(codes(&r.leave(2)), []);
    assert_eq!((r.room_count(), r.peer_count()), (1, 1));
}

#[test]
fn names_and_ids_are_validated() {
    let mut r = Rooms::new(RoomLimits {
        peers_per_room: 0,
        rooms: 0,
    });
    let long = "x".repeat(65);
    let cases: [(&str, Option<&str>, &str); 6] = [
        ("", None, "error:bad-room"),
        (&long, None, "error:bad-room"),
        ("room with spaces", None, "error:bad-room"),
        ("ok", Some("has/slash"), "error:bad-peer-id"),
        ("ok", Some("me"), "welcome"),
        ("ok", Some("me"), "error:bad-peer-id"),
    ];
    for (i, (room, id, want)) in cases.into_iter().enumerate() {
        let got = codes(&r.join(i as ConnId, room, id, ctx(&format!("g{i}"))));
        assert_eq!(got.last().unwrap().1, want, "{room:?} {id:?}");
    }
}

#[test]
fn rooms_are_isolated() {
    let mut r = Rooms::new(RoomLimits {
        peers_per_room: 0,
        rooms: 0,
    });
    r.join(1, "a", Some("x"), ctx("x"));
    r.join(2, "a", Some("y"), ctx("y"));
    let out = r.join(3, "b", Some("x"), ctx("x"));
    assert_eq!(
        codes(&out),
        [(3, "welcome".into())],
        "no peer-joined crosses rooms"
    );
    // Same peer id in another room is another peer.
    assert_eq!(
        codes(&r.route(
            3,
            ClientMsg::Offer {
                to: "y".into(),
                sdp: "s".into()
            }
        )),
        [(3, "error:unknown-peer".into())]
    );
    assert_eq!(codes(&r.leave(3)), []);
}

fn seats(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, n)| (p.to_string(), n.to_string()))
        .collect()
}

fn admitted(seq: u64, list: &[(&str, &str)]) -> JoinVerdict {
    JoinVerdict::Admitted {
        seq,
        seats: seats(list),
    }
}

#[test]
fn clustered_joins_views_and_stale_changes() {
    let mut r = Rooms::clustered("me");
    // A join the store admits: the snapshot's remote peers are in welcome, nobody local is told.
    let id = r.begin_join(1, "r", Some("a"), "gen").unwrap();
    assert_eq!(id, "a");
    // A second join of the same id on this node is refused here, before the store.
    assert_eq!(
        codes(&r.begin_join(2, "r", Some("a"), "gen").unwrap_err()),
        [(2, "error:bad-peer-id".into())]
    );
    // The store's announcement of x arrives before the verdict: kept for the view.
    assert!(r.remote_joined("r", "x", "n2", 5).is_empty());
    let out = r.finish_join(1, admitted(4, &[("a", "me"), ("x", "n2")]), ctx("a"));
    assert!(
        matches!(&out.outs[..], [Out { to: 1, msg: ServerMsg::Welcome(w) }] if w.peers == ["x"]),
        "{out:?}"
    );
    // Changes: (frame, effects). Stale ones (seq not above the last applied) do nothing.
    // (what happens, what each connection receives)
    type Step = (
        Box<dyn Fn(&mut Rooms) -> Vec<Out>>,
        Vec<(ConnId, &'static str)>,
    );
    let steps: Vec<Step> = vec![
        (
            Box::new(|r| r.remote_joined("r", "y", "n3", 6)),
            vec![(1, "peer-joined")],
        ),
        (Box::new(|r| r.remote_joined("r", "z", "n3", 6)), vec![]),
        (Box::new(|r| r.remote_left("r", "x", 3)), vec![]),
        (
            Box::new(|r| r.remote_left("r", "x", 7)),
            vec![(1, "peer-left")],
        ),
        (Box::new(|r| r.remote_left("r", "x", 8)), vec![]),
        // A peer whose node died rejoined through another: same seat, no announcement.
        (Box::new(|r| r.remote_joined("r", "y", "n4", 9)), vec![]),
        // Rooms this node has no peer in are not tracked.
        (
            Box::new(|r| r.remote_joined("elsewhere", "q", "n2", 10)),
            vec![],
        ),
        (Box::new(|r| r.remote_left("r", "a", 11)), vec![]),
    ];
    for (i, (step, want)) in steps.into_iter().enumerate() {
        let want: Vec<(ConnId, String)> =
            want.into_iter().map(|(c, s)| (c, s.to_owned())).collect();
        assert_eq!(codes(&step(&mut r)), want, "step {i}");
    }
    assert_eq!(r.room_count(), 1);

    // A message for a remote peer becomes one op for its node (the moved y: n4), with `from`.
    let offer = ClientMsg::Offer {
        to: "y".into(),
        sdp: "o".into(),
    };
    assert_eq!(r.route(1, offer), Routed::default(), "the op carries it");
    let ops = r.take_ops();
    assert!(
        matches!(&ops[..], [ClusterOp::Message { sender: 1, node, room, to, text }]
            if &**node == "n4" && room == "r" && to == "y"
            && text == r#"{"type":"offer","from":"a","sdp":"o"}"#),
        "{ops:?}"
    );
    assert_eq!(r.local_conn("r", "a"), Some(1));
    assert_eq!(r.local_conn("r", "y"), None);

    // A refused join leaves no trace; a local peer joining later is told by this node.
    r.begin_join(3, "full", Some("b"), "gen").unwrap();
    let out = r.finish_join(
        3,
        JoinVerdict::Refused {
            code: ErrorCode::RoomFull,
            message: "full".into(),
        },
        ctx("b"),
    );
    assert_eq!(codes(&out), [(3, "error:room-full".into())]);
    assert_eq!(r.room_count(), 1);
    r.begin_join(4, "r", Some("c"), "gen").unwrap();
    let out = r.finish_join(
        4,
        admitted(12, &[("a", "me"), ("c", "me"), ("y", "n4")]),
        ctx("c"),
    );
    assert_eq!(
        codes(&out),
        [(1, "peer-joined".into()), (4, "welcome".into())]
    );
    assert_eq!(r.local_members().len(), 2);

    // Leaving tells the local peers now and the store through an op; the last local peer's
    // leave forgets the view and its remote seats.
    assert_eq!(codes(&r.leave(4)), [(1, "peer-left".into())]);
    assert_eq!(codes(&r.leave(1)), []);
    assert_eq!(
        r.take_ops(),
        [
            ClusterOp::Left {
                room: "r".into(),
                peer: "c".into()
            },
            ClusterOp::Left {
                room: "r".into(),
                peer: "a".into()
            }
        ]
    );
    assert_eq!(r.room_count(), 0);
}

/// The store's changes can reach this node before a join's verdict (they come over another
/// connection to the store): they are held and replayed over the verdict's snapshot, so the
/// welcome lists the room as it is and no one hears of a peer it was never shown.
#[test]
fn changes_before_the_first_verdict_are_replayed_over_it() {
    let mut r = Rooms::clustered("me");
    r.begin_join(1, "r", Some("a"), "gen").unwrap();
    // x leaves (7) and y joins (8) after the snapshot (6); z's join (5) is older than it.
    assert!(r.remote_left("r", "x", 7).is_empty());
    assert!(r.remote_joined("r", "y", "n3", 8).is_empty());
    assert!(r.remote_joined("r", "z", "n2", 5).is_empty());
    let snapshot = [("a", "me"), ("c", "n2"), ("x", "n2"), ("z", "n2")];
    let out = r.finish_join(1, admitted(6, &snapshot), ctx("a"));
    assert!(
        matches!(&out.outs[..], [Out { to: 1, msg: ServerMsg::Welcome(w) }]
            if w.peers == ["c", "y", "z"]),
        "{out:?}"
    );
    // From then on changes apply as they come, and an old one does nothing.
    assert_eq!(
        codes(&r.remote_left("r", "c", 9)),
        [(1, "peer-left".into())]
    );
    assert!(r.remote_joined("r", "x", "n2", 4).is_empty());

    // Held changes are bounded: the newest 256 stay.
    r.begin_join(2, "busy", Some("b"), "gen").unwrap();
    for i in 0..300u64 {
        assert!(r
            .remote_joined("busy", &format!("p{i}"), "n2", 10 + i)
            .is_empty());
    }
    let out = r.finish_join(2, admitted(1, &[("b", "me")]), ctx("b"));
    let [Out {
        msg: ServerMsg::Welcome(w),
        ..
    }] = &out.outs[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(w.peers.len(), 256);
    assert!(w.peers.contains(&"p299".to_owned()) && !w.peers.contains(&"p43".to_owned()));
}

#[test]
fn a_resync_takes_the_store_as_it_is() {
    let mut r = Rooms::clustered("me");
    r.begin_join(1, "r", Some("a"), "g").unwrap();
    r.finish_join(1, admitted(50, &[("a", "me"), ("x", "n2")]), ctx("a"));
    assert_eq!(r.max_seq(), 50);
    // After a Redis restart the counter may be lower: a resync applies anyway and tells the
    // local peers the difference; a plain snapshot that old is ignored.
    assert!(r
        .apply_snapshot("r", 7, &seats(&[("a", "me")]), None)
        .is_empty());
    let out = r.resync_snapshot("r", 7, &seats(&[("a", "me"), ("y", "n3")]));
    let mut got = codes(&out);
    got.sort();
    assert_eq!(got, [(1, "peer-joined".into()), (1, "peer-left".into())]);
    assert_eq!(r.local_members(), [("r".into(), "a".into(), 1)]);
}

/// What each step decided, as the shell reads it: seated, refused (with the code), relayed.
#[test]
fn routed_says_what_was_decided() {
    let mut r = Rooms::new(RoomLimits {
        peers_per_room: 2,
        rooms: 0,
    });
    let j = r.join(1, "room1", Some("a"), ctx("a"));
    assert_eq!((j.seated.as_deref(), j.refused), (Some("a"), None));
    let j = r.join(2, "room1", Some("a"), ctx("a"));
    assert_eq!((j.seated, j.refused), (None, Some(ErrorCode::BadPeerId)));
    r.join(3, "room1", Some("b"), ctx("b"));
    let full = r.join(4, "room1", Some("c"), ctx("c"));
    assert_eq!(full.refused, Some(ErrorCode::RoomFull));
    let offer = |to: &str| ClientMsg::Offer {
        to: to.into(),
        sdp: "s".into(),
    };
    let sent = r.route(1, offer("b"));
    assert!(sent.relayed && sent.refused.is_none());
    let unknown = r.route(1, offer("zed"));
    assert_eq!(
        (unknown.relayed, unknown.refused),
        (false, Some(ErrorCode::UnknownPeer))
    );
    assert_eq!(r.route(9, offer("b")).refused, Some(ErrorCode::NotJoined));
    let pong = r.route(9, ClientMsg::Ping);
    assert_eq!(
        (pong.refused, pong.relayed, pong.outs.len()),
        (None, false, 1)
    );
}
