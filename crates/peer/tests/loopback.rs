//! natkit-peer as users run it, on loopback: two peers through a real natkit-signal with its
//! embedded relay, directly and relay-only, and failures that name their stage.

use std::process::{Command, Stdio};
use std::time::Duration;

use natkit_testkit::events::EventProcess;
use natkit_testkit::{natkit_signal_on_loopback, Daemon};
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");

fn signal() -> (Daemon, String) {
    let d = natkit_signal_on_loopback("peer-test");
    let url = d.ws_url();
    (d, url)
}

/// An `--echo` peer in `room`, once it has joined: whoever joins later offers.
fn echo_peer(url: &str, room: &str, extra: &[&str]) -> EventProcess {
    let echo = EventProcess::spawn(peer(url, room, &["--echo", "--timeout", "40"]).args(extra));
    echo.wait_for("joined", Duration::from_secs(10));
    echo
}

fn peer(url: &str, room: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(PEER);
    c.env("RUST_LOG", "off")
        .args(["--signal", url, "--room", room, "--json"])
        .args(extra);
    c
}

fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn find<'a>(evs: &'a [Value], name: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {evs:?}"))
}

/// An echo peer and a sender in one room; returns the sender's events.
fn exchange(relay: &str) -> Vec<Value> {
    let (_sig, url) = signal();
    let room = format!("r-{relay}");
    let _echo = echo_peer(&url, &room, &["--relay", relay]);
    let out = peer(
        &url,
        &room,
        &[
            "--send",
            "hello natkit",
            "--relay",
            relay,
            "--timeout",
            "30",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    events(&out.stdout)
}

#[test]
fn two_peers_exchange_a_message_directly() {
    let evs = exchange("auto");
    assert_eq!(find(&evs, "message")["data"], "hello natkit");
    let probe = find(&evs, "probe");
    assert_eq!(
        probe["mapped_address"], probe["local_address"],
        "loopback has no NAT"
    );
    assert_eq!(find(&evs, "policy")["ice_transport_policy"], "all");
    let c = find(&evs, "connected");
    assert_ne!(c["local_candidate_type"], "relay", "{c}");
    assert_ne!(c["local_candidate_type"], "unknown", "{c}");
    assert_eq!(find(&evs, "closed")["reason"], "done");
}

#[test]
fn relay_always_goes_through_the_embedded_relay() {
    let evs = exchange("always");
    assert_eq!(find(&evs, "policy")["ice_transport_policy"], "relay");
    assert!(
        evs.iter().all(|e| e["event"] != "probe"),
        "no probe when relay is forced"
    );
    let c = find(&evs, "connected");
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
    assert_eq!(c["remote_candidate_type"], "relay", "{c}");
    assert_eq!(find(&evs, "message")["data"], "hello natkit");
}

#[test]
fn failures_name_their_stage_and_exit_non_zero() {
    // No signaling server: a port that was just closed.
    let (sig, _) = signal();
    let dead = format!("ws://{}", sig.addr("http"));
    drop(sig);
    let out = peer(&dead, "x", &["--send", "hi", "--timeout", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(find(&events(&out.stdout), "failed")["stage"], "signaling");
    assert!(String::from_utf8_lossy(&out.stderr).contains("signaling failed"));
    // Nobody to talk to: the attempt times out at ICE with a message that says so.
    let (_sig, url) = signal();
    let started = std::time::Instant::now();
    let out = peer(
        &url,
        "empty-room",
        &["--send", "hi", "--timeout", "3", "--relay", "never"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let failed = find(&events(&out.stdout), "failed").clone();
    assert_eq!(failed["stage"], "ice", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("no working candidate pair"),
        "{failed}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Bad arguments.
    let out = Command::new(PEER)
        .args(["--signal", "ws://x", "--room", "r"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--echo or --send is required");
}

#[test]
fn chat_sends_standard_input_lines_and_prints_replies() {
    use std::io::Write;
    let (_sig, url) = signal();
    let _echo = echo_peer(&url, "chat", &[]);
    let mut chat = peer(&url, "chat", &["--chat", "--timeout", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    chat.stdin
        .take()
        .unwrap()
        .write_all(b"first line\nsecond line\n")
        .unwrap();
    let out = chat.wait_with_output().unwrap();
    let evs = events(&out.stdout);
    assert!(out.status.success(), "{evs:?}");
    let got: Vec<&str> = evs
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["first line", "second line"], "{evs:?}");
}
