//! The relay load over TURN-over-TCP and TURN-over-TLS: each allocation is its own connection to
//! the server (Allocate with the 401 challenge, ChannelBind towards the UDP echo peer), then
//! padded ChannelData back to back on the stream, `window` in flight per connection, every echo
//! releasing the next (the answers of one read release theirs in one write). Reports the same figures as the UDP load ([`crate::load::LoadReport`]),
//! counting two relayed datagrams per round trip (to the peer over UDP, back over the stream).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use natkit_stun_turn::framing;
use natkit_stun_turn::wire::request as build;
use stun::message::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;

use crate::client::{answer_challenge, code, first_allocate, second_allocate};
use crate::load::{LoadReport, Measured, Watch};

/// How the load reaches the server.
#[derive(Clone)]
pub enum StreamTransport {
    Tcp,
    /// TLS, verifying the server as `name` against `config`'s roots.
    Tls {
        config: Arc<rustls::ClientConfig>,
        name: String,
    },
}

#[derive(Clone)]
pub struct StreamLoadConfig {
    pub server: SocketAddr,
    pub secret: String,
    pub transport: StreamTransport,
    pub echo: SocketAddr,
    pub allocations: usize,
    pub payload: usize,
    /// Messages in flight per connection.
    pub window: usize,
    pub duration: Duration,
    pub server_pid: Option<u32>,
}

/// A TLS client configuration (ring) that trusts the CA certificates in `pem`.
pub fn tls_config(pem: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(c?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no CA certificate in the PEM given");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection and its read buffer (`buf[at..]` not yet taken: frames are taken from the front
/// without moving the rest, which is compacted only when more is read).
struct Conn {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    at: usize,
}

impl Conn {
    async fn open(cfg: &StreamLoadConfig) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(cfg.server).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Stream> = match &cfg.transport {
            StreamTransport::Tcp => Box::new(tcp),
            StreamTransport::Tls { config, name } => {
                let name = rustls::pki_types::ServerName::try_from(name.clone())?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await?;
                Box::new(tls)
            }
        };
        Ok(Conn {
            io,
            buf: Vec::with_capacity(16 * 1024),
            at: 0,
        })
    }

    /// The next whole frame, as it is on the stream.
    async fn frame(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Ok(f);
            }
            self.buf.drain(..self.at);
            self.at = 0;
            let mut chunk = [0u8; 16 * 1024];
            let n = self.io.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next whole frame if the last read brought it, without reading again.
    fn buffered_frame(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(f) = framing::next_frame(&self.buf[self.at..])? else {
            return Ok(None);
        };
        let frame = self.buf[self.at..self.at + f.message].to_vec();
        self.at += f.consumed;
        Ok(Some(frame))
    }

    async fn transact(&mut self, m: &Message) -> anyhow::Result<Message> {
        self.io.write_all(&m.raw).await?;
        loop {
            let f = self.frame().await?;
            let mut r = Message::new();
            r.raw = f;
            if r.decode().is_ok() && r.transaction_id == m.transaction_id {
                return Ok(r);
            }
        }
    }
}

/// A connection with an allocation and channel 0x4000 bound to the echo peer.
async fn allocate(cfg: &StreamLoadConfig, user: &str) -> anyhow::Result<Conn> {
    let mut c = Conn::open(cfg).await?;
    let challenge = c.transact(&first_allocate()).await?;
    let auth = answer_challenge(&challenge, &cfg.secret, user)?;
    let r = c.transact(&second_allocate(&auth)).await?;
    anyhow::ensure!(
        r.typ.class == CLASS_SUCCESS_RESPONSE,
        "allocate failed with {:?}",
        code(&r)
    );
    let bind = build(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(ChannelNumber(0x4000)),
            Box::new(PeerAddress {
                ip: cfg.echo.ip(),
                port: cfg.echo.port(),
            }),
        ],
        Some(&auth),
    );
    let r = c.transact(&bind).await?;
    anyhow::ensure!(
        r.typ.class == CLASS_SUCCESS_RESPONSE,
        "channel bind failed with {:?}",
        code(&r)
    );
    Ok(c)
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    rtts_us: Mutex<Vec<u32>>,
}

/// A ChannelData frame whose payload starts with the send time (ns since `epoch`).
fn frame(payload: usize, epoch: Instant) -> Vec<u8> {
    let mut p = vec![0u8; payload.max(16)];
    p[..8].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
    framing::channel_data(0x4000, &p)
}

/// Keeps `window` messages in flight on one connection until `end`.
async fn traffic(
    mut c: Conn,
    cfg: Arc<StreamLoadConfig>,
    epoch: Instant,
    end: Instant,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    for _ in 0..cfg.window {
        out.extend(frame(cfg.payload, epoch));
    }
    c.io.write_all(&out).await?;
    counters
        .sent
        .fetch_add(cfg.window as u64, Ordering::Relaxed);
    let mut rtts = Vec::new();
    let mut unanswered = cfg.window;
    while unanswered > 0 {
        let left = end.saturating_duration_since(Instant::now()) + Duration::from_millis(300);
        let first = match tokio::time::timeout(left, c.frame()).await {
            Ok(f) => f?,
            Err(_) => break,
        };
        // Every answer the last read brought releases one message; they leave in one write,
        // as the UDP load sends a window in one call, so the load spends less per message.
        let mut answered = 0;
        let mut next = Some(first);
        while let Some(f) = next {
            if let Some((0x4000, data)) = natkit_stun_turn::wire::parse_channel_data(&f) {
                answered += 1;
                if data.len() >= 8 {
                    let sent = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
                    let now = epoch.elapsed().as_nanos() as u64;
                    rtts.push((now.saturating_sub(sent) / 1000) as u32);
                }
            }
            next = c.buffered_frame()?;
        }
        unanswered -= answered;
        counters
            .received
            .fetch_add(answered as u64, Ordering::Relaxed);
        if Instant::now() < end && answered > 0 {
            out.clear();
            for _ in 0..answered {
                out.extend(frame(cfg.payload, epoch));
            }
            c.io.write_all(&out).await?;
            counters.sent.fetch_add(answered as u64, Ordering::Relaxed);
            unanswered += answered;
        }
    }
    counters.rtts_us.lock().expect("rtts").extend(rtts);
    Ok(())
}

/// Opens the connections and allocations, runs the traffic, and measures.
pub async fn run(cfg: &StreamLoadConfig) -> anyhow::Result<LoadReport> {
    let watch = Watch::start(cfg.server_pid);
    let mut conns = Vec::with_capacity(cfg.allocations);
    for i in 0..cfg.allocations {
        conns.push(allocate(cfg, &format!("stream{i}")).await?);
    }
    let watch = watch.setup_done().await;
    let shared = Arc::new(cfg.clone());
    let counters = Arc::new(Counters::default());
    let epoch = Instant::now();
    let end = epoch + cfg.duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            tokio::spawn(traffic(
                c,
                Arc::clone(&shared),
                epoch,
                end,
                Arc::clone(&counters),
            ))
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let rtts_us = std::mem::take(&mut *counters.rtts_us.lock().expect("rtts"));
    Ok(Measured {
        allocations: cfg.allocations,
        payload: cfg.payload,
        sent: counters.sent.load(Ordering::Relaxed),
        received: counters.received.load(Ordering::Relaxed),
        misrouted: 0,
        rtts_us,
        seconds: cfg.duration.as_secs_f64(),
        watched: watch.finish(),
    }
    .report())
}
