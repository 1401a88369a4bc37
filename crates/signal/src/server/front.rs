//! The shared TLS port (`tls_listen`, 443 say): TLS ends here once (rustls, the embedded
//! relay's certificate), then the first decrypted bytes decide ([`crate::demux`]): an HTTP
//! request goes to the web server (the page, `/v1/*`, the WebSocket as WSS), STUN or
//! ChannelData to the embedded relay's TURN-over-TLS path. ALPN is offered (`http/1.1`,
//! `stun.turn`) and never required: TURN clients send none.
//!
//! Limits: the TLS handshake and the first bytes each get [`HANDSHAKE_TIMEOUT`]; a connection
//! counts against its IP's `max_connections_per_ip` (with the web listener's) and against
//! [`MAX_CONNECTIONS`] in all, whatever it turns out to be.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use natkit_proto::Redacted;
use natkit_stun_turn::acme;
use natkit_stun_turn::core::Transport;
use natkit_stun_turn::server::StreamEntry;
use natkit_stun_turn::tls::TlsKeys;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, Instrument};

use super::proxied::{admit, sniff, Prefixed};
use super::{accept, refuse, router, spawn_http, AppState};
use crate::demux::FirstBytes;

/// From accept to the end of the TLS handshake, and again from there to the bytes that tell
/// what the connection is.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the shared port holds at once, of every kind.
pub const MAX_CONNECTIONS: usize = 20_000;
/// The `kind` label values of `natkit_signal_port_connections_total`.
pub const PORT_KINDS: [&str; 9] = [
    "https",
    "wss",
    "turn",
    "turn_tcp",
    "acme",
    "handshake_timeout",
    "handshake_failed",
    "silent",
    "unknown",
];
/// Offered to clients that ask (browsers ask for `h2` too, and get `http/1.1`).
const ALPN: [&[u8]; 2] = [b"http/1.1", b"stun.turn"];

/// Accepts on `listener` until `shutdown`, each connection routed as the module says.
pub async fn serve_tls(
    listener: TcpListener,
    keys: Arc<TlsKeys>,
    relay: StreamEntry,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let port = listener.local_addr()?.port();
    let app = router(Arc::clone(&state));
    let total = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = accept(&listener) => match r {
                Some(v) => v,
                None => continue,
            },
        };
        let Ok(permit) = Arc::clone(&total).try_acquire_owned() else {
            refuse(&state, peer, "total_limit");
            continue;
        };
        let (state, app, relay, keys) = (
            Arc::clone(&state),
            app.clone(),
            relay.clone(),
            Arc::clone(&keys),
        );
        let span = tracing::debug_span!("tls_port", peer = %Redacted(peer));
        tokio::spawn(
            async move {
                let counted = |kind: &str| {
                    state
                        .metrics
                        .port_connections
                        .with_label_values(&[kind])
                        .inc()
                };
                let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
                let (client, raw, slot) = match admit(&state, stream, peer, deadline).await {
                    Ok(v) => v,
                    // Nothing at all before the deadline: the handshake's.
                    Err("silent") => return counted("handshake_timeout"),
                    Err("closed_early") => return counted("handshake_failed"),
                    Err(why) => return refuse(&state, peer, why),
                };
                let (kind, io) = match open(raw, &keys, deadline).await {
                    Ok(v) => v,
                    Err(why) => return counted(why),
                };
                match kind {
                    FirstBytes::Http => {
                        // Counted when it ends: `wss` if it became a WebSocket.
                        let upgraded = Upgraded::default();
                        let app = app.layer(axum::Extension(upgraded.clone()));
                        let end = CountAtEnd {
                            state: Arc::clone(&state),
                            upgraded,
                            _permit: permit,
                        };
                        spawn_http(&app, &state, io, client, slot, end);
                    }
                    FirstBytes::Turn => {
                        counted("turn");
                        relay.serve(io, client, port, Transport::Tls).await;
                        drop((slot, permit));
                    }
                    FirstBytes::Unknown | FirstBytes::NeedMore => counted("unknown"),
                }
            }
            .instrument(span),
        );
    }
    Ok(())
}

type Tls = tokio_rustls::server::TlsStream<Prefixed<TcpStream>>;

/// Set by the WebSocket handler when a TLS-port HTTP connection upgrades.
#[derive(Clone, Default)]
pub(crate) struct Upgraded(Arc<std::sync::atomic::AtomicBool>);

impl Upgraded {
    pub(crate) fn mark(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Counts an HTTP connection of the TLS port when it ends (`https`, or `wss` once upgraded),
/// holding its place in the port's total meanwhile.
struct CountAtEnd {
    state: Arc<AppState>,
    upgraded: Upgraded,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for CountAtEnd {
    fn drop(&mut self) {
        let kind = if self.upgraded.0.load(std::sync::atomic::Ordering::Relaxed) {
            "wss"
        } else {
            "https"
        };
        self.state
            .metrics
            .port_connections
            .with_label_values(&[kind])
            .inc();
    }
}

/// The handshake, then the first bytes: what the connection is, and the stream from its first
/// byte on; or why it was closed.
async fn open(
    stream: Prefixed<TcpStream>,
    keys: &TlsKeys,
    deadline: Instant,
) -> Result<(FirstBytes, Prefixed<Tls>), &'static str> {
    let acceptor = tokio_rustls::TlsAcceptor::from(keys.current_with_alpn(&ALPN));
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Err(_) => return Err("handshake_timeout"),
        Ok(Err(e)) => {
            // rustls names the alert or the step, never key material.
            debug!(error = %e, "TLS handshake failed");
            return Err("handshake_failed");
        }
        // An ACME validator's TLS-ALPN-01 handshake: it ends there (RFC 8737 section 3).
        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(acme::ALPN) => return Err("acme"),
        Ok(Ok(tls)) => tls,
    };
    sniff(Vec::new(), tls, Instant::now() + HANDSHAKE_TIMEOUT).await
}
