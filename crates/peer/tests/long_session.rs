//! Long-lived relayed sessions in the two-site NAT lab (both sites behind symmetric NATs, so the
//! data goes through the answering echo peer's relay): one message a second from a `--chat` peer to an `--echo` peer,
//! with the reply timed. Each case runs with natkit-peer and with the Python package's
//! `natkit.connect` (through `tests/interop/natkit_py_peer.py`, natkit-peer's modes and events).
//!
//! - A credential TTL of 20 s (and a relay that grants 20 s allocations, so an expired credential
//!   ends an allocation within 20 s) against 60 s of traffic: the renewing pair answers every
//!   message in time, while a `--no-renew` pair in the same lab, at the same moment, goes silent.
//!   The second pair is what shows the test can fail. natkit-peer applies a renewal with an ICE
//!   restart; the Python peer hands it to its live allocations (aiortc cannot restart ICE itself).
//! - natkit-signal (and its embedded relay) killed mid-session and started again: the peers rejoin
//!   signaling, restart ICE over fresh allocations, and the messages after the restart are
//!   answered.
//!
//! Needs root (fails under CI without it).

use std::time::{Duration, Instant};

use natkit_lab::{require_root, Lab, Nat};
use natkit_testkit::events::{assert_session_recovers, late, send_every_second, EventProcess};
use natkit_testkit::PeerKind as Kind;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");

fn peer(kind: Kind, lab: &Lab, site: usize, url: &str, room: &str, args: &[&str]) -> EventProcess {
    let mut cmd = kind.command(PEER, |p| lab.sites[site].client.cmd(p));
    cmd.args(["--signal", url, "--room", room, "--timeout", "150"])
        .args(args);
    EventProcess::spawn(&mut cmd)
}

/// An echo peer at site 0 and a chat peer at site 1 in `room`, connected (the echo joins first).
fn connected_pair(
    kind: Kind,
    lab: &Lab,
    url: &str,
    room: &str,
    extra: &[&str],
) -> (EventProcess, EventProcess) {
    let echo = peer(kind, lab, 0, url, room, &[&["--echo"], extra].concat());
    echo.wait_for("probe", Duration::from_secs(15));
    let chat = peer(kind, lab, 1, url, room, &[&["--chat"], extra].concat());
    // Through the echo's relay: it answers, so it is the relay-only side of the pair.
    let c = chat.wait_for("connected", Duration::from_secs(30));
    assert_eq!(c["remote_candidate_type"], "relay", "{c}");
    let e = echo.wait_for("connected", Duration::from_secs(5));
    assert_eq!(e["local_candidate_type"], "relay", "{e}");
    (echo, chat)
}

fn outlives_a_20s_credential_ttl_only_with_renewal(kind: Kind) {
    let mut lab = Lab::with_sites(&[Nat::Symmetric, Nat::Symmetric]);
    let (url, _) = lab.start_natkit_signal_with(
        "lab",
        &[
            ("NATKIT_SIGNAL_CREDENTIAL_TTL", "20"),
            ("NATKIT_MAX_LIFETIME", "20"),
        ],
    );
    let room = lab.id().to_owned();
    let (echo, mut chat) = connected_pair(kind, &lab, &url, &format!("{room}-renew"), &[]);
    let (_echo_n, mut chat_n) = connected_pair(
        kind,
        &lab,
        &url,
        &format!("{room}-norenew"),
        &["--no-renew"],
    );

    let t0 = Instant::now();
    let sent = send_every_second(&mut [&mut chat, &mut chat_n], "m", 60);
    std::thread::sleep(Duration::from_secs(5));
    let limit = Duration::from_secs(5);

    let missed = late(&chat, &sent, limit);
    let missed_n = late(&chat_n, &sent, limit);
    eprintln!(
        "{kind:?} renewing chat peer:\n{}\nrenewing echo peer:\n{}\n--no-renew chat peer:\n{}\n--no-renew: {} of 60 late or lost",
        chat.timeline(t0),
        echo.timeline(t0),
        chat_n.timeline(t0),
        missed_n.len()
    );
    assert!(
        missed.is_empty(),
        "with renewal, every message must come back within {limit:?}; late or lost: {missed:?}\nchat events: {:?}\necho events: {:?}",
        chat.events(),
        echo.events()
    );
    for (name, p) in [("chat", &chat), ("echo", &echo)] {
        assert!(
            p.count("renewed", "", "") >= 4,
            "{name}: 60 s at a 20 s TTL means at least 4 renewals: {:?}",
            p.events()
        );
    }
    let restarts = chat.count("ice-restart", "reason", "renewal")
        + echo.count("ice-restart", "reason", "renewal");
    match kind {
        // Each renewal followed by an ICE restart.
        Kind::Rust => assert!(restarts >= 4),
        // The live allocations took the new credential: no restart needed.
        Kind::Python => assert_eq!(restarts, 0),
    }

    // The control: the same session without renewal loses its relay once the credential has
    // expired and the allocation cannot be refreshed.
    assert!(
        missed_n.len() >= 10,
        "without renewal the relayed session must break after the 20 s TTL, yet only {missed_n:?} were late; events: {:?}",
        chat_n.events()
    );
    assert_eq!(chat_n.count("renewed", "", ""), 0);
}

fn recovers_when_signaling_and_its_relay_restart(kind: Kind) {
    let mut lab = Lab::with_sites(&[Nat::Symmetric, Nat::Symmetric]);
    let (url, pid) = lab.start_natkit_signal_with("lab", &[]);
    let t0 = Instant::now();
    let room = lab.id().to_owned();
    let (echo, mut chat) = connected_pair(kind, &lab, &url, &room, &[]);
    let mut restart = || {
        // The server and its relay die: every allocation is gone with them.
        lab.kill(pid);
        std::thread::sleep(Duration::from_secs(2));
        lab.start_natkit_signal_with("lab", &[]);
    };
    assert_session_recovers(&mut chat, &echo, t0, &mut restart);
    for (name, p) in [("chat", &chat), ("echo", &echo)] {
        assert!(
            p.count("signaling", "state", "lost") >= 1
                && p.count("signaling", "state", "reconnected") >= 1,
            "{kind:?} {name} must notice the signaling drop and rejoin"
        );
    }
}

#[test]
fn relayed_session_outlives_a_20s_credential_ttl_only_with_renewal() {
    if require_root("relayed_session_outlives_a_20s_credential_ttl_only_with_renewal") {
        outlives_a_20s_credential_ttl_only_with_renewal(Kind::Rust);
    }
}

#[test]
fn python_relayed_session_outlives_a_20s_credential_ttl_only_with_renewal() {
    if require_root("python_relayed_session_outlives_a_20s_credential_ttl_only_with_renewal") {
        outlives_a_20s_credential_ttl_only_with_renewal(Kind::Python);
    }
}

#[test]
fn peers_recover_when_signaling_and_its_relay_restart() {
    if require_root("peers_recover_when_signaling_and_its_relay_restart") {
        recovers_when_signaling_and_its_relay_restart(Kind::Rust);
    }
}

#[test]
fn python_peers_recover_when_signaling_and_its_relay_restart() {
    if require_root("python_peers_recover_when_signaling_and_its_relay_restart") {
        recovers_when_signaling_and_its_relay_restart(Kind::Python);
    }
}
