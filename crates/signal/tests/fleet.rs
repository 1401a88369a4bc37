//! A fleet of natkit-relays behind one natkit-signal (`--relay-server`, repeatable): both peers of
//! a room are handed the same relay, a relay that drains (SIGUSR1) stops being handed out while
//! its old allocations go on, and one that dies likewise; rooms of the other relay do not move.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use natkit_testkit::{natkit_relay_on_loopback, workspace_bin, Daemon};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "fleet-test-secret";

/// The relay a `join` to `room` is handed: the host:port of its `turn:` URL.
async fn relay_for(signal: &Daemon, room: &str) -> SocketAddr {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/v1/ws", signal.ws_url()))
        .await
        .unwrap();
    ws.send(Message::text(format!(
        r#"{{"type":"join","room":"{room}"}}"#
    )))
    .await
    .unwrap();
    let welcome: Value = loop {
        let m = ws.next().await.unwrap().unwrap();
        if let Message::Text(t) = m {
            break serde_json::from_str(&t).unwrap();
        }
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let urls: Vec<String> = welcome["ice_servers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["urls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_owned())
        })
        .collect();
    let turn = urls
        .iter()
        .find(|u| u.starts_with("turn:") && u.ends_with("transport=udp"))
        .unwrap_or_else(|| panic!("no turn: URL in {urls:?}"));
    assert!(
        urls.iter().any(|u| u.ends_with("transport=tcp")),
        "TCP is handed out too: {urls:?}"
    );
    let hostport = turn.trim_start_matches("turn:").split('?').next().unwrap();
    let _ = ws.close(None).await;
    hostport.parse().unwrap()
}

/// Joins `room` until it is handed a relay other than `away`, within 10 s.
async fn moves_off(signal: &Daemon, room: &str, away: SocketAddr) -> SocketAddr {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = relay_for(signal, room).await;
        if r != away {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{away} is still handed out for {room}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn rooms_share_a_relay_and_drained_or_dead_relays_are_left_out() {
    let a = natkit_relay_on_loopback(SECRET, &[]);
    let mut b = natkit_relay_on_loopback(SECRET, &[]);
    let c = natkit_relay_on_loopback(SECRET, &[]);
    let relays = [a.addr("stun"), b.addr("stun"), c.addr("stun")];
    let signal = Daemon::start(
        Command::new(workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--open",
                "--metrics-listen",
                "off",
            ])
            .args(["--credentials-per-minute", "0"])
            .args(
                relays
                    .iter()
                    .flat_map(|r| ["--relay-server".to_owned(), r.to_string()]),
            ),
    );
    // Rooms spread over the relays, and a room's peers meet on one.
    let mut rooms_of: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..60 {
        let room = format!("room{i}");
        let first = relay_for(&signal, &room).await;
        assert_eq!(
            relay_for(&signal, &room).await,
            first,
            "{room}: both peers, one relay"
        );
        let k = relays
            .iter()
            .position(|r| *r == first)
            .expect("a configured relay");
        rooms_of[k].push(room);
    }
    assert!(
        rooms_of.iter().all(|r| !r.is_empty()),
        "every relay gets rooms: {rooms_of:?}"
    );

    // a drains (SIGUSR1): its rooms move, b's and c's stay.
    a.process_ref().signal("USR1");
    let moved = moves_off(&signal, &rooms_of[0][0], relays[0]).await;
    assert!(moved == relays[1] || moved == relays[2]);
    assert_eq!(relay_for(&signal, &rooms_of[1][0]).await, relays[1]);
    assert_eq!(relay_for(&signal, &rooms_of[2][0]).await, relays[2]);

    // b dies: its rooms go to c, the only fit relay left.
    b.process().kill();
    assert_eq!(
        moves_off(&signal, &rooms_of[1][0], relays[1]).await,
        relays[2]
    );
    assert_eq!(relay_for(&signal, &rooms_of[2][0]).await, relays[2]);
}
