//! Where UDP is blocked: a lab site whose router drops all UDP (TCP still gets out) and a site
//! behind a symmetric NAT, natkit-signal's embedded relay on the "internet" serving TURN over TCP
//! and TLS (a certificate for 203.0.113.1 from a CA made here). natkit-peer in `auto` at both
//! sites, the same with only `turns:` handed out, headless Chromium (the page natkit-signal
//! serves) and aiortc in the UDP-blocked site. Needs root (fails under CI without it).

use std::process::Stdio;
use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat, SERVER_IP};
use natkit_testkit::events::EventProcess;
use natkit_testkit::events::{find_event as find, json_lines as events};
use natkit_testkit::tls::{ServerFiles, TempDir, TestCa};
use natkit_testkit::{page_has_message, ChromiumPage};
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const AIORTC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/interop/aiortc_peer.py"
);

/// The lab: site 0 drops UDP, site 1 is behind a symmetric NAT; natkit-signal serves TURN over
/// TLS (and over TCP when `tcp`).
struct StreamLab {
    lab: Lab,
    url: String,
    ca: std::path::PathBuf,
    files: ServerFiles,
    _dir: TempDir,
}

const BLOCKED: usize = 0;
const SYMMETRIC: usize = 1;

fn stream_lab(tcp: bool) -> StreamLab {
    let dir = TempDir::new("lab-streams");
    let authority = TestCa::new("natkit lab CA");
    let files = authority.issue(&[SERVER_IP], dir.path(), "relay");
    let ca = authority.write_ca(dir.path(), "ca.pem");
    let mut lab = Lab::new();
    assert_eq!(lab.add_site(Nat::UdpBlocked), BLOCKED);
    assert_eq!(lab.add_site(Nat::Symmetric), SYMMETRIC);
    let url = lab.start_natkit_signal_tls("lab-streams", &files.cert, &files.key, tcp);
    StreamLab {
        lab,
        url,
        ca,
        files,
        _dir: dir,
    }
}

impl StreamLab {
    fn peer(&self, site: usize, args: &[&str]) -> std::process::Command {
        let mut c = self.lab.sites[site].client.cmd(PEER);
        c.env("RUST_LOG", "off")
            .args(["--signal", &self.url, "--json", "--relay", "auto"])
            .args(["--tls-ca", self.ca.to_str().unwrap()])
            .args(args);
        c
    }

    /// An echo peer at `site` in `room`, once it has probed (its NAT summary is ready).
    fn echo_at(&self, site: usize, room: &str) -> EventProcess {
        let echo = EventProcess::spawn(
            &mut self.peer(site, &["--room", room, "--echo", "--timeout", "60"]),
        );
        echo.wait_for("probe", Duration::from_secs(20));
        echo
    }

    /// The relay's metrics (natkit-signal's, on the server's loopback).
    fn metric(&self, series: &str) -> f64 {
        let out = self
            .lab
            .server
            .cmd("python3")
            .args([
                "-c",
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9642/metrics').read().decode())",
            ])
            .output()
            .unwrap();
        natkit_testkit::metric(&String::from_utf8_lossy(&out.stdout), series)
    }
}

/// natkit-peer echoes at the symmetric site; natkit-peer at the UDP-blocked site sends. Returns
/// the sender's events and the echo's.
fn natkit_pair(l: &StreamLab, room: &str) -> (Vec<Value>, Vec<Value>) {
    let mut echo = l.echo_at(SYMMETRIC, room);
    let out = l
        .peer(
            BLOCKED,
            &[
                "--room",
                room,
                "--send",
                "through the wall",
                "--timeout",
                "40",
            ],
        )
        .output()
        .unwrap();
    let sender = events(&out.stdout);
    echo.process().kill();
    let echo: Vec<Value> = echo.events().into_iter().map(|(_, e)| e).collect();
    assert!(
        out.status.success(),
        "the UDP-blocked sender failed: {sender:?}"
    );
    assert_eq!(find(&sender, "message")["data"], "through the wall");
    (sender, echo)
}

#[test]
fn udp_blocked_and_symmetric_peers_meet_over_turn_tcp_or_tls() {
    if !require_root("udp_blocked_and_symmetric_peers_meet_over_turn_tcp_or_tls") {
        return;
    }
    let l = stream_lab(true);
    let (sender, echo) = natkit_pair(&l, "tcp-and-tls");
    assert_eq!(
        find(&sender, "probe")["nat_type"],
        "udp-blocked",
        "{sender:?}"
    );
    let policy = find(&sender, "policy");
    assert_eq!(policy["rule"], "udp-blocked", "{policy}");
    assert_eq!(policy["ice_transport_policy"], "relay", "{policy}");
    let c = find(&sender, "connected");
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
    let protocol = c["relay_protocol"].as_str().unwrap_or("none");
    assert!(protocol == "tcp" || protocol == "tls", "{c}");
    eprintln!(
        "UDP-blocked site: connected over TURN/{protocol} {} ms after start (probe included)",
        c["elapsed_ms"]
    );
    // The symmetric side relays too (over UDP: its UDP works).
    let e = find(&echo, "connected");
    assert_eq!(e["local_candidate_type"], "relay", "{e}");
    assert_eq!(e["relay_protocol"], "udp", "{e}");
}

#[test]
fn only_turns_handed_out_gives_a_tls_relay() {
    if !require_root("only_turns_handed_out_gives_a_tls_relay") {
        return;
    }
    let l = stream_lab(false);
    // The sender's events with their arrival times: the echo of its first message bounds the
    // moment its data channel opened from above (one relayed round trip later).
    let mut echo = l.echo_at(SYMMETRIC, "tls-only");
    let started = std::time::Instant::now();
    let sender = EventProcess::spawn(&mut l.peer(
        BLOCKED,
        &[
            "--room",
            "tls-only",
            "--send",
            "through the wall",
            "--timeout",
            "40",
        ],
    ));
    let reply = sender.wait_for("message", Duration::from_secs(40));
    let replied_ms = started.elapsed().as_millis();
    assert_eq!(reply["data"], "through the wall");
    echo.process().kill();
    let sender: Vec<Value> = sender.events().into_iter().map(|(_, e)| e).collect();
    let c = find(&sender, "connected");
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
    assert_eq!(c["relay_protocol"], "tls", "{c}");
    eprintln!(
        "UDP-blocked site, turns: only: connected {} ms, echo of the first message back {replied_ms} ms after start (probe, TLS handshake and allocation included)",
        c["elapsed_ms"]
    );
    assert!(l.metric("natkit_relay_allocations_created_total{transport=\"tls\"}") >= 1.0);
    assert_eq!(
        l.metric("natkit_relay_stream_connections_accepted_total{transport=\"tcp\"}"),
        0.0,
        "TCP is off"
    );
}

/// Opens the web page in headless Chromium inside the UDP-blocked site.
fn open_page(l: &StreamLab, url: &str) -> ChromiumPage {
    // Trust exactly the relay's certificate (the lab CA is not in Chromium's store).
    let trust = format!(
        "--ignore-certificate-errors-spki-list={}",
        l.files.spki_sha256
    );
    ChromiumPage::open(
        l.lab.sites[BLOCKED].client.cmd(natkit_testkit::chromium()),
        &format!("natkit-page-{}", l.lab.id()),
        &[trust],
        url,
        "natkit-page",
    )
}

/// The other role: the page (echoing) is in the room first, natkit-peer behind the symmetric
/// NAT joins, offers and gets its message back through the relay over TLS.
#[test]
fn natkit_peer_offers_to_chromium_behind_blocked_udp_through_turns() {
    if !require_root("natkit_peer_offers_to_chromium_behind_blocked_udp_through_turns") {
        return;
    }
    let l = stream_lab(true);
    let page = open_page(
        &l,
        &format!("http://{SERVER_IP}:8080/?room=chromium-answers&relay=1&turn=tls&echo=1"),
    );
    let joined = page.report_until(Duration::from_secs(30), |v| v["peerId"].is_string());
    assert!(joined["peerId"].is_string(), "the page joined: {joined}");
    let out = l
        .peer(
            SYMMETRIC,
            &[
                "--room",
                "chromium-answers",
                "--send",
                "to chromium",
                "--timeout",
                "40",
            ],
        )
        .output()
        .unwrap();
    let evs = events(&out.stdout);
    if !out.status.success() {
        // What each end saw: the page's last report (its candidates, state, errors) and the
        // relay's allocations by transport.
        let page_saw = page.report_until(Duration::from_secs(1), |_| false);
        let allocations: Vec<f64> = ["udp", "tcp", "tls"]
            .iter()
            .map(|t| {
                l.metric(&format!(
                    "natkit_relay_allocations_created_total{{transport=\"{t}\"}}"
                ))
            })
            .collect();
        panic!("natkit-peer failed: {evs:?}\nthe page: {page_saw}\nrelay allocations udp/tcp/tls: {allocations:?}");
    }
    assert_eq!(find(&evs, "message")["data"], "to chromium");
    let report = page.report_until(Duration::from_secs(10), |v| !v["selected"].is_null());
    assert_eq!(report["selected"]["local"], "relay", "{report}");
    assert_eq!(report["selected"]["relayProtocol"], "tls", "{report}");
}

#[test]
fn chromium_behind_blocked_udp_talks_to_natkit_peer_through_turns() {
    if !require_root("chromium_behind_blocked_udp_talks_to_natkit_peer_through_turns") {
        return;
    }
    let l = stream_lab(true);
    let mut echo = l.echo_at(SYMMETRIC, "chromium");
    // `relay` left at auto: the page's probe sees no mapping, asks for TURN (its first request
    // had none), finds UDP to the relay blocked too and says so in its summary.
    let page =
        format!("http://{SERVER_IP}:8080/?room=chromium&turn=tls&send=hello%20from%20chromium");
    let report = open_page(&l, &page).report_echo("hello from chromium", Duration::from_secs(45));
    echo.process().kill();
    assert!(
        page_has_message(&report, "hello from chromium"),
        "the echo came back to Chromium: {report}"
    );
    assert_eq!(report["nat"]["udp_blocked"], true, "{report}");
    assert_eq!(report["policy"]["rule"], "udp-blocked", "{report}");
    assert_eq!(report["policy"]["relayOnly"], true, "{report}");
    assert_eq!(report["selected"]["local"], "relay", "{report}");
    assert_eq!(report["selected"]["relayProtocol"], "tls", "{report}");
    let echo_events: Vec<Value> = echo.events().into_iter().map(|(_, e)| e).collect();
    assert_eq!(find(&echo_events, "message")["data"], "hello from chromium");
}

#[test]
fn aiortc_behind_blocked_udp_talks_to_natkit_peer_through_turn_tcp() {
    if !require_root("aiortc_behind_blocked_udp_talks_to_natkit_peer_through_turn_tcp") {
        return;
    }
    let l = stream_lab(true);
    let mut echo = l.echo_at(SYMMETRIC, "aiortc");
    let out = l.lab.sites[BLOCKED]
        .client
        .cmd("python3")
        .args([
            AIORTC,
            "--signal",
            &l.url,
            "--room",
            "aiortc",
            "--turn-transport",
            "tcp",
        ])
        .args(["--send", "hello from aiortc", "--timeout", "40"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    echo.process().kill();
    let evs = events(&out.stdout);
    assert!(out.status.success(), "aiortc failed: {evs:?}");
    assert_eq!(find(&evs, "message")["data"], "hello from aiortc");
    // aiortc's only way out is the TCP TURN allocation; the symmetric side relays over UDP.
    assert!(l.metric("natkit_relay_allocations_created_total{transport=\"tcp\"}") >= 1.0);
    assert!(
        l.metric(
            "natkit_relay_relayed_packets_total{direction=\"client_to_peer\",transport=\"tcp\"}"
        ) > 0.0
    );
}

/// The Python package (`natkit.connect`, through `tests/interop/natkit_py_peer.py`) at the
/// UDP-blocked site, natkit-peer echoing at the symmetric site: aiortc takes one TURN URL only, so
/// the package must hand it the one this network can use. With TCP and TLS served it takes TCP
/// (the first stream transport that connects); with only `turns:` handed out, TLS, verified with
/// the lab's CA (`tls_ca`).
#[test]
fn a_python_peer_behind_blocked_udp_reaches_a_symmetric_peer_over_turn_tcp_and_over_tls() {
    if !require_root(
        "a_python_peer_behind_blocked_udp_reaches_a_symmetric_peer_over_turn_tcp_and_over_tls",
    ) {
        return;
    }
    for (tcp, want) in [(true, "tcp"), (false, "tls")] {
        let l = stream_lab(tcp);
        let room = format!("python-{want}");
        let mut echo = l.echo_at(SYMMETRIC, &room);
        let out = l.lab.sites[BLOCKED]
            .client
            .cmd(
                natkit_testkit::natkit_python()
                    .to_str()
                    .expect("utf-8 path"),
            )
            .arg(natkit_testkit::repo_file("tests/interop/natkit_py_peer.py"))
            .args(["--signal", &l.url, "--room", &room, "--timeout", "40"])
            .args(["--tls-ca", l.ca.to_str().unwrap()])
            .args(["--send", "through the wall"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        echo.process().kill();
        let evs = events(&out.stdout);
        assert!(
            out.status.success(),
            "{want}: the Python peer failed: {evs:?}"
        );
        assert_eq!(find(&evs, "message")["data"], "through the wall");
        assert_eq!(find(&evs, "probe")["nat_type"], "udp-blocked", "{evs:?}");
        let policy = find(&evs, "policy");
        assert_eq!(
            (
                policy["rule"].as_str(),
                policy["ice_transport_policy"].as_str()
            ),
            (Some("udp-blocked"), Some("relay")),
            "{policy}"
        );
        let ch = find(&evs, "channel");
        assert_eq!(ch["local"], "relay", "{ch}");
        assert_eq!(ch["relay_transport"], want, "{ch}");
        eprintln!(
            "Python peer at the UDP-blocked site: connected over TURN/{want} {} ms after start (probe included)",
            find(&evs, "connected")["elapsed_ms"]
        );
        let series = format!("natkit_relay_allocations_created_total{{transport=\"{want}\"}}");
        assert!(l.metric(&series) >= 1.0, "{series}");
    }
}
