//! A fleet of natkit-relays sharing the TURN secret (`relay_servers`): which one a room gets, and
//! which ones are fit to be handed out.
//!
//! The choice is pure ([`pick`]): rendezvous hashing of the room over the relays currently fit,
//! so both peers of a room get the same relay, and a relay that goes away moves only its own
//! rooms. The relays and their fitness come from one of two sources:
//! - a static list ([`Fleet::new`]), checked by [`check`] every [`CHECK_INTERVAL`] ([`watch`]):
//!   an authenticated Allocate that asks for TCP relaying, which a serving natkit-relay refuses
//!   with 442 without creating anything, a draining one with 300 or 486, a dead one not at all;
//! - the relays announcing themselves in the cluster store ([`Fleet::announced`],
//!   `relay_servers = ["cluster"]`), read every [`CHECK_INTERVAL`] by [`watch_cluster`]: each
//!   says how it is reached, its load and whether it drains; one whose announcement expired is
//!   gone; one at 90% of its allocation limit is full.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use natkit_proto::announcement::{self as announce, Announcement};
use natkit_proto::RelayEndpoints;

use natkit_stun_turn::credentials::{self, Secrets};
use natkit_stun_turn::wire::{self, LongTermAuth};
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::message::*;
use stun::textattrs::TextAttribute;
use tracing::{info, warn};

/// How often every relay is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long one check waits for each answer.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(800);

/// What the last check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not checked yet: handed out (a fresh signaling node must not refuse everyone).
    Unknown,
    Serving,
    /// Refuses new allocations (SIGUSR1): not handed out.
    Draining,
    /// No answer: not handed out.
    Down,
    /// Announced at 90% of its allocation limit: not handed out for new rooms.
    Full,
}

impl Health {
    pub fn fit(self) -> bool {
        matches!(self, Health::Unknown | Health::Serving)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Serving => "serving",
            Health::Draining => "draining",
            Health::Down => "down",
            Health::Full => "full",
        }
    }
}

/// One relay of the fleet: its identity (`HOST:PORT`), how clients reach it, its last health.
#[derive(Debug, Clone)]
struct Member {
    id: String,
    endpoints: RelayEndpoints,
    health: Health,
}

/// The relays and their last health.
#[derive(Debug)]
pub struct Fleet {
    members: Mutex<Vec<Member>>,
}

fn score(key: &str, relay: &str) -> u64 {
    // FNV-1a over the key and the address: stable across processes and restarts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(relay.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The relay for `key` (a room) among `fit` (rendezvous hashing on each relay's `HOST:PORT`);
/// `None` when none is fit.
pub fn pick<'a, T: std::fmt::Display + Ord>(key: &str, fit: &'a [T]) -> Option<&'a T> {
    fit.iter().max_by_key(|r| (score(key, &r.to_string()), *r))
}

impl Fleet {
    /// A static list of relays, to be checked by [`watch`].
    pub fn new(relays: &[SocketAddr]) -> Arc<Fleet> {
        Arc::new(Fleet {
            members: Mutex::new(
                relays
                    .iter()
                    .map(|r| Member {
                        id: r.to_string(),
                        endpoints: RelayEndpoints {
                            host: r.ip().to_string(),
                            port: r.port(),
                            tcp: true,
                            tls: None,
                        },
                        health: Health::Unknown,
                    })
                    .collect(),
            ),
        })
    }

    /// The relays announced in the cluster store, kept by [`watch_cluster`]; none at first.
    pub fn announced() -> Arc<Fleet> {
        Arc::new(Fleet {
            members: Mutex::new(Vec::new()),
        })
    }

    pub fn health(&self) -> Vec<(String, Health)> {
        self.members
            .lock()
            .expect("fleet lock")
            .iter()
            .map(|m| (m.id.clone(), m.health))
            .collect()
    }

    /// The relay for a room: among the fit ones; when none is, among all (better a relay that
    /// may be down than none).
    pub fn relay_for(&self, room: &str) -> Option<RelayEndpoints> {
        let members = self.members.lock().expect("fleet lock");
        let ids = |fit: bool| -> Vec<&str> {
            members
                .iter()
                .filter(|m| !fit || m.health.fit())
                .map(|m| m.id.as_str())
                .collect()
        };
        let mut choice = ids(true);
        if choice.is_empty() {
            choice = ids(false);
        }
        let id = *pick(room, &choice)?;
        members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.endpoints.clone())
    }

    /// Replaces the members with what the relays announced.
    pub fn replace(&self, announced: &[Announcement]) {
        let next: Vec<Member> = announced
            .iter()
            .map(|a| Member {
                id: a.addr(),
                endpoints: a.endpoints(),
                health: if a.draining {
                    Health::Draining
                } else if a.full() {
                    Health::Full
                } else {
                    Health::Serving
                },
            })
            .collect();
        let mut members = self.members.lock().expect("fleet lock");
        for m in &next {
            let before = members.iter().find(|o| o.id == m.id).map(|o| o.health);
            if before != Some(m.health) {
                log_change(&m.id, m.health);
            }
        }
        for gone in members
            .iter()
            .filter(|o| !next.iter().any(|m| m.id == o.id))
        {
            warn!(relay = %gone.id, "relay announcement expired or withdrawn; no longer handed out");
        }
        *members = next;
    }

    fn set(&self, relay: SocketAddr, health: Health) {
        let id = relay.to_string();
        let mut members = self.members.lock().expect("fleet lock");
        if let Some(m) = members.iter_mut().find(|m| m.id == id) {
            let before = std::mem::replace(&mut m.health, health);
            if before != health {
                log_change(&id, health);
            }
        }
    }
}

fn log_change(relay: &str, health: Health) {
    if health.fit() {
        info!(%relay, health = health.as_str(), "relay handed out");
    } else {
        warn!(%relay, health = health.as_str(), "relay no longer handed out");
    }
}

fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

async fn transact(sock: &tokio::net::UdpSocket, m: &Message) -> Option<Message> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..2 {
        sock.send(&m.raw).await.ok()?;
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT / 2;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            let mut r = Message::new();
            r.raw = buf[..n].to_vec();
            if r.decode().is_ok() && r.transaction_id == m.transaction_id {
                return Some(r);
            }
        }
    }
    None
}

/// One check of `relay` (see the module docs).
pub async fn check(relay: SocketAddr, secrets: &Secrets, now: u64) -> Health {
    let Ok(sock) = tokio::net::UdpSocket::bind(if relay.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await
    else {
        return Health::Down;
    };
    if sock.connect(relay).await.is_err() {
        return Health::Down;
    }
    let tcp_relaying = || -> Box<dyn Setter> {
        Box::new(turn::proto::reqtrans::RequestedTransport {
            protocol: turn::proto::PROTO_TCP,
        })
    };
    let Some(challenge) = transact(
        &sock,
        &wire::request(METHOD_ALLOCATE, vec![tcp_relaying()], None),
    )
    .await
    else {
        return Health::Down;
    };
    let text = |t| {
        TextAttribute::get_from_as(&challenge, t)
            .ok()
            .map(|a| a.text)
    };
    let (Some(realm), Some(nonce)) = (text(ATTR_REALM), text(ATTR_NONCE)) else {
        return Health::Down;
    };
    let Ok(cred) = credentials::mint(secrets.current(), "natkit-signal-health", 60, now) else {
        return Health::Down;
    };
    let auth = LongTermAuth {
        username: cred.username,
        password: cred.password,
        realm,
        nonce,
    };
    match transact(
        &sock,
        &wire::request(METHOD_ALLOCATE, vec![tcp_relaying()], Some(&auth)),
    )
    .await
    {
        None => Health::Down,
        Some(r) => match error_code(&r) {
            Some(300) | Some(486) => Health::Draining,
            _ => Health::Serving,
        },
    }
}

/// Checks every relay of `fleet` every [`CHECK_INTERVAL`], forever.
pub async fn watch(fleet: Arc<Fleet>, secrets: Secrets) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let now = natkit_daemon::unix_now();
        let relays: Vec<SocketAddr> = fleet
            .health()
            .iter()
            .filter_map(|(id, _)| id.parse().ok())
            .collect();
        for relay in relays {
            let h = check(relay, &secrets, now).await;
            fleet.set(relay, h);
        }
    }
}

/// Reads the relays' announcements from the Redis at `url` every [`CHECK_INTERVAL`] into
/// `fleet`, forever; forgets (and removes from the set) those whose announcement expired. While
/// Redis is out of reach the last relays known stay handed out.
pub async fn watch_cluster(fleet: Arc<Fleet>, url: String) {
    let Ok(client) = redis::Client::open(url.as_str()) else {
        warn!("cluster URL not usable; no relay is handed out");
        return;
    };
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    let mut conn = None;
    loop {
        tick.tick().await;
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        let read = async {
            let ids: Vec<String> = redis::cmd("SMEMBERS")
                .arg(announce::RELAYS)
                .query_async(c)
                .await?;
            if ids.is_empty() {
                return Ok::<_, redis::RedisError>(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|i| announce::key(i)).collect();
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(c).await?;
            let mut found = Vec::new();
            for (id, v) in ids.iter().zip(values) {
                match v.and_then(|v| serde_json::from_str::<Announcement>(&v).ok()) {
                    Some(a) => found.push(a),
                    None => {
                        let _: i64 = redis::cmd("SREM")
                            .arg(announce::RELAYS)
                            .arg(id)
                            .query_async(c)
                            .await?;
                    }
                }
            }
            Ok(found)
        };
        match tokio::time::timeout(CHECK_INTERVAL, read).await {
            Ok(Ok(found)) => fleet.replace(&found),
            _ => conn = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_keep_their_relay_and_only_a_lost_relays_rooms_move() {
        let relays: Vec<SocketAddr> = (1..=3)
            .map(|i| format!("203.0.113.{i}:3478").parse().unwrap())
            .collect();
        let rooms: Vec<String> = (0..300).map(|i| format!("room{i}")).collect();
        let before: Vec<SocketAddr> = rooms.iter().map(|r| *pick(r, &relays).unwrap()).collect();
        // Stable: the same answer every time, so both peers of a room meet on one relay.
        for (r, b) in rooms.iter().zip(&before) {
            assert_eq!(pick(r, &relays), Some(b));
        }
        // Spread: every relay gets a fair share.
        for relay in &relays {
            let n = before.iter().filter(|b| *b == relay).count();
            assert!((60..=140).contains(&n), "{relay}: {n} of 300 rooms");
        }
        // One relay leaves: only its rooms move.
        let fewer = &relays[1..];
        for (r, b) in rooms.iter().zip(&before) {
            let after = *pick(r, fewer).unwrap();
            if *b != relays[0] {
                assert_eq!(after, *b, "{r} moved although its relay stayed");
            }
        }
        assert_eq!(pick::<SocketAddr>("x", &[]), None);
    }

    fn host(e: Option<RelayEndpoints>) -> String {
        e.map(|e| format!("{}:{}", e.host, e.port))
            .unwrap_or_default()
    }

    #[test]
    fn unfit_relays_are_not_handed_out_unless_none_is_fit() {
        let a: SocketAddr = "203.0.113.1:3478".parse().unwrap();
        let b: SocketAddr = "203.0.113.2:3478".parse().unwrap();
        let fleet = Fleet::new(&[a, b]);
        let room_of_a = (0..)
            .map(|i| format!("r{i}"))
            .find(|r| host(fleet.relay_for(r)) == a.to_string())
            .unwrap();
        fleet.set(a, Health::Draining);
        assert_eq!(host(fleet.relay_for(&room_of_a)), b.to_string());
        fleet.set(b, Health::Down);
        assert!(
            fleet.relay_for(&room_of_a).is_some(),
            "none fit: one of all"
        );
        fleet.set(a, Health::Serving);
        assert_eq!(host(fleet.relay_for(&room_of_a)), a.to_string());
    }

    #[test]
    fn announced_relays_table() {
        let ann = |i: u8, allocations: u64, draining: bool| Announcement {
            host: format!("203.0.113.{i}"),
            port: 3478,
            tcp: true,
            tls: (i == 2).then(|| ("relay2.example.org".to_owned(), 5349)),
            allocations,
            capacity: 100,
            draining,
        };
        let fleet = Fleet::announced();
        assert_eq!(fleet.relay_for("r"), None, "nothing announced yet");
        fleet.replace(&[ann(1, 0, false), ann(2, 0, false)]);
        let rooms: Vec<String> = (0..50).map(|i| format!("room{i}")).collect();
        let on = |fleet: &Fleet, i: u8| {
            rooms
                .iter()
                .filter(|r| host(fleet.relay_for(r)) == format!("203.0.113.{i}:3478"))
                .count()
        };
        assert!(on(&fleet, 1) > 0 && on(&fleet, 2) > 0);
        // What a relay announces is what its peers get (relay 2's turns: name).
        let of_2 = rooms
            .iter()
            .find(|r| host(fleet.relay_for(r)).starts_with("203.0.113.2"))
            .unwrap();
        assert_eq!(
            fleet.relay_for(of_2).unwrap().tls.unwrap().0,
            "relay2.example.org"
        );
        // (announcements, rooms on relay 1, rooms on relay 2)
        let cases: [(Vec<Announcement>, usize, usize); 4] = [
            (vec![ann(1, 0, true), ann(2, 0, false)], 0, 50),
            (vec![ann(1, 95, false), ann(2, 10, false)], 0, 50),
            (vec![ann(2, 10, false)], 0, 50),
            (
                vec![ann(1, 89, false), ann(2, 0, false)],
                on(&fleet, 1),
                on(&fleet, 2),
            ),
        ];
        for (i, (list, want1, want2)) in cases.into_iter().enumerate() {
            fleet.replace(&list);
            assert_eq!((on(&fleet, 1), on(&fleet, 2)), (want1, want2), "case {i}");
        }
        assert_eq!(fleet.health().len(), 2);
    }
}
