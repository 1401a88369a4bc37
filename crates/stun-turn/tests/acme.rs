//! A standalone natkit-relay whose TLS certificate comes from ACME (Debian's `pebble`,
//! `natkit_testkit::acme`): the TLS-ALPN-01 challenge answered on its own TLS listener, then
//! TURN clients served over TLS with the issued certificate, with and without ALPN.

use std::time::Duration;

use natkit_testkit::acme::{connect, Pebble};
use natkit_testkit::tls::TempDir;
use natkit_testkit::{binding_on, http_get, metric, third_party_tcp_port, workspace_bin, Daemon};

const DOMAIN: &str = "relay.natkit.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_answers_tls_alpn_01_on_its_tls_listener_and_serves_turn_with_the_certificate() {
    let dir = TempDir::new("relay-acme");
    let tls_port = third_party_tcp_port();
    let pebble = Pebble::start(dir.path(), tls_port, 3600);
    let root = pebble.root().await;
    let relay = Daemon::start(
        std::process::Command::new(workspace_bin("natkit-relay"))
            .env("NATKIT_TURN_SECRET", "acme-relay-secret")
            .args(["--listen", "127.0.0.1:0", "--alt-port", "0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--tls-listen", &format!("127.0.0.1:{tls_port}")])
            .args(pebble.flags(DOMAIN, &dir.path().join("state"))),
    );

    let until = std::time::Instant::now() + Duration::from_secs(60);
    let tls = loop {
        match connect(tls_port, DOMAIN, root.clone(), &[]).await {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() > until => {
                panic!("no certificate from pebble within 60 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    assert_eq!(
        binding_on(tls).await.0,
        [0x01, 0x01],
        "Binding success, no ALPN"
    );
    // A TURN client that offers `stun.turn` (RFC 7443) gets it, not a refusal.
    let tls = connect(tls_port, DOMAIN, root.clone(), &["stun.turn"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"stun.turn"[..]));
    assert_eq!(
        binding_on(tls).await.0,
        [0x01, 0x01],
        "Binding success, stun.turn"
    );

    let text = http_get(&format!("http://{}/metrics", relay.addr("metrics")));
    assert_eq!(
        metric(&text, "natkit_relay_acme_orders_total{result=\"issued\"}"),
        1.0
    );
    let expiry = metric(
        &text,
        "natkit_relay_tls_certificate_expiry_timestamp_seconds",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 3000.0 && expiry < now + 3700.0,
        "expiry {expiry} is about an hour after {now}"
    );
    assert!(relay.logged("turns: URLs name the first of acme_domains"));
}
