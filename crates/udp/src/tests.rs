//! Batches over loopback sockets, and the GSO plan as a table.

use super::*;
use std::net::UdpSocket;
use std::time::Duration;

fn to(port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn runs_group_one_destination_and_length_with_a_shorter_last() {
    static A: [u8; 100] = [7; 100];
    static SHORT: [u8; 40] = [7; 40];
    static LONG: [u8; 200] = [7; 200];
    static BIG: [u8; 20_000] = [1; 20_000];
    let (a, short, long, big): (&[u8], &[u8], &[u8], &[u8]) = (&A, &SHORT, &LONG, &BIG);
    let d = |bytes: &'static [u8], port| Datagram {
        bytes,
        to: to(port),
    };
    type Row<'a> = (Vec<Datagram<'a>>, Vec<(usize, usize)>);
    let cases: Vec<Row> = vec![
        (vec![], vec![]),
        (vec![d(a, 1)], vec![(0, 1)]),
        (vec![d(a, 1), d(a, 1), d(a, 1)], vec![(0, 3)]),
        // A shorter datagram ends the run it joins.
        (
            vec![d(a, 1), d(short, 1), d(a, 1), d(a, 1)],
            vec![(0, 2), (2, 2)],
        ),
        // A longer one starts a new run; so does another destination.
        (vec![d(a, 1), d(long, 1), d(long, 1)], vec![(0, 1), (1, 2)]),
        (
            vec![d(a, 1), d(a, 2), d(a, 2), d(a, 1)],
            vec![(0, 1), (1, 2), (3, 1)],
        ),
    ];
    for (out, want) in cases {
        assert_eq!(plan_runs(&out, true), want, "{out:?}");
        let singles: Vec<(usize, usize)> = (0..out.len()).map(|i| (i, 1)).collect();
        assert_eq!(plan_runs(&out, false), singles, "no GSO: {out:?}");
    }
    // At most MAX_SEGMENTS segments and MAX_GSO_BYTES bytes per run.
    let many = vec![d(a, 1); 150];
    assert_eq!(plan_runs(&many, true), vec![(0, 64), (64, 64), (128, 22)]);
    assert_eq!(
        plan_runs(&vec![d(big, 1); 5], true),
        vec![(0, 3), (3, 2)],
        "3 x 20,000 bytes fit in 65,000, 4 do not"
    );
}

/// Reads `want` datagrams from `rx` (blocking, 2 s at most each) with their sources.
fn drain(rx: &UdpSocket, want: usize) -> Vec<(Vec<u8>, Option<SocketAddr>)> {
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut batch = RecvBatch::new(8, MAX_DATAGRAM);
    let mut got = Vec::new();
    while got.len() < want {
        let n = batch.recv(rx, Wait::ForOne).expect("datagrams");
        assert!(n <= batch.slots());
        got.extend((0..n).map(|i| (batch.payload(i).to_vec(), batch.source(i))));
    }
    got
}

#[test]
fn a_gso_batch_to_two_destinations_arrives_as_separate_datagrams_in_order() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.set_nonblocking(true).unwrap();
    // Runs of equal sizes to `a` (GSO), a shorter tail, then single datagrams to `b`, one of
    // them longer than any MTU.
    let payloads: Vec<Vec<u8>> = (0..100u8)
        .map(|i| match i {
            0..=39 => vec![i; 300],
            40 => vec![i; 17],
            50 => vec![i; 65_000],
            _ => vec![i; 1 + i as usize],
        })
        .collect();
    let out: Vec<Datagram> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| Datagram {
            bytes: p,
            to: Some(if i <= 40 { &a } else { &b }.local_addr().unwrap()),
        })
        .collect();
    let mut sent = Vec::new();
    assert_eq!(try_send(&tx, &out, |i| sent.push(i)), 100);
    assert_eq!(sent, (0..100).collect::<Vec<_>>());
    let from = Some(tx.local_addr().unwrap());
    let want = |r: std::ops::Range<usize>| -> Vec<_> {
        payloads[r].iter().map(|p| (p.clone(), from)).collect()
    };
    assert_eq!(drain(&a, 41), want(0..41));
    assert_eq!(drain(&b, 59), want(41..100));
}

#[test]
fn an_owned_batch_reaches_several_destinations_and_a_non_blocking_read_says_when_none_is_left() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut out = SendBatch::new();
    for i in 0..100u8 {
        let dest = if i % 2 == 0 { &a } else { &b };
        out.push(&vec![i; 1 + i as usize], Some(dest.local_addr().unwrap()));
        if out.is_full() {
            assert_eq!(out.flush(&tx).unwrap(), MAX_PER_CALL);
        }
    }
    assert_eq!(out.flush(&tx).unwrap(), 100 - MAX_PER_CALL);
    assert!(out.is_empty());
    for (sock, parity) in [(&a, 0u8), (&b, 1u8)] {
        let want: Vec<_> = (0..100u8)
            .filter(|i| i % 2 == parity)
            .map(|i| (vec![i; 1 + i as usize], Some(tx.local_addr().unwrap())))
            .collect();
        assert_eq!(drain(sock, 50), want);
        let mut batch = RecvBatch::new(4, 2048);
        assert_eq!(
            batch.recv(sock, Wait::No).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(batch.is_empty());
    }
}

#[test]
fn a_connected_socket_sends_without_destinations_and_long_datagrams_are_cut_to_the_stride() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    let mut out = SendBatch::new();
    out.push(&[7; 300], None);
    out.push(&[8; 10], None);
    assert_eq!(out.flush(&tx).unwrap(), 2);
    assert_eq!(
        try_send(
            &tx,
            &[Datagram {
                bytes: &[9; 5],
                to: None
            }],
            |_| {}
        ),
        1
    );
    let mut batch = RecvBatch::new(64, 100);
    let mut lens = Vec::new();
    while lens.len() < 3 {
        let n = batch.recv(&rx, Wait::ForOne).unwrap();
        lens.extend((0..n).map(|i| batch.get(i).0.len()));
    }
    assert_eq!(lens, vec![100, 10, 5]);
}
