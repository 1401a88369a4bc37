//! The TCP and TLS shell (RFC 8656 section 3.1 and 12.5): it accepts connections within the
//! per-source and total limits, runs the TLS handshake (rustls) within a deadline, cuts the byte
//! stream into STUN and ChannelData frames ([`crate::framing`]) and hands each to the protocol
//! core with the connection's 5-tuple. Answers and relayed datagrams leave through a bounded
//! queue: a client that stops reading loses relayed datagrams, as it would over UDP, and never
//! grows the relay's memory. Closing the connection ends its allocation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natkit_proto::Redacted;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, Instrument};

use crate::core::{FiveTuple, Transport};
use crate::framing::{self, FrameError, MAX_FRAME};
use crate::metrics::{Dropped, StreamClose, StreamRefusal};
use crate::proxied;
use crate::queue::{Outgoing, StreamQueue};
use crate::ratelimit::IpSlots;
use crate::shared::Shared;

pub use crate::queue::QUEUE_BYTES;
/// From accept to the end of the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// From accept (or the end of the handshake) to the first complete message (slowloris).
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no allocation and nothing received for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes asked of the kernel per read; the buffer grows only while a frame needs it.
const READ_CHUNK: usize = 16 * 1024;
/// Frames one read's loop hands to the core before it lets the other ready tasks run. Without
/// it, a read carrying a whole window (128 frames at one allocation) was sent on before any echo
/// came back, and relay, load and peer took turns on the whole window instead of overlapping
/// (docs/performance.md, "TURN over TCP and TLS").
const YIELD_EVERY: usize = 32;
/// The first read's buffer: a whole Allocate fits, an idle connection holds little.
const FIRST_READ: usize = 512;

/// Accepts connections on `listener` until `stop`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    mut stop: watch::Receiver<bool>,
) {
    let limits = &shared.streams;
    let per_ip = IpSlots::new(limits.per_ip as usize);
    let total = Arc::new(Semaphore::new(match limits.total {
        0 => Semaphore::MAX_PERMITS,
        n => n as usize,
    }));
    let local = listener
        .local_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let server = SocketAddr::new(shared.server_ip(local), local.port());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (stream, client) = match r {
                    // A `[::]` TLS listener takes IPv4 too: its clients as IPv4, not
                    // `::ffff:a.b.c.d` (limits, trusted proxies, XOR-MAPPED-ADDRESS).
                    Ok((s, c)) => (s, SocketAddr::new(c.ip().to_canonical(), c.port())),
                    Err(e) => {
                        // Out of file descriptors, usually: back off instead of spinning.
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&total).try_acquire_owned() else {
                    shared.metrics.stream_refused(transport, StreamRefusal::Total);
                    debug!(%client, "connection refused: total stream limit");
                    continue;
                };
                // A load balancer's connection counts against the client its header names.
                let balancer = proxied::trusted(client, &limits.trusted_proxies);
                let slot = match balancer {
                    true => None,
                    false => match per_ip.acquire(client.ip()) {
                        Some(s) => Some(s),
                        None => {
                            shared.metrics.stream_refused(transport, StreamRefusal::PerIp);
                            debug!(client = %Redacted(client), "connection refused: per-IP stream limit");
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let five = FiveTuple { transport, client, server };
                let span = tracing::info_span!("stream", transport = transport.as_str(), client = %Redacted(client));
                let admitted = Admitted { per_ip: Arc::clone(&per_ip), balancer, held: (permit, slot) };
                conns.spawn(
                    connection(Arc::clone(&shared), stream, five, stop.clone(), admitted)
                        .instrument(span),
                );
            }
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
}

/// Is this first byte plaintext TURN (STUN or ChannelData) rather than a TLS record?
fn looks_like_turn(first: u8) -> bool {
    first & 0xc0 == 0 && first != 0x16 || (0x40..=0x7f).contains(&first)
}

/// What a connection holds from accept on, and how its per-IP slot is still to be taken.
struct Admitted<H> {
    per_ip: Arc<IpSlots>,
    /// From a trusted load balancer: the slot is taken for the client its header names.
    balancer: bool,
    held: H,
}

async fn connection<H: Send>(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut five: FiveTuple,
    stop: watch::Receiver<bool>,
    admitted: Admitted<H>,
) {
    let metrics = &shared.metrics;
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    // With trusted_proxies, every connection's first bytes are read for a PROXY header: a
    // balancer's names the client, anyone else's closes the connection.
    let mut stream = if shared.streams.trusted_proxies.is_empty() {
        proxied::Prefixed::new(Vec::new(), stream)
    } else {
        match proxied::client_of(stream, five.client, admitted.balancer, deadline).await {
            Ok((client, io)) => {
                five.client = client;
                io
            }
            Err(why) => {
                metrics.stream_refused(five.transport, StreamRefusal::ProxyHeader);
                debug!(why, "connection closed: PROXY protocol header");
                return;
            }
        }
    };
    let _slot = match admitted.balancer {
        false => None,
        true => match admitted.per_ip.acquire(five.client.ip()) {
            Some(s) => Some(s),
            None => {
                metrics.stream_refused(five.transport, StreamRefusal::PerIp);
                debug!(client = %Redacted(five.client), "connection refused: per-IP stream limit");
                return;
            }
        },
    };
    let _held = admitted.held;
    if five.transport != Transport::Tls {
        return run(shared, stream, five, stop).await;
    }
    let Some(keys) = shared.tls.clone() else {
        return;
    };
    match stream.peek_byte(deadline).await {
        Err(_) => {
            metrics.stream_refused(five.transport, StreamRefusal::HandshakeTimeout);
            debug!("tls handshake timed out before the first byte");
            return;
        }
        Ok(None) => return,
        Ok(Some(first)) if looks_like_turn(first) => {
            metrics.stream_refused(five.transport, StreamRefusal::NotTls);
            info!(client = %Redacted(five.client), "plaintext TURN on the TLS port; closed (use turn:...?transport=tcp on the TCP port)");
            return;
        }
        Ok(Some(_)) => {}
    }
    // No ALPN with certificate files (clients that offer any get none); with ACME the listener
    // offers `acme-tls/1` for the validator, and then `stun.turn` for TURN clients (RFC 7443).
    let alpn: &[&[u8]] = match keys.acme_certs() {
        Some(_) => &[b"stun.turn"],
        None => &[],
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(keys.current_with_alpn(alpn));
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Err(_) => {
            metrics.stream_refused(five.transport, StreamRefusal::HandshakeTimeout);
            debug!("tls handshake timed out");
        }
        Ok(Err(e)) => {
            metrics.stream_refused(five.transport, StreamRefusal::Handshake);
            // rustls errors name the alert or the protocol step, never key material.
            info!(client = %Redacted(five.client), error = %e, "tls handshake failed");
        }
        // An ACME validator's handshake (TLS-ALPN-01): it ends there (RFC 8737 section 3).
        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(crate::acme::ALPN) => {
            debug!("ACME TLS-ALPN-01 validation handshake answered");
        }
        Ok(Ok(tls)) => run(shared, tls, five, stop).await,
    }
}

/// Serves one established connection until it closes, a limit closes it, or `stop`.
pub(crate) async fn run<IO>(
    shared: Arc<Shared>,
    io: IO,
    five: FiveTuple,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let t = five.transport;
    let metrics = shared.metrics.clone();
    metrics
        .stream_accepted
        .with_label_values(&[t.as_str()])
        .inc();
    let active = metrics.stream_active.with_label_values(&[t.as_str()]);
    active.inc();
    let (mut rd, mut wr) = tokio::io::split(io);
    let out = Arc::new(Outgoing {
        buf: Mutex::new(Vec::new()),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    let queue = StreamQueue {
        out: Arc::clone(&out),
        drops: metrics.stream_queue_drops.with_label_values(&[t.as_str()]),
    };
    let writer = tokio::spawn(async move {
        // Two buffers swap places: the queue fills one while the other is written.
        let mut spare = Vec::new();
        loop {
            let batch = {
                let mut buf = out.buf.lock().expect("queue lock");
                std::mem::swap(&mut *buf, &mut spare);
                std::mem::take(&mut spare)
            };
            if batch.is_empty() {
                if out.closed.load(Ordering::Relaxed) {
                    break;
                }
                spare = batch;
                out.ready.notified().await;
                // Let the tasks that are ready too (the poller with more datagrams, the
                // reader with more requests) add to the buffer first, as an event loop writes
                // at the end of its pass: fewer, fuller TCP writes.
                tokio::task::yield_now().await;
                continue;
            }
            if wr.write_all(&batch).await.is_err() {
                break;
            }
            spare = batch;
            spare.clear();
            // A queue that grew large for one burst does not keep its memory.
            if spare.capacity() > QUEUE_BYTES {
                spare = Vec::new();
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut buf: Vec<u8> = Vec::new();
    let started = Instant::now();
    let mut framed = false;
    let mut last_rx = started;
    let reason = 'conn: loop {
        let deadline = if framed {
            last_rx + IDLE_TIMEOUT
        } else {
            started + FIRST_REQUEST_TIMEOUT
        };
        // An idle connection holds a small buffer; one that carries traffic reads in chunks.
        if buf.capacity() == 0 {
            buf.reserve(FIRST_READ);
        } else if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK.max(buf.len()).min(MAX_FRAME));
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn StreamClose::Client,
                    Ok(_) => last_rx = Instant::now(),
                }
                let mut at = 0;
                let mut handled = 0usize;
                loop {
                    match framing::next_frame(&buf[at..]) {
                        Ok(Some(f)) => {
                            framed = true;
                            let msg = &buf[at..at + f.message];
                            shared.process_stream(five, msg, &queue).await;
                            at += f.consumed;
                            handled += 1;
                            if handled % YIELD_EVERY == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                        Ok(None) => break,
                        Err(e @ FrameError::TooLarge { .. }) => {
                            debug!(error = %e, "closing");
                            break 'conn StreamClose::FrameTooLarge;
                        }
                        Err(e @ FrameError::NotStun { .. }) => {
                            debug!(error = %e, "closing");
                            shared.metrics.drop(Dropped::NotStun);
                            break 'conn StreamClose::NotStun;
                        }
                    }
                }
                buf.drain(..at);
                // A large frame's buffer is not kept for an idle connection.
                if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
                    buf = Vec::new();
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if !framed {
                    break 'conn StreamClose::FirstRequestTimeout;
                }
                if shared.core.lock().expect("core lock").has_allocation(&five) {
                    // The allocation's own lifetime bounds the connection.
                    last_rx = Instant::now();
                    continue;
                }
                break 'conn StreamClose::Idle;
            }
            _ = stop.changed() => break 'conn StreamClose::Shutdown,
        }
    };
    metrics.stream_closed(t, reason);
    debug!(reason = reason.as_str(), "connection closed");
    // Ends the allocation: its poller entry (holding a queue clone) goes with it.
    let _ = shared.core.lock().expect("core lock").close(&five);
    queue.close();
    drop(queue);
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
    active.dec();
}
