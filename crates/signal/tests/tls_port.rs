//! natkit-signal's one TLS port (`--tls-listen`) on loopback, with a certificate from a CA made
//! here: the page and `/v1/ice-servers` over HTTPS, a join over WSS, coturn's
//! `turnutils_uclient -t -S` relaying through the same port, with ALPN absent, `http/1.1`,
//! `stun.turn` and a browser's `h2,http/1.1`; a client that sends nothing is closed at the
//! deadline and one that sends garbage at once, while others are served meanwhile.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use natkit_testkit::tls::{TempDir, TestCa};
use natkit_testkit::{binding_on, http_get, uclient_totals, workspace_bin, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

const SECRET: &str = "tls-port-secret";
const NAME: &str = "signal.natkit.test";

struct Server {
    daemon: Daemon,
    ca: String,
    authority: TestCa,
    dir: TempDir,
}

fn server() -> Server {
    server_with(&[])
}

fn server_with(env: &[(&str, &str)]) -> Server {
    let dir = TempDir::new("signal-tls-port");
    let ca = TestCa::new("natkit signal test CA");
    let files = ca.issue(&[NAME, "127.0.0.1"], dir.path(), "signal");
    let daemon = Daemon::start(
        Command::new(workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", SECRET)
            .env("NATKIT_ALT_PORT", "0")
            .env("NATKIT_ALLOW_PEER", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .args(["--open", "--listen", "127.0.0.1:0"])
            .args([
                "--relay-listen",
                "127.0.0.1:0",
                "--tls-listen",
                "127.0.0.1:0",
            ])
            .args(["--tls-cert", files.cert.to_str().unwrap()])
            .args(["--tls-key", files.key.to_str().unwrap()])
            .args(["--metrics-listen", "127.0.0.1:0"]),
    );
    Server {
        daemon,
        ca: ca.pem().to_owned(),
        authority: ca,
        dir,
    }
}

impl Server {
    fn port(&self) -> u16 {
        self.daemon.addr("turn-tls").port()
    }

    /// A TLS connection to the shared port offering `alpn`, the server verified by the CA.
    async fn tls(&self, alpn: &[&str]) -> tokio_rustls::client::TlsStream<TcpStream> {
        self.tls_after(b"", alpn).await.unwrap()
    }

    /// The same after `first` (a PROXY header) in clear: the handshake's outcome.
    async fn tls_after(
        &self,
        first: &[u8],
        alpn: &[&str],
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port()))
            .await
            .unwrap();
        tcp.write_all(first).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(NAME).unwrap(), tcp)
            .await
    }

    /// `GET path` over TLS offering `alpn`: the whole response.
    async fn get(&self, path: &str, alpn: &[&str]) -> String {
        let mut s = self.tls(alpn).await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut body = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body)).await;
        String::from_utf8_lossy(&body).into_owned()
    }

    /// A STUN Binding over TLS offering `alpn`: the response's first two bytes.
    async fn binding(&self, alpn: &[&str]) -> [u8; 2] {
        let (typ, _) = binding_on(self.tls(alpn).await).await;
        typ
    }

    /// `natkit_signal_connections_refused_total{reason}` once it reads `want`, or its value
    /// after 3 s: a refused connection is counted just after it is closed, so the client that
    /// saw the close may ask a moment too early.
    fn refused(&self, reason: &str, want: f64) -> f64 {
        let series = format!("natkit_signal_connections_refused_total{{reason=\"{reason}\"}}");
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let text = http_get(&format!("http://{}/metrics", self.daemon.addr("metrics")));
            let value = text
                .contains(&series)
                .then(|| natkit_testkit::metric(&text, &series));
            match value {
                Some(v) if v == want || std::time::Instant::now() >= deadline => return v,
                None if std::time::Instant::now() >= deadline => {
                    return natkit_testkit::metric(&text, &series)
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `GET /` on the plain web port after `first`: the response (a redirect to the TLS port),
    /// empty when closed.
    async fn http_after(&self, first: &[u8]) -> String {
        self.http_get_after(first, "/").await
    }

    async fn http_get_after(&self, first: &[u8], path: &str) -> String {
        let mut s = TcpStream::connect(self.daemon.addr("http")).await.unwrap();
        s.write_all(first).await.unwrap();
        let _ = s
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
        let mut body = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body)).await;
        String::from_utf8_lossy(&body).into_owned()
    }

    /// The certificate a new handshake gets (DER).
    async fn served_certificate(&self) -> Vec<u8> {
        let tls = self.tls(&[]).await;
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    fn metric(&self, kind: &str) -> f64 {
        let text = http_get(&format!("http://{}/metrics", self.daemon.addr("metrics")));
        natkit_testkit::metric(
            &text,
            &format!("natkit_signal_port_connections_total{{kind=\"{kind}\"}}"),
        )
    }
}

#[tokio::test]
async fn one_tls_port_serves_the_page_the_api_wss_and_turn_whatever_the_alpn() {
    let s = server();
    let port = s.port();
    let alpns: [&[&str]; 4] = [&[], &["http/1.1"], &["stun.turn"], &["h2", "http/1.1"]];
    for alpn in alpns {
        let page = s.get("/", alpn).await;
        assert!(page.starts_with("HTTP/1.1 200"), "{alpn:?}: {page}");
        assert!(page.contains("natkit.js"), "{alpn:?}: the demo page");
        // 0x0101: Binding success response.
        assert_eq!(s.binding(alpn).await, [0x01, 0x01], "{alpn:?}");
    }
    let api = s.get("/v1/ice-servers", &[]).await;
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    assert!(
        api.contains(&format!("turns:{NAME}:{port}?transport=tcp")),
        "the TLS port is handed out as turns: {api}"
    );

    // A join over WSS.
    let tls = s.tls(&["http/1.1"]).await;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{NAME}/v1/ws"), tls)
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"join","room":"over-wss"}"#.into(),
    ))
    .await
    .unwrap();
    let welcome = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        welcome.to_text().unwrap().contains(r#""type":"welcome""#),
        "{welcome:?}"
    );

    // coturn's client relays through the same port (-t -S: TURN over TLS).
    uclient_relays_through(port, &["-t", "-S"]).await;

    // Four pages and the API; the WebSocket; four Bindings and uclient's two clients.
    assert_eq!(s.metric("https"), 5.0);
    assert_eq!(s.metric("wss"), 1.0);
    assert!(s.metric("turn") >= 6.0, "{}", s.metric("turn"));
}

#[tokio::test]
async fn silent_and_garbage_clients_are_closed_and_others_served_meanwhile() {
    let s = server();
    // Garbage after the handshake: closed at once.
    let mut junk = s.tls(&[]).await;
    junk.write_all(&[0xff; 8]).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(2), junk.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "garbage is closed at once: {r:?}"
    );
    // One that never starts TLS, one that finishes the handshake and says nothing.
    let began = Instant::now();
    let mut mute_tcp = TcpStream::connect(("127.0.0.1", s.port())).await.unwrap();
    let mut mute_tls = s.tls(&[]).await;
    // Served meanwhile.
    for _ in 0..3 {
        assert!(s.get("/", &[]).await.starts_with("HTTP/1.1 200"));
        assert_eq!(s.binding(&[]).await, [0x01, 0x01]);
    }
    let closed_tcp = tokio::time::timeout(Duration::from_secs(15), mute_tcp.read(&mut buf)).await;
    assert!(
        matches!(closed_tcp, Ok(Ok(0)) | Ok(Err(_))),
        "{closed_tcp:?}"
    );
    let closed_tls = tokio::time::timeout(Duration::from_secs(15), mute_tls.read(&mut buf)).await;
    assert!(
        matches!(closed_tls, Ok(Ok(0)) | Ok(Err(_))),
        "{closed_tls:?}"
    );
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(14),
        "closed at the 10 s deadline: {took:?}"
    );
    assert_eq!(s.metric("unknown"), 1.0);
    assert_eq!(s.metric("handshake_timeout"), 1.0);
    assert_eq!(s.metric("silent"), 1.0);
}

/// A renewal tool replaces the certificate files: new handshakes get the new certificate within
/// a few seconds, with no SIGHUP; half-written files keep the old one serving.
#[tokio::test]
async fn replaced_certificate_files_are_served_without_a_signal() {
    let s = server();
    let first = s.served_certificate().await;
    // A broken certificate file: the old one stays.
    std::fs::write(s.dir.path().join("signal.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        s.served_certificate().await,
        first,
        "a bad file keeps the old certificate"
    );
    assert!(s.get("/", &[]).await.starts_with("HTTP/1.1 200"));
    // The new pair.
    s.authority
        .issue(&[NAME, "127.0.0.1"], s.dir.path(), "signal");
    let began = Instant::now();
    let mut now = s.served_certificate().await;
    while now == first && began.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = s.served_certificate().await;
    }
    assert_ne!(now, first, "the new certificate is served");
    eprintln!(
        "new certificate served {:?} after the files changed",
        began.elapsed()
    );
    assert!(s.get("/", &[]).await.starts_with("HTTP/1.1 200"));
}

fn v2_header(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// Behind a TCP load balancer (127.0.0.1 trusted): the client a PROXY v1 or v2 header names is
/// the one TURN maps and the per-IP limit counts, on the TLS port and the web port.
#[tokio::test]
async fn a_trusted_balancers_proxy_headers_name_the_client() {
    let s = server_with(&[
        ("NATKIT_SIGNAL_TRUSTED_PROXIES", "127.0.0.1"),
        ("NATKIT_SIGNAL_MAX_CONNECTIONS_PER_IP", "2"),
    ]);
    let port = s.port();
    let v1 = format!("PROXY TCP4 192.0.2.7 127.0.0.1 5555 {port}\r\n");
    let (typ, mapped) = binding_on(s.tls_after(v1.as_bytes(), &[]).await.unwrap()).await;
    assert_eq!(typ, [0x01, 0x01]);
    assert_eq!(mapped, Some("192.0.2.7:5555".parse().unwrap()), "v1");
    let v2 = v2_header([198, 51, 100, 9], 6000);
    let (_, mapped) = binding_on(s.tls_after(&v2, &[]).await.unwrap()).await;
    assert_eq!(mapped, Some("198.51.100.9:6000".parse().unwrap()), "v2");
    // The balancer's own health check (v2 LOCAL) is served as the balancer.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let (_, mapped) = binding_on(s.tls_after(local, &[]).await.unwrap()).await;
    assert_eq!(mapped.map(|a| a.ip()), Some("127.0.0.1".parse().unwrap()));
    // Two connections held by one carried client: a third from it is closed, another client's
    // is served. (The held ones sit in their first-bytes wait.)
    let carried = |ip: &str| format!("PROXY TCP4 {ip} 127.0.0.1 4000 {port}\r\n");
    let _held = [
        s.tls_after(carried("192.0.2.50").as_bytes(), &[])
            .await
            .unwrap(),
        s.tls_after(carried("192.0.2.50").as_bytes(), &[])
            .await
            .unwrap(),
    ];
    assert!(
        s.tls_after(carried("192.0.2.50").as_bytes(), &[])
            .await
            .is_err(),
        "a third connection of one client is closed"
    );
    let other = s
        .tls_after(carried("192.0.2.51").as_bytes(), &[])
        .await
        .unwrap();
    assert_eq!(binding_on(other).await.0, [0x01, 0x01]);
    assert!(s.refused("per_ip_limit", 1.0) >= 1.0);
    // The web port reads the header too.
    let page = s
        .http_after(b"PROXY TCP4 192.0.2.8 127.0.0.1 4001 80\r\n")
        .await;
    assert!(page.starts_with("HTTP/1.1 308"), "{page}");
    // So does the embedded relay's own TCP port: the node's balancers stand in front of it too.
    let relay_tcp = s.daemon.addr("turn-tcp");
    let mut tcp = TcpStream::connect(relay_tcp).await.unwrap();
    let v1 = format!(
        "PROXY TCP4 192.0.2.9 127.0.0.1 5557 {}\r\n",
        relay_tcp.port()
    );
    tcp.write_all(v1.as_bytes()).await.unwrap();
    let (_, mapped) = binding_on(tcp).await;
    assert_eq!(mapped, Some("192.0.2.9:5557".parse().unwrap()), "relay TCP");
    let bad = s.http_after(b"PROXY TCP4 nonsense\r\n").await;
    assert!(bad.is_empty(), "a bad header closes: {bad}");
    assert_eq!(s.refused("bad_proxy_header", 1.0), 1.0);
}

/// With no trusted balancer (the default), a PROXY header closes the connection, on both ports.
#[tokio::test]
async fn proxy_headers_from_anyone_else_close_the_connection() {
    let s = server();
    let v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n";
    assert!(s.tls_after(v1, &[]).await.is_err());
    assert!(s
        .tls_after(&v2_header([192, 0, 2, 7], 1), &[])
        .await
        .is_err());
    assert!(s.http_after(v1).await.is_empty());
    assert_eq!(s.refused("untrusted_proxy_header", 3.0), 3.0);
    // Without one, served as before, the connection's own address mapped.
    let (_, mapped) = binding_on(s.tls(&[]).await).await;
    assert_eq!(mapped.map(|a| a.ip()), Some("127.0.0.1".parse().unwrap()));
    assert!(s.http_after(b"").await.starts_with("HTTP/1.1 308"));
}

/// The plain web port carries TURN over TCP beside HTTP: coturn's `turnutils_uclient -t`
/// relays through it, and the page is served on it meanwhile.
#[tokio::test]
async fn the_web_port_carries_turn_over_tcp_beside_http() {
    let s = server();
    let http = s.daemon.addr("http");
    let uclient = uclient_relays_through(http.port(), &["-t"]);
    let page = s.http_after(b"");
    let ((), page) = tokio::join!(uclient, page);
    assert!(page.starts_with("HTTP/1.1 308"), "{page}");
    assert!(s.metric("turn_tcp") >= 2.0, "{}", s.metric("turn_tcp"));
}

/// coturn's `turnutils_uclient` with `flags` through `port` on loopback, two clients relaying to
/// a `turnutils_peer`: every message comes back.
async fn uclient_relays_through(port: u16, flags: &[&str]) {
    let peer_port = natkit_testkit::third_party_udp_port();
    let _peer = natkit_testkit::Process::spawn(
        Command::new(natkit_testkit::coturn_tool("turnutils_peer"))
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::process::Command::new(natkit_testkit::coturn_tool("turnutils_uclient"))
        .args(flags)
        .args(["-W", SECRET, "-u", "uclient", "-e", "127.0.0.1"])
        .args(["-r", &peer_port.to_string(), "-n", "50", "-m", "2"])
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (sent, received) = uclient_totals(&text).expect("uclient's totals");
    assert!(sent >= 100, "uclient sent {sent}:\n{text}");
    assert_eq!(sent, received, "every message comes back:\n{text}");
}

/// With the TLS port on, the plain web port sends the pages there (permanent redirect, path and
/// query kept); the HTTP API stays in clear for the clients that use it; the private listener's
/// health check stays plain.
#[tokio::test]
async fn plain_page_requests_are_sent_to_the_tls_port() {
    let s = server();
    let port = s.port();
    for path in ["/?room=demo&token=abc", "/check"] {
        let r = s.http_get_after(b"", path).await;
        assert!(r.starts_with("HTTP/1.1 308"), "{path}: {r}");
        let want = format!("location: https://{NAME}:{port}{path}\r\n");
        assert!(r.to_lowercase().contains(&want), "{path}: {r}");
    }
    // The HTTP API and the WebSocket too: tokens and SDP do not travel in clear.
    for path in ["/v1/ice-servers?token=abc", "/v1/ws"] {
        let r = s.http_get_after(b"", path).await;
        assert!(r.starts_with("HTTP/1.1 308"), "{path}: {r}");
        let want = format!("location: https://{NAME}:{port}{path}\r\n");
        assert!(r.to_lowercase().contains(&want), "{path}: {r}");
    }
    let refused = tokio_tungstenite::connect_async(format!("{}/v1/ws", s.daemon.ws_url())).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 308),
        other => panic!("a ws:// upgrade must get the redirect: {other:?}"),
    }
    // Health checks stay plain, on the web port and the metrics listener.
    let health = s.http_get_after(b"", "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let health = http_get(&format!("http://{}/healthz", s.daemon.addr("metrics")));
    assert!(!health.is_empty());
    // The page itself over HTTPS.
    assert!(s.get("/?room=demo", &[]).await.starts_with("HTTP/1.1 200"));
}

/// `--plain-api` (an explicit, warned convenience): the pages still go to HTTPS, the HTTP API
/// and ws:// stay in clear on the web port.
#[tokio::test]
async fn plain_api_keeps_the_api_and_ws_in_clear_and_warns() {
    let s = server_with(&[("NATKIT_SIGNAL_PLAIN_API", "true")]);
    let page = s.http_get_after(b"", "/").await;
    assert!(page.starts_with("HTTP/1.1 308"), "{page}");
    let api = s.http_get_after(b"", "/v1/ice-servers").await;
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/v1/ws", s.daemon.ws_url()))
        .await
        .expect("ws:// stays open with plain_api");
    ws.close(None).await.unwrap();
    assert!(s
        .daemon
        .logged("plain_api: the HTTP API and ws:// are served in clear"));
}
