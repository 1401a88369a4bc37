//! Signaling across nodes: what one node tells another through the cluster store (Redis).
//!
//! This module is the pure part: the frames published to a node's inbox channel, and the names
//! of the keys. [`store`] is the shell that talks to Redis. The design (what is stored, what is
//! published, the delivery guarantee, what a node or Redis failure costs) is docs/cluster.md.
//!
//! A frame is lines joined by `\n` (room names and peer ids never contain one):
//! - `m ROOM TO TEXT`: a message for local peer `TO` in `ROOM`; `TEXT` is the server message as
//!   the peer receives it (`from` already added), passed through untouched.
//! - `j ROOM PEER NODE SEQ`: `PEER` joined `ROOM` on `NODE` (store change number `SEQ`).
//! - `l ROOM PEER SEQ`: `PEER` left `ROOM`.
//!
//! `j` and `l` are published by the store's scripts, atomically with the change they announce;
//! `m` by the sending node, one publish per message.

pub mod store;

use thiserror::Error;

/// Every key and channel natkit uses starts with this.
pub const PREFIX: &str = "natkit:";

/// The channel a node reads its frames from.
pub fn inbox(node: &str) -> String {
    format!("{PREFIX}inbox:{node}")
}

/// A frame from a node's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Message {
        room: &'a str,
        to: &'a str,
        text: &'a str,
    },
    Joined {
        room: &'a str,
        peer: &'a str,
        node: &'a str,
        seq: u64,
    },
    Left {
        room: &'a str,
        peer: &'a str,
        seq: u64,
    },
}

/// A frame that is not one of the three kinds (a node of another version, or a stray publish
/// to the channel).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("cluster frame not understood ({what})")]
pub struct FrameError {
    what: &'static str,
}

fn bad(what: &'static str) -> FrameError {
    FrameError { what }
}

/// The frame carrying `text` to peer `to` of `room`.
pub fn message(room: &str, to: &str, text: &str) -> String {
    let mut s = String::with_capacity(4 + room.len() + to.len() + text.len());
    s.push_str("m\n");
    s.push_str(room);
    s.push('\n');
    s.push_str(to);
    s.push('\n');
    s.push_str(text);
    s
}

/// Reads a frame. Names are checked as a join checks them, so nothing odd reaches the rooms.
pub fn parse(payload: &str) -> Result<Frame<'_>, FrameError> {
    fn name(s: Option<&str>) -> Result<&str, FrameError> {
        s.filter(|n| crate::rooms::valid_name(n))
            .ok_or(bad("bad room, peer or node name"))
    }
    let seq = |s: Option<&str>| -> Result<u64, FrameError> {
        s.and_then(|v| v.parse().ok())
            .ok_or(bad("bad sequence number"))
    };
    let (kind, rest) = payload.split_once('\n').ok_or(bad("no kind"))?;
    match kind {
        "m" => {
            let mut parts = rest.splitn(3, '\n');
            let room = name(parts.next())?;
            let to = name(parts.next())?;
            let text = parts.next().ok_or(bad("no message"))?;
            Ok(Frame::Message { room, to, text })
        }
        "j" => {
            let mut parts = rest.split('\n');
            let f = Frame::Joined {
                room: name(parts.next())?,
                peer: name(parts.next())?,
                node: name(parts.next())?,
                seq: seq(parts.next())?,
            };
            parts.next().map_or(Ok(f), |_| Err(bad("trailing fields")))
        }
        "l" => {
            let mut parts = rest.split('\n');
            let f = Frame::Left {
                room: name(parts.next())?,
                peer: name(parts.next())?,
                seq: seq(parts.next())?,
            };
            parts.next().map_or(Ok(f), |_| Err(bad("trailing fields")))
        }
        _ => Err(bad("unknown kind")),
    }
}

/// A fresh node id: 12 characters a room name could hold, unique enough among live nodes.
pub fn node_id() -> String {
    crate::rooms::random_name(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_table() {
        let text = r#"{"type":"offer","from":"a","sdp":"v=0\r\nline\nwith newline"}"#;
        let m = message("room1", "bob", text);
        assert_eq!(
            parse(&m),
            Ok(Frame::Message {
                room: "room1",
                to: "bob",
                text
            })
        );
        let cases: &[(&str, Result<Frame, &str>)] = &[
            (
                "j\nr\np\nn1\n42",
                Ok(Frame::Joined {
                    room: "r",
                    peer: "p",
                    node: "n1",
                    seq: 42,
                }),
            ),
            (
                "l\nr\np\n7",
                Ok(Frame::Left {
                    room: "r",
                    peer: "p",
                    seq: 7,
                }),
            ),
            (
                "m\nr\np\n",
                Ok(Frame::Message {
                    room: "r",
                    to: "p",
                    text: "",
                }),
            ),
            ("", Err("no kind")),
            ("x\nr\np", Err("unknown kind")),
            ("m\nr\np", Err("no message")),
            ("m\nr r\np\n{}", Err("bad room, peer or node name")),
            ("j\nr\np\nn1", Err("bad sequence number")),
            ("j\nr\np\nn1\n-1", Err("bad sequence number")),
            ("j\nr\np\nn1\n1\nextra", Err("trailing fields")),
            ("l\nr\n\n1", Err("bad room, peer or node name")),
            ("l\nr\np\n1\n2", Err("trailing fields")),
        ];
        for (payload, want) in cases {
            let got = parse(payload).map_err(|e| e.what);
            assert_eq!(&got, want, "{payload:?}");
        }
    }

    #[test]
    fn node_ids_are_valid_names() {
        let a = node_id();
        assert!(crate::rooms::valid_name(&a) && a.len() == 12);
        assert_ne!(a, node_id());
    }
}
