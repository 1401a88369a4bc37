//! natkit-signal configuration: flags > `NATKIT_SIGNAL_*` environment > TOML file > defaults, all
//! one struct ([`SignalOptions`], natkit-daemon's configuration layer), validated by
//! [`SignalConfig::try_from`] (and [`NodeConfig::try_from`] with the relay's part) before
//! anything binds.
//!
//! The embedded relay keeps the relay's own keys: a `[relay]` table in the TOML file, the relay's
//! `NATKIT_*` variables (`NATKIT_TURN_SECRET`, `NATKIT_PUBLIC_IP`, ...), and the flags
//! `--relay-listen`, `--public-ip`, `--relay-ports`.

use std::net::SocketAddr;
use std::time::Duration;

use std::path::Path;

use natkit_daemon::layer::{self, Setting};
use natkit_stun_turn::config::{RelayConfig, RelayOptions, SecretText};
use serde::{Deserialize, Serialize};

use crate::origin::AllowedOrigins;
use crate::token::TokenSecret;

#[derive(Debug, thiserror::Error)]
pub enum SignalConfigError {
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    File(#[from] layer::FileError),
    #[error("relay: {0}")]
    Relay(#[from] natkit_stun_turn::ConfigError),
}

impl From<layer::Invalid> for SignalConfigError {
    fn from(e: layer::Invalid) -> Self {
        SignalConfigError::Invalid {
            key: e.key,
            message: e.message,
        }
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> SignalConfigError {
    SignalConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// natkit-signal's keys, as written in any of the three places: a flag (`--peers-per-room`), a
/// `NATKIT_SIGNAL_*` variable (`NATKIT_SIGNAL_PEERS_PER_ROOM`) or a TOML key (`peers_per_room`).
/// The embedded relay's keys are the relay's own [`RelayOptions`]: the `[relay]` table, the
/// relay's `NATKIT_*` variables and the `--relay-*` flags of [`EmbeddedRelayFlags`].
/// [`SignalConfig::try_from`] validates the signal keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalOptions {
    /// HTTP and WebSocket address; `[::]` takes both IPv4 and IPv6 [default: [::]:8080, or
    /// 0.0.0.0:8080 on a host without IPv6]
    #[arg(long, env = "NATKIT_SIGNAL_LISTEN", value_name = "ADDR")]
    pub listen: Option<Setting>,
    /// Do not run the embedded STUN/TURN relay (list external ones with --ice-server)
    #[arg(long, env = "NATKIT_SIGNAL_NO_RELAY", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_relay: bool,
    /// ICE server URL handed to peers (repeatable), e.g. turn:relay.example.org:3478; TURN URLs
    /// get credentials from the shared TURN secret
    #[arg(
        long = "ice-server",
        env = "NATKIT_SIGNAL_ICE_SERVERS",
        value_name = "URL"
    )]
    pub ice_servers: Vec<Setting>,
    /// A natkit-relay to hand out (repeatable, IP:PORT, same TURN secret): with two or more,
    /// each room gets one of the healthy ones, draining relays are left out; implies --no-relay
    #[arg(
        long = "relay-server",
        env = "NATKIT_SIGNAL_RELAY_SERVERS",
        value_name = "IP:PORT"
    )]
    pub relay_servers: Vec<Setting>,
    /// A web origin whose pages may use this server (repeatable, scheme://host[:port], or "*"):
    /// /natkit.js and the HTTP API answer it with CORS headers and WebSocket upgrades from other
    /// origins are refused. Without any, only this server's own pages get CORS (the WebSocket
    /// does not check Origin; tokens admit)
    #[arg(
        long = "allowed-origin",
        env = "NATKIT_SIGNAL_ALLOWED_ORIGINS",
        value_name = "ORIGIN"
    )]
    pub allowed_origins: Vec<Setting>,
    /// A network whose connections start with a PROXY protocol header (v1 or v2) naming the
    /// client (repeatable, CIDR): a TCP load balancer. The client it names is the one per-IP
    /// limits, logs and TURN's mapped address use. A header from any other source closes the
    /// connection. The embedded relay's TCP and TLS ports take the same list unless its [relay]
    /// table sets trusted_proxies. None by default
    #[arg(
        long = "trusted-proxy",
        env = "NATKIT_SIGNAL_TRUSTED_PROXIES",
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<Setting>,
    /// UNSAFE on the internet: with the TLS port on, keep serving the HTTP API and ws:// in
    /// clear on the web port (only the pages are redirected to HTTPS); join tokens and SDP then
    /// travel unencrypted there. Without it every request there but /healthz is redirected
    #[arg(long, env = "NATKIT_SIGNAL_PLAIN_API", value_parser = clap::builder::BoolishValueParser::new())]
    pub plain_api: bool,
    /// File holding the join-token secret (joins and /v1/ice-servers need a token it signed);
    /// without it and without --open, a secret is generated for the run
    #[arg(long, env = "NATKIT_SIGNAL_TOKEN_SECRET_FILE", value_name = "FILE")]
    pub token_secret_file: Option<Setting>,
    /// "token" (the default: joins and credentials need a signed token) or "open" (as --open)
    #[arg(long, env = "NATKIT_SIGNAL_AUTH", value_name = "token|open")]
    pub auth: Option<Setting>,
    /// UNSAFE on the internet: let anyone join and take TURN credentials without a token (an
    /// open relay); for trying natkit on a private network. The same as auth = "open"
    #[arg(long)]
    #[serde(skip)]
    pub open: bool,
    /// Prometheus /metrics listener, or "off" [default: 127.0.0.1:9642]
    #[arg(long, env = "NATKIT_SIGNAL_METRICS_LISTEN", value_name = "ADDR|off")]
    pub metrics_listen: Option<Setting>,
    /// Connections at once from one IP address, 0 = unlimited [default: 32]
    #[arg(long, env = "NATKIT_SIGNAL_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<Setting>,
    /// Seconds a client has to send its HTTP request headers [default: 10]
    #[arg(long, env = "NATKIT_SIGNAL_HEADER_TIMEOUT", value_name = "SECS")]
    pub header_timeout: Option<Setting>,
    /// TURN credentials handed out per minute per client IP and per token (bursts of the same
    /// size), 0 = unlimited [default: 30]
    #[arg(long, env = "NATKIT_SIGNAL_CREDENTIALS_PER_MINUTE", value_name = "N")]
    pub credentials_per_minute: Option<Setting>,
    /// Lifetime of the TURN credentials handed to peers, seconds [default: 3600]
    #[arg(long, env = "NATKIT_SIGNAL_CREDENTIAL_TTL", value_name = "SECS")]
    pub credential_ttl: Option<Setting>,
    /// Largest WebSocket frame accepted, bytes; larger ones close with 1009 [default: 65536]
    #[arg(long, env = "NATKIT_SIGNAL_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub max_frame_bytes: Option<Setting>,
    /// Messages per second per connection (bursts of twice that) [default: 50]
    #[arg(long, env = "NATKIT_SIGNAL_MESSAGES_PER_SECOND", value_name = "N")]
    pub messages_per_second: Option<Setting>,
    /// Peers per room, 0 = unlimited [default: 16]
    #[arg(long, env = "NATKIT_SIGNAL_PEERS_PER_ROOM", value_name = "N")]
    pub peers_per_room: Option<Setting>,
    /// Rooms per server, 0 = unlimited [default: 10000]
    #[arg(long, env = "NATKIT_SIGNAL_MAX_ROOMS", value_name = "N")]
    pub max_rooms: Option<Setting>,
    /// Concurrent WebSocket connections [default: 20000]
    #[arg(long, env = "NATKIT_SIGNAL_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<Setting>,
    /// Seconds between WebSocket pings [default: 20]
    #[arg(long, env = "NATKIT_SIGNAL_PING_INTERVAL", value_name = "SECS")]
    pub ping_interval: Option<Setting>,
    /// Seconds without any frame (pong included) before a peer is dropped [default: 60]
    #[arg(long, env = "NATKIT_SIGNAL_IDLE_TIMEOUT", value_name = "SECS")]
    pub idle_timeout: Option<Setting>,
    /// Share rooms with the other natkit-signal nodes through this Redis (redis://HOST:6379);
    /// every node needs the same token secret (docs/cluster.md)
    #[arg(long, env = "NATKIT_SIGNAL_CLUSTER", value_name = "URL")]
    pub cluster: Option<Setting>,
    /// Seconds a clustered node counts as alive without renewing its lease: a node that dies
    /// has its peers leave their rooms within about 1.25 times this [default: 5]
    #[arg(long, env = "NATKIT_SIGNAL_CLUSTER_LEASE", value_name = "SECS")]
    pub cluster_lease: Option<Setting>,
    /// Seconds a draining node (SIGUSR1) waits for its peers to reconnect elsewhere before it
    /// closes the rest and exits [default: 30]
    #[arg(long, env = "NATKIT_SIGNAL_DRAIN_TIMEOUT", value_name = "SECS")]
    pub drain_timeout: Option<Setting>,
    /// The embedded relay's flags (its file keys are the `[relay]` table).
    #[command(flatten)]
    #[serde(skip)]
    pub relay_flags: EmbeddedRelayFlags,
    /// The `[relay]` table: natkit-relay's own keys.
    #[arg(skip)]
    pub relay: RelayOptions,
    /// The join-token secret, from `NATKIT_SIGNAL_TOKEN_SECRET` only (never a flag or a file
    /// key; use `token_secret_file`).
    #[arg(skip)]
    #[serde(skip)]
    pub token_secret: Option<SecretText>,
}

/// natkit-signal's flags for its embedded relay: the relay's keys under signal's names (its own
/// `--listen` is the web server's).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct EmbeddedRelayFlags {
    /// Embedded relay's UDP (and TCP) address, one per address family (repeat for both)
    /// [default: 0.0.0.0:3478 and, where the host has IPv6, [::]:3478]
    #[arg(long, value_name = "ADDR")]
    pub relay_listen: Vec<Setting>,
    /// Embedded relay's public IP (XOR-RELAYED-ADDRESS and ICE URLs), one per family (repeat
    /// for both)
    #[arg(long, value_name = "IP")]
    pub public_ip: Vec<Setting>,
    /// Embedded relay's port range [default: 49152-65535]
    #[arg(long, value_name = "MIN-MAX")]
    pub relay_ports: Option<Setting>,
    /// Embedded relay's TURN over TCP on the relay port, "on" or "off" [default: on]
    #[arg(long, value_name = "on|off")]
    pub relay_tcp: Option<Setting>,
    /// Embedded relay's TURN over TLS address (e.g. 0.0.0.0:5349), or "off" [default: off]
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<Setting>,
    /// PEM certificate chain for the TLS port; reloaded on SIGHUP and when the file changes
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<Setting>,
    /// PEM private key for the TLS port; reloaded on SIGHUP and when the file changes
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<Setting>,
    /// Host name in the turns: URLs [default: the certificate's first DNS name]
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<Setting>,
    /// Take the TLS port's certificate from an ACME directory for this domain (repeatable;
    /// instead of --tls-cert/--tls-key): the TLS-ALPN-01 challenge is answered on the TLS port,
    /// which the ACME server must reach on 443; kept in --acme-state-dir, renewed ahead of expiry
    #[arg(long = "acme-domain", value_name = "NAME")]
    pub acme_domains: Vec<Setting>,
    /// ACME directory URL [default: Let's Encrypt, https://acme-v02.api.letsencrypt.org/directory]
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<Setting>,
    /// Contact e-mail for the ACME account [default: none]
    #[arg(long, value_name = "ADDRESS")]
    pub acme_email: Option<Setting>,
    /// Where the ACME account key and certificate are kept [default: /var/lib/natkit/acme]
    #[arg(long, value_name = "DIR")]
    pub acme_state_dir: Option<Setting>,
    /// PEM root certificate of a private ACME server's HTTPS [default: the system's roots]
    #[arg(long, value_name = "FILE")]
    pub acme_ca: Option<Setting>,
}

impl From<EmbeddedRelayFlags> for RelayOptions {
    fn from(f: EmbeddedRelayFlags) -> Self {
        RelayOptions {
            listen: f.relay_listen,
            public_ip: f.public_ip,
            relay_ports: f.relay_ports,
            tcp: f.relay_tcp,
            tls_listen: f.tls_listen,
            tls_cert: f.tls_cert,
            tls_key: f.tls_key,
            tls_name: f.tls_name,
            acme_domains: f.acme_domains,
            acme_directory: f.acme_directory,
            acme_email: f.acme_email,
            acme_state_dir: f.acme_state_dir,
            acme_ca: f.acme_ca,
            ..Default::default()
        }
    }
}

impl SignalOptions {
    /// Reads the TOML file (signal keys at the top, relay keys under `[relay]`).
    pub fn from_file(path: &Path) -> Result<Self, SignalConfigError> {
        Ok(layer::read_toml(path)?)
    }

    /// `self` laid over `under`, key by key, the `[relay]` table too.
    pub fn over(&self, under: &SignalOptions) -> SignalOptions {
        SignalOptions {
            open: self.open || under.open,
            relay_flags: if self.relay_flags == EmbeddedRelayFlags::default() {
                under.relay_flags.clone()
            } else {
                self.relay_flags.clone()
            },
            token_secret: self.token_secret.clone().or(under.token_secret.clone()),
            ..layer::overlay(self, under)
        }
    }

    /// Takes `NATKIT_SIGNAL_TOKEN_SECRET` from the process environment when set and not blank.
    pub fn with_environment_secret(mut self) -> Self {
        if let Some(secret) = SecretText::from_env(TOKEN_SECRET_ENV) {
            self.token_secret = Some(secret);
        }
        self
    }
}

/// The variable holding the join-token secret.
pub const TOKEN_SECRET_ENV: &str = "NATKIT_SIGNAL_TOKEN_SECRET";

natkit_daemon::validated_from!(SignalOptions => SignalConfig, SignalConfigError);

impl SignalConfig {
    /// Validates `o`: every signal key parsed and checked, the cross-field rules, and the
    /// join-token secret settled (`token_secret`, else `token_secret_file` read with `read`, else
    /// generated for the run unless the server is open).
    pub fn from_options(
        o: SignalOptions,
        read: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<SignalConfig, SignalConfigError> {
        fn num<T: std::str::FromStr>(
            key: &'static str,
            v: &Option<Setting>,
            default: T,
        ) -> Result<T, SignalConfigError>
        where
            T::Err: std::fmt::Display,
        {
            Ok(v.as_ref()
                .map(|v| v.parse(key))
                .transpose()?
                .unwrap_or(default))
        }
        let listen: SocketAddr = num("listen", &o.listen, "[::]:8080".parse().expect("valid"))?;
        let credential_ttl: u64 = num("credential_ttl", &o.credential_ttl, 3600)?;
        if credential_ttl == 0 {
            return Err(invalid("credential_ttl", "must be at least 1 second"));
        }
        let max_frame_bytes: usize = num("max_frame_bytes", &o.max_frame_bytes, 65536)?;
        if max_frame_bytes < 1024 {
            return Err(invalid(
                "max_frame_bytes",
                "must be at least 1024 (SDP offers are several KiB)",
            ));
        }
        let messages_per_second: u32 = num("messages_per_second", &o.messages_per_second, 50)?;
        if messages_per_second == 0 {
            return Err(invalid("messages_per_second", "must be at least 1"));
        }
        let ping: u64 = num("ping_interval", &o.ping_interval, 20)?;
        let idle: u64 = num("idle_timeout", &o.idle_timeout, 60)?;
        if ping == 0 || idle <= ping {
            return Err(invalid(
                "idle_timeout",
                format!(
                    "must exceed ping_interval ({ping} s), and ping_interval must be at least 1"
                ),
            ));
        }
        let ice_servers: Vec<String> = layer::items(&o.ice_servers).map(str::to_owned).collect();
        for u in &ice_servers {
            if !(u.starts_with("stun:") || u.starts_with("turn:") || u.starts_with("turns:")) {
                return Err(invalid(
                    "ice_server",
                    format!("{u:?} is not a stun:, turn: or turns: URL"),
                ));
            }
        }
        let token = match (&o.token_secret, &o.token_secret_file) {
            (Some(SecretText(s)), _) => TokenSecret::new(s),
            (None, Some(path)) => {
                let path = path.as_str();
                let text =
                    read(path).map_err(|e| invalid("token_secret_file", format!("{path}: {e}")))?;
                Some(
                    TokenSecret::new(&text)
                        .ok_or_else(|| invalid("token_secret_file", format!("{path} is empty")))?,
                )
            }
            (None, None) => None,
        };
        let open = match o.auth.as_ref().map(|a| a.as_str().trim()) {
            None if o.open => true,
            Some("token") if o.open => {
                return Err(invalid("auth", "\"token\" contradicts --open: drop one"))
            }
            None | Some("token") => false,
            Some("open") => true,
            Some(other) => {
                return Err(invalid(
                    "auth",
                    format!("{other:?}: use \"token\" (the default) or \"open\""),
                ))
            }
        };
        if open && token.is_some() {
            return Err(invalid(
                "auth",
                "\"open\" and a token secret contradict each other: drop one",
            ));
        }
        // Safe by default: without a configured secret, tokens are still required, signed with a
        // secret made for this run (the binary prints a link that carries one).
        let generated_token = !open && token.is_none();
        let token = if generated_token {
            Some(TokenSecret::generate())
        } else {
            token
        };
        let metrics_listen = match o.metrics_listen.as_ref().map(|m| m.as_str().trim()) {
            Some("off") => None,
            _ => Some(num(
                "metrics_listen",
                &o.metrics_listen,
                "127.0.0.1:9642".parse().expect("valid"),
            )?),
        };
        let listed: Vec<&str> = layer::items(&o.relay_servers).collect();
        let relays_from_cluster = listed.contains(&"cluster");
        if relays_from_cluster && listed.len() > 1 {
            return Err(invalid(
                "relay_servers",
                "\"cluster\" (the relays announced in the cluster store) stands alone: \
                 drop the addresses, or list addresses without it",
            ));
        }
        let relay_servers = listed
            .iter()
            .filter(|v| **v != "cluster")
            .map(|v| {
                v.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        "relay_servers",
                        format!("{v:?} is not IP:PORT (e.g. 203.0.113.7:3478) or \"cluster\""),
                    )
                })
            })
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        let cluster = match o.cluster.as_ref().map(|c| c.as_str().trim()) {
            None | Some("") | Some("off") => None,
            Some(url) => {
                let lease: u64 = num("cluster_lease", &o.cluster_lease.clone(), 5)?;
                if !(1..=60).contains(&lease) {
                    return Err(invalid("cluster_lease", "must be 1 to 60 seconds"));
                }
                if !url.starts_with("redis://") {
                    return Err(invalid(
                        "cluster",
                        format!("{url:?}: use redis://HOST:PORT (TLS to Redis is not supported)"),
                    ));
                }
                if let Err(e) = redis::Client::open(url) {
                    return Err(invalid("cluster", format!("{url:?}: {e}")));
                }
                if generated_token {
                    return Err(invalid(
                        "cluster",
                        "every node must accept the same join tokens: set token_secret_file or \
                         NATKIT_SIGNAL_TOKEN_SECRET on each node (or auth = \"open\")",
                    ));
                }
                Some(ClusterSettings {
                    url: url.to_owned(),
                    lease: Duration::from_secs(lease),
                })
            }
        };
        let drain_timeout: u64 = num("drain_timeout", &o.drain_timeout, 30)?;
        if relays_from_cluster && cluster.is_none() {
            return Err(invalid(
                "relay_servers",
                "\"cluster\" hands out the relays announced in the cluster store: set cluster too",
            ));
        }
        let allowed_origins = AllowedOrigins::parse(layer::items(&o.allowed_origins))
            .map_err(|e| invalid("allowed_origins", e.to_string()))?;
        let trusted_proxies = layer::items(&o.trusted_proxies)
            .map(|v| {
                natkit_stun_turn::config::parse_cidr("trusted_proxies", v).map_err(|_| {
                    invalid(
                        "trusted_proxies",
                        format!("{v:?} is not a CIDR like 10.0.0.0/8"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header_timeout: u64 = num("header_timeout", &o.header_timeout, 10)?;
        if header_timeout == 0 {
            return Err(invalid("header_timeout", "must be at least 1 second"));
        }
        Ok(SignalConfig {
            plain_api: o.plain_api,
            open,
            generated_token,
            metrics_listen,
            max_connections_per_ip: num("max_connections_per_ip", &o.max_connections_per_ip, 32)?,
            header_timeout: Duration::from_secs(header_timeout),
            credentials_per_minute: num("credentials_per_minute", &o.credentials_per_minute, 30)?,
            listen,
            embedded_relay: !o.no_relay && relay_servers.is_empty() && !relays_from_cluster,
            relays_from_cluster,
            relay_servers,
            ice_urls: ice_servers,
            token,
            credential_ttl,
            max_frame_bytes,
            messages_per_second,
            peers_per_room: num("peers_per_room", &o.peers_per_room, 16)?,
            max_rooms: num("max_rooms", &o.max_rooms, 10_000)?,
            max_connections: num("max_connections", &o.max_connections, 20_000)?,
            ping_interval: Duration::from_secs(ping),
            idle_timeout: Duration::from_secs(idle),
            cluster,
            drain_timeout: Duration::from_secs(drain_timeout),
            allowed_origins,
            trusted_proxies,
        })
    }
}

/// Validated signal configuration, from [`SignalConfig::try_from`].
#[derive(Debug, Clone)]
pub struct SignalConfig {
    pub listen: SocketAddr,
    pub embedded_relay: bool,
    /// natkit-relays handed out, one per room among the healthy ones ([`crate::fleet`]).
    pub relay_servers: Vec<SocketAddr>,
    /// `relay_servers = ["cluster"]`: hand out the relays announced in the cluster store.
    pub relays_from_cluster: bool,
    /// Extra ICE server URLs (external relays, public STUN servers).
    pub ice_urls: Vec<String>,
    /// The join-token secret; `None` only in open mode.
    pub token: Option<TokenSecret>,
    /// `auth = "open"` / `--open`: no tokens at all.
    pub open: bool,
    /// No secret was configured: `token` was generated for this run.
    pub generated_token: bool,
    /// Where `/metrics` is served (never on the public listener); `None` when off.
    pub metrics_listen: Option<SocketAddr>,
    /// Connections at once per client IP (0 = unlimited).
    pub max_connections_per_ip: usize,
    /// Time for a client to send its request headers.
    pub header_timeout: Duration,
    /// TURN credentials per minute per client IP and per token (0 = unlimited).
    pub credentials_per_minute: u32,
    pub credential_ttl: u64,
    pub max_frame_bytes: usize,
    pub messages_per_second: u32,
    pub peers_per_room: usize,
    pub max_rooms: usize,
    pub max_connections: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// Rooms shared with other nodes through Redis; `None`: this process is the whole world.
    pub cluster: Option<ClusterSettings>,
    /// How long a draining node waits for its peers to move before closing the rest.
    pub drain_timeout: Duration,
    /// Web origins whose pages may use this server (CORS, the WebSocket's `Origin` check).
    pub allowed_origins: AllowedOrigins,
    /// Sources whose PROXY protocol headers are believed (load balancers).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `plain_api`: with the TLS port on, the web port still serves the API and `ws://`.
    pub plain_api: bool,
}

/// `cluster` and `cluster_lease`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]`; shown by [`ClusterSettings::redacted`].
    pub url: String,
    pub lease: Duration,
}

impl ClusterSettings {
    /// The URL without its user and password, for logs.
    pub fn redacted(&self) -> String {
        match self.url.split_once("://").and_then(|(scheme, rest)| {
            rest.rsplit_once('@')
                .map(|(_, host)| format!("{scheme}://***@{host}"))
        }) {
            Some(r) => r,
            None => self.url.clone(),
        }
    }
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("url", &self.redacted())
            .field("lease", &self.lease)
            .finish()
    }
}

/// Everything a natkit-signal node runs with: its signal configuration and its relay's.
pub struct NodeConfig {
    pub signal: SignalConfig,
    pub relay: RelayConfig,
    /// No TURN secret was configured: one was generated for this run.
    pub generated_secret: bool,
}

impl TryFrom<SignalOptions> for NodeConfig {
    type Error = SignalConfigError;
    /// Validates both parts: the signal keys, and the relay's (`o.relay`, with a TURN secret
    /// generated for the run when none is configured, which only an embedded relay may use).
    fn try_from(mut o: SignalOptions) -> Result<Self, SignalConfigError> {
        let generated_secret = o.relay.generate_secret_if_unset();
        // The balancers in front of the node stand in front of its relay's TCP port too,
        // unless the [relay] table names its own.
        if o.relay.trusted_proxies.is_empty() {
            o.relay.trusted_proxies = o.trusted_proxies.clone();
        }
        let relay = RelayConfig::try_from(std::mem::take(&mut o.relay))?;
        if o.plain_api && relay.streams.tls.is_none() {
            return Err(invalid(
                "plain_api",
                "only means something with the TLS port (tls_listen); without it everything is plain",
            ));
        }
        // Flags for the embedded relay sit on top of its table and variables (`load`).
        let signal = SignalConfig::try_from(o)?;
        let needs_secret = signal.ice_urls.iter().any(|u| u.starts_with("turn"))
            || !signal.relay_servers.is_empty()
            || signal.relays_from_cluster;
        if !signal.embedded_relay && needs_secret && generated_secret {
            return Err(invalid(
                "ice_server",
                "turn: URLs need the relay's secret: set NATKIT_TURN_SECRET or [relay] secret_file",
            ));
        }
        Ok(NodeConfig {
            signal,
            relay,
            generated_secret,
        })
    }
}

/// Everything `natkit-signal` reads: `cli` (its flags over the `NATKIT_SIGNAL_*` environment, as
/// clap parsed them) over the `--config` file; for the embedded relay, the `--relay-*` flags over
/// the relay's `NATKIT_*` variables over the `[relay]` table; the two secrets from their
/// variables. Validated.
pub fn load(cli: &SignalOptions, config: Option<&Path>) -> Result<NodeConfig, SignalConfigError> {
    let file = match config {
        Some(p) => SignalOptions::from_file(p)?,
        None => SignalOptions::default(),
    };
    let mut merged = cli.clone().with_environment_secret().over(&file);
    let relay_flags = RelayOptions::from(std::mem::take(&mut merged.relay_flags));
    merged.relay = relay_flags.over(&RelayOptions::from_env()?.over(&file.relay));
    NodeConfig::try_from(merged)
}

#[cfg(test)]
mod tests;
