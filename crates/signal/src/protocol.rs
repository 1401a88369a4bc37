//! The WebSocket protocol (`/v1/ws`, JSON text frames with a `type`), documented with an example
//! exchange in `docs/protocol.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Client to server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMsg {
    Join {
        room: String,
        #[serde(default)]
        peer_id: Option<String>,
        /// Needed when the server requires tokens (or give `?token=` on the WebSocket URL).
        #[serde(default)]
        token: Option<String>,
    },
    Offer {
        to: String,
        sdp: String,
    },
    Answer {
        to: String,
        sdp: String,
    },
    /// `candidate: null` means end-of-candidates.
    Candidate {
        to: String,
        candidate: Value,
    },
    Leave,
    Ping,
    /// Asks for fresh ICE server credentials for this peer (answered with `ice-servers`).
    Refresh,
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMsg {
    Welcome {
        peer_id: String,
        room: String,
        peers: Vec<String>,
        ice_servers: Value,
        ttl: u64,
    },
    PeerJoined {
        peer_id: String,
    },
    PeerLeft {
        peer_id: String,
    },
    Offer {
        from: String,
        sdp: String,
    },
    Answer {
        from: String,
        sdp: String,
    },
    Candidate {
        from: String,
        candidate: Value,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong,
    /// Fresh credentials for the peer that sent `refresh`, valid for `ttl` seconds.
    IceServers {
        ice_servers: Value,
        ttl: u64,
    },
}

/// Machine-readable error codes (the `code` of an `error` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The frame is not JSON, or not an object with the documented fields.
    BadJson,
    /// `type` is not one of the documented client messages.
    UnknownType,
    /// A message other than `join`/`ping` before joining.
    NotJoined,
    /// A second `join` on the same connection.
    AlreadyJoined,
    /// Room name empty, longer than 64 bytes, or with characters outside `[A-Za-z0-9._~-]`.
    BadRoom,
    /// Requested peer id invalid (same rules as rooms) or already used in the room.
    BadPeerId,
    /// `to` names no peer in the sender's room.
    UnknownPeer,
    /// The room already has the maximum number of peers.
    RoomFull,
    /// The server already has the maximum number of rooms.
    ServerFull,
    /// More messages per second than allowed; the message was dropped.
    RateLimited,
    /// A token is required, or the token is invalid, expired or for another room.
    Unauthorized,
    /// The server is shutting down.
    ShuttingDown,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadRoom,
        ErrorCode::BadPeerId,
        ErrorCode::UnknownPeer,
        ErrorCode::RoomFull,
        ErrorCode::ServerFull,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::ShuttingDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::BadRoom => "bad-room",
            ErrorCode::BadPeerId => "bad-peer-id",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ShuttingDown => "shutting-down",
        }
    }
}

pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        code,
        message: message.into(),
    }
}

/// Parses a text frame, telling bad JSON apart from an unknown `type`.
pub fn parse(text: &str) -> Result<ClientMsg, ServerMsg> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| error(ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Some(t) = v.get("type").and_then(Value::as_str).map(str::to_owned) else {
        return Err(error(
            ErrorCode::BadJson,
            "expected an object with a string \"type\"",
        ));
    };
    const KNOWN: [&str; 7] = [
        "join",
        "offer",
        "answer",
        "candidate",
        "leave",
        "ping",
        "refresh",
    ];
    if !KNOWN.contains(&t.as_str()) {
        let t: String = t.chars().take(32).collect();
        return Err(error(
            ErrorCode::UnknownType,
            format!("unknown message type {t:?}"),
        ));
    }
    serde_json::from_value(v)
        .map_err(|e| error(ErrorCode::BadJson, format!("bad {t} message: {e}")))
}

/// The type label used by metrics (`natkit_signal_messages_relayed_total{type}`).
pub fn relayed_type(m: &ClientMsg) -> Option<&'static str> {
    match m {
        ClientMsg::Offer { .. } => Some("offer"),
        ClientMsg::Answer { .. } => Some("answer"),
        ClientMsg::Candidate { .. } => Some("candidate"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_table() {
        let cases: [(&str, Result<ClientMsg, ErrorCode>); 9] = [
            (
                r#"{"type":"join","room":"r1"}"#,
                Ok(ClientMsg::Join {
                    room: "r1".into(),
                    peer_id: None,
                    token: None,
                }),
            ),
            (
                r#"{"type":"join","room":"r1","peer_id":"p"}"#,
                Ok(ClientMsg::Join {
                    room: "r1".into(),
                    peer_id: Some("p".into()),
                    token: None,
                }),
            ),
            (
                r#"{"type":"candidate","to":"b","candidate":null}"#,
                Ok(ClientMsg::Candidate {
                    to: "b".into(),
                    candidate: Value::Null,
                }),
            ),
            (
                r#"{"type":"offer","to":"b","sdp":"v=0"}"#,
                Ok(ClientMsg::Offer {
                    to: "b".into(),
                    sdp: "v=0".into(),
                }),
            ),
            (r#"{"type":"ping"}"#, Ok(ClientMsg::Ping)),
            ("not json", Err(ErrorCode::BadJson)),
            (r#"["type","join"]"#, Err(ErrorCode::BadJson)),
            (r#"{"type":"teleport"}"#, Err(ErrorCode::UnknownType)),
            (r#"{"type":"offer","to":"b"}"#, Err(ErrorCode::BadJson)),
        ];
        for (text, want) in cases {
            match (parse(text), want) {
                (Ok(m), Ok(w)) => assert_eq!(m, w, "{text}"),
                (Err(ServerMsg::Error { code, .. }), Err(w)) => assert_eq!(code, w, "{text}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn server_messages_serialise_as_documented() {
        let cases = [
            (
                ServerMsg::PeerJoined {
                    peer_id: "a".into(),
                },
                json!({"type":"peer-joined","peer_id":"a"}),
            ),
            (
                ServerMsg::Candidate {
                    from: "a".into(),
                    candidate: Value::Null,
                },
                json!({"type":"candidate","from":"a","candidate":null}),
            ),
            (
                error(ErrorCode::RoomFull, "full"),
                json!({"type":"error","code":"room-full","message":"full"}),
            ),
            (ServerMsg::Pong, json!({"type":"pong"})),
        ];
        for (m, want) in cases {
            assert_eq!(serde_json::to_value(&m).unwrap(), want);
        }
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Any text, valid-looking or not, parses to a message or to a documented error; never panics.
    #[test]
    fn parse_is_total_on_mutated_and_random_input() {
        let seeds = [
            r#"{"type":"join","room":"r1","peer_id":"p","token":"v1.1.cg.x"}"#,
            r#"{"type":"candidate","to":"b","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}"#,
            r#"{"type":"offer","to":"b","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0"}"#,
            r#"{"type":"leave"}"#,
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for i in 0..50_000 {
            let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
            match rng.random_range(0..3) {
                0 => {
                    for _ in 0..rng.random_range(1..6) {
                        let at = rng.random_range(0..b.len());
                        b[at] = rng.random();
                    }
                }
                1 => b.truncate(rng.random_range(0..b.len())),
                _ => {
                    b = (0..rng.random_range(0..200))
                        .map(|_| rng.random())
                        .collect()
                }
            }
            let text = String::from_utf8_lossy(&b);
            match parse(&text) {
                Ok(_) => {}
                Err(ServerMsg::Error { code, message }) => {
                    assert!(
                        matches!(code, ErrorCode::BadJson | ErrorCode::UnknownType),
                        "{text:?}"
                    );
                    assert!(message.len() < 400, "error messages stay short: {message}");
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }
}
