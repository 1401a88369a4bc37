//! TURN over TCP and TLS on loopback: exact answers and framing on a raw stream, coturn's client
//! over both, certificates made at run time and reloaded on SIGHUP, and hostile streams (a cut
//! message, plaintext on the TLS port, 1,000 idle connections, a client that never reads, a
//! slowloris, an oversized frame, the per-IP limit) while the relay keeps serving others.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use natkit_stun_turn::framing;
use natkit_testkit::tls::{TempDir, TestCa};
use natkit_testkit::{http_get, rss_kib, wait_until, Daemon};
use stun::attributes::*;
use stun::message::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const BIN: &str = env!("CARGO_BIN_EXE_natkit-relay");

/// A raw TURN client on one stream connection.
struct StreamClient<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamClient<S> {
    fn new(io: S) -> Self {
        StreamClient {
            io,
            buf: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// The next frame as it is on the stream (ChannelData padding included), or `None` when
    /// the relay closed the connection.
    async fn frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(f) = framing::next_frame(&self.buf).expect("the relay frames correctly") {
                return Some(self.buf.drain(..f.consumed).collect());
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut chunk))
                .await
                .expect("an answer within 5 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn message(&mut self) -> Message {
        let f = self.frame().await.expect("connection open");
        let mut m = Message::new();
        m.raw = f;
        m.decode().unwrap();
        m
    }

    async fn transact(&mut self, m: &Message) -> Message {
        self.write(&m.raw).await;
        let r = self.message().await;
        assert_eq!(r.transaction_id, m.transaction_id);
        r
    }

    async fn call(
        &mut self,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
        auth: Option<&Auth>,
    ) -> Message {
        self.transact(&request(method, attrs, auth)).await
    }

    /// Challenge, then Allocate: the auth for later requests.
    async fn allocate(&mut self, user: &str) -> (Message, Auth) {
        let cred = mint(SECRET, user, 600);
        let r = self.call(METHOD_ALLOCATE, vec![udp()], None).await;
        assert_eq!(error_code(&r), Some(401));
        let auth = Auth {
            username: cred.username,
            password: cred.password,
            realm: text(&r, ATTR_REALM).unwrap(),
            nonce: text(&r, ATTR_NONCE).unwrap(),
        };
        let ok = self.call(METHOD_ALLOCATE, vec![udp()], Some(&auth)).await;
        (ok, auth)
    }

    /// Is the connection closed by the relay (EOF or reset) within `within`?
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout(within, self.io.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

fn channel_bind(auth: &Auth, number: u16, peer: SocketAddr) -> Message {
    request(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(turn::proto::channum::ChannelNumber(number)),
            xor_peer(peer),
        ],
        Some(auth),
    )
}

fn tls_client(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    ca_pem: &str,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    tls_client(ca_pem).connect(name, tcp).await
}

#[tokio::test]
async fn tcp_framing_and_exact_answers() {
    let relay = TestRelay::with(|o| o.allow_peer = vec!["127.0.0.1".into()]).await;
    let tcp = relay
        .addrs
        .tcp
        .expect("TCP is on by default, on the UDP port");
    assert_eq!(tcp, relay.addr());
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    let local = c.io.local_addr().unwrap();

    // Binding over TCP: the client's TCP address.
    let b = c.call(METHOD_BINDING, vec![], None).await;
    assert_eq!(b.typ.class, CLASS_SUCCESS_RESPONSE);
    assert_eq!(xor_mapped(&b), Some(local));
    // RFC 6062 TCP relaying is not offered: 442.
    let (ok, auth) = c.allocate("tcp-user").await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE);
    let tcp_relaying = request(
        METHOD_ALLOCATE,
        vec![Box::new(turn::proto::reqtrans::RequestedTransport {
            protocol: turn::proto::PROTO_TCP,
        })],
        Some(&auth),
    );
    let mut c2 = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    c2.call(METHOD_ALLOCATE, vec![udp()], None).await;
    let refused = c2.transact(&tcp_relaying).await;
    assert!(
        matches!(error_code(&refused), Some(442) | Some(438)),
        "{refused:?}"
    );

    // Two requests in one segment: two answers, in order.
    let perm = request(
        METHOD_CREATE_PERMISSION,
        vec![xor_peer(peer.local_addr().unwrap())],
        Some(&auth),
    );
    let bind = channel_bind(&auth, 0x4000, peer.local_addr().unwrap());
    c.write(&[perm.raw.clone(), bind.raw.clone()].concat())
        .await;
    let (r1, r2) = (c.message().await, c.message().await);
    assert_eq!(
        (
            r1.transaction_id,
            r1.typ.class,
            r2.transaction_id,
            r2.typ.class
        ),
        (
            perm.transaction_id,
            CLASS_SUCCESS_RESPONSE,
            bind.transaction_id,
            CLASS_SUCCESS_RESPONSE
        )
    );

    // ChannelData padded on the stream, exact on the wire to the peer.
    c.write(&framing::channel_data(0x4000, b"hello")).await;
    let mut got = [0u8; 64];
    let (n, relayed_from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..n], b"hello");
    peer.send_to(b"world!", relayed_from).await.unwrap();
    let frame = c.frame().await.unwrap();
    assert_eq!(frame, framing::channel_data(0x4000, b"world!"));
    assert_eq!(frame.len(), 12, "6 bytes padded to 8 after the header");

    // One message split over many segments.
    let refresh = request(METHOD_REFRESH, vec![], Some(&auth));
    for byte in refresh.raw.iter() {
        c.write(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = c.message().await;
    assert_eq!(
        (r.transaction_id, r.typ.class),
        (refresh.transaction_id, CLASS_SUCCESS_RESPONSE)
    );

    assert_eq!(
        relay.metric("natkit_relay_allocations_active{transport=\"tcp\"}"),
        1.0
    );
    assert_eq!(
        relay.metric("natkit_relay_allocations_active{transport=\"udp\"}"),
        0.0
    );
    assert_eq!(
        relay.metric(
            "natkit_relay_relayed_packets_total{direction=\"client_to_peer\",transport=\"tcp\"}"
        ),
        1.0
    );
    assert_eq!(
        relay.metric(
            "natkit_relay_relayed_packets_total{direction=\"peer_to_client\",transport=\"tcp\"}"
        ),
        1.0
    );
    // Closing the connection ends its allocation.
    drop(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while relay.metric("natkit_relay_allocations_active{transport=\"tcp\"}") != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "allocation outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(relay.metric("natkit_relay_stream_connections_closed_total{reason=\"client\"}") >= 1.0);
}

fn xor_mapped(m: &Message) -> Option<SocketAddr> {
    let mut a = stun::xoraddr::XorMappedAddress::default();
    a.get_from(m).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

fn relay_with(dir: &TempDir, extra: &[&str]) -> Daemon {
    Daemon::start(
        Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NATKIT_TURN_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .args(["--listen", "127.0.0.1:0", "--alt-port", "0"])
            .args([
                "--metrics-listen",
                "127.0.0.1:0",
                "--allow-peer",
                "127.0.0.1",
            ])
            .args(extra),
    )
}

/// TURN over TLS on an ephemeral port with these certificate and key files.
fn tls_flags<'a>(cert: &'a str, key: &'a str) -> [&'a str; 6] {
    [
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]
}

/// [`relay_with`] serving TLS on an ephemeral port with `files`.
fn tls_relay(dir: &TempDir, files: &natkit_testkit::tls::ServerFiles, extra: &[&str]) -> Daemon {
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    relay_with(dir, &[tls_flags(cert, key).as_slice(), extra].concat())
}

fn metric(relay: &Daemon, series: &str) -> f64 {
    let text = http_get(&format!("http://{}/metrics", relay.addr("metrics")));
    natkit_testkit::metric(&text, series)
}

#[tokio::test]
async fn tls_serves_allocations_and_reloads_its_certificate_on_sighup() {
    let dir = TempDir::new("tls-reload");
    let old_ca = TestCa::new("natkit old test CA");
    let files = old_ca.issue(&["turn.natkit.test"], dir.path(), "relay");
    let relay = tls_relay(&dir, &files, &[]);
    let tls = relay.addr("turn-tls");
    assert!(
        relay.logged("turns:turn.natkit.test"),
        "the start-up line names the turns: host: {:?}",
        relay.log()
    );

    let mut c = StreamClient::new(
        tls_connect(old_ca.pem(), tls, "turn.natkit.test")
            .await
            .unwrap(),
    );
    let (ok, auth) = c.allocate("tls-user").await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{ok:?}");
    assert_eq!(
        metric(&relay, "natkit_relay_allocations_active{transport=\"tls\"}"),
        1.0
    );
    // A client that trusts another CA refuses the relay; the relay counts a failed handshake.
    let stranger = TestCa::new("stranger CA");
    assert!(tls_connect(stranger.pem(), tls, "turn.natkit.test")
        .await
        .is_err());

    // Rotate: a new CA, same files, SIGHUP.
    let new_ca = TestCa::new("natkit new test CA");
    new_ca.issue(&["turn.natkit.test"], dir.path(), "relay");
    relay.process_ref().hangup();
    relay.wait_for_log("tls certificate reloaded", Duration::from_secs(5));
    assert!(tls_connect(new_ca.pem(), tls, "turn.natkit.test")
        .await
        .is_ok());
    assert!(
        tls_connect(old_ca.pem(), tls, "turn.natkit.test")
            .await
            .is_err(),
        "new handshakes use the new certificate"
    );
    // The allocation made before the reload lives on, on its connection.
    let refresh = c.call(METHOD_REFRESH, vec![], Some(&auth)).await;
    assert_eq!(refresh.typ.class, CLASS_SUCCESS_RESPONSE);
    // A broken file on reload keeps the current certificate.
    std::fs::write(&files.cert, "garbage").unwrap();
    relay.process_ref().hangup();
    relay.wait_for_log("tls certificate not reloaded", Duration::from_secs(5));
    assert!(tls_connect(new_ca.pem(), tls, "turn.natkit.test")
        .await
        .is_ok());

    // Plaintext TURN on the TLS port is refused and counted.
    let mut plain = StreamClient::new(TcpStream::connect(tls).await.unwrap());
    plain
        .write(&request(METHOD_BINDING, vec![], None).raw)
        .await;
    assert!(plain.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        metric(
            &relay,
            "natkit_relay_stream_connections_refused_total{transport=\"tls\",reason=\"not_tls\"}"
        ),
        1.0
    );
    assert!(
        metric(&relay, "natkit_relay_stream_connections_refused_total{transport=\"tls\",reason=\"tls_handshake\"}")
            >= 1.0
    );
    let log = relay.log().join("\n");
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains(SECRET),
        "no secrets in the log"
    );
}

#[test]
fn a_bad_certificate_is_a_one_line_error_naming_the_file() {
    let dir = TempDir::new("tls-bad");
    let ca = TestCa::new("natkit test CA");
    let files = ca.issue(&["turn.natkit.test"], dir.path(), "relay");
    let missing = dir.path().join("missing.crt");
    let cases = [
        (
            missing.to_str().unwrap(),
            files.key.to_str().unwrap(),
            "missing.crt",
        ),
        (
            files.key.to_str().unwrap(),
            files.key.to_str().unwrap(),
            "no PEM certificate",
        ),
    ];
    for (cert, key, want) in cases {
        let out = Command::new(BIN)
            .env_clear()
            .env("NATKIT_TURN_SECRET", SECRET)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--alt-port",
                "0",
                "--metrics-listen",
                "off",
            ])
            .args(tls_flags(cert, key))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(want), "{err}");
    }
    // tls_listen without a certificate is a configuration error naming the key.
    let out = Command::new(BIN)
        .env_clear()
        .env("NATKIT_TURN_SECRET", SECRET)
        .args(["--tls-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_cert"));
}

#[test]
fn credentials_list_every_transport_udp_first() {
    let dir = TempDir::new("tls-creds");
    let ca = TestCa::new("natkit test CA");
    let files = ca.issue(&["turn.natkit.test"], dir.path(), "relay");
    let v = natkit_testkit::json_of(
        "natkit-relay credentials",
        Command::new(BIN)
            .env_clear()
            .env("NATKIT_TURN_SECRET", SECRET)
            .args(["--listen", "203.0.113.7:3478", "--tls-listen", ":5349"])
            .args([
                "--tls-cert",
                files.cert.to_str().unwrap(),
                "--tls-key",
                files.key.to_str().unwrap(),
            ])
            .args(["credentials", "--user", "alice"]),
    );
    assert_eq!(
        v["iceServers"][0]["urls"],
        serde_json::json!([
            "stun:203.0.113.7:3478",
            "turn:203.0.113.7:3478?transport=udp",
            "turn:203.0.113.7:3478?transport=tcp",
            "turns:turn.natkit.test:5349?transport=tcp"
        ])
    );
    let out = Command::new(BIN)
        .env_clear()
        .env("NATKIT_TURN_SECRET", SECRET)
        .args(["--listen", "203.0.113.7:3478", "--tcp", "off"])
        .args(["credentials", "--user", "alice"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["iceServers"][0]["urls"].as_array().unwrap().len(), 2);
}

#[test]
fn coturn_uclient_relays_over_tcp_and_tls() {
    let dir = TempDir::new("uclient-tls");
    let ca = TestCa::new("natkit test CA");
    let files = ca.issue(&["turn.natkit.test", "127.0.0.1"], dir.path(), "relay");
    let relay = tls_relay(&dir, &files, &[]);
    let peer_port = natkit_testkit::third_party_udp_port();
    let _peer = natkit_testkit::Process::spawn(
        Command::new(tool("turnutils_peer"))
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(300));
    // -t: TCP to the relay; -t -S: TLS (-S alone would be DTLS over UDP).
    for (flags, port, transport) in [
        (&["-t"][..], relay.addr("turn-tcp").port(), "tcp"),
        (&["-t", "-S"][..], relay.addr("turn-tls").port(), "tls"),
    ] {
        let out = Command::new(tool("turnutils_uclient"))
            .args(flags)
            .args(["-W", SECRET, "-u", "uclient", "-e", "127.0.0.1"])
            .args(["-r", &peer_port.to_string(), "-n", "50", "-m", "4"])
            .args(["-p", &port.to_string(), "127.0.0.1"])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (sent, received) = uclient_totals(&text);
        assert!(sent >= 200, "{transport}: uclient sent {sent}:\n{text}");
        assert_eq!(
            sent, received,
            "{transport}: every message comes back:\n{text}"
        );
        let created = metric(
            &relay,
            &format!("natkit_relay_allocations_created_total{{transport=\"{transport}\"}}"),
        );
        assert!(created >= 4.0, "{transport}: {created} allocations");
    }
}

#[tokio::test]
async fn hostile_streams_leave_the_relay_serving_others() {
    let dir = TempDir::new("hostile-streams");
    let relay = relay_with(&dir, &["--stream-per-ip", "2000"]);
    let tcp = relay.addr("turn-tcp");
    let pid = relay.id();
    let serves_others = || async {
        let mut c = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
        let b = c.call(METHOD_BINDING, vec![], None).await;
        assert_eq!(b.typ.class, CLASS_SUCCESS_RESPONSE);
        let u = StunClient::new(relay.addr("stun")).await;
        let b = u.call(METHOD_BINDING, vec![], None).await;
        assert_eq!(b.typ.class, CLASS_SUCCESS_RESPONSE);
    };
    serves_others().await;
    let before = rss_kib(pid);

    // A connection cut in the middle of a message.
    let mut cut = TcpStream::connect(tcp).await.unwrap();
    let half = request(METHOD_BINDING, vec![], None).raw;
    cut.write_all(&half[..half.len() / 2]).await.unwrap();
    drop(cut);
    serves_others().await;

    // A frame over 64 KiB closes its connection.
    let mut big = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    big.write(&[0x40, 0x00, 0xff, 0xff]).await;
    assert!(big.closed_within(Duration::from_secs(5)).await);

    // 1,000 idle connections.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(tcp).await.unwrap());
    }
    wait_until("1,000 connections held", Duration::from_secs(10), || {
        metric(
            &relay,
            "natkit_relay_stream_connections_active{transport=\"tcp\"}",
        ) >= 1000.0
    });
    let with_idle = rss_kib(pid);
    serves_others().await;
    eprintln!(
        "relay RSS: {before} KiB before, {with_idle} KiB with 1,000 idle TCP connections ({:.1} KiB each)",
        (with_idle.saturating_sub(before)) as f64 / 1000.0
    );
    assert!(
        with_idle < before + 32 * 1024,
        "{before} -> {with_idle} KiB"
    );

    // A client that never reads while a peer floods its allocation.
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut deaf = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    let (ok, auth) = deaf.allocate("deaf").await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE);
    let relayed = {
        let mut r = turn::proto::relayaddr::RelayedAddress::default();
        r.get_from(&ok).unwrap();
        SocketAddr::new(r.ip, r.port)
    };
    let bind = channel_bind(&auth, 0x4001, peer.local_addr().unwrap());
    assert_eq!(deaf.transact(&bind).await.typ.class, CLASS_SUCCESS_RESPONSE);
    let payload = vec![7u8; 1200];
    for _ in 0..20_000 {
        let _ = peer.send_to(&payload, relayed).await;
    }
    let flooded = rss_kib(pid);
    serves_others().await;
    let drops = metric(
        &relay,
        "natkit_relay_stream_queue_drops_total{transport=\"tcp\"}",
    );
    eprintln!(
        "relay RSS: {flooded} KiB after 24 MB sent towards a client that never reads ({drops} datagrams dropped)"
    );
    assert!(
        drops > 0.0,
        "the bounded queue dropped what the client did not read"
    );
    assert!(
        flooded < with_idle + 16 * 1024,
        "{with_idle} -> {flooded} KiB"
    );
    drop(idle);
    drop(deaf);

    // A slowloris: one byte and nothing more is closed at the first-request deadline.
    let mut slow = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    slow.write(&[0x00]).await;
    assert!(slow.closed_within(Duration::from_secs(15)).await);
    assert_eq!(
        metric(&relay, "natkit_relay_stream_connections_closed_total{transport=\"tcp\",reason=\"first_request_timeout\"}"),
        1.0
    );
    serves_others().await;
}

#[tokio::test]
async fn the_per_ip_connection_limit_refuses_and_counts() {
    let dir = TempDir::new("per-ip");
    let relay = relay_with(&dir, &["--stream-per-ip", "3"]);
    let tcp = relay.addr("turn-tcp");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
        c.call(METHOD_BINDING, vec![], None).await;
        held.push(c);
    }
    let mut fourth = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    assert!(fourth.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        metric(&relay, "natkit_relay_stream_connections_refused_total{transport=\"tcp\",reason=\"per_ip_limit\"}"),
        1.0
    );
    drop(held.pop());
    wait_until("a slot is free again", Duration::from_secs(5), || {
        metric(
            &relay,
            "natkit_relay_stream_connections_active{transport=\"tcp\"}",
        ) == 2.0
    });
    let mut again = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    assert_eq!(
        again.call(METHOD_BINDING, vec![], None).await.typ.class,
        CLASS_SUCCESS_RESPONSE
    );
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_cut_at_its_deadline() {
    let dir = TempDir::new("tls-deadline");
    let ca = TestCa::new("natkit test CA");
    let files = ca.issue(&["turn.natkit.test"], dir.path(), "relay");
    let relay = tls_relay(&dir, &files, &[]);
    // The first byte of a TLS record, then silence: the handshake cannot finish.
    let started = std::time::Instant::now();
    let mut stalled = StreamClient::new(TcpStream::connect(relay.addr("turn-tls")).await.unwrap());
    stalled.write(&[0x16]).await;
    assert!(stalled.closed_within(Duration::from_secs(15)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "closed after {waited:?}, before the 10 s deadline"
    );
    assert_eq!(
        metric(&relay, "natkit_relay_stream_connections_refused_total{transport=\"tls\",reason=\"tls_handshake_timeout\"}"),
        1.0
    );
}

/// A TCP connection to `addr` that starts with `header` (a PROXY protocol header).
async fn after_header(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    tcp
}

/// Behind a TCP load balancer (`--trusted-proxy 127.0.0.1`): the client a PROXY v1 or v2
/// header names is the one XOR-MAPPED-ADDRESS carries and the per-IP limit counts, on the TCP
/// port and the TLS port; a malformed header closes the connection.
#[tokio::test]
async fn a_trusted_balancers_proxy_headers_name_the_client_on_tcp_and_tls() {
    let dir = TempDir::new("proxy-trusted");
    let ca = TestCa::new("natkit test CA");
    let files = ca.issue(&["turn.natkit.test"], dir.path(), "relay");
    let relay = tls_relay(
        &dir,
        &files,
        &["--trusted-proxy", "127.0.0.1", "--stream-per-ip", "1"],
    );
    let (tcp, tls) = (relay.addr("turn-tcp"), relay.addr("turn-tls"));
    let mapped = |m: &Message| xor_mapped(m).map(|a| a.to_string());

    let v1 = format!("PROXY TCP4 192.0.2.7 127.0.0.1 5555 {}\r\n", tcp.port());
    let mut c = StreamClient::new(after_header(tcp, v1.as_bytes()).await);
    let m = c.call(METHOD_BINDING, vec![], None).await;
    assert_eq!(mapped(&m).as_deref(), Some("192.0.2.7:5555"), "v1 on TCP");
    // v2, TCP over IPv4 from 198.51.100.9:6000.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1, 0x17, 0x70, 0x01, 0xbb]);
    let io = tls_client(ca.pem())
        .connect(
            rustls::pki_types::ServerName::try_from("turn.natkit.test").unwrap(),
            after_header(tls, &v2).await,
        )
        .await
        .unwrap();
    let mut t = StreamClient::new(io);
    let m = t.call(METHOD_BINDING, vec![], None).await;
    assert_eq!(
        mapped(&m).as_deref(),
        Some("198.51.100.9:6000"),
        "v2 on TLS"
    );
    // One connection per client: 192.0.2.7 holds its one, so a second is closed; though all
    // come from 127.0.0.1, another carried client is served.
    let mut again = StreamClient::new(after_header(tcp, v1.as_bytes()).await);
    assert!(again.closed_within(Duration::from_secs(5)).await);
    let other = format!("PROXY TCP4 192.0.2.8 127.0.0.1 5556 {}\r\n", tcp.port());
    let mut o = StreamClient::new(after_header(tcp, other.as_bytes()).await);
    let m = o.call(METHOD_BINDING, vec![], None).await;
    assert_eq!(mapped(&m).as_deref(), Some("192.0.2.8:5556"));
    assert_eq!(
        metric(&relay, "natkit_relay_stream_connections_refused_total{transport=\"tcp\",reason=\"per_ip_limit\"}"),
        1.0
    );
    let mut bad = StreamClient::new(after_header(tcp, b"PROXY TCP4 nonsense\r\n").await);
    assert!(bad.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        metric(&relay, "natkit_relay_stream_connections_refused_total{transport=\"tcp\",reason=\"proxy_header\"}"),
        1.0
    );
}

/// With trusted balancers elsewhere (192.0.2.0/24), a PROXY header from this host closes the
/// connection, and a client without one is served as itself.
#[tokio::test]
async fn proxy_headers_from_an_untrusted_source_close_the_connection() {
    let dir = TempDir::new("proxy-untrusted");
    let relay = relay_with(&dir, &["--trusted-proxy", "192.0.2.0/24"]);
    let tcp = relay.addr("turn-tcp");
    let v1 = format!("PROXY TCP4 192.0.2.7 127.0.0.1 5555 {}\r\n", tcp.port());
    let mut c = StreamClient::new(after_header(tcp, v1.as_bytes()).await);
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert_eq!(
        metric(&relay, "natkit_relay_stream_connections_refused_total{transport=\"tcp\",reason=\"proxy_header\"}"),
        1.0
    );
    let mut plain = StreamClient::new(TcpStream::connect(tcp).await.unwrap());
    let m = plain.call(METHOD_BINDING, vec![], None).await;
    assert_eq!(xor_mapped(&m).map(|a| a.ip()), Some([127, 0, 0, 1].into()));
}
