use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::allocation::{AllocState, CHANNEL_LIFETIME, PERMISSION_LIFETIME};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn five(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: client.parse().unwrap(),
        server: "192.0.2.1:3478".parse().unwrap(),
    }
}

fn offload() -> Offload {
    Offload::new(
        "10.0.0.5:3478".parse().unwrap(),
        "10.0.0.5".parse().unwrap(),
    )
}

fn be(ip: &str) -> u32 {
    u32::from_ne_bytes(ip.parse::<std::net::Ipv4Addr>().unwrap().octets())
}

#[test]
fn bindings_follow_channel_permission_and_allocation_expiry() {
    let t0 = Instant::now();
    let p1: SocketAddr = "198.51.100.1:1000".parse().unwrap();
    let p2: SocketAddr = "198.51.100.2:2000".parse().unwrap();
    let mut a = AllocState::new(secs(600), t0);
    assert_eq!(a.kernel_bindings(t0), vec![]);
    a.bind_channel(0x4000, p1, t0).unwrap();
    // A permission alone gives no kernel entry (Data indications stay in userspace).
    a.add_permission(p2.ip(), t0).unwrap();
    let b = a.kernel_bindings(t0);
    assert_eq!(
        b,
        vec![KernelBinding {
            channel: 0x4000,
            peer: p1,
            to_peer_until: t0 + CHANNEL_LIFETIME,
            to_client_until: Some(t0 + PERMISSION_LIFETIME),
        }]
    );
    let later = t0 + PERMISSION_LIFETIME + secs(1);
    let b = a.kernel_bindings(later);
    assert_eq!(b[0].to_client_until, None, "the permission has expired");
    assert_eq!(
        b[0].to_peer_until,
        t0 + CHANNEL_LIFETIME,
        "the channel has not"
    );
    // The allocation ending first caps both directions; once it has ended, nothing.
    a.refresh(secs(60), t0);
    let b = a.kernel_bindings(t0);
    assert_eq!(b[0].to_peer_until, t0 + secs(60));
    assert_eq!(b[0].to_client_until, Some(t0 + secs(60)));
    assert_eq!(a.kernel_bindings(t0 + secs(60)), vec![]);
}

#[test]
fn monotonic_conversion_keeps_offsets_and_saturates() {
    let at = Instant::now();
    let m = Mono {
        at,
        ns: 5_000_000_000,
    };
    let cases = [
        (at, 5_000_000_000),
        (at + Duration::from_millis(1500), 6_500_000_000),
        (at - Duration::from_millis(250), 4_750_000_000),
    ];
    for (t, want) in cases {
        assert_eq!(m.ns(t), want);
    }
    let early = Mono { at, ns: 10 };
    assert_eq!(early.ns(at - secs(1)), 0);
}

#[test]
fn keys_and_values_are_in_network_order_as_the_packet_has_them() {
    let mut o = offload();
    let f = five("203.0.113.7:40000");
    let t0 = Instant::now();
    let mono = Mono { at: t0, ns: 1_000 };
    let b = [KernelBinding {
        channel: 0x4001,
        peer: "198.51.100.9:5004".parse().unwrap(),
        to_peer_until: t0 + secs(2),
        to_client_until: Some(t0 + secs(1)),
    }];
    let ops = o.sync(&f, Some((50_000, &b)), mono);
    let in_key = InKey {
        client_ip: be("203.0.113.7"),
        server_ip: be("10.0.0.5"),
        client_port: 40000u16.to_be(),
        server_port: 3478u16.to_be(),
        channel: 0x4001u16.to_be(),
        pad: 0,
    };
    let out_key = OutKey {
        peer_ip: be("198.51.100.9"),
        relay_ip: be("10.0.0.5"),
        peer_port: 5004u16.to_be(),
        relay_port: 50_000u16.to_be(),
    };
    assert_eq!(
        ops,
        vec![
            MapOp::PutIn(
                in_key,
                InVal {
                    relay_ip: be("10.0.0.5"),
                    peer_ip: be("198.51.100.9"),
                    relay_port: 50_000u16.to_be(),
                    peer_port: 5004u16.to_be(),
                    pad: 0,
                    expires_ns: 2_000_001_000,
                }
            ),
            MapOp::PutOut(
                out_key,
                OutVal {
                    to: in_key,
                    expires_ns: 1_000_001_000,
                }
            ),
        ]
    );
    // The layouts the C program declares.
    assert_eq!(std::mem::size_of::<InKey>(), 16);
    assert_eq!(std::mem::size_of::<InVal>(), 24);
    assert_eq!(std::mem::size_of::<OutKey>(), 12);
    assert_eq!(std::mem::size_of::<OutVal>(), 24);
    assert_eq!(std::mem::size_of::<Counters>(), 8 * COUNTERS);
}

/// What a sequence of allocation states asks of the maps, as (kind, channel or peer port).
#[test]
fn every_change_is_a_small_diff_and_an_ended_allocation_leaves_nothing() {
    let t0 = Instant::now();
    let mono = Mono { at: t0, ns: 0 };
    let p = |port: u16| -> SocketAddr { SocketAddr::new("198.51.100.1".parse().unwrap(), port) };
    let at = |refreshed: u64| {
        move |channel: u16, port: u16, out: bool| KernelBinding {
            channel,
            peer: p(port),
            to_peer_until: t0 + secs(600 + refreshed),
            to_client_until: out.then_some(t0 + secs(300 + refreshed)),
        }
    };
    let (first, bind) = (at(0), at(100));
    let short = |ops: &[MapOp]| -> Vec<(&'static str, u16)> {
        ops.iter()
            .map(|op| match op {
                MapOp::PutIn(k, _) => ("put_in", u16::from_be(k.channel)),
                MapOp::DelIn(k) => ("del_in", u16::from_be(k.channel)),
                MapOp::PutOut(k, _) => ("put_out", u16::from_be(k.peer_port)),
                MapOp::DelOut(k) => ("del_out", u16::from_be(k.peer_port)),
            })
            .collect()
    };
    let mut o = offload();
    let f = five("203.0.113.7:40000");
    // (bindings reported, map writes, entries)
    type Step = (Option<Vec<KernelBinding>>, Vec<(&'static str, u16)>, usize);
    let steps: Vec<Step> = vec![
        // (the allocation's bindings, the map changes, entries installed)
        (
            Some(vec![first(0x4000, 1000, true)]),
            vec![("put_in", 0x4000), ("put_out", 1000)],
            2,
        ),
        // The same state again (a retransmission, a request the core refused): nothing written.
        (Some(vec![first(0x4000, 1000, true)]), vec![], 2),
        // A refresh rewrites both (new expiry).
        (
            Some(vec![bind(0x4000, 1000, true)]),
            vec![("put_in", 0x4000), ("put_out", 1000)],
            2,
        ),
        // The permission lapsed: the peer-to-client entry goes, the other stays as written.
        (
            Some(vec![bind(0x4000, 1000, false)]),
            vec![("del_out", 1000)],
            1,
        ),
        // A second channel, to another peer port.
        (
            Some(vec![bind(0x4000, 1000, false), bind(0x4001, 2000, true)]),
            vec![("put_in", 0x4001), ("put_out", 2000)],
            3,
        ),
        // The first channel expired; the peer rebinds it to another number after that.
        (
            Some(vec![bind(0x4001, 2000, true), bind(0x4002, 1000, true)]),
            vec![("put_in", 0x4002), ("put_out", 1000), ("del_in", 0x4000)],
            4,
        ),
        // Deleted (Refresh 0), expired or revoked: everything goes.
        (
            None,
            vec![
                ("del_in", 0x4001),
                ("del_out", 2000),
                ("del_in", 0x4002),
                ("del_out", 1000),
            ],
            0,
        ),
        (None, vec![], 0),
    ];
    for (i, (bindings, want, entries)) in steps.into_iter().enumerate() {
        let ops = o.sync(&f, bindings.as_deref().map(|b| (50_000, b)), mono);
        assert_eq!(short(&ops), want, "step {i}");
        assert_eq!(o.entries(), entries, "step {i}");
    }
}

#[test]
fn only_udp_over_ipv4_is_offloaded_and_expired_entries_are_pruned() {
    let t0 = Instant::now();
    let mono = Mono { at: t0, ns: 0 };
    let b = [KernelBinding {
        channel: 0x4000,
        peer: "198.51.100.1:1000".parse().unwrap(),
        to_peer_until: t0 + secs(10),
        to_client_until: Some(t0 + secs(5)),
    }];
    let mut o = offload();
    let mut tcp = five("203.0.113.7:40000");
    tcp.transport = Transport::Tcp;
    assert_eq!(o.sync(&tcp, Some((50_000, &b)), mono), vec![]);
    let v6 = five("[2001:db8::7]:40000");
    assert_eq!(o.sync(&v6, Some((50_000, &b)), mono), vec![]);
    // IPv6 peers of an IPv4 client stay in userspace too.
    let b6 = [KernelBinding {
        peer: SocketAddr::new("2001:db8::9".parse::<IpAddr>().unwrap(), 1000),
        ..b[0]
    }];
    let f = five("203.0.113.7:40000");
    assert_eq!(o.sync(&f, Some((50_000, &b6)), mono), vec![]);
    assert_eq!(o.entries(), 0);

    assert_eq!(o.sync(&f, Some((50_000, &b)), mono).len(), 2);
    // Still valid one way at 5 s: kept. Both ways expired at 10 s: removed from both maps.
    assert_eq!(o.prune(t0 + secs(5)), vec![]);
    let gone = o.prune(t0 + secs(10));
    assert!(
        matches!(gone[..], [MapOp::DelIn(_), MapOp::DelOut(_)]),
        "{gone:?}"
    );
    assert_eq!(o.entries(), 0);
    assert_eq!(o.sync(&f, None, mono), vec![], "nothing left to remove");
}
