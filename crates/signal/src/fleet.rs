//! A fleet of natkit-relays sharing the TURN secret (`relay_servers`): which one a room gets, and
//! which ones are fit to be handed out.
//!
//! The choice is pure ([`pick`]): rendezvous hashing of the room over the relays currently fit,
//! so both peers of a room get the same relay, and a relay that goes away moves only its own
//! rooms. Fitness comes from [`check`], run every [`CHECK_INTERVAL`] by [`watch`]: an
//! authenticated Allocate that asks for TCP relaying, which a serving natkit-relay refuses with
//! 442 without creating anything, a draining one with 300 or 486, and a dead one not at all.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
#[repr(u8)]
pub enum Health {
    /// Not checked yet: handed out (a fresh signaling node must not refuse everyone).
    Unknown = 0,
    Serving = 1,
    /// Refuses new allocations (SIGUSR1): not handed out.
    Draining = 2,
    /// No answer: not handed out.
    Down = 3,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Serving,
            2 => Health::Draining,
            3 => Health::Down,
            _ => Health::Unknown,
        }
    }

    pub fn fit(self) -> bool {
        matches!(self, Health::Unknown | Health::Serving)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Serving => "serving",
            Health::Draining => "draining",
            Health::Down => "down",
        }
    }
}

/// The configured relays and their last health.
#[derive(Debug)]
pub struct Fleet {
    relays: Vec<(SocketAddr, AtomicU8)>,
}

fn score(key: &str, relay: SocketAddr) -> u64 {
    // FNV-1a over the key and the address: stable across processes and restarts.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(relay.to_string().bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The relay for `key` (a room) among `fit` (rendezvous hashing); `None` when none is fit.
pub fn pick(key: &str, fit: &[SocketAddr]) -> Option<SocketAddr> {
    fit.iter().copied().max_by_key(|r| (score(key, *r), *r))
}

impl Fleet {
    pub fn new(relays: &[SocketAddr]) -> Arc<Fleet> {
        Arc::new(Fleet {
            relays: relays
                .iter()
                .map(|r| (*r, AtomicU8::new(Health::Unknown as u8)))
                .collect(),
        })
    }

    pub fn health(&self) -> Vec<(SocketAddr, Health)> {
        self.relays
            .iter()
            .map(|(r, h)| (*r, Health::from_u8(h.load(Ordering::Relaxed))))
            .collect()
    }

    /// The relay for a room: among the fit ones; when none is, among all (better a relay that
    /// may be down than none).
    pub fn relay_for(&self, room: &str) -> Option<SocketAddr> {
        let health = self.health();
        let fit: Vec<SocketAddr> = health
            .iter()
            .filter(|(_, h)| h.fit())
            .map(|(r, _)| *r)
            .collect();
        if fit.is_empty() {
            let all: Vec<SocketAddr> = health.iter().map(|(r, _)| *r).collect();
            return pick(room, &all);
        }
        pick(room, &fit)
    }

    fn set(&self, relay: SocketAddr, health: Health) {
        if let Some((_, h)) = self.relays.iter().find(|(r, _)| *r == relay) {
            let before = Health::from_u8(h.swap(health as u8, Ordering::Relaxed));
            if before != health {
                if health.fit() {
                    info!(%relay, health = health.as_str(), "relay handed out again");
                } else {
                    warn!(%relay, health = health.as_str(), "relay no longer handed out");
                }
            }
        }
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
        let relays: Vec<SocketAddr> = fleet.relays.iter().map(|(r, _)| *r).collect();
        for relay in relays {
            let h = check(relay, &secrets, now).await;
            fleet.set(relay, h);
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
        let before: Vec<SocketAddr> = rooms.iter().map(|r| pick(r, &relays).unwrap()).collect();
        // Stable: the same answer every time, so both peers of a room meet on one relay.
        for (r, b) in rooms.iter().zip(&before) {
            assert_eq!(pick(r, &relays), Some(*b));
        }
        // Spread: every relay gets a fair share.
        for relay in &relays {
            let n = before.iter().filter(|b| *b == relay).count();
            assert!((60..=140).contains(&n), "{relay}: {n} of 300 rooms");
        }
        // One relay leaves: only its rooms move.
        let fewer = &relays[1..];
        for (r, b) in rooms.iter().zip(&before) {
            let after = pick(r, fewer).unwrap();
            if *b != relays[0] {
                assert_eq!(after, *b, "{r} moved although its relay stayed");
            }
        }
        assert_eq!(pick("x", &[]), None);
    }

    #[test]
    fn unfit_relays_are_not_handed_out_unless_none_is_fit() {
        let a: SocketAddr = "203.0.113.1:3478".parse().unwrap();
        let b: SocketAddr = "203.0.113.2:3478".parse().unwrap();
        let fleet = Fleet::new(&[a, b]);
        let room_of_a = (0..)
            .map(|i| format!("r{i}"))
            .find(|r| fleet.relay_for(r) == Some(a))
            .unwrap();
        fleet.set(a, Health::Draining);
        assert_eq!(fleet.relay_for(&room_of_a), Some(b));
        fleet.set(b, Health::Down);
        assert!(
            fleet.relay_for(&room_of_a).is_some(),
            "none fit: one of all"
        );
        fleet.set(a, Health::Serving);
        assert_eq!(fleet.relay_for(&room_of_a), Some(a));
    }
}
