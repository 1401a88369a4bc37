//! natkit-signal nodes sharing rooms through a real redis-server (Debian's package) on loopback:
//! cross-node rooms, ordering, cluster-wide limits and tokens, a Redis restart under load.
//! Nodes run in-process here; `cluster_nodes.rs` kills node processes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use natkit_signal::config::SignalOptions;
use natkit_signal::token::TokenSecret;
use natkit_testkit::redis::RedisServer;
use serde_json::{json, Value};

async fn node(redis: &RedisServer, extra: SignalOptions, token: Option<&str>) -> Suite {
    let s = start(
        SignalOptions {
            cluster: Some(redis.url().into()),
            cluster_lease: Some("2".into()),
            // These tests send bursts; the per-connection rate limit is another test's subject.
            messages_per_second: Some("100000".into()),
            ..extra
        },
        token,
    )
    .await;
    wait_up(&s, true).await;
    s
}

/// Waits until the node's `natkit_signal_cluster_up` is `up`.
async fn wait_up(s: &Suite, up: bool) {
    let want = if up { 1.0 } else { 0.0 };
    let until = Instant::now() + Duration::from_secs(10);
    while s.metric("natkit_signal_cluster_up") != want {
        assert!(Instant::now() < until, "cluster_up never became {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn healthz(s: &Suite) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(s.http).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).await.unwrap();
    body.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn candidate(to: &str, n: usize) -> Value {
    json!({"type":"candidate","to": to,"candidate":{"candidate": format!("c{n}"),"sdpMid":"0","sdpMLineIndex":0}})
}

/// Reads candidates c0..c{n} from `from` (and nothing else) in order.
async fn expect_candidates(ws: &mut Ws, from: &str, n: usize) {
    for i in 0..n {
        let m = recv(ws).await;
        assert_eq!(m["type"], "candidate", "{m}");
        assert_eq!(m["from"], from, "{m}");
        assert_eq!(
            m["candidate"]["candidate"],
            format!("c{i}"),
            "message {i} from {from}"
        );
    }
}

async fn join_err(s: &Suite, room: &str, id: &str) -> Value {
    let mut ws = s.connect("").await;
    send(&mut ws, &json!({"type":"join","room": room,"peer_id": id})).await;
    let m = recv(&mut ws).await;
    assert_eq!(m["type"], "error", "{m}");
    m
}

#[tokio::test]
async fn three_nodes_share_rooms_in_order_within_cluster_wide_limits() {
    let redis = RedisServer::start();
    let limits = || SignalOptions {
        peers_per_room: Some("3".into()),
        max_rooms: Some("2".into()),
        ..Default::default()
    };
    let a = node(&redis, limits(), None).await;
    let b = node(&redis, limits(), None).await;
    let c = node(&redis, limits(), None).await;
    assert_eq!(healthz(&a).await, "ok\n");

    let (mut alice, w) = a.join("room1", Some("alice")).await;
    assert_eq!(w["peers"], json!([]));
    let (mut bob, w) = b.join("room1", Some("bob")).await;
    assert_eq!(
        w["peers"],
        json!(["alice"]),
        "welcome lists the peer on the other node"
    );
    assert_eq!(
        recv(&mut alice).await,
        json!({"type":"peer-joined","peer_id":"bob"})
    );
    let (mut carol, w) = c.join("room1", Some("carol")).await;
    assert_eq!(w["peers"], json!(["alice", "bob"]));
    assert_eq!(
        recv(&mut alice).await,
        json!({"type":"peer-joined","peer_id":"carol"})
    );
    assert_eq!(
        recv(&mut bob).await,
        json!({"type":"peer-joined","peer_id":"carol"})
    );

    // Addressed messages across nodes: exactly once, in order per sender and recipient, with
    // three senders at once.
    const N: usize = 300;
    let (sa, sb, sc) = (
        async {
            for i in 0..N {
                send(&mut alice, &candidate("bob", i)).await;
            }
        },
        async {
            for i in 0..N {
                send(&mut bob, &candidate("carol", i)).await;
            }
        },
        async {
            for i in 0..N {
                send(&mut carol, &candidate("alice", i)).await;
            }
        },
    );
    tokio::join!(sa, sb, sc);
    expect_candidates(&mut bob, "alice", N).await;
    expect_candidates(&mut carol, "bob", N).await;
    expect_candidates(&mut alice, "carol", N).await;
    quiet(&mut bob, 300).await;
    quiet(&mut alice, 50).await;
    assert_eq!(
        b.metric("natkit_signal_cluster_frames_total{kind=\"message\"}"),
        N as f64,
        "one frame per message"
    );

    // Unknown peers are still told apart.
    send(&mut alice, &json!({"type":"offer","to":"dave","sdp":"s"})).await;
    assert_eq!(recv(&mut alice).await["code"], "unknown-peer");

    // Limits and identity hold across nodes.
    assert_eq!(join_err(&a, "room1", "dave").await["code"], "room-full");
    assert_eq!(join_err(&b, "room1", "alice").await["code"], "bad-peer-id");
    let (_other, _) = b.join("room2", Some("x")).await;
    assert_eq!(join_err(&c, "room3", "y").await["code"], "server-full");
    assert_eq!(
        a.metric("natkit_signal_rejected_messages_total{reason=\"room_full\"}"),
        1.0
    );

    // Leaving, by closing the connection, reaches the other nodes.
    drop(bob);
    assert_eq!(
        recv(&mut alice).await,
        json!({"type":"peer-left","peer_id":"bob"})
    );
    assert_eq!(
        recv(&mut carol).await,
        json!({"type":"peer-left","peer_id":"bob"})
    );
    let (_dave, w) = a.join("room1", Some("dave")).await;
    assert_eq!(w["peers"], json!(["alice", "carol"]));
    assert_eq!(
        recv(&mut carol).await,
        json!({"type":"peer-joined","peer_id":"dave"})
    );
}

/// A peer joins on one node while the room's other peer drops its connection on another: the
/// joiner's first message is its welcome, and it hears a leave only of a peer its welcome
/// listed. (Once seen: a `peer-left` overtook the welcome.)
#[tokio::test]
async fn a_join_racing_a_leave_on_another_node_gets_its_welcome_first() {
    let redis = RedisServer::start();
    // 120 joins from one address: the credential limit is another test's subject.
    let unlimited = || SignalOptions {
        credentials_per_minute: Some("0".into()),
        ..Default::default()
    };
    let n1 = node(&redis, unlimited(), None).await;
    let n2 = node(&redis, unlimited(), None).await;
    let (mut listed, mut unlisted) = (0, 0);
    for i in 0..60u64 {
        let room = format!("race{i}");
        let (a, _) = n1.join(&room, Some("a")).await;
        // Leave a little before, at, or after the join, to cross it in every order.
        let leave = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i % 4)).await;
            drop(a);
        });
        // `join` asserts that the first message is the welcome.
        let (mut b, welcome) = n2.join(&room, Some("b")).await;
        leave.await.unwrap();
        if welcome["peers"] == json!(["a"]) {
            listed += 1;
            let m = recv(&mut b).await;
            assert_eq!(
                (&m["type"], &m["peer_id"]),
                (&json!("peer-left"), &json!("a")),
                "{m}"
            );
        } else {
            assert_eq!(welcome["peers"], json!([]), "{welcome}");
            unlisted += 1;
            quiet(&mut b, 50).await;
        }
    }
    println!("welcomes listing the leaving peer: {listed}, not listing it: {unlisted}");
}

#[tokio::test]
async fn a_token_minted_for_one_node_works_on_every_node() {
    let redis = RedisServer::start();
    let secret = "cluster-token-secret";
    let a = node(&redis, SignalOptions::default(), Some(secret)).await;
    let b = node(&redis, SignalOptions::default(), Some(secret)).await;
    let token = TokenSecret::new(secret)
        .unwrap()
        .mint("room1", 60, natkit_daemon::unix_now());
    let mut ws = [a.connect("").await, b.connect("").await];
    for (i, w) in ws.iter_mut().enumerate() {
        send(
            w,
            &json!({"type":"join","room":"room1","peer_id": format!("p{i}"),"token": token}),
        )
        .await;
        let m = recv(w).await;
        assert_eq!(m["type"], "welcome", "node {i}: {m}");
        // TURN credentials from either node's relay share the TURN secret, and count in the
        // join token's quota group whichever node minted them.
        let user = m["ice_servers"][0]["username"].as_str().unwrap();
        let group = natkit_stun_turn::credentials::grant_group(&token);
        assert!(user.ends_with(&format!(":room1/p{i}#{group}")), "{user}");
    }
    let forged = format!("{token}x");
    let mut w = b.connect("").await;
    send(
        &mut w,
        &json!({"type":"join","room":"room1","peer_id":"p9","token": forged}),
    )
    .await;
    assert_eq!(recv(&mut w).await["code"], "unauthorized");
}

#[tokio::test]
async fn a_redis_restart_under_load_spares_local_rooms_and_cross_node_delivery_resumes() {
    let mut redis = RedisServer::start();
    let a = node(&redis, SignalOptions::default(), None).await;
    let b = node(&redis, SignalOptions::default(), None).await;
    // A room whose peers are all on node A, and one across A and B.
    let (mut x, _) = a.join("local", Some("x")).await;
    let (mut y, _) = a.join("local", Some("y")).await;
    assert_eq!(recv(&mut x).await["type"], "peer-joined");
    let (mut p, _) = a.join("cross", Some("p")).await;
    let (mut q, w) = b.join("cross", Some("q")).await;
    assert_eq!(w["peers"], json!(["p"]));
    assert_eq!(recv(&mut p).await["type"], "peer-joined");

    // The local room carries on through the outage: y reads 400 candidates sent by x while
    // Redis is killed and, later, restarted.
    const N: usize = 400;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            send(&mut x, &candidate("y", i)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        x
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    wait_up(&a, false).await;
    wait_up(&b, false).await;
    assert!(healthz(&a)
        .await
        .starts_with("degraded: cluster store unreachable"));

    // What needs Redis is refused with the documented error, and says so.
    send(&mut p, &json!({"type":"offer","to":"q","sdp":"s"})).await;
    let e = recv(&mut p).await;
    assert_eq!(e["code"], "cluster-unavailable", "{e}");
    assert_eq!(
        join_err(&b, "cross", "r").await["code"],
        "cluster-unavailable"
    );

    redis.restart();
    wait_up(&a, true).await;
    wait_up(&b, true).await;
    assert_eq!(healthz(&b).await, "ok\n");
    let mut x = sender.await.unwrap();
    expect_candidates(&mut y, "x", N).await;

    // Cross-node delivery resumes; the restarted (empty) Redis learnt both sides again.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        send(&mut p, &json!({"type":"offer","to":"q","sdp":"after"})).await;
        let m = recv(&mut q).await;
        if m["type"] == "offer" {
            assert_eq!(m, json!({"type":"offer","from":"p","sdp":"after"}));
            break;
        }
        // The resync may tell q that p left and came back while the store was empty.
        assert!(
            m["type"] == "peer-left" || m["type"] == "peer-joined",
            "{m}"
        );
        assert!(
            Instant::now() < until,
            "no cross-node delivery after the restart"
        );
    }
    let (_r, w) = b.join("cross", Some("r")).await;
    let mut peers: Vec<String> = serde_json::from_value(w["peers"].clone()).unwrap();
    peers.sort();
    assert_eq!(peers, ["p", "q"]);
    send(&mut x, &candidate("y", 0)).await;
    expect_candidates(&mut y, "x", 1).await;
}

/// A node that dies (SIGKILL, its lease of 2 s unrenewed) has its peers leave their rooms, and
/// the peers on the other node hear it, within 1.25 leases and a margin.
#[tokio::test]
async fn a_killed_node_s_peers_leave_their_rooms_within_the_lease() {
    let redis = RedisServer::start();
    let mut a = natkit_testkit::natkit_signal_clustered("s", &redis.url(), &["--no-relay"]);
    let b = natkit_testkit::natkit_signal_clustered("s", &redis.url(), &["--no-relay"]);
    let join = |url: String, id: &'static str| async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}/v1/ws"))
            .await
            .unwrap();
        send(
            &mut ws,
            &json!({"type":"join","room":"lease","peer_id": id}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["type"], "welcome");
        ws
    };
    let mut x = join(a.ws_url(), "x").await;
    let mut y = join(b.ws_url(), "y").await;
    assert_eq!(
        recv(&mut x).await,
        json!({"type":"peer-joined","peer_id":"y"})
    );
    let killed = Instant::now();
    a.process().kill();
    let left = recv(&mut y).await;
    let after = killed.elapsed();
    eprintln!("peer-left of the killed node's peer after {after:?} (lease 2 s)");
    assert_eq!(left, json!({"type":"peer-left","peer_id":"x"}));
    assert!(after <= Duration::from_millis(2500 + 1000), "{after:?}");
    // The room goes on on node b: a newcomer there sees only y.
    let mut z = join(b.ws_url(), "z").await;
    send(&mut z, &json!({"type":"offer","to":"x","sdp":"s"})).await;
    assert_eq!(recv(&mut z).await["code"], "unknown-peer");
}
