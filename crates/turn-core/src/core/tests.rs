//! The core without a socket: every TURN method, its refusals, RFC 5780 over each transport, and
//! time passing, as tables of requests and the answers a client would read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::*;
use crate::credentials::{self, Secret};
use crate::wire::{self, LongTermAuth};

const SECRET: &str = "core-test-secret";
const SERVER: &str = "203.0.113.1:3478";

fn five(transport: Transport, client: &str) -> FiveTuple {
    FiveTuple {
        transport,
        client: client.parse().unwrap(),
        server: SERVER.parse().unwrap(),
    }
}

/// A core and a clock; "ports" are numbers handed out from 50000.
struct Bench {
    core: RelayCore<u16>,
    now: Instant,
    unix: u64,
    next_port: u16,
    /// The shell finds no free port for a dual allocation's second address.
    no_additional_port: bool,
}

impl Bench {
    fn new() -> Self {
        Bench {
            core: RelayCore::new(core_config(SECRET, 2), (), [7; 32]),
            now: Instant::now(),
            unix: 1_900_000_000,
            next_port: 50000,
            no_additional_port: false,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix += d.as_secs();
    }

    /// Runs `raw` through the core; an Open is completed with the next port (or `no_port`).
    fn run(&mut self, slot: Slot, f: FiveTuple, raw: &[u8], no_port: bool) -> Output<u16> {
        match self.core.handle(slot, f, raw, self.now, self.unix) {
            Output::Open(p) => {
                let port = self.next_port;
                self.next_port += 2;
                let (port, next) = match &p.want {
                    PortWant::Reserved { port, .. } => (*port, None),
                    PortWant::EvenPair => (port, Some((port + 1, port + 1))),
                    _ => (port, None),
                };
                let additional = p
                    .additional
                    .filter(|_| !self.no_additional_port)
                    .map(|_| (port + 1000, port + 1000, Box::new(()) as Guard));
                let bound = (!no_port).then(|| Bound {
                    port,
                    socket: port,
                    guard: Box::new(()),
                    next,
                    additional,
                });
                let bytes = self.core.finish_allocate(p, bound, self.now);
                Output::Reply {
                    from: Slot::PRIMARY,
                    bytes,
                }
            }
            other => other,
        }
    }

    fn auth(&mut self, f: FiveTuple, user: &str, ttl: u64) -> LongTermAuth {
        let probe = wire::request(METHOD_ALLOCATE, vec![], None);
        let challenge = reply(self.run(Slot::PRIMARY, f, &probe.raw, false));
        assert_eq!(code(&challenge), Some(401));
        let text = |t| TextAttribute::get_from_as(&challenge, t).unwrap().text;
        let cred = credentials::mint(&Secret::new(SECRET).unwrap(), user, ttl, self.unix).unwrap();
        LongTermAuth {
            username: cred.username,
            password: cred.password,
            realm: text(ATTR_REALM),
            nonce: text(ATTR_NONCE),
        }
    }

    fn request(
        &mut self,
        f: FiveTuple,
        auth: &LongTermAuth,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
    ) -> Message {
        let m = wire::request(method, attrs, Some(auth));
        reply(self.run(Slot::PRIMARY, f, &m.raw, false))
    }

    fn allocate(&mut self, f: FiveTuple, auth: &LongTermAuth) -> Message {
        self.request(f, auth, METHOD_ALLOCATE, vec![udp()])
    }
}

fn reply(out: Output<u16>) -> Message {
    match out {
        Output::Reply { bytes, .. } => decode(&bytes),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn decode(bytes: &[u8]) -> Message {
    let mut m = Message::new();
    m.raw = bytes.to_vec();
    m.decode().unwrap();
    m
}

fn code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

fn udp() -> Box<dyn Setter> {
    Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    })
}

fn peer(addr: &str) -> Box<dyn Setter> {
    let a: SocketAddr = addr.parse().unwrap();
    Box::new(PeerAddress {
        ip: a.ip(),
        port: a.port(),
    })
}

fn relayed(m: &Message) -> SocketAddr {
    let mut r = RelayedAddress::default();
    r.get_from(m).unwrap();
    SocketAddr::new(r.ip, r.port)
}

#[test]
fn allocations_are_keyed_by_the_five_tuple_with_its_transport() {
    let mut b = Bench::new();
    let over_udp = five(Transport::Udp, "198.51.100.9:4000");
    let over_tcp = five(Transport::Tcp, "198.51.100.9:4000");
    let auth = b.auth(over_udp, "alice", 600);
    let first = wire::request(METHOD_ALLOCATE, vec![udp()], Some(&auth));
    let ok = reply(b.run(Slot::PRIMARY, over_udp, &first.raw, false));
    assert_eq!(
        ok.typ,
        MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE)
    );
    assert_eq!(relayed(&ok), "203.0.113.1:50000".parse().unwrap());
    // A retransmission gets the same answer; a new Allocate on the 5-tuple gets 437.
    let again = reply(b.run(Slot::PRIMARY, over_udp, &first.raw, false));
    assert_eq!(relayed(&again), relayed(&ok));
    assert_eq!(code(&b.allocate(over_udp, &auth)), Some(437));
    // The same addresses over TCP are another 5-tuple: a second allocation.
    let tcp_auth = b.auth(over_tcp, "alice", 600);
    let ok_tcp = b.allocate(over_tcp, &tcp_auth);
    assert_eq!(relayed(&ok_tcp), "203.0.113.1:50002".parse().unwrap());
    assert_eq!(b.core.allocation_count(), 2);
    // The user quota (2) counts both transports.
    let third = five(Transport::Tls, "198.51.100.9:4001");
    let a3 = b.auth(third, "alice", 600);
    assert_eq!(code(&b.allocate(third, &a3)), Some(486));
    // Closing the TCP connection ends only its allocation.
    let ended = b.core.close(&over_tcp).unwrap();
    assert_eq!(ended.reason, EndReason::ConnectionClosed);
    assert!(b.core.has_allocation(&over_udp) && !b.core.has_allocation(&over_tcp));
    assert_eq!(b.allocate(third, &a3).typ.class, CLASS_SUCCESS_RESPONSE);
}

#[test]
fn allocate_refusals() {
    let mut b = Bench::new();
    let f = five(Transport::Tcp, "198.51.100.2:5000");
    let auth = b.auth(f, "bob", 600);
    let tcp_relay = Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_TCP,
    });
    let mut wrong = auth.clone();
    wrong.password = "not-the-password".into();
    let mut other_realm = auth.clone();
    other_realm.realm = "elsewhere".into();
    // (what, credentials, attributes, error code)
    type Row<'a> = (&'a str, &'a LongTermAuth, Vec<Box<dyn Setter>>, u16);
    let cases: Vec<Row> = vec![
        ("no REQUESTED-TRANSPORT", &auth, vec![], 400),
        ("RFC 6062 TCP relaying", &auth, vec![tcp_relay], 442),
        ("forged integrity", &wrong, vec![udp()], 401),
        ("another realm", &other_realm, vec![udp()], 401),
    ];
    for (what, a, attrs, want) in cases {
        let got = b.request(f, a, METHOD_ALLOCATE, attrs);
        assert_eq!(code(&got), Some(want), "{what}");
    }
    // An expired credential is challenged again.
    let expired = b.auth(f, "bob", 1);
    b.advance(Duration::from_secs(5));
    let mut fresh = b.auth(f, "bob", 600);
    fresh.username = expired.username.clone();
    fresh.password = expired.password.clone();
    assert_eq!(code(&b.allocate(f, &fresh)), Some(401));
    // No free port: 508, and the quota is given back.
    let m = wire::request(METHOD_ALLOCATE, vec![udp()], Some(&b.auth(f, "bob", 600)));
    assert_eq!(
        code(&reply(b.run(Slot::PRIMARY, f, &m.raw, true))),
        Some(508)
    );
    assert_eq!(b.core.allocation_count(), 0);
    let auth = b.auth(f, "bob", 600);
    assert_eq!(b.allocate(f, &auth).typ.class, CLASS_SUCCESS_RESPONSE);
    let auth = b.auth(five(Transport::Tcp, "198.51.100.2:5001"), "bob", 600);
    assert_eq!(
        b.allocate(five(Transport::Tcp, "198.51.100.2:5001"), &auth)
            .typ
            .class,
        CLASS_SUCCESS_RESPONSE,
        "both quota slots are free again"
    );
}

#[test]
fn methods_on_an_allocation() {
    let mut b = Bench::new();
    let f = five(Transport::Tcp, "198.51.100.3:6000");
    let auth = b.auth(f, "carol", 600);
    b.allocate(f, &auth);
    let channel = |n| Box::new(ChannelNumber(n)) as Box<dyn Setter>;
    let too_many: Vec<Box<dyn Setter>> = (0..17)
        .map(|i| peer(&format!("198.51.100.{}:7", 10 + i)))
        .collect();
    // (what, method, attributes, error code)
    type Row = (&'static str, Method, Vec<Box<dyn Setter>>, Option<u16>);
    let cases: Vec<Row> = vec![
        (
            "permission",
            METHOD_CREATE_PERMISSION,
            vec![peer("198.51.100.7:9")],
            None,
        ),
        (
            "private peer",
            METHOD_CREATE_PERMISSION,
            vec![peer("10.0.0.1:9")],
            Some(403),
        ),
        (
            "the relay itself",
            METHOD_CREATE_PERMISSION,
            vec![peer("203.0.113.1:3478")],
            Some(403),
        ),
        ("no peer", METHOD_CREATE_PERMISSION, vec![], Some(400)),
        ("17 peers", METHOD_CREATE_PERMISSION, too_many, Some(400)),
        (
            "ipv6 peer",
            METHOD_CREATE_PERMISSION,
            vec![peer("[2001:db8::1]:9")],
            Some(443),
        ),
        (
            "bind",
            METHOD_CHANNEL_BIND,
            vec![channel(0x4000), peer("198.51.100.7:9")],
            None,
        ),
        (
            "bad number",
            METHOD_CHANNEL_BIND,
            vec![channel(0x3fff), peer("198.51.100.7:9")],
            Some(400),
        ),
        (
            "number taken",
            METHOD_CHANNEL_BIND,
            vec![channel(0x4000), peer("198.51.100.8:9")],
            Some(400),
        ),
        (
            "refresh",
            METHOD_REFRESH,
            vec![Box::new(Lifetime(Duration::from_secs(300)))],
            None,
        ),
    ];
    for (what, method, attrs, want) in cases {
        let got = b.request(f, &auth, method, attrs);
        assert_eq!(code(&got), want, "{what}");
        if want.is_none() {
            assert_eq!(got.typ.class, CLASS_SUCCESS_RESPONSE, "{what}");
            assert!(got.contains(ATTR_MESSAGE_INTEGRITY), "{what}: signed");
        }
    }
    // ChannelData on the bound channel goes to its peer without a copy; on another, nowhere.
    let data = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];
    match b.run(Slot::PRIMARY, f, &data, false) {
        Output::ToPeer {
            socket,
            peer,
            payload,
        } => {
            assert_eq!((socket, peer), (50000, "198.51.100.7:9".parse().unwrap()));
            assert_eq!(payload, Payload::Range(4..7));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        b.run(Slot::PRIMARY, f, &[0x40, 0x01, 0, 1, 9, 0, 0, 0], false),
        Output::None
    ));
    // A Send indication to a permitted peer carries its DATA; to another, nothing.
    let send = |to: &str| {
        let mut m = Message::new();
        m.build(&[
            Box::new(stun::agent::TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
            peer(to),
            Box::new(turn::proto::data::Data(b"hi".to_vec())),
        ])
        .unwrap();
        m.raw
    };
    match b.run(Slot::PRIMARY, f, &send("198.51.100.7:1"), false) {
        Output::ToPeer { payload, .. } => assert_eq!(payload, Payload::Owned(b"hi".to_vec())),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        b.run(Slot::PRIMARY, f, &send("198.51.100.99:1"), false),
        Output::None
    ));
    // Another user on the same 5-tuple gets 441; Refresh 0 deletes; then 437.
    let mallory = b.auth(f, "mallory", 600);
    assert_eq!(
        code(&b.request(f, &mallory, METHOD_REFRESH, vec![])),
        Some(441)
    );
    let gone = b.request(
        f,
        &auth,
        METHOD_REFRESH,
        vec![Box::new(Lifetime(Duration::ZERO))],
    );
    assert_eq!(gone.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(b.core.allocation_count(), 0);
    assert_eq!(
        code(&b.request(f, &auth, METHOD_REFRESH, vec![])),
        Some(437)
    );
}

#[test]
fn reservations_and_time() {
    let mut b = Bench::new();
    let f = five(Transport::Udp, "198.51.100.4:7000");
    let auth = b.auth(f, "dave", 3600);
    let even_r = Box::new(wire::RawAttribute(ATTR_EVEN_PORT, vec![0x80]));
    let ok = b.request(f, &auth, METHOD_ALLOCATE, vec![udp(), even_r]);
    assert_eq!(relayed(&ok).port(), 50000);
    let token = ok.get(ATTR_RESERVATION_TOKEN).unwrap();
    assert_eq!(b.core.reservation_count(), 1);
    let g = five(Transport::Udp, "198.51.100.4:7002");
    let auth2 = b.auth(g, "erin", 3600);
    let tok = Box::new(wire::RawAttribute(ATTR_RESERVATION_TOKEN, token.clone()));
    let next = b.request(g, &auth2, METHOD_ALLOCATE, vec![udp(), tok]);
    assert_eq!(relayed(&next).port(), 50001, "the reserved odd port");
    let tok = Box::new(wire::RawAttribute(ATTR_RESERVATION_TOKEN, token));
    let h = five(Transport::Udp, "198.51.100.4:7004");
    let auth3 = b.auth(h, "erin", 3600);
    assert_eq!(
        code(&b.request(h, &auth3, METHOD_ALLOCATE, vec![udp(), tok])),
        Some(508)
    );
    // Permissions go after 300 s, allocations after their lifetime (600 s by default).
    b.request(
        f,
        &auth,
        METHOD_CREATE_PERMISSION,
        vec![peer("198.51.100.7:1")],
    );
    // The shell's copy of the allocation (what its peer-to-client path reads) expires alone.
    let Some(Change::Peers { state, .. }) = b.core.take_changes().pop() else {
        panic!("CreatePermission reports the allocation's new state");
    };
    assert!(state.has_permission("198.51.100.7".parse().unwrap(), b.now));
    b.advance(Duration::from_secs(301));
    assert!(b.core.expire(b.now).is_empty());
    assert!(!state.has_permission("198.51.100.7".parse().unwrap(), b.now));
    b.advance(Duration::from_secs(300));
    let ended = b.core.expire(b.now);
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|e| e.reason == EndReason::Expired));
    assert_eq!(b.core.allocation_count(), 0);
}

#[test]
fn binding_over_each_transport() {
    let mut b = Bench::new();
    let change_port = Box::new(wire::RawAttribute(
        ATTR_CHANGE_REQUEST,
        crate::rfc5780::ChangeRequest {
            change_ip: false,
            change_port: true,
        }
        .encode()
        .to_vec(),
    ));
    let plain = wire::request(METHOD_BINDING, vec![], None).raw;
    let changed = wire::request(METHOD_BINDING, vec![change_port], None).raw;
    let origin = |m: &Message| {
        let mut a = stun::addr::MappedAddress::default();
        a.get_from_as(m, ATTR_RESPONSE_ORIGIN).unwrap();
        SocketAddr::new(a.ip, a.port)
    };
    let cases = [
        (Transport::Udp, &plain, Slot::PRIMARY, None),
        (Transport::Udp, &changed, Slot::ALT_PORT, None),
        (Transport::Tcp, &plain, Slot::PRIMARY, None),
        (Transport::Tls, &changed, Slot::PRIMARY, Some(420)),
    ];
    for (t, raw, want_from, want_code) in cases {
        let f = five(t, "198.51.100.5:8000");
        let (from, bytes) = match b.run(Slot::PRIMARY, f, raw, false) {
            Output::Reply { from, bytes } => (from, bytes),
            other => panic!("{other:?}"),
        };
        let m = decode(&bytes);
        assert_eq!((from, code(&m)), (want_from, want_code), "{t:?}");
        if want_code.is_none() {
            let mut x = XorMappedAddress::default();
            x.get_from(&m).unwrap();
            assert_eq!(SocketAddr::new(x.ip, x.port), f.client, "{t:?}");
            let o = origin(&m);
            assert_eq!(
                o.port(),
                if from == Slot::ALT_PORT { 3479 } else { 3478 },
                "{t:?}"
            );
            assert!(!m.contains(ATTR_SOFTWARE));
        }
    }
}

#[test]
fn draining_refuses_new_allocations_and_keeps_the_old_ones() {
    let mut b = Bench::new();
    let old = five(Transport::Udp, "198.51.100.6:1000");
    let auth = b.auth(old, "old", 600);
    let first = wire::request(METHOD_ALLOCATE, vec![udp()], Some(&auth));
    assert_eq!(
        reply(b.run(Slot::PRIMARY, old, &first.raw, false))
            .typ
            .class,
        CLASS_SUCCESS_RESPONSE
    );
    let alternate: SocketAddr = "192.0.2.50:3478".parse().unwrap();
    b.core.start_drain(Drain {
        alternate: Some(alternate),
    });
    // A new client is sent to the alternate relay.
    let new = five(Transport::Tcp, "198.51.100.6:2000");
    let new_auth = b.auth(new, "new", 600);
    let refused = b.allocate(new, &new_auth);
    assert_eq!(code(&refused), Some(300));
    let mut alt = stun::addr::MappedAddress::default();
    alt.get_from_as(&refused, ATTR_ALTERNATE_SERVER).unwrap();
    assert_eq!(SocketAddr::new(alt.ip, alt.port), alternate);
    assert!(refused.contains(ATTR_MESSAGE_INTEGRITY), "signed");
    // The old allocation: its retransmitted Allocate, Refresh and permissions go on.
    assert_eq!(
        reply(b.run(Slot::PRIMARY, old, &first.raw, false))
            .typ
            .class,
        CLASS_SUCCESS_RESPONSE
    );
    let r = b.request(
        old,
        &auth,
        METHOD_CREATE_PERMISSION,
        vec![peer("198.51.100.7:9")],
    );
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    // Without an alternate: 486.
    b.core.start_drain(Drain { alternate: None });
    let late = five(Transport::Udp, "198.51.100.6:3000");
    let late_auth = b.auth(late, "late", 600);
    assert_eq!(code(&b.allocate(late, &late_auth)), Some(486));
    assert_eq!(b.core.allocation_count(), 1);
}

/// What each message reports to the shell: a change wherever the relayed path must follow.
#[test]
fn messages_report_what_they_changed() {
    let mut b = Bench::new();
    let f = five(Transport::Udp, "198.51.100.20:6000");
    let auth = b.auth(f, "frank", 600);
    assert!(
        b.core.take_changes().is_empty(),
        "a challenge changes nothing"
    );
    let ok = b.allocate(f, &auth);
    let changes = b.core.take_changes();
    assert!(
        matches!(&changes[..], [Change::Peers { five, socket: 50000, relayed: r, .. }] if *five == f && *r == relayed(&ok)),
        "Allocate: the new allocation, empty: {changes:?}"
    );
    let lifetime =
        |s: u32| -> Box<dyn Setter> { Box::new(Lifetime(Duration::from_secs(s.into()))) };
    // (what, method, attributes, the answer's error code, how many changes, what the last says)
    type Check = fn(&Change<u16>, Instant) -> bool;
    let allowed: Check = |c, now| match c {
        Change::Peers { state, .. } => state.has_permission("198.51.100.30".parse().unwrap(), now),
        _ => false,
    };
    let bound: Check = |c, now| match c {
        Change::Peers { state, .. } => state.channel_peer(0x4001, now).is_some(),
        _ => false,
    };
    let any: Check = |_, _| true;
    type Row = (
        &'static str,
        Method,
        Vec<Box<dyn Setter>>,
        Option<u16>,
        usize,
        Check,
    );
    let rows: Vec<Row> = vec![
        (
            "permission",
            METHOD_CREATE_PERMISSION,
            vec![peer("198.51.100.30:1")],
            None,
            1,
            allowed,
        ),
        (
            "refused peer (403)",
            METHOD_CREATE_PERMISSION,
            vec![peer("127.0.0.1:1")],
            Some(403),
            0,
            any,
        ),
        (
            "no peer (400)",
            METHOD_CREATE_PERMISSION,
            vec![],
            Some(400),
            0,
            any,
        ),
        (
            "channel",
            METHOD_CHANNEL_BIND,
            vec![Box::new(ChannelNumber(0x4001)), peer("198.51.100.31:9")],
            None,
            1,
            bound,
        ),
        (
            "refresh",
            METHOD_REFRESH,
            vec![lifetime(300)],
            None,
            1,
            bound,
        ),
    ];
    for (what, method, attrs, answer, n, check) in rows {
        assert_eq!(code(&b.request(f, &auth, method, attrs)), answer, "{what}");
        let changes = b.core.take_changes();
        assert_eq!(changes.len(), n, "{what}: {changes:?}");
        if let Some(last) = changes.last() {
            assert!(check(last, b.now), "{what}: {last:?}");
        }
    }
    // Relaying changes nothing.
    let send = wire::build(
        stun::agent::TransactionId::new(),
        MessageType::new(METHOD_SEND, CLASS_INDICATION),
        vec![
            peer("198.51.100.30:1"),
            Box::new(wire::RawAttribute(ATTR_DATA, b"hi".to_vec())),
        ],
    );
    assert!(matches!(
        b.run(Slot::PRIMARY, f, &send, false),
        Output::ToPeer { .. }
    ));
    assert!(b.core.take_changes().is_empty());
    b.request(f, &auth, METHOD_REFRESH, vec![lifetime(0)]);
    let changes = b.core.take_changes();
    assert!(
        matches!(&changes[..], [Change::Ended(e)] if e.five == f && e.reason == EndReason::Deleted),
        "Refresh 0: {changes:?}"
    );
}

mod family;
