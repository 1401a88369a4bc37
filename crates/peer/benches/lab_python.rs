//! The Python package (`natkit.connect` on aiortc) beside natkit-peer in the NAT lab, in one run:
//!
//! - time from start to a connected peer connection (probe included; for Python from the
//!   `connect` call, imports excluded), natkit-peer pair and Python pair alternating on the same
//!   sites, relayed (both behind symmetric NATs) and direct (open internet + symmetric);
//! - 1 KiB messages per second over a relayed channel (relay-only, both behind symmetric NATs):
//!   `natkit.connect` against plain aiortc with hand-written signaling (tests/interop/dc_rate.py),
//!   alternating.
//!
//! Medians of each, and the ratios the Python issue asks about (time: Python / natkit-peer, target
//! within 1.3; rate: natkit / plain aiortc, target at least 0.9).
//!
//! As root, after `tests/run` (it builds the wheel into target/python-venv):
//! `cargo build --release --bins && cargo bench -p natkit-peer --bench lab_python`

use std::process::Command;
use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat};
use natkit_testkit::events::EventProcess;
use natkit_testkit::PeerKind as Kind;
use natkit_testkit::{natkit_python, repo_file};
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const RUNS: usize = 5;
const RATE_RUNS: usize = 3;
const MESSAGES: usize = 10_000;

fn cmd(kind: Kind, lab: &Lab, site: usize, url: &str, room: &str, args: &[&str]) -> Command {
    let mut c = kind.command(PEER, |p| lab.sites[site].client.cmd(p));
    c.args(["--signal", url, "--room", room, "--timeout", "40"])
        .args(args);
    c
}

/// ms from the sender's start to "connected", with the echo peer already in the room (probed).
fn time_to_connect(kind: Kind, lab: &Lab, url: &str, room: &str) -> (u64, String) {
    let echo = EventProcess::spawn(&mut cmd(kind, lab, 0, url, room, &["--echo"]));
    echo.wait_for("probe", Duration::from_secs(20));
    let sender = EventProcess::spawn(&mut cmd(kind, lab, 1, url, room, &["--send", "t"]));
    let c = sender.wait_for("connected", Duration::from_secs(40));
    sender.wait_for("message", Duration::from_secs(20));
    (
        c["elapsed_ms"].as_u64().expect("elapsed_ms"),
        c["local_candidate_type"].as_str().unwrap_or("?").to_owned(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn open_times(nats: [Nat; 2], what: &str) {
    let mut lab = Lab::with_sites(&nats);
    let url = lab.start_natkit_signal("bench");
    let (mut rust, mut python, mut kinds) =
        (Vec::new(), Vec::new(), (String::new(), String::new()));
    for i in 0..RUNS {
        let (ms, k) = time_to_connect(Kind::Rust, &lab, &url, &format!("{}-r{i}", lab.id()));
        rust.push(ms as f64);
        kinds.0 = k;
        let (ms, k) = time_to_connect(Kind::Python, &lab, &url, &format!("{}-p{i}", lab.id()));
        python.push(ms as f64);
        kinds.1 = k;
    }
    let (r, p) = (median(rust.clone()), median(python.clone()));
    println!(
        "{what:<28} natkit-peer {r:>6.0} ms ({})   Python {p:>6.0} ms ({})   Python / natkit-peer {:.2}",
        kinds.0,
        kinds.1,
        p / r
    );
    println!("{:<28} runs: natkit-peer {rust:?}, Python {python:?}", "");
}

/// Messages per second received, `impl` at both ends, relay-only.
fn rate(imp: &str, lab: &Lab, url: &str, room: &str) -> f64 {
    let script = repo_file("tests/interop/dc_rate.py");
    let python = natkit_python();
    let run = |site: usize, role: &str| {
        let mut c = lab.sites[site]
            .client
            .cmd(python.to_str().expect("utf-8 path"));
        c.arg(&script)
            .args(["--impl", imp, "--signal", url, "--room", room, role])
            .args(["--count", &MESSAGES.to_string(), "--size", "1024"]);
        c
    };
    let recv = EventProcess::spawn(&mut run(0, "--recv"));
    std::thread::sleep(Duration::from_millis(1500));
    let send = EventProcess::spawn(&mut run(1, "--send"));
    let r: Value = recv.wait_for("rate", Duration::from_secs(120));
    drop(send);
    assert_eq!(r["messages"], MESSAGES, "{imp}: every message arrives: {r}");
    r["per_second"].as_f64().expect("per_second")
}

fn main() {
    if !require_root("lab_python") {
        return;
    }
    println!(
        "time to a connected peer connection, probe included (median of {RUNS}, alternating):"
    );
    open_times([Nat::Symmetric, Nat::Symmetric], "relayed (symmetric x2)");
    open_times(
        [Nat::OpenInternet, Nat::Symmetric],
        "direct (open + symmetric)",
    );

    let mut lab = Lab::with_sites(&[Nat::Symmetric, Nat::Symmetric]);
    let url = lab.start_natkit_signal("bench");
    let (mut natkit, mut aiortc) = (Vec::new(), Vec::new());
    for i in 0..RATE_RUNS {
        natkit.push(rate("natkit", &lab, &url, &format!("{}-n{i}", lab.id())));
        aiortc.push(rate("aiortc", &lab, &url, &format!("{}-a{i}", lab.id())));
    }
    let (n, a) = (median(natkit.clone()), median(aiortc.clone()));
    println!(
        "{MESSAGES} messages of 1 KiB over a relayed channel (median of {RATE_RUNS}, alternating): natkit.connect {n:.0}/s, plain aiortc {a:.0}/s, natkit / aiortc {:.2}",
        n / a
    );
    println!("runs: natkit {natkit:.0?}, aiortc {aiortc:.0?}");
}
