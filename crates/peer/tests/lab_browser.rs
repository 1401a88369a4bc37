//! The browser client (`/natkit.js`, through natkit-signal's demo page in headless Chromium)
//! facing natkit-peer in the NAT lab, in both roles: behind two symmetric NATs the pair goes
//! through the answerer's relay, with the browser behind a symmetric NAT and natkit-peer on the
//! open internet it connects directly. The browser forms and sends its NAT summary, so both sides
//! decide by the pair rule (the UDP-blocked site with `turns:` is in lab_streams.rs). Needs root
//! (fails under CI without it).

use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat, SERVER_IP};
use natkit_testkit::events::EventProcess;
use natkit_testkit::ChromiumPage;
use serde_json::Value;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const PEER_SITE: usize = 0;
const BROWSER_SITE: usize = 1;

fn natkit_peer(lab: &Lab, url: &str, room: &str, args: &[&str]) -> EventProcess {
    EventProcess::spawn(
        lab.sites[PEER_SITE]
            .client
            .cmd(PEER)
            .env("RUST_LOG", "off")
            .args(["--signal", url, "--room", room, "--json", "--timeout", "60"])
            .args(args),
    )
}

/// The demo page in Chromium at the browser site; its last report once `done` accepts one.
fn page(
    lab: &Lab,
    room: &str,
    query: &str,
    done: impl Fn(&Value) -> bool,
) -> (ChromiumPage, Value) {
    let url = format!("http://{SERVER_IP}:8080/?room={room}{query}");
    let page = ChromiumPage::open(
        lab.sites[BROWSER_SITE]
            .client
            .cmd(natkit_testkit::chromium()),
        &format!("natkit-lab-browser-{}-{room}", lab.id()),
        &[],
        &url,
        "natkit-page",
    );
    let last = page.report_until(Duration::from_secs(45), done);
    (page, last)
}

fn has_message(v: &Value, text: &str) -> bool {
    v["messages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == text))
}

/// Both roles on `lab` (natkit-peer at site 0, Chromium at site 1): both sides decide `rule`,
/// and the page's selected pair once `settled` accepts it (ICE may select a relayed pair first
/// and a direct one a moment later; the page reports each).
fn both_roles(
    lab: &Lab,
    url: &str,
    rule: &str,
    settled: impl Fn(&str, &Value) -> bool,
    check: impl Fn(&str, &Value, &Value),
) {
    // The browser (always behind the symmetric NAT) saw its NAT map the relay's two ports apart,
    // sent that summary, and both sides decided the same row with it.
    let decided = |role: &str, page: &Value, policy: &Value| {
        assert_eq!(
            page["nat"]["mapping"],
            serde_json::json!(["address-dependent", "address-and-port-dependent"]),
            "{role}: {page}"
        );
        assert_eq!(page["policy"]["rule"], rule, "{role}: {page}");
        assert_eq!(policy["rule"], rule, "{role}: {policy}");
        assert_eq!(policy["remote_nat"], page["nat"], "{role}: {policy}");
        check(role, page, policy);
    };
    // natkit-peer first, echoing; the page joins, offers and sends.
    let room = format!("{}-page-offers", lab.id());
    let echo = natkit_peer(lab, url, &room, &["--echo"]);
    echo.wait_for("probe", Duration::from_secs(20));
    let (_page, report) = page(lab, &room, "&send=hello%20from%20chromium", |v| {
        has_message(v, "hello from chromium") && settled("page offers", v)
    });
    assert!(
        has_message(&report, "hello from chromium"),
        "the echo came back: {report}"
    );
    let policy = echo.wait_for("policy", Duration::from_secs(1));
    decided("page offers", &report, &policy);

    // The page first, echoing; natkit-peer joins, offers, sends and waits for the reply.
    let room = format!("{}-peer-offers", lab.id());
    let (page_running, first) = page(lab, &room, "&echo=1", |v| v["nat"].is_object());
    assert!(first["nat"].is_object(), "the page probed: {first}");
    let sender = natkit_peer(lab, url, &room, &["--send", "hello from natkit-peer"]);
    let reply = sender.wait_for("message", Duration::from_secs(45));
    assert_eq!(reply["data"], "hello from natkit-peer");
    let policy = sender.wait_for("policy", Duration::from_secs(1));
    let report = page_running.report_until(Duration::from_secs(45), |v| {
        settled("natkit-peer offers", v) && has_message(v, "hello from natkit-peer")
    });
    decided("natkit-peer offers", &report, &policy);
}

#[test]
fn chromium_and_natkit_peer_behind_symmetric_nats_are_relayed_by_the_answerer() {
    if !require_root("chromium_and_natkit_peer_behind_symmetric_nats_are_relayed_by_the_answerer") {
        return;
    }
    let mut lab = Lab::with_sites(&[Nat::Symmetric, Nat::Symmetric]);
    let url = lab.start_natkit_signal("lab");
    // One relay hop: the answerer is relay-only, the offerer reaches its relayed address.
    let page_answers = |role: &str| role == "natkit-peer offers";
    let relayed = |role: &str, v: &Value| {
        let side = if page_answers(role) {
            "local"
        } else {
            "remote"
        };
        v["selected"][side] == "relay"
    };
    both_roles(
        &lab,
        &url,
        "symmetric-pair",
        relayed,
        |role, page, policy| {
            let answers = page_answers(role);
            assert_eq!(page["policy"]["relayOnly"], answers, "{role}: {page}");
            let peer_policy = if answers { "all" } else { "relay" };
            assert_eq!(
                policy["ice_transport_policy"], peer_policy,
                "{role}: {policy}"
            );
            let (relaying, reaching) = if answers {
                ("local", "remote")
            } else {
                ("remote", "local")
            };
            assert_eq!(page["selected"][relaying], "relay", "{role}: {page}");
            // Mostly the one-hop pair, from the offerer's own address. Under load either side,
            // controlling, may select the relay-to-relay pair that succeeded first (Chromium's
            // relay candidate comes from its pool at once; natkit-peer gives the one-hop pair
            // 100 ms): the rule's fallback working, so it is shown, not failed. natkit-peer pairs
            // are held to one hop in lab.rs.
            eprintln!(
                "{role}: the page selected {} ({})",
                page["selected"],
                if page["selected"][reaching] == "relay" {
                    "two relay hops"
                } else {
                    "one relay hop"
                }
            );
        },
    );
}

#[test]
fn chromium_behind_a_symmetric_nat_and_natkit_peer_on_the_open_internet_connect_directly() {
    if !require_root(
        "chromium_behind_a_symmetric_nat_and_natkit_peer_on_the_open_internet_connect_directly",
    ) {
        return;
    }
    let mut lab = Lab::with_sites(&[Nat::OpenInternet, Nat::Symmetric]);
    let url = lab.start_natkit_signal("lab");
    let direct =
        |v: &Value| v["selected"]["local"] != "relay" && v["selected"]["remote"] != "relay";
    // With Chromium as the controlling agent (it offers), ICE sometimes stays on the relayed pair
    // it selected first although a direct one works (seen about once in six runs under load):
    // there the decision is what is checked; with natkit-peer controlling, the pair is direct.
    let settled =
        |role: &str, v: &Value| !v["selected"].is_null() && (role == "page offers" || direct(v));
    both_roles(
        &lab,
        &url,
        "direct-possible",
        settled,
        |role, page, policy| {
            assert_eq!(policy["ice_transport_policy"], "all", "{role}: {policy}");
            assert_eq!(page["policy"]["relayOnly"], false, "{role}: {page}");
            if role == "natkit-peer offers" {
                assert!(direct(page), "{role}: direct: {page}");
            } else {
                eprintln!("{role}: Chromium selected {}", page["selected"]);
            }
        },
    );
}
