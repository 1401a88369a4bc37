//! Errors of the relay library. Messages are lowercase and never contain a secret or a password.

use std::net::SocketAddr;

pub use natkit_turn_core::error::{CredentialError, RevocationError};

/// Starting or running the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Another process holds the port, or the address is not on this host.
    #[error("cannot bind udp {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// `--kernel-path` could not load or attach the TC program.
    #[error("cannot start the kernel path on {ifaces}")]
    KernelPath {
        ifaces: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `--kernel-path` given to a build without the program.
    #[error("--kernel-path needs a natkit-relay built with `cargo build --release --features natkit-stun-turn/kernel-path` (which needs clang); this one was built without it")]
    KernelPathNotBuilt,
    /// The kernel refused an epoll instance (the process's descriptor limit, `ulimit -n`).
    #[error("cannot create the relayed sockets' epoll set")]
    Poller(#[source] std::io::Error),
    /// Another process holds the TCP port (often a second relay, or a web server on 443).
    #[error("cannot listen on tcp {addr}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot read local address of a bound socket")]
    LocalAddr(#[source] std::io::Error),
    /// RFC 5780 needs two concrete addresses; a wildcard primary address cannot be told apart.
    #[error("--alt-ip {alt_ip} needs a concrete --listen address, not {listen}")]
    AltIpNeedsConcreteListen {
        listen: SocketAddr,
        alt_ip: std::net::IpAddr,
    },
    #[error("--alt-ip {alt_ip} must differ from the listen address")]
    AltIpSameAsListen { alt_ip: std::net::IpAddr },
    /// Every listen address was of a family the host lacks (only the default IPv6 listener may
    /// be left out; an asked-for address that fails is its own error).
    #[error("no listen address could be bound: set --listen to an address of this host")]
    NoListener,
    #[error("alt port {port} must differ from the listen port")]
    AltPortSameAsListen { port: u16 },
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The revocation file has a line that is not `user ID` or `token ID`.
    #[error("revoked_file {path}")]
    RevokedFile {
        path: String,
        #[source]
        source: RevocationError,
    },
}

/// A TLS certificate or key file that cannot be used. Names the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls file {path}: cannot read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM `CERTIFICATE` block (a key file given as the certificate?).
    #[error("tls_cert {path}: no PEM certificate in it")]
    NoCertificate { path: String },
    /// The file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("tls_key {path}: no PEM private key in it")]
    NoKey { path: String },
    /// The ACME state directory cannot be used.
    #[error("{0}")]
    Acme(String),
    /// The certificate cannot be parsed, or the key does not belong to it.
    #[error("tls_cert {cert} with tls_key {key}: {message}")]
    Unusable {
        cert: String,
        key: String,
        message: String,
    },
    /// No `--tls-name` and the certificate names no DNS host for `turns:` URLs.
    #[error("tls_cert {path}: names no DNS host; set tls_name")]
    NoName { path: String },
}

/// The configuration could not be turned into a valid relay configuration.
/// Every variant names the key so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    File(#[from] natkit_daemon::layer::FileError),
    /// A variable clap could not read (not UTF-8, say).
    #[error("environment: {message}")]
    Environment { message: String },
    #[error("secret_file {path}: cannot read")]
    ReadSecret {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Set `NATKIT_TURN_SECRET`, or `secret_file` to a file of secrets.
    #[error("no TURN secret configured: set NATKIT_TURN_SECRET or secret_file (--secret-file FILE, one secret per line)")]
    NoSecret,
    #[error(transparent)]
    Credential(#[from] CredentialError),
}

impl From<natkit_daemon::layer::Invalid> for ConfigError {
    fn from(e: natkit_daemon::layer::Invalid) -> Self {
        ConfigError::Invalid {
            key: e.key,
            message: e.message,
        }
    }
}

impl ConfigError {
    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            message: message.into(),
        }
    }
}
