//! Address families (RFC 6156, RFC 8656 section 7.2): REQUESTED-ADDRESS-FAMILY and
//! ADDITIONAL-ADDRESS-FAMILY with EVEN-PORT and RESERVATION-TOKEN as a client reads the answers,
//! and what a dual allocation relays to peers of each family.

use super::*;

impl Bench {
    /// A relay with relayed addresses in both families (203.0.113.1 and 2001:db8::1), peers in
    /// 198.51.100.0/24 and 2001:db8:5::/48 allowed.
    fn dual() -> Self {
        let mut cfg = core_config(SECRET, 2);
        cfg.relay_ips.v6 = Some("2001:db8::1".parse().unwrap());
        cfg.policy = crate::policy::PeerPolicy::new(
            vec![
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8:5::/48".parse().unwrap(),
            ],
            vec![],
            crate::policy::OwnSockets {
                ips: vec![
                    "203.0.113.1".parse().unwrap(),
                    "2001:db8::1".parse().unwrap(),
                ],
                ports: vec![3478, 3479],
                ..Default::default()
            },
        );
        Bench {
            core: RelayCore::new(cfg, (), [7; 32]),
            ..Bench::new()
        }
    }
}

fn channel_data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = wire::channel_data_header(number, payload.len()).to_vec();
    v.extend_from_slice(payload);
    v
}

fn family_attr(typ: AttrType, value: u8) -> Box<dyn Setter> {
    Box::new(wire::RawAttribute(typ, vec![value, 0, 0, 0]))
}

fn requested(value: u8) -> Box<dyn Setter> {
    family_attr(ATTR_REQUESTED_ADDRESS_FAMILY, value)
}

fn additional(value: u8) -> Box<dyn Setter> {
    family_attr(wire::ATTR_ADDITIONAL_ADDRESS_FAMILY, value)
}

fn even_port(reserve: bool) -> Box<dyn Setter> {
    Box::new(wire::RawAttribute(
        ATTR_EVEN_PORT,
        vec![if reserve { 0x80 } else { 0 }],
    ))
}

fn token(t: [u8; 8]) -> Box<dyn Setter> {
    Box::new(wire::RawAttribute(ATTR_RESERVATION_TOKEN, t.to_vec()))
}

/// An Allocate's outcome as a client reads it: the error code, or the relayed addresses' IPs and
/// the ADDRESS-ERROR-CODEs (family value, code).
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Error(u16),
    Relayed(Vec<&'static str>, Vec<(u8, u16)>),
}

fn outcome(m: &Message) -> Got {
    if let Some(c) = code(m) {
        return Got::Error(c);
    }
    let ips = wire::relayed_addresses(m)
        .unwrap()
        .iter()
        .map(|r| match r.ip().to_string().as_str() {
            "203.0.113.1" => "v4",
            "2001:db8::1" => "v6",
            other => panic!("unexpected relayed IP {other}"),
        })
        .collect();
    Got::Relayed(ips, wire::address_error_codes(m))
}

/// REQUESTED-ADDRESS-FAMILY (RFC 6156) and ADDITIONAL-ADDRESS-FAMILY (RFC 8656 section 7.2) with
/// EVEN-PORT and RESERVATION-TOKEN, on a dual-stack relay and on an IPv4-only one, as the
/// client reads the answers.
#[test]
fn address_family_table() {
    use Got::{Error, Relayed};
    let v4 = || Relayed(vec!["v4"], vec![]);
    // (what, dual-stack relay, the client's address, attributes besides REQUESTED-TRANSPORT,
    // outcome)
    type Row = (&'static str, bool, &'static str, Vec<Box<dyn Setter>>, Got);
    let rows: Vec<Row> = vec![
        ("nothing asked: IPv4", true, "198.51.100.2:1", vec![], v4()),
        (
            "nothing asked from IPv6: still IPv4",
            true,
            "[2001:db8:9::2]:1",
            vec![],
            v4(),
        ),
        (
            "IPv4 asked",
            true,
            "198.51.100.2:1",
            vec![requested(1)],
            v4(),
        ),
        (
            "IPv6 asked",
            true,
            "198.51.100.2:1",
            vec![requested(2)],
            Relayed(vec!["v6"], vec![]),
        ),
        (
            "unknown family asked",
            true,
            "198.51.100.2:1",
            vec![requested(3)],
            Error(440),
        ),
        (
            "IPv6 asked of an IPv4 relay",
            false,
            "198.51.100.2:1",
            vec![requested(2)],
            Error(440),
        ),
        (
            "dual",
            true,
            "198.51.100.2:1",
            vec![additional(2)],
            Relayed(vec!["v4", "v6"], vec![]),
        ),
        (
            "dual from an IPv6 client",
            true,
            "[2001:db8:9::2]:1",
            vec![additional(2)],
            Relayed(vec!["v4", "v6"], vec![]),
        ),
        (
            "dual of an IPv4 relay: IPv4 and ADDRESS-ERROR-CODE 440",
            false,
            "198.51.100.2:1",
            vec![additional(2)],
            Relayed(vec!["v4"], vec![(2, 440)]),
        ),
        (
            "additional IPv4",
            true,
            "198.51.100.2:1",
            vec![additional(1)],
            Error(400),
        ),
        (
            "additional unknown",
            true,
            "198.51.100.2:1",
            vec![additional(9)],
            Error(400),
        ),
        (
            "both attributes",
            true,
            "198.51.100.2:1",
            vec![requested(1), additional(2)],
            Error(400),
        ),
        (
            "dual with EVEN-PORT R",
            true,
            "198.51.100.2:1",
            vec![additional(2), even_port(true)],
            Error(400),
        ),
        (
            "dual with EVEN-PORT",
            true,
            "198.51.100.2:1",
            vec![additional(2), even_port(false)],
            Relayed(vec!["v4", "v6"], vec![]),
        ),
        (
            "IPv6 with EVEN-PORT",
            true,
            "198.51.100.2:1",
            vec![requested(2), even_port(false)],
            Relayed(vec!["v6"], vec![]),
        ),
        (
            "token with REQUESTED-ADDRESS-FAMILY",
            true,
            "198.51.100.2:1",
            vec![token([1; 8]), requested(1)],
            Error(400),
        ),
        (
            "token with ADDITIONAL-ADDRESS-FAMILY",
            true,
            "198.51.100.2:1",
            vec![token([1; 8]), additional(2)],
            Error(400),
        ),
        (
            "token with EVEN-PORT",
            true,
            "198.51.100.2:1",
            vec![token([1; 8]), even_port(false)],
            Error(400),
        ),
        (
            "unknown token",
            true,
            "198.51.100.2:1",
            vec![token([1; 8])],
            Error(508),
        ),
    ];
    for (i, (what, dual, client, mut attrs, want)) in rows.into_iter().enumerate() {
        let mut b = if dual { Bench::dual() } else { Bench::new() };
        let f = five(Transport::Udp, client);
        let auth = b.auth(f, &format!("user{i}"), 600);
        attrs.insert(0, udp());
        assert_eq!(
            outcome(&b.request(f, &auth, METHOD_ALLOCATE, attrs)),
            want,
            "{what}"
        );
    }

    // EVEN-PORT with R in IPv6: the reserved port is IPv6, and so is the allocation that takes
    // it with its token (whatever the default family).
    let mut b = Bench::dual();
    let f = five(Transport::Udp, "198.51.100.2:1");
    let auth = b.auth(f, "dora", 600);
    let first = b.request(
        f,
        &auth,
        METHOD_ALLOCATE,
        vec![udp(), requested(2), even_port(true)],
    );
    assert_eq!(outcome(&first), Relayed(vec!["v6"], vec![]));
    let t: [u8; 8] = first
        .get(ATTR_RESERVATION_TOKEN)
        .unwrap()
        .try_into()
        .unwrap();
    let g = five(Transport::Udp, "198.51.100.2:2");
    let auth = b.auth(g, "erin", 600);
    let second = b.request(g, &auth, METHOD_ALLOCATE, vec![udp(), token(t)]);
    assert_eq!(outcome(&second), Relayed(vec!["v6"], vec![]));
    assert_eq!(relayed(&second).port(), relayed(&first).port() + 1);

    // No free port in the second family: the first alone, with ADDRESS-ERROR-CODE 508.
    let mut b = Bench::dual();
    b.no_additional_port = true;
    let auth = b.auth(f, "fay", 600);
    let m = b.request(f, &auth, METHOD_ALLOCATE, vec![udp(), additional(2)]);
    assert_eq!(outcome(&m), Relayed(vec!["v4"], vec![(2, 508)]));

    // A client-family default gives an IPv6 client IPv6.
    let mut cfg = Bench::dual();
    let mut c = core_config(SECRET, 2);
    c.relay_ips.v6 = Some("2001:db8::1".parse().unwrap());
    c.default_family = crate::family::DefaultFamily::Client;
    cfg.core = RelayCore::new(c, (), [7; 32]);
    let g6 = five(Transport::Udp, "[2001:db8:9::2]:1");
    let auth = cfg.auth(g6, "gus", 600);
    assert_eq!(
        outcome(&cfg.allocate(g6, &auth)),
        Relayed(vec!["v6"], vec![])
    );
}

/// A dual allocation relays to peers of each family from that family's relayed address, counts
/// once against the quota, and closes one family at a time.
#[test]
fn dual_allocation_relays_per_family() {
    let mut b = Bench::dual();
    let f = five(Transport::Udp, "198.51.100.2:1");
    let auth = b.auth(f, "hal", 600);
    let ok = b.request(f, &auth, METHOD_ALLOCATE, vec![udp(), additional(2)]);
    let legs = wire::relayed_addresses(&ok).unwrap();
    assert_eq!(legs.len(), 2);
    let (v4_port, v6_port) = (legs[0].port(), legs[1].port());
    let changes = b.core.take_changes();
    assert_eq!(changes.len(), 2, "one view per relayed socket: {changes:?}");
    // Permissions for a peer of each family in one request; a channel to an IPv6 peer.
    let both = vec![peer("198.51.100.7:9"), peer("[2001:db8:5::7]:9")];
    assert_eq!(
        code(&b.request(f, &auth, METHOD_CREATE_PERMISSION, both)),
        None
    );
    let bind = vec![
        Box::new(ChannelNumber(0x4000)) as Box<dyn Setter>,
        peer("[2001:db8:5::8]:9"),
    ];
    assert_eq!(code(&b.request(f, &auth, METHOD_CHANNEL_BIND, bind)), None);
    // A peer outside the policy is still refused in IPv6.
    let refused = b.request(
        f,
        &auth,
        METHOD_CREATE_PERMISSION,
        vec![peer("[fd00::1]:9")],
    );
    assert_eq!(code(&refused), Some(403));
    let send = |to: &str| {
        wire::build(
            stun::agent::TransactionId::new(),
            MessageType::new(METHOD_SEND, CLASS_INDICATION),
            vec![
                peer(to),
                Box::new(wire::RawAttribute(ATTR_DATA, b"hi".to_vec())),
            ],
        )
    };
    let socket_for = |b: &mut Bench, raw: &[u8]| match b.run(Slot::PRIMARY, f, raw, false) {
        Output::ToPeer { socket, peer, .. } => Some((socket, peer)),
        _ => None,
    };
    assert_eq!(
        socket_for(&mut b, &send("198.51.100.7:9")),
        Some((v4_port, "198.51.100.7:9".parse().unwrap()))
    );
    assert_eq!(
        socket_for(&mut b, &send("[2001:db8:5::7]:9")),
        Some((v6_port, "[2001:db8:5::7]:9".parse().unwrap()))
    );
    let mut data = channel_data(0x4000, b"x");
    assert_eq!(
        socket_for(&mut b, &data),
        Some((v6_port, "[2001:db8:5::8]:9".parse().unwrap()))
    );
    // The quota (2) counted the dual allocation once.
    let g = five(Transport::Udp, "198.51.100.2:2");
    let auth_g = b.auth(g, "hal", 600);
    assert_eq!(
        outcome(&b.allocate(g, &auth_g)),
        Got::Relayed(vec!["v4"], vec![])
    );
    b.core.take_changes();

    // Refresh with an IPv6 REQUESTED-ADDRESS-FAMILY and lifetime 0 closes the IPv6 address only.
    let close6 = vec![
        requested(2),
        Box::new(Lifetime(Duration::ZERO)) as Box<dyn Setter>,
    ];
    assert_eq!(code(&b.request(f, &auth, METHOD_REFRESH, close6)), None);
    let changes = b.core.take_changes();
    assert!(
        matches!(&changes[..], [Change::Closed { relayed, .. }, Change::Peers { socket, .. }] if relayed.port() == v6_port && *socket == v4_port),
        "{changes:?}"
    );
    assert!(b.core.has_allocation(&f));
    assert_eq!(socket_for(&mut b, &send("[2001:db8:5::7]:9")), None);
    data = channel_data(0x4000, b"x");
    assert_eq!(socket_for(&mut b, &data), None);
    assert!(socket_for(&mut b, &send("198.51.100.7:9")).is_some());
    let again = b.request(
        f,
        &auth,
        METHOD_CREATE_PERMISSION,
        vec![peer("[2001:db8:5::7]:9")],
    );
    assert_eq!(
        code(&again),
        Some(443),
        "IPv6 peers now mismatch the allocation"
    );
    let refresh6 = vec![requested(2)];
    assert_eq!(
        code(&b.request(f, &auth, METHOD_REFRESH, refresh6)),
        Some(443)
    );
    // The last family with lifetime 0 ends the allocation.
    let close4 = vec![
        requested(1),
        Box::new(Lifetime(Duration::ZERO)) as Box<dyn Setter>,
    ];
    assert_eq!(code(&b.request(f, &auth, METHOD_REFRESH, close4)), None);
    assert!(!b.core.has_allocation(&f));
    let changes = b.core.take_changes();
    assert!(
        matches!(&changes[..], [Change::Ended(e)] if e.relayed.len() == 1),
        "{changes:?}"
    );
}
