//! Loopback tests with real WebSocket clients against an in-process natkit-signal with its
//! embedded relay on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use natkit_signal::config::SignalOptions;
use natkit_signal::token::TokenSecret;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn two_peers_exchange_addressed_messages_and_other_rooms_see_nothing() {
    let s = start(SignalOptions::default(), None).await;
    let (mut a, wa) = s.join("room1", Some("alice")).await;
    assert_eq!(wa["peers"], json!([]));
    assert!(wa["ice_servers"][0]["urls"][1]
        .as_str()
        .unwrap()
        .starts_with("turn:127.0.0.1:"));
    assert!(wa["ice_servers"][0]["username"]
        .as_str()
        .unwrap()
        .ends_with(":room1/alice"));
    let (mut b, wb) = s.join("room1", None).await;
    let bob = wb["peer_id"].as_str().unwrap().to_owned();
    assert_eq!(wb["peers"], json!(["alice"]));
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"peer-joined","peer_id": bob})
    );
    let (mut c, _) = s.join("room2", Some("alice")).await;

    // The later joiner offers; candidates trickle; null ends them.
    send(
        &mut b,
        &json!({"type":"offer","to":"alice","sdp":"v=0 offer"}),
    )
    .await;
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"offer","from": bob,"sdp":"v=0 offer"})
    );
    send(
        &mut a,
        &json!({"type":"answer","to": bob,"sdp":"v=0 answer"}),
    )
    .await;
    assert_eq!(
        recv(&mut b).await,
        json!({"type":"answer","from":"alice","sdp":"v=0 answer"})
    );
    let cand = json!({"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0});
    // A candidate, then the end of candidates.
    for c in [cand, Value::Null] {
        send(
            &mut a,
            &json!({"type":"candidate","to": bob,"candidate": c}),
        )
        .await;
        assert_eq!(
            recv(&mut b).await,
            json!({"type":"candidate","from":"alice","candidate": c})
        );
    }

    quiet(&mut c, 300).await;
    assert_eq!(
        s.metric("natkit_signal_messages_relayed_total{type=\"candidate\"}"),
        2.0
    );
    assert_eq!(
        s.metric("natkit_signal_messages_relayed_total{type=\"offer\"}"),
        1.0
    );
    assert_eq!(s.metric("natkit_signal_rooms"), 2.0);
    assert_eq!(s.metric("natkit_signal_peers_connected"), 3.0);
    assert_eq!(s.metric("natkit_signal_credentials_issued_total"), 3.0);

    // Disconnecting tells the room.
    drop(b);
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"peer-left","peer_id": bob})
    );
    quiet(&mut c, 200).await;
}

#[tokio::test]
async fn every_error_code_is_returned_and_the_connection_stays_open() {
    let s = start_with(|o| {
        o.peers_per_room = Some("1".into());
        o.max_rooms = Some("2".into());
        o.messages_per_second = Some("5".into());
    })
    .await;
    let mut ws = s.connect("").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{nope".into()), "bad-json"),
        (
            Message::Text(r#"{"type":"teleport"}"#.into()),
            "unknown-type",
        ),
        (
            Message::Text(r#"{"type":"offer","to":"x","sdp":"s"}"#.into()),
            "not-joined",
        ),
        (Message::Binary(vec![1, 2, 3].into()), "bad-json"),
        (
            Message::Text(r#"{"type":"join","room":"bad room"}"#.into()),
            "bad-room",
        ),
    ];
    for (m, code) in cases {
        ws.send(m.clone()).await.unwrap();
        let r = recv(&mut ws).await;
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str()),
            (Some("error"), Some(code)),
            "{m:?}"
        );
        assert!(r["message"].as_str().unwrap().len() > 5);
        s.clock.advance(Duration::from_millis(210)); // stay under the rate limit
    }
    send(&mut ws, &json!({"type":"join","room":"full"})).await;
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    s.clock.advance(Duration::from_millis(210));
    send(&mut ws, &json!({"type":"join","room":"other"})).await;
    assert_eq!(recv(&mut ws).await["code"], "already-joined");
    s.clock.advance(Duration::from_millis(210));
    send(&mut ws, &json!({"type":"offer","to":"ghost","sdp":"s"})).await;
    assert_eq!(recv(&mut ws).await["code"], "unknown-peer");

    let (mut second, _) = (s.connect("").await, ());
    send(&mut second, &json!({"type":"join","room":"full"})).await;
    assert_eq!(recv(&mut second).await["code"], "room-full");
    send(&mut second, &json!({"type":"join","room":"r2"})).await;
    assert_eq!(recv(&mut second).await["type"], "welcome");
    let mut third = s.connect("").await;
    send(&mut third, &json!({"type":"join","room":"r3"})).await;
    assert_eq!(recv(&mut third).await["code"], "server-full");

    // Rate limit: a burst of 30 pings gets some answers and some rate-limited errors.
    s.clock.advance(Duration::from_millis(1000));
    for _ in 0..30 {
        send(&mut ws, &json!({"type":"ping"})).await;
    }
    let mut limited = 0;
    for _ in 0..30 {
        let r = recv(&mut ws).await;
        if r["code"] == "rate-limited" {
            limited += 1;
        } else {
            assert_eq!(r["type"], "pong");
        }
    }
    assert!(limited >= 15, "only {limited} limited");
    // Still open and serving after all of that.
    s.clock.advance(Duration::from_millis(1100));
    send(&mut ws, &json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
    assert!(s.metric("natkit_signal_rejected_messages_total{reason=\"rate_limited\"}") >= 15.0);
    assert_eq!(
        s.metric("natkit_signal_rejected_messages_total{reason=\"bad_json\"}"),
        2.0
    );
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let s = start_with(|o| o.max_frame_bytes = Some("2048".into())).await;
    let (mut a, _) = s.join("r", Some("a")).await;
    let (mut b, _) = s.join("r", Some("b")).await;
    let _ = recv(&mut a).await; // peer-joined
    let big = json!({"type":"offer","to":"a","sdp":"x".repeat(5000)});
    send(&mut b, &big).await;
    assert_eq!(close_code(&mut b).await, Some(CloseCode::Size));
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"peer-left","peer_id":"b"})
    );
    // Far above tungstenite's own limit too.
    let (mut c, _) = s.join("r", Some("c")).await;
    let _ = recv(&mut a).await;
    let _ = c.send(Message::Text("y".repeat(200_000).into())).await;
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"peer-left","peer_id":"c"})
    );
    assert!(s.metric("natkit_signal_rejected_messages_total{reason=\"frame_too_big\"}") >= 1.0);
}

#[tokio::test]
async fn a_flood_of_bad_frames_does_not_disturb_other_peers() {
    let s = start_with(|o| o.messages_per_second = Some("1000".into())).await;
    let (mut a, _) = s.join("calm", Some("a")).await;
    let (mut b, _) = s.join("calm", Some("b")).await;
    let _ = recv(&mut a).await;
    let flooder = tokio::spawn({
        let url = format!("ws://{}/v1/ws", s.http);
        async move {
            let (mut f, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            for i in 0..5000u32 {
                let junk = match i % 4 {
                    0 => "{".to_string(),
                    1 => r#"{"type":"offer","to":"a","sdp":"x"}"#.to_string(),
                    2 => format!(r#"{{"type":"{i}"}}"#),
                    _ => "\u{0}\u{1}".to_string(),
                };
                if f.send(Message::Text(junk.into())).await.is_err() {
                    break;
                }
            }
        }
    });
    for i in 0..100 {
        send(
            &mut b,
            &json!({"type":"offer","to":"a","sdp": format!("sdp {i}")}),
        )
        .await;
        let got = recv(&mut a).await;
        assert_eq!(
            got,
            json!({"type":"offer","from":"b","sdp": format!("sdp {i}")})
        );
    }
    flooder.await.unwrap();
}

#[tokio::test]
async fn silent_peers_are_dropped_by_ping_timeout() {
    let s = start(SignalOptions::default(), None).await; // ping 1 s, idle 3 s
    let (mut a, _) = s.join("r", Some("a")).await;
    let (_silent, _) = s.join("r", Some("silent")).await; // never read again: never answers pings
    assert_eq!(recv(&mut a).await["type"], "peer-joined");
    let started = std::time::Instant::now();
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"peer-left","peer_id":"silent"})
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // `a` reads, so it answers pings and stays.
    send(&mut a, &json!({"type":"ping"})).await;
    assert_eq!(recv(&mut a).await["type"], "pong");
}

async fn turn_allocate(
    relay: SocketAddr,
    username: &str,
    password: &str,
) -> Result<(), turn::Error> {
    let client = natkit_testkit::turn_client(relay, username, password).await?;
    let r = client.allocate().await.map(|_| ());
    client.close().await?;
    r
}

#[tokio::test]
async fn ice_server_credentials_allocate_on_the_embedded_relay_until_they_expire() {
    let s = start_with(|o| o.credential_ttl = Some("2".into())).await;
    let (code, body) = s.get("/v1/ice-servers").await;
    assert_eq!(code, 200);
    assert_eq!(body["ttl"], 2);
    let server = &body["iceServers"][0];
    let (user, pass) = (
        server["username"].as_str().unwrap(),
        server["credential"].as_str().unwrap(),
    );
    turn_allocate(s.relay, user, pass)
        .await
        .expect("fresh credentials allocate");
    s.clock.advance(Duration::from_secs(4));
    assert!(
        turn_allocate(s.relay, user, pass).await.is_err(),
        "expired credentials must be refused"
    );
    assert!(s.metric("natkit_relay_auth_failures_total{reason=\"expired\"}") >= 1.0);
    // The welcome's credentials are the same kind.
    let (_ws, w) = s.join("r", Some("p")).await;
    let srv = &w["ice_servers"][0];
    turn_allocate(
        s.relay,
        srv["username"].as_str().unwrap(),
        srv["credential"].as_str().unwrap(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn tokens_gate_joins_and_ice_servers() {
    let s = start(SignalOptions::default(), Some("token-secret")).await;
    let key = TokenSecret::new("token-secret").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = key.mint("r1", 60, now);
    let cases: [(Value, &str, &str); 4] = [
        (json!({"type":"join","room":"r1"}), "", "unauthorized"),
        (
            json!({"type":"join","room":"r2","token": good}),
            "",
            "unauthorized",
        ),
        (
            json!({"type":"join","room":"r1","token": key.mint("r1", 1, now - 10)}),
            "",
            "unauthorized",
        ),
        (
            json!({"type":"join","room":"r1","token": good}),
            "",
            "welcome",
        ),
    ];
    for (join, query, want) in cases {
        let mut ws = s.connect(query).await;
        send(&mut ws, &join).await;
        let r = recv(&mut ws).await;
        let got = if r["type"] == "error" {
            r["code"].as_str().unwrap()
        } else {
            r["type"].as_str().unwrap()
        };
        assert_eq!(got, want, "{join}");
    }
    // The token can ride on the URL instead.
    let mut ws = s.connect(&format!("?token={good}")).await;
    send(&mut ws, &json!({"type":"join","room":"r1"})).await;
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    assert_eq!(s.get("/v1/ice-servers").await.0, 401);
    assert_eq!(s.get("/v1/ice-servers?token=forged").await.0, 401);
    let (code, body) = s.get(&format!("/v1/ice-servers?token={good}")).await;
    assert_eq!(code, 200);
    assert!(body["iceServers"][0]["credential"].is_string());
}

#[tokio::test]
async fn shutdown_tells_connected_peers() {
    let s = start(SignalOptions::default(), None).await;
    let (mut a, _) = s.join("r", Some("a")).await;
    s.stop.send(true).unwrap();
    assert_eq!(recv(&mut a).await["code"], "shutting-down");
    assert_eq!(close_code(&mut a).await, Some(CloseCode::Away));
    let _ = &s.state;
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let s = start_with(|o| o.max_connections = Some("1".into())).await;
    let (_a, _) = s.join("r", Some("a")).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", s.http))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    assert!(s.metric("natkit_signal_rejected_messages_total{reason=\"server_full\"}") >= 1.0);
}

#[test]
fn token_subcommand_mints_tokens_the_server_accepts() {
    let bin = env!("CARGO_BIN_EXE_natkit-signal");
    let out = natkit_testkit::stdout_of(
        "natkit-signal token",
        std::process::Command::new(bin)
            .env("NATKIT_SIGNAL_TOKEN_SECRET", "cli-secret")
            .args(["token", "--room", "standup", "--ttl", "120"]),
    );
    let token = String::from_utf8(out).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = TokenSecret::new("cli-secret").unwrap();
    let expires = key.authorize(Some(token.trim()), "standup", now).unwrap();
    assert!((now + 115..=now + 121).contains(&expires), "{expires}");
    assert!(key
        .authorize(Some(token.trim()), "standup", now + 121)
        .is_err());
    let out = std::process::Command::new(bin)
        .env_remove("NATKIT_SIGNAL_TOKEN_SECRET")
        .args(["token", "--room", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NATKIT_SIGNAL_TOKEN_SECRET"));
}

#[tokio::test]
async fn hostile_peer_ids_get_an_error_and_the_connection_survives() {
    let s = start(SignalOptions::default(), None).await;
    let mut ws = s.connect("").await;
    for id in ["a:b", "", "x y", &"z".repeat(65)] {
        send(&mut ws, &json!({"type":"join","room":"r","peer_id": id})).await;
        assert_eq!(recv(&mut ws).await["code"], "bad-peer-id", "{id:?}");
    }
    send(&mut ws, &json!({"type":"ping"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
    send(&mut ws, &json!({"type":"join","room":"r","peer_id":"fine"})).await;
    assert_eq!(recv(&mut ws).await["type"], "welcome");
}

/// `refresh` hands a joined peer a new credential for the same user, which allocates on the
/// relay; before `join` it is refused.
#[tokio::test]
async fn refresh_mints_a_new_credential_for_the_same_peer() {
    let s = start_with(|o| o.credential_ttl = Some("60".into())).await;
    let mut lone = s.connect("").await;
    send(&mut lone, &json!({"type": "refresh"})).await;
    let r = recv(&mut lone).await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("error"), Some("not-joined"))
    );

    let (mut ws, w) = s.join("r", Some("renewer")).await;
    let first = w["ice_servers"][0]["username"].as_str().unwrap().to_owned();
    s.clock.advance(Duration::from_millis(1100)); // a later expiry second
    send(&mut ws, &json!({"type": "refresh"})).await;
    let r = recv(&mut ws).await;
    assert_eq!(r["type"], "ice-servers", "{r}");
    assert_eq!(r["ttl"], 60);
    let srv = &r["ice_servers"][0];
    let user = srv["username"].as_str().unwrap();
    assert!(user.ends_with(":r/renewer"), "the same identity: {user}");
    assert_ne!(user, first, "a new expiry");
    turn_allocate(s.relay, user, srv["credential"].as_str().unwrap())
        .await
        .expect("refreshed credentials allocate");
}

#[tokio::test]
async fn a_peer_too_slow_to_read_is_closed_not_left_with_gaps() {
    let s = start_with(|o| {
        o.messages_per_second = Some("100000".into());
        o.idle_timeout = Some("60".into());
    })
    .await;
    let (mut a, _) = s.join("r", Some("a")).await;
    let (mut b, _) = s.join("r", Some("b")).await;
    let _ = recv(&mut a).await; // peer-joined

    // b stops reading. 1,000 offers of 32 KiB (32 MB) are more than the TCP buffers and b's
    // outgoing queue (1 MiB) hold together.
    let sdp = "x".repeat(32 * 1024);
    let flood = tokio::spawn(async move {
        for i in 0..1000 {
            send(
                &mut a,
                &json!({"type":"offer","to":"b","sdp": format!("{i} {sdp}")}),
            )
            .await;
        }
        a
    });
    // b reads again once it has been evicted (while a may still be flooding): the server gives
    // an evicted connection's writer 2 s to get its close frame through, so a client that
    // resumes reading within that time is told 1013; one that does not just sees TCP close.
    let evicted = "natkit_signal_rejected_messages_total{reason=\"slow_consumer\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.metric(evicted) < 1.0 {
        assert!(Instant::now() < deadline, "b was never evicted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // b gets what was already on its way, then 1013 (try again later): never a silent gap.
    let mut offers = Vec::new();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), b.next())
            .await
            .expect("b heard nothing for 10 s")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let sdp = v["sdp"].as_str().unwrap();
                offers.push(sdp.split(' ').next().unwrap().parse::<u32>().unwrap());
            }
            Some(Ok(Message::Close(c))) => break c.map(|c| c.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert_eq!(
        code,
        Some(CloseCode::Again),
        "after {} offers",
        offers.len()
    );
    // What did arrive is a gap-free prefix.
    assert!(
        !offers.is_empty() && offers.len() < 1000,
        "{} offers",
        offers.len()
    );
    assert_eq!(offers, (0..offers.len() as u32).collect::<Vec<_>>());

    let mut a = flood.await.expect("a's flood");
    // a learns that b left (past any unknown-peer errors for offers sent after b was closed).
    past_unknown_peer_errors(&mut a, "peer-left", "b").await;
    assert_eq!(s.metric(evicted), 1.0);
    // b rejoins under its id and the room works again.
    let (mut b, _) = s.join("r", Some("b")).await;
    past_unknown_peer_errors(&mut a, "peer-joined", "b").await;
    send(&mut a, &json!({"type":"offer","to":"b","sdp":"again"})).await;
    // The new b may first get the tail of a's flood, which the server was still reading from a.
    loop {
        let m = recv(&mut b).await;
        assert_eq!((&m["type"], &m["from"]), (&json!("offer"), &json!("a")));
        if m["sdp"] == "again" {
            break;
        }
    }
}

/// A newer client's fields are ignored, not refused (they used to get `bad-json`), the server
/// answers with its protocol version, and a browser-style candidate with a top-level `sdpMid`
/// beside it is delivered.
#[tokio::test]
async fn a_newer_clients_fields_are_tolerated_and_the_version_is_answered() {
    use natkit_proto::{ServerMsg, PROTOCOL_VERSION};
    let s = start(SignalOptions::default(), None).await;
    let mut a = s.connect("").await;
    send(
        &mut a,
        &json!({"type":"join","room":"v","peer_id":"alice","version":2,"nat":{"mapping":"endpoint-independent"}}),
    )
    .await;
    let ServerMsg::Welcome(w) = recv_msg(&mut a).await else {
        panic!("welcome expected");
    };
    assert_eq!((w.peer_id.as_str(), w.version), ("alice", PROTOCOL_VERSION));
    let (mut b, _) = s.join("v", Some("bob")).await;
    assert!(
        matches!(recv_msg(&mut a).await, ServerMsg::PeerJoined { peer_id } if peer_id == "bob")
    );
    send(
        &mut b,
        &json!({"type":"candidate","to":"alice","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"},"sdpMid":"0","hint":1}),
    )
    .await;
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"candidate","from":"bob","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}})
    );
    // An unknown type is still an error, and the connection stays open.
    send(&mut b, &json!({"type":"teleport"})).await;
    assert_eq!(recv(&mut b).await["code"], "unknown-type");
    send(&mut b, &json!({"type":"ping"})).await;
    assert_eq!(recv(&mut b).await, json!({"type":"pong"}));
}

#[tokio::test]
async fn a_draining_node_sends_its_peers_elsewhere_and_takes_no_one_new() {
    let s = start(SignalOptions::default(), None).await;
    let (mut a, _) = s.join("room1", Some("a")).await;
    let mut idle = s.connect("").await;
    s.state.start_drain();
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"reconnect","reason":"draining"})
    );
    assert_eq!(s.metric("natkit_signal_draining"), 1.0);
    // A connection that has not joined yet is told too, and refused the join; new connections
    // get 503.
    assert_eq!(recv(&mut idle).await["type"], "reconnect");
    send(&mut idle, &json!({"type":"join","room":"room1"})).await;
    assert_eq!(recv(&mut idle).await["code"], "shutting-down");
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws", s.http)).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503),
        "{refused:?}"
    );
    let (code, _) = s.get("/healthz").await;
    assert_eq!(code, 503, "load balancers stop sending clients here");
    // Drained once the peers have gone; not before.
    assert!(!s.state.drained(Duration::from_millis(200)).await);
    drop(a);
    drop(idle);
    assert!(s.state.drained(Duration::from_secs(5)).await);
}

/// A port on 127.0.0.1 free a moment ago for UDP and TCP, whose neighbour (port + 1) is too: a
/// relay's listen port and its default RFC 5780 alternate port.
fn free_port_pair(not: &[u16]) -> u16 {
    for _ in 0..200 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = udp.local_addr().unwrap().port();
        if p == u16::MAX || not.iter().any(|q| q.abs_diff(p) <= 1) {
            continue;
        }
        let next = std::net::UdpSocket::bind(("127.0.0.1", p + 1));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", p));
        let tcp_next = std::net::TcpListener::bind(("127.0.0.1", p + 1));
        if next.is_ok() && tcp.is_ok() && tcp_next.is_ok() {
            return p;
        }
    }
    panic!("no two free neighbouring ports on 127.0.0.1");
}

/// Two nodes on one host, told apart only by their listen addresses: the embedded relay's
/// alternate port follows its listen port (it was 3479 for every node, so the second one died
/// "cannot bind udp 127.0.0.1:3479").
#[test]
fn two_nodes_with_different_listen_addresses_run_side_by_side() {
    let first = free_port_pair(&[]);
    let second = free_port_pair(&[first]);
    let start = |relay: u16| {
        natkit_testkit::Daemon::start(
            std::process::Command::new(env!("CARGO_BIN_EXE_natkit-signal"))
                .env("RUST_LOG", "warn")
                .args(["--listen", "127.0.0.1:0"])
                .args(["--relay-listen", &format!("127.0.0.1:{relay}")])
                .args(["--metrics-listen", "127.0.0.1:0"]),
        )
    };
    let a = start(first);
    let b = start(second);
    for (node, port) in [(&a, first), (&b, second)] {
        assert_eq!(node.addr("stun").port(), port);
        assert_eq!(node.addr("stun-alt").port(), port + 1, "{:?}", node.log());
    }
    assert_ne!(a.addr("metrics"), b.addr("metrics"));
}

/// Reads `ws` up to the `kind` event about `peer`; only unknown-peer errors may come first.
async fn past_unknown_peer_errors(ws: &mut Ws, kind: &str, peer: &str) {
    loop {
        let m = recv(ws).await;
        if m["type"] == kind {
            assert_eq!(m["peer_id"], peer);
            return;
        }
        assert_eq!(m["code"], "unknown-peer", "{m}");
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn natkit_js_is_served_with_a_validator() {
    let s = start(SignalOptions::default(), None).await;
    let (code, headers, body) = s.request("GET", "/natkit.js", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert!(
        body.contains("export async function connect("),
        "{body:.200}"
    );
    let etag = header(&headers, "etag").expect("an ETag").to_owned();
    // Unchanged: 304 without a body; another tag (an older module): the module again.
    let (code, headers, body) = s
        .request("GET", "/natkit.js", &[("If-None-Match", &etag)])
        .await;
    assert_eq!((code, body.as_str()), (304, ""));
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    let (code, _, body) = s
        .request("GET", "/natkit.js", &[("If-None-Match", "\"older\"")])
        .await;
    assert_eq!(code, 200);
    assert!(!body.is_empty());
    println!("natkit.js: {} bytes unminified", body.len());
    // Both pages import it: the browser is told to fetch it from their headers on, and the
    // probe's servers too (the demo page's without TURN, the check page's with), unless the
    // page's query changes that request or turns the probe off.
    let demo = "</natkit.js>; rel=modulepreload, </v1/check-servers?turn=false>; rel=preload; as=fetch; crossorigin";
    let check =
        "</natkit.js>; rel=modulepreload, </v1/check-servers>; rel=preload; as=fetch; crossorigin";
    for (page, link) in [
        ("/", demo),
        ("/check", check),
        ("/?room=a&send=x", demo),
        ("/?room=a&token=t", "</natkit.js>; rel=modulepreload"),
        ("/?signal=ws://b:8080", "</natkit.js>; rel=modulepreload"),
        ("/?relay=1", "</natkit.js>; rel=modulepreload"),
    ] {
        let (code, headers, body) = s.request("GET", page, &[]).await;
        assert_eq!(code, 200, "{page}");
        assert!(body.contains(r#""/natkit.js""#), "{page}");
        assert_eq!(header(&headers, "link"), Some(link), "{page}");
    }
}

#[tokio::test]
async fn other_origins_get_cors_only_when_the_operator_allows_them() {
    // The default: this server's pages only; no CORS for others, the WebSocket left to tokens.
    let s = start(SignalOptions::default(), None).await;
    let app = [("Origin", "https://app.example")];
    for path in ["/natkit.js", "/v1/ice-servers"] {
        let (code, headers, _) = s.request("GET", path, &app).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            None,
            "{path}"
        );
    }
    let (code, _, _) = s.request("OPTIONS", "/v1/ice-servers", &app).await;
    assert_eq!(code, 403);
    assert!(ws_upgrade(&s, Some("https://app.example")).await);

    let s = start_with(|o| o.allowed_origins = vec!["https://app.example".into()]).await;
    for path in ["/natkit.js", "/v1/ice-servers", "/v1/check-servers"] {
        let (code, headers, _) = s.request("GET", path, &app).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some("https://app.example"),
            "{path}"
        );
        let (_, headers, _) = s
            .request("GET", path, &[("Origin", "https://evil.example")])
            .await;
        assert_eq!(header(&headers, "access-control-allow-origin"), None);
    }
    // A preflight (a GET with Authorization: Bearer needs one).
    let (code, headers, _) = s
        .request(
            "OPTIONS",
            "/v1/ice-servers",
            &[
                ("Origin", "https://app.example"),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(
        header(&headers, "access-control-allow-headers"),
        Some("authorization")
    );
    // The WebSocket: the listed origin, this server's own page and non-browsers (no Origin) in;
    // another origin refused before the upgrade.
    assert!(ws_upgrade(&s, Some("https://app.example")).await);
    assert!(ws_upgrade(&s, Some(&format!("http://{}", s.http))).await);
    assert!(ws_upgrade(&s, None).await);
    assert!(!ws_upgrade(&s, Some("https://evil.example")).await);
    assert_eq!(
        s.metric("natkit_signal_rejected_messages_total{reason=\"unauthorized\"}"),
        1.0
    );
}

/// Whether a WebSocket upgrade with this `Origin` is accepted (403 when refused).
async fn ws_upgrade(s: &Suite, origin: Option<&str>) -> bool {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/v1/ws", s.http)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => true,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403);
            false
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn allowed_origins_reject_what_is_not_an_origin() {
    let o = SignalOptions {
        allowed_origins: vec!["app.example.com".into()],
        auth: Some("open".into()),
        ..Default::default()
    };
    let e = natkit_signal::config::SignalConfig::from_options(o, |_| unreachable!()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "allowed_origins: \"app.example.com\" is not an origin: write scheme://host[:port] \
         (https://app.example.com), or \"*\""
    );
}
