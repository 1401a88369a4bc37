//! The batched UDP data path, as clients and peers see it: bursts that the relay reads many at a
//! time and sends as GSO runs arrive whole, in order and exactly once; peers without a channel
//! get Data indications, peers without a permission are dropped and counted, in the same bursts;
//! many allocations served by one poller each get their own datagrams and no one else's; the
//! relayed counters match what was delivered.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use natkit_stun_turn::config::RelayOptions;
use stun::attributes::ATTR_XOR_PEER_ADDRESS;
use stun::message::*;
use tokio::net::UdpSocket;

fn allow_loopback() -> RelayOptions {
    RelayOptions {
        allow_peer: vec!["127.0.0.1".into()],
        ..Default::default()
    }
}

/// A UDP socket on 127.0.0.1 with a 4 MiB receive buffer, so a test's bursts are not lost
/// before it reads.
fn roomy_socket() -> UdpSocket {
    roomy_socket_on("127.0.0.1:0".parse().unwrap())
}

fn roomy_socket_on(addr: SocketAddr) -> UdpSocket {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    s.set_recv_buffer_size(4 << 20).unwrap();
    s.bind(&addr.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    UdpSocket::from_std(s.into()).unwrap()
}

/// An allocation with channel `number` bound towards `peer`; returns its relayed address.
async fn allocation_towards(
    relay: &TestRelay,
    user: &str,
    number: u16,
    peer: SocketAddr,
) -> (StunClient, SocketAddr, Auth) {
    let local = SocketAddr::new(peer.ip(), 0);
    let client = StunClient {
        sock: roomy_socket_on(local),
        server: relay.addr(),
    };
    let (ok, auth) = client.allocate(&mint(SECRET, user, 600)).await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{ok:?}");
    let mut r = turn::proto::relayaddr::RelayedAddress::default();
    r.get_from(&ok).unwrap();
    let relayed = SocketAddr::new(r.ip, r.port);
    let bind = request(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(turn::proto::channum::ChannelNumber(number)),
            xor_peer(peer),
        ],
        Some(&auth),
    );
    assert_eq!(
        client.transact(&bind).await.typ.class,
        CLASS_SUCCESS_RESPONSE
    );
    (client, relayed, auth)
}

fn channel_data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![(number >> 8) as u8, number as u8];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Datagram `i` of a burst: its number, then filler to `len` bytes.
fn numbered(i: u32, len: usize) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.resize(len, (i % 251) as u8);
    v
}

async fn recv_n(sock: &UdpSocket, n: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::with_capacity(n);
    let mut buf = vec![0u8; 65_536];
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
            Ok(Ok((len, from))) => got.push((buf[..len].to_vec(), from)),
            _ => panic!("{} of {n} datagrams arrived", got.len()),
        }
    }
    got
}

/// Nothing more arrives within 300 ms.
async fn quiet(sock: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    if let Ok(Ok((len, from))) =
        tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
    {
        panic!("unexpected {len}-byte datagram from {from}");
    }
}

async fn counted(relay: &TestRelay, series: &str, want: f64) {
    for _ in 0..100 {
        if relay.metric(series) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{series} is {}, want {want}", relay.metric(series));
}

#[tokio::test]
async fn bursts_arrive_whole_in_order_and_exactly_once_both_ways() {
    let relay = TestRelay::start(allow_loopback()).await;
    let peer = roomy_socket();
    let (client, relayed, _) =
        allocation_towards(&relay, "burst", 0x4001, peer.local_addr().unwrap()).await;

    // Client to peer: runs of equal sizes (GSO), a shorter one ending a run, a big one.
    let sizes: Vec<usize> = (0..600u32)
        .map(|i| match i % 100 {
            0..=79 => 200,
            80 => 17,
            81 => 9_000,
            _ => 1_000,
        })
        .collect();
    for (i, &len) in sizes.iter().enumerate() {
        client
            .send(&channel_data(0x4001, &numbered(i as u32, len)))
            .await;
    }
    let got = recv_n(&peer, sizes.len()).await;
    for (i, (data, from)) in got.iter().enumerate() {
        assert_eq!(*from, relayed, "datagram {i} from the relayed address");
        assert_eq!(*data, numbered(i as u32, sizes[i]), "datagram {i}");
    }
    quiet(&peer).await;

    // Peer to client, the same shapes: ChannelData 0x4001, unpadded over UDP.
    for (i, &len) in sizes.iter().enumerate() {
        peer.send_to(&numbered(i as u32, len), relayed)
            .await
            .unwrap();
    }
    let got = recv_n(&client.sock, sizes.len()).await;
    for (i, (data, from)) in got.iter().enumerate() {
        assert_eq!(*from, relay.addr());
        assert_eq!(
            *data,
            channel_data(0x4001, &numbered(i as u32, sizes[i])),
            "frame {i}"
        );
    }
    quiet(&client.sock).await;

    let n = sizes.len() as f64;
    counted(
        &relay,
        "natkit_relay_relayed_packets_total{direction=\"client_to_peer\",transport=\"udp\"}",
        n,
    )
    .await;
    counted(
        &relay,
        "natkit_relay_relayed_packets_total{direction=\"peer_to_client\",transport=\"udp\"}",
        n,
    )
    .await;
    let bytes: usize = sizes.iter().sum();
    counted(
        &relay,
        "natkit_relay_relayed_bytes_total{direction=\"peer_to_client\",transport=\"udp\"}",
        bytes as f64,
    )
    .await;
}

#[tokio::test]
async fn one_burst_mixes_channels_indications_and_strangers_and_each_is_framed_by_its_own_rights() {
    let relay = TestRelay::start(allow_loopback()).await;
    let channelled = roomy_socket();
    let permitted = roomy_socket();
    let (client, relayed, _) =
        allocation_towards(&relay, "mixed", 0x4002, channelled.local_addr().unwrap()).await;
    // `permitted` shares 127.0.0.1 with `channelled`, so it has the permission (permissions are
    // per IP) but no channel: its datagrams come as Data indications naming it.

    let mut want = Vec::new();
    for i in 0..300u32 {
        let payload = numbered(i, 120);
        if i % 3 == 1 {
            permitted.send_to(&payload, relayed).await.unwrap();
            want.push((false, payload));
        } else {
            channelled.send_to(&payload, relayed).await.unwrap();
            want.push((true, payload));
        }
    }
    let got = recv_n(&client.sock, want.len()).await;
    // Order is kept per peer (each peer's datagrams queue in the relayed socket in send order).
    let mut by_kind: HashMap<bool, Vec<Vec<u8>>> = HashMap::new();
    for (data, _) in got {
        if data[0] & 0xC0 == 0x40 {
            assert_eq!(u16::from_be_bytes([data[0], data[1]]), 0x4002);
            let len = u16::from_be_bytes([data[2], data[3]]) as usize;
            by_kind
                .entry(true)
                .or_default()
                .push(data[4..4 + len].to_vec());
        } else {
            let mut m = Message::new();
            m.raw = data;
            m.decode().expect("a STUN message");
            assert_eq!(m.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
            let mut from = stun::xoraddr::XorMappedAddress::default();
            from.get_from_as(&m, ATTR_XOR_PEER_ADDRESS).unwrap();
            assert_eq!(
                SocketAddr::new(from.ip, from.port),
                permitted.local_addr().unwrap()
            );
            let data = m.get(stun::attributes::ATTR_DATA).unwrap();
            by_kind.entry(false).or_default().push(data);
        }
    }
    for kind in [true, false] {
        let expected: Vec<Vec<u8>> = want
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, p)| p.clone())
            .collect();
        assert_eq!(by_kind.remove(&kind).unwrap_or_default(), expected);
    }
    quiet(&client.sock).await;
    counted(
        &relay,
        "natkit_relay_relayed_packets_total{direction=\"peer_to_client\",transport=\"udp\"}",
        300.0,
    )
    .await;
}

#[tokio::test]
async fn a_peer_without_permission_is_dropped_in_the_middle_of_a_burst() {
    // Loopback allowed as a peer, but the client asks only for 127.0.0.2: datagrams from
    // 127.0.0.1 have no permission.
    let relay = TestRelay::with(|o| o.allow_peer = vec!["127.0.0.0/8".into()]).await;
    let peer = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (client, relayed, _) =
        allocation_towards(&relay, "strangers", 0x4003, peer.local_addr().unwrap()).await;
    for i in 0..200u32 {
        let sock = if i % 2 == 0 { &peer } else { &stranger };
        sock.send_to(&numbered(i, 64), relayed).await.unwrap();
    }
    let got = recv_n(&client.sock, 100).await;
    let want: Vec<Vec<u8>> = (0..200u32)
        .step_by(2)
        .map(|i| channel_data(0x4003, &numbered(i, 64)))
        .collect();
    assert_eq!(got.into_iter().map(|(d, _)| d).collect::<Vec<_>>(), want);
    quiet(&client.sock).await;
    counted(
        &relay,
        "natkit_relay_dropped_packets_total{reason=\"no_permission\"}",
        100.0,
    )
    .await;
}

#[tokio::test]
async fn many_allocations_each_get_their_own_datagrams_and_no_one_elses() {
    let relay = TestRelay::start(allow_loopback()).await;
    let peer = roomy_socket();
    let mut allocations = Vec::new();
    for a in 0..60u32 {
        allocations.push(
            allocation_towards(
                &relay,
                &format!("many{a}"),
                0x4000 + a as u16,
                peer.local_addr().unwrap(),
            )
            .await,
        );
    }
    // Every allocation's peer datagrams interleaved, so one wake-up of the poller reads many
    // relayed sockets and one sendmmsg carries frames for many clients.
    for round in 0..20u32 {
        for (a, (_, relayed, _)) in allocations.iter().enumerate() {
            let tag = a as u32 * 1000 + round;
            peer.send_to(&numbered(tag, 80 + a), *relayed)
                .await
                .unwrap();
        }
    }
    for (a, (client, _, _)) in allocations.iter().enumerate() {
        let got = recv_n(&client.sock, 20).await;
        let want: Vec<Vec<u8>> = (0..20u32)
            .map(|round| {
                channel_data(
                    0x4000 + a as u16,
                    &numbered(a as u32 * 1000 + round, 80 + a),
                )
            })
            .collect();
        assert_eq!(
            got.into_iter().map(|(d, _)| d).collect::<Vec<_>>(),
            want,
            "allocation {a}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (a, (client, _, _)) in allocations.iter().enumerate() {
        let mut buf = [0u8; 2048];
        assert!(
            client.sock.try_recv_from(&mut buf).is_err(),
            "allocation {a} got a datagram more"
        );
    }
    counted(
        &relay,
        "natkit_relay_relayed_packets_total{direction=\"peer_to_client\",transport=\"udp\"}",
        60.0 * 20.0,
    )
    .await;
}

#[tokio::test]
async fn over_ipv6_bursts_go_both_ways_whole_and_in_order() {
    let relay = TestRelay::start(RelayOptions {
        listen: vec!["[::1]:0".into()],
        allow_peer: vec!["::1".into()],
        ..Default::default()
    })
    .await;
    let peer = roomy_socket_on("[::1]:0".parse().unwrap());
    let (client, relayed, _) =
        allocation_towards(&relay, "six", 0x4004, peer.local_addr().unwrap()).await;
    assert!(relayed.is_ipv6(), "relayed address {relayed}");
    let sizes: Vec<usize> = (0..300u32)
        .map(|i| if i % 50 == 49 { 33 } else { 500 })
        .collect();
    for (i, &len) in sizes.iter().enumerate() {
        client
            .send(&channel_data(0x4004, &numbered(i as u32, len)))
            .await;
        peer.send_to(&numbered(i as u32, len), relayed)
            .await
            .unwrap();
    }
    let at_peer = recv_n(&peer, sizes.len()).await;
    let at_client = recv_n(&client.sock, sizes.len()).await;
    for (i, &len) in sizes.iter().enumerate() {
        assert_eq!(
            at_peer[i],
            (numbered(i as u32, len), relayed),
            "to the peer, {i}"
        );
        assert_eq!(
            at_client[i],
            (channel_data(0x4004, &numbered(i as u32, len)), relay.addr()),
            "to the client, {i}"
        );
    }
}
