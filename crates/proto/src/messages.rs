//! The WebSocket messages (`/v1/ws`, JSON text frames with a `type`), both directions.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codes::ErrorCode;
use crate::ice::{IceCandidate, IceServer};
use crate::nat::NatSummary;

/// The protocol version natkit-signal and natkit-peer speak. A client sends it in `join`; the
/// server answers with its own in `welcome` (a server from before versions existed sends none,
/// which reads as 1).
pub const PROTOCOL_VERSION: u32 = 1;

fn version_one() -> u32 {
    1
}

/// A join token (`v1.<expiry>.<room>.<mac>`): a bearer credential, so `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMsg {
    Join {
        room: String,
        /// The id to join as; the server picks one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_id: Option<String>,
        /// Needed when the server requires tokens (or give `?token=` on the WebSocket URL).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Token>,
        /// The protocol version the client speaks; absent means 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    Offer {
        to: String,
        sdp: String,
    },
    Answer {
        to: String,
        sdp: String,
    },
    /// `candidate: null` means end-of-candidates; the field itself is required.
    Candidate {
        to: String,
        #[serde(deserialize_with = "Option::deserialize")]
        candidate: Option<IceCandidate>,
    },
    Leave,
    Ping,
    /// Asks for fresh ICE server credentials for this peer (answered with `ice-servers`).
    Refresh,
    /// This peer's NAT, for peer `to` (optional: peers that do not know it ignore it).
    NatSummary {
        to: String,
        nat: NatSummary,
    },
}

/// The server's `welcome`: the join worked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub peer_id: String,
    pub room: String,
    /// The other peers already in the room, in a stable order.
    pub peers: Vec<String>,
    /// `RTCConfiguration.iceServers` with a fresh TURN credential.
    pub ice_servers: Vec<IceServer>,
    /// Seconds the credential stays valid.
    pub ttl: u64,
    /// The server's protocol version.
    #[serde(default = "version_one")]
    pub version: u32,
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMsg {
    Welcome(Welcome),
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
        #[serde(deserialize_with = "Option::deserialize")]
        candidate: Option<IceCandidate>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong,
    /// Fresh credentials for the peer that sent `refresh`, valid for `ttl` seconds.
    IceServers {
        ice_servers: Vec<IceServer>,
        ttl: u64,
    },
    /// Peer `from`'s NAT summary.
    NatSummary {
        from: String,
        nat: NatSummary,
    },
    /// This node is draining (an upgrade, a scale-in): connect again, through another node or
    /// the same address (a load balancer sends the new connection elsewhere), and rejoin under
    /// the same peer id; data channels carry on meanwhile. The node closes the connections left
    /// when its drain timeout ends.
    Reconnect {
        reason: String,
    },
    /// A message type this side does not know (from a newer server): clients ignore it.
    /// natkit-signal never sends it.
    #[serde(other)]
    Unknown,
}

/// Why a client frame was refused: the code and the text of the `error` the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: ErrorCode,
    pub message: String,
}

impl ParseError {
    /// The `error` message to answer with.
    pub fn into_reply(self) -> ServerMsg {
        ServerMsg::error(self.code, self.message)
    }
}

impl ClientMsg {
    /// Every client `type`, as spelled on the wire.
    pub const TYPES: [&'static str; 8] = [
        "join",
        "offer",
        "answer",
        "candidate",
        "leave",
        "ping",
        "refresh",
        "nat-summary",
    ];

    /// Parses a text frame, telling bad JSON (`bad-json`) apart from an unknown `type`
    /// (`unknown-type`). Unknown fields are ignored. Error texts stay short and never echo more
    /// than 32 characters of the input.
    pub fn parse(text: &str) -> Result<ClientMsg, ParseError> {
        let bad = |message: String| ParseError {
            code: ErrorCode::BadJson,
            message,
        };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Some(t) = v.get("type").and_then(Value::as_str) else {
            return Err(bad("expected an object with a string \"type\"".into()));
        };
        if !Self::TYPES.contains(&t) {
            let t: String = t.chars().take(32).collect();
            return Err(ParseError {
                code: ErrorCode::UnknownType,
                message: format!("unknown message type {t:?}"),
            });
        }
        let t = t.to_owned();
        serde_json::from_value(v).map_err(|e| bad(format!("bad {t} message: {e}")))
    }

    /// The `type` of an addressed message (`offer`, `answer`, `candidate`, `nat-summary`), else
    /// `None`.
    pub fn relayed_type(&self) -> Option<&'static str> {
        match self {
            ClientMsg::Offer { .. } => Some("offer"),
            ClientMsg::Answer { .. } => Some("answer"),
            ClientMsg::Candidate { .. } => Some("candidate"),
            ClientMsg::NatSummary { .. } => Some("nat-summary"),
            _ => None,
        }
    }

    /// Every addressed `type`, for metrics created at start.
    pub const RELAYED_TYPES: [&'static str; 4] = ["offer", "answer", "candidate", "nat-summary"];

    /// The text frame for this message.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("client messages serialise")
    }
}

impl ServerMsg {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            code,
            message: message.into(),
        }
    }

    /// Parses a server frame. A `type` this side does not know reads as [`ServerMsg::Unknown`];
    /// only a frame that is not JSON, or a known type with missing or mistyped fields, is an
    /// error.
    pub fn parse(text: &str) -> Result<ServerMsg, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The text frame for this message.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages serialise")
    }
}

/// Room names and peer ids: 1 to 64 bytes of `[A-Za-z0-9._~-]` (URL-safe, log-safe).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cand() -> IceCandidate {
        IceCandidate {
            candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        }
    }

    fn client_cases() -> Vec<(ClientMsg, Value)> {
        vec![
            (
                ClientMsg::Join {
                    room: "r1".into(),
                    peer_id: None,
                    token: None,
                    version: None,
                },
                json!({"type":"join","room":"r1"}),
            ),
            (
                ClientMsg::Join {
                    room: "r1".into(),
                    peer_id: Some("p".into()),
                    token: Some(Token("v1.1.cg.x".into())),
                    version: Some(1),
                },
                json!({"type":"join","room":"r1","peer_id":"p","token":"v1.1.cg.x","version":1}),
            ),
            (
                ClientMsg::Offer {
                    to: "b".into(),
                    sdp: "v=0".into(),
                },
                json!({"type":"offer","to":"b","sdp":"v=0"}),
            ),
            (
                ClientMsg::Answer {
                    to: "b".into(),
                    sdp: "v=0".into(),
                },
                json!({"type":"answer","to":"b","sdp":"v=0"}),
            ),
            (
                ClientMsg::Candidate {
                    to: "b".into(),
                    candidate: Some(cand()),
                },
                json!({"type":"candidate","to":"b","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}),
            ),
            (
                ClientMsg::Candidate {
                    to: "b".into(),
                    candidate: None,
                },
                json!({"type":"candidate","to":"b","candidate":null}),
            ),
            (ClientMsg::Leave, json!({"type":"leave"})),
            (ClientMsg::Ping, json!({"type":"ping"})),
            (ClientMsg::Refresh, json!({"type":"refresh"})),
            (
                ClientMsg::NatSummary {
                    to: "b".into(),
                    nat: NatSummary {
                        mapping: vec![crate::NatBehaviour::AddressAndPortDependent],
                        filtering: vec![],
                        udp_blocked: false,
                        families: vec![],
                        ipv6: None,
                    },
                },
                json!({"type":"nat-summary","to":"b","nat":{"mapping":["address-and-port-dependent"],"filtering":[],"udp_blocked":false}}),
            ),
        ]
    }

    fn server_cases() -> Vec<(ServerMsg, Value)> {
        let ice = vec![IceServer::for_relay(
            "203.0.113.5",
            3478,
            "60:a".into(),
            "pw".into(),
        )];
        vec![
            (
                ServerMsg::Welcome(Welcome {
                    peer_id: "a".into(),
                    room: "r".into(),
                    peers: vec!["b".into()],
                    ice_servers: ice.clone(),
                    ttl: 60,
                    version: 1,
                }),
                json!({"type":"welcome","peer_id":"a","room":"r","peers":["b"],"ice_servers":[{"urls":["stun:203.0.113.5:3478","turn:203.0.113.5:3478?transport=udp"],"username":"60:a","credential":"pw"}],"ttl":60,"version":1}),
            ),
            (
                ServerMsg::PeerJoined {
                    peer_id: "a".into(),
                },
                json!({"type":"peer-joined","peer_id":"a"}),
            ),
            (
                ServerMsg::PeerLeft {
                    peer_id: "a".into(),
                },
                json!({"type":"peer-left","peer_id":"a"}),
            ),
            (
                ServerMsg::Offer {
                    from: "a".into(),
                    sdp: "v=0".into(),
                },
                json!({"type":"offer","from":"a","sdp":"v=0"}),
            ),
            (
                ServerMsg::Answer {
                    from: "a".into(),
                    sdp: "v=0".into(),
                },
                json!({"type":"answer","from":"a","sdp":"v=0"}),
            ),
            (
                ServerMsg::Candidate {
                    from: "a".into(),
                    candidate: None,
                },
                json!({"type":"candidate","from":"a","candidate":null}),
            ),
            (
                ServerMsg::error(ErrorCode::RoomFull, "full"),
                json!({"type":"error","code":"room-full","message":"full"}),
            ),
            (ServerMsg::Pong, json!({"type":"pong"})),
            (
                ServerMsg::IceServers {
                    ice_servers: ice,
                    ttl: 60,
                },
                json!({"type":"ice-servers","ice_servers":[{"urls":["stun:203.0.113.5:3478","turn:203.0.113.5:3478?transport=udp"],"username":"60:a","credential":"pw"}],"ttl":60}),
            ),
        ]
    }

    #[test]
    fn client_messages_round_trip() {
        for (msg, wire) in client_cases() {
            assert_eq!(serde_json::to_value(&msg).unwrap(), wire, "{msg:?}");
            assert_eq!(ClientMsg::parse(&wire.to_string()).unwrap(), msg, "{wire}");
        }
    }

    #[test]
    fn server_messages_round_trip() {
        for (msg, wire) in server_cases() {
            assert_eq!(serde_json::to_value(&msg).unwrap(), wire, "{msg:?}");
            assert_eq!(ServerMsg::parse(&wire.to_string()).unwrap(), msg, "{wire}");
        }
    }

    #[test]
    fn every_client_type_is_covered() {
        let covered: Vec<String> = client_cases()
            .iter()
            .map(|(_, w)| w["type"].as_str().unwrap().to_owned())
            .collect();
        for t in ClientMsg::TYPES {
            assert!(covered.iter().any(|c| c == t), "{t}");
        }
    }

    #[test]
    fn parse_table() {
        let cases: [(&str, Result<(), ErrorCode>); 9] = [
            (r#"{"type":"join","room":"r1"}"#, Ok(())),
            // Tolerant reader: a newer client's fields are ignored.
            (
                r#"{"type":"join","room":"r","version":2,"nat":{"mapping":"x"}}"#,
                Ok(()),
            ),
            (
                r#"{"type":"candidate","to":"b","candidate":{"candidate":"c"},"sdpMid":"0"}"#,
                Ok(()),
            ),
            ("not json", Err(ErrorCode::BadJson)),
            (r#"["type","join"]"#, Err(ErrorCode::BadJson)),
            (r#"{"type":7}"#, Err(ErrorCode::BadJson)),
            (r#"{"type":"teleport"}"#, Err(ErrorCode::UnknownType)),
            (r#"{"type":"offer","to":"b"}"#, Err(ErrorCode::BadJson)),
            (r#"{"type":"candidate","to":"b"}"#, Err(ErrorCode::BadJson)),
        ];
        for (text, want) in cases {
            match (ClientMsg::parse(text), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(code)) => assert_eq!(e.code, code, "{text}: {}", e.message),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_newer_servers_messages_and_fields_are_tolerated() {
        let m = ServerMsg::parse(r#"{"type":"drain","reconnect_to":"ws://x"}"#).unwrap();
        assert_eq!(m, ServerMsg::Unknown);
        let m = ServerMsg::parse(r#"{"type":"peer-joined","peer_id":"a","nat":{}}"#).unwrap();
        assert_eq!(
            m,
            ServerMsg::PeerJoined {
                peer_id: "a".into()
            }
        );
        let m = ServerMsg::parse(r#"{"type":"error","code":"new-code","message":"m"}"#).unwrap();
        assert_eq!(m, ServerMsg::error(ErrorCode::Other, "m"));
        // A server from before versions: no `version` in welcome reads as 1.
        let m = ServerMsg::parse(
            r#"{"type":"welcome","peer_id":"a","room":"r","peers":[],"ice_servers":[],"ttl":1}"#,
        )
        .unwrap();
        assert!(matches!(m, ServerMsg::Welcome(Welcome { version: 1, .. })));
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let m = ClientMsg::Join {
            room: "r".into(),
            peer_id: None,
            token: Some(Token("v1.99.cg.secretmac".into())),
            version: None,
        };
        let d = format!("{m:?}");
        assert!(!d.contains("secretmac"), "{d}");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// Any text, valid-looking or not, parses to a message or to a documented error; never
    /// panics; error texts stay short.
    #[test]
    fn parse_is_total_on_mutated_and_random_input() {
        let seeds = [
            r#"{"type":"join","room":"r1","peer_id":"p","token":"v1.1.cg.x","version":1}"#,
            r#"{"type":"candidate","to":"b","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}"#,
            r#"{"type":"offer","to":"b","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0"}"#,
            r#"{"type":"leave"}"#,
        ];
        // A small xorshift generator: deterministic, no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        for i in 0..50_000 {
            let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
            match next(3) {
                0 => {
                    for _ in 0..1 + next(5) {
                        let at = next(b.len());
                        b[at] = next(256) as u8;
                    }
                }
                1 => b.truncate(next(b.len())),
                _ => b = (0..next(200)).map(|_| next(256) as u8).collect(),
            }
            let text = String::from_utf8_lossy(&b);
            match ClientMsg::parse(&text) {
                Ok(_) => {}
                Err(e) => {
                    assert!(
                        matches!(e.code, ErrorCode::BadJson | ErrorCode::UnknownType),
                        "{text:?}"
                    );
                    assert!(
                        e.message.len() < 400,
                        "error texts stay short: {}",
                        e.message
                    );
                }
            }
            let _ = ServerMsg::parse(&text);
        }
    }
}
