//! The relay load and the allocation-rate load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util_lite::join_all;
use serde::Serialize;

use crate::client;
use crate::proc_stats;
pub use crate::traffic::Pacing;
use crate::traffic::{self, Flow};

/// What the load talks to.
#[derive(Clone, Debug)]
pub enum Target {
    /// A TURN server: allocations with a channel bound to the echo peer.
    Turn { server: SocketAddr, secret: String },
    /// The same with dual allocations (a relayed address in each family, RFC 8656): the
    /// channel is bound in the echo peer's family.
    TurnDual { server: SocketAddr, secret: String },
    /// A plain UDP forwarder (no TURN): raw payloads, the physical ceiling.
    Plain { forwarder: SocketAddr },
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
    /// Answers that came back to another allocation than the one that sent them.
    pub misrouted: u64,
    /// Datagrams the server relayed per second (two per round trip: to the peer and back).
    pub relayed_pps: f64,
    pub loss_pct: f64,
    pub rtt_p50_us: u64,
    pub rtt_p99_us: u64,
    /// Server CPU seconds per million relayed datagrams.
    pub cpu_s_per_million: f64,
    /// The server's CPU time over the run, in percent of one core (100 = one core saturated).
    pub server_core_pct: f64,
    /// The load's own CPU time (generator, and the echo peer when it runs in-process), in percent
    /// of one core.
    pub load_core_pct: f64,
    /// Every CPU's busy time (softirq included) per million relayed datagrams: the server, the
    /// load and whatever the kernel did for them, wherever it ran.
    pub machine_cpu_s_per_million: f64,
    /// The softirq part of it (packet delivery the kernel did outside any process's time).
    pub softirq_s_per_million: f64,
    /// Each CPU's busy seconds over the run (softirq included), by CPU number.
    pub cpu_busy_s: Vec<f64>,
    pub rss_before_kib: u64,
    pub rss_after_setup_kib: u64,
    /// Resident memory per idle allocation (RSS growth over the allocations created).
    pub rss_per_allocation_bytes: f64,
    pub setup_ms: u64,
}

impl LoadReport {
    /// CPU `cpu`'s busy seconds (softirq included) per million relayed datagrams: on a pinned
    /// server's CPU, the server and the kernel's work on its behalf there.
    pub fn cpu_s_per_million_on(&self, cpu: usize) -> f64 {
        let relayed = self.received * 2;
        match self.cpu_busy_s.get(cpu) {
            Some(busy) if relayed > 0 => busy / relayed as f64 * 1e6,
            _ => f64::NAN,
        }
    }
}

/// What one run measured, before it is turned into a [`LoadReport`].
pub(crate) struct Measured {
    pub allocations: usize,
    pub payload: usize,
    pub sent: u64,
    pub received: u64,
    pub misrouted: u64,
    /// Round trips, microseconds (any order).
    pub rtts_us: Vec<u32>,
    /// The sending period, seconds.
    pub seconds: f64,
    /// The server's and the machine's figures around it.
    pub watched: Watched,
}

/// Watches the server (when its pid is known) and the machine through one run: start it before
/// the set-up, call [`Watch::setup_done`] when the allocations stand and [`Running::finish`]
/// when the traffic has ended.
pub(crate) struct Watch {
    pid: Option<u32>,
    started: Instant,
    rss_before_kib: u64,
}

/// A [`Watch`] past the set-up: the counters the traffic starts from.
pub(crate) struct Running {
    pid: Option<u32>,
    rss_before_kib: u64,
    rss_after_setup_kib: u64,
    setup_ms: u64,
    server_cpu: f64,
    own_cpu: f64,
    machine: proc_stats::CpuTimes,
}

/// What a [`Watch`] saw.
pub(crate) struct Watched {
    /// Whether the server's pid was known (its CPU figures are NaN otherwise).
    pub server_known: bool,
    /// The server's CPU seconds before and after, the load's own.
    pub server_cpu: (f64, f64),
    pub own_cpu: (f64, f64),
    /// What every CPU spent over the run.
    pub machine: proc_stats::CpuUse,
    pub rss_before_kib: u64,
    pub rss_after_setup_kib: u64,
    pub setup_ms: u64,
}

fn cpu_seconds(pid: Option<u32>) -> f64 {
    pid.map(proc_stats::cpu_seconds).unwrap_or(0.0)
}

impl Watch {
    pub(crate) fn start(pid: Option<u32>) -> Watch {
        Watch {
            pid,
            started: Instant::now(),
            rss_before_kib: pid.map(proc_stats::rss_kib).unwrap_or(0),
        }
    }

    /// The set-up is done: its time, the server's memory once it settled (200 ms), and the
    /// CPU counters the traffic starts from.
    pub(crate) async fn setup_done(self) -> Running {
        let setup_ms = self.started.elapsed().as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Running {
            pid: self.pid,
            rss_before_kib: self.rss_before_kib,
            rss_after_setup_kib: self.pid.map(proc_stats::rss_kib).unwrap_or(0),
            setup_ms,
            server_cpu: cpu_seconds(self.pid),
            own_cpu: proc_stats::cpu_seconds(std::process::id()),
            machine: proc_stats::CpuTimes::now(),
        }
    }
}

impl Running {
    pub(crate) fn finish(self) -> Watched {
        Watched {
            server_known: self.pid.is_some(),
            server_cpu: (self.server_cpu, cpu_seconds(self.pid)),
            own_cpu: (self.own_cpu, proc_stats::cpu_seconds(std::process::id())),
            machine: proc_stats::CpuTimes::now().since(&self.machine),
            rss_before_kib: self.rss_before_kib,
            rss_after_setup_kib: self.rss_after_setup_kib,
            setup_ms: self.setup_ms,
        }
    }
}

impl Measured {
    /// The report: relayed datagrams are two per round trip (to the peer and back).
    pub(crate) fn report(mut self) -> LoadReport {
        self.rtts_us.sort_unstable();
        let rtts = &self.rtts_us;
        let pct = |p: f64| {
            rtts.get(((rtts.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0) as u64
        };
        let relayed = self.received * 2;
        let server = self.watched.server_cpu.1 - self.watched.server_cpu.0;
        let per_million = |seconds: f64| {
            if relayed == 0 {
                f64::NAN
            } else {
                seconds / relayed as f64 * 1e6
            }
        };
        let machine = self.watched.machine.total();
        LoadReport {
            allocations: self.allocations,
            payload: self.payload,
            sent: self.sent,
            received: self.received,
            misrouted: self.misrouted,
            relayed_pps: relayed as f64 / self.seconds,
            loss_pct: if self.sent == 0 {
                0.0
            } else {
                100.0 * self.sent.saturating_sub(self.received) as f64 / self.sent as f64
            },
            rtt_p50_us: pct(0.5),
            rtt_p99_us: pct(0.99),
            cpu_s_per_million: per_million(server),
            server_core_pct: if self.watched.server_known {
                100.0 * server / self.seconds
            } else {
                f64::NAN
            },
            load_core_pct: 100.0 * (self.watched.own_cpu.1 - self.watched.own_cpu.0) / self.seconds,
            machine_cpu_s_per_million: per_million(machine.busy),
            softirq_s_per_million: per_million(machine.softirq),
            cpu_busy_s: self.watched.machine.0.iter().map(|t| t.busy).collect(),
            rss_before_kib: self.watched.rss_before_kib,
            rss_after_setup_kib: self.watched.rss_after_setup_kib,
            rss_per_allocation_bytes: self
                .watched
                .rss_after_setup_kib
                .saturating_sub(self.watched.rss_before_kib)
                as f64
                * 1024.0
                / self.allocations as f64,
            setup_ms: self.watched.setup_ms,
        }
    }
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

async fn setup(cfg: &LoadConfig) -> anyhow::Result<Vec<Flow>> {
    let mut flows = Vec::with_capacity(cfg.allocations);
    let chunks: Vec<usize> = (0..cfg.allocations).collect();
    for batch in chunks.chunks(64) {
        let mut tasks = Vec::new();
        for &i in batch {
            let cfg = cfg.clone();
            tasks.push(tokio::spawn(async move {
                match &cfg.target {
                    Target::Turn { server, secret } | Target::TurnDual { server, secret } => {
                        let dual = matches!(cfg.target, Target::TurnDual { .. });
                        let user = format!("bench{i}");
                        let a = client::allocate_with(*server, secret, &user, dual).await?;
                        a.bind(0x4000, cfg.echo).await?;
                        let len = cfg.payload as u16;
                        Ok::<Flow, anyhow::Error>(Flow {
                            sock: a.sock.into_std()?,
                            header: vec![0x40, 0x00, (len >> 8) as u8, len as u8],
                            send_indication_peer: cfg.send_indications.then_some(cfg.echo),
                        })
                    }
                    Target::Plain { forwarder } => {
                        let sock = crate::sock::bind_towards(*forwarder)?;
                        sock.connect(forwarder).await?;
                        Ok(Flow {
                            sock: sock.into_std()?,
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

/// Creates the allocations, runs the traffic, and measures.
pub async fn run(cfg: &LoadConfig) -> anyhow::Result<LoadReport> {
    let watch = Watch::start(cfg.server_pid);
    let flows: Vec<Flow> = setup(cfg).await?;
    let watch = watch.setup_done().await;
    let (payload, plain, pacing, inflight, duration) = (
        cfg.payload,
        matches!(cfg.target, Target::Plain { .. }),
        cfg.pacing,
        cfg.inflight,
        cfg.duration,
    );
    let totals = tokio::task::spawn_blocking(move || {
        traffic::run(&flows, payload, plain, pacing, inflight, duration)
    })
    .await??;
    // Utilisation over the sending period: the 300 ms drain after it is idle but for stragglers.
    Ok(Measured {
        allocations: cfg.allocations,
        payload: cfg.payload,
        sent: totals.sent,
        received: totals.received,
        misrouted: totals.misrouted,
        rtts_us: totals.rtts_us,
        seconds: cfg.duration.as_secs_f64(),
        watched: watch.finish(),
    }
    .report())
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
