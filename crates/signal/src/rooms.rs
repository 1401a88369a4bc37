//! Room routing as a pure state machine: a client message in, addressed server messages out.
//!
//! Connections are identified by a [`ConnId`] the shell assigns; peers by ids unique within their
//! room. Messages are delivered to the addressed peer only, with `from` added; nothing is ever
//! broadcast except `peer-joined`/`peer-left` to the room.

use std::collections::{BTreeMap, HashMap};

use natkit_proto::{ClientMsg, ErrorCode, IceServer, ServerMsg, Welcome, PROTOCOL_VERSION};

pub type ConnId = u64;

/// Room and server limits. 0 means unlimited.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    pub peers_per_room: usize,
    pub rooms: usize,
}

/// One addressed message.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    pub to: ConnId,
    pub msg: ServerMsg,
}

#[derive(Debug, Clone)]
struct Member {
    room: String,
    peer_id: String,
}

/// What the shell gives `join` besides the message: a fresh peer id (used when the client did
/// not ask for one) and the ICE servers minted for this peer.
pub struct JoinContext {
    pub generated_id: String,
    pub ice_servers: Vec<IceServer>,
    pub ttl: u64,
}

#[derive(Debug, Default)]
pub struct Rooms {
    limits: Option<RoomLimits>,
    /// room -> peer id -> connection (BTreeMap: `peers` in welcome come out in a stable order)
    rooms: HashMap<String, BTreeMap<String, ConnId>>,
    members: HashMap<ConnId, Member>,
}

/// Room names and peer ids: 1 to 64 bytes of `[A-Za-z0-9._~-]` (URL-safe, log-safe).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

impl Rooms {
    pub fn new(limits: RoomLimits) -> Self {
        Rooms {
            limits: Some(limits),
            ..Default::default()
        }
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub fn peer_count(&self) -> usize {
        self.members.len()
    }

    /// The room a connection joined, if any.
    pub fn room_of(&self, conn: ConnId) -> Option<&str> {
        self.members.get(&conn).map(|m| m.room.as_str())
    }

    /// The peer id a connection joined as, if any.
    pub fn peer_of(&self, conn: ConnId) -> Option<&str> {
        self.members.get(&conn).map(|m| m.peer_id.as_str())
    }

    fn pong(conn: ConnId) -> Vec<Out> {
        vec![Out {
            to: conn,
            msg: ServerMsg::Pong,
        }]
    }

    fn reply(conn: ConnId, code: ErrorCode, message: impl Into<String>) -> Vec<Out> {
        vec![Out {
            to: conn,
            msg: ServerMsg::error(code, message),
        }]
    }

    /// Joins `conn` to `room`. The caller has checked authorisation.
    pub fn join(
        &mut self,
        conn: ConnId,
        room: &str,
        requested_id: Option<&str>,
        ctx: JoinContext,
    ) -> Vec<Out> {
        let limits = self.limits.unwrap_or(RoomLimits {
            peers_per_room: 0,
            rooms: 0,
        });
        if self.members.contains_key(&conn) {
            return Self::reply(
                conn,
                ErrorCode::AlreadyJoined,
                "this connection already joined a room",
            );
        }
        if !valid_name(room) {
            return Self::reply(
                conn,
                ErrorCode::BadRoom,
                "room names are 1-64 characters of A-Z a-z 0-9 . _ ~ -",
            );
        }
        let peer_id = requested_id.unwrap_or(&ctx.generated_id).to_owned();
        if !valid_name(&peer_id) {
            return Self::reply(
                conn,
                ErrorCode::BadPeerId,
                "peer ids are 1-64 characters of A-Z a-z 0-9 . _ ~ -",
            );
        }
        match self.rooms.get(room) {
            Some(peers) => {
                if limits.peers_per_room != 0 && peers.len() >= limits.peers_per_room {
                    return Self::reply(
                        conn,
                        ErrorCode::RoomFull,
                        format!("room holds at most {} peers", limits.peers_per_room),
                    );
                }
                if peers.contains_key(&peer_id) {
                    return Self::reply(
                        conn,
                        ErrorCode::BadPeerId,
                        format!("peer id {peer_id:?} is taken in this room"),
                    );
                }
            }
            None => {
                if limits.rooms != 0 && self.rooms.len() >= limits.rooms {
                    return Self::reply(
                        conn,
                        ErrorCode::ServerFull,
                        format!("server holds at most {} rooms", limits.rooms),
                    );
                }
            }
        }
        let peers = self.rooms.entry(room.to_owned()).or_default();
        let mut out: Vec<Out> = peers
            .values()
            .map(|&c| Out {
                to: c,
                msg: ServerMsg::PeerJoined {
                    peer_id: peer_id.clone(),
                },
            })
            .collect();
        let existing: Vec<String> = peers.keys().cloned().collect();
        peers.insert(peer_id.clone(), conn);
        self.members.insert(
            conn,
            Member {
                room: room.to_owned(),
                peer_id: peer_id.clone(),
            },
        );
        out.push(Out {
            to: conn,
            msg: ServerMsg::Welcome(Welcome {
                peer_id,
                room: room.to_owned(),
                peers: existing,
                ice_servers: ctx.ice_servers,
                ttl: ctx.ttl,
                version: PROTOCOL_VERSION,
            }),
        });
        out
    }

    /// Routes an offer, answer or candidate to its addressee; other messages are the shell's.
    pub fn route(&mut self, conn: ConnId, msg: ClientMsg) -> Vec<Out> {
        if msg == ClientMsg::Ping {
            // Liveness is answered whether or not the connection joined a room.
            return Self::pong(conn);
        }
        let Some(member) = self.members.get(&conn) else {
            return Self::reply(conn, ErrorCode::NotJoined, "join a room first");
        };
        let (to, deliver) = match msg {
            ClientMsg::Offer { to, sdp } => (
                to,
                ServerMsg::Offer {
                    from: member.peer_id.clone(),
                    sdp,
                },
            ),
            ClientMsg::Answer { to, sdp } => (
                to,
                ServerMsg::Answer {
                    from: member.peer_id.clone(),
                    sdp,
                },
            ),
            ClientMsg::Candidate { to, candidate } => (
                to,
                ServerMsg::Candidate {
                    from: member.peer_id.clone(),
                    candidate,
                },
            ),
            ClientMsg::NatSummary { to, nat } => (
                to,
                ServerMsg::NatSummary {
                    from: member.peer_id.clone(),
                    nat,
                },
            ),
            ClientMsg::Leave => return self.leave(conn),
            ClientMsg::Ping => return Self::pong(conn),
            // Answered by the shell, which owns the clock and mints credentials for `peer_of`.
            ClientMsg::Refresh => return vec![],
            ClientMsg::Join { .. } => {
                return Self::reply(
                    conn,
                    ErrorCode::AlreadyJoined,
                    "this connection already joined a room",
                )
            }
        };
        match self.rooms.get(&member.room).and_then(|p| p.get(&to)) {
            Some(&target) if target != conn => vec![Out {
                to: target,
                msg: deliver,
            }],
            _ => {
                let to: String = to.chars().take(64).collect();
                Self::reply(
                    conn,
                    ErrorCode::UnknownPeer,
                    format!("no peer {to:?} in this room"),
                )
            }
        }
    }

    /// Removes `conn` (disconnect, leave, idle timeout); the room hears `peer-left`.
    pub fn leave(&mut self, conn: ConnId) -> Vec<Out> {
        let Some(m) = self.members.remove(&conn) else {
            return vec![];
        };
        let Some(peers) = self.rooms.get_mut(&m.room) else {
            return vec![];
        };
        peers.remove(&m.peer_id);
        let out = peers
            .values()
            .map(|&c| Out {
                to: c,
                msg: ServerMsg::PeerLeft {
                    peer_id: m.peer_id.clone(),
                },
            })
            .collect();
        if peers.is_empty() {
            self.rooms.remove(&m.room);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(id: &str) -> JoinContext {
        JoinContext {
            generated_id: id.into(),
            ice_servers: vec![],
            ttl: 60,
        }
    }

    fn codes(out: &[Out]) -> Vec<(ConnId, String)> {
        out.iter()
            .map(|o| {
                let v = serde_json::to_value(&o.msg).unwrap();
                let label = match v["type"].as_str().unwrap() {
                    "error" => format!("error:{}", v["code"].as_str().unwrap()),
                    t => t.to_owned(),
                };
                (o.to, label)
            })
            .collect()
    }

    #[test]
    fn join_relay_leave_sequence() {
        let mut r = Rooms::new(RoomLimits {
            peers_per_room: 2,
            rooms: 2,
        });
        // (step, effects as (connection, type))
        let welcome_a = r.join(1, "room1", None, ctx("a"));
        assert_eq!(codes(&welcome_a), [(1, "welcome".into())]);
        assert!(
            matches!(&welcome_a[0].msg, ServerMsg::Welcome(Welcome { peers, .. }) if peers.is_empty())
        );
        let welcome_b = r.join(2, "room1", Some("bob"), ctx("ignored"));
        assert_eq!(
            codes(&welcome_b),
            [(1, "peer-joined".into()), (2, "welcome".into())]
        );
        assert!(
            matches!(&welcome_b[1].msg, ServerMsg::Welcome(Welcome { peers, peer_id, .. }) if peers == &["a"] && peer_id == "bob")
        );

        let cases: Vec<(ConnId, ClientMsg, Vec<(ConnId, &str)>)> = vec![
            (
                2,
                ClientMsg::Offer {
                    to: "a".into(),
                    sdp: "o".into(),
                },
                vec![(1, "offer")],
            ),
            (
                1,
                ClientMsg::Answer {
                    to: "bob".into(),
                    sdp: "a".into(),
                },
                vec![(2, "answer")],
            ),
            (
                1,
                ClientMsg::Candidate {
                    to: "bob".into(),
                    candidate: None,
                },
                vec![(2, "candidate")],
            ),
            (
                1,
                ClientMsg::Offer {
                    to: "carol".into(),
                    sdp: "o".into(),
                },
                vec![(1, "error:unknown-peer")],
            ),
            (
                1,
                ClientMsg::Offer {
                    to: "a".into(),
                    sdp: "o".into(),
                },
                vec![(1, "error:unknown-peer")],
            ),
            (
                9,
                ClientMsg::Offer {
                    to: "a".into(),
                    sdp: "o".into(),
                },
                vec![(9, "error:not-joined")],
            ),
            (9, ClientMsg::Leave, vec![(9, "error:not-joined")]),
            (9, ClientMsg::Ping, vec![(9, "pong")]),
            (1, ClientMsg::Ping, vec![(1, "pong")]),
        ];
        for (conn, msg, want) in cases {
            let got = codes(&r.route(conn, msg.clone()));
            let want: Vec<(ConnId, String)> =
                want.into_iter().map(|(c, s)| (c, s.to_owned())).collect();
            assert_eq!(got, want, "{conn} {msg:?}");
        }
        // `from` is added and the payload passes through untouched.
        let out = r.route(
            2,
            ClientMsg::Candidate {
                to: "a".into(),
                candidate: serde_json::from_value(
                    json!({"candidate":"c","sdpMid":"0","sdpMLineIndex":0}),
                )
                .unwrap(),
            },
        );
        assert_eq!(
            serde_json::to_value(&out[0].msg).unwrap(),
            json!({"type":"candidate","from":"bob","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}})
        );

        // Limits: room full, second room fine, third room refused.
        assert_eq!(
            codes(&r.join(3, "room1", None, ctx("c"))),
            [(3, "error:room-full".into())]
        );
        assert_eq!(
            codes(&r.join(3, "room2", None, ctx("c"))),
            [(3, "welcome".into())]
        );
        assert_eq!(
            codes(&r.join(4, "room3", None, ctx("d"))),
            [(4, "error:server-full".into())]
        );
        assert_eq!(
            codes(&r.join(3, "room2", None, ctx("c"))),
            [(3, "error:already-joined".into())]
        );

        // Leaving tells the room; an empty room disappears.
        assert_eq!(codes(&r.leave(1)), [(2, "peer-left".into())]);
        assert_eq!(codes(&r.leave(2)), []);
        assert_eq!(codes(&r.leave(2)), []);
        assert_eq!((r.room_count(), r.peer_count()), (1, 1));
    }

    #[test]
    fn names_and_ids_are_validated() {
        let mut r = Rooms::new(RoomLimits {
            peers_per_room: 0,
            rooms: 0,
        });
        let long = "x".repeat(65);
        let cases: [(&str, Option<&str>, &str); 6] = [
            ("", None, "error:bad-room"),
            (&long, None, "error:bad-room"),
            ("room with spaces", None, "error:bad-room"),
            ("ok", Some("has/slash"), "error:bad-peer-id"),
            ("ok", Some("me"), "welcome"),
            ("ok", Some("me"), "error:bad-peer-id"),
        ];
        for (i, (room, id, want)) in cases.into_iter().enumerate() {
            let got = codes(&r.join(i as ConnId, room, id, ctx(&format!("g{i}"))));
            assert_eq!(got.last().unwrap().1, want, "{room:?} {id:?}");
        }
    }

    #[test]
    fn rooms_are_isolated() {
        let mut r = Rooms::new(RoomLimits {
            peers_per_room: 0,
            rooms: 0,
        });
        r.join(1, "a", Some("x"), ctx("x"));
        r.join(2, "a", Some("y"), ctx("y"));
        let out = r.join(3, "b", Some("x"), ctx("x"));
        assert_eq!(
            codes(&out),
            [(3, "welcome".into())],
            "no peer-joined crosses rooms"
        );
        // Same peer id in another room is another peer.
        assert_eq!(
            codes(&r.route(
                3,
                ClientMsg::Offer {
                    to: "y".into(),
                    sdp: "s".into()
                }
            )),
            [(3, "error:unknown-peer".into())]
        );
        assert_eq!(codes(&r.leave(3)), []);
    }
}
