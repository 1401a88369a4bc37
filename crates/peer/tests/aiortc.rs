//! Interoperability with aiortc (PyPI `aiortc`): a Python peer speaking natkit-signal's protocol
//! (tests/interop/aiortc_peer.py) exchanges data-channel messages with natkit-peer in both
//! directions of offer, natkit-peer relay-only through natkit's relay. aiortc puts every candidate
//! in its SDP and never trickles.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/interop/aiortc_peer.py"
);

use natkit_lab::Spawned as Killed;

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

fn signal() -> (natkit_lab::Spawned, String) {
    natkit_lab::natkit_signal_on_loopback("aiortc-test")
}

fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn natkit_peer_offers_to_aiortc() {
    let py = python_with_aiortc();
    let (_sig, url) = signal();
    let _aiortc = Killed(
        Command::new(py)
            .args([
                SCRIPT,
                "--signal",
                &url,
                "--room",
                "aiortc-answers",
                "--echo",
                "--timeout",
                "40",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = Command::new(PEER)
        .env("RUST_LOG", "off")
        .args([
            "--signal",
            &url,
            "--room",
            "aiortc-answers",
            "--json",
            "--relay",
            "always",
            "--send",
            "hi aiortc",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    let evs = events(&out.stdout);
    assert!(out.status.success(), "{evs:?}");
    assert!(
        evs.iter()
            .any(|e| e["event"] == "message" && e["data"] == "hi aiortc"),
        "{evs:?}"
    );
    let c = evs.iter().find(|e| e["event"] == "connected").unwrap();
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
}

#[test]
fn aiortc_offers_to_natkit_peer_with_all_candidates_in_the_sdp() {
    let py = python_with_aiortc();
    let (_sig, url) = signal();
    let echo = Killed(
        Command::new(PEER)
            .env("RUST_LOG", "off")
            .args([
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
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(700));
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
    let mut echo = echo;
    let mut child = std::mem::replace(&mut echo.0, Command::new("true").spawn().unwrap());
    let _ = child.kill();
    let peer_evs = events(&child.wait_with_output().unwrap().stdout);
    let c = peer_evs
        .iter()
        .find(|e| e["event"] == "connected")
        .expect("natkit-peer connected");
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
}
