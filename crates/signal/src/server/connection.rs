//! One WebSocket connection: the upgrade within the limits (per IP, in all), then the task that
//! reads frames (size, UTF-8, rate), hands them to the router, pings, drains and closes with the
//! closing handshake.

use super::*;

pub(super) async fn ws(
    ws: WebSocketUpgrade,
    Query(q): Query<TokenQuery>,
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<Arc<IpSlot>>>,
    upgraded: Option<Extension<super::front::Upgraded>>,
    headers: HeaderMap,
) -> Response {
    if *st.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if !super::web::websocket_allowed(&st, &headers) {
        st.metrics
            .reject(Rejection::Refused(ErrorCode::Unauthorized));
        return (
            StatusCode::FORBIDDEN,
            Json(HttpError {
                error: ErrorCode::Unauthorized,
                message: "pages of this origin may not use this server: the operator lists the \
                          origins allowed (allowed_origins)"
                    .into(),
            }),
        )
            .into_response();
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
    // A TLS-port connection is counted as `wss` from here on.
    if let Some(Extension(u)) = upgraded {
        u.mark();
    }
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
        st.clock.now(),
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
                        if !bucket.allow(st.clock.now()) {
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
