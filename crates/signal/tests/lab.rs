//! The "check my network" page (`/check`) in headless Chromium (Debian's `chromium`), run inside
//! three NAT lab sites against a one-IP natkit-signal: behind a symmetric NAT it says TURN is
//! needed, behind a cone NAT that a direct connection is possible, where UDP is dropped that UDP
//! is blocked. The page logs its result to the console, which Chromium writes to its standard
//! error. Needs root (fails under CI without it).

use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat, SERVER_IP};
use natkit_testkit::ChromiumPage;
use serde_json::Value;

/// Opens `url` in a headless Chromium inside `site`'s client namespace and returns what the page
/// logged as `natkit-check {...}`.
fn check_from(lab: &Lab, site: usize, url: &str) -> Value {
    let page = ChromiumPage::open(
        lab.sites[site].client.cmd(natkit_testkit::chromium()),
        &format!("natkit-check-{}-{site}", lab.id()),
        &[],
        url,
        "natkit-check",
    );
    let line = page
        .reports
        .recv_timeout(Duration::from_secs(40))
        .unwrap_or_else(|_| {
            panic!(
                "the check page reported nothing from {}",
                lab.sites[site].nat.name()
            )
        });
    drop(page);
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn the_check_page_tells_three_networks_apart() {
    if !require_root("the_check_page_tells_three_networks_apart") {
        return;
    }
    let mut lab = Lab::new();
    let sites = [
        (lab.add_site(Nat::Symmetric), "turn-needed"),
        (lab.add_site(Nat::PortRestrictedCone), "direct"),
        (lab.add_site(Nat::UdpBlocked), "udp-blocked"),
    ];
    lab.start_natkit_signal_one_ip("check");
    let url = format!("http://{SERVER_IP}:8080/check");
    for (site, want) in sites {
        let r = check_from(&lab, site, &url);
        let nat = lab.sites[site].nat.name();
        eprintln!("check page behind {nat}: {r}");
        assert_eq!(r["verdict"], want, "{nat}: {r}");
        assert!(r["text"].as_str().is_some_and(|t| t.len() > 40), "{r}");
        match want {
            "turn-needed" => {
                assert!(r["mappings"].as_array().unwrap().len() >= 2, "{r}");
                assert!(
                    !r["relayed"].as_array().unwrap().is_empty(),
                    "the relay works: {r}"
                );
            }
            "direct" => assert_eq!(r["mappings"].as_array().unwrap().len(), 1, "{r}"),
            // The embedded relay serves TURN over TCP: the UDP-blocked site still gets out.
            _ => {
                assert!(!r["relayed"].as_array().unwrap().is_empty(), "{r}");
                assert_eq!(r["relayProtocols"], serde_json::json!(["tcp"]), "{r}");
            }
        }
    }
}
