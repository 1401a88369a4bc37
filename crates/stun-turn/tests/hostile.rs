//! natkit-relay as an attacker meets it (issue 15's findings on the relay): each test runs the
//! attack on loopback and prints what it achieves now beside what it achieved before the fix.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use natkit_stun_turn::allocation::MAX_PERMISSIONS;
use natkit_stun_turn::config::RelayOptions;
use natkit_stun_turn::server::{MAX_ATTRIBUTES, MAX_PEERS_PER_REQUEST};
use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tokio::net::UdpSocket;

/// An attribute written as raw bytes.
struct Raw(AttrType, Vec<u8>);

impl Setter for Raw {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// EVEN-PORT with the R bit: reserve the next port too.
fn even_port_reserve() -> Box<dyn Setter> {
    Box::new(Raw(ATTR_EVEN_PORT, vec![0x80]))
}

/// A new client's Allocate with EVEN-PORT and its R bit, which must succeed; the client and its
/// signing credentials.
async fn allocate_reserving(
    relay: SocketAddr,
    cred: &natkit_stun_turn::credentials::Credential,
) -> (StunClient, Auth) {
    let c = StunClient::new(relay).await;
    let auth = c.challenge(cred).await;
    let r = c
        .call(
            METHOD_ALLOCATE,
            vec![udp(), even_port_reserve()],
            Some(&auth),
        )
        .await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    (c, auth)
}

/// A Binding request carrying `n` unknown comprehension-required attributes, as raw bytes.
fn binding_with_unknown_attributes(n: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(n * 4);
    for i in 0..n {
        // 0x0030.. are unassigned comprehension-required types.
        body.extend_from_slice(&(0x0030u16 + (i % 0x100) as u16).to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
    }
    let mut m = Vec::with_capacity(20 + body.len());
    m.extend_from_slice(&0x0001u16.to_be_bytes());
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    m.extend_from_slice(&rand::random::<[u8; 12]>());
    m.extend_from_slice(&body);
    m
}

/// Finding 3: Allocate(EVEN-PORT with R) + Refresh(0), 500 times in 0.2 s, left 500 reserved
/// ports held for 30 s each outside any quota.
#[tokio::test]
async fn reserved_ports_count_against_the_quota_and_go_with_their_allocation() {
    let relay = TestRelay::with(|o| o.user_quota = Some("4".into())).await;
    let cred = mint(SECRET, "mallory", 600);
    let started = Instant::now();
    for _ in 0..200 {
        let (c, auth) = allocate_reserving(relay.addr(), &cred).await;
        let r = c.call(METHOD_REFRESH, vec![lifetime(0)], Some(&auth)).await;
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    }
    let held = relay.metric("natkit_relay_reservations_active");
    eprintln!(
        "reservation squatting: before, 500 cycles left 500 ports reserved outside any quota; now 200 cycles in {:.2} s leave {held}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(held, 0.0, "a reservation goes with its allocation");
    // Held reservations count: two allocations with a reserved port each fill a quota of 4.
    let mut keep = Vec::new();
    for _ in 0..2 {
        keep.push(allocate_reserving(relay.addr(), &cred).await.0);
    }
    assert_eq!(relay.metric("natkit_relay_reservations_active"), 2.0);
    let c = StunClient::new(relay.addr()).await;
    let (r, _) = c.allocate(&cred).await;
    assert_eq!(error_code(&r), Some(486), "the quota counts reserved ports");
}

/// Finding 4: one CreatePermission could carry thousands of XOR-PEER-ADDRESS attributes: 1.5
/// million permissions on one allocation grew the relay by 82 MiB.
#[tokio::test]
async fn permissions_are_capped_per_request_and_per_allocation() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let auth = c.allocated("mallory").await;
    let peers = |from: usize, n: usize| -> Vec<Box<dyn Setter>> {
        (from..from + n)
            .map(|i| {
                let a: SocketAddr = format!("203.0.{}.{}:9", 113 + i / 250, i % 250 + 1)
                    .parse()
                    .unwrap();
                xor_peer(a)
            })
            .collect()
    };
    // More addresses than one request may carry: 400.
    let r = c
        .call(
            METHOD_CREATE_PERMISSION,
            peers(0, MAX_PEERS_PER_REQUEST + 1),
            Some(&auth),
        )
        .await;
    assert_eq!(error_code(&r), Some(400));
    // Requests within the limit, until the allocation holds its maximum: then 508.
    let mut installed = 0;
    let mut refused = None;
    for k in 0..10 {
        let r = c
            .call(
                METHOD_CREATE_PERMISSION,
                peers(k * MAX_PEERS_PER_REQUEST, MAX_PEERS_PER_REQUEST),
                Some(&auth),
            )
            .await;
        match error_code(&r) {
            None => installed += MAX_PEERS_PER_REQUEST,
            Some(code) => {
                refused = Some(code);
                break;
            }
        }
    }
    eprintln!(
        "permission flood: before, 1.5 million permissions on one allocation (+82 MiB); now {installed} installed, then {refused:?}"
    );
    assert_eq!(installed, MAX_PERMISSIONS);
    assert_eq!(refused, Some(508));
}

/// Finding 5: 10,000 unknown comprehension-required attributes cost 13 ms of relay CPU and a
/// 20-32 KB 420 answer; 454 such datagrams in 5 s pushed a legitimate Binding's RTT from 0.1 ms to
/// a 232 ms median with 3 of 10 lost.
#[tokio::test]
async fn many_unknown_attributes_are_dropped_unread() {
    let relay = TestRelay::with(|o| o.answers_per_second = Some("0".into())).await;
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let heavy = binding_with_unknown_attributes(10_000);
    // A few unknown attributes still get their 420, with a short list.
    let probe = StunClient::new(relay.addr()).await;
    probe.send(&binding_with_unknown_attributes(12)).await;
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), probe.sock.recv_from(&mut buf))
        .await
        .expect("a 420 for a dozen unknown attributes")
        .unwrap();
    assert!(n < 200, "the 420 lists a few, not all: {n} bytes");
    // The heavy ones: no answer, and a legitimate client keeps its round trip.
    let flood = tokio::spawn({
        let heavy = heavy.clone();
        let to = relay.addr();
        async move {
            for _ in 0..454 {
                attacker.send_to(&heavy, to).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            attacker
        }
    });
    let mut rtts = Vec::new();
    let client = StunClient::new(relay.addr()).await;
    for _ in 0..10 {
        let t = Instant::now();
        let m = request(METHOD_BINDING, vec![], None);
        if client.try_transact(&m).await.is_some() {
            rtts.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attacker = flood.await.unwrap();
    let answered = tokio::time::timeout(Duration::from_millis(300), attacker.recv_from(&mut buf))
        .await
        .is_ok();
    rtts.sort();
    eprintln!(
        "unknown-attribute flood ({} attributes, {} bytes each): before, 13 ms CPU and a 20-32 KB answer per datagram, legit RTT median 232 ms, 3 of 10 lost; now no answer, legit RTT median {:?}, {} of 10 answered",
        10_000,
        heavy.len(),
        rtts.get(rtts.len() / 2),
        rtts.len()
    );
    assert!(!answered, "the attacker gets nothing back");
    assert_eq!(rtts.len(), 10, "every legitimate Binding is answered");
    assert!(
        relay.metric("natkit_relay_dropped_packets_total{reason=\"too_many_attributes\"}") >= 454.0
    );
    // The boundary: MAX_ATTRIBUTES attributes are read (and get their 420), one more is not.
    for (n, answered) in [(MAX_ATTRIBUTES, true), (MAX_ATTRIBUTES + 1, false)] {
        probe.send(&binding_with_unknown_attributes(n)).await;
        let got = tokio::time::timeout(Duration::from_millis(500), probe.sock.recv_from(&mut buf))
            .await
            .is_ok();
        assert_eq!(got, answered, "{n} attributes");
    }
}

/// Finding 7: a 20-byte Binding request drew about 5x its size in answers, without a limit per
/// source: a reflection amplifier for spoofed sources.
#[tokio::test]
async fn binding_answers_are_limited_per_source() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = request(METHOD_BINDING, vec![], None).raw;
    let sent = 2000;
    for _ in 0..sent {
        sock.send_to(&req, relay.addr()).await.unwrap();
    }
    let (mut answers, mut bytes) = (0usize, 0usize);
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
    {
        answers += 1;
        bytes += n;
    }
    let one = bytes as f64 / answers.max(1) as f64;
    let factor = bytes as f64 / (sent * req.len()) as f64;
    eprintln!(
        "reflection: before, every request answered at about 5x its size ({} bytes each); now {answers} of {sent} answered, {one:.0} bytes each ({:.1}x a {}-byte request), {factor:.2}x the attack's bytes overall",
        100,
        one / req.len() as f64,
        req.len()
    );
    assert!(answers <= 150, "a burst of 100 and 50/s: {answers}");
    assert!(answers >= 90, "the burst is answered: {answers}");
    assert!(one <= 84.0, "no SOFTWARE in Binding answers: {one}");
    assert!(relay.metric("natkit_relay_dropped_packets_total{reason=\"rate_limited\"}") >= 1800.0);
}

/// Finding 10: a 60 KB username was accepted and logged as one 60 KB line; a REALM other than the
/// relay's was accepted when the key was right.
#[tokio::test]
async fn long_usernames_and_foreign_realms_are_refused() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let cred = mint(SECRET, "alice", 600);
    let auth = c.challenge(&cred).await;
    // A client library refuses to encode it; an attacker writes the bytes itself.
    let tlv = |t: u16, v: &[u8]| {
        let mut b = t.to_be_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u16).to_be_bytes());
        b.extend_from_slice(v);
        b.resize(b.len().div_ceil(4) * 4, 0);
        b
    };
    let username = format!("{}:{}", now() + 600, "x".repeat(60_000));
    let mut body = tlv(0x0019, &[17, 0, 0, 0]);
    body.extend(tlv(0x0006, username.as_bytes()));
    body.extend(tlv(0x0014, b"natkit"));
    body.extend(tlv(0x0015, auth.nonce.as_bytes()));
    body.extend(tlv(0x0008, &[0u8; 20]));
    let tid: [u8; 12] = rand::random();
    let mut raw = 0x0003u16.to_be_bytes().to_vec();
    raw.extend_from_slice(&(body.len() as u16).to_be_bytes());
    raw.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    raw.extend_from_slice(&tid);
    raw.extend(body);
    c.send(&raw).await;
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), c.sock.recv_from(&mut buf))
        .await
        .expect("an answer to the long username")
        .unwrap();
    let mut r = Message::new();
    r.raw = buf[..n].to_vec();
    r.decode().unwrap();
    assert_eq!(error_code(&r), Some(400), "a 60 KB username");
    assert!(
        natkit_stun_turn::server::printable(&username).len() < 80,
        "and a log line of it is short"
    );
    let foreign = Auth {
        realm: "elsewhere".into(),
        ..auth.clone()
    };
    let r = c.call(METHOD_ALLOCATE, vec![udp()], Some(&foreign)).await;
    assert_eq!(
        error_code(&r),
        Some(401),
        "another realm is challenged again"
    );
    assert_eq!(
        TextAttribute::get_from_as(&r, ATTR_REALM).unwrap().text,
        "natkit"
    );
    assert!(relay.metric("natkit_relay_auth_failures_total{reason=\"wrong_realm\"}") >= 1.0);
    // The right realm still works.
    let r = c.call(METHOD_ALLOCATE, vec![udp()], Some(&auth)).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
}

/// Finding 6: with a wildcard listen address, CreatePermission and ChannelBind towards the
/// relay's own listener through another local IP succeeded (a TURN loop one step from nested
/// allocations), and `--allow-peer 127.0.0.0/8` reopened the relay's own ports.
#[tokio::test]
async fn the_relay_never_relays_into_itself() {
    let relay = TestRelay::start(RelayOptions {
        listen: vec!["0.0.0.0:0".into()],
        allow_peer: vec!["127.0.0.0/8".into()],
        ..Default::default()
    })
    .await;
    let port = relay.addrs.primary.port();
    let alt = relay.addrs.alt_port.port();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = StunClient::new(server).await;
    let auth = c.allocated("mallory").await;
    let permit =
        |peer: SocketAddr| request(METHOD_CREATE_PERMISSION, vec![xor_peer(peer)], Some(&auth));
    let mut refused = Vec::new();
    for peer in [
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        format!("127.0.0.1:{alt}"),
        format!("{}:{port}", relay.addrs.primary.ip()),
    ] {
        let r = c.transact(&permit(peer.parse().unwrap())).await;
        refused.push((peer, error_code(&r)));
    }
    eprintln!("relaying into itself: before, allowed through another local IP; now {refused:?}");
    assert!(
        refused.iter().all(|(_, code)| *code == Some(403)),
        "{refused:?}"
    );
    // An allow-listed loopback service that is not the relay is still reachable.
    let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let r = c.transact(&permit(other.local_addr().unwrap())).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    assert!(relay.metric("natkit_relay_peer_refused_total{reason=\"self\"}") >= 4.0);
}

/// Private ranges were relayable by default: a relay on a cloud VM reached its VPC unless the
/// operator remembered `deny_peer`.
#[tokio::test]
async fn private_ranges_are_denied_by_default() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let (_, auth) = c.allocate(&mint(SECRET, "mallory", 600)).await;
    for peer in [
        "10.0.0.1:53",
        "172.16.5.5:80",
        "192.168.1.1:80",
        "100.64.0.1:80",
    ] {
        let r = c
            .call(
                METHOD_CREATE_PERMISSION,
                vec![xor_peer(peer.parse().unwrap())],
                Some(&auth),
            )
            .await;
        assert_eq!(error_code(&r), Some(403), "{peer}");
    }
    assert_eq!(
        relay.metric("natkit_relay_peer_refused_total{reason=\"private\"}"),
        4.0
    );
}

/// Revocation: an operator writes `user ID` into the revocation file; that user's next request
/// gets 401 and its live allocations end within a second, others carry on.
#[tokio::test]
async fn revoked_users_get_401_and_lose_their_allocations_within_a_second() {
    let dir = std::env::temp_dir().join(format!("natkit-revoked-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("revoked");
    let relay = TestRelay::with(|o| o.revoked_file = Some(file.display().to_string().into())).await;
    let alice = StunClient::new(relay.addr()).await;
    let bob = StunClient::new(relay.addr()).await;
    assert_eq!(
        alice
            .allocate(&mint(SECRET, "alice", 600))
            .await
            .0
            .typ
            .class,
        CLASS_SUCCESS_RESPONSE
    );
    assert_eq!(
        bob.allocate(&mint(SECRET, "bob", 600)).await.0.typ.class,
        CLASS_SUCCESS_RESPONSE
    );
    assert_eq!(relay.metric("natkit_relay_allocations_active"), 2.0);
    std::fs::write(&file, "# ops, ticket 42\nuser alice\n").unwrap();
    let revoked_at = Instant::now();
    while relay.metric("natkit_relay_allocations_active") != 1.0 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "alice's allocation must end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = revoked_at.elapsed();
    eprintln!(
        "revocation: alice's allocation ended {:.2} s after the file changed",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_millis(2200),
        "within the janitor's second (and a little)"
    );
    let again = StunClient::new(relay.addr()).await;
    let (r, _) = again.allocate(&mint(SECRET, "alice", 600)).await;
    assert_eq!(error_code(&r), Some(401), "a revoked user is refused");
    assert!(relay.metric("natkit_relay_auth_failures_total{reason=\"revoked\"}") >= 1.0);
    let carol = StunClient::new(relay.addr()).await;
    assert_eq!(
        carol
            .allocate(&mint(SECRET, "carol", 600))
            .await
            .0
            .typ
            .class,
        CLASS_SUCCESS_RESPONSE
    );
    std::fs::remove_dir_all(dir).unwrap();
}
