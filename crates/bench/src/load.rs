//! The relay load and the allocation-rate load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util_lite::join_all;
use serde::Serialize;
use tokio::net::UdpSocket;

use crate::client;
use crate::proc_stats;

/// What the load talks to.
#[derive(Clone, Debug)]
pub enum Target {
    /// A TURN server: allocations with a channel bound to the echo peer.
    Turn { server: SocketAddr, secret: String },
    /// A plain UDP forwarder (no TURN): raw payloads, the physical ceiling.
    Plain { forwarder: SocketAddr },
}

#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    /// Total datagrams per second sent by all allocations together.
    Rate(u64),
    /// Packets in flight per allocation; each answer releases the next.
    Window(usize),
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: Target,
    pub echo: SocketAddr,
    pub allocations: usize,
    pub payload: usize,
    pub pacing: Pacing,
    /// With `Pacing::Window`: packets in flight over all allocations together.
    pub inflight: usize,
    pub duration: Duration,
    /// Send indications instead of ChannelData (TURN only).
    pub send_indications: bool,
    /// The server process, for CPU and memory figures.
    pub server_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub allocations: usize,
    pub payload: usize,
    pub sent: u64,
    pub received: u64,
    /// Datagrams the server relayed per second (two per round trip: to the peer and back).
    pub relayed_pps: f64,
    pub loss_pct: f64,
    pub rtt_p50_us: u64,
    pub rtt_p99_us: u64,
    /// Server CPU seconds per million relayed datagrams.
    pub cpu_s_per_million: f64,
    pub rss_before_kib: u64,
    pub rss_after_setup_kib: u64,
    /// Resident memory per idle allocation (RSS growth over the allocations created).
    pub rss_per_allocation_bytes: f64,
    pub setup_ms: u64,
}

mod futures_util_lite {
    /// Awaits every task, panicking on a failed one.
    pub async fn join_all<T>(v: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::with_capacity(v.len());
        for h in v {
            out.push(h.await.expect("load task"));
        }
        out
    }
}

struct Flow {
    sock: UdpSocket,
    /// Bytes before the payload: ChannelData header, or nothing for the plain forwarder.
    header: Vec<u8>,
    send_indication_peer: Option<SocketAddr>,
}

async fn setup(cfg: &LoadConfig) -> anyhow::Result<Vec<Flow>> {
    let mut flows = Vec::with_capacity(cfg.allocations);
    let chunks: Vec<usize> = (0..cfg.allocations).collect();
    for batch in chunks.chunks(64) {
        let mut tasks = Vec::new();
        for &i in batch {
            let cfg = cfg.clone();
            tasks.push(tokio::spawn(async move {
                match &cfg.target {
                    Target::Turn { server, secret } => {
                        let a = client::allocate(*server, secret, &format!("bench{i}")).await?;
                        a.bind(0x4000, cfg.echo).await?;
                        let len = cfg.payload as u16;
                        Ok::<Flow, anyhow::Error>(Flow {
                            sock: a.sock,
                            header: vec![0x40, 0x00, (len >> 8) as u8, len as u8],
                            send_indication_peer: cfg.send_indications.then_some(cfg.echo),
                        })
                    }
                    Target::Plain { forwarder } => {
                        let sock = crate::sock::bind_loopback()?;
                        sock.connect(forwarder).await?;
                        Ok(Flow {
                            sock,
                            header: vec![],
                            send_indication_peer: None,
                        })
                    }
                }
            }));
        }
        for f in join_all(tasks).await {
            flows.push(f?);
        }
    }
    Ok(flows)
}

fn packet(flow: &Flow, payload: usize, seq: u64, epoch: Instant) -> Vec<u8> {
    let mut body = vec![0u8; payload.max(16)];
    body[..8].copy_from_slice(&seq.to_be_bytes());
    body[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
    body.truncate(payload.max(16));
    if let Some(peer) = flow.send_indication_peer {
        let mut m = stun::message::Message::new();
        m.build(&[
            Box::new(stun::agent::TransactionId::new()),
            Box::new(stun::message::MessageType::new(
                stun::message::METHOD_SEND,
                stun::message::CLASS_INDICATION,
            )),
            Box::new(turn::proto::peeraddr::PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(turn::proto::data::Data(body)),
        ])
        .expect("send indication");
        return m.raw;
    }
    let mut p = flow.header.clone();
    p.extend_from_slice(&body);
    p
}

/// The send timestamp carried by an answer (ChannelData or raw), if it is one of ours.
fn stamp(buf: &[u8], plain: bool) -> Option<u64> {
    let body = if plain {
        buf
    } else if (0x40..=0x7f).contains(buf.first()?) {
        buf.get(4..)?
    } else {
        return None; // Data indications are not expected with a channel bound
    };
    Some(u64::from_be_bytes(body.get(8..16)?.try_into().ok()?))
}

struct FlowResult {
    sent: u64,
    received: u64,
    rtts_us: Vec<u32>,
}

async fn drive(
    flow: Arc<Flow>,
    cfg: LoadConfig,
    epoch: Instant,
    end: Instant,
    per_flow_interval: Option<Duration>,
    inflight: Arc<tokio::sync::Semaphore>,
) -> FlowResult {
    let plain = matches!(cfg.target, Target::Plain { .. });
    let mut buf = vec![0u8; 65536];
    let (mut sent, mut received, mut rtts) = (0u64, 0u64, Vec::new());
    let send = |sent: &mut u64| {
        let p = packet(&flow, cfg.payload, *sent, epoch);
        *sent += 1;
        p
    };
    match per_flow_interval {
        None => {
            // Bounded window: at most `w` packets of this flow and at most `inflight` permits'
            // worth over all flows are outstanding; a 50 ms silence counts a packet as lost.
            let Pacing::Window(w) = cfg.pacing else {
                unreachable!()
            };
            let mut outstanding = 0usize;
            while Instant::now() < end {
                while outstanding < w {
                    match inflight.clone().try_acquire_owned() {
                        Ok(p) => p.forget(),
                        Err(_) if outstanding == 0 => {
                            match inflight.clone().acquire_owned().await {
                                Ok(p) => p.forget(),
                                Err(_) => break,
                            }
                        }
                        Err(_) => break,
                    }
                    let p = send(&mut sent);
                    let _ = flow.sock.send(&p).await;
                    outstanding += 1;
                }
                // What is already queued is taken without arming a timer (a timer per packet
                // was a good part of the generator's CPU); only an empty socket waits, 50 ms.
                let got = match flow.sock.try_recv(&mut buf) {
                    Ok(n) => Some(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        tokio::time::timeout(Duration::from_millis(50), flow.sock.recv(&mut buf))
                            .await
                            .ok()
                            .and_then(Result::ok)
                    }
                    Err(_) => None,
                };
                if let Some(n) = got {
                    if let Some(ns) = stamp(&buf[..n], plain) {
                        received += 1;
                        rtts.push(
                            ((epoch.elapsed().as_nanos() as u64).saturating_sub(ns) / 1000) as u32,
                        );
                    }
                }
                if outstanding > 0 {
                    outstanding -= 1;
                    inflight.add_permits(1);
                }
            }
        }
        Some(every) => {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        let p = send(&mut sent);
                        let _ = flow.sock.send(&p).await;
                    }
                    r = flow.sock.recv(&mut buf) => {
                        if let Ok(n) = r {
                            if let Some(ns) = stamp(&buf[..n], plain) {
                                received += 1;
                                rtts.push(((epoch.elapsed().as_nanos() as u64).saturating_sub(ns) / 1000) as u32);
                            }
                        }
                    }
                }
            }
        }
    }
    // Drain what is still in flight.
    let drain_end = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Ok(n)) = tokio::time::timeout_at(drain_end, flow.sock.recv(&mut buf)).await {
        if let Some(ns) = stamp(&buf[..n], plain) {
            received += 1;
            rtts.push(((epoch.elapsed().as_nanos() as u64).saturating_sub(ns) / 1000) as u32);
        }
    }
    FlowResult {
        sent,
        received,
        rtts_us: rtts,
    }
}

/// Creates the allocations, runs the traffic, and measures.
pub async fn run(cfg: &LoadConfig) -> anyhow::Result<LoadReport> {
    let pid = cfg.server_pid;
    let rss_before = pid.map(proc_stats::rss_kib).unwrap_or(0);
    let t = Instant::now();
    let flows: Vec<Arc<Flow>> = setup(cfg).await?.into_iter().map(Arc::new).collect();
    let setup_ms = t.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = pid.map(proc_stats::rss_kib).unwrap_or(0);

    let per_flow_interval = match cfg.pacing {
        Pacing::Rate(r) => Some(Duration::from_secs_f64(
            cfg.allocations as f64 / r.max(1) as f64,
        )),
        Pacing::Window(_) => None,
    };
    let epoch = Instant::now();
    let cpu0 = pid.map(proc_stats::cpu_seconds).unwrap_or(0.0);
    let end = epoch + cfg.duration;
    let inflight = Arc::new(tokio::sync::Semaphore::new(cfg.inflight.max(1)));
    let tasks: Vec<_> = flows
        .iter()
        .map(|f| {
            tokio::spawn(drive(
                Arc::clone(f),
                cfg.clone(),
                epoch,
                end,
                per_flow_interval,
                Arc::clone(&inflight),
            ))
        })
        .collect();
    let results = join_all(tasks).await;
    let cpu1 = pid.map(proc_stats::cpu_seconds).unwrap_or(0.0);
    let elapsed = cfg.duration.as_secs_f64();
    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let received: u64 = results.iter().map(|r| r.received).sum();
    let mut rtts: Vec<u32> = results.into_iter().flat_map(|r| r.rtts_us).collect();
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0) as u64
    };
    let relayed = received * 2;
    Ok(LoadReport {
        allocations: cfg.allocations,
        payload: cfg.payload,
        sent,
        received,
        relayed_pps: relayed as f64 / elapsed,
        loss_pct: if sent == 0 {
            0.0
        } else {
            100.0 * (sent.saturating_sub(received)) as f64 / sent as f64
        },
        rtt_p50_us: pct(0.5),
        rtt_p99_us: pct(0.99),
        cpu_s_per_million: if relayed == 0 {
            f64::NAN
        } else {
            (cpu1 - cpu0) / relayed as f64 * 1e6
        },
        rss_before_kib: rss_before,
        rss_after_setup_kib: rss_after,
        rss_per_allocation_bytes: (rss_after.saturating_sub(rss_before)) as f64 * 1024.0
            / cfg.allocations as f64,
        setup_ms,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct AllocRateReport {
    pub requested: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub per_second: f64,
}

/// Creates `count` allocations with `concurrency` in flight; all stay alive until the end.
pub async fn allocation_rate(
    server: SocketAddr,
    secret: &str,
    count: usize,
    concurrency: usize,
) -> AllocRateReport {
    let t = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let sem = Arc::clone(&sem);
        let secret = secret.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            client::allocate(server, &secret, &format!("rate{i}")).await
        }));
    }
    let results = join_all(tasks).await;
    let elapsed = t.elapsed().as_secs_f64();
    let succeeded = results.iter().filter(|r| r.is_ok()).count();
    AllocRateReport {
        requested: count,
        succeeded,
        failed: count - succeeded,
        per_second: succeeded as f64 / elapsed,
    }
}
