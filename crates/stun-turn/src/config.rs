//! Relay configuration: command-line flags, `NATKIT_*` environment variables and an optional TOML
//! file, merged with precedence flags > environment > file > defaults by [`RawSettings::merge`],
//! then validated into a typed [`Settings`] before any socket is bound.
//!
//! Every key has the same name in all three places: `--relay-ports`, `NATKIT_RELAY_PORTS`,
//! `relay_ports`. The secret is the exception on purpose: it comes from `NATKIT_TURN_SECRET` or
//! from `secret_file`, never from a flag (flags show up in `ps` and shell history).

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::allocation::MAX_LIFETIME;
use crate::credentials::{Secret, Secrets};
use crate::error::ConfigError;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:3478";
pub const DEFAULT_RELAY_PORTS: RangeInclusive<u16> = 49152..=65535;
pub const DEFAULT_REALM: &str = "natkit";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9641";
/// Environment variable holding the current TURN secret.
pub const SECRET_ENV: &str = "NATKIT_TURN_SECRET";

/// The relay's flags, shared by `natkit-relay` and (later) `natkit-signal`'s embedded relay.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RelayArgs {
    /// UDP address for STUN/TURN [default: 0.0.0.0:3478]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// RFC 5780 alternate port on the same IP [default: the listen port + 1]
    #[arg(long, value_name = "PORT")]
    pub alt_port: Option<String>,
    /// RFC 5780 alternate IP; without it change-IP tests get 420
    #[arg(long, value_name = "IP")]
    pub alt_ip: Option<String>,
    /// Address written into XOR-RELAYED-ADDRESS, for hosts behind 1:1 NAT (coturn's external-ip)
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<String>,
    /// Relayed port range [default: 49152-65535]
    #[arg(long, value_name = "MIN-MAX")]
    pub relay_ports: Option<String>,
    /// Authentication realm [default: natkit]
    #[arg(long)]
    pub realm: Option<String>,
    /// File with one TURN secret per line; the first mints, all verify (rotation)
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<String>,
    /// Peers to allow even if denied by default (CIDR, repeatable)
    #[arg(long, value_name = "CIDR")]
    pub allow_peer: Vec<String>,
    /// Peers to refuse (CIDR, repeatable), e.g. your private network
    #[arg(long, value_name = "CIDR")]
    pub deny_peer: Vec<String>,
    /// Allocations one user may hold at once, 0 = unlimited [default: 10]
    #[arg(long, value_name = "N")]
    pub user_quota: Option<String>,
    /// Allocations the relay holds at once, 0 = unlimited [default: 10000]
    #[arg(long, value_name = "N")]
    pub total_quota: Option<String>,
    /// Binding answers and 401/438 challenges per second to one source IP (bursts of twice
    /// that; a reflection limit), 0 = unlimited [default: 50]
    #[arg(long, value_name = "N")]
    pub answers_per_second: Option<String>,
    /// File of revoked TURN users (`user ID`) and join tokens (`token ID`), re-read when it
    /// changes; revoked users get 401 and lose their allocations within a second
    #[arg(long, value_name = "FILE")]
    pub revoked_file: Option<String>,
    /// Longest allocation lifetime granted, in seconds (coturn's max-allocate-lifetime) [default: 3600]
    #[arg(long, value_name = "SECONDS")]
    pub max_lifetime: Option<String>,
    /// Prometheus endpoint address, or "off" [default: 127.0.0.1:9641]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Announce this relay, its load and its drain every 2 s in the signaling cluster's Redis
    /// (redis://HOST:6379), for natkit-signal nodes with --relay-server cluster
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// TURN over TCP on the listen port (same port as UDP), "on" or "off" [default: on]
    #[arg(long, value_name = "on|off")]
    pub tcp: Option<String>,
    /// Address for TURN over TLS (e.g. 0.0.0.0:5349 or :443), or "off" [default: off]
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<String>,
    /// PEM certificate chain for TLS; reloaded on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key for TLS; reloaded on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Host name in the turns: URLs handed out [default: the certificate's first DNS name]
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
    /// TCP/TLS connections one source IP may hold, 0 = unlimited [default: 100]
    #[arg(long, value_name = "N")]
    pub stream_per_ip: Option<String>,
    /// TCP/TLS connections the relay holds at once, 0 = unlimited [default: 10000]
    #[arg(long, value_name = "N")]
    pub stream_total: Option<String>,
    /// While draining (SIGUSR1), send new clients here with 300 Try Alternate (another relay's
    /// STUN/TURN address); without it they get 486
    #[arg(long, value_name = "ADDR")]
    pub drain_alternate: Option<String>,
    /// Longest drain, in seconds: the relay exits then even with allocations left [default: 600]
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout: Option<String>,
    /// Relay UDP clients' ChannelData in the kernel (a TC program) on packets arriving on this
    /// interface (repeatable); needs a build with the `kernel-path` feature, root (CAP_BPF and
    /// CAP_NET_ADMIN) and --listen on one IPv4 address [default: off]
    #[arg(long, value_name = "IFACE")]
    pub kernel_path: Vec<String>,
}

/// Unvalidated settings from one source. `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSettings {
    pub listen: Option<String>,
    pub alt_port: Option<String>,
    pub alt_ip: Option<String>,
    pub public_ip: Option<String>,
    pub relay_ports: Option<String>,
    pub realm: Option<String>,
    pub secret_file: Option<String>,
    pub allow_peer: Option<Vec<String>>,
    pub deny_peer: Option<Vec<String>>,
    pub user_quota: Option<String>,
    pub total_quota: Option<String>,
    pub answers_per_second: Option<String>,
    pub revoked_file: Option<String>,
    pub max_lifetime: Option<String>,
    pub metrics_listen: Option<String>,
    pub cluster: Option<String>,
    pub tcp: Option<String>,
    pub tls_listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_name: Option<String>,
    pub stream_per_ip: Option<String>,
    pub stream_total: Option<String>,
    pub drain_alternate: Option<String>,
    pub drain_timeout: Option<String>,
    pub kernel_path: Option<Vec<String>>,
}

/// The TOML file's shape. Unknown keys are an error, so a typo does not silently do nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub listen: Option<String>,
    pub alt_port: Option<u16>,
    pub alt_ip: Option<String>,
    pub public_ip: Option<String>,
    pub relay_ports: Option<String>,
    pub realm: Option<String>,
    pub secret_file: Option<String>,
    pub allow_peer: Option<Vec<String>>,
    pub deny_peer: Option<Vec<String>>,
    pub user_quota: Option<u32>,
    pub total_quota: Option<u32>,
    pub answers_per_second: Option<u32>,
    pub revoked_file: Option<String>,
    pub max_lifetime: Option<u32>,
    pub metrics_listen: Option<String>,
    pub cluster: Option<String>,
    pub tcp: Option<bool>,
    pub tls_listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_name: Option<String>,
    pub stream_per_ip: Option<u32>,
    pub stream_total: Option<u32>,
    pub drain_alternate: Option<String>,
    pub drain_timeout: Option<u32>,
    pub kernel_path: Option<Vec<String>>,
}

impl From<RelayArgs> for RawSettings {
    fn from(a: RelayArgs) -> Self {
        let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
        RawSettings {
            listen: a.listen,
            alt_port: a.alt_port,
            alt_ip: a.alt_ip,
            public_ip: a.public_ip,
            relay_ports: a.relay_ports,
            realm: a.realm,
            secret_file: a.secret_file,
            allow_peer: list(a.allow_peer),
            deny_peer: list(a.deny_peer),
            user_quota: a.user_quota,
            total_quota: a.total_quota,
            answers_per_second: a.answers_per_second,
            revoked_file: a.revoked_file,
            max_lifetime: a.max_lifetime,
            metrics_listen: a.metrics_listen,
            cluster: a.cluster,
            tcp: a.tcp,
            tls_listen: a.tls_listen,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            tls_name: a.tls_name,
            stream_per_ip: a.stream_per_ip,
            stream_total: a.stream_total,
            drain_alternate: a.drain_alternate,
            drain_timeout: a.drain_timeout,
            kernel_path: list(a.kernel_path),
        }
    }
}

impl From<FileSettings> for RawSettings {
    fn from(f: FileSettings) -> Self {
        RawSettings {
            listen: f.listen,
            alt_port: f.alt_port.map(|v| v.to_string()),
            alt_ip: f.alt_ip,
            public_ip: f.public_ip,
            relay_ports: f.relay_ports,
            realm: f.realm,
            secret_file: f.secret_file,
            allow_peer: f.allow_peer,
            deny_peer: f.deny_peer,
            user_quota: f.user_quota.map(|v| v.to_string()),
            total_quota: f.total_quota.map(|v| v.to_string()),
            answers_per_second: f.answers_per_second.map(|v| v.to_string()),
            revoked_file: f.revoked_file,
            max_lifetime: f.max_lifetime.map(|v| v.to_string()),
            metrics_listen: f.metrics_listen,
            cluster: f.cluster,
            tcp: f.tcp.map(|v| if v { "on" } else { "off" }.to_owned()),
            tls_listen: f.tls_listen,
            tls_cert: f.tls_cert,
            tls_key: f.tls_key,
            tls_name: f.tls_name,
            stream_per_ip: f.stream_per_ip.map(|v| v.to_string()),
            stream_total: f.stream_total.map(|v| v.to_string()),
            drain_alternate: f.drain_alternate,
            drain_timeout: f.drain_timeout.map(|v| v.to_string()),
            kernel_path: f.kernel_path,
        }
    }
}

impl FileSettings {
    /// Parses TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
    }

    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

impl RawSettings {
    /// Reads `NATKIT_*` variables from `vars` (pass `std::env::vars()`). Lists are comma-separated.
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut s = RawSettings::default();
        let list = |v: &str| {
            Some(
                v.split(',')
                    .map(|x| x.trim().to_owned())
                    .filter(|x| !x.is_empty())
                    .collect(),
            )
        };
        for (k, v) in vars {
            // An empty variable counts as unset (compose files pass `${VAR:-}` through).
            if v.trim().is_empty() {
                continue;
            }
            match k.as_str() {
                "NATKIT_LISTEN" => s.listen = Some(v),
                "NATKIT_ALT_PORT" => s.alt_port = Some(v),
                "NATKIT_ALT_IP" => s.alt_ip = Some(v),
                "NATKIT_PUBLIC_IP" => s.public_ip = Some(v),
                "NATKIT_RELAY_PORTS" => s.relay_ports = Some(v),
                "NATKIT_REALM" => s.realm = Some(v),
                "NATKIT_SECRET_FILE" => s.secret_file = Some(v),
                "NATKIT_ALLOW_PEER" => s.allow_peer = list(&v),
                "NATKIT_DENY_PEER" => s.deny_peer = list(&v),
                "NATKIT_USER_QUOTA" => s.user_quota = Some(v),
                "NATKIT_ANSWERS_PER_SECOND" => s.answers_per_second = Some(v),
                "NATKIT_REVOKED_FILE" => s.revoked_file = Some(v),
                "NATKIT_TOTAL_QUOTA" => s.total_quota = Some(v),
                "NATKIT_MAX_LIFETIME" => s.max_lifetime = Some(v),
                "NATKIT_METRICS_LISTEN" => s.metrics_listen = Some(v),
                "NATKIT_CLUSTER" => s.cluster = Some(v),
                "NATKIT_TCP" => s.tcp = Some(v),
                "NATKIT_TLS_LISTEN" => s.tls_listen = Some(v),
                "NATKIT_TLS_CERT" => s.tls_cert = Some(v),
                "NATKIT_TLS_KEY" => s.tls_key = Some(v),
                "NATKIT_TLS_NAME" => s.tls_name = Some(v),
                "NATKIT_STREAM_PER_IP" => s.stream_per_ip = Some(v),
                "NATKIT_STREAM_TOTAL" => s.stream_total = Some(v),
                "NATKIT_DRAIN_ALTERNATE" => s.drain_alternate = Some(v),
                "NATKIT_DRAIN_TIMEOUT" => s.drain_timeout = Some(v),
                "NATKIT_KERNEL_PATH" => s.kernel_path = list(&v),
                _ => {}
            }
        }
        s
    }

    /// Field by field, the first source that sets a key wins: flags, then environment, then file.
    pub fn merge(flags: RawSettings, env: RawSettings, file: RawSettings) -> RawSettings {
        macro_rules! pick {
            ($($f:ident),*) => {
                RawSettings { $($f: flags.$f.or(env.$f).or(file.$f)),* }
            };
        }
        pick!(
            listen,
            alt_port,
            alt_ip,
            public_ip,
            relay_ports,
            realm,
            secret_file,
            allow_peer,
            deny_peer,
            user_quota,
            total_quota,
            answers_per_second,
            revoked_file,
            max_lifetime,
            metrics_listen,
            cluster,
            tcp,
            tls_listen,
            tls_cert,
            tls_key,
            tls_name,
            stream_per_ip,
            stream_total,
            drain_alternate,
            drain_timeout,
            kernel_path
        )
    }

    /// Validates into typed settings. `secret_env` is the value of `NATKIT_TURN_SECRET`;
    /// `read` reads the secret file (a parameter so tests need no files).
    pub fn resolve(
        self,
        secret_env: Option<String>,
        read: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = parse("listen", self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let streams = self.streams(listen)?;
        let drain = DrainConfig {
            alternate: self
                .drain_alternate
                .as_deref()
                .map(|v| parse("drain_alternate", v))
                .transpose()?,
            timeout: Duration::from_secs(match &self.drain_timeout {
                Some(v) => parse("drain_timeout", v)?,
                None => DEFAULT_DRAIN_TIMEOUT.as_secs(),
            }),
        };
        let alt_port: u16 = match self.alt_port {
            Some(v) => parse("alt_port", &v)?,
            None => default_alt_port(listen.port()),
        };
        let alt_ip: Option<IpAddr> = self.alt_ip.map(|v| parse("alt_ip", &v)).transpose()?;
        let public_ip: Option<IpAddr> =
            self.public_ip.map(|v| parse("public_ip", &v)).transpose()?;
        let relay_ports = match self.relay_ports {
            Some(v) => parse_range(&v)?,
            None => DEFAULT_RELAY_PORTS,
        };
        let realm = self.realm.unwrap_or_else(|| DEFAULT_REALM.to_owned());
        if realm.is_empty() || realm.len() > 127 {
            return Err(ConfigError::invalid("realm", "must be 1 to 127 bytes"));
        }
        let nets = |key: &'static str, v: Option<Vec<String>>| -> Result<Vec<IpNet>, ConfigError> {
            v.unwrap_or_default()
                .iter()
                .map(|s| parse_cidr(key, s))
                .collect()
        };
        let allow_peers = nets("allow_peer", self.allow_peer)?;
        let deny_peers = nets("deny_peer", self.deny_peer)?;
        let user_quota: u32 = match self.user_quota {
            Some(v) => parse("user_quota", &v)?,
            None => 10,
        };
        let total_quota: u32 = match self.total_quota {
            Some(v) => parse("total_quota", &v)?,
            None => 10_000,
        };
        let answers_per_second: u32 = match self.answers_per_second {
            Some(v) => parse("answers_per_second", &v)?,
            None => 50,
        };
        let max_lifetime: u64 = match self.max_lifetime {
            Some(v) => parse("max_lifetime", &v)?,
            None => MAX_LIFETIME.as_secs(),
        };
        if !(1..=86_400).contains(&max_lifetime) {
            return Err(ConfigError::invalid(
                "max_lifetime",
                format!("{max_lifetime} is not between 1 and 86400 seconds"),
            ));
        }
        let max_lifetime = Duration::from_secs(max_lifetime);
        let cluster = match self.cluster.as_deref().map(str::trim) {
            None | Some("") | Some("off") => None,
            Some(url) if url.starts_with("redis://") => Some(url.to_owned()),
            Some(url) => {
                return Err(ConfigError::invalid(
                    "cluster",
                    format!("{url:?}: use redis://HOST:PORT (TLS to Redis is not supported)"),
                ))
            }
        };
        let metrics_listen = match self.metrics_listen.as_deref() {
            Some("off") => None,
            Some(v) => Some(parse("metrics_listen", v)?),
            None => Some(DEFAULT_METRICS_LISTEN.parse().expect("valid default")),
        };

        if alt_port != 0 && alt_port == listen.port() {
            return Err(ConfigError::invalid(
                "alt_port",
                "must differ from the listen port",
            ));
        }
        if let Some(ip) = alt_ip {
            if listen.ip().is_unspecified() {
                return Err(ConfigError::invalid(
                    "alt_ip",
                    format!("needs a concrete listen address, not {}", listen.ip()),
                ));
            }
            if ip == listen.ip() {
                return Err(ConfigError::invalid(
                    "alt_ip",
                    "must differ from the listen IP",
                ));
            }
        }

        let kernel_path = self.kernel_path.unwrap_or_default();
        for iface in &kernel_path {
            // IFNAMSIZ is 16 with the terminating NUL.
            if iface.is_empty()
                || iface.len() > 15
                || iface.contains(|c: char| c == '/' || c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::invalid(
                    "kernel_path",
                    format!("{iface:?} is not a network interface name"),
                ));
            }
        }
        if !kernel_path.is_empty() && (!listen.is_ipv4() || listen.ip().is_unspecified()) {
            return Err(ConfigError::invalid(
                "kernel_path",
                format!(
                    "needs listen on one IPv4 address (the packets' destination), not {}",
                    listen.ip()
                ),
            ));
        }

        let mut secrets = Vec::new();
        if let Some(s) = secret_env.filter(|s| !s.is_empty()) {
            secrets.push(
                Secret::new(s.trim().to_owned()).map_err(|_| {
                    ConfigError::invalid("NATKIT_TURN_SECRET", "is only whitespace")
                })?,
            );
        }
        if let Some(path) = &self.secret_file {
            let text = read(path).map_err(|source| ConfigError::ReadSecret {
                path: path.clone(),
                source,
            })?;
            let before = secrets.len();
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                secrets.push(Secret::new(line)?);
            }
            if secrets.len() == before {
                return Err(ConfigError::invalid(
                    "secret_file",
                    format!("{path} holds no secret"),
                ));
            }
        }
        let secrets = if secrets.is_empty() {
            None
        } else {
            Some(Secrets::new(secrets)?)
        };

        Ok(Settings {
            relay: RelayConfig {
                listen,
                alt_port,
                alt_ip,
                public_ip,
                relay_ports,
                realm,
                secrets,
                allow_peers,
                deny_peers,
                user_quota,
                total_quota,
                answers_per_second,
                revoked_file: self.revoked_file.map(std::path::PathBuf::from),
                max_lifetime,
                streams,
                drain,
                kernel_path,
            },
            metrics_listen,
            cluster,
        })
    }
}

impl RawSettings {
    /// The TCP and TLS keys. The files are only named here; [`crate::tls`] reads them when the
    /// relay binds (and on every reload).
    fn streams(&self, listen: SocketAddr) -> Result<StreamConfig, ConfigError> {
        let tcp = match self.tcp.as_deref().map(str::trim) {
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
        let tls_listen = match self.tls_listen.as_deref().map(str::trim) {
            None | Some("off") => None,
            Some(v) => {
                // ":5349" means the listen IP on that port.
                let v = match v.strip_prefix(':') {
                    Some(port) => format!(
                        "{}",
                        SocketAddr::new(listen.ip(), parse("tls_listen", port)?)
                    ),
                    None => v.to_owned(),
                };
                Some(parse::<SocketAddr>("tls_listen", &v)?)
            }
        };
        let tls =
            match (tls_listen, &self.tls_cert, &self.tls_key) {
                (None, None, None) => None,
                (None, _, _) => return Err(ConfigError::invalid(
                    "tls_listen",
                    "tls_cert and tls_key are set but tls_listen is not; set it, e.g. 0.0.0.0:5349",
                )),
                (Some(_), None, _) => {
                    return Err(ConfigError::invalid(
                        "tls_cert",
                        "tls_listen needs a PEM certificate file",
                    ))
                }
                (Some(_), _, None) => {
                    return Err(ConfigError::invalid(
                        "tls_key",
                        "tls_listen needs a PEM private key file",
                    ))
                }
                (Some(addr), Some(cert), Some(key)) => {
                    if addr == listen && addr.port() != 0 && tcp {
                        return Err(ConfigError::invalid(
                            "tls_listen",
                            "must differ from the listen address while tcp is on",
                        ));
                    }
                    Some(TlsConfig {
                        listen: addr,
                        cert: PathBuf::from(cert),
                        key: PathBuf::from(key),
                        name: self.tls_name.clone().filter(|n| !n.trim().is_empty()),
                    })
                }
            };
        if tls.is_none() && self.tls_name.is_some() {
            return Err(ConfigError::invalid("tls_name", "needs tls_listen"));
        }
        let per_ip: u32 = match &self.stream_per_ip {
            Some(v) => parse("stream_per_ip", v)?,
            None => DEFAULT_STREAM_PER_IP,
        };
        let total: u32 = match &self.stream_total {
            Some(v) => parse("stream_total", v)?,
            None => DEFAULT_STREAM_TOTAL,
        };
        Ok(StreamConfig {
            tcp,
            tls,
            per_ip,
            total,
        })
    }
}

/// The RFC 5780 alternate port when none is set: the listen port's neighbour (3479 for 3478),
/// so two relays given different listen ports never clash on it; any free port (0) when the
/// listen port is itself picked by the system.
pub fn default_alt_port(listen_port: u16) -> u16 {
    match listen_port {
        0 => 0,
        u16::MAX => u16::MAX - 1,
        p => p + 1,
    }
}

fn parse<T: std::str::FromStr>(key: &'static str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.trim()
        .parse()
        .map_err(|e| ConfigError::invalid(key, format!("{v:?}: {e}")))
}

fn parse_cidr(key: &'static str, v: &str) -> Result<IpNet, ConfigError> {
    let v = v.trim();
    // A bare address means that single host.
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    v.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| ConfigError::invalid(key, format!("{v:?} is not a CIDR like 10.0.0.0/8")))
}

fn parse_range(v: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = || {
        ConfigError::invalid(
            "relay_ports",
            format!("{v:?} is not MIN-MAX, e.g. 49152-65535"),
        )
    };
    let (lo, hi) = v.trim().split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(ConfigError::invalid(
            "relay_ports",
            format!("{v:?}: need 1 <= MIN <= MAX <= 65535"),
        ));
    }
    Ok(lo..=hi)
}

/// Validated relay configuration. Build it from [`RawSettings::resolve`] or by hand when embedding.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    /// RFC 5780 alternate port; 0 picks a free one (tests).
    pub alt_port: u16,
    pub alt_ip: Option<IpAddr>,
    pub public_ip: Option<IpAddr>,
    pub relay_ports: RangeInclusive<u16>,
    pub realm: String,
    /// `None` until a secret is configured; `natkit-relay` refuses to start without one,
    /// `natkit-signal` generates one.
    pub secrets: Option<Secrets>,
    pub allow_peers: Vec<IpNet>,
    pub deny_peers: Vec<IpNet>,
    /// 0 = unlimited.
    pub user_quota: u32,
    /// 0 = unlimited.
    pub total_quota: u32,
    /// Binding answers and challenges per second to one source IP (bursts of twice that);
    /// 0 = unlimited.
    pub answers_per_second: u32,
    /// Revoked users and tokens (`crate::revocation`), re-read when the file changes.
    pub revoked_file: Option<std::path::PathBuf>,
    /// Longest lifetime an allocation is granted (and refreshed to). The default lifetime is
    /// 600 s or this, whichever is shorter.
    pub max_lifetime: Duration,
    /// TURN over TCP and TLS.
    pub streams: StreamConfig,
    /// What a drain (SIGUSR1) does.
    pub drain: DrainConfig,
    /// Interfaces whose ingress gets the kernel path ([`crate::kernel_path`]); empty = off.
    pub kernel_path: Vec<String>,
}

/// How long a drain may last by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// SIGUSR1: refuse new allocations (300 to `alternate`, else 486), keep the others until they
/// end or `timeout` passes, then exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainConfig {
    pub alternate: Option<SocketAddr>,
    pub timeout: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            alternate: None,
            timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
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
            per_ip: DEFAULT_STREAM_PER_IP,
            total: DEFAULT_STREAM_TOTAL,
        }
    }
}

/// The TLS listener and its PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The name in `turns:` URLs; `None`: the certificate's first DNS name.
    pub name: Option<String>,
}

/// Everything `natkit-relay` needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub relay: RelayConfig,
    pub metrics_listen: Option<SocketAddr>,
    /// The signaling cluster's Redis, where the relay announces itself (`cluster`).
    pub cluster: Option<String>,
}

/// Convenience for binaries: merge flags, the process environment and `--config` into [`Settings`].
pub fn load(args: RelayArgs, config_file: Option<&PathBuf>) -> Result<Settings, ConfigError> {
    let file = match config_file {
        Some(p) => FileSettings::load(&p.to_string_lossy())?.into(),
        None => RawSettings::default(),
    };
    let env = RawSettings::from_env(std::env::vars());
    RawSettings::merge(args.into(), env, file).resolve(std::env::var(SECRET_ENV).ok(), |p| {
        std::fs::read_to_string(p)
    })
}

#[cfg(test)]
mod tests;
