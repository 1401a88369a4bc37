//! The web page at `/` in headless Chromium (Debian's `chromium`): two tabs join a room and
//! exchange data-channel messages through natkit-signal, directly and relay-only through the
//! embedded relay. Chromium is driven over the DevTools protocol; the page exposes what it shows
//! as `window.natkit`.

mod chromium;
#[path = "../common/mod.rs"]
mod common;

use std::process::Stdio;
use std::time::Duration;

use chromium::Browser;
use common::*;
use natkit_signal::config::SignalOptions;
use serde_json::{json, Value};

/// Two tabs in `room`; each sends a greeting when its channel opens. Returns both final states.
async fn two_tabs(s: &Suite, room: &str, extra: &str) -> (Value, Value) {
    let mut b = Browser::launch().await;
    let base = format!("http://{}/?room={room}{extra}", s.http);
    let first = b.open(&format!("{base}&send=hello-from-first")).await;
    // Let the first tab join before the second arrives (the later joiner offers).
    for _ in 0..100 {
        if b.state(&first).await["peerId"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = b.open(&format!("{base}&send=hello-from-second")).await;
    for _ in 0..200 {
        let (x, y) = (b.state(&first).await, b.state(&second).await);
        let got = |v: &Value, m: &str| {
            v["messages"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == m))
        };
        if got(&x, "hello-from-second")
            && got(&y, "hello-from-first")
            && x["selected"].is_object()
            && y["selected"].is_object()
        {
            return (x, y);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "tabs did not exchange messages: first {} second {}",
        b.state(&first).await,
        b.state(&second).await
    );
}

#[tokio::test]
async fn two_chromium_tabs_chat_over_a_data_channel() {
    let s = start(SignalOptions::default(), None).await;
    let (first, second) = two_tabs(&s, "browser-direct", "").await;
    for v in [&first, &second] {
        assert_eq!(v["channel"], "open", "{v}");
        assert_eq!(v["connection"], "connected", "{v}");
    }
    assert!(
        first["gathered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "host"),
        "{first}"
    );
    assert_eq!(
        s.metric("natkit_signal_messages_relayed_total{type=\"offer\"}"),
        1.0
    );
    assert!(s.metric("natkit_signal_messages_relayed_total{type=\"candidate\"}") >= 2.0);
}

#[tokio::test]
async fn two_chromium_tabs_chat_relay_only_through_the_embedded_relay() {
    let s = start(SignalOptions::default(), None).await;
    let (first, second) = two_tabs(&s, "browser-relay", "&relay=1").await;
    // Both ends of the selected pair are relayed addresses of natkit's relay.
    for v in [&first, &second] {
        assert_eq!(v["selected"]["local"], "relay", "{v}");
        assert_eq!(v["selected"]["remote"], "relay", "{v}");
        assert_eq!(v["gathered"], json!(["relay"]), "{v}");
    }
    assert!(s.metric("natkit_relay_allocations_active") >= 2.0);
    assert!(s.metric("natkit_relay_relayed_packets_total{direction=\"client_to_peer\"}") > 0.0);
    assert_eq!(
        s.metric("natkit_relay_peer_refused_total{reason=\"loopback\"}"),
        0.0
    );
}

/// natkit-peer in `room` of `s` with `--json` (logs off, stdout piped, killed on drop) and `args`.
fn natkit_peer(s: &Suite, room: &str, args: &[&str]) -> tokio::process::Command {
    natkit_peer_at(&format!("ws://{}", s.http), room, args)
}

/// [`natkit_peer`] for natkit-signal at `url`.
fn natkit_peer_at(url: &str, room: &str, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(natkit_testkit::workspace_bin("natkit-peer"));
    c.env("RUST_LOG", "off")
        .args(["--signal", url, "--room", room])
        .args(["--json", "--timeout", "40"])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// The JSON events of a finished natkit-peer (within 60 s) and whether it exited 0.
async fn peer_events(child: tokio::process::Child) -> (Vec<Value>, bool) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("natkit-peer finished")
        .unwrap();
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (events, out.status.success())
}

/// Chromium and natkit-peer (webrtc-rs) in one room, relay-only through the embedded relay.
/// `peer_first`: natkit-peer echoes and the page offers; else the page echoes and the peer offers.
async fn chromium_and_natkit_peer(peer_first: bool) {
    let s = start(SignalOptions::default(), None).await;
    let room = if peer_first {
        "interop-page-offers"
    } else {
        "interop-peer-offers"
    };
    let peer = |args: &[&str]| natkit_peer(&s, room, &[&["--relay", "always"], args].concat());
    let mut b = Browser::launch().await;
    let page_url = |extra: &str| format!("http://{}/?room={room}&relay=1{extra}", s.http);
    if peer_first {
        let _echo = peer(&["--echo"]).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let tab = b.open(&page_url("&send=hello-from-chromium")).await;
        for _ in 0..300 {
            let st = b.state(&tab).await;
            if st["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == "hello-from-chromium"))
                && st["selected"].is_object()
            {
                assert_eq!(st["selected"]["local"], "relay", "{st}");
                // The page offered at once (`relay=1` needs no probe): its `policy` listener,
                // attached when `connect` returned, still heard the decision.
                assert_eq!(st["policy"]["rule"], "relay-always", "{st}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no echo from natkit-peer: {}", b.state(&tab).await);
    } else {
        let tab = b.open(&page_url("&echo=1")).await;
        for _ in 0..100 {
            if b.state(&tab).await["peerId"].is_string() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (events, ok) =
            peer_events(peer(&["--send", "hello-from-webrtc-rs"]).spawn().unwrap()).await;
        assert!(ok, "{events:?}\nthe page: {}", b.state(&tab).await);
        let connected = events
            .iter()
            .find(|e| e["event"] == "connected")
            .expect("connected");
        assert_eq!(connected["local_candidate_type"], "relay", "{connected}");
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "message" && e["data"] == "hello-from-webrtc-rs"),
            "{events:?}"
        );
    }
}

#[tokio::test]
async fn chromium_offers_to_natkit_peer_through_the_relay() {
    chromium_and_natkit_peer(true).await;
}

#[tokio::test]
async fn natkit_peer_offers_to_chromium_through_the_relay() {
    chromium_and_natkit_peer(false).await;
}

/// What `script` evaluates to in a page of a fresh server (its `/healthz`; `/natkit.js` is
/// imported from there).
async fn eval_in_a_page(script: &str) -> String {
    let s = start(SignalOptions::default(), None).await;
    let mut b = Browser::launch().await;
    let tab = b.open(&format!("http://{}/healthz", s.http)).await;
    b.eval(&tab, script).await
}

/// `natkit.js`'s `decide`, in Chromium, against every row of the one pair-rule table
/// (crates/peer-core/pair_rule.tsv, the table natkit-peer's and the Python package's tests read).
#[tokio::test]
async fn natkit_js_decides_every_row_of_the_shared_pair_rule_table() {
    let table = include_str!("../../../peer-core/pair_rule.tsv");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert!(rows.len() > 81);
    let script = format!(
        r#"(async () => {{
            const natkit = await import("/natkit.js");
            const full = {{ EI: "endpoint-independent", AD: "address-dependent", APD: "address-and-port-dependent" }};
            const nat = (t) => t === "-" ? null : t === "blocked" ? {{ mapping: [], filtering: [], udp_blocked: true }}
                : (([m, f]) => ({{ mapping: m.split(",").map((b) => full[b]), filtering: f.split(",").map((b) => full[b]), udp_blocked: false }}))(t.split("/"));
            const side = (t) => (([head, v6]) => (([n, fams]) => n === "-" ? null
                : {{ ...nat(n), ...(fams ? {{ families: fams.split(",") }} : {{}}), ...(v6 ? {{ ipv6: nat(v6) }} : {{}}) }})(head.split("@")))(t.split("+"));
            return JSON.stringify({rows}.map(([mode, l, r]) => {{
                const [o, a] = ["offerer", "answerer"].map((role) => natkit.decide(mode, side(l), side(r), role));
                const policy = o.relayOnly ? (a.relayOnly ? "relay" : "offerer!") : (a.relayOnly ? "answerer" : "all");
                // Without a role: the answerer's decision.
                const same = JSON.stringify(natkit.decide(mode, side(l), side(r))) === JSON.stringify(a);
                return [policy, o.rule === a.rule ? a.rule : `${{o.rule}}/${{a.rule}}`, o.reason.length > 0 && a.reason.length > 0 && same];
            }}));
        }})()"#,
        rows = serde_json::to_string(&rows).unwrap()
    );
    let got: Vec<(String, String, bool)> =
        serde_json::from_str(&eval_in_a_page(&script).await).unwrap();
    assert_eq!(got.len(), rows.len());
    for (row, (policy, rule, reason)) in rows.iter().zip(got) {
        assert_eq!(
            (policy.as_str(), rule.as_str()),
            (row[3], row[4]),
            "{row:?}"
        );
        assert!(reason, "{row:?}");
    }
}

/// The demo page's probe takes the `/v1/check-servers` answer the page's headers asked for
/// early: one request, the preload's (a probe that missed it would add a `fetch` entry). With
/// the probe off (`relay=1`) nothing is asked for at all.
#[tokio::test]
async fn the_pages_probe_takes_the_check_servers_preload() {
    let s = start(SignalOptions::default(), None).await;
    let mut b = Browser::launch().await;
    let asked = r#"JSON.stringify(performance.getEntriesByType("resource")
        .filter((e) => e.name.includes("/v1/check-servers")).map((e) => e.initiatorType))"#;
    for (query, ready, want) in [("", "nat", r#"["link"]"#), ("&relay=1", "peerId", "[]")] {
        let tab = b
            .open(&format!("http://{}/?room=preload{query}", s.http))
            .await;
        let st = page_until(&mut b, &tab, 100, |v| !v[ready].is_null()).await;
        assert!(!st[ready].is_null(), "{query}: {st}");
        assert_eq!(b.eval(&tab, asked).await, want, "{query}: {st}");
    }
}

/// `connect({ socket })`: a WebSocket the page opened to the signal URL before the module ran
/// carries the session (closing the session closes it); one to another URL is closed and the
/// session opens its own.
#[tokio::test]
async fn a_socket_the_page_opened_first_carries_the_session() {
    let got = eval_in_a_page(
            r#"(async () => {
                const natkit = await import("/natkit.js");
                const url = new URL("/v1/ws", location.href);
                url.protocol = "ws:";
                // Up to 5 s for a socket to be CLOSED.
                const settle = async (ws) => {
                    for (let i = 0; i < 100 && ws.readyState !== 3; i++) await new Promise((r) => setTimeout(r, 50));
                };
                const mine = new WebSocket(url);
                const a = await natkit.connect({ room: "early", relay: "never", socket: mine });
                const joined = [mine.readyState, a.peerId !== null];
                a.close();
                await settle(mine);
                const other = new WebSocket(url.href + "?other=1");
                const b = await natkit.connect({ room: "early", relay: "never", socket: other });
                await settle(other);
                return JSON.stringify([...joined, mine.readyState, other.readyState, b.peerId !== null]);
            })()"#,
        )
        .await;
    // OPEN and joined; CLOSED once the session closed; the other CLOSED, and joined anyway.
    assert_eq!(got, "[1,true,3,3,true]");
}

/// The summary a browser forms from what it sees.
#[tokio::test]
async fn natkit_js_forms_its_nat_summary_from_what_the_browser_sees() {
    let got = eval_in_a_page(
            r#"import("/natkit.js").then((n) => JSON.stringify([
                n.summaryFrom({ mappings: ["198.51.100.1:1000", "198.51.100.1:1001"], udpRelay: true, turnTried: false }),
                n.summaryFrom({ mappings: ["198.51.100.1:1000"], udpRelay: false, turnTried: false }),
                n.summaryFrom({ mappings: [], udpRelay: true, turnTried: true }),
                n.summaryFrom({ mappings: [], udpRelay: false, turnTried: true }),
                n.summaryFrom({ mappings: [], udpRelay: false, turnTried: false }),
                n.summaryFrom({ mappings: ["198.51.100.1:1000", "2001:db8::5:1000"], udpRelay: false, turnTried: false }),
                n.summaryFrom({ mappings: ["2001:db8::5:1000", "2001:db8::5:1001"], udpRelay: false, turnTried: false }),
            ]))"#,
        )
        .await;
    let got: Vec<Value> = serde_json::from_str(&got).unwrap();
    let nat =
        |m: Value, blocked: bool| json!({"mapping": m, "filtering": [], "udp_blocked": blocked});
    let with = |mut n: Value, families: Value| {
        n["families"] = families;
        n
    };
    let symmetric = json!(["address-dependent", "address-and-port-dependent"]);
    let not_symmetric = json!(["endpoint-independent", "address-dependent"]);
    assert_eq!(
        got,
        vec![
            // Another public port towards the relay's other port: symmetric.
            with(nat(symmetric.clone(), false), json!(["ipv4"])),
            with(nat(not_symmetric.clone(), false), json!(["ipv4"])),
            // No mapping seen, but TURN over UDP worked: UDP gets out.
            nat(json!([]), false),
            nat(json!([]), true),
            Value::Null,
            // A dual-stack relay seen once in each family: not symmetric, both families (the
            // IPv6 behaviours in `ipv6`).
            {
                let mut n = with(nat(not_symmetric.clone(), false), json!(["ipv4", "ipv6"]));
                n["ipv6"] = nat(not_symmetric.clone(), false);
                n
            },
            // Two ports apart within IPv6: symmetric.
            with(nat(symmetric, false), json!(["ipv6"])),
        ]
    );
}

/// natkit-peer (`--relay auto`) facing the page: the page's NAT summary reaches it, so it
/// decides by both sides (before natkit.js it decided from its own side alone, `this-side-only`),
/// in either role.
async fn natkit_peer_decides_with_the_pages_summary(peer_first: bool) {
    let s = start(SignalOptions::default(), None).await;
    let room = if peer_first {
        "summary-page-offers"
    } else {
        "summary-peer-offers"
    };
    let mut b = Browser::launch().await;
    let page = format!("http://{}/?room={room}", s.http);
    let (tab, mut child) = if peer_first {
        let child = natkit_peer(&s, room, &["--echo"]).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (
            b.open(&format!("{page}&send=hello-from-the-module")).await,
            child,
        )
    } else {
        let tab = b.open(&format!("{page}&echo=1")).await;
        for _ in 0..100 {
            if b.state(&tab).await["nat"].is_object() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let child = natkit_peer(&s, room, &["--send", "hello-from-webrtc-rs"])
            .spawn()
            .unwrap();
        (tab, child)
    };
    let mut page_state = Value::Null;
    for _ in 0..300 {
        page_state = b.state(&tab).await;
        if page_state["messages"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        page_state["nat"].is_object(),
        "the page probed: {page_state}"
    );
    assert_eq!(
        page_state["policy"]["rule"], "direct-possible",
        "{page_state}"
    );
    if peer_first {
        child.start_kill().unwrap();
    }
    let (events, _) = peer_events(child).await;
    let policy = events
        .iter()
        .find(|e| e["event"] == "policy")
        .unwrap_or_else(|| panic!("no policy event: {events:?}"));
    assert_eq!(policy["rule"], "direct-possible", "{policy}");
    assert_eq!(policy["remote_nat"], page_state["nat"], "{policy}");
    assert!(events.iter().any(|e| e["event"] == "message"), "{events:?}");
}

#[tokio::test]
async fn natkit_peer_answering_the_page_decides_with_its_nat_summary() {
    natkit_peer_decides_with_the_pages_summary(true).await;
}

#[tokio::test]
async fn natkit_peer_offering_to_the_page_decides_with_its_nat_summary() {
    natkit_peer_decides_with_the_pages_summary(false).await;
}

/// README's "Browser" page, as written there (only its server URL replaced), served from another
/// origin that `allowed_origins` lists: it loads `/natkit.js` across origins, joins, opens a
/// channel to natkit-peer and shows the echo of what is typed.
#[tokio::test]
async fn the_readme_page_on_another_origin_talks_to_natkit_peer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", site.local_addr().unwrap());
    let s = start_with(|o| o.allowed_origins = vec![origin.clone().into()]).await;
    let readme = include_str!("../../../../README.md");
    let page = readme
        .split("## Browser\n")
        .nth(1)
        .and_then(|b| b.split("```html\n").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("README's Browser section has an html block")
        .replace("https://signal.example.com", &format!("http://{}", s.http));
    assert!(page.lines().count() < 30, "README's page is under 30 lines");
    tokio::spawn(async move {
        while let Ok((mut c, _)) = site.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                    page.len()
                );
                let _ = c.write_all(head.as_bytes()).await;
                let _ = c.write_all(page.as_bytes()).await;
            });
        }
    });
    let _echo = natkit_peer(&s, "demo", &["--echo"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut b = Browser::launch().await;
    let tab = b.open(&format!("{origin}/")).await;
    let log = "(async () => document.getElementById('log').textContent)()";
    let mut text = String::new();
    for _ in 0..200 {
        text = b.eval(&tab, log).await;
        if text.contains("connected to") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("joined as "), "{text}");
    assert!(text.contains("connected to "), "{text}");
    b.eval(
        &tab,
        "(async () => { document.getElementById('text').value = 'hello across origins'; \
         document.getElementById('send').click(); return ''; })()",
    )
    .await;
    for _ in 0..100 {
        text = b.eval(&tab, log).await;
        if text.contains(": hello across origins") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no echo on the page: {text}");
}

/// One page (the module alone, no demo page) with channels to two partners in the room at once,
/// each its own: two pages join and answer every message with their id; the third opens a
/// channel to each and hears back from both.
#[tokio::test]
async fn one_page_holds_a_channel_to_each_of_two_partners() {
    let s = start(SignalOptions::default(), None).await;
    let mut b = Browser::launch().await;
    let base = format!("http://{}/healthz", s.http);
    let answer = r#"(async () => {
        const natkit = await import("/natkit.js");
        const s = await natkit.connect({ room: "two-partners", signal: location.origin });
        s.on("channel", async ({ channel }) => {
            for await (const m of channel) await channel.send(s.peerId + " got " + m);
        });
        window.session = s;
        return s.peerId;
    })()"#;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let tab = b.open(&base).await;
        ids.push(b.eval(&tab, answer).await);
    }
    let third = b.open(&base).await;
    let got = b
        .eval(
            &third,
            r#"(async () => {
                const natkit = await import("/natkit.js");
                const s = await natkit.connect({ room: "two-partners", signal: location.origin });
                const channels = await Promise.all(s.peers.map((id) => s.channel(id)));
                const got = [];
                for (const c of channels) {
                    await c.send("hello");
                    got.push(await c.recv());
                }
                return JSON.stringify({ partners: channels.map((c) => c.peerId), got });
            })()"#,
        )
        .await;
    let got: Value = serde_json::from_str(&got).unwrap();
    // The welcome lists the room in no particular order.
    let partners: Vec<String> = serde_json::from_value(got["partners"].clone()).unwrap();
    let mut sorted = partners.clone();
    sorted.sort();
    ids.sort();
    assert_eq!(sorted, ids, "{got}");
    let want: Vec<String> = partners.iter().map(|p| format!("{p} got hello")).collect();
    assert_eq!(got["got"], json!(want), "{got}");
    assert_eq!(
        s.metric("natkit_signal_messages_relayed_total{type=\"offer\"}"),
        3.0,
        "one offer per pair: the second page to the first (the joiner offers), the third to each"
    );
}

/// natkit-signal as a process on 127.0.0.1 (open, its relay embedded) with `env`.
fn signal_process(http: &str, relay: &str, env: &[(&str, &str)]) -> natkit_testkit::Daemon {
    natkit_testkit::Daemon::start(
        std::process::Command::new(natkit_testkit::workspace_bin("natkit-signal"))
            .env("NATKIT_TURN_SECRET", "browser-process")
            .env("NATKIT_ALT_PORT", "0")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .args(["--open", "--listen", http, "--relay-listen", relay])
            .args(["--metrics-listen", "off"]),
    )
}

/// natkit-peer `--echo` (and `args`) in `room` at `http`, then the demo page in that room sending
/// "before" (and `query`), once its echo came back: the browser, the tab, the echo process.
async fn page_with_echo(
    http: std::net::SocketAddr,
    room: &str,
    args: &[&str],
    query: &str,
) -> (Browser, String, tokio::process::Child) {
    let echo = natkit_peer_at(&format!("ws://{http}"), room, &[&["--echo"], args].concat())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut b = Browser::launch().await;
    let tab = b
        .open(&format!("http://{http}/?room={room}&send=before{query}"))
        .await;
    let st = page_until(&mut b, &tab, 200, |v| has_message(v, "before")).await;
    assert!(has_message(&st, "before"), "the first echo: {st}");
    (b, tab, echo)
}

fn has_message(v: &Value, m: &str) -> bool {
    v["messages"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == m))
}

/// The page's state once `done` accepts it, or after `tries` tenths of a second.
async fn page_until(
    b: &mut Browser,
    tab: &str,
    tries: usize,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut st = Value::Null;
    for _ in 0..tries {
        st = b.state(tab).await;
        if done(&st) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    st
}

/// Types `text` into the page's chat form and sends it; its echo is waited for.
async fn say(b: &mut Browser, tab: &str, text: &str) -> Value {
    b.eval(
        tab,
        &format!(
            "(async () => {{ document.getElementById('text').value = '{text}'; \
             document.getElementById('chat').requestSubmit(); return ''; }})()"
        ),
    )
    .await;
    page_until(b, tab, 100, |v| has_message(v, text)).await
}

/// natkit-signal (and its embedded relay) killed and started again on the same ports under a
/// live channel between the page and natkit-peer: the page's session rejoins by itself
/// (`reconnect`, then `reconnected`) and the channel, direct on loopback, carries on. Neither
/// side uses the relay (`relay=0`, `--relay never`): the channel must not depend on the relay
/// that restarts (Chromium, controlling, may keep a relayed pair it nominated first).
#[tokio::test]
async fn the_page_rejoins_when_signaling_restarts_and_its_channel_carries_on() {
    let mut signal = signal_process("127.0.0.1:0", "127.0.0.1:0", &[]);
    let (http, relay) = (signal.addr("http"), signal.addr("stun"));
    let (mut b, tab, _echo) =
        page_with_echo(http, "restart", &["--relay", "never"], "&relay=0").await;
    let st = b.state(&tab).await;
    assert_ne!(st["selected"]["local"], "relay", "direct on loopback: {st}");

    signal.process().kill();
    drop(signal);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The same web address (the page reconnects there); the relay may move (this page relays
    // never): its old port may meanwhile be some other socket's ephemeral port, which made the
    // restart fail now and then with "address in use".
    let _ = relay;
    let _signal = signal_process(&http.to_string(), "127.0.0.1:0", &[]);
    let rejoined = |v: &Value| {
        v["state"]
            .as_str()
            .is_some_and(|s| s.ends_with("(rejoined)"))
    };
    let st = page_until(&mut b, &tab, 150, rejoined).await;
    assert!(rejoined(&st), "the page rejoined: {st}");
    let st = say(&mut b, &tab, "after").await;
    assert!(has_message(&st, "after"), "no echo after the restart: {st}");
}

/// A relay-only channel between the page and natkit-peer with 6 s TURN credentials on a relay
/// that grants 6 s allocations, kept for 20 s: the page asks for fresh credentials at half their
/// lifetime and restarts ICE on them (a browser's allocations keep the credential they were made
/// with), so the channel still carries messages long after the first credential expired (with
/// renewal off in natkit.js this test fails: the connection fails and nothing comes back).
#[tokio::test]
async fn the_page_renews_its_turn_credentials_and_its_relayed_channel_lives_on() {
    let short = [
        ("NATKIT_SIGNAL_CREDENTIAL_TTL", "6"),
        ("NATKIT_MAX_LIFETIME", "6"),
    ];
    let signal = signal_process("127.0.0.1:0", "127.0.0.1:0", &short);
    let always = ["--relay", "always"];
    let (mut b, tab, _echo) =
        page_with_echo(signal.addr("http"), "renew", &always, "&relay=1").await;
    assert_eq!(b.state(&tab).await["selected"]["local"], "relay");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let st = say(&mut b, &tab, "after").await;
    assert!(has_message(&st, "after"), "an echo 20 s on: {st}");
    assert!(
        st["renewals"].as_u64().unwrap_or(0) >= 4,
        "renewed every 3 s: {st}"
    );
    assert!(
        st["restarts"].as_u64().unwrap_or(0) >= 1,
        "ICE restarted on them: {st}"
    );
}
