//! The kernel path (`--kernel-path eth0`) in the NAT lab: a client behind a NAT and a peer on
//! the open internet talk through natkit-relay, whose TC program relays their ChannelData both
//! ways. What a user would check: every datagram arrives whole and in both directions, the
//! kernel (not the relay's sockets) carried them and the relay's counters say so exactly, the
//! UDP checksums it rewrote are right (the lab's hosts compute checksums in software, so the
//! receiving kernels verify them), a deleted allocation relays nothing more at once, an expired
//! one is left to the relay, and packets the program must not touch (checksum offload pending)
//! still go through the userspace path.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use natkit_lab::{in_netns, Lab, Nat, Netns};
use natkit_testkit::workspace_bin;
use stun::message::*;
use tokio::net::UdpSocket;

const METRICS: &str = "127.0.0.1:9641";
const MAX_LIFETIME_S: u64 = 8;

fn udp_in(ns: &Netns, addr: &str) -> UdpSocket {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = in_netns(&ns.name, move || {
        std::net::UdpSocket::bind(addr).expect("bind")
    });
    s.set_nonblocking(true).unwrap();
    UdpSocket::from_std(s).unwrap()
}

/// The relay's Prometheus text, fetched from inside the server's namespace.
fn metrics(ns: &Netns) -> String {
    let mut conn = in_netns(&ns.name, || {
        TcpStream::connect(METRICS).expect("metrics endpoint")
    });
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text
}

fn value(ns: &Netns, series: &str) -> f64 {
    metric_value(&metrics(ns), series)
}

/// `Udp: InCsumErrors` of a namespace (/proc/net/snmp is per namespace).
fn checksum_errors(ns: &Netns) -> u64 {
    let out = ns.run("cat", &["/proc/net/snmp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let udp: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    let names: Vec<&str> = udp[0].split_whitespace().collect();
    let values: Vec<&str> = udp[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "InCsumErrors").unwrap();
    values[i].parse().unwrap()
}

fn tx_checksum_offload(ns: &Netns, on: bool) {
    ns.run(
        "ethtool",
        &["-K", "eth0", "tx", if on { "on" } else { "off" }],
    );
}

fn channel_data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = number.to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn numbered(tag: u8, i: u32, len: usize) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&i.to_be_bytes());
    v.resize(len, (i % 251) as u8);
    v
}

async fn recv(sock: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

/// An allocation from `client` with channel 0x4000 bound to `peer`; returns its relayed address.
async fn allocate_and_bind(
    client: &StunClient,
    user: &str,
    peer: SocketAddr,
) -> (SocketAddr, Auth) {
    let (ok, auth) = client.allocate(&mint(SECRET, user, 600)).await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{ok:?}");
    let mut r = turn::proto::relayaddr::RelayedAddress::default();
    r.get_from(&ok).unwrap();
    let bind = request(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(turn::proto::channum::ChannelNumber(0x4000)),
            xor_peer(peer),
        ],
        Some(&auth),
    );
    let r2 = client.transact(&bind).await;
    assert_eq!(r2.typ.class, CLASS_SUCCESS_RESPONSE, "{r2:?}");
    (SocketAddr::new(r.ip, r.port), auth)
}

/// Sends `n` datagrams each way, one exchange at a time, and checks each arrives whole: the
/// client's ChannelData at the peer as its payload from the relayed address, the peer's answer
/// at the client as ChannelData on 0x4000 from the relay.
async fn exchange(
    client: &StunClient,
    peer: &UdpSocket,
    relayed: SocketAddr,
    tag: u8,
    n: u32,
    len: usize,
) {
    for i in 0..n {
        let payload = numbered(tag, i, len);
        client.send(&channel_data(0x4000, &payload)).await;
        let (got, from) = recv(peer, Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("datagram {i} (tag {tag}) did not reach the peer"));
        assert_eq!(from, relayed, "the peer hears the relayed address");
        assert_eq!(got, payload, "datagram {i} reached the peer whole");
        let answer = numbered(tag ^ 0xff, i, len);
        peer.send_to(&answer, relayed).await.unwrap();
        let (got, from) = recv(&client.sock, Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("answer {i} (tag {tag}) did not reach the client"));
        assert_eq!(from, client.server, "answers come from the relay's address");
        assert_eq!(
            got,
            channel_data(0x4000, &answer),
            "answer {i} came back as ChannelData"
        );
    }
}

/// Refreshes the allocation (to the default lifetime, MAX_LIFETIME_S here).
async fn refresh(client: &StunClient, auth: &Auth) {
    let r = client.call(METHOD_REFRESH, vec![], Some(auth)).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{r:?}");
}

/// Waits for the relay's once-a-second reading of the program's counters to reach `want`.
fn wait_metric(ns: &Netns, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while value(ns, series) < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = metrics(ns);
    let last = metric_value(&text, series);
    let kernel: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("natkit_relay_kernel_path")
                || l.starts_with("natkit_relay_relayed_packets")
        })
        .collect();
    assert!(
        last >= want,
        "{series} is {last}, expected {want}; the relay's counters:\n{}",
        kernel.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_data_is_relayed_in_the_kernel_exactly_and_falls_back_to_userspace() {
    if !natkit_lab::require_root("kernel path") {
        return;
    }
    let mut lab = Lab::new();
    let c = lab.add_site(Nat::PortRestrictedCone);
    let p = lab.add_site(Nat::OpenInternet);
    let (client_ns, peer_ns) = (&lab.sites[c].client, &lab.sites[p].client);
    // Checksums computed by the senders' kernels, as a NIC delivers them from the wire (veth
    // would otherwise hand the relay CHECKSUM_PARTIAL packets, which the program leaves alone).
    tx_checksum_offload(client_ns, false);
    tx_checksum_offload(peer_ns, false);

    let relay = workspace_bin("natkit-relay");
    let mut cmd = lab.server.cmd(relay.to_str().unwrap());
    cmd.env("NATKIT_TURN_SECRET", SECRET).args([
        "--listen",
        &format!("{}:3478", natkit_lab::SERVER_IP),
        "--metrics-listen",
        METRICS,
        "--allow-peer",
        &lab.sites[p].lan,
        "--max-lifetime",
        &MAX_LIFETIME_S.to_string(),
        "--kernel-path",
        "eth0",
    ]);
    let server = lab.start_daemon(&mut cmd).addr("stun");
    assert!(lab
        .server
        .run("tc", &["filter", "show", "dev", "eth0", "ingress"])
        .status
        .success());
    let srv = &lab.server;
    let (client_ns, peer_ns) = (&lab.sites[c].client, &lab.sites[p].client);
    let peer = udp_in(peer_ns, &format!("{}:0", lab.sites[p].client_ip));
    let peer_addr = peer.local_addr().unwrap();
    let client = StunClient {
        sock: udp_in(client_ns, &format!("{}:0", lab.sites[c].client_ip)),
        server,
    };
    let errors_before = (checksum_errors(client_ns), checksum_errors(peer_ns));

    // One allocation, its channel bound. The first datagrams may go through the relay's
    // sockets while the server learns its neighbours' MAC addresses (the program hands those
    // to the stack): warm up, then count.
    let (relayed, auth) = allocate_and_bind(&client, "alice", peer_addr).await;
    exchange(&client, &peer, relayed, 1, 5, 200).await;
    let kernel_to_peer = r#"natkit_relay_kernel_path_packets_total{direction="client_to_peer"}"#;
    let kernel_to_client = r#"natkit_relay_kernel_path_packets_total{direction="peer_to_client"}"#;
    let all_to_peer =
        r#"natkit_relay_relayed_packets_total{direction="client_to_peer",transport="udp"}"#;
    let all_to_client =
        r#"natkit_relay_relayed_packets_total{direction="peer_to_client",transport="udp"}"#;
    let bytes_to_peer =
        r#"natkit_relay_relayed_bytes_total{direction="client_to_peer",transport="udp"}"#;
    wait_metric(srv, all_to_client, 5.0);
    let before = metrics(srv);
    let at = |text: &str, s: &str| metric_value(text, s);

    const N: u32 = 300;
    const LEN: usize = 1000;
    exchange(&client, &peer, relayed, 2, N, LEN).await;
    wait_metric(
        srv,
        kernel_to_client,
        at(&before, kernel_to_client) + N as f64,
    );
    let after = metrics(srv);
    let delta = |s: &str| at(&after, s) - at(&before, s);
    assert_eq!(
        delta(kernel_to_peer),
        N as f64,
        "every ChannelData went through the kernel"
    );
    assert_eq!(
        delta(kernel_to_client),
        N as f64,
        "every answer went through the kernel"
    );
    assert_eq!(
        delta(all_to_peer),
        N as f64,
        "the relayed counters count them once"
    );
    assert_eq!(delta(all_to_client), N as f64);
    assert_eq!(
        delta(bytes_to_peer),
        (N as usize * LEN) as f64,
        "payload bytes, exactly"
    );
    assert_eq!(
        at(&after, "natkit_relay_kernel_path_entries"),
        2.0,
        "one entry per direction of the binding"
    );
    // Odd lengths (the checksum's last word is half a byte of payload) and the smallest
    // payload that fills a minimum Ethernet frame. The allocation lives MAX_LIFETIME_S: a
    // Refresh first, which the kernel's entries follow.
    refresh(&client, &auth).await;
    for (tag, len) in [(6, 333), (7, 1), (8, 18)] {
        let before = value(srv, kernel_to_client);
        exchange(&client, &peer, relayed, tag, 10, len).await;
        if len >= 18 {
            wait_metric(srv, kernel_to_client, before + 10.0);
        }
    }
    assert_eq!(
        (checksum_errors(client_ns), checksum_errors(peer_ns)),
        errors_before,
        "the rewritten UDP checksums verify at the receivers"
    );

    // A peer's datagram that would not fit the interface's MTU once framed (1472 bytes of UDP
    // payload fill 1500; ChannelData adds 4): the program leaves it to the relay's sockets,
    // which send it (fragmented), and it arrives whole.
    refresh(&client, &auth).await;
    let route = r#"natkit_relay_kernel_path_passed_total{reason="route"}"#;
    let route_before = value(srv, route);
    let big = numbered(9, 0, 1472);
    peer.send_to(&big, relayed).await.unwrap();
    let (got, _) = recv(&client.sock, Duration::from_secs(2))
        .await
        .expect("the 1472-byte datagram reached the client");
    assert_eq!(got, channel_data(0x4000, &big));
    wait_metric(srv, route, route_before + 1.0);

    refresh(&client, &auth).await;
    // A host that forwards on the interface: the program takes the FIB's next hop instead of
    // leaving the choice to the neighbour subsystem; the same datagrams, the same counts.
    srv.run("sysctl", &["-qw", "net.ipv4.conf.eth0.forwarding=1"]);
    let before = metrics(srv);
    exchange(&client, &peer, relayed, 5, 50, 1400).await;
    wait_metric(srv, kernel_to_client, at(&before, kernel_to_client) + 50.0);
    assert_eq!(
        value(srv, kernel_to_peer) - at(&before, kernel_to_peer),
        50.0
    );
    srv.run("sysctl", &["-qw", "net.ipv4.conf.eth0.forwarding=0"]);

    // The peer policy decides before anything reaches the maps: a binding it refuses (a
    // private address, outside --allow-peer) gets 403 and no entry.
    let denied = request(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(turn::proto::channum::ChannelNumber(0x4001)),
            xor_peer("10.1.2.3:5000".parse().unwrap()),
        ],
        Some(&auth),
    );
    assert_eq!(error_code(&client.transact(&denied).await), Some(403));
    assert_eq!(value(srv, "natkit_relay_kernel_path_entries"), 2.0);

    // Deleted: from the Refresh's answer on, nothing is relayed, by the kernel or otherwise.
    let delete = request(METHOD_REFRESH, vec![lifetime(0)], Some(&auth));
    let r = client.transact(&delete).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{r:?}");
    client
        .sock
        .send_to(&channel_data(0x4000, b"after delete"), server)
        .await
        .unwrap();
    peer.send_to(b"after delete", relayed).await.unwrap();
    assert_eq!(recv(&peer, Duration::from_millis(500)).await, None);
    assert_eq!(recv(&client.sock, Duration::from_millis(200)).await, None);
    assert_eq!(value(srv, "natkit_relay_kernel_path_entries"), 0.0);

    // Expired: the kernel stops at the allocation's end and leaves the datagram to the relay.
    // The allocation ends by `allocated` + its lifetime; the relay forgets the kernel's entry
    // within a second after that, so the late datagrams go right after the end (a later one
    // may find the entry gone already, which is the relay's business, not the kernel's).
    let (relayed, _) = allocate_and_bind(&client, "bob", peer_addr).await;
    let allocated = tokio::time::Instant::now();
    exchange(&client, &peer, relayed, 3, 3, 100).await;
    let expired = r#"natkit_relay_kernel_path_passed_total{reason="expired"}"#;
    let expired_before = value(srv, expired);
    tokio::time::sleep_until(allocated + Duration::from_millis(MAX_LIFETIME_S * 1000 + 2)).await;
    let sent_at = Instant::now();
    for _ in 0..3 {
        client
            .sock
            .send_to(&channel_data(0x4000, b"late"), server)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The relay ends the allocation within a second of its expiry; until then its sockets
    // may still relay what the kernel left them (the userspace path's behaviour, unchanged).
    // The first late datagram may come through; the others right after it, or not at all.
    let _ = recv(&peer, Duration::from_millis(300)).await;
    while recv(&peer, Duration::from_millis(50)).await.is_some() {}
    assert!(sent_at.elapsed() < Duration::from_secs(1));
    wait_metric(srv, expired, expired_before + 1.0);

    // Checksum offload pending (a sender on this side of a veth with offload on): the program
    // leaves the packets alone and the relay's sockets carry them, every one.
    tx_checksum_offload(client_ns, true);
    tx_checksum_offload(peer_ns, true);
    let (relayed, _) = allocate_and_bind(&client, "carol", peer_addr).await;
    let kernel_before = value(srv, kernel_to_peer);
    let passed = r#"natkit_relay_kernel_path_passed_total{reason="checksum"}"#;
    let passed_before = value(srv, passed);
    exchange(&client, &peer, relayed, 4, 20, 300).await;
    wait_metric(srv, passed, passed_before + 40.0);
    assert_eq!(
        value(srv, kernel_to_peer),
        kernel_before,
        "none through the kernel"
    );
    drop(lab);
}
