//! Bad input never takes the relay down: every malformed datagram is answered or dropped as the
//! RFCs say, and the relay keeps serving the next client.

mod common;

use std::time::Duration;

use common::*;
use natkit_stun_turn::config::RelayOptions;
use rand::{Rng, SeedableRng};
use stun::attributes::*;
use stun::message::*;
use stun::uattrs::UnknownAttributes;
use tokio::net::UdpSocket;

/// Sends raw bytes and returns whatever comes back within 300 ms.
async fn poke(relay: &TestRelay, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(bytes, relay.addr()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(Duration::from_millis(300), s.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// The relay still answers a Binding request and still allocates.
async fn still_serving(relay: &TestRelay) {
    let c = StunClient::new(relay.addr()).await;
    let r = c.call(METHOD_BINDING, vec![], None).await;
    assert_eq!(r.typ, BINDING_SUCCESS);
    c.allocated("after-abuse").await;
}

fn binding_bytes() -> Vec<u8> {
    request(METHOD_BINDING, vec![], None).raw
}

#[tokio::test]
async fn garbage_is_dropped_silently() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let mut wrong_cookie = binding_bytes();
    wrong_cookie[4] ^= 0xff;
    let mut truncated = binding_bytes();
    truncated[3] = 40; // claims 40 bytes of attributes, carries none
    let mut attr_overrun = binding_bytes();
    attr_overrun.extend_from_slice(&[0x80, 0x22, 0x00, 0xff, b'x']); // SOFTWARE claiming 255 bytes
    attr_overrun[3] = 5;
    let mut bad_fingerprint = request(
        METHOD_BINDING,
        vec![Box::new(stun::fingerprint::FINGERPRINT)],
        None,
    )
    .raw;
    let last = bad_fingerprint.len() - 1;
    bad_fingerprint[last] ^= 1;
    let response_class = {
        let mut m = Message::new();
        m.build(&[
            Box::new(stun::agent::TransactionId::new()),
            Box::new(BINDING_SUCCESS),
        ])
        .unwrap();
        m.raw
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("one byte", vec![0]),
        ("header only, 19 bytes", binding_bytes()[..19].to_vec()),
        ("wrong magic cookie", wrong_cookie),
        ("truncated attributes", truncated),
        ("attribute longer than message", attr_overrun),
        ("bad fingerprint", bad_fingerprint),
        ("a response sent to the server", response_class),
        (
            "ChannelData without allocation",
            vec![0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4],
        ),
        ("truncated ChannelData", vec![0x40, 0x00, 0x00, 0x40, 1]),
        ("oversized junk, 65000 bytes", vec![0xAB; 65000]),
        ("RTP-looking junk", vec![0x80; 200]),
    ];
    for (what, bytes) in &cases {
        assert_eq!(
            poke(&relay, bytes).await,
            None,
            "{what} must be dropped without answer"
        );
    }
    assert!(relay.metric("natkit_relay_dropped_packets_total{reason=\"not_stun\"}") >= 4.0);
    assert!(relay.metric("natkit_relay_dropped_packets_total{reason=\"malformed\"}") >= 3.0);
    assert_eq!(
        relay.metric("natkit_relay_dropped_packets_total{reason=\"bad_fingerprint\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_dropped_packets_total{reason=\"no_allocation\"}"),
        1.0
    );
    still_serving(&relay).await;
}

#[tokio::test]
async fn unknown_comprehension_required_attribute_gets_420() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    for method in [METHOD_BINDING, METHOD_ALLOCATE] {
        let mut m = request(method, vec![], None);
        m.add(AttrType(0x0099), b"what is this");
        m.add(AttrType(0x8099), b"optional, ignored");
        let r = c.transact(&m).await;
        assert_eq!(error_code(&r), Some(420), "{method:?}");
        let mut unknown = UnknownAttributes(vec![]);
        stun::message::Getter::get_from(&mut unknown, &r).unwrap();
        assert_eq!(
            unknown.0,
            vec![AttrType(0x0099)],
            "only the required one is listed"
        );
    }
    // Comprehension-optional alone is fine.
    let mut m = request(METHOD_BINDING, vec![], None);
    m.add(AttrType(0x8099), b"optional");
    assert_eq!(c.transact(&m).await.typ, BINDING_SUCCESS);
    // An unknown request method is a 400.
    let mut unknown_method = request(METHOD_BINDING, vec![], None);
    unknown_method.raw[1] = 0x0f; // request class, method 0x00f
    unknown_method.decode().unwrap();
    let r = c.transact(&unknown_method).await;
    assert_eq!(error_code(&r), Some(400));
    still_serving(&relay).await;
}

#[tokio::test]
async fn large_valid_request_is_answered_not_truncated() {
    // The turn crate's server reads into 1500 bytes; natkit reads whole datagrams.
    let relay = TestRelay::start(RelayOptions::default()).await;
    let c = StunClient::new(relay.addr()).await;
    let mut m = request(METHOD_BINDING, vec![], None);
    m.add(ATTR_SOFTWARE, &vec![b'a'; 4000]);
    assert_eq!(c.transact(&m).await.typ, BINDING_SUCCESS);
}

#[tokio::test]
async fn fuzzed_requests_never_stop_the_relay() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    // Seeds of the fuzz: an authenticated Allocate, a CreatePermission, a ChannelBind, a Send
    // indication, a ChannelData and a Binding with CHANGE-REQUEST.
    let c = StunClient::new(relay.addr()).await;
    let (_, auth) = c.allocate(&mint(SECRET, "fuzz", 600)).await;
    let seeds: Vec<Vec<u8>> = vec![
        request(METHOD_ALLOCATE, vec![udp()], Some(&auth)).raw,
        request(
            METHOD_CREATE_PERMISSION,
            vec![peer("198.51.100.1:9")],
            Some(&auth),
        )
        .raw,
        request(
            METHOD_CHANNEL_BIND,
            vec![
                Box::new(turn::proto::channum::ChannelNumber(0x4001)),
                peer("198.51.100.1:9"),
            ],
            Some(&auth),
        )
        .raw,
        {
            let mut m = Message::new();
            m.build(&[
                Box::new(stun::agent::TransactionId::new()),
                Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
                peer("198.51.100.1:9"),
                Box::new(turn::proto::data::Data(b"payload".to_vec())),
            ])
            .unwrap();
            m.raw
        },
        vec![0x40, 0x01, 0x00, 0x03, 1, 2, 3],
        {
            let mut m = request(METHOD_BINDING, vec![], None);
            m.add(ATTR_CHANGE_REQUEST, &[0, 0, 0, 6]);
            m.raw
        },
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..20_000u32 {
        let mut b = seeds[i as usize % seeds.len()].clone();
        match rng.random_range(0..4) {
            0 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..b.len());
                    b[at] ^= 1 << rng.random_range(0..8);
                }
            }
            1 => b.truncate(rng.random_range(0..b.len())),
            2 => {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
                b.extend((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()));
            }
            _ => {
                b = (0..rng.random_range(0..600))
                    .map(|_| rng.random::<u8>())
                    .collect()
            }
        }
        sock.send_to(&b, relay.addr()).await.unwrap();
        if i % 500 == 0 {
            // Let the relay drain its socket buffer so the fuzz reaches the handler, not the kernel.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    still_serving(&relay).await;
}
