//! The HTTP/WebSocket shell: axum routes, one task per WebSocket connection, the clock, and ICE
//! credential minting. Routing decisions are [`crate::rooms`]'s.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures_util::{SinkExt, StreamExt};
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
pub use crate::ice::IceConfig;
use crate::limits::{IpSlot, IpSlots, TokenBucket};
pub use crate::metrics::{Rejection, SignalMetrics};
use crate::rooms::{ConnId, JoinContext, Out, RoomLimits, Rooms};
use natkit_stun_turn::revocation::{RevocationFile, Revocations};

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

mod drain;
mod endpoints;
mod link;
mod outbox;
use endpoints::{check_servers, ice_servers, metrics};
use link::healthz;
use outbox::Outbox;

static INDEX_HTML: &str = include_str!("../web/index.html");
static CHECK_HTML: &str = include_str!("../web/check.html");

/// One connection's outgoing side (its queue, and the switch that closes it when the queue is
/// full) and what its join established.
struct Conn {
    /// Its outgoing queue, which also closes it (code 1013) when evicted.
    tx: Arc<Outbox>,
    ip: IpAddr,
    /// The join token this connection joined with (`refresh` honours it).
    token: Option<Grant>,
}

pub struct AppState {
    settings: SignalConfig,
    ice: IceConfig,
    rooms: Mutex<Rooms>,
    conns: Mutex<HashMap<ConnId, Conn>>,
    next_conn: AtomicU64,
    conn_slots: Arc<Semaphore>,
    ip_slots: Arc<IpSlots>,
    /// Who may join and take credentials (the credential limits are its state).
    admission: Mutex<Admission>,
    /// Revoked users and tokens, re-read from the file at most once a second.
    revoked: Mutex<(Revocations, Option<RevocationFile>, Option<Instant>)>,
    registry: Registry,
    pub metrics: SignalMetrics,
    shutdown: watch::Receiver<bool>,
    /// The cluster store, when rooms are shared with other nodes (`--cluster`).
    cluster: Option<Arc<Store>>,
    /// Ticks every `ping_interval` ([`serve`] drives it): one timer for every connection's pings
    /// and idle check, instead of one per connection.
    ping_tick: watch::Sender<u64>,
    /// Set once this node drains ([`AppState::start_drain`]).
    draining: watch::Sender<bool>,
    /// The store's receiving ends, until [`AppState::start_cluster`] takes them.
    cluster_tasks: Mutex<Option<crate::cluster::store::StoreTasks>>,
}

use natkit_daemon::unix_now;

/// A fresh peer id for a join that asks for none.
fn peer_id() -> String {
    crate::rooms::random_name(10)
}

impl AppState {
    /// `registry` gets the signal metrics (share the relay's to serve one page).
    pub fn new(
        settings: SignalConfig,
        ice: IceConfig,
        registry: Registry,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let metrics = SignalMetrics::new(&registry);
        let (cluster, cluster_tasks) = match &settings.cluster {
            Some(c) => {
                let node = crate::cluster::node_id();
                let (store, tasks) =
                    Store::new(&c.url, &node, c.lease).expect("the URL was validated");
                (Some(store), Some(tasks))
            }
            None => (None, None),
        };
        let rooms = match &cluster {
            Some(store) => Rooms::clustered(store.node()),
            None => Rooms::new(RoomLimits {
                peers_per_room: settings.peers_per_room,
                rooms: settings.max_rooms,
            }),
        };
        Arc::new(AppState {
            rooms: Mutex::new(rooms),
            cluster,
            cluster_tasks: Mutex::new(cluster_tasks),
            draining: watch::channel(false).0,
            ping_tick: watch::channel(0).0,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            conn_slots: Arc::new(Semaphore::new(settings.max_connections)),
            ip_slots: IpSlots::new(settings.max_connections_per_ip),
            admission: Mutex::new(Admission::new(settings.credentials_per_minute)),
            revoked: Mutex::new((
                Revocations::default(),
                settings.revoked_file.as_deref().map(RevocationFile::new),
                None,
            )),
            settings,
            ice,
            registry,
            metrics,
            shutdown,
        })
    }

    fn deliver(&self, outs: Vec<Out>) {
        if outs.is_empty() {
            return;
        }
        let conns = self.conns.lock().expect("conns lock");
        for o in outs {
            let Some(c) = conns.get(&o.to) else { continue };
            self.enqueue(c, o.msg.to_text());
        }
    }

    /// Queues `text` for `c`; a full queue closes the connection rather than leave it with a
    /// gap (the client reconnects and rejoins).
    fn enqueue(&self, c: &Conn, text: String) {
        if c.tx.try_send(Message::Text(text.into())).is_err()
            && c.tx.evict("too slow: outgoing queue full", false)
        {
            self.metrics.reject(Rejection::SlowConsumer);
        }
    }

    /// Runs one admission step with what this node knows now: the clock, whether it drains,
    /// the token secret and the revocation file (re-read when it changed, at most once a second).
    fn admit<T>(&self, step: impl FnOnce(&mut Admission, Gate<'_>) -> T) -> T {
        let mut g = self.revoked.lock().expect("revoked lock");
        let (revs, file, checked) = &mut *g;
        let now = Instant::now();
        if let Some(f) = file {
            if checked.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(1)) {
                *checked = Some(now);
                match f.reload() {
                    Ok(Some(r)) => *revs = r,
                    Ok(None) => {}
                    Err(e) => {
                        warn!(error = %e, "revocation file not reloaded; the previous entries stay")
                    }
                }
            }
        }
        let gate = Gate {
            unix: unix_now(),
            now,
            draining: self.is_draining(),
            tokens: self.settings.token.as_ref(),
            revocations: revs,
        };
        step(&mut self.admission.lock().expect("admission lock"), gate)
    }

    /// Counts a refusal's credential limit, if it hit one.
    fn count_refusal(&self, r: &Refusal) {
        if let Some(limit) = r.limit {
            self.metrics
                .credentials_refused
                .with_label_values(&[limit.as_str()])
                .inc();
        }
    }

    /// Answers a refused request on the WebSocket.
    fn refuse(&self, conn: ConnId, r: Refusal) {
        self.count_refusal(&r);
        self.reject(conn, r.code, r.message);
    }

    fn reject(&self, conn: ConnId, code: ErrorCode, message: impl Into<String>) {
        self.metrics.reject(Rejection::Refused(code));
        self.deliver(vec![Out {
            to: conn,
            msg: ServerMsg::error(code, message),
        }]);
    }

    async fn handle_text(&self, conn: ConnId, text: &str, url_token: Option<&str>) {
        let ip = match self.conns.lock().expect("conns lock").get(&conn) {
            Some(c) => c.ip,
            None => return,
        };
        let msg = match ClientMsg::parse(text) {
            Ok(m) => m,
            Err(e) => return self.reject(conn, e.code, e.message),
        };
        let outs = match msg {
            ClientMsg::Join {
                room,
                peer_id: requested,
                token,
                version: _,
            } => {
                let token = token.as_ref().map(|t| t.expose()).or(url_token);
                let generated = peer_id();
                let id = requested.clone().unwrap_or_else(|| generated.clone());
                let admitted = match self.admit(|a, gate| a.join(gate, ip, &room, &id, token)) {
                    Ok(j) => j,
                    Err(r) => {
                        debug!(conn, code = r.code.as_str(), "join refused");
                        return self.refuse(conn, r);
                    }
                };
                let ice_servers = match &admitted.mint_for {
                    Some(user) => self.ice.mint(user, unix_now()),
                    None => Vec::new(),
                };
                let ctx = JoinContext {
                    generated_id: generated,
                    ice_servers,
                    ttl: self.ice.ttl,
                };
                let outs = match &self.cluster {
                    // Boxed: the store's round trip would otherwise size every connection's
                    // task for the whole of its life (memory per peer).
                    Some(store) => {
                        Box::pin(self.join_clustered(store, conn, &room, requested.as_deref(), ctx))
                            .await
                    }
                    None => {
                        let mut rooms = self.rooms.lock().expect("rooms lock");
                        let outs = rooms.join(conn, &room, requested.as_deref(), ctx);
                        self.metrics.rooms.set(rooms.room_count() as i64);
                        outs
                    }
                };
                if outs.iter().any(|o| matches!(o.msg, ServerMsg::Welcome(_))) {
                    self.metrics.credentials_issued.inc();
                    if let Some(c) = self.conns.lock().expect("conns lock").get_mut(&conn) {
                        c.token = admitted.grant;
                    }
                    info!(conn, room = %room, "peer joined");
                }
                outs
            }
            ClientMsg::Refresh => {
                let member = {
                    let rooms = self.rooms.lock().expect("rooms lock");
                    rooms
                        .room_of(conn)
                        .zip(rooms.peer_of(conn))
                        .map(|(r, p)| (r.to_owned(), p.to_owned()))
                };
                let grant = self
                    .conns
                    .lock()
                    .expect("conns lock")
                    .get(&conn)
                    .and_then(|c| c.token.clone());
                let member = member.as_ref().map(|(r, p)| (r.as_str(), p.as_str()));
                let user = match self.admit(|a, gate| a.refresh(gate, ip, member, grant.as_ref())) {
                    Ok(user) => user,
                    Err(r) => return self.refuse(conn, r),
                };
                self.metrics.credentials_issued.inc();
                vec![Out {
                    to: conn,
                    msg: ServerMsg::IceServers {
                        ice_servers: self.ice.mint(&user, unix_now()),
                        ttl: self.ice.ttl,
                    },
                }]
            }
            other => {
                let kind = other.relayed_type();
                let mut rooms = self.rooms.lock().expect("rooms lock");
                let mut outs = rooms.route(conn, other);
                let forwarded = self.send_ops(&mut rooms, &mut outs);
                self.metrics.rooms.set(rooms.room_count() as i64);
                drop(rooms);
                if let (Some(kind), Some(first)) = (kind, outs.first()) {
                    if first.to != conn || forwarded {
                        self.metrics.relayed(kind);
                    }
                }
                outs
            }
        };
        for o in &outs {
            if o.to == conn {
                if let ServerMsg::Error { code, .. } = &o.msg {
                    self.metrics.reject(Rejection::Refused(*code));
                }
            }
        }
        self.deliver(outs);
    }

    fn disconnect(&self, conn: ConnId) {
        self.conns.lock().expect("conns lock").remove(&conn);
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let mut outs = rooms.leave(conn);
        self.send_ops(&mut rooms, &mut outs);
        self.metrics.rooms.set(rooms.room_count() as i64);
        drop(rooms);
        self.deliver(outs);
    }
}

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

async fn ws(
    ws: WebSocketUpgrade,
    Query(q): Query<TokenQuery>,
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<Arc<IpSlot>>>,
) -> Response {
    if *st.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if st.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HttpError {
                error: ErrorCode::ShuttingDown,
                message: "this node is draining: connect to another node".into(),
            }),
        )
            .into_response();
    }
    let Ok(permit) = Arc::clone(&st.conn_slots).try_acquire_owned() else {
        st.metrics.reject(Rejection::Refused(ErrorCode::ServerFull));
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HttpError {
                error: ErrorCode::ServerFull,
                message: "too many connections".into(),
            }),
        )
            .into_response();
    };
    // tungstenite's own limit sits above ours so that over-limit frames reach us and get 1009.
    let limit = st.settings.max_frame_bytes * 4 + 4096;
    // tungstenite's defaults (128 KiB read and write buffers per connection) would make 10k
    // peers cost 2.5 GiB; signaling frames are small (a candidate is ~200 bytes), and the read
    // buffer grows for a frame that needs it (an SDP offer, a few KiB).
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(limit * 2)
        .on_upgrade(move |socket| async move {
            // Boxed: axum's upgrade task would otherwise hold the connection's whole state
            // beside its own for the connection's life (docs/signaling-performance.md).
            let conn = st.next_conn.fetch_add(1, Ordering::Relaxed);
            let span = tracing::info_span!("connection", conn, client = %Redacted(peer.ip()));
            Box::pin(connection(st, conn, socket, q.token, peer.ip()))
                .instrument(span)
                .await;
            // The client IP's connection slot is held until the WebSocket ends.
            drop(slot);
            drop(permit);
        })
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Completes once the node drains.
async fn drain_started(rx: &mut watch::Receiver<bool>) {
    let started = rx.wait_for(|d| *d).await.is_ok();
    if !started {
        std::future::pending::<()>().await;
    }
}

async fn connection(
    st: Arc<AppState>,
    conn: ConnId,
    socket: WebSocket,
    url_token: Option<String>,
    ip: IpAddr,
) {
    let (mut sink, mut stream) = socket.split();
    let tx = Arc::new(Outbox::new(
        OUT_QUEUE,
        OUT_QUEUE_FRAMES * st.settings.max_frame_bytes,
    ));
    let rx = Arc::clone(&tx);
    st.conns.lock().expect("conns lock").insert(
        conn,
        Conn {
            tx: tx.clone(),
            ip,
            token: None,
        },
    );
    st.metrics.peers_connected.inc();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let last = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || last {
                break;
            }
        }
        if let Some(why) = rx.eviction() {
            // The client rejoins and starts over.
            let _ = sink.send(close(CLOSE_TRY_AGAIN, why)).await;
        }
        let _ = sink.close().await;
    });
    let writer_abort = writer.abort_handle();
    let s = &st.settings;
    let mut bucket = TokenBucket::new(
        s.messages_per_second,
        s.messages_per_second * 2,
        Instant::now(),
    );
    let mut ping = st.ping_tick.subscribe();
    ping.borrow_and_update();
    let mut last_seen = Instant::now();
    let mut shutdown = st.shutdown.clone();
    let mut draining = st.draining.subscribe();
    let mut told_to_move = false;
    let why = loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    None => break "closed",
                    Some(Err(e)) => {
                        debug!(conn, error = %e, "websocket error");
                        // tungstenite checks that text frames are UTF-8 (its error says
                        // "UTF-8"); otherwise it is usually a frame above even its limit.
                        if e.to_string().to_ascii_lowercase().contains("utf-8") {
                            st.metrics.reject(Rejection::InvalidUtf8);
                            let _ = tx.try_send(close(CLOSE_INVALID_DATA, "text frames must be UTF-8"));
                            break "invalid utf-8";
                        }
                        // Over tungstenite's own size limit: 1009; anything else it refuses
                        // (reserved bits or opcodes, a fragmented control frame, an unmasked
                        // frame) breaks the protocol: 1002 (RFC 6455 section 7.4.1).
                        if e.to_string().to_ascii_lowercase().contains("space limit exceeded") {
                            let _ = tx.try_send(close(CLOSE_TOO_BIG, "frame too big"));
                            break "frame too big";
                        }
                        let _ = tx.try_send(close(CLOSE_PROTOCOL_ERROR, "websocket protocol error"));
                        break "protocol error";
                    }
                    Some(Ok(f)) => f,
                };
                last_seen = Instant::now();
                match frame {
                    Message::Text(t) => {
                        if t.len() > s.max_frame_bytes {
                            st.metrics.reject(Rejection::FrameTooBig);
                            let _ = tx.try_send(close(CLOSE_TOO_BIG, "frame too big"));
                            break "frame too big";
                        }
                        if !bucket.allow(last_seen) {
                            st.reject(conn, ErrorCode::RateLimited, format!("more than {} messages per second", s.messages_per_second));
                            continue;
                        }
                        st.handle_text(conn, t.as_str(), url_token.as_deref()).await;
                    }
                    Message::Binary(b) => {
                        if b.len() > s.max_frame_bytes {
                            st.metrics.reject(Rejection::FrameTooBig);
                            let _ = tx.try_send(close(CLOSE_TOO_BIG, "frame too big"));
                            break "frame too big";
                        }
                        st.reject(conn, ErrorCode::BadJson, "binary frames are not supported; send JSON text");
                    }
                    Message::Close(_) => break "closed by peer",
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            Ok(()) = ping.changed() => {
                if last_seen.elapsed() > s.idle_timeout {
                    let _ = tx.try_send(close(CLOSE_GOING_AWAY, "idle timeout"));
                    break "idle timeout";
                }
                let _ = tx.try_send(Message::Ping(Vec::new().into()));
            }
            why = tx.wait_evicted() => {
                warn!(conn, why, "closing a connection");
                break "evicted";
            }
            () = drain_started(&mut draining), if !told_to_move => {
                told_to_move = true;
                let msg = ServerMsg::Reconnect { reason: "draining".into() }.to_text();
                let _ = tx.try_send(Message::Text(msg.into()));
            }
            _ = shutdown.changed() => {
                let bye = ServerMsg::error(ErrorCode::ShuttingDown, "the server is shutting down").to_text();
                let _ = tx.try_send(Message::Text(bye.into()));
                let _ = tx.try_send(close(CLOSE_GOING_AWAY, "server shutting down"));
                break "shutdown";
            }
        }
    };
    debug!(conn, why, "connection ends");
    st.disconnect(conn);
    tx.close();
    // The closing handshake (RFC 6455 section 7.1.1): the writer sends what is left and the
    // close frame, then the client's frames are read until its Close. A socket closed with
    // the client's late frames (its Close, a Pong) unread answers them with RST, and an RST
    // makes the client's kernel throw away what it had received and not yet read: the tail
    // of its messages and the close code. A client that stopped reading can block the writer
    // on TCP forever: all of this gets CLOSE_GRACE.
    let handshake = async {
        let _ = writer.await;
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    };
    if tokio::time::timeout(CLOSE_GRACE, handshake).await.is_err() {
        writer_abort.abort();
    }
    st.metrics.peers_connected.dec();
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/check", get(|| async { Html(CHECK_HTML) }))
        .route("/v1/check-servers", get(check_servers))
        .route("/v1/ws", get(ws))
        .route("/v1/ice-servers", get(ice_servers))
        .route("/healthz", get(healthz))
        .with_state(state)
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

/// Serves HTTP and WebSocket on `listener` until `shutdown` completes; connected peers are told
/// and closed with 1001 (the `shutdown` receiver given to [`AppState::new`] must fire first).
///
/// Each TCP connection gets `header_timeout` to send its request headers (a client trickling
/// them, slowloris, is closed) and counts against its IP's `max_connections_per_ip` until it,
/// or the WebSocket it upgrades to, ends; a connection past the limit is closed at once.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let app = router(Arc::clone(&state));
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
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = state.ip_slots.acquire(peer.ip()) else {
            state
                .metrics
                .connections_refused
                .with_label_values(&["per_ip_limit"])
                .inc();
            debug!(peer = %Redacted(peer), "connection refused: per-IP limit");
            drop(stream);
            continue;
        };
        let svc = app
            .clone()
            .layer(Extension(ConnectInfo(peer)))
            .layer(Extension(Arc::clone(&slot)));
        let timeout = state.settings.header_timeout;
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(timeout);
            let conn = http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "http connection ended");
            }
            drop(slot);
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
