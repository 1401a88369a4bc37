//! Signaling load: 1k, 5k and 10k concurrent WebSocket peers in rooms of two, a steady stream of
//! relayed messages, and the server's resident memory and relay latency, for natkit-signal and
//! for PeerJS server (npm `peer`) on the same machine and load, alternating, in one run.
//!
//! `cargo build --release --bins && cargo bench -p natkit-signal --bench signaling_load`
//! (needs node/npm for PeerJS; `NATKIT_BENCH_PEERS=1000,5000` picks the sizes).

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
const LOAD_SECS: u64 = 10;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Natkit,
    PeerJs,
}

struct Server {
    child: Child,
    port: u16,
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

fn start(kind: Kind) -> Server {
    let port = natkit_testkit::third_party_tcp_port();
    let child = match kind {
        Kind::Natkit => {
            let exe = std::env::current_exe().unwrap();
            let bin = exe
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("natkit-signal");
            assert!(bin.exists(), "build it first: cargo build --release --bins");
            Command::new(bin)
                .args([
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
async fn connect_all(kind: Kind, port: u16, peers: usize) -> Load {
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(
        RATE_PER_SEC as usize * LOAD_SECS as usize,
    )));
    let mut sinks = Vec::with_capacity(peers);
    let results = futures_util::stream::iter(0..peers)
        .map(|i| {
            let latencies = Arc::clone(&latencies);
            async move {
                let (room, me) = (i / 2, if i % 2 == 0 { "a" } else { "b" });
                let url = match kind {
                    Kind::Natkit => format!("ws://127.0.0.1:{port}/v1/ws"),
                    Kind::PeerJs => {
                        format!("ws://127.0.0.1:{port}/peerjs?key=peerjs&id=r{room}{me}&token=t{i}")
                    }
                };
                let (ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("connect");
                let (mut sink, mut stream) = ws.split();
                if kind == Kind::Natkit {
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
                            Kind::Natkit => v["sdp"].as_str().and_then(|s| s.parse::<u64>().ok()),
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

/// Sends RATE_PER_SEC messages per second for LOAD_SECS, each from a random peer to its partner.
async fn steady(kind: Kind, load: &Load) -> u64 {
    let peers = load.sinks.len();
    let total = RATE_PER_SEC * LOAD_SECS;
    let start = Instant::now();
    for k in 0..total {
        let due = Duration::from_nanos(k * 1_000_000_000 / RATE_PER_SEC);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let i = (rand_index(k) % peers as u64) as usize;
        let partner = if i % 2 == 0 { "b" } else { "a" };
        let stamp = load.epoch.elapsed().as_nanos().to_string();
        let msg = match kind {
            Kind::Natkit => json!({"type":"offer","to":partner,"sdp":stamp}),
            Kind::PeerJs => {
                json!({"type":"OFFER","dst":format!("r{}{partner}", i / 2),"payload":{"sdp":stamp}})
            }
        };
        load.sinks[i]
            .lock()
            .await
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
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
    rss_mib: f64,
    per_peer_kib: f64,
    p50: f64,
    p99: f64,
    delivered: usize,
    sent: u64,
}

async fn measure(kind: Kind, peers: usize) -> Row {
    let server = start(kind);
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_kib(pid);
    let load = connect_all(kind, server.port, peers).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = steady(kind, &load).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_kib(pid);
    let mut lat = load.latencies.lock().unwrap().clone();
    lat.sort();
    Row {
        rss_mib: rss as f64 / 1024.0,
        per_peer_kib: (rss.saturating_sub(idle)) as f64 / peers as f64,
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        delivered: lat.len(),
        sent,
    }
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
    println!("signaling load: rooms of two, {RATE_PER_SEC} relayed messages/s for {LOAD_SECS} s, loopback, client and server on one 2-core machine");
    println!(
        "{:>6} {:<14} {:>10} {:>12} {:>9} {:>9} {:>16}",
        "peers", "server", "RSS MiB", "KiB/peer", "p50 ms", "p99 ms", "delivered/sent"
    );
    for &n in &sizes {
        let mut rows = Vec::new();
        for kind in [Kind::Natkit, Kind::PeerJs] {
            let r = rt.block_on(measure(kind, n));
            println!(
                "{:>6} {:<14} {:>10.1} {:>12.2} {:>9.3} {:>9.3} {:>9}/{}",
                n,
                if kind == Kind::Natkit {
                    "natkit-signal"
                } else {
                    "peerjs 1.0.2"
                },
                r.rss_mib,
                r.per_peer_kib,
                r.p50,
                r.p99,
                r.delivered,
                r.sent
            );
            rows.push(r);
        }
        println!(
            "{:>6} {:<14} {:>10.2}x {:>11} {:>8.2}x {:>8.2}x",
            n,
            "natkit/peerjs",
            rows[0].rss_mib / rows[1].rss_mib,
            "",
            rows[0].p50 / rows[1].p50,
            rows[0].p99 / rows[1].p99
        );
    }
}
