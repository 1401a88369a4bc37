//! Two sites behind real Linux NATs and natkit-signal (with its relay on 203.0.113.1 and .2) in the
//! server namespace: `natkit-peer --echo` at one site, `natkit-peer --send` at the other, and the
//! selected candidate pair must be the expected path. Needs root (fails under CI without it).

use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat};
use natkit_testkit::events::EventProcess;
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");

struct Run {
    sender_ok: bool,
    sender: Vec<Value>,
    echo: Vec<Value>,
}

fn events(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn find<'a>(evs: &'a [Value], name: &str) -> Option<&'a Value> {
    evs.iter().find(|e| e["event"] == name)
}

fn local_type(evs: &[Value]) -> String {
    candidate_type(evs, "local_candidate_type")
}

fn candidate_type(evs: &[Value], which: &str) -> String {
    find(evs, "connected")
        .map(|c| c[which].as_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "not connected".into())
}

/// One relay hop: the echo peer (the answerer) relays, the sender (the offerer) reaches the
/// echo's relayed address from its own, with every candidate allowed.
fn assert_one_relay_hop(r: &Run, what: &str) {
    let policy = |evs: &[Value]| find(evs, "policy").unwrap()["ice_transport_policy"].clone();
    assert_eq!(
        (policy(&r.echo), policy(&r.sender)),
        (Value::from("relay"), Value::from("all")),
        "{what}: {:?} {:?}",
        r.echo,
        r.sender
    );
    assert_eq!(local_type(&r.echo), "relay", "{what}: {:?}", r.echo);
    assert_eq!(
        candidate_type(&r.sender, "remote_candidate_type"),
        "relay",
        "{what}: {:?}",
        r.sender
    );
    assert_ne!(
        local_type(&r.sender),
        "relay",
        "{what}: two relay hops where one works: {:?}",
        r.sender
    );
}

/// Echo peer at a site behind `a`, sender at a site behind `b`, natkit-signal with a second IP.
fn pair(a: Nat, b: Nat, relay_a: &str, relay_b: &str, timeout: u64) -> Run {
    pair_on(true, a, b, relay_a, relay_b, timeout)
}

/// [`pair`] on natkit-signal with one IP (`two_ips` false), as most deployments are.
fn pair_on(two_ips: bool, a: Nat, b: Nat, relay_a: &str, relay_b: &str, timeout: u64) -> Run {
    let mut lab = Lab::new();
    let sa = lab.add_site(a);
    let sb = lab.add_site(b);
    let url = if two_ips {
        lab.start_natkit_signal("lab")
    } else {
        lab.start_natkit_signal_one_ip("lab")
    };
    let room = lab.id().to_owned();
    let mut echo = EventProcess::spawn(
        lab.sites[sa]
            .client
            .cmd(PEER)
            .env("RUST_LOG", "off")
            .args([
                "--signal", &url, "--room", &room, "--json", "--echo", "--relay", relay_a,
            ])
            .args(["--timeout", &(timeout + 5).to_string()]),
    );
    // The echo peer joins (and probes) first, so the sender offers and their NAT summaries meet.
    let ready = if relay_a == "auto" { "probe" } else { "joined" };
    echo.wait_for(ready, Duration::from_secs(15));
    let log = std::env::var("NATKIT_LAB_PEER_LOG").unwrap_or_else(|_| "off".into());
    let out = lab.sites[sb]
        .client
        .cmd(PEER)
        .env("RUST_LOG", &log)
        .args([
            "--signal", &url, "--room", &room, "--json", "--send", "hello", "--relay", relay_b,
        ])
        .args(["--timeout", &timeout.to_string()])
        .output()
        .unwrap();
    echo.process().kill();
    if log != "off" {
        std::fs::write("/tmp/natkit-lab-peer.log", &out.stderr).unwrap();
    }
    Run {
        sender_ok: out.status.success(),
        sender: events(&out.stdout),
        echo: echo.events().into_iter().map(|(_, e)| e).collect(),
    }
}

fn assert_delivered(r: &Run, what: &str) {
    assert!(r.sender_ok, "{what}: sender failed: {:?}", r.sender);
    assert_eq!(
        find(&r.sender, "message").map(|m| m["data"].clone()),
        Some(Value::from("hello")),
        "{what}: {:?}",
        r.sender
    );
}

#[test]
fn symmetric_and_symmetric_auto_relayed_through_the_answerer_only() {
    if !require_root("symmetric_and_symmetric_auto_relayed_through_the_answerer_only") {
        return;
    }
    let r = pair(Nat::Symmetric, Nat::Symmetric, "auto", "auto", 30);
    assert_delivered(&r, "symmetric+symmetric");
    assert_one_relay_hop(&r, "symmetric+symmetric");
}

#[test]
fn port_restricted_pair_auto_connects_directly() {
    if !require_root("port_restricted_pair_auto_connects_directly") {
        return;
    }
    let r = pair(
        Nat::PortRestrictedCone,
        Nat::PortRestrictedCone,
        "auto",
        "auto",
        30,
    );
    assert_delivered(&r, "prc+prc");
    assert_eq!(
        find(&r.sender, "policy").unwrap()["ice_transport_policy"],
        "all"
    );
    assert_ne!(local_type(&r.sender), "relay", "{:?}", r.sender);
    assert_ne!(local_type(&r.echo), "relay", "{:?}", r.echo);
}

#[test]
fn symmetric_and_port_restricted_auto_relay_through_the_answerer() {
    if !require_root("symmetric_and_port_restricted_auto_relay_through_the_answerer") {
        return;
    }
    // Both ways round: the symmetric side offers, then answers.
    for (a, b, what) in [
        (
            Nat::PortRestrictedCone,
            Nat::Symmetric,
            "prc echo + symmetric sender",
        ),
        (
            Nat::Symmetric,
            Nat::PortRestrictedCone,
            "symmetric echo + prc sender",
        ),
    ] {
        let r = pair(a, b, "auto", "auto", 30);
        assert_delivered(&r, what);
        assert_one_relay_hop(&r, what);
    }
}

#[test]
fn open_internet_and_symmetric_auto_connect() {
    if !require_root("open_internet_and_symmetric_auto_connect") {
        return;
    }
    let r = pair(Nat::OpenInternet, Nat::Symmetric, "auto", "auto", 30);
    assert_delivered(&r, "open+symmetric");
}

#[test]
fn relay_always_connects_through_relay() {
    if !require_root("relay_always_connects_through_relay") {
        return;
    }
    let r = pair(
        Nat::PortRestrictedCone,
        Nat::FullCone,
        "always",
        "always",
        30,
    );
    assert_delivered(&r, "always");
    assert_eq!(local_type(&r.sender), "relay");
    assert_eq!(local_type(&r.echo), "relay");
}

#[test]
fn symmetric_pair_with_relay_never_fails_clearly() {
    if !require_root("symmetric_pair_with_relay_never_fails_clearly") {
        return;
    }
    let r = pair(Nat::Symmetric, Nat::Symmetric, "never", "never", 12);
    assert!(
        !r.sender_ok,
        "two symmetric NATs must not connect without TURN: {:?}",
        r.sender
    );
    let failed = find(&r.sender, "failed").expect("a failed event");
    assert_eq!(failed["stage"], "ice", "{failed}");
}

/// The selected pair's local candidate type on both sides, and each side's policy rule.
fn path(r: &Run) -> ((String, String), (String, String)) {
    let rule = |evs: &[Value]| {
        find(evs, "policy")
            .map(|p| p["rule"].as_str().unwrap_or("?").to_owned())
            .unwrap_or_else(|| "no policy".into())
    };
    (
        (local_type(&r.echo), local_type(&r.sender)),
        (rule(&r.echo), rule(&r.sender)),
    )
}

/// One-IP deployment, `auto` on both sides: the pair decides its path from both NAT summaries.
/// A symmetric NAT facing the open internet or endpoint-independent filtering connects directly;
/// facing another symmetric NAT or port-restricted filtering, it goes through the answerer's
/// relay.
#[test]
fn one_ip_pairs_choose_their_path_from_both_summaries() {
    if !require_root("one_ip_pairs_choose_their_path_from_both_summaries") {
        return;
    }
    let cases = [
        (Nat::OpenInternet, Nat::Symmetric, false, "direct-possible"),
        (Nat::FullCone, Nat::Symmetric, false, "direct-possible"),
        (Nat::Symmetric, Nat::Symmetric, true, "symmetric-pair"),
        (
            Nat::PortRestrictedCone,
            Nat::Symmetric,
            true,
            "symmetric-restricted",
        ),
    ];
    for (a, b, relayed, rule) in cases {
        let what = format!("one IP, {} + {}", a.name(), b.name());
        let r = pair_on(false, a, b, "auto", "auto", 30);
        assert_delivered(&r, &what);
        let ((echo_type, sender_type), (echo_rule, sender_rule)) = path(&r);
        eprintln!("{what}: echo {echo_type} ({echo_rule}), sender {sender_type} ({sender_rule})");
        assert_eq!(
            (echo_rule.as_str(), sender_rule.as_str()),
            (rule, rule),
            "{what}: {:?} {:?}",
            r.echo,
            r.sender
        );
        if relayed {
            assert_one_relay_hop(&r, &what);
        } else {
            for (side, t) in [("echo", &echo_type), ("sender", &sender_type)] {
                assert_ne!(t, "relay", "{what}: {side}: {:?} {:?}", r.echo, r.sender);
            }
        }
        // Both summaries travelled: each side's policy names the other's.
        for evs in [&r.echo, &r.sender] {
            let p = find(evs, "policy").unwrap();
            assert!(p["remote_nat"].is_object(), "{what}: {p}");
        }
    }
}
