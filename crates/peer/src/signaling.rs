//! A natkit-signal client (protocol v1, `docs/protocol.md`): join, then addressed messages.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The server's `welcome`.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub peer_id: String,
    pub room: String,
    pub peers: Vec<String>,
    pub ice_servers: Value,
    pub ttl: u64,
}

/// A joined connection: send JSON messages, receive the server's.
pub struct Signaling {
    pub out: mpsc::Sender<Value>,
    pub incoming: mpsc::Receiver<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("the server refused the join: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("the server closed the connection before welcoming us")]
    Closed,
}

impl SignalingError {
    /// A refusal that retrying with the same request cannot fix (bad token, bad room, full).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SignalingError::Refused { code, .. }
            if matches!(code.as_str(), "unauthorized" | "bad-room" | "room-full" | "server-full"))
    }
}

/// The WebSocket URL for `--signal ws://HOST:PORT` (the `/v1/ws` path is added when missing).
pub fn ws_url(signal: &str) -> String {
    let s = signal.trim_end_matches('/');
    if s.ends_with("/v1/ws") {
        s.to_owned()
    } else {
        format!("{s}/v1/ws")
    }
}

/// Connects, joins `room` and waits for `welcome`.
pub async fn join(
    signal: &str,
    room: &str,
    peer_id: Option<&str>,
    token: Option<&str>,
) -> Result<(Signaling, Welcome), SignalingError> {
    let url = ws_url(signal);
    let (ws, _) =
        tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| SignalingError::Connect {
                url: url.clone(),
                source: Box::new(e),
            })?;
    let (mut sink, mut stream) = ws.split();
    let mut j = json!({"type": "join", "room": room});
    if let Some(p) = peer_id {
        j["peer_id"] = json!(p);
    }
    if let Some(t) = token {
        j["token"] = json!(t);
    }
    sink.send(Message::Text(j.to_string().into()))
        .await
        .map_err(|_| SignalingError::Closed)?;
    let welcome = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("welcome") => break v,
                    Some("error") => {
                        return Err(SignalingError::Refused {
                            code: v["code"].as_str().unwrap_or("?").into(),
                            message: v["message"].as_str().unwrap_or("").into(),
                        })
                    }
                    _ => continue,
                }
            }
            Some(Ok(_)) => continue,
            _ => return Err(SignalingError::Closed),
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(256);
    let (in_tx, in_rx) = mpsc::channel::<Value>(256);
    tokio::spawn(async move {
        while let Some(v) = out_rx.recv().await {
            if sink
                .send(Message::Text(v.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Text(t) = m {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if in_tx.send(v).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let w = Welcome {
        peer_id: welcome["peer_id"].as_str().unwrap_or_default().to_owned(),
        room: welcome["room"].as_str().unwrap_or_default().to_owned(),
        peers: welcome["peers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        ice_servers: welcome["ice_servers"].clone(),
        ttl: welcome["ttl"].as_u64().unwrap_or(0),
    };
    Ok((
        Signaling {
            out: out_tx,
            incoming: in_rx,
        },
        w,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ws_url_table() {
        for (given, want) in [
            ("ws://h:8080", "ws://h:8080/v1/ws"),
            ("ws://h:8080/", "ws://h:8080/v1/ws"),
            ("wss://h/v1/ws", "wss://h/v1/ws"),
        ] {
            assert_eq!(super::ws_url(given), want);
        }
    }
}
