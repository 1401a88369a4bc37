//! Interoperability with aiortc (PyPI `aiortc`): a Python peer speaking natkit-signal's protocol
//! (tests/interop/aiortc_peer.py) exchanges data-channel messages with natkit-peer in both
//! directions of offer, natkit-peer relay-only through natkit's relay. aiortc puts every candidate
//! in its SDP and never trickles.

use std::process::{Command, Stdio};
use std::time::Duration;

use natkit_testkit::events::json_lines as events;
use natkit_testkit::events::EventProcess;
use natkit_testkit::{natkit_signal_on_loopback, Daemon};
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/interop/aiortc_peer.py"
);

fn python_with_aiortc() -> &'static str {
    let ok = Command::new("python3")
        .args(["-c", "import aiortc, websockets"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with aiortc is needed: pip install aiortc websockets (tests/run and .ci/run do)"
    );
    "python3"
}

fn signal() -> (Daemon, String) {
    let d = natkit_signal_on_loopback("aiortc-test");
    let url = d.ws_url();
    (d, url)
}

/// An aiortc echo peer joins `room` first; natkit-peer (`--relay relay`) offers, sends a message
/// and must get it back. Returns natkit-peer's events.
fn natkit_peer_sends_to_aiortc(room: &str, relay: &str) -> Vec<Value> {
    let py = python_with_aiortc();
    let (_sig, url) = signal();
    let aiortc = EventProcess::spawn(
        Command::new(py)
            .args([
                SCRIPT,
                "--signal",
                &url,
                "--room",
                room,
                "--echo",
                "--timeout",
                "40",
            ])
            .stderr(Stdio::null()),
    );
    aiortc.wait_for("joined", Duration::from_secs(20));
    let out = Command::new(PEER)
        .env("RUST_LOG", "off")
        .args(["--signal", &url, "--room", room, "--json", "--relay", relay])
        .args(["--send", "hi aiortc", "--timeout", "30"])
        .output()
        .unwrap();
    let evs = events(&out.stdout);
    assert!(out.status.success(), "{evs:?}");
    assert!(
        evs.iter()
            .any(|e| e["event"] == "message" && e["data"] == "hi aiortc"),
        "{evs:?}"
    );
    evs
}

#[test]
fn natkit_peer_offers_to_aiortc() {
    let evs = natkit_peer_sends_to_aiortc("aiortc-answers", "always");
    let c = evs.iter().find(|e| e["event"] == "connected").unwrap();
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
}

#[test]
fn aiortc_offers_to_natkit_peer_with_all_candidates_in_the_sdp() {
    let py = python_with_aiortc();
    let (_sig, url) = signal();
    let echo = EventProcess::spawn(Command::new(PEER).env("RUST_LOG", "off").args([
        "--signal",
        &url,
        "--room",
        "aiortc-offers",
        "--json",
        "--relay",
        "always",
        "--echo",
        "--timeout",
        "40",
    ]));
    echo.wait_for("joined", Duration::from_secs(10));
    let out = Command::new(py)
        .args([
            SCRIPT,
            "--signal",
            &url,
            "--room",
            "aiortc-offers",
            "--send",
            "hi natkit",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    let evs = events(&out.stdout);
    assert!(
        out.status.success(),
        "aiortc: {evs:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        evs.iter()
            .any(|e| e["event"] == "message" && e["data"] == "hi natkit"),
        "{evs:?}"
    );
    let c = echo.wait_for("connected", Duration::from_secs(5));
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
}

/// `--relay auto` against aiortc, which sends no NAT summary: natkit-peer waits for one briefly,
/// then decides from its own probe alone, as before summaries existed.
#[test]
fn auto_mode_with_aiortc_decides_from_this_side_alone() {
    let evs = natkit_peer_sends_to_aiortc("aiortc-auto", "auto");
    let policy = evs.iter().find(|e| e["event"] == "policy").unwrap();
    assert_eq!(policy["rule"], "this-side-only", "{policy}");
    assert_eq!(policy["remote_nat"], Value::Null, "{policy}");
    assert_eq!(
        policy["ice_transport_policy"], "all",
        "loopback has no NAT: {policy}"
    );
}
