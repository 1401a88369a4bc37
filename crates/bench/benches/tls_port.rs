//! natkit-signal's shared TLS port beside the dedicated TLS listener it replaced, same machine,
//! same certificate, same load, alternating, fresh processes for each cell:
//! - TURN over TLS: natkit-relay's own `--tls-listen` against natkit-signal's `--tls-listen`
//!   (which ends TLS and hands TURN to its embedded relay), relayed packets per second and the
//!   server's CPU seconds per million relayed packets (targets: at least 0.95x the packets, at
//!   most 1.05x the CPU);
//! - the page and a join: `GET /` over HTTPS on the shared port against plain HTTP on the web
//!   port of a natkit-signal without TLS (with TLS on, that port redirects), and a WebSocket join
//!   (connect, join, welcome) over WSS against WS, new connections each time, medians.
//!
//! `cargo build --release --bins && cargo bench -p natkit-bench --bench tls_port`
//! Environment: `NATKIT_BENCH_SECONDS=3` per TURN cell, `NATKIT_BENCH_ROUNDS=3`,
//! `NATKIT_BENCH_STREAM_ALLOCS=10` (one connection each), `NATKIT_BENCH_JOINS=30`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use natkit_bench::stream::{StreamLoadConfig, StreamTransport};
use natkit_bench::Proc;
use natkit_bench::{env_list, median};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "bench-secret";

fn release_bin(name: &str) -> std::path::PathBuf {
    natkit_bench::release_bin(name, "cargo build --release --bins")
}

/// `cmd` (a server whose flags the caller gave) with the relay's settings every cell shares and
/// its TLS listener on `tls` with `files`, started and accepting there: the process and its pid.
fn spawn_tls(
    mut cmd: Command,
    files: &natkit_testkit::tls::ServerFiles,
    tls: SocketAddr,
) -> (Proc, u32) {
    let child = cmd
        .env("NATKIT_TURN_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .args(["--relay-ports", "10000-29999"])
        .args(["--tls-listen", &tls.to_string(), "--tls-name", "127.0.0.1"])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    ready(tls, "the TLS listener");
    (Proc(child), pid)
}

/// Waits until `addr` accepts TCP connections.
fn ready(addr: SocketAddr, what: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not start on {addr}");
}

fn port() -> u16 {
    natkit_testkit::third_party_tcp_port()
}

/// natkit-relay with its own TLS listener: the TLS address.
fn dedicated(files: &natkit_testkit::tls::ServerFiles) -> (Proc, SocketAddr, u32) {
    let (udp, tls) = (port(), port());
    let tls_addr: SocketAddr = format!("127.0.0.1:{tls}").parse().unwrap();
    let mut cmd = Command::new(release_bin("natkit-relay"));
    cmd.args(["--listen", &format!("127.0.0.1:{udp}"), "--alt-port", "0"])
        .args(["--metrics-listen", "off", "--allow-peer", "127.0.0.1"])
        .args(["--user-quota", "0", "--total-quota", "0"])
        .args(["--answers-per-second", "0"])
        .args(["--stream-per-ip", "0", "--stream-total", "0"]);
    let (p, pid) = spawn_tls(cmd, files, tls_addr);
    (p, tls_addr, pid)
}

/// natkit-signal (open, its embedded relay on `udp`, its web port on `http`) with the limits
/// the benchmark must not hit.
fn signal_cmd(udp: u16, http_addr: SocketAddr) -> Command {
    let mut cmd = Command::new(release_bin("natkit-signal"));
    cmd.env("NATKIT_ALT_PORT", "0")
        .env("NATKIT_ALLOW_PEER", "127.0.0.1")
        .env("NATKIT_USER_QUOTA", "0")
        .env("NATKIT_TOTAL_QUOTA", "0")
        .env("NATKIT_ANSWERS_PER_SECOND", "0")
        .env("NATKIT_SIGNAL_MAX_CONNECTIONS_PER_IP", "1000")
        // Every join mints a credential: the benchmark's joins are not to be rate limited.
        .env("NATKIT_SIGNAL_CREDENTIALS_PER_MINUTE", "100000")
        .args(["--open", "--listen", &http_addr.to_string()])
        .args(["--relay-listen", &format!("127.0.0.1:{udp}")])
        .args(["--metrics-listen", "off"]);
    cmd
}

/// natkit-signal with the TLS port (and its embedded relay, the same relay settings): the TLS
/// address.
fn shared(files: &natkit_testkit::tls::ServerFiles) -> (Proc, SocketAddr, u32) {
    let (udp, tls, http) = (port(), port(), port());
    let tls_addr: SocketAddr = format!("127.0.0.1:{tls}").parse().unwrap();
    let http_addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let (p, pid) = spawn_tls(signal_cmd(udp, http_addr), files, tls_addr);
    ready(http_addr, "natkit-signal's web port");
    (p, tls_addr, pid)
}

/// natkit-signal without a TLS port (its web port serves the page and the WebSocket in clear,
/// which with the TLS port on it redirects): the web address.
fn plain() -> (Proc, SocketAddr) {
    let (udp, http) = (port(), port());
    let http_addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let child = signal_cmd(udp, http_addr)
        .env("NATKIT_TURN_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .args(["--relay-ports", "30000-39999"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(http_addr, "plain natkit-signal's web port");
    (Proc(child), http_addr)
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_to(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// `GET /` on a new connection, the whole answer read: milliseconds.
async fn get_page<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    began: Instant,
    mut s: S,
) -> f64 {
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).await.unwrap();
    assert!(body.starts_with(b"HTTP/1.1 200"));
    began.elapsed().as_secs_f64() * 1000.0
}

/// A join on a new connection (upgrade, `join`, `welcome`): milliseconds.
async fn join<S>(began: Instant, s: S, url: &str, room: &str) -> f64
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    let (mut ws, _) = tokio_tungstenite::client_async(url, s).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        format!(r#"{{"type":"join","room":"{room}"}}"#).into(),
    ))
    .await
    .unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    let text = welcome.to_text().unwrap();
    assert!(text.contains(r#""type":"welcome""#), "{text}");
    let ms = began.elapsed().as_secs_f64() * 1000.0;
    let _ = ws.close(None).await;
    ms
}

fn main() {
    let seconds = env_list("NATKIT_BENCH_SECONDS", "3")[0] as u64;
    let rounds = env_list("NATKIT_BENCH_ROUNDS", "3")[0];
    let allocs = env_list("NATKIT_BENCH_STREAM_ALLOCS", "10")[0];
    let joins = env_list("NATKIT_BENCH_JOINS", "30")[0];
    let rt = natkit_bench::runtime();
    let echo = natkit_bench::echo::start();
    let dir = natkit_testkit::tls::TempDir::new("bench-tls-port");
    let ca = natkit_testkit::tls::TestCa::new("natkit bench CA");
    let files = ca.issue(&["127.0.0.1"], dir.path(), "server");
    let config = natkit_bench::stream::tls_config(ca.pem().as_bytes()).unwrap();

    println!("TURN over TLS, {allocs} connections, 128 messages of 100 bytes in flight, {seconds} s per cell, {rounds} rounds alternating");
    let (mut pps, mut cpu) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for round in 0..rounds {
        for (i, name) in ["dedicated (natkit-relay)", "shared (natkit-signal)"]
            .into_iter()
            .enumerate()
        {
            let (_p, tls_addr, pid) = match i {
                0 => dedicated(&files),
                _ => shared(&files),
            };
            let cfg = StreamLoadConfig {
                server: tls_addr,
                secret: SECRET.into(),
                transport: StreamTransport::Tls {
                    config: Arc::clone(&config),
                    name: "127.0.0.1".into(),
                },
                echo,
                allocations: allocs,
                payload: 100,
                window: (128 / allocs).max(1),
                duration: Duration::from_secs(seconds),
                server_pid: Some(pid),
            };
            let r = rt
                .block_on(natkit_bench::stream::run(&cfg))
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            println!(
                "  round {round} {name:<25} {:>9.0} relayed pps  {:>6.2} server CPU s per million  loss {:.2}%",
                r.relayed_pps, r.cpu_s_per_million, r.loss_pct
            );
            pps[i].push(r.relayed_pps);
            cpu[i].push(r.cpu_s_per_million);
        }
    }
    let (p0, p1) = (median(pps[0].clone()), median(pps[1].clone()));
    let (c0, c1) = (median(cpu[0].clone()), median(cpu[1].clone()));
    println!(
        "  medians: dedicated {p0:.0} pps, {c0:.2} CPU s/M; shared {p1:.0} pps, {c1:.2} CPU s/M: shared/dedicated {:.2}x packets (target >= 0.95), {:.2}x CPU per packet (target <= 1.05)",
        p1 / p0,
        c1 / c0
    );

    println!();
    println!("the page and a join on new connections, {joins} each, alternating, medians");
    let (_p, tls_addr, _) = shared(&files);
    let (_plain, http_addr) = plain();
    let (mut https, mut http, mut wss, mut ws) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for n in 0..joins {
            let t = Instant::now();
            https.push(get_page(t, tls_to(tls_addr, &config).await).await);
            let t = Instant::now();
            http.push(get_page(t, TcpStream::connect(http_addr).await.unwrap()).await);
            let t = Instant::now();
            let s = tls_to(tls_addr, &config).await;
            wss.push(join(t, s, "wss://127.0.0.1/v1/ws", &format!("wss-{n}")).await);
            let t = Instant::now();
            let s = TcpStream::connect(http_addr).await.unwrap();
            ws.push(join(t, s, "ws://127.0.0.1/v1/ws", &format!("ws-{n}")).await);
        }
    });
    let (a, b, c, d) = (median(https), median(http), median(wss), median(ws));
    println!(
        "  GET /: HTTPS on the shared port {a:.2} ms, plain HTTP {b:.2} ms ({:.2}x)",
        a / b
    );
    println!(
        "  join:  WSS on the shared port {c:.2} ms, plain WS {d:.2} ms ({:.2}x)",
        c / d
    );
}
