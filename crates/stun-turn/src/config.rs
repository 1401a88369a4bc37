//! Relay configuration: command-line flags, `NATKIT_*` environment variables and an optional TOML
//! file, all one struct ([`RelayOptions`], natkit-daemon's configuration layer), merged with
//! precedence flags > environment > file > defaults, then validated by [`RelayConfig::try_from`]
//! (or [`Settings::try_from`] for the binary's two extra keys) before any socket is bound. A
//! [`RelayConfig`] cannot hold an invalid value: a relay is never handed one.
//!
//! Every key has the same name in all three places: `--relay-ports`, `NATKIT_RELAY_PORTS`,
//! `relay_ports`. The secret is the exception on purpose: it comes from `NATKIT_TURN_SECRET` or
//! from `secret_file`, never from a flag (flags show up in `ps` and shell history).

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
pub use natkit_daemon::layer::SecretText;
use natkit_daemon::layer::{self, Setting};
use serde::{Deserialize, Serialize};

use crate::allocation::MAX_LIFETIME;
use crate::credentials::{Secret, Secrets};
use crate::error::ConfigError;
pub use crate::family::DefaultFamily;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:3478";
/// The IPv6 listener beside [`DEFAULT_LISTEN`] when `listen` is not set, bound only where the
/// host has IPv6.
pub const DEFAULT_LISTEN_V6: &str = "[::]:3478";
pub const DEFAULT_RELAY_PORTS: RangeInclusive<u16> = 49152..=65535;
pub const DEFAULT_REALM: &str = "natkit";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9641";
/// Environment variable holding the current TURN secret.
pub const SECRET_ENV: &str = "NATKIT_TURN_SECRET";

/// The relay's keys, as written in any of the three places: a flag (`--relay-ports`), an
/// environment variable (`NATKIT_RELAY_PORTS`) or a TOML key (`relay_ports`). Flags and variables
/// are clap's; the file is serde's. [`RelayConfig::try_from`] validates the merged result.
/// natkit-signal's embedded relay reads the same struct from its `[relay]` table and the same
/// variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayOptions {
    /// UDP (and TCP) address for STUN/TURN, one per address family (repeat for both, e.g.
    /// --listen 0.0.0.0:3478 --listen [::]:3478); each family relays in its own family
    /// [default: 0.0.0.0:3478 and, where the host has IPv6, [::]:3478]
    #[arg(long, env = "NATKIT_LISTEN", value_name = "ADDR")]
    #[serde(deserialize_with = "layer::one_or_many")]
    pub listen: Vec<Setting>,
    /// RFC 5780 alternate port on the same IP [default: the listen port + 1]
    #[arg(long, env = "NATKIT_ALT_PORT", value_name = "PORT")]
    pub alt_port: Option<Setting>,
    /// RFC 5780 alternate IP; without it change-IP tests get 420
    #[arg(long, env = "NATKIT_ALT_IP", value_name = "IP")]
    pub alt_ip: Option<Setting>,
    /// Address written into XOR-RELAYED-ADDRESS, for hosts behind 1:1 NAT (coturn's
    /// external-ip); one per family, repeat for both (--public-ip 203.0.113.1 --public-ip
    /// 2001:db8::1)
    #[arg(long, env = "NATKIT_PUBLIC_IP", value_name = "IP")]
    #[serde(deserialize_with = "layer::one_or_many")]
    pub public_ip: Vec<Setting>,
    /// The family of the relayed address an Allocate gets when it asks for none (browsers
    /// never ask): "ipv4" (RFC 8656; IPv6 on a relay without IPv4) or "client" (the family the
    /// client came over, else the other) [default: ipv4]
    #[arg(long, env = "NATKIT_DEFAULT_FAMILY", value_name = "ipv4|client")]
    pub default_family: Option<Setting>,
    /// Relayed port range [default: 49152-65535]
    #[arg(long, env = "NATKIT_RELAY_PORTS", value_name = "MIN-MAX")]
    pub relay_ports: Option<Setting>,
    /// Authentication realm [default: natkit]
    #[arg(long, env = "NATKIT_REALM")]
    pub realm: Option<Setting>,
    /// File with one TURN secret per line; the first mints, all verify (rotation)
    #[arg(long, env = "NATKIT_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<Setting>,
    /// The current TURN secret, from `NATKIT_TURN_SECRET` only: never a flag (flags show in
    /// `ps` and shell history) nor a file key (use `secret_file`). Set by [`load`] and
    /// [`RelayOptions::with_environment_secret`].
    #[arg(skip)]
    #[serde(skip)]
    pub turn_secret: Option<SecretText>,
    /// Peers to allow even if denied by default (CIDR, repeatable)
    #[arg(long, env = "NATKIT_ALLOW_PEER", value_name = "CIDR")]
    pub allow_peer: Vec<Setting>,
    /// Peers to refuse (CIDR, repeatable), e.g. your private network
    #[arg(long, env = "NATKIT_DENY_PEER", value_name = "CIDR")]
    pub deny_peer: Vec<Setting>,
    /// Allocations one user (or one join token's credentials) may hold at once, 0 = unlimited
    /// [default: 10]
    #[arg(long, env = "NATKIT_USER_QUOTA", value_name = "N")]
    pub user_quota: Option<Setting>,
    /// Allocations the relay holds at once, 0 = unlimited [default: 10000]
    #[arg(long, env = "NATKIT_TOTAL_QUOTA", value_name = "N")]
    pub total_quota: Option<Setting>,
    /// Binding answers and 401/438 challenges per second to one source IP (bursts of twice
    /// that; a reflection limit), 0 = unlimited [default: 50]
    #[arg(long, env = "NATKIT_ANSWERS_PER_SECOND", value_name = "N")]
    pub answers_per_second: Option<Setting>,
    /// File of revoked TURN users (`user ID`) and join tokens (`token ID`), re-read when it
    /// changes; revoked users get 401 and lose their allocations within a second
    #[arg(long, env = "NATKIT_REVOKED_FILE", value_name = "FILE")]
    pub revoked_file: Option<Setting>,
    /// Longest allocation lifetime granted, in seconds (coturn's max-allocate-lifetime) [default: 3600]
    #[arg(long, env = "NATKIT_MAX_LIFETIME", value_name = "SECONDS")]
    pub max_lifetime: Option<Setting>,
    /// Prometheus endpoint address, or "off" [default: 127.0.0.1:9641]
    #[arg(long, env = "NATKIT_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<Setting>,
    /// Announce this relay, its load and its drain every 2 s in the signaling cluster's Redis
    /// (redis://HOST:6379), for natkit-signal nodes with --relay-server cluster
    #[arg(long, env = "NATKIT_CLUSTER", value_name = "URL")]
    pub cluster: Option<Setting>,
    /// TURN over TCP on the listen port (same port as UDP), "on" or "off" [default: on]
    #[arg(long, env = "NATKIT_TCP", value_name = "on|off")]
    pub tcp: Option<Setting>,
    /// Address for TURN over TLS (e.g. 0.0.0.0:5349 or :443), or "off" [default: off]
    #[arg(long, env = "NATKIT_TLS_LISTEN", value_name = "ADDR")]
    pub tls_listen: Option<Setting>,
    /// PEM certificate chain for TLS; reloaded on SIGHUP and when the file changes
    #[arg(long, env = "NATKIT_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<Setting>,
    /// PEM private key for TLS; reloaded on SIGHUP and when the file changes
    #[arg(long, env = "NATKIT_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<Setting>,
    /// Host name in the turns: URLs handed out [default: the certificate's first DNS name]
    #[arg(long, env = "NATKIT_TLS_NAME", value_name = "NAME")]
    pub tls_name: Option<Setting>,
    /// Take the TLS certificate from an ACME directory for this domain (repeatable; instead of
    /// tls_cert and tls_key): TLS-ALPN-01 is answered on tls_listen, which the ACME server must
    /// reach on port 443; renewed ahead of expiry
    #[arg(long = "acme-domain", env = "NATKIT_ACME_DOMAINS", value_name = "NAME")]
    pub acme_domains: Vec<Setting>,
    /// ACME directory URL [default: Let's Encrypt, https://acme-v02.api.letsencrypt.org/directory]
    #[arg(long, env = "NATKIT_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<Setting>,
    /// Contact e-mail for the ACME account (expiry warnings) [default: none]
    #[arg(long, env = "NATKIT_ACME_EMAIL", value_name = "ADDRESS")]
    pub acme_email: Option<Setting>,
    /// Where the ACME account key and the issued certificate are kept (owner only)
    /// [default: /var/lib/natkit/acme]
    #[arg(long, env = "NATKIT_ACME_STATE_DIR", value_name = "DIR")]
    pub acme_state_dir: Option<Setting>,
    /// PEM root certificate the ACME directory's HTTPS chains to, for a private ACME server
    /// [default: the system's roots]
    #[arg(long, env = "NATKIT_ACME_CA", value_name = "FILE")]
    pub acme_ca: Option<Setting>,
    /// A network whose TCP/TLS connections start with a PROXY protocol header (v1 or v2) naming
    /// the client (repeatable, CIDR): a TCP load balancer. The client it names is the one per-IP
    /// limits, logs and XOR-MAPPED-ADDRESS use; a header from any other source closes the
    /// connection. None by default
    #[arg(
        long = "trusted-proxy",
        env = "NATKIT_TRUSTED_PROXIES",
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<Setting>,
    /// TCP/TLS connections one source IP may hold, 0 = unlimited [default: 100]
    #[arg(long, env = "NATKIT_STREAM_PER_IP", value_name = "N")]
    pub stream_per_ip: Option<Setting>,
    /// TCP/TLS connections the relay holds at once, 0 = unlimited [default: 10000]
    #[arg(long, env = "NATKIT_STREAM_TOTAL", value_name = "N")]
    pub stream_total: Option<Setting>,
    /// While draining (SIGUSR1), send new clients here with 300 Try Alternate (another relay's
    /// STUN/TURN address); without it they get 486
    #[arg(long, env = "NATKIT_DRAIN_ALTERNATE", value_name = "ADDR")]
    pub drain_alternate: Option<Setting>,
    /// Longest drain, in seconds: the relay exits then even with allocations left [default: 600]
    #[arg(long, env = "NATKIT_DRAIN_TIMEOUT", value_name = "SECONDS")]
    pub drain_timeout: Option<Setting>,
    /// Relay UDP clients' ChannelData in the kernel (a TC program) on packets arriving on this
    /// interface (repeatable); needs a build with the `kernel-path` feature, root (CAP_BPF and
    /// CAP_NET_ADMIN) and --listen on one IPv4 address [default: off]
    #[arg(long, env = "NATKIT_KERNEL_PATH", value_name = "IFACE")]
    pub kernel_path: Vec<Setting>,
}

impl RelayOptions {
    /// The relay's keys that the environment sets (`NATKIT_*`), `NATKIT_TURN_SECRET` included.
    pub fn from_env() -> Result<Self, ConfigError> {
        let opts: RelayOptions = layer::from_env().map_err(|e| ConfigError::Environment {
            message: e.to_string().lines().next().unwrap_or_default().to_owned(),
        })?;
        Ok(opts.with_environment_secret())
    }

    /// Reads the TOML file (relay keys at the top).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Ok(layer::read_toml(path)?)
    }

    /// `self` laid over `under`: what `self` sets wins, key by key.
    pub fn over(&self, under: &RelayOptions) -> RelayOptions {
        RelayOptions {
            turn_secret: self.turn_secret.clone().or(under.turn_secret.clone()),
            ..layer::overlay(self, under)
        }
    }

    /// Takes `NATKIT_TURN_SECRET` from the process environment when it is set and not blank.
    pub fn with_environment_secret(self) -> Self {
        RelayOptions {
            turn_secret: SecretText::from_env(SECRET_ENV).or(self.turn_secret),
            ..self
        }
    }

    /// Generates a secret for this run when none is configured (neither the variable nor
    /// `secret_file`: natkit-signal's first run); says whether it did.
    pub fn generate_secret_if_unset(&mut self) -> bool {
        if self.turn_secret.is_some() || self.secret_file.is_some() {
            return false;
        }
        self.turn_secret = Some(SecretText(
            Secret::from_random(rand::random()).expose().to_owned(),
        ));
        true
    }
}

natkit_daemon::validated_from!(RelayOptions => RelayConfig, ConfigError);

impl TryFrom<RelayOptions> for Settings {
    type Error = ConfigError;
    fn try_from(o: RelayOptions) -> Result<Self, ConfigError> {
        let relay = RelayConfig::try_from(o.clone())?;
        Settings::new(&o, relay)
    }
}

impl Settings {
    /// The binary's own keys (`metrics_listen`, `cluster`) read from `o`, around `relay`
    /// (validated from the same options).
    pub fn new(o: &RelayOptions, relay: RelayConfig) -> Result<Settings, ConfigError> {
        let cluster = match o.cluster.as_ref().map(|s| s.as_str().trim()) {
            None | Some("") | Some("off") => None,
            Some(url) if url.starts_with("redis://") => Some(url.to_owned()),
            Some(url) => {
                return Err(ConfigError::invalid(
                    "cluster",
                    format!("{url:?}: use redis://HOST:PORT (TLS to Redis is not supported)"),
                ))
            }
        };
        let metrics_listen = match o.metrics_listen.as_ref().map(|s| s.as_str().trim()) {
            Some("off") => None,
            _ => Some(
                parse_opt("metrics_listen", &o.metrics_listen)?
                    .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.parse().expect("valid default")),
            ),
        };
        Ok(Settings {
            relay,
            metrics_listen,
            cluster,
        })
    }
}

impl RelayConfig {
    /// Validates `o` into the relay's configuration: every key parsed and checked, the
    /// cross-field rules, and the secrets settled (`NATKIT_TURN_SECRET` first, then every line of
    /// `secret_file`, read with `read`). Without a secret it is an error that says how to set one.
    pub fn from_options(
        o: RelayOptions,
        read: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<RelayConfig, ConfigError> {
        let listens = listens(&o)?;
        let listen = listens[0].addr;
        let default_family: DefaultFamily =
            parse_opt("default_family", &o.default_family)?.unwrap_or_default();
        let streams = streams(&o, &listens)?;
        let drain = DrainConfig {
            alternate: parse_opt("drain_alternate", &o.drain_alternate)?,
            timeout: Duration::from_secs(
                parse_opt("drain_timeout", &o.drain_timeout)?
                    .unwrap_or(DEFAULT_DRAIN_TIMEOUT.as_secs()),
            ),
        };
        let alt_port: u16 =
            parse_opt("alt_port", &o.alt_port)?.unwrap_or_else(|| default_alt_port(listen.port()));
        let alt_ip: Option<IpAddr> = parse_opt("alt_ip", &o.alt_ip)?;
        let relay_ports = match &o.relay_ports {
            Some(v) => parse_range(v.as_str())?,
            None => DEFAULT_RELAY_PORTS,
        };
        let realm = o
            .realm
            .as_ref()
            .map_or(DEFAULT_REALM, |r| r.as_str())
            .to_owned();
        if realm.is_empty() || realm.len() > 127 {
            return Err(ConfigError::invalid("realm", "must be 1 to 127 bytes"));
        }
        let nets = |key: &'static str, v: &[Setting]| -> Result<Vec<IpNet>, ConfigError> {
            layer::items(v).map(|s| parse_cidr(key, s)).collect()
        };
        let allow_peers = nets("allow_peer", &o.allow_peer)?;
        let deny_peers = nets("deny_peer", &o.deny_peer)?;
        let user_quota: u32 = parse_opt("user_quota", &o.user_quota)?.unwrap_or(10);
        let total_quota: u32 = parse_opt("total_quota", &o.total_quota)?.unwrap_or(10_000);
        let answers_per_second: u32 =
            parse_opt("answers_per_second", &o.answers_per_second)?.unwrap_or(50);
        let max_lifetime: u64 =
            parse_opt("max_lifetime", &o.max_lifetime)?.unwrap_or(MAX_LIFETIME.as_secs());
        if !(1..=86_400).contains(&max_lifetime) {
            return Err(ConfigError::invalid(
                "max_lifetime",
                format!("{max_lifetime} is not between 1 and 86400 seconds"),
            ));
        }
        let max_lifetime = Duration::from_secs(max_lifetime);

        if alt_port != 0 && alt_port == listen.port() {
            return Err(ConfigError::invalid(
                "alt_port",
                "must differ from the listen port",
            ));
        }
        if let Some(ip) = alt_ip {
            // RFC 5780 within the alternate IP's family: that family's listen address.
            let Some(listen) = listens.iter().find(|l| l.addr.is_ipv4() == ip.is_ipv4()) else {
                return Err(ConfigError::invalid(
                    "alt_ip",
                    format!("{ip}: no listen address of its family"),
                ));
            };
            let listen = listen.addr;
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

        let kernel_path: Vec<String> = layer::items(&o.kernel_path).map(str::to_owned).collect();
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
        // The kernel path relays IPv4 only; an IPv6 listener beside it stays in userspace.
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
        if let Some(SecretText(s)) = &o.turn_secret {
            secrets.push(
                Secret::new(s.trim().to_owned()).map_err(|_| {
                    ConfigError::invalid("NATKIT_TURN_SECRET", "is only whitespace")
                })?,
            );
        }
        if let Some(path) = &o.secret_file {
            let path = path.as_str();
            let text = read(path).map_err(|source| ConfigError::ReadSecret {
                path: path.to_owned(),
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
        if secrets.is_empty() {
            return Err(ConfigError::NoSecret);
        }

        Ok(RelayConfig {
            listen: listens,
            default_family,
            alt_port,
            alt_ip,
            relay_ports,
            realm,
            secrets: Secrets::new(secrets)?,
            allow_peers,
            deny_peers,
            user_quota,
            total_quota,
            answers_per_second,
            revoked_file: o.revoked_file.as_ref().map(|f| PathBuf::from(f.as_str())),
            max_lifetime,
            streams,
            drain,
            kernel_path,
        })
    }
}

/// `listen` and `public_ip`: one listen address per family, IPv4 first, each with the public IP
/// of its family if one is given.
fn listens(o: &RelayOptions) -> Result<Vec<Listen>, ConfigError> {
    let addrs = layer::items(&o.listen)
        .map(|v| Setting::from(v).parse::<SocketAddr>("listen"))
        .collect::<Result<Vec<_>, _>>()?;
    let publics = layer::items(&o.public_ip)
        .map(|v| Setting::from(v).parse::<IpAddr>("public_ip"))
        .collect::<Result<Vec<_>, _>>()?;
    let default = addrs.is_empty();
    let mut addrs = if default {
        vec![
            DEFAULT_LISTEN.parse().expect("valid default"),
            DEFAULT_LISTEN_V6.parse().expect("valid default"),
        ]
    } else {
        addrs
    };
    addrs.sort_by_key(|a| a.is_ipv6());
    let family = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
    for v6 in [false, true] {
        let same: Vec<String> = addrs
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .map(|a| a.to_string())
            .collect();
        if same.len() > 1 {
            return Err(ConfigError::invalid(
                "listen",
                format!(
                    "two {} addresses ({}): give one per address family (0.0.0.0:PORT listens on every IPv4 address)",
                    family(v6),
                    same.join(", ")
                ),
            ));
        }
    }
    let mut out: Vec<Listen> = addrs
        .into_iter()
        .map(|addr| Listen {
            addr,
            public_ip: None,
            if_available: default && addr.is_ipv6(),
        })
        .collect();
    for ip in publics {
        if ip.is_unspecified() {
            return Err(ConfigError::invalid(
                "public_ip",
                format!("{ip} is not an address clients can reach"),
            ));
        }
        let Some(l) = out.iter_mut().find(|l| l.addr.is_ipv6() == ip.is_ipv6()) else {
            return Err(ConfigError::invalid(
                "public_ip",
                format!(
                    "{ip}: no listen address of its family; add one (e.g. --listen {})",
                    if ip.is_ipv6() {
                        DEFAULT_LISTEN_V6
                    } else {
                        DEFAULT_LISTEN
                    }
                ),
            ));
        };
        if let Some(before) = l.public_ip {
            return Err(ConfigError::invalid(
                "public_ip",
                format!(
                    "two {} addresses ({before}, {ip}): give one per address family",
                    family(ip.is_ipv6())
                ),
            ));
        }
        l.public_ip = Some(ip);
    }
    Ok(out)
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

/// A set key parsed, or `None` when unset.
fn parse_opt<T: std::str::FromStr>(
    key: &'static str,
    v: &Option<Setting>,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    Ok(v.as_ref().map(|v| v.parse(key)).transpose()?)
}

/// A CIDR (`10.0.0.0/8`), or a bare address for that single host.
pub fn parse_cidr(key: &'static str, v: &str) -> Result<IpNet, ConfigError> {
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

/// Validated relay configuration, from [`RelayConfig::try_from`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// STUN/TURN listeners, one per address family, IPv4 first (never empty).
    pub listen: Vec<Listen>,
    /// The relayed address family of an Allocate that asks for none.
    pub default_family: DefaultFamily,
    /// RFC 5780 alternate port (in each family); 0 picks a free one (tests).
    pub alt_port: u16,
    /// RFC 5780 alternate IP, in its own family.
    pub alt_ip: Option<IpAddr>,
    pub relay_ports: RangeInclusive<u16>,
    pub realm: String,
    /// The first mints, every one verifies. `natkit-relay` refuses to start without one,
    /// `natkit-signal` generates one ([`RelayOptions::generate_secret_if_unset`]).
    pub secrets: Secrets,
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

impl RelayConfig {
    /// The first listen address (IPv4 when there are both).
    pub fn primary_listen(&self) -> SocketAddr {
        self.listen[0].addr
    }
}

/// One STUN/TURN listener: its address, and the IP its relayed addresses are advertised as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    /// Written into XOR-RELAYED-ADDRESS for this family (a host behind 1:1 NAT).
    pub public_ip: Option<IpAddr>,
    /// Bound only if the host has this family (the default `[::]:3478`); else left out, logged.
    pub if_available: bool,
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

/// Everything `natkit-relay` needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub relay: RelayConfig,
    pub metrics_listen: Option<SocketAddr>,
    /// The signaling cluster's Redis, where the relay announces itself (`cluster`).
    pub cluster: Option<String>,
}

/// Everything `natkit-relay` reads: `cli` (its flags over the environment, as clap parsed them)
/// over the `--config` file, with `NATKIT_TURN_SECRET`, validated.
pub fn load(cli: &RelayOptions, config_file: Option<&Path>) -> Result<Settings, ConfigError> {
    let file = match config_file {
        Some(p) => RelayOptions::from_file(p)?,
        None => RelayOptions::default(),
    };
    Settings::try_from(cli.clone().with_environment_secret().over(&file))
}

mod streams;
use streams::streams;
pub use streams::{
    AcmeConfig, CertSource, StreamConfig, TlsConfig, DEFAULT_STREAM_PER_IP, DEFAULT_STREAM_TOTAL,
};

#[cfg(test)]
mod tests;
