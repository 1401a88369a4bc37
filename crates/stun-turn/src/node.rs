//! A standalone `natkit-relay` assembled from its settings: the relay, its metrics endpoint and
//! its announcement in the signaling cluster's Redis, bound by [`Node::start`] and served by
//! [`Node::run`] until shutdown; a drain (SIGUSR1 in the binary) ends it once the last allocation
//! has gone. The binary is parse, log, start, print, run.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::announce;
use crate::config::Settings;
use crate::error::RelayError;
use crate::http;
use crate::metrics::RelayMetrics;
use crate::server::{self, DrainHandle, Relay};

/// A socket the relay could not bind; each names what to change.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Another TURN server (coturn?) holds the port.
    #[error("cannot start the relay on {addr}; is another TURN server (coturn?) using the port?")]
    Relay {
        addr: SocketAddr,
        #[source]
        source: RelayError,
    },
    /// Pick another `--metrics-listen`, or `off`.
    #[error(transparent)]
    Metrics(#[from] natkit_daemon::MetricsListenError),
}

/// A bound relay, not yet serving.
pub struct Node {
    relay: Relay,
    metrics: RelayMetrics,
    metrics_listener: Option<TcpListener>,
    cluster: Option<String>,
    public_host: String,
    capacity: u64,
    banner: String,
    sockets: Vec<(&'static str, SocketAddr)>,
}

/// "203.0.113.1" or, for a dual-stack relay, "203.0.113.1 and 2001:db8::1".
pub fn relayed_ips(a: &server::RelayAddresses) -> String {
    match &a.second {
        Some(s) => format!("{} and {}", a.relay_ip, s.relay_ip),
        None => a.relay_ip.to_string(),
    }
}

impl Node {
    /// Binds the relay's sockets and the metrics listener.
    pub async fn start(settings: Settings) -> Result<Node, NodeError> {
        let metrics = RelayMetrics::new();
        let addr = settings.relay.primary_listen();
        let public_host = server::advertised_ip(&settings.relay).to_string();
        let capacity = u64::from(settings.relay.total_quota);
        let relay = Relay::bind(settings.relay, metrics.clone())
            .await
            .map_err(|source| NodeError::Relay { addr, source })?;
        if let Some(keys) = relay.tls_keys() {
            server::announce_tls(&keys);
            if let Some(certs) = keys.acme_certs() {
                tokio::spawn(crate::acme::maintain(certs, metrics.clone()));
            }
            tokio::spawn(server::reload_tls_on_change(std::sync::Arc::clone(&keys)));
            tokio::spawn(server::reload_tls_on_sighup(keys));
        }
        let a = relay.addresses().clone();
        let mut sockets = vec![("stun", a.primary), ("stun-alt", a.alt_port)];
        sockets.extend(a.tcp.map(|t| ("turn-tcp", t)));
        sockets.extend(a.tls.as_ref().map(|(t, _)| ("turn-tls", *t)));
        if let Some((x, y)) = a.alt_ip {
            sockets.extend([("stun-alt-ip", x), ("stun-alt-ip-port", y)]);
        }
        if let Some(s) = &a.second {
            sockets.extend([("stun6", s.primary), ("stun6-alt", s.alt_port)]);
            sockets.extend(s.tcp.map(|t| ("turn6-tcp", t)));
            if let Some((x, y)) = s.alt_ip {
                sockets.extend([("stun6-alt-ip", x), ("stun6-alt-ip-port", y)]);
            }
        }
        let (metrics_listener, metrics_addr) = natkit_daemon::bind_metrics(settings.metrics_listen)
            .await?
            .unzip();
        sockets.extend(metrics_addr.map(|m| ("metrics", m)));
        let banner = format!(
            "STUN/TURN on udp {}{} (RFC 5780 alternate port {}{}), relayed addresses on {}, metrics {}",
            a.primary,
            server::stream_summary(&a),
            a.alt_port,
            a.alt_ip
                .map(|(x, y)| format!(", alternate IP {x} and {y}"))
                .unwrap_or_default(),
            relayed_ips(&a),
            metrics_addr.map_or("off".into(), |m| format!("http://{m}/metrics")),
        );
        Ok(Node {
            relay,
            metrics,
            metrics_listener,
            cluster: settings.cluster,
            public_host,
            capacity,
            banner,
            sockets,
        })
    }

    /// What the relay says at start (the binary prefixes its name).
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// Every socket bound, named as in the `listening` line.
    pub fn sockets(&self) -> &[(&'static str, SocketAddr)] {
        &self.sockets
    }

    /// Starts a drain (new allocations refused, the relay ends when the last one has gone).
    pub fn drain_handle(&self) -> DrainHandle {
        self.relay.drain_handle()
    }

    /// Serves until `shutdown`, or until a drain has ended; announces the relay meanwhile when
    /// it is clustered. Says on standard error where it announces itself.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let (stop, stop_rx) = watch::channel(false);
        let metrics_task = self.metrics_listener.map(|l| {
            tokio::spawn(http::serve_metrics(
                l,
                self.metrics.clone(),
                changed(stop_rx.clone()),
            ))
        });
        let announcer = self.cluster.map(|url| {
            let endpoints = self.relay.addresses().endpoints(Some(&self.public_host));
            let (m, capacity) = (self.metrics.clone(), self.capacity);
            eprintln!(
                "natkit-relay: announcing {}:{} in the cluster store every {} s",
                endpoints.host,
                endpoints.port,
                announce::HEARTBEAT.as_secs()
            );
            tokio::spawn(announce::run(
                url,
                move || announce::Announcement {
                    host: endpoints.host.clone(),
                    port: endpoints.port,
                    tcp: endpoints.tcp,
                    tls: endpoints.tls.clone(),
                    allocations: m.active_allocations(),
                    capacity,
                    draining: m.draining.get() == 1,
                },
                changed(stop_rx.clone()),
            ))
        });
        let mut relay_task = tokio::spawn(self.relay.run(changed(stop_rx)));
        tokio::select! {
            _ = shutdown => {
                info!("shutting down");
                let _ = stop.send(true);
                (&mut relay_task).await?;
            }
            r = &mut relay_task => {
                r?;
                info!("drained; exiting");
                let _ = stop.send(true);
            }
        }
        if let Some(t) = announcer {
            let _ = t.await;
        }
        if let Some(t) = metrics_task {
            t.await??;
        }
        Ok(())
    }
}

/// Completes when `stop` changes: the tasks' shutdown future.
async fn changed(mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
}
