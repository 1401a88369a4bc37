//! The browser client's channel open time beside the demo page it replaced, in the NAT lab: a
//! natkit-peer `--echo` (joined and probed) at one site, headless Chromium at the other opens
//! the page, and the page says when its data channel opened (`performance.now()`, from the
//! start of the page's load, so Chromium's own start-up is left out). Alternating, fifteen runs
//! each, relayed (both behind symmetric NATs) and direct (natkit-peer on the open internet, the
//! browser behind a symmetric NAT).
//!
//! - now: natkit-signal's page on `/natkit.js` (it probes its NAT and exchanges summaries first);
//! - before: the page as it was before natkit.js (from git, commit 824201b: its inline WebRTC
//!   code, no probe), served from the lab's server on port 8081, its WebSocket pointed at
//!   natkit-signal, with the same measurement added.
//!
//! As root: `cargo build --release --bins && cargo bench -p natkit-peer --bench lab_browser`

use std::time::Duration;

use natkit_lab::{require_root, Lab, Nat, SERVER_IP};
use natkit_testkit::events::EventProcess;
use natkit_testkit::ChromiumPage;

const PEER: &str = env!("CARGO_BIN_EXE_natkit-peer");
const RUNS: usize = 15;
/// The last commit whose demo page had its own WebRTC code (git history holds the baseline).
const BEFORE_COMMIT: &str = "824201b";

/// ms from the page's start to its open channel, with an echo peer at site 0 already probed
/// (`None`, said, when it did not open).
fn open_ms(lab: &Lab, url: &str, page_url: &str, room: &str) -> Option<u64> {
    let echo = EventProcess::spawn(lab.sites[0].client.cmd(PEER).env("RUST_LOG", "off").args([
        "--signal",
        url,
        "--room",
        room,
        "--json",
        "--timeout",
        "60",
        "--echo",
    ]));
    echo.wait_for("probe", Duration::from_secs(20));
    let page = ChromiumPage::open(
        lab.sites[1].client.cmd(natkit_testkit::chromium()),
        &format!("natkit-bench-browser-{room}"),
        &[],
        &format!("{page_url}?room={room}&send=x"),
        "natkit-page",
    );
    let v = page.report_until(Duration::from_secs(60), |v| v["openMs"].is_u64());
    if !v["times"].is_null() {
        println!("  {room}: {}", v["times"]);
    }
    if v["openMs"].is_null() {
        println!("  {room}: no open channel within 60 s; the page's last report: {v}");
    }
    v["openMs"].as_u64()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    if !require_root("bench lab_browser") {
        return;
    }
    let out = std::process::Command::new("git")
        .args([
            "show",
            &format!("{BEFORE_COMMIT}:crates/signal/web/index.html"),
        ])
        .current_dir(natkit_testkit::repo_file("."))
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "the baseline page needs the repository's history"
    );
    let before = String::from_utf8(out.stdout)
        .expect("utf-8")
        .replace(
            r#"new URL("/v1/ws", location.href)"#,
            &format!(r#"new URL("http://{SERVER_IP}:8080/v1/ws")"#),
        )
        .replace(
            r#"natkit.peerId = m.peer_id;"#,
            r#"natkit.peerId = m.peer_id; natkit.times = { joined: Math.round(performance.now()) };"#,
        )
        .replace(
            r#"natkit.connection = pc.connectionState;"#,
            r#"natkit.connection = pc.connectionState; if (pc.connectionState === "connected") natkit.times.connected = Math.round(performance.now());"#,
        )
        .replace(
            r#"setChannel("open");"#,
            r#"setChannel("open"); natkit.openMs = Math.round(performance.now()); report();"#,
        );
    assert!(before.contains("openMs") && before.contains(":8080/v1/ws"));
    let dir = std::env::temp_dir().join(format!("natkit-bench-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("before.html"), before).unwrap();
    for (name, sites) in [
        (
            "relayed, both behind symmetric NATs",
            [Nat::Symmetric, Nat::Symmetric],
        ),
        (
            "direct, open internet + symmetric",
            [Nat::OpenInternet, Nat::Symmetric],
        ),
    ] {
        let mut lab = Lab::with_sites(&sites);
        // Every page load comes from the one NAT'ed browser site and mints a TURN credential
        // with its welcome: thirty loads in a minute or two, the default limit per IP (natkit.js's
        // page minted two before its probe asked `?turn=false`). No limit here.
        let url = lab
            .start_natkit_signal_with("bench", &[("NATKIT_SIGNAL_CREDENTIALS_PER_MINUTE", "0")])
            .0;
        lab.spawn(
            lab.server
                .cmd("python3")
                .args(["-m", "http.server", "8081", "--bind", SERVER_IP])
                .arg("--directory")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        std::thread::sleep(Duration::from_millis(500));
        let (mut now, mut then, mut failed) = (Vec::new(), Vec::new(), [0, 0]);
        // natkit.js over the old page, each pair loaded one after the other (the machine's load
        // drifts less within a pair than across the run).
        let mut ratios = Vec::new();
        for run in 0..RUNS {
            let pages = [
                (&mut now, format!("http://{SERVER_IP}:8080/"), "now"),
                (
                    &mut then,
                    format!("http://{SERVER_IP}:8081/before.html"),
                    "before",
                ),
            ];
            let mut pair = [None, None];
            for (i, (times, page, tag)) in pages.into_iter().enumerate() {
                pair[i] = open_ms(&lab, &url, &page, &format!("{tag}-{run}"));
                match pair[i] {
                    Some(ms) => times.push(ms),
                    None => failed[i] += 1,
                }
            }
            if let [Some(n), Some(b)] = pair {
                ratios.push(n as f64 / b as f64);
            }
        }
        println!(
            "channel open, {name}: natkit.js page {now:?} ms, page before natkit.js {then:?} ms"
        );
        if failed != [0, 0] {
            println!(
                "  did not open (left out of the medians): natkit.js page {}, before {}",
                failed[0], failed[1]
            );
        }
        let (n, b) = (median(now), median(then));
        println!(
            "  medians: natkit.js {n} ms, before {b} ms: {:.2}x (target: at most 1.1x)",
            n as f64 / b as f64
        );
        ratios.sort_by(f64::total_cmp);
        println!(
            "  paired: the median of natkit.js / before within each run: {:.2}x",
            ratios[ratios.len() / 2]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
