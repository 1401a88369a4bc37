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
use natkit_testkit::{http_get, uclient_totals, workspace_bin, Daemon};
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
    let dir = TempDir::new("signal-tls-port");
    let ca = TestCa::new("natkit signal test CA");
    let files = ca.issue(&[NAME, "127.0.0.1"], dir.path(), "signal");
    let daemon = Daemon::start(
        Command::new(workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", SECRET)
            .env("NATKIT_ALT_PORT", "0")
            .env("NATKIT_ALLOW_PEER", "127.0.0.1")
            .env("RUST_LOG", "warn")
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
        let tcp = TcpStream::connect(("127.0.0.1", self.port()))
            .await
            .unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(NAME).unwrap(), tcp)
            .await
            .unwrap()
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
        let mut s = self.tls(alpn).await;
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(&[7u8; 12]);
        s.write_all(&req).await.unwrap();
        let mut head = [0u8; 20];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
            .await
            .expect("a Binding response in time")
            .unwrap();
        assert_eq!(&head[8..20], &[7u8; 12], "the transaction id comes back");
        [head[0], head[1]]
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
    let peer_port = natkit_testkit::third_party_udp_port();
    let _peer = natkit_testkit::Process::spawn(
        Command::new(natkit_testkit::coturn_tool("turnutils_peer"))
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = tokio::process::Command::new(natkit_testkit::coturn_tool("turnutils_uclient"))
        .args(["-t", "-S", "-W", SECRET, "-u", "uclient", "-e", "127.0.0.1"])
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

    // Four pages, the API, the WebSocket; four Bindings and uclient's two clients.
    assert_eq!(s.metric("https"), 6.0);
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
