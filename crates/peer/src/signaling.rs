//! A natkit-signal client (protocol v1, `docs/protocol.md`): join, then addressed messages.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use natkit_proto::{ClientMsg, ErrorCode, ServerMsg, Token, Welcome, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A joined connection: send client messages, receive the server's.
pub struct Signaling {
    pub out: mpsc::Sender<ClientMsg>,
    pub incoming: mpsc::Receiver<ServerMsg>,
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
    Refused { code: ErrorCode, message: String },
    #[error("the server closed the connection before welcoming us")]
    Closed,
}

impl SignalingError {
    /// A refusal that retrying with the same request cannot fix (bad token, bad room, full).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SignalingError::Refused { code, .. } if code.is_permanent_refusal())
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

/// Connects, joins `room` and waits for `welcome`. A `wss://` server is verified with `tls`
/// (`None`: the system's roots and `SSL_CERT_FILE`).
pub async fn join(
    signal: &str,
    room: &str,
    peer_id: Option<&str>,
    token: Option<&str>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(Signaling, Welcome), SignalingError> {
    let url = ws_url(signal);
    let connector = url.starts_with("wss:").then(|| {
        let config = tls.cloned().unwrap_or_else(|| {
            use webrtc::peer_connection::turn_tls;
            turn_tls::client_config(turn_tls::system_roots())
        });
        tokio_tungstenite::Connector::Rustls(config)
    });
    // Nagle off (`true`): an answer and the candidates after it leave at once, not after the
    // server acknowledges the answer.
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(&url, None, true, connector)
        .await
        .map_err(|e| SignalingError::Connect {
            url: url.clone(),
            source: Box::new(e),
        })?;
    let (mut sink, mut stream) = ws.split();
    let join = ClientMsg::Join {
        room: room.to_owned(),
        peer_id: peer_id.map(str::to_owned),
        token: token.map(|t| Token(t.to_owned())),
        version: Some(PROTOCOL_VERSION),
    };
    sink.send(Message::Text(join.to_text().into()))
        .await
        .map_err(|_| SignalingError::Closed)?;
    let welcome = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => match ServerMsg::parse(&t) {
                Ok(ServerMsg::Welcome(w)) => break w,
                Ok(ServerMsg::Error { code, message }) => {
                    return Err(SignalingError::Refused { code, message })
                }
                Ok(_) => continue,
                Err(e) => tracing::debug!(error = %e, "unreadable signaling frame; ignored"),
            },
            Some(Ok(_)) => continue,
            _ => return Err(SignalingError::Closed),
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<ClientMsg>(256);
    let (in_tx, in_rx) = mpsc::channel::<ServerMsg>(256);
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(Message::Text(m.to_text().into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let Message::Text(t) = m else { continue };
            match ServerMsg::parse(&t) {
                Ok(msg) => {
                    if in_tx.send(msg).await.is_err() {
                        break;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "unreadable signaling frame; ignored"),
            }
        }
    });
    Ok((
        Signaling {
            out: out_tx,
            incoming: in_rx,
        },
        welcome,
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
