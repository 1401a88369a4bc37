//! The HTTP/WebSocket shell: axum routes, one task per WebSocket connection, the clock, and ICE
//! credential minting. Admission is [`crate::admission`]'s, routing [`crate::rooms`]'s.
//!
//! # Layout
//! - `state`: the node's shared state and delivery to the connections' queues.
//! - `router`: one text frame carried out (admission for joins and `refresh`, rooms for the
//!   rest).
//! - `connection`: the upgrade within the limits and the task of one WebSocket.
//! - `endpoints`: `/v1/ice-servers`, `/v1/check-servers`, `/metrics`; `link`: the cluster
//!   store's side and `/healthz`; `drain`: SIGUSR1; `outbox`: a connection's bounded queue.
//! - Here: the routes and [`serve`], [`serve_metrics`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::{SinkExt, StreamExt};
use natkit_daemon::Clock;
use natkit_proto::Redacted;
use natkit_proto::{ClientMsg, ErrorCode, HttpError, ServerMsg};
use prometheus::Registry;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn, Instrument};

use crate::admission::{Admission, Gate, Grant, Refusal};
use crate::cluster::store::Store;
use crate::config::SignalConfig;
use crate::demux::FirstBytes;
pub use crate::ice::IceConfig;
use crate::limits::{IpSlot, IpSlots, TokenBucket};
pub use crate::metrics::{Rejection, SignalMetrics};
use crate::rooms::{ConnId, JoinContext, Out, RoomLimits, Rooms, Routed};
use natkit_stun_turn::core::Transport;
use natkit_stun_turn::revocation::{RevocationFile, Revocations};
use natkit_stun_turn::server::StreamEntry;

/// Messages queued for one connection before it counts as too slow and is closed: signaling must
/// not lose a message silently (a lost answer or candidate breaks a session with no sign why).
const OUT_QUEUE: usize = 256;
/// A connection's outgoing queue holds at most this many of the largest frames a client may
/// send (`max_frame_bytes`): 1 MiB by default, so 20,000 connections that never read cost the
/// server at most about 20 GiB of queued messages, not the 320 GiB of 256 full frames each.
const OUT_QUEUE_FRAMES: usize = 16;
/// WebSocket close code for a connection too slow to take its messages (IANA: Try Again Later).
pub const CLOSE_TRY_AGAIN: u16 = 1013;
/// WebSocket close code for a frame over the size limit (RFC 6455 section 7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code for a frame that breaks the protocol (RFC 6455 section 7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// WebSocket close code when the server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a text frame that is not UTF-8 (RFC 6455 section 7.4.1).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Initial WebSocket read buffer per connection (docs/signaling-performance.md).
const READ_BUFFER: usize = 256;
/// How long a closing connection gets to send its last messages and finish the closing
/// handshake before its socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

mod connection;
mod drain;
mod endpoints;
mod front;
mod link;
mod outbox;
mod proxied;
mod router;
mod state;
mod web;
use connection::ws;
use endpoints::{check_servers, ice_servers, metrics};
pub use front::{serve_tls, PORT_KINDS};
use link::healthz;
use outbox::Outbox;
pub use state::AppState;
use state::{peer_id, Conn};

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

static INDEX_HTML: &str = include_str!("../web/index.html");
static CHECK_HTML: &str = include_str!("../web/check.html");

/// A page of ours: both import `/natkit.js`, which the browser fetches (and compiles) from the
/// headers on, before the page is parsed. Both probe the NAT first with `/v1/check-servers`
/// (the demo page's probe `?turn=false`, the check page's with TURN), fetched as early too
/// unless the page's query changes that request (a `token` goes into its URL, `signal` names
/// another server) or turns the probe off (`relay`).
fn page(html: &'static str, check: &str, query: Option<String>) -> impl IntoResponse {
    let plain = query.as_deref().is_none_or(|q| {
        !q.split('&')
            .any(|kv| matches!(kv.split('=').next(), Some("token" | "signal" | "relay")))
    });
    let link = if plain {
        format!("</natkit.js>; rel=modulepreload, <{check}>; rel=preload; as=fetch; crossorigin")
    } else {
        "</natkit.js>; rel=modulepreload".to_owned()
    };
    ([(header::LINK, link)], Html(html))
}

pub fn router(state: Arc<AppState>) -> Router {
    // What pages on other origins may read: CORS as `allowed_origins` says.
    let shared = Router::new()
        .route("/natkit.js", get(web::natkit_js))
        .route("/v1/check-servers", get(check_servers))
        .route("/v1/ice-servers", get(ice_servers))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            web::cors,
        ));
    Router::new()
        .route(
            "/",
            get(|RawQuery(q): RawQuery| async {
                page(INDEX_HTML, "/v1/check-servers?turn=false", q)
            }),
        )
        .route(
            "/check",
            get(|RawQuery(q): RawQuery| async { page(CHECK_HTML, "/v1/check-servers", q) }),
        )
        .route("/v1/ws", get(ws))
        .route("/healthz", get(healthz))
        .merge(shared)
        .with_state(state)
}

/// On the plain web port with the TLS port on: every request but `/healthz` answers with a
/// permanent redirect (308: the method stays) to the same path on `base` (`https://NAME[:PORT]`),
/// a WebSocket upgrade too; with `plain_api` only the pages (`/`, `/check`) do, and the HTTP API
/// and the WebSocket stay for the clients that use them in clear.
async fn to_https(
    base: Arc<str>,
    plain_api: bool,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let stays = match plain_api {
        false => path == "/healthz",
        true => {
            let read =
                req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
            !(matches!(path, "/" | "/check") && read)
        }
    };
    if stays {
        return next.run(req).await;
    }
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, format!("{base}{pq}"))],
    )
        .into_response()
}

/// The metrics listener's routes (`/metrics`, `/healthz`): never on the public listener.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves the metrics routes on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves one accepted HTTP connection (`io`, from `peer`, holding its per-IP `slot` until it,
/// or the WebSocket it upgrades to, ends; `held` until the HTTP connection ends) in a task of
/// its own.
fn spawn_http<IO, H>(
    app: &Router,
    state: &AppState,
    io: IO,
    peer: SocketAddr,
    slot: Arc<IpSlot>,
    held: H,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let svc = app
        .clone()
        .layer(Extension(ConnectInfo(peer)))
        .layer(Extension(Arc::clone(&slot)));
    let timeout = state.settings.header_timeout;
    tokio::spawn(async move {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(timeout);
        let conn = http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
            .with_upgrades();
        if let Err(e) = conn.await {
            debug!(%peer, error = %e, "http connection ended");
        }
        drop((slot, held));
    });
}

/// Counts and logs a connection closed before it was served, for `reason` (the label of
/// `natkit_signal_connections_refused_total`).
fn refuse(state: &AppState, client: SocketAddr, reason: &str) {
    state
        .metrics
        .connections_refused
        .with_label_values(&[reason])
        .inc();
    debug!(client = %Redacted(client), reason, "connection refused");
}

/// The next connection, with Nagle's algorithm off, its client as IPv4 when it came to a `[::]`
/// socket over IPv4 (not `::ffff:a.b.c.d`: per-IP limits, `trusted_proxies` and logs see one
/// form); `None` after a failed accept (out of file descriptors, say), once a moment has passed:
/// the loop does not spin.
async fn accept(listener: &TcpListener) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok((s, client)) => {
            // Signaling is small messages in bursts (a summary, then an offer): Nagle's
            // algorithm would hold the second until the first is acknowledged, up to a delayed
            // ACK (40 ms on Linux), measured in the browser benchmark.
            let _ = s.set_nodelay(true);
            Some((
                s,
                SocketAddr::new(client.ip().to_canonical(), client.port()),
            ))
        }
        Err(e) => {
            warn!(error = %e, "accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            None
        }
    }
}

/// Serves HTTP and WebSocket on `listener` until `shutdown` completes; connected peers are told
/// and closed with 1001 (the `shutdown` receiver given to [`AppState::new`] must fire first).
///
/// Each TCP connection gets `header_timeout` to send its request headers (a client trickling
/// them, slowloris, is closed) and counts against its IP's `max_connections_per_ip` until it,
/// or the WebSocket it upgrades to, ends; a connection past the limit is closed at once.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    relay: Option<StreamEntry>,
    https: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = match https {
        // Requests are the TLS port's: tokens and SDP do not travel in clear text.
        Some(base) => {
            let base: Arc<str> = base.into();
            let plain_api = state.settings.plain_api;
            router(Arc::clone(&state)).layer(axum::middleware::from_fn(move |req, next| {
                to_https(Arc::clone(&base), plain_api, req, next)
            }))
        }
        None => router(Arc::clone(&state)),
    };
    let port = listener.local_addr()?.port();
    let mut shutdown = std::pin::pin!(shutdown);
    let ticker = {
        let st = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(st.settings.ping_interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                st.ping_tick.send_modify(|n| *n += 1);
            }
        })
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = accept(&listener) => match r {
                Some(v) => v,
                None => continue,
            },
        };
        let (state, app, relay) = (Arc::clone(&state), app.clone(), relay.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + state.settings.header_timeout;
            let (client, io, slot) = match proxied::admit(&state, stream, peer, deadline).await {
                Ok(v) => v,
                Err(why) => return refuse(&state, peer, why),
            };
            // TURN over TCP shares the port with HTTP when the relay is embedded.
            let io = match &relay {
                None => io,
                Some(relay) => {
                    let (head, io) = io.into_parts();
                    match proxied::sniff(head, io, deadline).await {
                        Err(why) => return refuse(&state, client, why),
                        Ok((FirstBytes::Turn, io)) => {
                            state
                                .metrics
                                .port_connections
                                .with_label_values(&["turn_tcp"])
                                .inc();
                            relay.serve(io, client, port, Transport::Tcp).await;
                            return drop(slot);
                        }
                        // HTTP, or what hyper will answer 400 to.
                        Ok((_, io)) => io,
                    }
                }
            };
            spawn_http(&app, &state, io, client, slot, ());
        });
    }
    ticker.abort();
    // Give connection tasks a moment to send their close frames.
    for _ in 0..50 {
        if state.metrics.peers_connected.get() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if state.metrics.peers_connected.get() != 0 {
        warn!(
            open = state.metrics.peers_connected.get(),
            "connections still open at shutdown"
        );
    }
    Ok(())
}
