//! Headless Chromium driven over the DevTools protocol: open a tab, read the page's
//! `window.natkit`, evaluate a script.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::common::Ws;

/// A headless Chromium with a fresh profile, killed and cleaned up on drop.
pub struct Browser {
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
    pub async fn launch() -> Browser {
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
    pub async fn open(&mut self, url: &str) -> String {
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
    pub async fn state(&mut self, session: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({"expression": "JSON.stringify(window.natkit || null)", "returnByValue": true}), Some(session))
            .await;
        serde_json::from_str(r["result"]["value"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
    }

    /// Evaluates `expression` (a promise of a string) in `session`'s page, once the page has
    /// loaded, and returns the string.
    pub async fn eval(&mut self, session: &str, expression: &str) -> String {
        for _ in 0..100 {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": "location.protocol === 'http:' && document.readyState === 'complete'", "returnByValue": true}),
                    Some(session),
                )
                .await;
            if r["result"]["value"] == true {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
                Some(session),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{r}");
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
