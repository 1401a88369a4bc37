//! A fleet of natkit-relays behind one natkit-signal (`--relay-server`, repeatable): both peers of
//! a room are handed the same relay, a relay that drains (SIGUSR1) stops being handed out while
//! its old allocations go on, and one that dies likewise; rooms of the other relay do not move.

use std::net::SocketAddr;
use std::time::Duration;

mod common;

use common::relay_handed_out;
use natkit_testkit::{natkit_relay_on_loopback, Daemon};

const SECRET: &str = "fleet-test-secret";

/// The relay a `join` to `room` is handed (the host:port of its `turn:` URL); TCP is handed out
/// too.
async fn relay_for(signal: &Daemon, room: &str) -> SocketAddr {
    relay_handed_out(&signal.ws_url(), room)
        .await
        .unwrap_or_else(|| panic!("no turn: URL for {room}"))
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
        natkit_testkit::natkit_signal_open(SECRET, "warn")
            .args(["--metrics-listen", "off", "--credentials-per-minute", "0"])
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
