//! natkit-signal's TLS port with its certificate from ACME, against Debian's `pebble` (a real
//! RFC 8555 server, `natkit_testkit::acme`):
//! started with no certificate, natkit-signal orders one over TLS-ALPN-01 answered on the TLS
//! port itself, serves the page with it (a client verifying the chain to pebble's root), renews
//! the short-lived certificate, keeps it with the account key in the state directory, keeps
//! serving when the ACME server is down (a renewal that fails, and a restart).

use std::process::Command;
use std::time::{Duration, Instant};

use natkit_testkit::acme::{https_get as get, Pebble};
use natkit_testkit::tls::TempDir;
use natkit_testkit::{http_get, metric, third_party_tcp_port};
use natkit_testkit::{workspace_bin, Daemon};
use tokio_rustls::rustls;

const DOMAIN: &str = "signal.natkit.test";
/// Pebble's certificates live this long: renewal is due after two thirds of it.
const VALIDITY_S: u64 = 36;

fn signal(pebble: &Pebble, tls_port: u16, state: &std::path::Path) -> Daemon {
    Daemon::start(
        Command::new(workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", "acme-test-secret")
            .env("NATKIT_ALT_PORT", "0")
            .env("RUST_LOG", "info")
            .args(["--open", "--listen", "127.0.0.1:0"])
            .args(["--relay-listen", "127.0.0.1:0"])
            .args(["--tls-listen", &format!("127.0.0.1:{tls_port}")])
            .args(pebble.flags(DOMAIN, state))
            .args(["--acme-email", "ops@natkit.test"])
            .args(["--metrics-listen", "127.0.0.1:0"]),
    )
}

fn orders(daemon: &Daemon, result: &str) -> f64 {
    let text = http_get(&format!("http://{}/metrics", daemon.addr("metrics")));
    metric(
        &text,
        &format!("natkit_relay_acme_orders_total{{result=\"{result}\"}}"),
    )
}

/// Polls `GET /` until it is served with a certificate that chains to `root` and differs from
/// `not`: that certificate.
async fn served(port: u16, root: &rustls::RootCertStore, not: &[u8], within: Duration) -> Vec<u8> {
    let until = Instant::now() + within;
    loop {
        let last = get(port, DOMAIN, root.clone(), "/").await;
        match &last {
            Ok((page, leaf)) if leaf.as_slice() != not => {
                assert!(page.starts_with("HTTP/1.1 200"), "{page:.200}");
                return leaf.clone();
            }
            _ if Instant::now() < until => tokio::time::sleep(Duration::from_millis(250)).await,
            _ => panic!(
                "no new certificate served within {within:?}: {:?}",
                last.map(|(p, _)| p.chars().take(80).collect::<String>())
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_pebble_over_tls_alpn_01_is_served_renewed_kept_and_outlives_the_acme_server(
) {
    let dir = TempDir::new("signal-acme");
    let state = dir.path().join("acme-state");
    let tls_port = third_party_tcp_port();
    let mut pebble = Pebble::start(dir.path(), tls_port, VALIDITY_S);
    let root = pebble.root().await;

    // No certificate at start (an empty state directory): ordered at once.
    let node = signal(&pebble, tls_port, &state);
    let first = served(tls_port, &root, &[], Duration::from_secs(60)).await;
    assert!(orders(&node, "issued") >= 1.0);
    assert!(node.logged("ACME certificate issued and in use"));
    // The validator's handshake was answered on the shared port and counted as such.
    let text = http_get(&format!("http://{}/metrics", node.addr("metrics")));
    assert!(
        metric(&text, "natkit_signal_port_connections_total{kind=\"acme\"}") >= 1.0,
        "{text}"
    );
    // The account key and the certificate are kept, readable by the owner only.
    for file in ["account.json", "cert.pem", "key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join(file))
            .unwrap_or_else(|e| panic!("{file} in the state directory: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is private: {mode:o}");
    }
    let key = std::fs::read_to_string(state.join("key.pem")).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    assert!(
        !node.log().iter().any(|l| l.contains(key_body)),
        "no key material in the log"
    );

    // Renewed after two thirds of its lifetime; the next handshake gets the new one.
    let second = served(
        tls_port,
        &root,
        &first,
        Duration::from_secs(VALIDITY_S + 30),
    )
    .await;
    assert!(orders(&node, "issued") >= 2.0);
    assert_eq!(orders(&node, "failed"), 0.0);

    // The ACME server goes away: the next renewal fails, is counted, and the certificate in use
    // stays (with a third of its lifetime left, still valid for the checks below).
    pebble.server.kill();
    natkit_testkit::wait_until(
        "a renewal that fails",
        Duration::from_secs(VALIDITY_S + 30),
        || orders(&node, "failed") >= 1.0,
    );
    assert!(node.logged("ACME renewal failed; the current certificate stays in use"));
    let (page, leaf) = get(tls_port, DOMAIN, root.clone(), "/").await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page:.200}");
    let kept = leaf;
    assert_ne!(kept, first, "the renewed certificate is the one in use");

    // A restart with the ACME server still down serves the kept certificate at once.
    drop(node);
    let node = signal(&pebble, tls_port, &state);
    let (page, leaf) = get(tls_port, DOMAIN, root.clone(), "/")
        .await
        .expect("the kept certificate is served at start");
    assert!(page.starts_with("HTTP/1.1 200"), "{page:.200}");
    assert!(
        leaf == second || leaf == kept,
        "the certificate kept in the state directory"
    );
    assert!(node.logged("serving the certificate kept in acme_state_dir"));
}
