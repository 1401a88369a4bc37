//! natkit's test kit: what every test that runs a process needs, written once.
//!
//! # Layout
//! - [`process`]: [`Process`], the one process guard (killed and reaped on drop, also when a
//!   test panics), and [`Daemon`], a natkit server started on port 0 whose real addresses are
//!   read from the `listening` line it prints ([`natkit_daemon::listening_line`]).
//! - [`events`]: [`events::EventProcess`], a process that prints one JSON object per line
//!   (`natkit-peer --json`), with waits on its events instead of sleeps.
//! - [`wait_until`]: poll a condition with a deadline, failing with a message that says what
//!   did not happen.
//! - [`workspace_bin`]: the path of a binary built in this workspace.
//! - [`tls`]: a private CA made at run time, and temporary directories for its files.
//! - [`redis::RedisServer`]: a real redis-server on loopback for the cluster tests.
//! - [`turn_client`]: webrtc-rs's TURN client (the `turn` crate), listening, on 127.0.0.1.
//! - [`natkit_signal_on_loopback`] / [`natkit_relay_on_loopback`]: the suite's servers on
//!   127.0.0.1, every port chosen by the kernel.
//!
//! Network namespaces are `natkit-lab`'s; this crate knows nothing of them.

pub mod acme;
pub mod events;
pub mod process;
pub mod redis;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use process::{Daemon, Process};

/// Path of a binary built in this workspace (next to the running test's `deps/` directory).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built; run the tests through tests/run (cargo builds every workspace binary)",
        p.display()
    );
    p
}

/// The Python interpreter of the virtual environment `tests/run` installs the natkit wheel into
/// (`target/python-venv`; `NATKIT_PYTHON` names another), for tests that drive the Python
/// package.
pub fn natkit_python() -> PathBuf {
    let p = std::env::var_os("NATKIT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_file("target/python-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: the Python package is built and installed there by tests/run",
        p.display()
    );
    p
}

/// A peer program the lab and cluster tests drive with natkit-peer's modes, flags and JSON events.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PeerKind {
    /// natkit-peer (`--json`, logs off).
    Rust,
    /// The Python package's `natkit.connect`, through `tests/interop/natkit_py_peer.py`.
    Python,
}

impl PeerKind {
    /// The command for this kind, made by `spawn(program)` (a plain `Command::new`, or a lab
    /// namespace's `cmd`), before any mode flags. `natkit_peer` is the natkit-peer binary.
    pub fn command(
        self,
        natkit_peer: &str,
        spawn: impl FnOnce(&str) -> std::process::Command,
    ) -> std::process::Command {
        match self {
            PeerKind::Rust => {
                let mut c = spawn(natkit_peer);
                c.env("RUST_LOG", "off").arg("--json");
                c
            }
            PeerKind::Python => {
                let mut c = spawn(natkit_python().to_str().expect("utf-8 path"));
                c.arg(repo_file("tests/interop/natkit_py_peer.py"));
                c
            }
        }
    }
}

/// A file of the repository, by its path from the root (`deploy/relay.example.toml`).
pub fn repo_file(path: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to its end and returns what it wrote to stdout; when it cannot start or exits
/// unsuccessfully, panics naming `what` with its status and everything it printed.
pub fn stdout_of(what: &str, cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// [`stdout_of`], parsed as one JSON document.
pub fn json_of(what: &str, cmd: &mut Command) -> serde_json::Value {
    let out = stdout_of(what, cmd);
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {}", String::from_utf8_lossy(&out)))
}

/// A UDP port on 127.0.0.1 that was free a moment ago, for third-party servers (coturn's
/// `turnserver` and `turnutils_peer`) that cannot report the port they bound. natkit's own
/// servers take port 0 and say which port they got ([`Daemon`]); use this only where that is
/// impossible, and expect that another process may take the port in between.
pub fn third_party_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

/// The closing totals of coturn's `turnutils_uclient` ("tot_send_msgs=N, tot_recv_msgs=M" on its
/// last line without "msz=", which the progress lines carry): (sent, received).
pub fn uclient_totals(out: &str) -> Option<(u64, u64)> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("tot_send_msgs=") && !l.contains("msz="))?;
    let num = |key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .ok()
    };
    Some((num("tot_send_msgs=")?, num("tot_recv_msgs=")?))
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for third-party servers (PeerJS in the
/// signaling benchmark); the same caveat as [`third_party_udp_port`].
pub fn third_party_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral TCP port")
        .port()
}

/// webrtc-rs's TURN client (`turn::client::Client`, realm `natkit`) on an ephemeral 127.0.0.1
/// socket, already listening, for `server` with these long-term credentials.
pub async fn turn_client(
    server: SocketAddr,
    username: &str,
    password: &str,
) -> Result<turn::client::Client, turn::Error> {
    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: username.into(),
        password: password.into(),
        realm: "natkit".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await?;
    client.listen().await?;
    Ok(client)
}

/// The natkit-signal command in open mode (no tokens) on 127.0.0.1:0, with `turn_secret` and
/// `RUST_LOG=log`; callers add the flags their test is about.
pub fn natkit_signal_open(turn_secret: &str, log: &str) -> Command {
    let mut cmd = Command::new(workspace_bin("natkit-signal"));
    cmd.env("NATKIT_TURN_SECRET", turn_secret)
        .env("RUST_LOG", log)
        .args(["--listen", "127.0.0.1:0", "--open"]);
    cmd
}

/// natkit-signal with its embedded relay on 127.0.0.1, every port ephemeral, in open mode (no
/// tokens: these tests are about something else). `http` is the signaling address
/// ([`Daemon::ws_url`]), `stun` the relay's, `metrics` the metrics listener.
pub fn natkit_signal_on_loopback(turn_secret: &str) -> Daemon {
    Daemon::start(
        natkit_signal_open(turn_secret, "warn")
            .env("NATKIT_ALT_PORT", "0")
            .args([
                "--relay-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ]),
    )
}

/// A natkit-signal node of the cluster at `redis_url` on 127.0.0.1 (open mode, lease 2 s, a
/// metrics listener, `extra` flags), once it says it is in step with the cluster store.
pub fn natkit_signal_clustered(turn_secret: &str, redis_url: &str, extra: &[&str]) -> Daemon {
    let d = Daemon::start(
        natkit_signal_open(turn_secret, "info")
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--cluster", redis_url, "--cluster-lease", "2"])
            .args(extra),
    );
    let metrics = format!("http://{}/metrics", d.addr("metrics"));
    wait_until(
        "the node joins the cluster",
        Duration::from_secs(10),
        || metric(&http_get(&metrics), "natkit_signal_cluster_up") == 1.0,
    );
    d
}

/// natkit-relay on 127.0.0.1 with an ephemeral primary and alternate port and no metrics
/// listener, plus `extra` flags.
pub fn natkit_relay_on_loopback(turn_secret: &str, extra: &[&str]) -> Daemon {
    Daemon::start(
        Command::new(workspace_bin("natkit-relay"))
            .env("NATKIT_TURN_SECRET", turn_secret)
            .args(["--listen", "127.0.0.1:0", "--alt-port", "0"])
            .args(["--metrics-listen", "off"])
            .args(extra),
    )
}

/// The value of a Prometheus series in exposition `text`, e.g.
/// `natkit_relay_relayed_packets_total{direction="client_to_peer"}`: the sum over every series of
/// that name whose labels include the given ones (so `natkit_relay_allocations_active` adds up
/// all transports). Panics, showing the text, when no series matches.
pub fn metric(text: &str, series: &str) -> f64 {
    let (name, want) = split_series(series);
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((s, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, labels) = split_series(s);
        if n == name && want.iter().all(|w| labels.contains(w)) {
            found = true;
            sum += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    assert!(found, "metric {series} missing from:\n{text}");
    sum
}

fn split_series(s: &str) -> (&str, Vec<&str>) {
    match s.split_once('{') {
        Some((name, rest)) => (
            name,
            rest.trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        None => (s, Vec::new()),
    }
}

/// Resident memory of process `pid`, KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// A minimal HTTP GET over a TCP socket (keeps tests free of an HTTP client crate); the body of
/// a 200 answer, panicking on anything else.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{url}: {e}"));
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("write request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read answer");
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{url}: {body}"
    );
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Debian's Chromium; panics when it is missing (`tests/run` and `.ci/run` install it, and a
/// test that skipped would prove nothing).
pub fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("chromium not found: apt-get install -y chromium (tests/run installs it)")
        })
}

/// Path of one of coturn's tools (`turnutils_uclient`, `turnutils_peer`, ...). Missing tools fail
/// the test: `.ci/run` and `tests/run` install them, and a test that silently skipped would
/// prove nothing.
pub fn coturn_tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = std::path::Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: install Debian's coturn package (apt-get install -y coturn), as tests/run does");
}

/// A headless Chromium showing one page whose script reports with
/// `console.log("PREFIX " + JSON)`; killed, and its profile removed, on drop.
pub struct ChromiumPage {
    process: process::Process,
    profile: PathBuf,
    /// Each report's JSON text, as it comes ([`console_reports`]).
    pub reports: std::sync::mpsc::Receiver<String>,
}

impl ChromiumPage {
    /// Opens `url` with `cmd` (a command running [`chromium`], on this host or in a lab
    /// namespace) given the headless flags, a profile named after `profile` and `extra` flags.
    pub fn open(
        mut cmd: Command,
        profile: &str,
        extra: &[String],
        url: &str,
        prefix: &str,
    ) -> Self {
        let profile = std::env::temp_dir().join(profile);
        let mut process = process::Process::spawn(
            cmd.args(chromium_headless_args(&profile))
                .args(extra)
                .arg(url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped()),
        );
        let stderr = process.child().stderr.take().expect("piped stderr");
        ChromiumPage {
            process,
            profile,
            reports: console_reports(stderr, prefix),
        }
    }
}

impl ChromiumPage {
    /// The page's reports until one that `done` accepts (returned), or `within` passes: then
    /// the last report (`Null` when none came).
    pub fn report_until(
        &self,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + within;
        let mut last = serde_json::Value::Null;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self
                .reports
                .recv_timeout(left)
                .map(|j| serde_json::from_str(&j))
            {
                Ok(Ok(v)) => {
                    let stop = done(&v);
                    last = v;
                    if stop {
                        break;
                    }
                }
                Ok(Err(_)) => {}
                Err(_) => break,
            }
        }
        last
    }
}

impl ChromiumPage {
    /// The demo page's report once `text` has come back on its channel and its path is known
    /// (or the last report, after `within`).
    pub fn report_echo(&self, text: &str, within: Duration) -> serde_json::Value {
        self.report_until(within, |v| {
            page_has_message(v, text) && !v["selected"].is_null()
        })
    }
}

/// Has the demo page (its report, `window.natkit`) received `text`?
pub fn page_has_message(report: &serde_json::Value, text: &str) -> bool {
    report["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == text))
}

impl Drop for ChromiumPage {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The flags every headless Chromium of the tests starts with (Debian's `chromium`), with its own
/// profile in `profile`: no sandbox (root), no GPU, QUIC and background traffic off, console
/// messages on standard error.
pub fn chromium_headless_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// What a page logged with `console.log("PREFIX " + JSON)` in a Chromium started with
/// [`chromium_headless_args`] (which writes console messages to standard error): each JSON text,
/// as it comes, from the browser's piped `stderr`.
pub fn console_reports(
    stderr: std::process::ChildStderr,
    prefix: &str,
) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let marker = format!("\"{prefix} ");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once(&marker) {
                let json = rest.rsplit_once("\", source:").map_or(rest, |(j, _)| j);
                if tx.send(json.to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Whether TOML `text` sets `key` on a line of its own, or names it commented out
/// (`# key = ...`): how the deploy examples show every key.
pub fn toml_names_key(text: &str, key: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start().trim_start_matches('#').trim_start();
        l.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

/// The keys of `options` (a server's options struct, serialized) that `example` (a TOML file's
/// text) neither sets nor names in a comment, but for `except`.
pub fn keys_missing_from(
    example: &str,
    options: &impl serde::Serialize,
    except: &[&str],
) -> Vec<String> {
    let keys = serde_json::to_value(options).expect("options serialize");
    let serde_json::Value::Object(keys) = keys else {
        panic!("options serialize to a table");
    };
    keys.into_iter()
        .map(|(k, _)| k)
        .filter(|k| !except.contains(&k.as_str()) && !toml_names_key(example, k))
        .collect()
}

/// A file reader for a server's `from_options` that knows one file, `path`, holding `text`, and
/// fails the test when asked for another.
pub fn one_file(
    path: &'static str,
    text: &'static str,
) -> impl Fn(&str) -> std::io::Result<String> {
    move |p| {
        assert_eq!(p, path, "the configuration reads another file");
        Ok(text.to_owned())
    }
}

/// The process environment is one per test binary: tests that set variables take turns here.
static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` with the variables `env` set, and removes them after; tests that read the
/// environment (a server's flags and variables as clap parses them) take turns.
pub fn with_env<T>(env: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _turn = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let out = f();
    for (k, _) in env {
        std::env::remove_var(k);
    }
    out
}

/// A STUN Binding request over a stream (TURN over TCP or TLS): the response's message type and
/// its XOR-MAPPED-ADDRESS (IPv4).
pub async fn binding_on<S>(mut s: S) -> ([u8; 2], Option<SocketAddr>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(&[7u8; 12]);
    s.write_all(&req).await.unwrap();
    let mut head = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("a Binding response in time")
        .unwrap();
    assert_eq!(&head[8..20], &[7u8; 12], "the transaction id comes back");
    let mut attrs = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]]))];
    s.read_exact(&mut attrs).await.unwrap();
    let mut mapped = None;
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let typ = u16::from_be_bytes([attrs[at], attrs[at + 1]]);
        let len = usize::from(u16::from_be_bytes([attrs[at + 2], attrs[at + 3]]));
        let v = &attrs[at + 4..at + 4 + len];
        if typ == 0x0020 && v[1] == 1 {
            let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
            let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ 0x2112_a442;
            mapped = Some((std::net::Ipv4Addr::from(ip), port).into());
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    ([head[0], head[1]], mapped)
}
