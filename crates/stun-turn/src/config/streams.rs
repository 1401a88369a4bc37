//! The TCP and TLS keys (`tcp`, `tls_*`, `acme_*`, `trusted_proxies`, `stream_*`), checked into
//! a [`StreamConfig`]. The certificate files are only named here; [`crate::tls`] reads them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use natkit_daemon::layer::{self, Setting};

use super::{parse_cidr, parse_opt, Listen, RelayOptions};
use crate::error::ConfigError;

/// The TCP and TLS keys. The files are only named here; [`crate::tls`] reads them when the
/// relay binds (and on every reload).
pub(super) fn streams(o: &RelayOptions, listens: &[Listen]) -> Result<StreamConfig, ConfigError> {
    let listen = listens[0].addr;
    let tcp = match o.tcp.as_ref().map(|s| s.as_str().trim()) {
        None => true,
        Some("on" | "true" | "yes" | "1") => true,
        Some("off" | "false" | "no" | "0") => false,
        Some(v) => {
            return Err(ConfigError::invalid(
                "tcp",
                format!("{v:?} is not on or off"),
            ))
        }
    };
    let tls_listen = match o.tls_listen.as_ref().map(|s| s.as_str().trim()) {
        None | Some("off") => None,
        // ":5349" means the listen IP on that port.
        Some(v) => Some(match v.strip_prefix(':') {
            Some(port) => SocketAddr::new(listen.ip(), Setting::from(port).parse("tls_listen")?),
            None => Setting::from(v).parse("tls_listen")?,
        }),
    };
    let acme = acme(o)?;
    let source = match (&o.tls_cert, &o.tls_key, acme) {
        (None, None, None) => None,
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "acme_domains",
                "tls_cert/tls_key and acme_domains are two sources of the certificate: use one",
            ))
        }
        (None, None, Some(acme)) => Some(CertSource::Acme(acme)),
        (Some(cert), Some(key), None) => Some(CertSource::Files {
            cert: PathBuf::from(cert.as_str()),
            key: PathBuf::from(key.as_str()),
        }),
        (None, Some(_), None) => {
            return Err(ConfigError::invalid(
                "tls_cert",
                "tls_listen needs a PEM certificate file (or acme_domains)",
            ))
        }
        (Some(_), None, None) => {
            return Err(ConfigError::invalid(
                "tls_key",
                "tls_listen needs a PEM private key file",
            ))
        }
    };
    let tls = match (tls_listen, source) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "tls_listen",
                "a certificate is configured but tls_listen is not; set it, e.g. 0.0.0.0:5349 (0.0.0.0:443 for ACME)",
            ))
        }
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "tls_cert",
                "tls_listen needs a PEM certificate file (or acme_domains)",
            ))
        }
        (Some(addr), Some(source)) => {
            if listens.iter().any(|l| l.addr == addr) && addr.port() != 0 && tcp {
                return Err(ConfigError::invalid(
                    "tls_listen",
                    "must differ from the listen address while tcp is on",
                ));
            }
            Some(TlsConfig {
                listen: addr,
                source,
                name: o
                    .tls_name
                    .as_ref()
                    .map(|n| n.as_str().trim().to_owned())
                    .filter(|n| !n.is_empty()),
            })
        }
    };
    if tls.is_none() && o.tls_name.is_some() {
        return Err(ConfigError::invalid("tls_name", "needs tls_listen"));
    }
    let trusted_proxies = layer::items(&o.trusted_proxies)
        .map(|v| parse_cidr("trusted_proxies", v))
        .collect::<Result<_, _>>()?;
    Ok(StreamConfig {
        tcp,
        tls,
        trusted_proxies,
        per_ip: parse_opt("stream_per_ip", &o.stream_per_ip)?.unwrap_or(DEFAULT_STREAM_PER_IP),
        total: parse_opt("stream_total", &o.stream_total)?.unwrap_or(DEFAULT_STREAM_TOTAL),
    })
}

/// TCP/TLS connections one source IP may hold by default.
pub const DEFAULT_STREAM_PER_IP: u32 = 100;
/// TCP/TLS connections the relay holds by default.
pub const DEFAULT_STREAM_TOTAL: u32 = 10_000;

/// TURN over TCP (RFC 8656 section 3.1) and TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// TCP on the UDP listen address.
    pub tcp: bool,
    pub tls: Option<TlsConfig>,
    /// Load balancers whose connections start with a PROXY protocol header.
    pub trusted_proxies: Vec<IpNet>,
    /// Connections per source IP; 0 = unlimited.
    pub per_ip: u32,
    /// Connections in all; 0 = unlimited.
    pub total: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            tcp: true,
            tls: None,
            trusted_proxies: Vec::new(),
            per_ip: DEFAULT_STREAM_PER_IP,
            total: DEFAULT_STREAM_TOTAL,
        }
    }
}

/// The TLS listener and where its certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub source: CertSource,
    /// The name in `turns:` URLs; `None`: the certificate's first DNS name (the first
    /// of `acme_domains` with ACME).
    pub name: Option<String>,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// PEM files, reloaded on SIGHUP and when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// An ACME directory ([`crate::acme`]).
    Acme(AcmeConfig),
}

/// The ACME keys (`acme_*`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// Host names the certificate names, lower case, no wildcards (TLS-ALPN-01 cannot prove one).
    pub domains: Vec<String>,
    pub directory: String,
    pub email: Option<String>,
    pub state_dir: PathBuf,
    /// The root the directory's HTTPS certificate chains to, when not a public one.
    pub ca: Option<PathBuf>,
}

/// The `acme_*` keys: `None` without `acme_domains` (and then none of the others may be set).
fn acme(o: &RelayOptions) -> Result<Option<AcmeConfig>, ConfigError> {
    let domains: Vec<String> = layer::items(&o.acme_domains)
        .map(str::to_ascii_lowercase)
        .collect();
    if domains.is_empty() {
        let others = [
            ("acme_directory", o.acme_directory.is_some()),
            ("acme_email", o.acme_email.is_some()),
            ("acme_state_dir", o.acme_state_dir.is_some()),
            ("acme_ca", o.acme_ca.is_some()),
        ];
        if let Some((key, _)) = others.into_iter().find(|(_, set)| *set) {
            return Err(ConfigError::invalid(key, "needs acme_domains"));
        }
        return Ok(None);
    }
    for d in &domains {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if d.starts_with("*.") {
            return Err(ConfigError::invalid(
                "acme_domains",
                format!("{d}: a wildcard needs the DNS-01 challenge, which natkit does not answer; name each host"),
            ));
        }
        if d.parse::<IpAddr>().is_ok() || !d.contains('.') || !d.split('.').all(label_ok) {
            return Err(ConfigError::invalid(
                "acme_domains",
                format!("{d:?} is not a DNS name like turn.example.com"),
            ));
        }
    }
    let directory = o
        .acme_directory
        .as_ref()
        .map_or(crate::acme::LETS_ENCRYPT, |d| d.as_str().trim())
        .to_owned();
    if !directory.starts_with("https://") {
        return Err(ConfigError::invalid(
            "acme_directory",
            format!("{directory:?} is not an https:// URL (ACME servers serve over HTTPS only)"),
        ));
    }
    let email = o.acme_email.as_ref().map(|e| e.as_str().trim().to_owned());
    if let Some(e) = &email {
        if !e.contains('@') || e.contains(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "acme_email",
                format!("{e:?} is not an e-mail address"),
            ));
        }
    }
    Ok(Some(AcmeConfig {
        domains,
        directory,
        email,
        state_dir: PathBuf::from(
            o.acme_state_dir
                .as_ref()
                .map_or(crate::acme::DEFAULT_STATE_DIR, |d| d.as_str()),
        ),
        ca: o.acme_ca.as_ref().map(|c| PathBuf::from(c.as_str())),
    }))
}
