//! A dual-stack relay on loopback (127.0.0.1 and ::1): one listener per family, relayed
//! addresses per family, and the RFC 8656 dual allocation (ADDITIONAL-ADDRESS-FAMILY) answered
//! with two relayed addresses that both relay, as a client on either family sees it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use natkit_stun_turn::wire::{self, ATTR_ADDITIONAL_ADDRESS_FAMILY};
use stun::attributes::*;
use stun::message::*;
use tokio::net::UdpSocket;

fn family_attr(typ: AttrType, family: u8) -> Box<dyn Setter> {
    Box::new(wire::RawAttribute(typ, vec![family, 0, 0, 0]))
}

async fn dual_relay() -> TestRelay {
    TestRelay::with(|o| {
        o.listen = vec!["127.0.0.1:0".into(), "[::1]:0".into()];
        o.allow_peer = vec!["127.0.0.1".into(), "::1".into()];
    })
    .await
}

/// Allocates on `client` with `attrs` besides REQUESTED-TRANSPORT; the answer and the auth.
async fn allocate_with(
    client: &StunClient,
    user: &str,
    attrs: Vec<Box<dyn Setter>>,
) -> (Message, Auth) {
    let auth = client.challenge(&mint(SECRET, user, 600)).await;
    let mut all = vec![udp()];
    all.extend(attrs);
    let r = client.call(METHOD_ALLOCATE, all, Some(&auth)).await;
    (r, auth)
}

async fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("a datagram within 3 s")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

fn send_indication(to: SocketAddr, data: &[u8]) -> Vec<u8> {
    wire::build(
        stun::agent::TransactionId::new(),
        MessageType::new(METHOD_SEND, CLASS_INDICATION),
        vec![
            xor_peer(to),
            Box::new(wire::RawAttribute(ATTR_DATA, data.to_vec())),
        ],
    )
}

/// What the client got from the relay: (peer, payload) of a Data indication or a ChannelData
/// (then the peer is `None` and the channel number is given).
async fn from_relay(client: &StunClient) -> (Option<SocketAddr>, Option<u16>, Vec<u8>) {
    let (bytes, _) = recv(&client.sock).await;
    if let Some((number, payload)) = wire::parse_channel_data(&bytes) {
        return (None, Some(number), payload.to_vec());
    }
    let mut m = Message::new();
    m.raw = bytes;
    m.decode().unwrap();
    let peer = wire::peer_addresses(&m).unwrap()[0];
    (Some(peer), None, m.get(ATTR_DATA).unwrap())
}

#[tokio::test]
async fn a_dual_allocation_relays_to_peers_of_both_families() {
    let relay = dual_relay().await;
    let second = relay.addrs.second.clone().expect("a second family");
    assert!(relay.addr().is_ipv4() && second.primary.is_ipv6());

    // An IPv4 client asks for both families: two XOR-RELAYED-ADDRESS, IPv4 first.
    let client = StunClient::new(relay.addr()).await;
    let (ok, auth) = allocate_with(
        &client,
        "dual",
        vec![family_attr(ATTR_ADDITIONAL_ADDRESS_FAMILY, 2)],
    )
    .await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{ok:?}");
    let relayed = wire::relayed_addresses(&ok).unwrap();
    assert_eq!(relayed.len(), 2, "{relayed:?}");
    assert_eq!(relayed[0].ip(), relay.addrs.relay_ip);
    assert_eq!(relayed[1].ip(), second.relay_ip);
    assert!(wire::address_error_codes(&ok).is_empty());

    let peer4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer6 = UdpSocket::bind("[::1]:0").await.unwrap();
    let (p4, p6) = (peer4.local_addr().unwrap(), peer6.local_addr().unwrap());
    let r = client
        .call(
            METHOD_CREATE_PERMISSION,
            vec![xor_peer(p4), xor_peer(p6)],
            Some(&auth),
        )
        .await;
    assert_eq!(error_code(&r), None, "{r:?}");

    // Send indications leave from the relayed address of the peer's family.
    client.send(&send_indication(p4, b"to v4")).await;
    client.send(&send_indication(p6, b"to v6")).await;
    let (got4, from4) = recv(&peer4).await;
    let (got6, from6) = recv(&peer6).await;
    assert_eq!((got4.as_slice(), from4), (&b"to v4"[..], relayed[0]));
    assert_eq!((got6.as_slice(), from6), (&b"to v6"[..], relayed[1]));

    // Each peer answers its relayed address; the client hears both, named by peer.
    peer4.send_to(b"from v4", relayed[0]).await.unwrap();
    let (peer, _, data) = from_relay(&client).await;
    assert_eq!((peer, data.as_slice()), (Some(p4), &b"from v4"[..]));
    peer6.send_to(b"from v6", relayed[1]).await.unwrap();
    let (peer, _, data) = from_relay(&client).await;
    assert_eq!((peer, data.as_slice()), (Some(p6), &b"from v6"[..]));

    // A channel to the IPv6 peer carries ChannelData both ways.
    let bind = vec![
        Box::new(turn::proto::channum::ChannelNumber(0x4001)) as Box<dyn Setter>,
        xor_peer(p6),
    ];
    let r = client.call(METHOD_CHANNEL_BIND, bind, Some(&auth)).await;
    assert_eq!(error_code(&r), None, "{r:?}");
    let mut frame = wire::channel_data_header(0x4001, 5).to_vec();
    frame.extend_from_slice(b"chan6");
    client.send(&frame).await;
    let (got, from) = recv(&peer6).await;
    assert_eq!((got.as_slice(), from), (&b"chan6"[..], relayed[1]));
    peer6.send_to(b"back6", relayed[1]).await.unwrap();
    let (_, number, data) = from_relay(&client).await;
    assert_eq!((number, data.as_slice()), (Some(0x4001), &b"back6"[..]));

    // Counted once as an allocation, once per family as relayed addresses, traffic by family.
    assert_eq!(relay.metric("natkit_relay_allocations_active"), 1.0);
    assert_eq!(relay.metric("natkit_relay_dual_allocations_total"), 1.0);
    assert_eq!(
        relay.metric("natkit_relay_relayed_addresses_active{family=\"ipv4\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_relayed_addresses_active{family=\"ipv6\"}"),
        1.0
    );
    let sent6 = relay
        .metric("natkit_relay_relayed_packets_total{direction=\"client_to_peer\",family=\"ipv6\"}");
    let back6 = relay
        .metric("natkit_relay_relayed_packets_total{direction=\"peer_to_client\",family=\"ipv6\"}");
    let sent4 = relay
        .metric("natkit_relay_relayed_packets_total{direction=\"client_to_peer\",family=\"ipv4\"}");
    assert_eq!((sent4, sent6, back6), (1.0, 2.0, 2.0));

    // The client closes the IPv6 address alone; the IPv4 one goes on.
    let close6 = vec![family_attr(ATTR_REQUESTED_ADDRESS_FAMILY, 2), lifetime(0)];
    let r = client.call(METHOD_REFRESH, close6, Some(&auth)).await;
    assert_eq!(error_code(&r), None, "{r:?}");
    assert_eq!(
        relay.metric("natkit_relay_relayed_addresses_active{family=\"ipv6\"}"),
        0.0
    );
    assert_eq!(relay.metric("natkit_relay_allocations_active"), 1.0);
    peer6.send_to(b"late", relayed[1]).await.unwrap();
    peer4.send_to(b"still", relayed[0]).await.unwrap();
    let (peer, _, data) = from_relay(&client).await;
    assert_eq!(
        (peer, data.as_slice()),
        (Some(p4), &b"still"[..]),
        "nothing from the closed IPv6 address"
    );
    let r = client.permit(&p6.to_string(), &auth).await;
    assert_eq!(error_code(&r), Some(443));
    relay.shutdown().await;
}

#[tokio::test]
async fn each_family_is_served_on_its_own_listener() {
    let relay = dual_relay().await;
    let second = relay.addrs.second.clone().unwrap();
    // A client over IPv6: Binding answers name the IPv6 socket; with no family asked it gets the
    // RFC's IPv4 relayed address, asked for IPv6 it gets IPv6.
    let client6 = StunClient::new(second.primary).await;
    let b = client6.call(METHOD_BINDING, vec![], None).await;
    let mut mapped = stun::xoraddr::XorMappedAddress::default();
    mapped.get_from(&b).unwrap();
    assert_eq!(SocketAddr::new(mapped.ip, mapped.port), client6.local());
    let (none_asked, _) = allocate_with(&client6, "v6a", vec![]).await;
    assert_eq!(
        wire::relayed_addresses(&none_asked).unwrap()[0].ip(),
        relay.addrs.relay_ip
    );
    let other6 = StunClient::new(second.primary).await;
    let (asked, _) = allocate_with(
        &other6,
        "v6b",
        vec![family_attr(ATTR_REQUESTED_ADDRESS_FAMILY, 2)],
    )
    .await;
    assert_eq!(
        wire::relayed_addresses(&asked).unwrap(),
        vec![SocketAddr::new(
            second.relay_ip,
            wire::relayed_addresses(&asked).unwrap()[0].port()
        )]
    );
    assert!(wire::relayed_addresses(&asked).unwrap()[0].is_ipv6());
    // Over IPv6 TCP too.
    assert!(second.tcp.is_some());
    relay.shutdown().await;

    // default_family = client: an IPv6 client gets IPv6 when it asks for nothing.
    let relay = TestRelay::with(|o| {
        o.listen = vec!["127.0.0.1:0".into(), "[::1]:0".into()];
        o.default_family = Some("client".into());
    })
    .await;
    let client6 = StunClient::new(relay.addrs.second.as_ref().unwrap().primary).await;
    let (r, _) = allocate_with(&client6, "v6c", vec![]).await;
    assert!(wire::relayed_addresses(&r).unwrap()[0].is_ipv6(), "{r:?}");
    let client4 = StunClient::new(relay.addr()).await;
    let (r, _) = allocate_with(&client4, "v4c", vec![]).await;
    assert!(wire::relayed_addresses(&r).unwrap()[0].is_ipv4(), "{r:?}");
    relay.shutdown().await;
}

#[tokio::test]
async fn an_ipv4_relay_answers_a_dual_allocation_with_its_one_family() {
    let relay = TestRelay::start(Default::default()).await;
    assert!(relay.addrs.second.is_none());
    let client = StunClient::new(relay.addr()).await;
    let (r, _) = allocate_with(
        &client,
        "single",
        vec![family_attr(ATTR_ADDITIONAL_ADDRESS_FAMILY, 2)],
    )
    .await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{r:?}");
    assert_eq!(wire::relayed_addresses(&r).unwrap().len(), 1);
    assert_eq!(wire::address_error_codes(&r), vec![(2, 440)]);
    let other = StunClient::new(relay.addr()).await;
    let (r, _) = allocate_with(
        &other,
        "single6",
        vec![family_attr(ATTR_REQUESTED_ADDRESS_FAMILY, 2)],
    )
    .await;
    assert_eq!(error_code(&r), Some(440));
    relay.shutdown().await;
}
