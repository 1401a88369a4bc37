//! natkit-peer over IPv6 in the NAT lab, with natkit-signal and its relay dual-stack on the lab's
//! internet (203.0.113.1 and 2001:db8::1): an IPv6-only site and an IPv4-only site meet through
//! the relay (they share no family: rule `no-common-family`), and two dual-stack sites behind
//! stateful IPv6 firewalls connect directly over IPv6. Needs root (fails under CI without it).

use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat};
use natkit_testkit::events::{json_lines, EventProcess};
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");

fn find<'a>(evs: &'a [Value], name: &str) -> Option<&'a Value> {
    evs.iter().find(|e| e["event"] == name)
}

/// What one side saw: its policy's rule, its selected local candidate type, the families its
/// summary named, and whether the sender got its echo.
#[derive(Debug)]
struct Side {
    rule: String,
    local: String,
    families: Value,
}

fn side(evs: &[Value]) -> Side {
    let policy = find(evs, "policy").cloned().unwrap_or(Value::Null);
    Side {
        rule: policy["rule"].as_str().unwrap_or("no policy").to_owned(),
        local: find(evs, "connected")
            .and_then(|c| c["local_candidate_type"].as_str())
            .unwrap_or("not connected")
            .to_owned(),
        families: policy["local_nat"]["families"].clone(),
    }
}

/// `natkit-peer --echo` at site `a` (signaling at `url_a`), `--send hello` at site `b`
/// (`url_b`); both `--relay auto`. Returns both sides' events and whether the sender succeeded.
fn run_pair(
    lab: &mut Lab,
    a: usize,
    url_a: &str,
    b: usize,
    url_b: &str,
) -> (Vec<Value>, Vec<Value>, bool) {
    let room = lab.id().to_owned();
    let mut echo = EventProcess::spawn(
        lab.sites[a]
            .client
            .cmd(PEER)
            .env("RUST_LOG", "off")
            .args(["--signal", url_a, "--room", &room, "--json", "--echo"])
            .args(["--timeout", "40"]),
    );
    echo.wait_for("probe", Duration::from_secs(15));
    let log = std::env::var("NATKIT_LAB_PEER_LOG").unwrap_or_else(|_| "off".into());
    let out = lab.sites[b]
        .client
        .cmd(PEER)
        .env("RUST_LOG", &log)
        .args([
            "--signal", url_b, "--room", &room, "--json", "--send", "hello",
        ])
        .args(["--timeout", "35"])
        .output()
        .unwrap();
    echo.process().kill();
    if log != "off" {
        std::fs::write(format!("/tmp/natkit-lab-peer-{b}.log"), &out.stderr).unwrap();
    }
    let echo: Vec<Value> = echo.events().into_iter().map(|(_, e)| e).collect();
    let sender = json_lines(&out.stdout);
    let delivered = out.status.success()
        && find(&sender, "message").map(|m| m["data"].clone()) == Some(Value::from("hello"));
    (echo, sender, delivered)
}

#[test]
fn an_ipv6_only_peer_and_an_ipv4_only_peer_meet_through_the_dual_stack_relay() {
    if !require_root("an_ipv6_only_peer_and_an_ipv4_only_peer_meet_through_the_dual_stack_relay") {
        return;
    }
    let mut lab = Lab::new();
    let six = lab.add_site(Nat::Ipv6Only);
    let four = lab.add_site(Nat::Ipv4Only);
    let (ws4, ws6) = lab.start_natkit_signal_dual("lab");
    // Both roles: the IPv6-only side echoes, then sends.
    for (a, url_a, b, url_b) in [(four, &ws4, six, &ws6), (six, &ws6, four, &ws4)] {
        let (echo, sender, delivered) = run_pair(&mut lab, a, url_a, b, url_b);
        assert!(delivered, "echo {echo:?}\nsender {sender:?}");
        for (evs, nat) in [(&echo, lab.sites[a].nat), (&sender, lab.sites[b].nat)] {
            let s = side(evs);
            let family = if nat == Nat::Ipv6Only { "ipv6" } else { "ipv4" };
            assert_eq!(s.families, serde_json::json!([family]), "{s:?} {evs:?}");
            assert_eq!(
                (s.rule.as_str(), s.local.as_str()),
                ("no-common-family", "relay"),
                "{evs:?}"
            );
        }
        // The IPv6-only side probed over IPv6.
        let six_events = if a == six { &echo } else { &sender };
        assert_eq!(
            find(six_events, "probe").unwrap()["family"],
            "ipv6",
            "{six_events:?}"
        );
    }
}

#[test]
fn dual_stack_peers_behind_ipv6_firewalls_connect_directly_over_ipv6() {
    if !require_root("dual_stack_peers_behind_ipv6_firewalls_connect_directly_over_ipv6") {
        return;
    }
    let mut lab = Lab::new();
    let a = lab.add_site(Nat::Ipv6Firewall);
    let b = lab.add_site(Nat::Ipv6Firewall);
    // No IPv4 path between the sites: a direct connection can only be IPv6.
    lab.block_ipv4_udp_between_sites();
    let (ws4, ws6) = lab.start_natkit_signal_dual("lab");
    let (echo, sender, delivered) = run_pair(&mut lab, a, &ws6, b, &ws4);
    assert!(delivered, "echo {echo:?}\nsender {sender:?}");
    for evs in [&echo, &sender] {
        let s = side(evs);
        assert_eq!(s.families, serde_json::json!(["ipv4", "ipv6"]), "{s:?}");
        assert_eq!(s.rule, "direct-possible", "{evs:?}");
        assert_eq!(s.local, "host", "a routed IPv6 address, directly: {evs:?}");
    }
}

fn has_message(v: &Value, text: &str) -> bool {
    v["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == text))
}

/// Headless Chromium on the IPv6-only site (the demo page on `/natkit.js`, loaded over IPv6)
/// and natkit-peer on the IPv4-only site, both roles: the page's NAT summary names IPv6 (it saw
/// the relay over IPv6 only), both sides relay by the no-common-family rule, and the messages
/// come back.
#[test]
fn chromium_on_an_ipv6_only_network_reaches_an_ipv4_only_natkit_peer() {
    if !require_root("chromium_on_an_ipv6_only_network_reaches_an_ipv4_only_natkit_peer") {
        return;
    }
    let mut lab = Lab::new();
    let four = lab.add_site(Nat::Ipv4Only);
    let six = lab.add_site(Nat::Ipv6Only);
    let (ws4, _) = lab.start_natkit_signal_dual("lab");
    let page = |lab: &Lab, room: &str, query: &str| {
        natkit_testkit::ChromiumPage::open(
            lab.sites[six].client.cmd(natkit_testkit::chromium()),
            &format!("natkit-lab-v6-{}-{room}", lab.id()),
            &[],
            &format!(
                "http://[{}]:8080/?room={room}{query}",
                natkit_lab::SERVER_IP6
            ),
            "natkit-page",
        )
    };
    let peer = |lab: &Lab, room: &str, args: &[&str]| {
        EventProcess::spawn(
            lab.sites[four]
                .client
                .cmd(PEER)
                .env("RUST_LOG", "off")
                .args([
                    "--signal",
                    &ws4,
                    "--room",
                    room,
                    "--json",
                    "--timeout",
                    "60",
                ])
                .args(args),
        )
    };
    let decided = |role: &str, report: &Value, policy: &Value| {
        assert_eq!(
            report["nat"]["families"],
            serde_json::json!(["ipv6"]),
            "{role}: {report}"
        );
        assert_eq!(
            report["policy"]["rule"], "no-common-family",
            "{role}: {report}"
        );
        assert_eq!(policy["rule"], "no-common-family", "{role}: {policy}");
        assert_eq!(report["selected"]["local"], "relay", "{role}: {report}");
    };
    // natkit-peer first, echoing; the page joins, offers and sends.
    let room = format!("{}-page-offers", lab.id());
    let echo = peer(&lab, &room, &["--echo"]);
    echo.wait_for("probe", Duration::from_secs(20));
    let p = page(&lab, &room, "&send=hello%20over%20ipv6");
    let report = p.report_until(Duration::from_secs(45), |v| {
        has_message(v, "hello over ipv6") && !v["selected"].is_null()
    });
    assert!(has_message(&report, "hello over ipv6"), "{report}");
    decided(
        "page offers",
        &report,
        &echo.wait_for("policy", Duration::from_secs(1)),
    );
    drop(p);

    // The page first, echoing; natkit-peer joins, offers and sends.
    let room = format!("{}-peer-offers", lab.id());
    let p = page(&lab, &room, "&echo=1");
    let first = p.report_until(Duration::from_secs(45), |v| v["nat"].is_object());
    assert!(first["nat"].is_object(), "the page probed: {first}");
    let sender = peer(&lab, &room, &["--send", "hello from ipv4"]);
    let reply = sender.wait_for("message", Duration::from_secs(45));
    assert_eq!(reply["data"], "hello from ipv4");
    let report = p.report_until(Duration::from_secs(45), |v| {
        has_message(v, "hello from ipv4") && !v["selected"].is_null()
    });
    decided(
        "natkit-peer offers",
        &report,
        &sender.wait_for("policy", Duration::from_secs(1)),
    );
}

/// Two dual-stack sites whose IPv4 is behind symmetric NATs and whose IPv6 is routed behind
/// stateful firewalls (the mobile case): each probes both families, IPv4 alone would need a
/// relay, and by the IPv6 summaries the pair connects directly over IPv6 (`direct-ipv6`).
#[test]
fn symmetric_ipv4_and_open_ipv6_connect_directly_over_ipv6() {
    if !require_root("symmetric_ipv4_and_open_ipv6_connect_directly_over_ipv6") {
        return;
    }
    let mut lab = Lab::new();
    let a = lab.add_site(Nat::SymmetricIpv6Firewall);
    let b = lab.add_site(Nat::SymmetricIpv6Firewall);
    let (ws4, ws6) = lab.start_natkit_signal_dual("lab");
    let (echo, sender, delivered) = run_pair(&mut lab, a, &ws4, b, &ws6);
    assert!(delivered, "echo {echo:?}\nsender {sender:?}");
    for evs in [&echo, &sender] {
        let families: Vec<Value> = evs
            .iter()
            .filter(|e| e["event"] == "probe")
            .map(|e| e["family"].clone())
            .collect();
        assert_eq!(families.len(), 2, "one probe per family: {evs:?}");
        let s = side(evs);
        let policy = find(evs, "policy").unwrap();
        assert_eq!(
            policy["local_nat"]["mapping"],
            serde_json::json!(["address-and-port-dependent"]),
            "{policy}"
        );
        assert_eq!(
            policy["local_nat"]["ipv6"]["mapping"],
            serde_json::json!(["endpoint-independent"]),
            "{policy}"
        );
        assert_eq!(s.rule, "direct-ipv6", "{evs:?}");
        assert_eq!(s.local, "host", "a routed IPv6 address, directly: {evs:?}");
    }
}
