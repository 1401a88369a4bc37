//! Loopback tests of TURN behaviour: real clients (the `turn` crate's and a raw STUN client that
//! checks exact error codes) against an in-process relay on 127.0.0.1:0.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use natkit_stun_turn::config::RelayOptions;
use stun::attributes::*;
use stun::message::*;
use tokio::net::UdpSocket;
use turn::client::Client;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use util::Conn;

fn allow_loopback() -> RelayOptions {
    RelayOptions {
        allow_peer: vec!["127.0.0.1/32".into()],
        ..Default::default()
    }
}

async fn turn_client(server: SocketAddr, username: &str, password: &str) -> Client {
    natkit_testkit::turn_client(server, username, password)
        .await
        .unwrap()
}

/// A UDP peer that echoes every datagram to its sender.
async fn echo_peer() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    addr
}

async fn recv_within(conn: &impl Conn, secs: u64) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(secs), conn.recv_from(&mut buf))
        .await
        .expect("no datagram through the relay in time")
        .unwrap();
    (buf[..n].to_vec(), from)
}

/// Reads until `want` arrives (skipping earlier datagrams); returns its source.
async fn recv_until(conn: &impl Conn, want: &[u8]) -> SocketAddr {
    loop {
        let (got, from) = recv_within(conn, 5).await;
        if got == want {
            return from;
        }
    }
}

#[tokio::test]
async fn turn_client_relays_to_allowed_peer_and_back_with_live_metrics() {
    let relay = TestRelay::start(allow_loopback()).await;
    let peer = echo_peer().await;
    let cred = mint(SECRET, "alice", 600);
    let client = turn_client(relay.addr(), &cred.username, &cred.password).await;
    let conn = client
        .allocate()
        .await
        .expect("allocation with REST credentials");
    let relayed = conn.local_addr().unwrap();
    assert_eq!(relayed.ip(), relay.addrs.relay_ip);

    for i in 0..20u32 {
        let msg = format!("ping {i}");
        conn.send_to(msg.as_bytes(), peer).await.unwrap();
        let (got, from) = recv_within(&conn, 5).await;
        assert_eq!(got, msg.as_bytes());
        assert_eq!(from, peer);
    }
    // The session is still alive: counters must already have moved (coturn only counts at the end).
    assert_eq!(relay.metric("natkit_relay_allocations_active"), 1.0);
    assert_eq!(relay.metric("natkit_relay_allocations_created_total"), 1.0);
    let sent = relay.metric("natkit_relay_relayed_packets_total{direction=\"client_to_peer\"}");
    let back = relay.metric("natkit_relay_relayed_packets_total{direction=\"peer_to_client\"}");
    assert!(sent >= 20.0 && back >= 20.0, "sent {sent} back {back}");
    assert!(
        relay.metric("natkit_relay_relayed_bytes_total{direction=\"peer_to_client\"}") >= 130.0
    );
    let page = relay.metrics.render();
    assert!(
        !page.contains("alice") && !page.contains("127.0.0.1"),
        "no per-user or per-address labels"
    );
    client.close().await.unwrap();
    relay.shutdown().await;
}

#[tokio::test]
async fn two_clients_behind_the_same_relay_reach_each_other_without_allow_lists() {
    // Default policy: loopback is refused, but the relay's own relayed addresses always work.
    let relay = TestRelay::start(RelayOptions::default()).await;
    let a = mint(SECRET, "a", 600);
    let b = mint(SECRET, "b", 600);
    let ca = turn_client(relay.addr(), &a.username, &a.password).await;
    let cb = turn_client(relay.addr(), &b.username, &b.password).await;
    let ra = ca.allocate().await.unwrap();
    let rb = cb.allocate().await.unwrap();
    let (addr_a, addr_b) = (ra.local_addr().unwrap(), rb.local_addr().unwrap());
    // Each side installs a permission for the other's relayed address by sending first.
    rb.send_to(b"hello from b", addr_a).await.unwrap();
    ra.send_to(b"hello from a", addr_b).await.unwrap();
    // "hello from b" may or may not reach A: it raced A's permission. Each side must see the
    // message sent after both permissions exist.
    assert_eq!(recv_until(&rb, b"hello from a").await, addr_a);
    rb.send_to(b"reply", addr_a).await.unwrap();
    assert_eq!(recv_until(&ra, b"reply").await, addr_b);
    ca.close().await.unwrap();
    cb.close().await.unwrap();
}

#[tokio::test]
async fn forbidden_peers_get_403_and_are_counted() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let auth = c.allocated("mallory").await;
    let cases: [(&str, Method); 5] = [
        ("127.0.0.3:22", METHOD_CREATE_PERMISSION),
        // the relay's own address (it listens on 127.0.0.1 here), outside the relay port range
        ("127.0.0.1:22", METHOD_CREATE_PERMISSION),
        ("169.254.169.254:80", METHOD_CREATE_PERMISSION),
        ("224.0.0.1:5000", METHOD_CHANNEL_BIND),
        ("0.0.0.0:9", METHOD_CREATE_PERMISSION),
    ];
    for (peer, method) in cases {
        let peer: SocketAddr = peer.parse().unwrap();
        let mut attrs = vec![xor_peer(peer)];
        if method == METHOD_CHANNEL_BIND {
            attrs.insert(0, Box::new(turn::proto::channum::ChannelNumber(0x4000)));
        }
        let r = c.call(method, attrs, Some(&auth)).await;
        assert_eq!(error_code(&r), Some(403), "{peer}");
    }
    assert_eq!(
        relay.metric("natkit_relay_peer_refused_total{reason=\"loopback\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_peer_refused_total{reason=\"self\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_peer_refused_total{reason=\"link_local\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_peer_refused_total{reason=\"multicast\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_peer_refused_total{reason=\"unspecified\"}"),
        1.0
    );
    // A public-looking peer is fine.
    let ok = c.permit("198.51.100.7:5000", &auth).await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE);
}

#[tokio::test]
async fn loopback_peer_allowed_when_operator_says_so() {
    let relay = TestRelay::start(allow_loopback()).await;
    let c = StunClient::new(relay.addr()).await;
    let (_, auth) = c.allocate(&mint(SECRET, "ops", 600)).await;
    let r = c.permit("127.0.0.1:22", &auth).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    // 127.0.0.2 is not in the allow list.
    let r = c.permit("127.0.0.2:22", &auth).await;
    assert_eq!(error_code(&r), Some(403));
}

#[tokio::test]
async fn expired_and_forged_credentials_get_401() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let cases = [
        (
            "expired",
            expired(SECRET, "alice"),
            "natkit_relay_auth_failures_total{reason=\"expired\"}",
        ),
        (
            "forged",
            mint("some-other-secret", "alice", 600),
            "natkit_relay_auth_failures_total{reason=\"bad_integrity\"}",
        ),
        (
            "malformed",
            natkit_stun_turn::credentials::Credential {
                username: "alice".into(),
                password: "x".into(),
                ttl: 1,
            },
            "natkit_relay_auth_failures_total{reason=\"malformed_username\"}",
        ),
    ];
    for (what, cred, series) in cases {
        let c = StunClient::new(relay.addr()).await;
        let (r, _) = c.allocate(&cred).await;
        assert_eq!(error_code(&r), Some(401), "{what}");
        assert!(
            text(&r, ATTR_NONCE).is_some(),
            "{what}: 401 carries a fresh nonce"
        );
        assert_eq!(relay.metric(series), 1.0, "{what}");
    }
    // The turn crate's client gives up on the same expired credential.
    let e = expired(SECRET, "bob");
    let client = turn_client(relay.addr(), &e.username, &e.password).await;
    assert!(client.allocate().await.is_err());
    assert_eq!(relay.metric("natkit_relay_allocations_active"), 0.0);
}

#[tokio::test]
async fn old_and_new_secret_both_work_during_rotation() {
    let dir = std::env::temp_dir().join(format!("natkit-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secrets");
    std::fs::write(&file, "# newest first\nnew-secret\nold-secret\n").unwrap();
    let relay = TestRelay::start_with_secret(
        RelayOptions {
            secret_file: Some(file.to_string_lossy().into_owned().into()),
            ..Default::default()
        },
        // NATKIT_TURN_SECRET is also set in this helper: it mints, the file's secrets verify.
        "env-secret",
    )
    .await;
    for (secret, ok) in [
        ("env-secret", true),
        ("new-secret", true),
        ("old-secret", true),
        ("retired", false),
    ] {
        let c = StunClient::new(relay.addr()).await;
        let (r, _) = c.allocate(&mint(secret, "rotating", 600)).await;
        if ok {
            assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{secret}");
        } else {
            assert_eq!(error_code(&r), Some(401), "{secret}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn stale_or_foreign_nonce_gets_438_then_works() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let cred = mint(SECRET, "alice", 600);
    let mut auth = c.challenge(&cred).await;
    auth.nonce = "0000000000000000ffffffffffffffff".into();
    let r = c.call(METHOD_ALLOCATE, vec![udp()], Some(&auth)).await;
    assert_eq!(error_code(&r), Some(438));
    auth.nonce = text(&r, ATTR_NONCE).unwrap();
    let r = c.call(METHOD_ALLOCATE, vec![udp()], Some(&auth)).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);

    // A nonce issued to another 5-tuple is not accepted from this one.
    let other = StunClient::new(relay.addr()).await;
    let r = other.call(METHOD_ALLOCATE, vec![udp()], Some(&auth)).await;
    assert_eq!(error_code(&r), Some(438));
}

#[tokio::test]
async fn quotas_per_user_and_total_answer_486() {
    let relay = TestRelay::start(RelayOptions {
        user_quota: Some("1".into()),
        total_quota: Some("2".into()),
        ..Default::default()
    })
    .await;
    let alice = mint(SECRET, "alice", 600);
    let a1 = StunClient::new(relay.addr()).await;
    let (r, alice_auth) = a1.allocate(&alice).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let a2 = StunClient::new(relay.addr()).await;
    assert_eq!(error_code(&a2.allocate(&alice).await.0), Some(486));
    let b = StunClient::new(relay.addr()).await;
    assert_eq!(
        b.allocate(&mint(SECRET, "bob", 600)).await.0.typ.class,
        CLASS_SUCCESS_RESPONSE
    );
    let c = StunClient::new(relay.addr()).await;
    let carol = mint(SECRET, "carol", 600);
    assert_eq!(error_code(&c.allocate(&carol).await.0), Some(486));
    assert_eq!(
        relay.metric("natkit_relay_quota_rejections_total{scope=\"user\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_quota_rejections_total{scope=\"total\"}"),
        1.0
    );

    // Alice deletes her allocation (Refresh with lifetime 0): room for carol.
    let r = a1
        .call(METHOD_REFRESH, vec![lifetime(0)], Some(&alice_auth))
        .await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(c.allocate(&carol).await.0.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(relay.metric("natkit_relay_allocations_active"), 2.0);
}

#[tokio::test]
async fn allocate_retransmission_is_idempotent_and_new_allocate_mismatches() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let auth = c.challenge(&mint(SECRET, "alice", 600)).await;
    let req = request(METHOD_ALLOCATE, vec![udp()], Some(&auth));
    let first = c.transact(&req).await;
    let again = c.transact(&req).await;
    let relayed = |m: &Message| {
        let mut r = RelayedAddress::default();
        r.get_from(m).unwrap();
        (r.ip, r.port)
    };
    assert_eq!(relayed(&first), relayed(&again));
    let other = c.call(METHOD_ALLOCATE, vec![udp()], Some(&auth)).await;
    assert_eq!(error_code(&other), Some(437));
    assert_eq!(relay.metric("natkit_relay_allocations_created_total"), 1.0);
}

#[tokio::test]
async fn allocate_protocol_errors() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let auth = c.challenge(&mint(SECRET, "alice", 600)).await;
    let tcp: Box<dyn Setter> = Box::new(turn::proto::reqtrans::RequestedTransport {
        protocol: turn::proto::Protocol(6),
    });
    let dont_fragment = |m: &mut Message| m.add(ATTR_DONT_FRAGMENT, &[]);
    let r = c.call(METHOD_ALLOCATE, vec![], Some(&auth)).await;
    assert_eq!(error_code(&r), Some(400), "missing REQUESTED-TRANSPORT");
    let r = c.call(METHOD_ALLOCATE, vec![tcp], Some(&auth)).await;
    assert_eq!(error_code(&r), Some(442), "TCP relaying");
    let mut m = request(METHOD_ALLOCATE, vec![udp()], None);
    dont_fragment(&mut m);
    let r = c.transact(&m).await;
    assert_eq!(error_code(&r), Some(420), "DONT-FRAGMENT is not supported");
    // Refresh, CreatePermission and ChannelBind without an allocation: 437.
    for method in [
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
    ] {
        let r = c
            .call(method, vec![peer("198.51.100.1:1")], Some(&auth))
            .await;
        assert_eq!(error_code(&r), Some(437), "{method:?}");
    }
}

#[tokio::test]
async fn another_users_credentials_cannot_touch_an_allocation() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    c.allocated("alice").await;
    let eve = c.challenge(&mint(SECRET, "eve", 600)).await;
    let r = c.call(METHOD_REFRESH, vec![lifetime(0)], Some(&eve)).await;
    assert_eq!(error_code(&r), Some(441));
    assert_eq!(relay.metric("natkit_relay_allocations_active"), 1.0);
}

/// A renewed REST credential for the same user refreshes the live allocation (credential
/// rotation without re-allocating); the configured maximum lifetime caps what is granted.
#[tokio::test]
async fn renewed_credential_of_the_same_user_refreshes_the_allocation() {
    let relay = TestRelay::with(|o| o.max_lifetime = Some("20".into())).await;
    let c = StunClient::new(relay.addr()).await;
    let first = mint(SECRET, "alice", 30);
    let (r, _) = c.allocate(&first).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let mut granted = Lifetime::default();
    granted.get_from(&r).unwrap();
    assert_eq!(
        granted.0,
        Duration::from_secs(20),
        "max_lifetime caps the default"
    );
    let renewed = mint(SECRET, "alice", 60);
    assert_ne!(renewed.username, first.username);
    let auth = c.challenge(&renewed).await;
    let r = c
        .call(METHOD_REFRESH, vec![lifetime(3600)], Some(&auth))
        .await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    granted.get_from(&r).unwrap();
    assert_eq!(
        granted.0,
        Duration::from_secs(20),
        "refreshes are capped too"
    );
    // The first credential, once expired, no longer refreshes anything.
    let stale = expired(SECRET, "alice");
    let auth = c.challenge(&stale).await;
    let r = c.call(METHOD_REFRESH, vec![], Some(&auth)).await;
    assert_eq!(error_code(&r), Some(401));
}

#[tokio::test]
async fn peer_datagrams_without_permission_are_dropped() {
    let relay = TestRelay::start(allow_loopback()).await;
    let cred = mint(SECRET, "alice", 600);
    let client = turn_client(relay.addr(), &cred.username, &cred.password).await;
    let conn = client.allocate().await.unwrap();
    let relayed = conn.local_addr().unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(b"unsolicited", relayed).await.unwrap();
    let mut buf = [0u8; 100];
    let r = tokio::time::timeout(Duration::from_millis(500), conn.recv_from(&mut buf)).await;
    assert!(
        r.is_err(),
        "a peer without permission must not reach the client"
    );
    // Wait for the poller to have counted it (it runs concurrently with this test).
    for _ in 0..50 {
        if relay.metric("natkit_relay_dropped_packets_total{reason=\"no_permission\"}") >= 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("drop not counted");
}

/// The primary address is served by one socket per core (SO_REUSEPORT), yet a second relay on
/// the same port is refused as before instead of joining the group and taking half the clients.
#[tokio::test]
async fn a_second_relay_on_the_same_port_is_refused() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let config = natkit_stun_turn::config::RelayConfig::try_from(RelayOptions {
        listen: vec![relay.addr().to_string().into()],
        alt_port: Some("0".into()),
        turn_secret: Some(natkit_stun_turn::config::SecretText(SECRET.into())),
        ..Default::default()
    })
    .unwrap();
    let err = match natkit_stun_turn::server::Relay::bind(
        config,
        natkit_stun_turn::metrics::RelayMetrics::new(),
    )
    .await
    {
        Ok(_) => panic!("a second relay bound {}", relay.addr()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&relay.addr().to_string()), "{err}");
    // The first relay still answers every client, from many source ports.
    for _ in 0..8 {
        let c = StunClient::new(relay.addr()).await;
        c.allocated("alice").await;
    }
}
