//! Signaling load: 1k, 5k and 10k concurrent WebSocket peers in rooms of two, a steady stream of
//! relayed messages, and the server's resident memory and relay latency, for natkit-signal on
//! one node, for two natkit-signal nodes sharing rooms through Redis (each room's two peers on
//! different nodes, so every message crosses), and for PeerJS server (npm `peer`), on the same
//! machine and load, one after the other, in one run. Then each natkit set-up's throughput limit,
//! found by a rate search.
//!
//! `cargo build --release --bins && cargo bench -p natkit-signal --bench signaling_load`
//! (needs node/npm for PeerJS and Debian's redis-server; `NATKIT_BENCH_PEERS=1000,5000` picks
//! the sizes, `NATKIT_BENCH_SEARCH=0` skips the rate search).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

const RATE_PER_SEC: u64 = 1000;
/// The CPU natkit's servers are pinned to during the rate search (`None`: not pinned).
static SERVER_CPU: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// Pins this process (the load generator) to every CPU but the last, which the servers get;
/// `None` on a one-CPU machine or with `NATKIT_BENCH_PIN=0`.
fn pin_for_search() -> Option<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 || std::env::var("NATKIT_BENCH_PIN").as_deref() == Ok("0") {
        return None;
    }
    let server = cpus - 1;
    let load = if server == 1 {
        "0".to_owned()
    } else {
        format!("0-{}", server - 1)
    };
    let ok = Command::new("taskset")
        .args(["-a", "-c", "-p", &load, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(server)
}
/// Sending tasks of the load generator.
const SENDERS: u64 = 4;
const LOAD_SECS: u64 = 10;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Natkit,
    /// Two natkit-signal nodes and a Redis; peer `a` of each room on the first, `b` on the second.
    Cluster,
    PeerJs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Natkit => "natkit 1 node",
            Kind::Cluster => "natkit 2 nodes",
            Kind::PeerJs => "peerjs 1.0.2",
        }
    }
}

struct Server {
    child: Child,
    port: u16,
}

/// What one set-up runs: its servers (peer `i` uses `servers[i % 2 % len]`) and Redis.
struct Deployment {
    servers: Vec<Server>,
    _redis: Option<natkit_testkit::redis::RedisServer>,
}

impl Deployment {
    fn port_for(&self, peer: usize) -> u16 {
        self.servers[peer % 2 % self.servers.len()].port
    }

    fn rss_kib(&self) -> Vec<u64> {
        self.servers.iter().map(|s| rss_kib(s.child.id())).collect()
    }
}

fn deploy(kind: Kind) -> Deployment {
    match kind {
        Kind::Cluster => {
            let redis = natkit_testkit::redis::RedisServer::start();
            let servers = (0..2).map(|_| start_natkit(Some(&redis.url()))).collect();
            Deployment {
                servers,
                _redis: Some(redis),
            }
        }
        _ => Deployment {
            servers: vec![start(kind)],
            _redis: None,
        },
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peerjs_bin() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("natkit-bench-peerjs");
    let bin = dir.join("node_modules/.bin/peerjs");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("peer@1")
            .status()
            .expect("npm is needed for the PeerJS baseline");
        assert!(ok.success(), "npm install peer failed");
    }
    bin
}

/// natkit-signal for the load (no relay, open, limits out of the way), clustered through
/// `cluster` if given (then waited for until it is in step with Redis).
fn start_natkit(cluster: Option<&str>) -> Server {
    let server = start_kind(Kind::Natkit, cluster);
    if cluster.is_some() {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", server.port))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").ok()?;
                    let mut r = String::new();
                    s.read_to_string(&mut r).ok()?;
                    Some(r.ends_with("ok\n"))
                })
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(Instant::now() < until, "the node did not join the cluster");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    server
}

fn start(kind: Kind) -> Server {
    start_kind(kind, None)
}

fn start_kind(kind: Kind, cluster: Option<&str>) -> Server {
    let port = natkit_testkit::third_party_tcp_port();
    let child = match kind {
        Kind::Natkit | Kind::Cluster => {
            let exe = std::env::current_exe().unwrap();
            let bin = exe
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("natkit-signal");
            assert!(bin.exists(), "build it first: cargo build --release --bins");
            // For the rate search, the servers get the last CPU, the load generator (and
            // Redis, its child) the others: the limit found is the servers' core's.
            let mut cmd = match SERVER_CPU.get().copied().flatten() {
                Some(cpu) => {
                    let mut c = Command::new("taskset");
                    c.args(["-c", &cpu.to_string()]).arg(bin);
                    c
                }
                None => Command::new(bin),
            };
            cmd.args([
                "--no-relay",
                "--open",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--metrics-listen", "off", "--max-connections-per-ip", "0"])
            .args(["--credentials-per-minute", "0"])
            .args([
                "--max-connections",
                "30000",
                "--max-rooms",
                "100000",
                "--peers-per-room",
                "2",
            ])
            .args(["--messages-per-second", "1000"])
            .args(cluster.iter().flat_map(|c| ["--cluster", c]))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
        }
        Kind::PeerJs => Command::new(peerjs_bin())
            .args([
                "--port",
                &port.to_string(),
                "-c",
                "30000",
                "--alive_timeout",
                "600000",
                "--expire_timeout",
                "60000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Server { child, port };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{kind:?} server did not start");
}

fn rss_kib(pid: u32) -> u64 {
    // The server process itself (node runs as the peerjs script's process).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

struct Load {
    sinks: Vec<Arc<tokio::sync::Mutex<Sink>>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    epoch: Instant,
}

/// Connects `peers` clients (pairs a/b per room) and starts their readers.
async fn connect_all(kind: Kind, d: &Deployment, peers: usize) -> Load {
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(
        RATE_PER_SEC as usize * LOAD_SECS as usize,
    )));
    let mut sinks = Vec::with_capacity(peers);
    let results = futures_util::stream::iter(0..peers)
        .map(|i| {
            let latencies = Arc::clone(&latencies);
            let port = d.port_for(i);
            async move {
                let (room, me) = (i / 2, if i % 2 == 0 { "a" } else { "b" });
                let url = match kind {
                    Kind::Natkit | Kind::Cluster => format!("ws://127.0.0.1:{port}/v1/ws"),
                    Kind::PeerJs => {
                        format!("ws://127.0.0.1:{port}/peerjs?key=peerjs&id=r{room}{me}&token=t{i}")
                    }
                };
                let (ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("connect");
                let (mut sink, mut stream) = ws.split();
                if kind != Kind::PeerJs {
                    sink.send(Message::Text(
                        json!({"type":"join","room":format!("r{room}"),"peer_id":me})
                            .to_string()
                            .into(),
                    ))
                    .await
                    .unwrap();
                }
                // Wait for welcome / OPEN.
                loop {
                    let Some(Ok(Message::Text(t))) = stream.next().await else {
                        panic!("no welcome for peer {i}")
                    };
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "welcome" || v["type"] == "OPEN" {
                        break;
                    }
                }
                tokio::spawn(async move {
                    while let Some(Ok(m)) = stream.next().await {
                        let Message::Text(t) = m else { continue };
                        let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                        let sent = match kind {
                            Kind::Natkit | Kind::Cluster => {
                                v["sdp"].as_str().and_then(|s| s.parse::<u64>().ok())
                            }
                            Kind::PeerJs => v["payload"]["sdp"]
                                .as_str()
                                .and_then(|s| s.parse::<u64>().ok()),
                        };
                        if let Some(ns) = sent {
                            let lat = epoch.elapsed().saturating_sub(Duration::from_nanos(ns));
                            latencies.lock().unwrap().push(lat);
                        }
                    }
                });
                (i, Arc::new(tokio::sync::Mutex::new(sink)))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let mut ordered = results;
    ordered.sort_by_key(|(i, _)| *i);
    for (_, s) in ordered {
        sinks.push(s);
    }
    Load {
        sinks,
        latencies,
        epoch,
    }
}

/// Sends `rate` messages per second for `secs`, each from a random peer to its partner, from
/// [`SENDERS`] tasks at once (one sender alone tops out before the servers do).
async fn steady(kind: Kind, load: &Load, rate: u64, secs: u64) -> u64 {
    let total = rate * secs;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..SENDERS {
        let sinks = load.sinks.clone();
        let epoch = load.epoch;
        tasks.push(tokio::spawn(async move {
            let peers = sinks.len();
            for k in (t..total).step_by(SENDERS as usize) {
                let due = Duration::from_nanos(k * 1_000_000_000 / rate);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let i = (rand_index(k) % peers as u64) as usize;
                let partner = if i % 2 == 0 { "b" } else { "a" };
                let stamp = epoch.elapsed().as_nanos().to_string();
                let msg = match kind {
                    Kind::Natkit | Kind::Cluster => {
                        json!({"type":"offer","to":partner,"sdp":stamp})
                    }
                    Kind::PeerJs => {
                        json!({"type":"OFFER","dst":format!("r{}{partner}", i / 2),"payload":{"sdp":stamp}})
                    }
                };
                sinks[i]
                    .lock()
                    .await
                    .send(Message::Text(msg.to_string().into()))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total
}

fn rand_index(k: u64) -> u64 {
    // SplitMix64: a fixed pseudo-random sequence, the same for both servers.
    let mut z = k.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

struct Row {
    /// Every server's, summed.
    rss_mib: f64,
    /// Over each server's idle size, per peer it holds.
    per_peer_kib: f64,
    p50: f64,
    p99: f64,
    delivered: usize,
    sent: u64,
}

async fn measure(kind: Kind, peers: usize) -> Row {
    let d = deploy(kind);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = d.rss_kib();
    let load = connect_all(kind, &d, peers).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = steady(kind, &load, RATE_PER_SEC, LOAD_SECS).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = d.rss_kib();
    let mut lat = load.latencies.lock().unwrap().clone();
    lat.sort();
    let grown: u64 = rss
        .iter()
        .zip(&idle)
        .map(|(r, i)| r.saturating_sub(*i))
        .sum();
    Row {
        rss_mib: rss.iter().sum::<u64>() as f64 / 1024.0,
        per_peer_kib: grown as f64 / peers as f64,
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        delivered: lat.len(),
        sent,
    }
}

/// One step of the rate search: `rate` messages/s for 3 s; delivered within a second after, and
/// the p99 latency.
async fn step(kind: Kind, load: &Load, rate: u64) -> (f64, f64) {
    load.latencies.lock().unwrap().clear();
    let sent = steady(kind, load, rate, 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut lat = load.latencies.lock().unwrap().clone();
    lat.sort();
    (lat.len() as f64 / sent as f64, pct(&lat, 0.99))
}

/// The highest rate (messages/s through the set-up, 1,000 peers) at which 99.9% arrive and p99
/// stays under 50 ms: doubling from 2,000 until a step fails, then four bisections.
async fn throughput_limit(kind: Kind) -> (u64, Vec<String>) {
    let d = deploy(kind);
    let load = connect_all(kind, &d, 1000).await;
    let mut log = Vec::new();
    let pass = |rate: u64, (got, p99): (f64, f64), log: &mut Vec<String>| {
        let ok = got >= 0.999 && p99 < 50.0;
        log.push(format!(
            "{rate}/s: {:.2}% delivered, p99 {p99:.1} ms {}",
            got * 100.0,
            if ok { "ok" } else { "over" }
        ));
        ok
    };
    let (mut good, mut bad) = (0, 0);
    let mut rate = 2000;
    while rate <= 256_000 {
        if pass(rate, step(kind, &load, rate).await, &mut log) {
            good = rate;
            rate *= 2;
        } else {
            bad = rate;
            break;
        }
    }
    if bad == 0 {
        return (good, log);
    }
    for _ in 0..4 {
        let mid = (good + bad) / 2;
        if pass(mid, step(kind, &load, mid).await, &mut log) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    (good, log)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("NATKIT_BENCH_PEERS")
        .unwrap_or_else(|_| "1000,5000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("signaling load: rooms of two, {RATE_PER_SEC} relayed messages/s for {LOAD_SECS} s, loopback, client and servers on one 2-core machine; \"natkit 2 nodes\": the two peers of every room on different nodes");
    println!(
        "{:>6} {:<15} {:>10} {:>12} {:>9} {:>9} {:>16}",
        "peers", "server", "RSS MiB", "KiB/peer", "p50 ms", "p99 ms", "delivered/sent"
    );
    for &n in &sizes {
        let mut rows = Vec::new();
        for kind in [Kind::Natkit, Kind::Cluster, Kind::PeerJs] {
            let r = rt.block_on(measure(kind, n));
            println!(
                "{:>6} {:<15} {:>10.1} {:>12.2} {:>9.3} {:>9.3} {:>9}/{}",
                n,
                kind.name(),
                r.rss_mib,
                r.per_peer_kib,
                r.p50,
                r.p99,
                r.delivered,
                r.sent
            );
            rows.push(r);
        }
        let ratio = |what: &str, a: &Row, b: &Row| {
            println!(
                "{:>6} {:<15} {:>10.2}x {:>11.2}x {:>8.2}x {:>8.2}x",
                n,
                what,
                a.rss_mib / b.rss_mib,
                a.per_peer_kib / b.per_peer_kib,
                a.p50 / b.p50,
                a.p99 / b.p99
            )
        };
        ratio("2 nodes/1 node", &rows[1], &rows[0]);
        ratio("1 node/peerjs", &rows[0], &rows[2]);
    }
    if std::env::var("NATKIT_BENCH_SEARCH").as_deref() == Ok("0") {
        return;
    }
    let pinned = pin_for_search();
    SERVER_CPU.set(pinned).ok();
    match pinned {
        Some(cpu) => println!("throughput limit, 1,000 peers, natkit on CPU {cpu} (both nodes share it), the load generator and Redis on the others: the highest rate with 99.9% delivered and p99 under 50 ms"),
        None => println!("throughput limit, 1,000 peers, not pinned: the highest rate with 99.9% delivered and p99 under 50 ms"),
    }
    let mut limits = Vec::new();
    for kind in [Kind::Natkit, Kind::Cluster] {
        let (limit, log) = rt.block_on(throughput_limit(kind));
        for l in log {
            println!("  {:<15} {l}", kind.name());
        }
        let per_node = limit / if kind == Kind::Cluster { 2 } else { 1 };
        println!(
            "{:<15} limit {limit} messages/s ({per_node} per node)",
            kind.name()
        );
        limits.push(limit as f64);
    }
    println!("2 nodes/1 node throughput: {:.2}x", limits[1] / limits[0]);
}
