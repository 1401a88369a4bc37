//! Debian's `pebble` (an RFC 8555 ACME server) and `pebble-challtestsrv` (its DNS, answering
//! 127.0.0.1 for every name) on free loopback ports, validating TLS-ALPN-01 on the port a test
//! names; and a TLS client that verifies a server's chain to pebble's root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::Process;
use crate::tls::TestCa;
use crate::{third_party_tcp_port, third_party_udp_port, wait_until};

/// The roots in a PEM text.
pub fn roots(pem: &[u8]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(c.expect("PEM certificate"))
            .expect("a usable root");
    }
    roots
}

/// A TLS connection to 127.0.0.1:`port` for `name`, the chain verified to `roots`, offering
/// `alpn`.
pub async fn connect(
    port: u16,
    name: &str,
    roots: rustls::RootCertStore,
    alpn: &[&str],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).expect("name"), tcp)
        .await
}

/// `GET path` over TLS (`http/1.1`): the whole response, and the server's leaf certificate.
pub async fn https_get(
    port: u16,
    name: &str,
    roots: rustls::RootCertStore,
    path: &str,
) -> std::io::Result<(String, Vec<u8>)> {
    let mut s = connect(port, name, roots, &["http/1.1"]).await?;
    let leaf = s.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut body = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body)).await;
    Ok((String::from_utf8_lossy(&body).into_owned(), leaf))
}

/// pebble and its DNS, killed when dropped.
pub struct Pebble {
    _dns: Process,
    pub server: Process,
    /// The directory URL.
    pub directory: String,
    management: u16,
    /// The CA of pebble's own HTTPS (made here), and its file for `--acme-ca`.
    ca: TestCa,
    pub ca_file: PathBuf,
}

impl Pebble {
    /// Starts both, certificates valid `validity_s` seconds, TLS-ALPN-01 checked on `tls_port`.
    pub fn start(dir: &Path, tls_port: u16, validity_s: u64) -> Pebble {
        let ca = TestCa::new("pebble https test CA");
        let files = ca.issue(&["127.0.0.1", "localhost"], dir, "pebble");
        let ca_file = ca.write_ca(dir, "pebble-https-ca.pem");
        let (listen, management) = (third_party_tcp_port(), third_party_tcp_port());
        let dns_port = third_party_udp_port();
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": files.cert,
            "privateKey": files.key,
            "httpPort": third_party_tcp_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_s,
        }});
        let config_file = dir.join("pebble.json");
        std::fs::write(&config_file, config.to_string()).expect("write pebble.json");
        let dns = Process::spawn(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args([
                    "-management",
                    &format!("127.0.0.1:{}", third_party_tcp_port()),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let server = Process::spawn(
            Command::new("pebble")
                .args(["-config", config_file.to_str().expect("utf-8 path")])
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                // No random validation delays, no nonces refused on purpose.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_until("pebble listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", management)).is_ok()
        });
        Pebble {
            _dns: dns,
            server,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            ca,
            ca_file,
        }
    }

    /// pebble's issuing root for this run (it makes a new one at every start).
    pub async fn root(&self) -> rustls::RootCertStore {
        let (response, _) = https_get(
            self.management,
            "127.0.0.1",
            roots(self.ca.pem().as_bytes()),
            "/roots/0",
        )
        .await
        .expect("pebble's management interface answers");
        let pem = &response[response.find("-----BEGIN").expect("a PEM root")..];
        roots(pem.as_bytes())
    }

    /// The flags that point natkit at this server for `domain`, its state in `state`.
    pub fn flags(&self, domain: &str, state: &Path) -> Vec<String> {
        [
            "--acme-domain",
            domain,
            "--acme-directory",
            &self.directory,
            "--acme-ca",
            self.ca_file.to_str().expect("utf-8 path"),
            "--acme-state-dir",
            state.to_str().expect("utf-8 path"),
        ]
        .map(str::to_owned)
        .to_vec()
    }
}
