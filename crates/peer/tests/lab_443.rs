//! The strictest networks: a lab site whose firewall lets out only TCP to port 443, and a site
//! behind a symmetric NAT. natkit-signal serves HTTPS, WSS and TURN over TLS on 443 (one port,
//! a certificate for 203.0.113.1 from a CA made here). natkit-peer at the 443-only site joins
//! over `wss://` and reaches its symmetric partner through `turns:` on 443; headless Chromium
//! there loads the HTTPS page and does the same. Needs root (fails under CI without it).

use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat, SERVER_IP};
use natkit_testkit::events::EventProcess;
use natkit_testkit::events::{find_event as find, json_lines as events};
use natkit_testkit::tls::{TempDir, TestCa};
use natkit_testkit::{page_has_message, ChromiumPage};

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const WALLED: usize = 0;
const SYMMETRIC: usize = 1;

struct Lab443 {
    lab: Lab,
    wss: String,
    ca: std::path::PathBuf,
    spki: String,
    _dir: TempDir,
}

fn lab_443() -> Lab443 {
    let dir = TempDir::new("lab-443");
    let authority = TestCa::new("natkit lab CA");
    let files = authority.issue(&[SERVER_IP], dir.path(), "signal");
    let ca = authority.write_ca(dir.path(), "ca.pem");
    let mut lab = Lab::with_sites(&[Nat::Only443, Nat::Symmetric]);
    let wss = lab.start_natkit_signal_443("lab-443", &files.cert, &files.key);
    Lab443 {
        lab,
        wss,
        ca,
        spki: files.spki_sha256,
        _dir: dir,
    }
}

impl Lab443 {
    fn peer(&self, site: usize, signal: &str, args: &[&str]) -> std::process::Command {
        let mut c = self.lab.sites[site].client.cmd(PEER);
        c.env("RUST_LOG", "off")
            .args(["--signal", signal, "--json", "--relay", "auto"])
            .args(["--tls-ca", self.ca.to_str().unwrap()])
            .args(args);
        c
    }

    /// natkit-peer echoing behind the symmetric NAT (plain ws:// on 8080: UDP works there).
    fn echo(&self, room: &str) -> EventProcess {
        let echo = EventProcess::spawn(&mut self.peer(
            SYMMETRIC,
            &format!("ws://{SERVER_IP}:8080"),
            &["--room", room, "--echo", "--timeout", "60"],
        ));
        echo.wait_for("probe", Duration::from_secs(20));
        echo
    }
}

#[test]
fn natkit_peer_behind_a_443_only_firewall_reaches_its_partner_over_wss_and_turns() {
    if !require_root(
        "natkit_peer_behind_a_443_only_firewall_reaches_its_partner_over_wss_and_turns",
    ) {
        return;
    }
    let l = lab_443();
    // Plain signaling is out of reach from the walled site: only 443 gets out.
    let out = l
        .peer(
            WALLED,
            &format!("ws://{SERVER_IP}:8080"),
            &["--room", "x", "--send", "x", "--timeout", "5"],
        )
        .output()
        .unwrap();
    assert!(!out.status.success(), "ws:// on 8080 is blocked there");

    let mut echo = l.echo("walled");
    let out = l
        .peer(
            WALLED,
            &l.wss,
            &["--room", "walled", "--send", "over 443", "--timeout", "40"],
        )
        .output()
        .unwrap();
    let evs = events(&out.stdout);
    echo.process().kill();
    assert!(out.status.success(), "{evs:?}");
    assert_eq!(find(&evs, "message")["data"], "over 443");
    let connected = find(&evs, "connected");
    assert_eq!(connected["local_candidate_type"], "relay", "{connected}");
    assert_eq!(connected["relay_protocol"], "tls", "{connected}");
}

#[test]
fn chromium_behind_a_443_only_firewall_loads_the_https_page_and_connects() {
    if !require_root("chromium_behind_a_443_only_firewall_loads_the_https_page_and_connects") {
        return;
    }
    let l = lab_443();
    let mut echo = l.echo("walled-page");
    let page = ChromiumPage::open(
        l.lab.sites[WALLED].client.cmd(natkit_testkit::chromium()),
        &format!("natkit-page-443-{}", l.lab.id()),
        &[format!("--ignore-certificate-errors-spki-list={}", l.spki)],
        &format!("https://{SERVER_IP}/?room=walled-page&send=hello%20from%20443"),
        "natkit-page",
    );
    let report = page.report_echo("hello from 443", Duration::from_secs(45));
    echo.process().kill();
    assert!(
        page_has_message(&report, "hello from 443"),
        "the echo came back to Chromium over HTTPS, WSS and TURN over TLS: {report}"
    );
    assert_eq!(report["selected"]["local"], "relay", "{report}");
    assert_eq!(report["selected"]["relayProtocol"], "tls", "{report}");
    assert!(
        report["nat"]["udp_blocked"] == true,
        "the page saw UDP blocked: {report}"
    );
}
