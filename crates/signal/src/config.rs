//! natkit-signal configuration: flags > `NATKIT_SIGNAL_*` environment > TOML file > defaults,
//! merged in [`SignalRaw::merge`] and validated by [`SignalRaw::resolve`] before anything binds.
//!
//! The embedded relay keeps the relay's own keys: a `[relay]` table in the TOML file, the relay's
//! `NATKIT_*` variables (`NATKIT_TURN_SECRET`, `NATKIT_PUBLIC_IP`, ...), and the flags
//! `--relay-listen`, `--public-ip`, `--relay-ports`.

use std::net::SocketAddr;
use std::time::Duration;

use natkit_stun_turn::config::{FileSettings, RawSettings, RelayConfig};
use natkit_stun_turn::credentials::Secrets;
use serde::Deserialize;

use crate::token::TokenSecret;

#[derive(Debug, thiserror::Error)]
pub enum SignalConfigError {
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("relay: {0}")]
    Relay(#[from] natkit_stun_turn::ConfigError),
}

fn invalid(key: &'static str, message: impl Into<String>) -> SignalConfigError {
    SignalConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Flags of `natkit-signal`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignalArgs {
    /// HTTP and WebSocket address [default: 0.0.0.0:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Do not run the embedded STUN/TURN relay (list external ones with --ice-server)
    #[arg(long)]
    pub no_relay: bool,
    /// ICE server URL handed to peers (repeatable), e.g. turn:relay.example.org:3478; TURN URLs
    /// get credentials from the shared TURN secret
    #[arg(long, value_name = "URL")]
    pub ice_server: Vec<String>,
    /// A natkit-relay to hand out (repeatable, IP:PORT, same TURN secret): with two or more,
    /// each room gets one of the healthy ones, draining relays are left out; implies --no-relay
    #[arg(long, value_name = "IP:PORT")]
    pub relay_server: Vec<String>,
    /// Embedded relay's UDP address [default: 0.0.0.0:3478]
    #[arg(long, value_name = "ADDR")]
    pub relay_listen: Option<String>,
    /// Embedded relay's public IP (XOR-RELAYED-ADDRESS and ICE URLs)
    #[arg(long, value_name = "IP")]
    pub public_ip: Option<String>,
    /// Embedded relay's port range [default: 49152-65535]
    #[arg(long, value_name = "MIN-MAX")]
    pub relay_ports: Option<String>,
    /// Embedded relay's TURN over TCP on the relay port, "on" or "off" [default: on]
    #[arg(long, value_name = "on|off")]
    pub relay_tcp: Option<String>,
    /// Embedded relay's TURN over TLS address (e.g. 0.0.0.0:5349), or "off" [default: off]
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<String>,
    /// PEM certificate chain for TURN over TLS; reloaded on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key for TURN over TLS; reloaded on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Host name in the turns: URLs [default: the certificate's first DNS name]
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
    /// File holding the join-token secret (joins and /v1/ice-servers need a token it signed);
    /// without it and without --open, a secret is generated for the run
    #[arg(long, value_name = "FILE")]
    pub token_secret_file: Option<String>,
    /// UNSAFE on the internet: let anyone join and take TURN credentials without a token (an
    /// open relay); for trying natkit on a private network
    #[arg(long)]
    pub open: bool,
    /// Prometheus /metrics listener, or "off" [default: 127.0.0.1:9642]
    #[arg(long, value_name = "ADDR|off")]
    pub metrics_listen: Option<String>,
    /// Connections at once from one IP address, 0 = unlimited [default: 32]
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<String>,
    /// Seconds a client has to send its HTTP request headers [default: 10]
    #[arg(long, value_name = "SECS")]
    pub header_timeout: Option<String>,
    /// TURN credentials handed out per minute per client IP and per token (bursts of the same
    /// size), 0 = unlimited [default: 30]
    #[arg(long, value_name = "N")]
    pub credentials_per_minute: Option<String>,
    /// Lifetime of the TURN credentials handed to peers, seconds [default: 3600]
    #[arg(long, value_name = "SECS")]
    pub credential_ttl: Option<String>,
    /// Largest WebSocket frame accepted, bytes; larger ones close with 1009 [default: 65536]
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<String>,
    /// Messages per second per connection (bursts of twice that) [default: 50]
    #[arg(long, value_name = "N")]
    pub messages_per_second: Option<String>,
    /// Peers per room, 0 = unlimited [default: 16]
    #[arg(long, value_name = "N")]
    pub peers_per_room: Option<String>,
    /// Rooms per server, 0 = unlimited [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_rooms: Option<String>,
    /// Concurrent WebSocket connections [default: 20000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,
    /// Seconds between WebSocket pings [default: 20]
    #[arg(long, value_name = "SECS")]
    pub ping_interval: Option<String>,
    /// Seconds without any frame (pong included) before a peer is dropped [default: 60]
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<String>,
    /// Share rooms with the other natkit-signal nodes through this Redis (redis://HOST:6379);
    /// every node needs the same token secret (docs/cluster.md)
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// Seconds a clustered node counts as alive without renewing its lease: a node that dies
    /// has its peers leave their rooms within about 1.25 times this [default: 5]
    #[arg(long, value_name = "SECS")]
    pub cluster_lease: Option<String>,
    /// Seconds a draining node (SIGUSR1) waits for its peers to reconnect elsewhere before it
    /// closes the rest and exits [default: 30]
    #[arg(long, value_name = "SECS")]
    pub drain_timeout: Option<String>,
}

/// Unvalidated signal settings from one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalRaw {
    pub listen: Option<String>,
    pub no_relay: Option<bool>,
    pub relay_servers: Option<Vec<String>>,
    pub ice_servers: Option<Vec<String>>,
    pub token_secret_file: Option<String>,
    /// `token` (the default) or `open`.
    pub auth: Option<String>,
    pub metrics_listen: Option<String>,
    pub max_connections_per_ip: Option<String>,
    pub header_timeout: Option<String>,
    pub credentials_per_minute: Option<String>,
    pub credential_ttl: Option<String>,
    pub max_frame_bytes: Option<String>,
    pub messages_per_second: Option<String>,
    pub peers_per_room: Option<String>,
    pub max_rooms: Option<String>,
    pub max_connections: Option<String>,
    pub ping_interval: Option<String>,
    pub idle_timeout: Option<String>,
    pub cluster: Option<String>,
    pub cluster_lease: Option<String>,
    pub drain_timeout: Option<String>,
}

/// The TOML file: signal keys at the top, relay keys under `[relay]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalFile {
    pub listen: Option<String>,
    pub no_relay: Option<bool>,
    pub relay_servers: Option<Vec<String>>,
    pub ice_servers: Option<Vec<String>>,
    pub token_secret_file: Option<String>,
    pub auth: Option<String>,
    pub metrics_listen: Option<String>,
    pub max_connections_per_ip: Option<usize>,
    pub header_timeout: Option<u64>,
    pub credentials_per_minute: Option<u32>,
    pub credential_ttl: Option<u64>,
    pub max_frame_bytes: Option<usize>,
    pub messages_per_second: Option<u32>,
    pub peers_per_room: Option<usize>,
    pub max_rooms: Option<usize>,
    pub max_connections: Option<usize>,
    pub ping_interval: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub cluster: Option<String>,
    pub cluster_lease: Option<u64>,
    pub drain_timeout: Option<u64>,
    pub relay: Option<FileSettings>,
}

impl SignalFile {
    pub fn parse(text: &str, path: &str) -> Result<Self, SignalConfigError> {
        toml::from_str(text).map_err(|e| SignalConfigError::File {
            path: path.into(),
            message: e.message().into(),
        })
    }

    /// Splits into signal and relay settings.
    pub fn split(self) -> (SignalRaw, RawSettings) {
        let s = |v: Option<u64>| v.map(|v| v.to_string());
        let z = |v: Option<usize>| v.map(|v| v.to_string());
        (
            SignalRaw {
                listen: self.listen,
                no_relay: self.no_relay,
                relay_servers: self.relay_servers,
                ice_servers: self.ice_servers,
                token_secret_file: self.token_secret_file,
                auth: self.auth,
                metrics_listen: self.metrics_listen,
                max_connections_per_ip: z(self.max_connections_per_ip),
                header_timeout: s(self.header_timeout),
                credentials_per_minute: self.credentials_per_minute.map(|v| v.to_string()),
                credential_ttl: s(self.credential_ttl),
                max_frame_bytes: z(self.max_frame_bytes),
                messages_per_second: self.messages_per_second.map(|v| v.to_string()),
                peers_per_room: z(self.peers_per_room),
                max_rooms: z(self.max_rooms),
                max_connections: z(self.max_connections),
                ping_interval: s(self.ping_interval),
                idle_timeout: s(self.idle_timeout),
                cluster: self.cluster,
                cluster_lease: s(self.cluster_lease),
                drain_timeout: s(self.drain_timeout),
            },
            self.relay.map(Into::into).unwrap_or_default(),
        )
    }
}

impl SignalArgs {
    /// Splits into signal and relay settings.
    pub fn split(self) -> (SignalRaw, RawSettings) {
        (
            SignalRaw {
                listen: self.listen,
                no_relay: self.no_relay.then_some(true),
                relay_servers: (!self.relay_server.is_empty()).then_some(self.relay_server),
                ice_servers: (!self.ice_server.is_empty()).then_some(self.ice_server),
                token_secret_file: self.token_secret_file,
                auth: self.open.then(|| "open".to_owned()),
                metrics_listen: self.metrics_listen,
                max_connections_per_ip: self.max_connections_per_ip,
                header_timeout: self.header_timeout,
                credentials_per_minute: self.credentials_per_minute,
                credential_ttl: self.credential_ttl,
                max_frame_bytes: self.max_frame_bytes,
                messages_per_second: self.messages_per_second,
                peers_per_room: self.peers_per_room,
                max_rooms: self.max_rooms,
                max_connections: self.max_connections,
                ping_interval: self.ping_interval,
                idle_timeout: self.idle_timeout,
                cluster: self.cluster,
                cluster_lease: self.cluster_lease,
                drain_timeout: self.drain_timeout,
            },
            RawSettings {
                listen: self.relay_listen,
                public_ip: self.public_ip,
                relay_ports: self.relay_ports,
                tcp: self.relay_tcp,
                tls_listen: self.tls_listen,
                tls_cert: self.tls_cert,
                tls_key: self.tls_key,
                tls_name: self.tls_name,
                ..Default::default()
            },
        )
    }
}

impl SignalRaw {
    /// `NATKIT_SIGNAL_*` variables (`NATKIT_SIGNAL_ICE_SERVERS` is comma-separated).
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut s = SignalRaw::default();
        for (k, v) in vars {
            // An empty variable counts as unset (compose files pass `${VAR:-}` through).
            if v.trim().is_empty() {
                continue;
            }
            let Some(k) = k.strip_prefix("NATKIT_SIGNAL_") else {
                continue;
            };
            match k {
                "LISTEN" => s.listen = Some(v),
                "NO_RELAY" => s.no_relay = Some(matches!(v.as_str(), "1" | "true" | "yes")),
                "RELAY_SERVERS" => {
                    s.relay_servers = Some(
                        v.split(',')
                            .map(|x| x.trim().to_owned())
                            .filter(|x| !x.is_empty())
                            .collect(),
                    )
                }
                "ICE_SERVERS" => {
                    s.ice_servers = Some(
                        v.split(',')
                            .map(|x| x.trim().to_owned())
                            .filter(|x| !x.is_empty())
                            .collect(),
                    )
                }
                "TOKEN_SECRET_FILE" => s.token_secret_file = Some(v),
                "AUTH" => s.auth = Some(v),
                "METRICS_LISTEN" => s.metrics_listen = Some(v),
                "MAX_CONNECTIONS_PER_IP" => s.max_connections_per_ip = Some(v),
                "HEADER_TIMEOUT" => s.header_timeout = Some(v),
                "CREDENTIALS_PER_MINUTE" => s.credentials_per_minute = Some(v),
                "CREDENTIAL_TTL" => s.credential_ttl = Some(v),
                "MAX_FRAME_BYTES" => s.max_frame_bytes = Some(v),
                "MESSAGES_PER_SECOND" => s.messages_per_second = Some(v),
                "PEERS_PER_ROOM" => s.peers_per_room = Some(v),
                "MAX_ROOMS" => s.max_rooms = Some(v),
                "MAX_CONNECTIONS" => s.max_connections = Some(v),
                "PING_INTERVAL" => s.ping_interval = Some(v),
                "IDLE_TIMEOUT" => s.idle_timeout = Some(v),
                "CLUSTER" => s.cluster = Some(v),
                "CLUSTER_LEASE" => s.cluster_lease = Some(v),
                "DRAIN_TIMEOUT" => s.drain_timeout = Some(v),
                _ => {}
            }
        }
        s
    }

    pub fn merge(flags: SignalRaw, env: SignalRaw, file: SignalRaw) -> SignalRaw {
        macro_rules! pick {
            ($($f:ident),*) => { SignalRaw { $($f: flags.$f.or(env.$f).or(file.$f)),* } };
        }
        pick!(
            listen,
            no_relay,
            relay_servers,
            ice_servers,
            token_secret_file,
            auth,
            metrics_listen,
            max_connections_per_ip,
            header_timeout,
            credentials_per_minute,
            credential_ttl,
            max_frame_bytes,
            messages_per_second,
            peers_per_room,
            max_rooms,
            max_connections,
            ping_interval,
            idle_timeout,
            cluster,
            cluster_lease,
            drain_timeout
        )
    }

    /// Validates. `token_env` is `NATKIT_SIGNAL_TOKEN_SECRET`; `read` reads secret files.
    pub fn resolve(
        self,
        token_env: Option<String>,
        read: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<SignalSettings, SignalConfigError> {
        fn num<T: std::str::FromStr>(
            key: &'static str,
            v: Option<String>,
            default: T,
        ) -> Result<T, SignalConfigError>
        where
            T::Err: std::fmt::Display,
        {
            match v {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|e| invalid(key, format!("{v:?}: {e}"))),
            }
        }
        let listen: SocketAddr = num(
            "listen",
            self.listen,
            "0.0.0.0:8080".parse().expect("valid"),
        )?;
        let credential_ttl: u64 = num("credential_ttl", self.credential_ttl, 3600)?;
        if credential_ttl == 0 {
            return Err(invalid("credential_ttl", "must be at least 1 second"));
        }
        let max_frame_bytes: usize = num("max_frame_bytes", self.max_frame_bytes, 65536)?;
        if max_frame_bytes < 1024 {
            return Err(invalid(
                "max_frame_bytes",
                "must be at least 1024 (SDP offers are several KiB)",
            ));
        }
        let messages_per_second: u32 = num("messages_per_second", self.messages_per_second, 50)?;
        if messages_per_second == 0 {
            return Err(invalid("messages_per_second", "must be at least 1"));
        }
        let ping: u64 = num("ping_interval", self.ping_interval, 20)?;
        let idle: u64 = num("idle_timeout", self.idle_timeout, 60)?;
        if ping == 0 || idle <= ping {
            return Err(invalid(
                "idle_timeout",
                format!(
                    "must exceed ping_interval ({ping} s), and ping_interval must be at least 1"
                ),
            ));
        }
        let ice_servers = self.ice_servers.unwrap_or_default();
        for u in &ice_servers {
            if !(u.starts_with("stun:") || u.starts_with("turn:") || u.starts_with("turns:")) {
                return Err(invalid(
                    "ice_server",
                    format!("{u:?} is not a stun:, turn: or turns: URL"),
                ));
            }
        }
        let token = match (
            token_env.filter(|s| !s.trim().is_empty()),
            &self.token_secret_file,
        ) {
            (Some(s), _) => TokenSecret::new(&s),
            (None, Some(path)) => {
                let text =
                    read(path).map_err(|e| invalid("token_secret_file", format!("{path}: {e}")))?;
                Some(
                    TokenSecret::new(&text)
                        .ok_or_else(|| invalid("token_secret_file", format!("{path} is empty")))?,
                )
            }
            (None, None) => None,
        };
        let open = match self.auth.as_deref().map(str::trim) {
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
        let metrics_listen = match self.metrics_listen.as_deref().map(str::trim) {
            Some("off") => None,
            v => Some(num(
                "metrics_listen",
                v.map(str::to_owned),
                "127.0.0.1:9642".parse().expect("valid"),
            )?),
        };
        let listed = self.relay_servers.clone().unwrap_or_default();
        let relays_from_cluster = listed.iter().any(|v| v.trim() == "cluster");
        if relays_from_cluster && listed.len() > 1 {
            return Err(invalid(
                "relay_servers",
                "\"cluster\" (the relays announced in the cluster store) stands alone: \
                 drop the addresses, or list addresses without it",
            ));
        }
        let relay_servers = listed
            .iter()
            .filter(|v| v.trim() != "cluster")
            .map(|v| {
                v.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        "relay_servers",
                        format!("{v:?} is not IP:PORT (e.g. 203.0.113.7:3478) or \"cluster\""),
                    )
                })
            })
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        let cluster = match self.cluster.as_deref().map(str::trim) {
            None | Some("") | Some("off") => None,
            Some(url) => {
                let lease: u64 = num("cluster_lease", self.cluster_lease.clone(), 5)?;
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
        let drain_timeout: u64 = num("drain_timeout", self.drain_timeout, 30)?;
        if relays_from_cluster && cluster.is_none() {
            return Err(invalid(
                "relay_servers",
                "\"cluster\" hands out the relays announced in the cluster store: set cluster too",
            ));
        }
        let header_timeout: u64 = num("header_timeout", self.header_timeout, 10)?;
        if header_timeout == 0 {
            return Err(invalid("header_timeout", "must be at least 1 second"));
        }
        Ok(SignalSettings {
            open,
            generated_token,
            metrics_listen,
            max_connections_per_ip: num("max_connections_per_ip", self.max_connections_per_ip, 32)?,
            header_timeout: Duration::from_secs(header_timeout),
            credentials_per_minute: num("credentials_per_minute", self.credentials_per_minute, 30)?,
            revoked_file: None,
            listen,
            embedded_relay: !self.no_relay.unwrap_or(false)
                && relay_servers.is_empty()
                && !relays_from_cluster,
            relays_from_cluster,
            relay_servers,
            ice_urls: ice_servers,
            token,
            credential_ttl,
            max_frame_bytes,
            messages_per_second,
            peers_per_room: num("peers_per_room", self.peers_per_room, 16)?,
            max_rooms: num("max_rooms", self.max_rooms, 10_000)?,
            max_connections: num("max_connections", self.max_connections, 20_000)?,
            ping_interval: Duration::from_secs(ping),
            idle_timeout: Duration::from_secs(idle),
            cluster,
            drain_timeout: Duration::from_secs(drain_timeout),
        })
    }
}

/// Validated signal settings.
#[derive(Debug, Clone)]
pub struct SignalSettings {
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
    /// Revoked users and tokens: the relay's `revoked_file` (one file for both).
    pub revoked_file: Option<std::path::PathBuf>,
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

/// Everything the binary needs: signal settings and the relay's.
pub struct Loaded {
    pub signal: SignalSettings,
    pub relay: RelayConfig,
    /// True when no TURN secret was configured and one must be generated.
    pub generated_secret: bool,
}

/// Loads flags, environment and `--config` for the binary.
pub fn load(
    args: SignalArgs,
    config: Option<&std::path::Path>,
) -> Result<Loaded, SignalConfigError> {
    let (sig_file, relay_file) = match config {
        Some(p) => {
            let path = p.to_string_lossy().into_owned();
            let text = std::fs::read_to_string(p).map_err(|e| SignalConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            SignalFile::parse(&text, &path)?.split()
        }
        None => Default::default(),
    };
    let (sig_flags, relay_flags) = args.split();
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let signal = SignalRaw::merge(sig_flags, SignalRaw::from_env(vars.clone()), sig_file)
        .resolve(std::env::var("NATKIT_SIGNAL_TOKEN_SECRET").ok(), |p| {
            std::fs::read_to_string(p)
        })?;
    let mut relay = RawSettings::merge(relay_flags, RawSettings::from_env(vars), relay_file)
        .resolve(
            std::env::var(natkit_stun_turn::config::SECRET_ENV).ok(),
            |p| std::fs::read_to_string(p),
        )?
        .relay;
    let mut signal = signal;
    signal.revoked_file = relay.revoked_file.clone();
    let generated_secret = relay.secrets.is_none();
    if generated_secret {
        relay.secrets = Some(
            Secrets::new(vec![natkit_stun_turn::credentials::Secret::generate()])
                .expect("one secret"),
        );
    }
    let needs_secret = signal.ice_urls.iter().any(|u| u.starts_with("turn"))
        || !signal.relay_servers.is_empty()
        || signal.relays_from_cluster;
    if !signal.embedded_relay && needs_secret && generated_secret {
        return Err(invalid(
            "ice_server",
            "turn: URLs need the relay's secret: set NATKIT_TURN_SECRET or [relay] secret_file",
        ));
    }
    Ok(Loaded {
        signal,
        relay,
        generated_secret,
    })
}

#[cfg(test)]
mod tests;
