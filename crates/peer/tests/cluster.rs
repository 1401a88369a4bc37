//! A natkit-signal cluster on loopback: a real redis-server, three natkit-signal processes
//! sharing it, one natkit-relay they hand out. A natkit-peer session across two nodes goes on
//! when the echo peer's node is SIGKILLed: the echo peer rejoins through another node under its
//! id, the other peer hears it leave (lease ran out) or never notices, and every message of the
//! chat peer comes back. A node drained with SIGUSR1 tells its peers to reconnect, they move to
//! the other node under the same id, and the drained node exits by itself (natkit-peer's, the
//! Python package's and a browser page's peers alike).

use std::process::Command;
use std::time::{Duration, Instant};

use natkit_testkit::events::EventProcess;
use natkit_testkit::redis::RedisServer;
use natkit_testkit::PeerKind as Kind;
use natkit_testkit::{natkit_relay_on_loopback, natkit_signal_clustered, wait_until, Daemon};

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const SECRET: &str = "cluster-test-secret";

fn signal_node(redis: &RedisServer, relay: &Daemon) -> Daemon {
    let relay = relay.addr("stun").to_string();
    natkit_signal_clustered(SECRET, &redis.url(), &["--relay-server", &relay])
}

fn peer(urls: &[String], room: &str, id: &str, mode: &str) -> EventProcess {
    peer_of(Kind::Rust, urls, room, id, mode)
}

fn peer_of(kind: Kind, urls: &[String], room: &str, id: &str, mode: &str) -> EventProcess {
    let mut cmd = kind.command(PEER, |p| Command::new(p));
    EventProcess::spawn(
        cmd.args(["--signal", &urls.join(","), "--room", room, "--peer-id", id])
            .args(["--relay", "always", "--timeout", "60", mode]),
    )
}

/// Redis, one natkit-relay, and `n` natkit-signal nodes sharing both.
struct Cluster {
    redis: RedisServer,
    _relay: Daemon,
    nodes: Vec<Daemon>,
    /// The nodes' WebSocket URLs, in order.
    urls: Vec<String>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let redis = RedisServer::start();
        let relay = natkit_relay_on_loopback(SECRET, &[]);
        let nodes: Vec<Daemon> = (0..n).map(|_| signal_node(&redis, &relay)).collect();
        let urls = nodes.iter().map(Daemon::ws_url).collect();
        Cluster {
            redis,
            _relay: relay,
            nodes,
            urls,
        }
    }
}

#[test]
fn a_session_outlives_the_sigkill_of_a_signaling_node() {
    let Cluster {
        redis,
        _relay,
        mut nodes,
        urls,
    } = Cluster::start(3);
    let room = "kill-a-node";
    // The echo peer joins node 0 (and would rejoin through 1, then 2); the chat peer node 1.
    let echo = peer(&urls, room, "echo", "--echo");
    echo.wait_for("joined", Duration::from_secs(10));
    let mut chat = peer(&[urls[1].clone(), urls[2].clone()], room, "chat", "--chat");
    let c = chat.wait_for("connected", Duration::from_secs(20));
    assert_eq!(c["local_candidate_type"], "relay", "{c}");

    let t0 = Instant::now();
    let mut sent = Vec::new();
    for i in 0..30 {
        if i == 10 {
            nodes[0].process().kill();
        }
        let line = format!("m{i}");
        chat.send_line(&line);
        sent.push(line);
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_until("every message echoed", Duration::from_secs(15), || {
        sent.iter().all(|m| chat.message_time(m).is_some())
    });
    let back = echo.wait_for("signaling", Duration::from_secs(1));
    eprintln!(
        "echo peer:\n{}\nchat peer:\n{}",
        echo.timeline(t0),
        chat.timeline(t0)
    );
    assert_eq!(back["state"], "lost", "{back}");
    // Rejoined through a live node, under its id, in a room that still holds the chat peer
    // (whose node is another one).
    wait_until("the echo peer rejoins", Duration::from_secs(15), || {
        echo.count("signaling", "state", "reconnected") == 1
    });
    let rejoined = echo
        .events()
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| e["event"] == "signaling" && e["state"] == "reconnected")
        .unwrap();
    assert_eq!(rejoined["peers"], serde_json::json!(["chat"]), "{rejoined}");
    // The dead node was reaped; the store keeps one room with both peers.
    wait_until("the dead node is reaped", Duration::from_secs(10), || {
        redis.command("SCARD natkit:nodes").as_deref() == Some(":2\r\n")
    });
    let members = redis.command("HKEYS natkit:room:kill-a-node").unwrap();
    assert!(
        members.contains("echo") && members.contains("chat"),
        "{members}"
    );
}

#[test]
fn a_drained_node_moves_its_peers_to_another_and_exits() {
    drained_node_moves(Kind::Rust);
}

/// The same with Python peers (`natkit.connect`): a `reconnect` moves them as it moves natkit-peer.
#[test]
fn a_drained_node_moves_its_python_peers_to_another_and_exits() {
    drained_node_moves(Kind::Python);
}

fn drained_node_moves(kind: Kind) {
    let Cluster {
        redis: _redis,
        _relay,
        mut nodes,
        urls,
    } = Cluster::start(2);
    let room = "drain-a-node";
    let echo = peer_of(kind, &urls, room, "echo", "--echo");
    echo.wait_for("joined", Duration::from_secs(10));
    let mut chat = peer_of(kind, &urls[1..], room, "chat", "--chat");
    chat.wait_for("connected", Duration::from_secs(20));

    let t0 = Instant::now();
    chat_across_a_drain(&mut chat, &nodes[0]);
    eprintln!(
        "echo peer:\n{}\nchat peer:\n{}",
        echo.timeline(t0),
        chat.timeline(t0)
    );
    // Told to move, it moved: the next node, the same id, its partner still there.
    let moved: Vec<serde_json::Value> = echo
        .events()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e["event"] == "signaling")
        .collect();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(moved[0]["state"], "draining");
    assert_eq!(moved[1]["state"], "reconnected");
    assert_eq!(moved[1]["peers"], serde_json::json!(["chat"]));
    exits_once_drained(&mut nodes[0]);
}

/// The demo page (natkit.js, given both nodes' URLs) echoes for natkit-peer `--chat`; the page's
/// node drains: the page moves to the other node, its channel carries every message, and the
/// drained node exits once the page has gone.
#[test]
fn a_drained_node_moves_its_browser_peer_to_another_and_exits() {
    let Cluster {
        redis: _redis,
        _relay,
        mut nodes,
        urls,
    } = Cluster::start(2);
    let room = "drain-a-browser";
    let page_url = format!(
        "http://{}/?room={room}&echo=1&relay=1&signal={}",
        nodes[0].addr("http"),
        urls.join(",")
    );
    let page = natkit_testkit::ChromiumPage::open(
        Command::new(natkit_testkit::chromium()),
        "natkit-cluster-drain-browser",
        &[],
        &page_url,
        "natkit-page",
    );
    let joined = page.report_until(Duration::from_secs(20), |v| v["peerId"].is_string());
    assert!(joined["peerId"].is_string(), "the page joined: {joined}");
    let mut chat = peer(&urls[1..], room, "chat", "--chat");
    chat.wait_for("connected", Duration::from_secs(20));
    let open = page.report_until(Duration::from_secs(20), |v| v["channel"] == "open");
    assert_eq!(open["channel"], "open", "{open}");

    let t0 = Instant::now();
    chat_across_a_drain(&mut chat, &nodes[0]);
    eprintln!("chat peer:\n{}", chat.timeline(t0));
    // Told to move, it moved: its state says it rejoined, its partner never left.
    let moved = page.report_until(Duration::from_secs(10), |v| {
        v["state"]
            .as_str()
            .is_some_and(|s| s.ends_with("(rejoined)"))
    });
    assert!(
        moved["state"]
            .as_str()
            .is_some_and(|s| s.ends_with("(rejoined)")),
        "{moved}"
    );
    assert_eq!(moved["channel"], "open", "{moved}");
    assert_eq!(chat.count("signaling", "state", "lost"), 0);
    exits_once_drained(&mut nodes[0]);
}

/// Twenty lines from `chat`, `node` drained (SIGUSR1) after the fifth: every one comes back.
fn chat_across_a_drain(chat: &mut EventProcess, node: &Daemon) {
    let mut sent = Vec::new();
    for i in 0..20 {
        if i == 5 {
            node.process_ref().signal("USR1");
        }
        let line = format!("m{i}");
        chat.send_line(&line);
        sent.push(line);
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until("every message echoed", Duration::from_secs(15), || {
        sent.iter().all(|m| chat.message_time(m).is_some())
    });
}

/// With its last peer gone, a drained node exits by itself, successfully.
fn exits_once_drained(node: &mut Daemon) {
    let status = node.process().wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(
        node.logged("drained: every peer has gone"),
        "{:?}",
        node.log()
    );
}
