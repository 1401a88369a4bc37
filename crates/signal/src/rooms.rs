//! Room routing as a pure state machine: a client message in, addressed server messages out.
//!
//! Connections are identified by a [`ConnId`] the shell assigns; peers by ids unique within their
//! room. Messages are delivered to the addressed peer only, with `from` added; nothing is ever
//! broadcast except `peer-joined`/`peer-left` to the room.
//!
//! Clustered (`--cluster`, docs/cluster.md), a room's peers sit on several nodes. This node keeps
//! a view of every room it has a local peer in: local seats (connections) and remote seats (the
//! node that holds the peer). A join is two steps, [`Rooms::begin_join`] (local checks) and
//! [`Rooms::finish_join`] (the cluster store's verdict with a snapshot of the room); the store's
//! membership changes arrive as [`Rooms::remote_joined`] / [`Rooms::remote_left`], each with the
//! store's sequence number so that a stale one (older than a snapshot) is ignored; those that
//! arrive while a room's first join waits for the store are held and replayed over its snapshot. What must go
//! to the store or another node is queued as a [`ClusterOp`] for the shell
//! ([`Rooms::take_ops`]), in the order it happened.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use natkit_proto::{ClientMsg, ErrorCode, IceServer, ServerMsg, Welcome, PROTOCOL_VERSION};

pub type ConnId = u64;

/// Room and server limits. 0 means unlimited. Clustered, the store enforces them.
#[derive(Debug, Clone, Copy, Default)]
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

/// Everything one step of the rooms decided: the messages to deliver, and what the shell acts
/// on without reading them back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routed {
    pub outs: Vec<Out>,
    /// The sender was seated as this peer id (its join succeeded).
    pub seated: Option<String>,
    /// The sender's request was refused with this code (its error is in `outs`).
    pub refused: Option<ErrorCode>,
    /// The sender's message was delivered to another local peer (a remote one becomes a
    /// [`ClusterOp::Message`]).
    pub relayed: bool,
}

impl Routed {
    /// Messages to deliver, nothing else decided.
    pub fn send(outs: Vec<Out>) -> Self {
        Routed {
            outs,
            ..Default::default()
        }
    }
}

impl AsRef<[Out]> for Routed {
    fn as_ref(&self) -> &[Out] {
        &self.outs
    }
}

/// What the shell must tell the cluster, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterOp {
    /// A message (`text`, `from` already added) for `to` in `room`, held by `node`.
    Message {
        sender: ConnId,
        node: Arc<str>,
        room: String,
        to: String,
        text: String,
    },
    /// A local peer left `room`: the store forgets it and tells the other nodes.
    Left { room: String, peer: String },
}

/// The cluster store's answer to a join.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinVerdict {
    /// Seated. `seats` is the room as the store has it after the join (peer id, node), at
    /// sequence number `seq`; the joining peer is among them.
    Admitted {
        seq: u64,
        seats: Vec<(String, String)>,
    },
    Refused {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone)]
struct Member {
    room: String,
    peer_id: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Seat {
    Local(ConnId),
    Remote(Arc<str>),
}

/// A room's peers by id, in id order (`peers` in welcome come out stable): a sorted vector, as
/// rooms are small (a BTreeMap's first node alone is ~0.5 KiB, per room).
#[derive(Debug, Default)]
struct Seats(Vec<(String, Seat)>);

impl Seats {
    fn find(&self, peer: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(p, _)| p.as_str().cmp(peer))
    }

    fn get(&self, peer: &str) -> Option<&Seat> {
        self.find(peer).ok().map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, peer: &str) -> Option<&mut Seat> {
        self.find(peer).ok().map(|i| &mut self.0[i].1)
    }

    fn insert(&mut self, peer: String, seat: Seat) {
        match self.find(&peer) {
            Ok(i) => self.0[i].1 = seat,
            Err(i) => {
                // Grow by little: most rooms hold two peers.
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(1.max(self.0.len() / 2));
                }
                self.0.insert(i, (peer, seat))
            }
        }
    }

    fn remove(&mut self, peer: &str) {
        if let Ok(i) = self.find(peer) {
            self.0.remove(i);
            if self.0.capacity() > 2 * self.0.len() + 4 {
                self.0.shrink_to_fit();
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(p, _)| p)
    }

    fn values(&self) -> impl Iterator<Item = &Seat> {
        self.0.iter().map(|(_, s)| s)
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &Seat)> {
        self.0.iter().map(|(p, s)| (p, s))
    }
}

#[derive(Debug, Default)]
struct Room {
    /// peer id -> where it sits
    seats: Seats,
    /// The store's sequence number of the newest membership change applied (0 single-node).
    seq: u64,
    /// Joins of this room waiting for the store's verdict.
    pending: usize,
    /// Clustered: the view holds a snapshot from the store (a join's verdict or a resync).
    /// Until then the store's changes wait in `early`, to be replayed over the first snapshot.
    synced: bool,
    /// The store's changes that arrived before the first snapshot, with their change numbers:
    /// the verdict and the changes come over different connections to the store, in either
    /// order. At most [`MAX_EARLY_CHANGES`]; past that the oldest go (they are the likeliest
    /// to be older than the snapshot anyway).
    early: Vec<(u64, Change)>,
}

/// How many of a room's changes are kept while its first join waits for the store.
const MAX_EARLY_CHANGES: usize = 256;

/// A membership change the store announced.
#[derive(Debug, Clone)]
enum Change {
    Joined { peer: String, node: Arc<str> },
    Left { peer: String },
}

impl Room {
    fn local_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.seats.values().filter_map(|s| match s {
            Seat::Local(c) => Some(*c),
            Seat::Remote(_) => None,
        })
    }

    fn tell_locals(&self, msg: &ServerMsg) -> Vec<Out> {
        self.local_conns()
            .map(|c| Out {
                to: c,
                msg: msg.clone(),
            })
            .collect()
    }

    /// Applies the store's change number `seq` unless the view has seen it (then nothing).
    fn apply(&mut self, seq: u64, change: Change) -> Vec<Out> {
        if seq <= self.seq {
            return vec![];
        }
        self.seq = seq;
        match change {
            Change::Joined { peer, node } => match self.seats.get_mut(&peer) {
                // A peer whose node died, reconnected through another: same peer, new node.
                Some(Seat::Remote(at)) => {
                    *at = node;
                    vec![]
                }
                Some(Seat::Local(_)) => vec![],
                None => {
                    let msg = ServerMsg::PeerJoined {
                        peer_id: peer.clone(),
                    };
                    self.seats.insert(peer, Seat::Remote(node));
                    self.tell_locals(&msg)
                }
            },
            Change::Left { peer } => {
                if !matches!(self.seats.get(&peer), Some(Seat::Remote(_))) {
                    return vec![];
                }
                self.seats.remove(&peer);
                self.tell_locals(&ServerMsg::PeerLeft { peer_id: peer })
            }
        }
    }

    /// Nothing here for this node to keep a view of.
    fn forgettable(&self) -> bool {
        self.pending == 0 && self.local_conns().next().is_none()
    }
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
    limits: RoomLimits,
    /// This node's id in the cluster; `None` single-node.
    node: Option<Arc<str>>,
    rooms: HashMap<String, Room>,
    members: HashMap<ConnId, Member>,
    /// Joins waiting for the store (clustered only).
    pending: HashMap<ConnId, Member>,
    ops: Vec<ClusterOp>,
}

/// Room names and peer ids: the protocol's rule.
pub use natkit_proto::valid_name;

/// A random name of `len` characters that [`valid_name`] accepts, without look-alikes (no `l`,
/// `o`, `0`, `1`): generated peer ids and node ids.
pub fn random_name(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Rooms {
    pub fn new(limits: RoomLimits) -> Self {
        Rooms {
            limits,
            ..Default::default()
        }
    }

    /// Rooms for node `node` of a cluster: limits are the store's, joins go through it.
    pub fn clustered(node: &str) -> Self {
        Rooms {
            node: Some(node.into()),
            ..Default::default()
        }
    }

    /// Rooms this node has a view of (single-node: every room).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Peers connected to this node.
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

    fn pong(conn: ConnId) -> Routed {
        Routed::send(vec![Out {
            to: conn,
            msg: ServerMsg::Pong,
        }])
    }

    fn reply(conn: ConnId, code: ErrorCode, message: impl Into<String>) -> Routed {
        Routed {
            outs: vec![Out {
                to: conn,
                msg: ServerMsg::error(code, message),
            }],
            refused: Some(code),
            ..Default::default()
        }
    }

    /// The checks every join passes before limits: one join per connection, valid names, an id
    /// not held on this node. The peer id to join as.
    fn check(
        &self,
        conn: ConnId,
        room: &str,
        requested_id: Option<&str>,
        generated_id: &str,
    ) -> Result<String, Routed> {
        if self.members.contains_key(&conn) || self.pending.contains_key(&conn) {
            return Err(Self::reply(
                conn,
                ErrorCode::AlreadyJoined,
                "this connection already joined a room",
            ));
        }
        if !valid_name(room) {
            return Err(Self::reply(
                conn,
                ErrorCode::BadRoom,
                "room names are 1-64 characters of A-Z a-z 0-9 . _ ~ -",
            ));
        }
        let peer_id = requested_id.unwrap_or(generated_id).to_owned();
        if !valid_name(&peer_id) {
            return Err(Self::reply(
                conn,
                ErrorCode::BadPeerId,
                "peer ids are 1-64 characters of A-Z a-z 0-9 . _ ~ -",
            ));
        }
        let taken_here = self.rooms.get(room).is_some_and(|r| {
            matches!(r.seats.get(&peer_id), Some(Seat::Local(_)))
                || self
                    .pending
                    .values()
                    .any(|m| m.room == room && m.peer_id == peer_id)
        });
        if taken_here {
            return Err(Self::taken(conn, &peer_id));
        }
        Ok(peer_id)
    }

    fn taken(conn: ConnId, peer_id: &str) -> Routed {
        Self::reply(
            conn,
            ErrorCode::BadPeerId,
            format!("peer id {peer_id:?} is taken in this room"),
        )
    }

    /// Seats `conn` as `peer_id` in `room` (which exists): `peer-joined` to the local peers,
    /// `welcome` listing everyone else.
    fn seat(&mut self, conn: ConnId, room: &str, peer_id: String, ctx: JoinContext) -> Routed {
        let r = self.rooms.get_mut(room).expect("room exists");
        let mut out = r.tell_locals(&ServerMsg::PeerJoined {
            peer_id: peer_id.clone(),
        });
        let existing: Vec<String> = r.seats.keys().filter(|p| **p != peer_id).cloned().collect();
        r.seats.insert(peer_id.clone(), Seat::Local(conn));
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
                peer_id: peer_id.clone(),
                room: room.to_owned(),
                peers: existing,
                ice_servers: ctx.ice_servers,
                ttl: ctx.ttl,
                version: PROTOCOL_VERSION,
            }),
        });
        Routed {
            outs: out,
            seated: Some(peer_id),
            ..Default::default()
        }
    }

    /// Joins `conn` to `room` on a single node. The caller has checked authorisation.
    pub fn join(
        &mut self,
        conn: ConnId,
        room: &str,
        requested_id: Option<&str>,
        ctx: JoinContext,
    ) -> Routed {
        debug_assert!(self.node.is_none(), "clustered joins use begin/finish_join");
        let peer_id = match self.check(conn, room, requested_id, &ctx.generated_id) {
            Ok(p) => p,
            Err(out) => return out,
        };
        let limits = self.limits;
        match self.rooms.get(room) {
            Some(r) if limits.peers_per_room != 0 && r.seats.len() >= limits.peers_per_room => {
                return Self::reply(
                    conn,
                    ErrorCode::RoomFull,
                    format!("room holds at most {} peers", limits.peers_per_room),
                );
            }
            None if limits.rooms != 0 && self.rooms.len() >= limits.rooms => {
                return Self::reply(
                    conn,
                    ErrorCode::ServerFull,
                    format!("server holds at most {} rooms", limits.rooms),
                );
            }
            _ => {}
        }
        self.rooms.entry(room.to_owned()).or_default();
        self.seat(conn, room, peer_id, ctx)
    }

    /// The local half of a clustered join: the peer id to ask the store for, or the refusal.
    /// Until [`Rooms::finish_join`], the room's changes are tracked for this connection.
    pub fn begin_join(
        &mut self,
        conn: ConnId,
        room: &str,
        requested_id: Option<&str>,
        generated_id: &str,
    ) -> Result<String, Routed> {
        let peer_id = self.check(conn, room, requested_id, generated_id)?;
        self.rooms.entry(room.to_owned()).or_default().pending += 1;
        self.pending.insert(
            conn,
            Member {
                room: room.to_owned(),
                peer_id: peer_id.clone(),
            },
        );
        Ok(peer_id)
    }

    /// The store's verdict on `conn`'s pending join.
    pub fn finish_join(&mut self, conn: ConnId, verdict: JoinVerdict, ctx: JoinContext) -> Routed {
        let Some(m) = self.pending.remove(&conn) else {
            return Routed::default();
        };
        if let Some(r) = self.rooms.get_mut(&m.room) {
            r.pending -= 1;
        }
        match verdict {
            JoinVerdict::Refused { code, message } => {
                self.forget_if_unused(&m.room);
                Self::reply(conn, code, message)
            }
            JoinVerdict::Admitted { seq, seats } => {
                let mut seen = self.apply_snapshot(&m.room, seq, &seats, Some(&m.peer_id));
                let mut seated = self.seat(conn, &m.room, m.peer_id, ctx);
                seen.append(&mut seated.outs);
                Routed {
                    outs: seen,
                    ..seated
                }
            }
        }
    }

    fn forget_if_unused(&mut self, room: &str) {
        if self.rooms.get(room).is_some_and(Room::forgettable) {
            self.rooms.remove(room);
        }
    }

    /// Brings the remote seats of `room` in line with the store's `seats` at `seq` (a join's
    /// verdict, or a resync after the store came back), telling the local peers what changed.
    /// `joining` is left out: it is being seated. Older than what the view has: ignored.
    pub fn apply_snapshot(
        &mut self,
        room: &str,
        seq: u64,
        seats: &[(String, String)],
        joining: Option<&str>,
    ) -> Vec<Out> {
        self.snapshot(room, seq, seats, joining, false)
    }

    /// [`Rooms::apply_snapshot`] for a resync: what the store has now wins, whatever this view
    /// saw before (frames may have been lost while the store was out of reach).
    pub fn resync_snapshot(
        &mut self,
        room: &str,
        seq: u64,
        seats: &[(String, String)],
    ) -> Vec<Out> {
        self.snapshot(room, seq, seats, None, true)
    }

    /// The highest change number applied to any room here.
    pub fn max_seq(&self) -> u64 {
        self.rooms.values().map(|r| r.seq).max().unwrap_or(0)
    }

    fn snapshot(
        &mut self,
        room: &str,
        seq: u64,
        seats: &[(String, String)],
        joining: Option<&str>,
        force: bool,
    ) -> Vec<Out> {
        let Some(own) = self.node.clone() else {
            return vec![];
        };
        let Some(r) = self.rooms.get_mut(room) else {
            return vec![];
        };
        if seq <= r.seq && !force {
            return vec![];
        }
        r.seq = r.seq.max(seq);
        let remote: BTreeMap<&str, &str> = seats
            .iter()
            .filter(|(p, n)| *n != *own && Some(p.as_str()) != joining)
            .map(|(p, n)| (p.as_str(), n.as_str()))
            .collect();
        let gone: Vec<String> = r
            .seats
            .iter()
            .filter(|(p, s)| matches!(s, Seat::Remote(_)) && !remote.contains_key(p.as_str()))
            .map(|(p, _)| p.clone())
            .collect();
        let mut out = Vec::new();
        for p in gone {
            r.seats.remove(&p);
            out.extend(r.tell_locals(&ServerMsg::PeerLeft { peer_id: p }));
        }
        for (p, n) in remote {
            match r.seats.get_mut(p) {
                Some(Seat::Remote(at)) => *at = n.into(),
                // Held here and, per the store, elsewhere: the shell settles that (resync).
                Some(Seat::Local(_)) => {}
                None => {
                    r.seats.insert(p.to_owned(), Seat::Remote(n.into()));
                    out.extend(r.tell_locals(&ServerMsg::PeerJoined {
                        peer_id: p.to_owned(),
                    }));
                }
            }
        }
        r.synced = true;
        let mut early = std::mem::take(&mut r.early);
        early.sort_by_key(|(seq, _)| *seq);
        for (seq, change) in early {
            out.extend(r.apply(seq, change));
        }
        out
    }

    /// The store says `peer` joined `room` on `node` (change number `seq`).
    pub fn remote_joined(&mut self, room: &str, peer: &str, node: &str, seq: u64) -> Vec<Out> {
        let change = Change::Joined {
            peer: peer.to_owned(),
            node: node.into(),
        };
        self.remote_change(room, seq, change)
    }

    /// The store says `peer` left `room` (change number `seq`): its node let it go or died.
    pub fn remote_left(&mut self, room: &str, peer: &str, seq: u64) -> Vec<Out> {
        let change = Change::Left {
            peer: peer.to_owned(),
        };
        self.remote_change(room, seq, change)
    }

    /// Applies `change` to the view of `room` if this node has one and has not seen it; held
    /// for the first snapshot while the room's first join waits for the store.
    fn remote_change(&mut self, room: &str, seq: u64, change: Change) -> Vec<Out> {
        let Some(r) = self.rooms.get_mut(room) else {
            return vec![];
        };
        if !r.synced {
            if r.early.len() == MAX_EARLY_CHANGES {
                r.early.remove(0);
            }
            r.early.push((seq, change));
            return vec![];
        }
        r.apply(seq, change)
    }

    /// The local connection of `peer` in `room`, for a message another node forwarded.
    pub fn local_conn(&self, room: &str, peer: &str) -> Option<ConnId> {
        match self.rooms.get(room)?.seats.get(peer)? {
            Seat::Local(c) => Some(*c),
            Seat::Remote(_) => None,
        }
    }

    /// Every local peer as (room, peer id, connection): what this node holds, for a resync.
    pub fn local_members(&self) -> Vec<(String, String, ConnId)> {
        let mut v: Vec<_> = self
            .members
            .iter()
            .map(|(c, m)| (m.room.clone(), m.peer_id.clone(), *c))
            .collect();
        v.sort();
        v
    }

    /// What the shell must tell the cluster since the last call, in order.
    pub fn take_ops(&mut self) -> Vec<ClusterOp> {
        std::mem::take(&mut self.ops)
    }

    /// Routes an offer, answer or candidate to its addressee; other messages are the shell's.
    /// An addressee on another node becomes a [`ClusterOp::Message`].
    pub fn route(&mut self, conn: ConnId, msg: ClientMsg) -> Routed {
        if msg == ClientMsg::Ping {
            // Liveness is answered whether or not the connection joined a room.
            return Self::pong(conn);
        }
        let Some(member) = self.members.get(&conn) else {
            return Self::reply(conn, ErrorCode::NotJoined, "join a room first");
        };
        let from = member.peer_id.clone();
        let (to, deliver) = match msg {
            ClientMsg::Offer { to, sdp } => (to, ServerMsg::Offer { from, sdp }),
            ClientMsg::Answer { to, sdp } => (to, ServerMsg::Answer { from, sdp }),
            ClientMsg::Candidate { to, candidate } => {
                (to, ServerMsg::Candidate { from, candidate })
            }
            ClientMsg::NatSummary { to, nat } => (to, ServerMsg::NatSummary { from, nat }),
            ClientMsg::Leave => return Routed::send(self.leave(conn)),
            ClientMsg::Ping => return Self::pong(conn),
            // Answered by the shell, which owns the clock and mints credentials for `peer_of`.
            ClientMsg::Refresh => return Routed::default(),
            ClientMsg::Join { .. } => {
                return Self::reply(
                    conn,
                    ErrorCode::AlreadyJoined,
                    "this connection already joined a room",
                )
            }
        };
        match self.rooms.get(&member.room).and_then(|r| r.seats.get(&to)) {
            Some(&Seat::Local(target)) if target != conn => Routed {
                outs: vec![Out {
                    to: target,
                    msg: deliver,
                }],
                relayed: true,
                ..Default::default()
            },
            Some(Seat::Remote(node)) => {
                self.ops.push(ClusterOp::Message {
                    sender: conn,
                    node: node.clone(),
                    room: member.room.clone(),
                    to,
                    text: deliver.to_text(),
                });
                Routed::default()
            }
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
        let Some(r) = self.rooms.get_mut(&m.room) else {
            return vec![];
        };
        r.seats.remove(&m.peer_id);
        let out = r.tell_locals(&ServerMsg::PeerLeft {
            peer_id: m.peer_id.clone(),
        });
        if self.node.is_some() {
            self.ops.push(ClusterOp::Left {
                room: m.room.clone(),
                peer: m.peer_id,
            });
        }
        // Single-node, every seat is local and nothing is pending: forgotten once empty.
        self.forget_if_unused(&m.room);
        out
    }
}

#[cfg(test)]
mod tests;
