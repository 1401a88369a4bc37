//! The web page at `/` in headless Chromium (Debian's `chromium`): two tabs join a room and
//! exchange data-channel messages through natkit-signal, directly and relay-only through the
//! embedded relay. Chromium is driven over the DevTools protocol; the page exposes what it shows
//! as `window.natkit`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use natkit_signal::config::SignalOptions;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// A headless Chromium with a fresh profile, killed and cleaned up on drop.
struct Browser {
    _child: tokio::process::Child,
    profile: std::path::PathBuf,
    cdp: Ws,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    async fn launch() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "natkit-chromium-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let mut child = tokio::process::Command::new(natkit_testkit::chromium())
            .args(natkit_testkit::chromium_headless_args(&profile))
            .args([
                // Two tabs on one host: offer real host addresses instead of mDNS names.
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(u) = l.strip_prefix("DevTools listening on ") {
                    return u.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools endpoint");
        })
        .await
        .expect("chromium did not start in 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (cdp, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Browser {
            _child: child,
            profile,
            cdp,
            next_id: 0,
        }
    }

    async fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.cdp
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.cdp.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens a tab and returns its DevTools session.
    async fn open(&mut self, url: &str) -> String {
        let target = self
            .call("Target.createTarget", json!({"url": url}), None)
            .await;
        let r = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                None,
            )
            .await;
        r["sessionId"].as_str().unwrap().to_owned()
    }

    /// The page's `window.natkit`.
    async fn state(&mut self, session: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": "JSON.stringify(window.natkit || null)", "returnByValue": true}), Some(session))
            .await;
        serde_json::from_str(r["result"]["value"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

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

/// Chromium and natkit-peer (webrtc-rs) in one room, relay-only through the embedded relay.
/// `peer_first`: natkit-peer echoes and the page offers; else the page echoes and the peer offers.
async fn chromium_and_natkit_peer(peer_first: bool) {
    let s = start(SignalOptions::default(), None).await;
    let room = if peer_first {
        "interop-page-offers"
    } else {
        "interop-peer-offers"
    };
    let peer_bin = natkit_testkit::workspace_bin("natkit-peer");
    let url = format!("ws://{}", s.http);
    let peer = |args: &[&str]| {
        let mut c = tokio::process::Command::new(&peer_bin);
        c.env("RUST_LOG", "off")
            .args([
                "--signal",
                &url,
                "--room",
                room,
                "--json",
                "--relay",
                "always",
                "--timeout",
                "40",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        c
    };
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
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            peer(&["--send", "hello-from-webrtc-rs"]).output(),
        )
        .await
        .expect("natkit-peer finished")
        .unwrap();
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        assert!(out.status.success(), "{events:?}");
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
