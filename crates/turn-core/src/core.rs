//! The relay's protocol core: every STUN and TURN decision, for every transport, with no socket,
//! no task and no clock.
//!
//! A shell (natkit-stun-turn's UDP shell `server` and TCP/TLS shell `stream`) hands
//! [`RelayCore::handle`] one message, the [`FiveTuple`] it came on and `now`; the core answers
//! with an [`Output`]: a reply to the client, a payload for a peer, or a request to open relay
//! ports for an Allocate ([`Output::Open`]), which the shell binds and completes with
//! [`RelayCore::finish_allocate`]. Time passes through [`RelayCore::expire`]; a closed stream
//! connection through [`RelayCore::close`]. The core holds the shell's relay-socket handle `S`
//! and an opaque guard per allocation; dropping the guard is how an allocation's port closes.
//!
//! Methods decided here: the long-term credential mechanism with TURN REST usernames (RFC 8489
//! section 9.2), Allocate (RFC 8656 section 7, EVEN-PORT and RESERVATION-TOKEN from RFC 5766,
//! REQUESTED-ADDRESS-FAMILY from RFC 6156 and the dual allocation of section 7.2: an allocation
//! holds a relayed address in one family or one in each, see [`crate::family`]),
//! Refresh (8), CreatePermission (9), Send (10), ChannelBind and ChannelData (11, 12), Binding and
//! the RFC 5780 answers (sections 6 and 7). Allocations are keyed by the 5-tuple, transport
//! included (RFC 8656 section 2.2).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use natkit_proto::Redacted;
use rand::rngs::StdRng;
use rand::SeedableRng;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::message::*;
use stun::uattrs::UnknownAttributes;
use tracing::{debug, info};

use crate::allocation::{AllocState, Quotas};
use crate::credentials::{Secret, Secrets};
use crate::family::{DefaultFamily, Family, PerFamily};
use crate::nonce::NonceKey;
use crate::observe::{Dropped, Event, Observer};
use crate::policy::{canonical as policy_canonical, Decision, OwnSockets, PeerPolicy};
use crate::ratelimit::KeyedLimiter;
use crate::revocation::Revocations;
use crate::rfc5780::Slot;
use crate::wire;

pub(crate) mod auth;
mod methods;
#[cfg(test)]
mod tests;

pub use crate::five_tuple::{FiveTuple, Transport};
pub use methods::{Bound, PendingAllocate, PortWant};

/// XOR-PEER-ADDRESS attributes one CreatePermission may carry; more get 400.
pub const MAX_PEERS_PER_REQUEST: usize = 16;
/// Attributes one message may carry before it is dropped unread: a legitimate TURN or ICE
/// request has about a dozen, and this bounds the work a message can cost.
pub const MAX_ATTRIBUTES: usize = 40;
/// Unknown attributes listed in a 420's UNKNOWN-ATTRIBUTES: the answer stays small.
const MAX_UNKNOWN_LISTED: usize = 8;
/// Source IPs whose unauthenticated answers are counted at once (bounded memory).
const ANSWER_LIMIT_KEYS: usize = 65_536;
/// RFC 8489 section 14.3: USERNAME is fewer than 509 bytes.
pub const MAX_USERNAME_BYTES: usize = 508;
/// How long a reserved port is held, as RFC 8656 section 7.2 suggests.
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// The decisions' fixed inputs, from the validated configuration and the bound sockets.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub realm: String,
    pub secrets: Secrets,
    pub policy: PeerPolicy,
    /// The IP written into XOR-RELAYED-ADDRESS, per family; a family without one is not
    /// relayed (440, or the other family of a dual allocation alone).
    pub relay_ips: PerFamily<Option<IpAddr>>,
    /// The family an Allocate that asks for none gets.
    pub default_family: DefaultFamily,
    pub max_lifetime: Duration,
    pub user_quota: u32,
    pub total_quota: u32,
    /// Binding answers and challenges per second per source IP over UDP (0 = unlimited).
    pub answers_per_second: u32,
    /// What RESPONSE-ORIGIN and OTHER-ADDRESS say for each UDP socket of each family.
    pub origins: HashMap<(Family, Slot), SocketAddr>,
}

/// A core configuration for tests and fuzzing: relayed addresses on 203.0.113.1, peers in
/// 198.51.100.0/24 allowed.
#[doc(hidden)]
pub fn core_config(secret: &str, user_quota: u32) -> CoreConfig {
    let server: SocketAddr = "203.0.113.1:3478".parse().expect("valid");
    let alt: SocketAddr = "203.0.113.1:3479".parse().expect("valid");
    CoreConfig {
        realm: "natkit".into(),
        secrets: Secrets::new(vec![Secret::new(secret).expect("non-empty")]).expect("one"),
        policy: PeerPolicy::new(
            vec!["198.51.100.0/24".parse().expect("valid")],
            vec![],
            OwnSockets {
                ips: vec![server.ip()],
                ports: vec![3478, 3479],
                ..Default::default()
            },
        ),
        relay_ips: PerFamily {
            v4: Some(server.ip()),
            v6: None,
        },
        default_family: DefaultFamily::Ipv4,
        max_lifetime: crate::allocation::MAX_LIFETIME,
        user_quota,
        total_quota: 100,
        answers_per_second: 0,
        origins: [
            ((Family::V4, Slot::PRIMARY), server),
            ((Family::V4, Slot::ALT_PORT), alt),
        ]
        .into(),
    }
}

/// Where the bytes to relay to a peer are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `input[range]`: ChannelData, relayed without a copy.
    Range(Range<usize>),
    /// Copied out of a Send indication's DATA attribute.
    Owned(Vec<u8>),
}

/// What the shell does with one message.
#[derive(Debug)]
pub enum Output<S> {
    None,
    /// Send `bytes` to the client over its 5-tuple, from socket `from` (UDP; streams answer on
    /// their connection).
    Reply {
        from: Slot,
        bytes: Vec<u8>,
    },
    /// Send the payload from the allocation's relay socket to `peer`.
    ToPeer {
        socket: S,
        peer: SocketAddr,
        payload: Payload,
    },
    /// Open relay ports as asked, then call [`RelayCore::finish_allocate`].
    Open(PendingAllocate<S>),
}

/// What a message changed in an allocation, for the shell to mirror: its peer-to-client path
/// reads its own copy of each allocation's permissions and channels (and the kernel path its
/// maps) instead of reading the core's. Taken with [`RelayCore::take_changes`].
#[derive(Debug, Clone)]
pub enum Change<S> {
    /// The allocation's permissions, channels or lifetime are now `state` (also when it was
    /// created: an empty state).
    Peers {
        five: FiveTuple,
        socket: S,
        relayed: SocketAddr,
        state: AllocState,
    },
    /// A Refresh with lifetime 0 ended the allocation.
    Ended(Ended),
    /// A Refresh with lifetime 0 and REQUESTED-ADDRESS-FAMILY closed one relayed address of a
    /// dual allocation; the other goes on.
    Closed {
        five: FiveTuple,
        relayed: SocketAddr,
    },
}

/// An allocation that ended (expired, revoked, deleted, or its connection closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub five: FiveTuple,
    /// Its relayed addresses (two for a dual allocation).
    pub relayed: Vec<SocketAddr>,
    pub reason: EndReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Expired,
    Revoked,
    Deleted,
    ConnectionClosed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Revoked => "revoked",
            EndReason::Deleted => "deleted by client",
            EndReason::ConnectionClosed => "connection closed",
        }
    }
}

/// A client-controlled string as logs show it: control characters escaped, at most 64
/// characters (a 500-byte username does not become a 500-byte log line).
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

/// Whatever the shell keeps alive for an allocation (its place in a poller); dropped when it ends.
pub type Guard = Box<dyn Send>;

pub(crate) struct Allocation<S> {
    five: FiveTuple,
    username: String,
    user: String,
    key: Vec<u8>,
    allocate_tid: stun::agent::TransactionId,
    /// One relayed address, or one per family (a dual allocation), the first one first.
    legs: Vec<Leg<S>>,
    /// Permissions and channels of every leg: a peer's family says which leg relays to it.
    state: AllocState,
}

/// One relayed address of an allocation and the shell's socket for it.
pub(crate) struct Leg<S> {
    socket: S,
    relayed: SocketAddr,
    _guard: Guard,
}

impl<S> Allocation<S> {
    /// The leg that relays to peers of `family`.
    fn leg(&self, family: Family) -> Option<&Leg<S>> {
        self.legs
            .iter()
            .find(|l| Family::of(l.relayed.ip()) == family)
    }

    fn relayed(&self) -> Vec<SocketAddr> {
        self.legs.iter().map(|l| l.relayed).collect()
    }
}

/// A reserved port: it counts against its user's quota, and goes with the allocation that made
/// it (or when it expires, or when an Allocate takes it).
struct Reservation<S> {
    socket: S,
    family: Family,
    port: u16,
    expires: Instant,
    user: String,
    owner: FiveTuple,
}

/// Every decision of the relay and the state they need. `S` is the shell's handle of a relay
/// socket (`Arc<UdpSocket>` in the server, a port number in tests).
pub struct RelayCore<S> {
    cfg: CoreConfig,
    nonce_key: NonceKey,
    /// Reservation tokens come from here (a CSPRNG seeded by the shell).
    rng: StdRng,
    allocations: HashMap<FiveTuple, Allocation<S>>,
    /// The relayed addresses of `allocations` (the peer policy's "really allocated").
    relayed: HashSet<SocketAddr>,
    quotas: Quotas,
    /// Odd ports held for a later Allocate with RESERVATION-TOKEN (RFC 8656 section 14.9).
    reservations: HashMap<[u8; 8], Reservation<S>>,
    /// Answers that need no credential (Binding, 401 challenges) per UDP source IP: a spoofed
    /// source cannot turn the relay into a reflector. Streams cannot be spoofed.
    answers: KeyedLimiter<IpAddr>,
    revoked: Revocations,
    /// Where counted events go (the shell's metrics).
    observer: Box<dyn Observer>,
    /// Draining: new allocations are refused, sent to this relay when one is known.
    drain: Option<Drain>,
    /// What messages changed since the shell last took them.
    changes: Vec<Change<S>>,
}

/// A relay that is draining (SIGUSR1): existing allocations go on, new ones are refused with 300
/// Try Alternate and ALTERNATE-SERVER when another relay is known, else 486.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub alternate: Option<SocketAddr>,
}

impl<S: Clone> RelayCore<S> {
    /// A core with no allocation. `seed` is all the randomness it uses (the nonce key,
    /// reservation tokens): the shell passes 32 random bytes, tests a constant, so a test's run
    /// is the same every time.
    pub fn new(cfg: CoreConfig, observer: impl Observer + 'static, seed: [u8; 32]) -> Self {
        let mut rng = StdRng::from_seed(seed);
        RelayCore {
            nonce_key: NonceKey::from_rng(&mut rng),
            rng,
            allocations: HashMap::new(),
            relayed: HashSet::new(),
            quotas: Quotas::new(cfg.user_quota, cfg.total_quota),
            reservations: HashMap::new(),
            answers: KeyedLimiter::per_second(
                cfg.answers_per_second,
                cfg.answers_per_second.saturating_mul(2),
                ANSWER_LIMIT_KEYS,
            ),
            revoked: Revocations::default(),
            observer: Box::new(observer),
            drain: None,
            changes: Vec::new(),
            cfg,
        }
    }

    /// Starts draining: from now on Allocate is refused (see [`Drain`]); everything else goes on.
    pub fn start_drain(&mut self, drain: Drain) {
        if self.drain.is_none() {
            info!(alternate = ?drain.alternate, allocations = self.allocations.len(), "draining: new allocations are refused");
        }
        self.drain = Some(drain);
        self.observe(Event::Draining);
    }

    pub fn draining(&self) -> Option<Drain> {
        self.drain
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    fn observe(&self, event: Event) {
        self.observer.observe(event);
    }

    fn dropped(&self, reason: Dropped) {
        self.observe(Event::Dropped(reason));
    }

    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }

    pub fn has_allocation(&self, five: &FiveTuple) -> bool {
        self.allocations.contains_key(five)
    }

    /// What the messages handled since the last call changed, in order. The shell takes them
    /// after each batch, before it sends the answers, so a peer's path never lags an answer the
    /// client has seen.
    pub fn take_changes(&mut self) -> Vec<Change<S>> {
        std::mem::take(&mut self.changes)
    }

    /// Records that `five`'s allocation now relays as its state says.
    fn changed(&mut self, five: FiveTuple) {
        if let Some(a) = self.allocations.get(&five) {
            for leg in &a.legs {
                self.changes.push(Change::Peers {
                    five,
                    socket: leg.socket.clone(),
                    relayed: leg.relayed,
                    state: a.state.clone(),
                });
            }
        }
    }

    /// Replaces the revoked users; their allocations end at the next [`RelayCore::expire`].
    pub fn set_revocations(&mut self, revoked: Revocations) {
        self.revoked = revoked;
    }

    /// Decides what to do with one message that arrived on `slot` (UDP) or on a stream
    /// connection (then `slot` is [`Slot::PRIMARY`]) over `five`.
    pub fn handle(
        &mut self,
        slot: Slot,
        five: FiveTuple,
        buf: &[u8],
        now: Instant,
        unix: u64,
    ) -> Output<S> {
        let Some(&first) = buf.first() else {
            self.dropped(Dropped::NotStun);
            return Output::None;
        };
        if wire::is_channel_data(first) {
            if slot != Slot::PRIMARY {
                self.dropped(Dropped::Unexpected);
                return Output::None;
            }
            return self.handle_channel_data(buf, five, now);
        }
        if first & 0xc0 != 0 || !is_message(buf) {
            self.dropped(Dropped::NotStun);
            return Output::None;
        }
        // Counted on the raw bytes before anything is decoded: a datagram of 10,000 attributes
        // used to cost 13 ms of CPU and a 20-32 KB 420 answer.
        if wire::attribute_count(buf) > MAX_ATTRIBUTES {
            self.dropped(Dropped::TooManyAttributes);
            return Output::None;
        }
        let mut m = Message::new();
        m.raw = buf.to_vec();
        if m.decode().is_err() {
            self.dropped(Dropped::Malformed);
            return Output::None;
        }
        if m.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&m).is_err() {
            self.dropped(Dropped::BadFingerprint);
            return Output::None;
        }
        // What anyone gets without a credential (a Binding answer, a 401 challenge) is limited
        // per source IP: spoofed requests cannot aim a stream of answers at a victim.
        let free = m.typ.method == METHOD_BINDING || !m.contains(ATTR_MESSAGE_INTEGRITY);
        if m.typ.class == CLASS_REQUEST
            && free
            && !five.transport.is_stream()
            && !self.answers.allow(&five.client.ip(), now)
        {
            self.dropped(Dropped::RateLimited);
            return Output::None;
        }
        let reply = |bytes| Output::Reply { from: slot, bytes };
        let unknown = wire::unknown_required(&m);
        if m.typ.class == CLASS_REQUEST {
            if !unknown.is_empty() {
                debug!(src = %Redacted(five.client), ?unknown, "420 unknown comprehension-required attributes");
                let listed = unknown.into_iter().take(MAX_UNKNOWN_LISTED).collect();
                return reply(wire::error(
                    &m,
                    420,
                    vec![Box::new(UnknownAttributes(listed))],
                ));
            }
            if m.typ.method == METHOD_BINDING {
                return self.handle_binding(slot, five, &m);
            }
            if slot != Slot::PRIMARY {
                self.dropped(Dropped::Unexpected);
                return Output::None;
            }
            let _allocation = tracing::info_span!(
                "allocation",
                client = %Redacted(five.client),
                transport = five.transport.as_str()
            )
            .entered();
            let method = m.typ.method;
            if method == METHOD_ALLOCATE {
                return self.handle_allocate(&mut m, five, now, unix);
            }
            if ![
                METHOD_REFRESH,
                METHOD_CREATE_PERMISSION,
                METHOD_CHANNEL_BIND,
            ]
            .contains(&method)
            {
                return reply(wire::error(&m, 400, vec![]));
            }
            // The other methods act on the client's allocation, with its user's credentials.
            let key = match self.authenticate_on_allocation(&mut m, &five, unix) {
                Ok(key) => key,
                Err(refusal) => return reply(refusal),
            };
            let on = methods::OnAllocation { five, now, key };
            return reply(match method {
                METHOD_REFRESH => self.handle_refresh(&mut m, on),
                METHOD_CREATE_PERMISSION => self.handle_create_permission(&mut m, on),
                _ => self.handle_channel_bind(&mut m, on),
            });
        }
        if m.typ.class == CLASS_INDICATION && m.typ.method == METHOD_SEND && slot == Slot::PRIMARY {
            if !unknown.is_empty() {
                self.dropped(Dropped::Malformed);
                return Output::None;
            }
            return self.handle_send(&m, five, now);
        }
        // Responses, other indications (Binding keepalives included): nothing to answer.
        self.dropped(Dropped::Unexpected);
        Output::None
    }

    /// Ends allocations, reservations, permissions and channels whose time is up, and those of
    /// revoked users. The shell calls it about once a second.
    pub fn expire(&mut self, now: Instant) -> Vec<Ended> {
        let mut gone = Vec::new();
        let revoked = &self.revoked;
        self.allocations.retain(|five, a| {
            let st = &mut a.state;
            let reason = if st.is_expired(now) {
                EndReason::Expired
            } else if revoked.is_user_revoked(&a.user) {
                EndReason::Revoked
            } else {
                st.prune(now);
                return true;
            };
            gone.push((
                Ended {
                    five: *five,
                    relayed: a.relayed(),
                    reason,
                },
                a.user.clone(),
                a.legs
                    .iter()
                    .map(|l| Family::of(l.relayed.ip()))
                    .collect::<Vec<_>>(),
            ));
            false
        });
        let mut ended = Vec::with_capacity(gone.len());
        for (e, user, families) in gone {
            self.quotas.release(&user);
            for r in &e.relayed {
                self.relayed.remove(r);
            }
            self.observe(Event::AllocationEnded(e.five.transport));
            for f in families {
                self.observe(Event::RelayedAddressClosed(f));
            }
            info!(user = %printable(&user), relayed = ?e.relayed, transport = e.five.transport.as_str(), reason = e.reason.as_str(), "allocation ended");
            ended.push(e);
        }
        let owners: Vec<FiveTuple> = ended.iter().map(|e| e.five).collect();
        self.drop_reservations(|r| now < r.expires && !owners.contains(&r.owner));
        ended
    }

    /// The client's stream connection closed: its allocation ends (RFC 8656 section 3.1).
    pub fn close(&mut self, five: &FiveTuple) -> Option<Ended> {
        self.remove_allocation(five, EndReason::ConnectionClosed)
    }

    /// Ends every allocation (shutdown).
    pub fn clear(&mut self) -> usize {
        let n = self.allocations.len();
        for a in self.allocations.values() {
            self.observe(Event::AllocationEnded(a.five.transport));
            for l in &a.legs {
                self.observe(Event::RelayedAddressClosed(Family::of(l.relayed.ip())));
            }
        }
        self.allocations.clear();
        self.relayed.clear();
        self.reservations.clear();
        self.observe(Event::Reservations(0));
        n
    }

    /// Drops the reservations `keep` refuses, giving their quota back.
    fn drop_reservations(&mut self, mut keep: impl FnMut(&Reservation<S>) -> bool) {
        let quotas = &mut self.quotas;
        self.reservations.retain(|_, r| {
            let k = keep(r);
            if !k {
                quotas.release(&r.user);
            }
            k
        });
        self.observe(Event::Reservations(self.reservations.len()));
    }

    fn remove_allocation(&mut self, five: &FiveTuple, reason: EndReason) -> Option<Ended> {
        let a = self.allocations.remove(five)?;
        self.quotas.release(&a.user);
        for l in &a.legs {
            self.relayed.remove(&l.relayed);
            self.observe(Event::RelayedAddressClosed(Family::of(l.relayed.ip())));
        }
        // Its reserved port goes with it (Allocate with R, then Refresh 0, held ports outside
        // any quota before).
        self.drop_reservations(|r| r.owner != *five);
        self.observe(Event::AllocationEnded(five.transport));
        info!(user = %printable(&a.user), relayed = ?a.relayed(), transport = five.transport.as_str(), reason = reason.as_str(), "allocation ended");
        Some(Ended {
            five: *five,
            relayed: a.relayed(),
            reason,
        })
    }

    /// Is `peer` the relayed address of one of this relay's live allocations?
    fn is_relayed(&self, peer: SocketAddr) -> bool {
        let peer = SocketAddr::new(policy_canonical(peer.ip()), peer.port());
        self.relayed.contains(&peer)
    }

    fn policy_allows(&self, peer: SocketAddr) -> Result<(), crate::policy::DenyReason> {
        match self.cfg.policy.decide(peer, self.is_relayed(peer)) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => {
                self.observe(Event::PeerRefused(reason));
                Err(reason)
            }
        }
    }
}
