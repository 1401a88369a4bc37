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
    let args = [
        "--send",
        "hello natkit",
        "--relay",
        relay,
        "--timeout",
        "30",
    ];
    events(&natkit_testkit::stdout_of(
        "the sender",
        &mut peer(&url, &room, &args),
    ))
}

/// The local and remote candidate types of the "connected" event.
fn candidate_types(evs: &[serde_json::Value]) -> (String, String) {
    let c = find(evs, "connected");
    let kind = |k: &str| {
        c[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {c}"))
            .to_owned()
    };
    (kind("local_candidate_type"), kind("remote_candidate_type"))
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
    let (local, _) = candidate_types(&evs);
    assert!(!["relay", "unknown"].contains(&local.as_str()), "{local}");
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
    assert_eq!(candidate_types(&evs), ("relay".into(), "relay".into()));
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
    // Nobody to talk to: the attempt times out saying nobody came.
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
    assert_eq!(failed["stage"], "timeout", "{failed}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("no partner joined empty-room within 3s"),
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

/// natkit-signal handing out a STUN URL where nothing listens (a mistyped port): the probe hears
/// the host's port unreachable, and the peer fails at once with stage `config`, not a NAT
/// verdict that would force TURN over TCP.
#[test]
fn a_stun_url_where_nothing_listens_is_a_config_failure() {
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port();
    drop(gone);
    let sig = Daemon::start(
        natkit_testkit::natkit_signal_open("closed-stun", "warn")
            .args(["--no-relay", "--metrics-listen", "off"])
            .args(["--ice-server", &format!("stun:127.0.0.1:{port}")]),
    );
    let out = peer(&sig.ws_url(), "r", &["--send", "hi", "--timeout", "20"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let evs = events(&out.stdout);
    let failed = find(&evs, "failed");
    assert_eq!(failed["stage"], "config", "{failed}");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "no STUN server at 127.0.0.1:{port}: port unreachable"
        )),
        "{message}"
    );
    assert!(evs.iter().all(|e| e["event"] != "probe"), "no verdict");
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

/// natkit-relay serving TURN over TCP and TLS (a certificate for 127.0.0.1 from a CA made here),
/// and a natkit-signal that hands out only `url` (built from the relay's addresses) with
/// credentials for the relay's secret.
struct StreamSetup {
    _dir: natkit_testkit::tls::TempDir,
    ca: std::path::PathBuf,
    _relay: Daemon,
    _signal: Daemon,
    url: String,
}

fn stream_setup(url_for: impl Fn(&Daemon) -> String) -> StreamSetup {
    use natkit_testkit::tls::{TempDir, TestCa};
    let dir = TempDir::new("peer-streams");
    let authority = TestCa::new("natkit peer test CA");
    let files = authority.issue(&["127.0.0.1"], dir.path(), "relay");
    let ca = authority.write_ca(dir.path(), "ca.pem");
    let relay = natkit_testkit::natkit_relay_on_loopback(
        "peer-streams",
        &[
            "--allow-peer",
            "127.0.0.1",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
            "--tls-name",
            "127.0.0.1",
        ],
    );
    let ice = url_for(&relay);
    let signal = Daemon::start(
        Command::new(natkit_testkit::workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", "peer-streams")
            .env("RUST_LOG", "warn")
            .args(["--listen", "127.0.0.1:0", "--no-relay", "--open"])
            .args(["--metrics-listen", "off", "--ice-server", &ice]),
    );
    let url = signal.ws_url();
    StreamSetup {
        _dir: dir,
        ca,
        _relay: relay,
        _signal: signal,
        url,
    }
}

/// Relay-only peers through one TCP or TLS TURN URL: both connect over it and say how.
fn exchange_over(s: &StreamSetup, room: &str, want: &str) {
    let ca = s.ca.to_str().unwrap();
    let _echo = echo_peer(&s.url, room, &["--relay", "always", "--tls-ca", ca]);
    let out = peer(
        &s.url,
        room,
        &[
            "--send",
            "over a stream",
            "--relay",
            "always",
            "--tls-ca",
            ca,
        ],
    )
    .output()
    .unwrap();
    let evs = events(&out.stdout);
    assert!(out.status.success(), "sender failed: {evs:?}");
    let c = find(&evs, "connected");
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
    assert_eq!(c["relay_protocol"], want, "{c}");
    assert_eq!(find(&evs, "message")["data"], "over a stream");
}

#[test]
fn relay_only_over_turn_tcp() {
    let s = stream_setup(|r| format!("turn:127.0.0.1:{}?transport=tcp", r.addr("turn-tcp").port()));
    exchange_over(&s, "over-tcp", "tcp");
}

#[test]
fn relay_only_over_turn_tls_with_a_private_ca() {
    let s = stream_setup(|r| {
        format!(
            "turns:127.0.0.1:{}?transport=tcp",
            r.addr("turn-tls").port()
        )
    });
    exchange_over(&s, "over-tls", "tls");
    // Without --tls-ca the relay's certificate is not trusted: no relay candidate, no session.
    let _echo = echo_peer(&s.url, "untrusted", &["--relay", "always"]);
    let out = peer(
        &s.url,
        "untrusted",
        &["--send", "x", "--relay", "always", "--timeout", "8"],
    )
    .output()
    .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A --tls-ca that is not a certificate is a one-line error naming it.
    let out = peer(
        &s.url,
        "x",
        &["--send", "x", "--tls-ca", "/nonexistent/ca.pem"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-ca /nonexistent/ca.pem"));
}
