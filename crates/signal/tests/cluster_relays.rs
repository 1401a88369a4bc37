//! natkit-relays announcing themselves in the cluster's Redis (`natkit-relay --cluster`), handed
//! out by clustered natkit-signal nodes (`--relay-server cluster`): the two peers of a room,
//! joined through different nodes, meet on one relay; a relay drained with SIGUSR1 is no longer
//! handed out while its session goes on, and exits once that session has ended; a relay killed
//! is forgotten when its announcement expires.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use natkit_testkit::events::EventProcess;
use natkit_testkit::redis::RedisServer;
use natkit_testkit::{
    natkit_relay_on_loopback, natkit_signal_clustered, wait_until, workspace_bin, Daemon,
};
use serde_json::Value;

const SECRET: &str = "cluster-relays-secret";

fn signal_node(redis: &RedisServer) -> Daemon {
    let extra = ["--credentials-per-minute", "0", "--relay-server", "cluster"];
    natkit_signal_clustered(SECRET, &redis.url(), &extra)
}

/// The relay (`HOST:PORT`) a peer joining `room` through `node` is handed.
fn relay_for(node: &Daemon, room: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::relay_handed_out(&node.ws_url(), room))
        .map(|a| a.to_string())
}

/// What relay `addr` announces in Redis.
fn announcement(redis: &RedisServer, addr: &str) -> Value {
    let reply = redis.command(&format!("GET natkit:relay:{addr}")).unwrap();
    // A bulk string: "$LEN\r\nJSON\r\n".
    let json = reply.split("\r\n").nth(1).unwrap_or("null");
    serde_json::from_str(json).unwrap_or(Value::Null)
}

fn peer(node: &Daemon, room: &str, id: &str, mode: &str) -> EventProcess {
    EventProcess::spawn(
        Command::new(workspace_bin("natkit-peer"))
            .env("RUST_LOG", "off")
            .args(["--signal", &node.ws_url(), "--room", room, "--peer-id", id])
            .args(["--relay", "always", "--json", "--timeout", "8", mode]),
    )
}

fn announced(redis: &RedisServer) -> usize {
    let r = redis.command("SCARD natkit:relays").unwrap_or_default();
    r.trim_start_matches(':').trim().parse().unwrap_or(0)
}

#[test]
fn announced_relays_are_shared_by_nodes_drained_and_forgotten() {
    let redis = RedisServer::start();
    let cluster = ["--cluster", &redis.url()];
    let mut a = natkit_relay_on_loopback(SECRET, &cluster);
    let mut b = natkit_relay_on_loopback(SECRET, &cluster);
    let (ra, rb) = (a.addr("stun").to_string(), b.addr("stun").to_string());
    wait_until("both relays announced", Duration::from_secs(10), || {
        announced(&redis) == 2
    });
    let nodes = [signal_node(&redis), signal_node(&redis)];
    // Wait until both nodes have read the announcements.
    wait_until("the nodes hand out relays", Duration::from_secs(10), || {
        nodes.iter().all(|n| relay_for(n, "probe-room").is_some())
    });

    // Rooms spread over both relays; a room's peers, on different nodes, meet on one.
    let mut on_a = None;
    let mut on_b = None;
    for i in 0..30 {
        let room = format!("room{i}");
        let first = relay_for(&nodes[0], &room).unwrap();
        assert_eq!(
            relay_for(&nodes[1], &room).unwrap(),
            first,
            "{room}: one relay for both nodes"
        );
        if first == ra {
            on_a.get_or_insert(room);
        } else {
            assert_eq!(first, rb);
            on_b.get_or_insert(room);
        }
    }
    let (room_a, room_b) = (
        on_a.expect("rooms on relay a"),
        on_b.expect("rooms on relay b"),
    );

    // A session relayed through a, its peers on different nodes.
    let echo = peer(&nodes[0], &room_a, "echo", "--echo");
    echo.wait_for("joined", Duration::from_secs(10));
    let mut chat = peer(&nodes[1], &room_a, "chat", "--chat");
    let c = chat.wait_for("connected", Duration::from_secs(20));
    assert_eq!(c["local_candidate_type"], "relay", "{c}");
    // a announces its load.
    wait_until(
        "a announces the session's allocations",
        Duration::from_secs(5),
        || announcement(&redis, &ra)["allocations"].as_u64() >= Some(2),
    );

    // a drains: new rooms that were a's go to b; b's rooms stay; the session on a goes on.
    a.process_ref().signal("USR1");
    wait_until("a drained room moves to b", Duration::from_secs(10), || {
        relay_for(&nodes[0], &room_a).as_deref() == Some(rb.as_str())
    });
    assert_eq!(relay_for(&nodes[1], &room_b).as_deref(), Some(rb.as_str()));
    let t0 = Instant::now();
    for i in 0..5 {
        chat.send_line(&format!("after-drain-{i}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until(
        "the session on the drained relay goes on",
        Duration::from_secs(5),
        || (0..5).all(|i| chat.message_time(&format!("after-drain-{i}")).is_some()),
    );
    eprintln!("chat peer:\n{}", chat.timeline(t0));
    // The session ends: the chat peer's input ends, it stops, and so does the echo peer (its
    // timeout); both close their allocations. The drained relay then exits by itself.
    chat.close_input();
    let mut echo = echo;
    let chat_exit = chat.process().wait_exit(Duration::from_secs(15));
    let echo_exit = echo.process().wait_exit(Duration::from_secs(15));
    eprintln!("peers ended: chat {chat_exit}, echo {echo_exit}");
    let status = a.process().wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(a.logged("drain complete"), "{:?}", a.log());
    wait_until(
        "a withdrew its announcement",
        Duration::from_secs(5),
        || announced(&redis) == 1 && announcement(&redis, &ra).is_null(),
    );

    // b is killed: forgotten once its announcement expires; with no relay left, none is handed.
    b.process().kill();
    wait_until("b is forgotten", Duration::from_secs(15), || {
        relay_for(&nodes[0], &room_b).is_none()
    });
}
