//! natkit-peer in the NAT lab: time from start to an open data channel (probe included) and
//! data-channel throughput, direct (two port-restricted cone sites) and relayed (`--relay always`)
//! on the same pair of sites, in one run.
//!
//! As root: `cargo build --release --bins && cargo bench -p natkit-peer --bench lab_peer`
//! (`NATKIT_BENCH_RELAY_METRICS=1` also prints the relay's non-zero counters: drops, bytes).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use natkit_lab::{require_root, Lab, Nat, SERVER_IP};
use natkit_testkit::events::EventProcess;
use natkit_testkit::Process;
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const RUNS: usize = 5;
const LINES: usize = 2000;
const LINE_BYTES: usize = 1000;

fn lab() -> (Lab, String, String) {
    let mut lab = Lab::with_sites(&[Nat::PortRestrictedCone, Nat::PortRestrictedCone]);
    let url = lab.start_natkit_signal("bench");
    let id = lab.id().to_owned();
    (lab, url, id)
}

/// `natkit-peer --json` at `site` in `room` with `--relay relay`, then `args`.
fn peer(lab: &Lab, site: usize, url: &str, room: &str, relay: &str, args: &[&str]) -> Command {
    let mut c = lab.sites[site].client.cmd(PEER);
    c.env("RUST_LOG", "off")
        .args(["--signal", url, "--room", room, "--json", "--relay", relay])
        .args(args);
    c
}

/// An echo peer at site 0 that has joined and probed (so the other side offers).
fn echo(lab: &Lab, url: &str, room: &str, relay: &str) -> EventProcess {
    let e = EventProcess::spawn(&mut peer(
        lab,
        0,
        url,
        room,
        relay,
        &["--echo", "--timeout", "60"],
    ));
    let ready = if relay == "auto" { "probe" } else { "joined" };
    e.wait_for(ready, Duration::from_secs(15));
    e
}

fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Median ms from start to "connected" for `--send`.
fn time_to_open(lab: &Lab, url: &str, id: &str, relay: &str) -> (u64, String) {
    let mut ms = Vec::new();
    let mut kind = String::new();
    for i in 0..RUNS {
        let room = format!("{id}-open-{relay}-{i}");
        let _echo = echo(lab, url, &room, relay);
        let out = peer(
            lab,
            1,
            url,
            &room,
            relay,
            &["--send", "t", "--timeout", "30"],
        )
        .output()
        .unwrap();
        let evs = events(&out.stdout);
        let c = evs
            .iter()
            .find(|e| e["event"] == "connected")
            .unwrap_or_else(|| panic!("{relay}: {evs:?}"));
        ms.push(c["elapsed_ms"].as_u64().unwrap());
        kind = c["local_candidate_type"].as_str().unwrap_or("?").to_owned();
    }
    ms.sort();
    (ms[ms.len() / 2], kind)
}

/// Bytes per second echoed back through `--chat` (LINES lines of LINE_BYTES), and the share received.
fn throughput(lab: &Lab, url: &str, id: &str, relay: &str) -> (f64, f64) {
    let room = format!("{id}-tput-{relay}");
    let _echo = echo(lab, url, &room, relay);
    let mut chat = Process::spawn(
        peer(lab, 1, url, &room, relay, &["--chat", "--timeout", "60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let chat = chat.child();
    let line = "x".repeat(LINE_BYTES);
    let mut stdin = chat.stdin.take().unwrap();
    // From another thread: the peer prints each echo while it reads its input, and a full
    // stdout pipe that nobody reads stops it (the bench hung so once `--chat` read its input
    // only as fast as it sends).
    std::thread::spawn(move || {
        for _ in 0..LINES {
            writeln!(stdin, "{line}").unwrap();
        }
    });
    // Timestamp events as they arrive: throughput spans "connected" to the last echo.
    let reader = std::io::BufReader::new(chat.stdout.take().unwrap());
    let (mut t_open, mut t_last, mut got) = (None, None, 0usize);
    for l in std::io::BufRead::lines(reader).map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<Value>(&l) else {
            continue;
        };
        match v["event"].as_str() {
            Some("connected") => t_open = Some(Instant::now()),
            Some("message") => {
                got += 1;
                t_last = Some(Instant::now());
            }
            _ => {}
        }
    }
    let _ = chat.wait();
    let span = match (t_open, t_last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(0.001),
        _ => return (0.0, 0.0),
    };
    (
        got as f64 * LINE_BYTES as f64 / span,
        got as f64 / LINES as f64,
    )
}

fn main() {
    if !require_root("lab_peer") {
        return;
    }
    let (lab, url, id) = lab();
    println!("natkit-peer between two port-restricted cone sites (MASQUERADE), natkit-signal + relay in the server namespace");
    println!(
        "{:<10} {:>10} {:>18} {:>16} {:>10}",
        "path", "selected", "open (median ms)", "echo MB/s", "received"
    );
    let mut rows = Vec::new();
    for relay in ["auto", "always"] {
        let (open_ms, kind) = time_to_open(&lab, &url, &id, relay);
        let (bps, share) = throughput(&lab, &url, &id, relay);
        println!(
            "{:<10} {:>10} {:>18} {:>16.2} {:>9.1}%",
            if relay == "auto" { "direct" } else { "relayed" },
            kind,
            open_ms,
            bps / 1e6,
            share * 100.0
        );
        rows.push(bps);
    }
    println!(
        "relayed throughput / direct throughput: {:.2}",
        rows[1] / rows[0]
    );
    if std::env::var_os("NATKIT_BENCH_RELAY_METRICS").is_some() {
        let out = lab
            .server
            .cmd("curl")
            .args(["-sS", &format!("http://{SERVER_IP}:8080/metrics")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for l in text
            .lines()
            .filter(|l| l.starts_with("natkit_relay_") && !l.ends_with(" 0"))
        {
            println!("  {l}");
        }
    }
}
