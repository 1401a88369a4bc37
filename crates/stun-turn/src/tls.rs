//! The TLS listener's keys: PEM certificate chain and private key, read at start and again on
//! SIGHUP and when the files change (certificates rotate every 60 to 90 days) without touching
//! live connections: a new handshake takes the current [`rustls::ServerConfig`], an established
//! one keeps its own. Or, with `acme_domains`, a certificate from an ACME directory
//! ([`crate::acme`]), which the listener's configuration resolves per handshake.
//!
//! Also the name `turns:` URLs carry, which the certificate must cover: `tls_name` when
//! configured, else the certificate's first DNS subject alternative name (the first
//! of `acme_domains`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use tracing::{info, warn};

use crate::acme::{self, AcmeCerts};
use crate::config::{AcmeConfig, CertSource, TlsConfig};
use crate::error::TlsError;

/// Where the `turns:` host name comes from, as the relay says at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    /// `tls_name`; `covered` says whether the certificate names it.
    Configured { covered: bool },
    /// The certificate's first DNS name.
    Certificate,
    /// The first of `acme_domains`.
    Acme,
}

/// Where the certificate comes from.
enum Origin {
    Files { cert: PathBuf, key: PathBuf },
    Acme(Arc<AcmeCerts>),
}

/// The certificate's source and the configuration built from it.
pub struct TlsKeys {
    origin: Origin,
    current: RwLock<Arc<ServerConfig>>,
    name: String,
    source: NameSource,
}

impl std::fmt::Debug for TlsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("TlsKeys");
        match &self.origin {
            Origin::Files { cert, key } => d.field("cert", cert).field("key", key),
            Origin::Acme(a) => d.field("acme", &a.config().domains),
        };
        d.field("name", &self.name).finish_non_exhaustive()
    }
}

fn server_config(
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth())
}

struct Loaded {
    config: Arc<ServerConfig>,
    names: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn load(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    };
    let unusable = |message: String| TlsError::Unusable {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        message,
    };
    let names = self::leaf(leaf).map_err(unusable)?.names;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.display().to_string(),
    })?;
    let config = server_config()
        .map_err(|e| unusable(e.to_string()))?
        // Checks that the key matches the certificate.
        .with_single_cert(chain, private)
        .map_err(|e| unusable(e.to_string()))?;
    Ok(Loaded {
        config: Arc::new(config),
        names,
    })
}

/// What a leaf certificate says: its DNS names (subject alternative names, else the common
/// name) and its validity.
pub(crate) struct Leaf {
    pub names: Vec<String>,
    pub not_before: std::time::SystemTime,
    pub not_after: std::time::SystemTime,
}

pub(crate) fn leaf(cert: &CertificateDer<'_>) -> Result<Leaf, String> {
    use x509_parser::prelude::*;
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    if names.is_empty() {
        for cn in parsed.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_owned());
            }
        }
    }
    let time = |t: ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    };
    let v = parsed.validity();
    Ok(Leaf {
        names,
        not_before: time(v.not_before),
        not_after: time(v.not_after),
    })
}

/// Does a certificate name (`*.example.com` or `turn.example.com`) cover `host`?
pub fn name_covers(cert_name: &str, host: &str) -> bool {
    let (c, h) = (cert_name.to_ascii_lowercase(), host.to_ascii_lowercase());
    match c.strip_prefix("*.") {
        Some(suffix) => h
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => c == h,
    }
}

impl TlsKeys {
    /// Reads both files; a missing or bad file is an error naming it.
    pub fn load(cert: &Path, key: &Path, configured_name: Option<&str>) -> Result<Self, TlsError> {
        let loaded = load(cert, key)?;
        let (name, source) = match configured_name {
            Some(n) => (
                n.to_owned(),
                NameSource::Configured {
                    covered: loaded.names.iter().any(|c| name_covers(c, n)),
                },
            ),
            None => match loaded.names.iter().find(|n| !n.starts_with("*.")) {
                Some(n) => (n.clone(), NameSource::Certificate),
                None => {
                    return Err(TlsError::NoName {
                        path: cert.display().to_string(),
                    })
                }
            },
        };
        Ok(TlsKeys {
            origin: Origin::Files {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            current: RwLock::new(loaded.config),
            name,
            source,
        })
    }

    /// Keys whose certificate comes from ACME: the state directory is opened now (a kept
    /// certificate serves at once); [`crate::acme::maintain`] orders and renews.
    pub fn acme(config: AcmeConfig, configured_name: Option<&str>) -> Result<Self, TlsError> {
        let (name, source) = match configured_name {
            Some(n) => (
                n.to_owned(),
                NameSource::Configured {
                    covered: config.domains.iter().any(|d| name_covers(d, n)),
                },
            ),
            None => match config.domains.first() {
                Some(d) => (d.clone(), NameSource::Acme),
                None => {
                    return Err(TlsError::Acme(
                        "acme_domains: no domain to order a certificate for".into(),
                    ))
                }
            },
        };
        let certs = Arc::new(AcmeCerts::open(config).map_err(|e| TlsError::Acme(e.to_string()))?);
        let mut config = server_config()
            .map_err(|e| TlsError::Acme(e.to_string()))?
            .with_cert_resolver(Arc::clone(&certs) as Arc<dyn rustls::server::ResolvesServerCert>);
        config.alpn_protocols = vec![acme::ALPN.to_vec()];
        Ok(TlsKeys {
            origin: Origin::Acme(certs),
            current: RwLock::new(Arc::new(config)),
            name,
            source,
        })
    }

    /// Keys from [`TlsConfig`]: its files read, or its ACME state opened.
    pub fn from_config(config: &TlsConfig) -> Result<Self, TlsError> {
        match &config.source {
            CertSource::Files { cert, key } => Self::load(cert, key, config.name.as_deref()),
            CertSource::Acme(acme) => Self::acme(acme.clone(), config.name.as_deref()),
        }
    }

    /// The ACME certificates, for [`crate::acme::maintain`]; `None` with files.
    pub fn acme_certs(&self) -> Option<Arc<AcmeCerts>> {
        match &self.origin {
            Origin::Acme(a) => Some(Arc::clone(a)),
            Origin::Files { .. } => None,
        }
    }

    /// Reads the files again. On error the previous certificate stays in use. With ACME there
    /// is nothing to read: the certificate changes when it is renewed.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Origin::Files { cert, key } = &self.origin else {
            return Ok(());
        };
        let loaded = load(cert, key)?;
        *self.current.write().expect("tls lock") = loaded.config;
        Ok(())
    }

    /// The configuration new handshakes use, offering `protocols` by ALPN (with ACME,
    /// `acme-tls/1` too: the challenge is answered on this listener). A handshake that
    /// negotiated [`acme::ALPN`] was a validator's: close the connection.
    pub fn current_with_alpn(&self, protocols: &[&[u8]]) -> Arc<ServerConfig> {
        let current = self.current();
        if protocols.is_empty() {
            return current;
        }
        let mut config = (*current).clone();
        let mut alpn: Vec<Vec<u8>> = protocols.iter().map(|p| p.to_vec()).collect();
        alpn.append(&mut config.alpn_protocols);
        config.alpn_protocols = alpn;
        Arc::new(config)
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().expect("tls lock"))
    }

    /// The host name for `turns:` URLs.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn name_source(&self) -> &NameSource {
        &self.source
    }

    /// Where the certificate comes from, for messages: the certificate file, or the ACME
    /// directory.
    pub fn origin(&self) -> String {
        match &self.origin {
            Origin::Files { cert, .. } => cert.display().to_string(),
            Origin::Acme(a) => format!("ACME {}", a.config().directory),
        }
    }
}

/// Says where the `turns:` name comes from, and warns when the certificate does not cover it.
pub fn announce_tls(keys: &TlsKeys) {
    match keys.name_source() {
        NameSource::Certificate => {
            info!(name = keys.name(), cert = %keys.origin(), "turns: URLs name the certificate's first DNS name (set tls_name to choose another)")
        }
        NameSource::Acme => {
            info!(name = keys.name(), directory = %keys.origin(), "turns: URLs name the first of acme_domains; the certificate comes from ACME (TLS-ALPN-01 on this TLS listener)")
        }
        NameSource::Configured { covered: true } => info!(
            name = keys.name(),
            "turns: URLs name tls_name, which the certificate covers"
        ),
        NameSource::Configured { covered: false } => {
            warn!(name = keys.name(), cert = %keys.origin(), "tls_name is not among the certificate's names: TLS clients will refuse it")
        }
    }
}

/// How often [`reload_tls_on_change`] looks at the files.
pub const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The certificate and key files' modification times and sizes: they changed when this does.
fn stamp(keys: &TlsKeys) -> Option<[(std::time::SystemTime, u64); 2]> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    match &keys.origin {
        Origin::Files { cert, key } => Some([one(cert)?, one(key)?]),
        Origin::Acme(_) => None,
    }
}

/// Re-reads the certificate and key when their files change (a renewal tool replaced them),
/// looking every [`WATCH_INTERVAL`]; a file that does not load yet (half written, a key that
/// does not match) keeps the previous certificate in use, said once, and is tried again.
pub async fn reload_tls_on_change(keys: Arc<TlsKeys>) {
    if keys.acme_certs().is_some() {
        return;
    }
    let mut seen = stamp(&keys);
    let mut failed = None;
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tick.tick().await;
        let now = stamp(&keys);
        if now.is_none() || now == seen {
            continue;
        }
        match keys.reload() {
            Ok(()) => {
                info!(cert = %keys.origin(), "tls certificate reloaded: its files changed");
                seen = now;
                failed = None;
            }
            Err(e) if failed != now => {
                warn!(error = %e, "the tls files changed but do not load; the previous certificate stays in use");
                failed = now;
            }
            Err(_) => {}
        }
    }
}

/// Re-reads the TLS certificate and key on every SIGHUP; live connections and allocations stay.
pub async fn reload_tls_on_sighup(keys: Arc<TlsKeys>) {
    if keys.acme_certs().is_some() {
        return;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP: the TLS certificate will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        match keys.reload() {
            Ok(()) => info!(cert = %keys.origin(), "tls certificate reloaded"),
            Err(e) => {
                warn!(error = %e, "tls certificate not reloaded; the previous one stays in use")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let cases = [
            ("turn.example.com", "turn.example.com", true),
            ("TURN.example.com", "turn.EXAMPLE.com", true),
            ("*.example.com", "turn.example.com", true),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "example.com", false),
            ("turn.example.com", "other.example.com", false),
        ];
        for (cert, host, want) in cases {
            assert_eq!(name_covers(cert, host), want, "{cert} / {host}");
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file() {
        let dir = std::env::temp_dir().join(format!("natkit-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["turn.example.test".into()]).unwrap();
        let cert = write(&dir, "cert.pem", &ck.cert.pem());
        let key = write(&dir, "key.pem", &ck.signing_key.serialize_pem());
        let other = rcgen::generate_simple_self_signed(vec!["x.test".into()]).unwrap();
        let other_key = write(&dir, "other-key.pem", &other.signing_key.serialize_pem());
        let garbage = write(&dir, "garbage.pem", "not pem\n");
        let missing = dir.join("missing.pem");

        let keys = TlsKeys::load(&cert, &key, None).unwrap();
        assert_eq!(keys.name(), "turn.example.test");
        assert_eq!(keys.name_source(), &NameSource::Certificate);
        let named = TlsKeys::load(&cert, &key, Some("relay.other.test")).unwrap();
        assert_eq!(
            named.name_source(),
            &NameSource::Configured { covered: false }
        );

        let cases: [(&Path, &Path, &str); 4] = [
            (&missing, &key, "missing.pem: cannot read"),
            (&key, &key, "key.pem: no PEM certificate"),
            (&cert, &garbage, "garbage.pem: no PEM private key"),
            (&cert, &other_key, "with tls_key"),
        ];
        for (c, k, want) in cases {
            let e = TlsKeys::load(c, k, None).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(!e.contains("PRIVATE KEY"), "no key material in {e:?}");
        }
        // A failed reload keeps the old configuration.
        std::fs::write(&cert, "broken").unwrap();
        assert!(keys.reload().is_err());
        let _still = keys.current();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
