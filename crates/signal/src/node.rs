//! A natkit-signal node assembled from its validated configuration: the embedded relay (or the
//! relays it hands out), the web and WebSocket listener and the metrics listener, bound by
//! [`Node::start`] and served by [`Node::run`] until shutdown (or a drain and then shutdown).
//! The binary is parse, log, start, print, run.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use natkit_stun_turn::metrics::RelayMetrics;
use natkit_stun_turn::server::StreamEntry;
use natkit_stun_turn::server::{advertised_ip, RelayAddresses};
use natkit_stun_turn::tls::TlsKeys;
use natkit_stun_turn::{server as relay_server, RelayError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::fleet::{self, Fleet};
use crate::server::{self, AppState, IceConfig};

/// The room of the demo link printed when the token secret is generated for the run.
pub const DEMO_ROOM: &str = "demo";
/// How long that link's token works.
pub const DEMO_TOKEN_TTL: u64 = 24 * 3600;

/// A socket the node could not bind; each names the key to change.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Another TURN server (coturn, natkit-relay) holds the port, or use `--no-relay`.
    #[error("cannot start the embedded relay on udp {addr}; is coturn or natkit-relay running? (or use --no-relay)")]
    Relay {
        addr: SocketAddr,
        #[source]
        source: RelayError,
    },
    /// Pick another `--listen`.
    #[error("cannot listen on {addr}; pick another --listen")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Pick another `--metrics-listen`, or `off`.
    #[error(transparent)]
    Metrics(#[from] natkit_daemon::MetricsListenError),
    #[error("{task} task failed")]
    Task {
        task: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A bound node, not yet serving.
pub struct Node {
    state: Arc<AppState>,
    listener: TcpListener,
    /// The embedded relay's TLS listener, served here: HTTPS, WSS and TURN over TLS.
    tls_front: Option<(TcpListener, Arc<TlsKeys>, StreamEntry)>,
    /// The embedded relay's door for TURN over TCP arriving on the web port.
    relay_entry: Option<StreamEntry>,
    /// `https://NAME[:PORT]` when the TLS port is on: where the web port sends its requests.
    https: Option<String>,
    metrics_listener: Option<TcpListener>,
    relay_task: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    /// What the node tells its operator at start, a line each.
    banner: Vec<String>,
    sockets: Vec<(&'static str, SocketAddr)>,
}

impl Node {
    /// Binds every socket `config` asks for (the embedded relay first) and builds the state.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let NodeConfig {
            signal,
            relay,
            generated_secret,
        } = config;
        let registry = prometheus::Registry::new();
        let (stop, stop_rx) = watch::channel(false);
        let secrets = relay.secrets.clone();
        let mut banner = Vec::new();
        let (mut relay_task, mut relay_addr, mut tls_front) = (None, None, None);
        let mut relay_entry = None;
        if signal.embedded_relay {
            if generated_secret {
                warn!("no TURN secret configured: generated one for this run; TURN credentials stop working when the server restarts (set NATKIT_TURN_SECRET)");
            }
            let addr = relay.primary_listen();
            let relay_metrics = RelayMetrics::with_registry(registry.clone());
            let mut r = relay_server::Relay::bind(relay.clone(), relay_metrics.clone())
                .await
                .map_err(|source| NodeError::Relay { addr, source })?;
            relay_addr = Some(r.addresses().clone());
            relay_entry = Some(r.stream_entry());
            if let Some(keys) = r.tls_keys() {
                relay_server::announce_tls(&keys);
                if let Some(certs) = keys.acme_certs() {
                    tokio::spawn(natkit_stun_turn::acme::maintain(certs, relay_metrics));
                }
                tokio::spawn(relay_server::reload_tls_on_sighup(Arc::clone(&keys)));
                tokio::spawn(relay_server::reload_tls_on_change(Arc::clone(&keys)));
                // One port for the page, WSS and TURN over TLS: the node accepts, the relay
                // serves what turns out to be TURN.
                if let Some(l) = r.take_tls_listener() {
                    tls_front = Some((l, keys, r.stream_entry()));
                }
            }
            relay_task = Some(tokio::spawn(r.run(changed(stop_rx.clone()))));
        }
        let fleet = hand_out(&signal, &secrets, &mut banner);
        let ice = IceConfig {
            relay: relay_addr.as_ref().map(|a| a.endpoints(None)),
            fleet,
            relay_alt_port: relay_addr.as_ref().map(|a| a.alt_port.port()),
            relay_second: relay_addr
                .as_ref()
                .and_then(|a| Some((a.endpoints_second()?, a.second.as_ref()?.alt_port.port()))),
            urls: signal.ice_urls.clone(),
            secrets,
            ttl: signal.credential_ttl,
        };
        let listener = bind_web(signal.listen).map_err(|source| NodeError::Listen {
            addr: signal.listen,
            source,
        })?;
        let http = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: signal.listen,
            source,
        })?;
        let (metrics_listener, metrics_addr) = natkit_daemon::bind_metrics(signal.metrics_listen)
            .await?
            .unzip();
        let open = signal.open;
        let demo_token = match (&signal.token, signal.generated_token) {
            (Some(secret), true) => {
                Some(secret.mint(DEMO_ROOM, DEMO_TOKEN_TTL, natkit_daemon::unix_now()))
            }
            _ => None,
        };
        let cluster = signal.cluster.clone();
        let plain_api = signal.plain_api;
        let state = AppState::new(signal, ice, registry, stop_rx);
        if let Some(file) = &relay.revoked_file {
            state.watch_revocations(file);
        }
        state.start_cluster();
        if let (Some(c), Some(node)) = (&cluster, state.cluster_node()) {
            banner.push(format!(
                "node {node} of the cluster at {} (lease {} s): rooms are shared with the other nodes",
                c.redacted(),
                c.lease.as_secs()
            ));
        }
        let shown = if http.ip().is_unspecified() {
            format!("http://{}:{}", advertised_ip(&relay), http.port())
        } else {
            format!("http://{http}")
        };
        let ws = shown.replacen("http://", "ws://", 1);
        let metrics_shown = metrics_addr
            .map(|a| format!("http://{a}/metrics"))
            .unwrap_or_else(|| "off".into());
        banner.push(format!(
            "web page and signaling on {shown}/ (WebSocket {ws}/v1/ws, metrics {metrics_shown})"
        ));
        // With the TLS port, links say https: tokens do not travel in clear text.
        let mut link = shown.clone();
        let mut https = None;
        if let (Some((addr, name)), true) = (
            relay_addr.as_ref().and_then(|a| a.tls.as_ref()),
            tls_front.is_some(),
        ) {
            link = match addr.port() {
                443 => format!("https://{name}"),
                p => format!("https://{name}:{p}"),
            };
            https = Some(link.clone());
            let wss = link.replacen("https://", "wss://", 1);
            banner.push(format!(
                "HTTPS, WSS and TURN over TLS on one port: the page on {link}/ (WebSocket {wss}/v1/ws, turns:{name}:{})",
                addr.port()
            ));
        }
        if https.is_some() && plain_api {
            warn!("plain_api: the HTTP API and ws:// are served in clear on {shown} beside the TLS port; join tokens and SDP travel unencrypted there");
        }
        if open {
            warn!("OPEN MODE (--open / auth = \"open\"): anyone who reaches {shown} can join rooms and take TURN credentials; this server is an open relay. Use it only on a private network.");
            banner.push(
                "WARNING: open mode: no tokens, anyone can take TURN credentials (an open relay)"
                    .into(),
            );
        }
        if let Some(t) = &demo_token {
            banner.push("tokens are required; for this run a token secret was generated (set NATKIT_SIGNAL_TOKEN_SECRET or --token-secret-file to mint your own with `natkit-signal token`)".into());
            banner.push(format!("open {link}/?room={DEMO_ROOM}&token={t} in two browsers (room \"{DEMO_ROOM}\", valid {} h); check a network at {link}/check?token={t}", DEMO_TOKEN_TTL / 3600));
        }
        banner.push(match &relay_addr {
            Some(a) => format!(
                "embedded STUN/TURN relay on udp {}{} (RFC 5780 alternate port {}), relayed addresses on {}",
                a.primary,
                relay_server::stream_summary(a),
                a.alt_port,
                natkit_stun_turn::node::relayed_ips(a)
            ),
            None => "no embedded relay; peers get the --ice-server URLs".into(),
        });
        Ok(Node {
            sockets: sockets(http, metrics_addr, relay_addr.as_ref()),
            state,
            listener,
            tls_front,
            relay_entry,
            https,
            metrics_listener,
            relay_task,
            stop,
            banner,
        })
    }

    /// What the node says at start, a line each (the binary prefixes its name).
    pub fn banner(&self) -> &[String] {
        &self.banner
    }

    /// Every socket bound, named as in the `listening` line.
    pub fn sockets(&self) -> &[(&'static str, SocketAddr)] {
        &self.sockets
    }

    /// Serves until `shutdown`; after `drain` completes, peers are told to move and the node
    /// stops once they have gone (or the drain timeout passed, or `shutdown` came first).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        drain: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let Node {
            state,
            listener,
            tls_front,
            relay_entry,
            https,
            metrics_listener,
            relay_task,
            stop,
            ..
        } = self;
        let stop_rx = stop.subscribe();
        let metrics_task = metrics_listener.map(|l| {
            tokio::spawn(server::serve_metrics(
                l,
                Arc::clone(&state),
                changed(stop_rx.clone()),
            ))
        });
        let http_task = tokio::spawn(server::serve(
            listener,
            Arc::clone(&state),
            relay_entry,
            https,
            changed(stop_rx.clone()),
        ));
        let tls_task = tls_front.map(|(l, keys, relay)| {
            tokio::spawn(server::serve_tls(
                l,
                keys,
                relay,
                Arc::clone(&state),
                changed(stop_rx.clone()),
            ))
        });
        let drain_timeout = state.drain_timeout();
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut shutdown => {}
            _ = drain => {
                state.start_drain();
                tokio::select! {
                    _ = state.drained(drain_timeout) => {}
                    _ = &mut shutdown => {}
                }
            }
        }
        info!("shutting down: telling peers, closing allocations");
        let _ = stop.send(true);
        joined("http", http_task)
            .await?
            .map_err(|e| task("http", e))?;
        if let Some(t) = tls_task {
            joined("tls", t).await?.map_err(|e| task("tls", e))?;
        }
        state.leave_cluster().await;
        if let Some(t) = relay_task {
            joined("relay", t).await?;
        }
        if let Some(t) = metrics_task {
            joined("metrics", t)
                .await?
                .map_err(|e| task("metrics", e))?;
        }
        Ok(())
    }
}

/// The relays handed out instead of (or beside) the embedded one, watched in the background.
fn hand_out(
    signal: &crate::config::SignalConfig,
    secrets: &natkit_stun_turn::credentials::Secrets,
    banner: &mut Vec<String>,
) -> Option<Arc<Fleet>> {
    if signal.relays_from_cluster {
        let f = Fleet::announced();
        let url = signal.cluster.as_ref().expect("validated").url.clone();
        banner.push("handing out the natkit-relays announced in the cluster store, one per room among the serving ones".into());
        tokio::spawn(fleet::watch_cluster(Arc::clone(&f), url));
        Some(f)
    } else if !signal.relay_servers.is_empty() {
        let f = Fleet::new(&signal.relay_servers);
        banner.push(format!(
            "handing out {} relay(s), one per room among the healthy ones: {:?}",
            signal.relay_servers.len(),
            signal.relay_servers
        ));
        tokio::spawn(fleet::watch(Arc::clone(&f), secrets.clone()));
        Some(f)
    } else {
        None
    }
}

/// The web port: `[::]` (the default) takes both families on one socket, or IPv4 alone
/// (`0.0.0.0`, said in the log) on a host without IPv6; any other address as it is.
fn bind_web(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let bind = |addr: SocketAddr, dual: bool| -> std::io::Result<TcpListener> {
        TcpListener::from_std(natkit_daemon::tcp_listener(addr, dual.then_some(false))?)
    };
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        match bind(addr, true) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => {
                info!(error = %e, "no IPv6 on this host: the web port listens on IPv4 only");
                return bind(SocketAddr::from(([0, 0, 0, 0], addr.port())), false);
            }
            Err(e) => return Err(e),
        }
    }
    bind(addr, false)
}

fn sockets(
    http: SocketAddr,
    metrics: Option<SocketAddr>,
    relay: Option<&RelayAddresses>,
) -> Vec<(&'static str, SocketAddr)> {
    let mut sockets = vec![("http", http)];
    sockets.extend(metrics.map(|a| ("metrics", a)));
    if let Some(a) = relay {
        sockets.extend([("stun", a.primary), ("stun-alt", a.alt_port)]);
        sockets.extend(a.tcp.map(|t| ("turn-tcp", t)));
        sockets.extend(a.tls.as_ref().map(|(t, _)| ("turn-tls", *t)));
        if let Some(s) = &a.second {
            sockets.extend([("stun6", s.primary), ("stun6-alt", s.alt_port)]);
            sockets.extend(s.tcp.map(|t| ("turn6-tcp", t)));
        }
    }
    sockets
}

/// Completes when `stop` changes: the servers' shutdown future.
async fn changed(mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
}

async fn joined<T>(name: &'static str, t: JoinHandle<T>) -> Result<T, NodeError> {
    t.await.map_err(|e| task(name, e))
}

fn task(name: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> NodeError {
    NodeError::Task {
        task: name,
        source: Box::new(e),
    }
}
