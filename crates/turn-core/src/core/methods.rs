//! The TURN methods (RFC 8656 sections 7 to 12) on the core's allocation table.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use natkit_proto::Redacted;
use stun::attributes::*;
use stun::message::*;
use stun::xoraddr::XorMappedAddress;
use tracing::{debug, info, warn};
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::PROTO_UDP;

use super::auth::Authed;
use super::{
    printable, Allocation, Change, EndReason, FiveTuple, Guard, Leg, Output, Payload, RelayCore,
    Reservation, MAX_PEERS_PER_REQUEST, RESERVATION_LIFETIME,
};
use crate::allocation::{granted_lifetime, AllocState, ChannelBindError};
use crate::family::{self, Family, FamilyRequest, PerFamily};
use crate::observe::{Dropped, Event, QuotaScope};
use crate::wire;

/// Which relay port an Allocate needs the shell to open.
#[derive(Debug)]
pub enum PortWant<S> {
    Any,
    Even,
    /// EVEN-PORT with R: an even port, and the next one too (it is reserved under a token).
    EvenPair,
    /// A port reserved earlier (RESERVATION-TOKEN): its socket is already open.
    Reserved {
        port: u16,
        socket: S,
    },
}

/// An authenticated Allocate, waiting for the shell to open its relay port.
#[derive(Debug)]
pub struct PendingAllocate<S> {
    pub five: FiveTuple,
    /// The first relayed address's family; `want` is its port.
    pub family: Family,
    pub want: PortWant<S>,
    /// A dual allocation's second relayed address (any port of this family).
    pub additional: Option<Family>,
    /// A family asked for that the relay does not have: ADDRESS-ERROR-CODE in the answer.
    refused: Option<(Family, u16)>,
    request: Message,
    username: String,
    user: String,
    key: Vec<u8>,
    lifetime: Duration,
}

/// The relay port(s) the shell opened for a [`PendingAllocate`].
pub struct Bound<S> {
    pub port: u16,
    pub socket: S,
    /// Kept for as long as the allocation lives (the shell's poller entry).
    pub guard: Guard,
    /// For [`PortWant::EvenPair`]: the next port, to be reserved.
    pub next: Option<(u16, S)>,
    /// For [`PendingAllocate::additional`]: the second relayed port, its socket and guard
    /// (`None`: no free port of that family; the allocation gets the first one alone).
    pub additional: Option<(u16, S, Guard)>,
}

/// A request on the client's allocation (Refresh, CreatePermission, ChannelBind) that passed
/// authentication: its 5-tuple, when it came, and the key that signs the answer.
pub(super) struct OnAllocation {
    pub five: FiveTuple,
    pub now: Instant,
    pub key: Vec<u8>,
}

impl<S: Clone> RelayCore<S> {
    #[allow(clippy::too_many_arguments)]
    fn allocate_success(
        &self,
        m: &Message,
        relayed: &[SocketAddr],
        refused: Option<(Family, u16)>,
        key: Vec<u8>,
        lifetime: Duration,
        src: SocketAddr,
        token: Option<[u8; 8]>,
    ) -> Vec<u8> {
        // One XOR-RELAYED-ADDRESS per family, IPv4 first (RFC 8656 section 7.3).
        let mut attrs: Vec<Box<dyn Setter>> = relayed
            .iter()
            .map(|r| {
                Box::new(RelayedAddress {
                    ip: r.ip(),
                    port: r.port(),
                }) as Box<dyn Setter>
            })
            .collect();
        if let Some((f, code)) = refused {
            attrs.push(Box::new(wire::address_error_code(f, code)));
        }
        attrs.push(Box::new(Lifetime(lifetime)));
        attrs.push(Box::new(XorMappedAddress {
            ip: src.ip(),
            port: src.port(),
        }));
        if let Some(t) = token {
            attrs.push(Box::new(wire::RawAttribute(
                ATTR_RESERVATION_TOKEN,
                t.to_vec(),
            )));
        }
        self.success(m, attrs, key)
    }

    fn quota_refused(&self, user: &str, q: crate::allocation::QuotaExceeded, what: &str) {
        self.observe(Event::QuotaRefused(q.into()));
        info!(user = %printable(user), error = %q, "486 {what}");
    }

    /// Allocate, up to the point where a relay port must be opened.
    pub(super) fn handle_allocate(
        &mut self,
        m: &mut Message,
        five: FiveTuple,
        now: Instant,
        unix: u64,
    ) -> Output<S> {
        let src = five.client;
        let reply = |bytes| Output::Reply {
            from: crate::rfc5780::Slot::PRIMARY,
            bytes,
        };
        let auth = match self.authenticate(m, src, unix) {
            Ok(a) => a,
            Err(bytes) => return reply(bytes),
        };
        if let Some(a) = self.allocations.get(&five) {
            // A retransmitted Allocate whose success response was lost gets the same answer.
            if a.allocate_tid == m.transaction_id && a.username == auth.username {
                let remaining = a.state.remaining(now);
                let (relayed, key) = (a.relayed(), a.key.clone());
                return reply(self.allocate_success(m, &relayed, None, key, remaining, src, None));
            }
            return reply(wire::error(m, 437, vec![]));
        }
        if let Some(drain) = self.drain {
            // Signed, so a client can trust where it is sent (RFC 8489 section 14.15).
            let bytes = match drain.alternate {
                Some(alt) => wire::error(
                    m,
                    300,
                    vec![
                        Box::new(wire::MappedAddressAs(alt, ATTR_ALTERNATE_SERVER)),
                        Box::new(stun::integrity::MessageIntegrity(auth.key)),
                    ],
                ),
                None => wire::error(m, 486, vec![]),
            };
            self.observe(Event::QuotaRefused(QuotaScope::Draining));
            return reply(bytes);
        }
        let mut transport = RequestedTransport::default();
        if transport.get_from(m).is_err() {
            return reply(wire::error(m, 400, vec![]));
        }
        // RFC 6062 TCP allocations are not offered: every transport relays UDP.
        if transport.protocol != PROTO_UDP {
            return reply(wire::error(m, 442, vec![]));
        }
        // EVEN-PORT: one byte whose top bit (R) asks for the next port to be reserved.
        let even = m.get(ATTR_EVEN_PORT).ok();
        let reserve = even
            .as_ref()
            .is_some_and(|v| v.first().is_some_and(|b| b & 0x80 != 0));
        let token = m.get(ATTR_RESERVATION_TOKEN).ok();
        if token.is_some() && even.is_some() {
            return reply(wire::error(m, 400, vec![]));
        }
        let token = match token.map(|t| <[u8; 8]>::try_from(t.as_slice())) {
            Some(Ok(t)) => Some(t),
            Some(Err(_)) => return reply(wire::error(m, 400, vec![])),
            None => None,
        };
        let have = PerFamily {
            v4: self.cfg.relay_ips.v4.is_some(),
            v6: self.cfg.relay_ips.v6.is_some(),
        };
        let request = FamilyRequest {
            requested: wire::address_family(m, ATTR_REQUESTED_ADDRESS_FAMILY),
            additional: wire::address_family(m, wire::ATTR_ADDITIONAL_ADDRESS_FAMILY),
            even_port_reserve: reserve,
            token: token.is_some(),
        };
        let client_family = Family::of(src.ip());
        let plan = match family::plan(request, have, client_family, self.cfg.default_family) {
            Ok(p) => p,
            Err(code) => {
                debug!(?request, "{code} address family");
                return reply(wire::error(m, code, vec![]));
            }
        };
        let mut lifetime_attr = Lifetime::default();
        let requested = lifetime_attr.get_from(m).ok().map(|_| lifetime_attr.0);
        let lifetime = granted_lifetime(requested, self.cfg.max_lifetime);

        if let Err(q) = self.quotas.acquire(&auth.user) {
            self.quota_refused(&auth.user, q, "allocation quota reached");
            return reply(wire::error(m, 486, vec![]));
        }
        let mut first = plan.first;
        let want = match token {
            Some(t) => {
                // The new allocation holds its own quota; the reservation's goes back.
                let taken = self.reservations.remove(&t);
                self.observe(Event::Reservations(self.reservations.len()));
                match taken {
                    Some(r) if now < r.expires => {
                        self.quotas.release(&r.user);
                        // The reserved port's family, whatever the default.
                        first = r.family;
                        PortWant::Reserved {
                            port: r.port,
                            socket: r.socket,
                        }
                    }
                    other => {
                        if let Some(r) = other {
                            self.quotas.release(&r.user);
                        }
                        self.quotas.release(&auth.user);
                        debug!(user = %printable(&auth.user), "508 unknown or expired reservation token");
                        return reply(wire::error(m, 508, vec![]));
                    }
                }
            }
            None if reserve => {
                // A reserved port counts against the quota like an allocation.
                if let Err(q) = self.quotas.acquire(&auth.user) {
                    self.quotas.release(&auth.user);
                    self.quota_refused(&auth.user, q, "no quota left for a reserved port");
                    return reply(wire::error(m, 486, vec![]));
                }
                PortWant::EvenPair
            }
            None if even.is_some() => PortWant::Even,
            None => PortWant::Any,
        };
        let Authed {
            username,
            user,
            key,
        } = auth;
        Output::Open(PendingAllocate {
            five,
            family: first,
            want,
            additional: plan.second,
            refused: plan.refused,
            request: m.clone(),
            username,
            user,
            key,
            lifetime,
        })
    }

    /// Completes an Allocate once the shell opened its port (`None`: no free port) and returns
    /// the answer to send.
    pub fn finish_allocate(
        &mut self,
        pending: PendingAllocate<S>,
        bound: Option<Bound<S>>,
        now: Instant,
    ) -> Vec<u8> {
        let PendingAllocate {
            five,
            family,
            want,
            additional,
            refused,
            request: m,
            username,
            user,
            key,
            lifetime,
        } = pending;
        let pair = matches!(want, PortWant::EvenPair);
        let release = |core: &mut Self| {
            core.quotas.release(&user);
            if pair {
                core.quotas.release(&user);
            }
        };
        let Some(bound) = bound else {
            release(self);
            warn!(user = %printable(&user), "508 no free relay port");
            return wire::error(&m, 508, vec![]);
        };
        if self.allocations.contains_key(&five) {
            // Another Allocate on this 5-tuple completed while the port was being opened.
            release(self);
            return wire::error(&m, 437, vec![]);
        }
        let token = match (pair, bound.next) {
            (true, Some((port, socket))) => {
                let token: [u8; 8] = rand::Rng::random(&mut self.rng);
                self.reservations.insert(
                    token,
                    Reservation {
                        socket,
                        family,
                        port,
                        expires: now + RESERVATION_LIFETIME,
                        user: user.clone(),
                        owner: five,
                    },
                );
                self.observe(Event::Reservations(self.reservations.len()));
                Some(token)
            }
            (true, None) => {
                // The shell could not open the pair: the reserved port's quota goes back.
                self.quotas.release(&user);
                None
            }
            (false, _) => None,
        };
        let Some(relay_ip) = *self.cfg.relay_ips.get(family) else {
            // The shell opened a port of a family the core has no address for: a bug there.
            release(self);
            warn!(
                family = family.as_str(),
                "500 relayed address family not configured"
            );
            return wire::error(&m, 500, vec![]);
        };
        let mut legs = vec![Leg {
            socket: bound.socket,
            relayed: SocketAddr::new(relay_ip, bound.port),
            _guard: bound.guard,
        }];
        let mut refused = refused;
        match (additional, bound.additional) {
            (Some(f), Some((port, socket, guard))) => match *self.cfg.relay_ips.get(f) {
                Some(ip) => legs.push(Leg {
                    socket,
                    relayed: SocketAddr::new(ip, port),
                    _guard: guard,
                }),
                None => refused = Some((f, 440)),
            },
            (Some(f), None) => {
                warn!(user = %printable(&user), family = f.as_str(), "no free relay port of the additional family: ADDRESS-ERROR-CODE 508");
                refused = Some((f, 508));
            }
            (None, _) => {}
        }
        let relayed: Vec<SocketAddr> = legs.iter().map(|l| l.relayed).collect();
        let reply = self.allocate_success(
            &m,
            &relayed,
            refused,
            key.clone(),
            lifetime,
            five.client,
            token,
        );
        info!(user = %printable(&user), client = %Redacted(five.client), transport = five.transport.as_str(), relayed = ?relayed, lifetime_s = lifetime.as_secs(), "allocation created");
        for r in &relayed {
            self.relayed.insert(*r);
            self.observe(Event::RelayedAddressOpened(Family::of(r.ip())));
        }
        if legs.len() > 1 {
            self.observe(Event::DualAllocation);
        }
        self.allocations.insert(
            five,
            Allocation {
                five,
                username,
                user,
                key,
                allocate_tid: m.transaction_id,
                legs,
                state: AllocState::new(lifetime, now),
            },
        );
        self.changed(five);
        self.observe(Event::AllocationCreated(five.transport));
        reply
    }

    pub(super) fn handle_refresh(&mut self, m: &mut Message, on: OnAllocation) -> Vec<u8> {
        let OnAllocation { five, now, key } = on;
        let a = &self.allocations[&five];
        // RFC 8656 section 8: REQUESTED-ADDRESS-FAMILY names a family the allocation holds,
        // else 443; with LIFETIME 0 it closes only that family of a dual allocation.
        let family = match wire::address_family(m, ATTR_REQUESTED_ADDRESS_FAMILY) {
            None => None,
            Some(Some(f)) if a.leg(f).is_some() => Some(f),
            Some(_) => return wire::error(m, 443, vec![]),
        };
        let mut lifetime_attr = Lifetime::default();
        let requested = lifetime_attr.get_from(m).ok().map(|_| lifetime_attr.0);
        if let (Some(f), Some(Duration::ZERO), true) = (family, requested, a.legs.len() > 1) {
            let a = self
                .allocations
                .get_mut(&five)
                .expect("authenticated on it");
            let at = a
                .legs
                .iter()
                .position(|l| Family::of(l.relayed.ip()) == f)
                .expect("the family was found above");
            let leg = a.legs.remove(at);
            a.state.forget_family(f == Family::V6);
            info!(user = %printable(&a.user), relayed = %leg.relayed, "one family of a dual allocation closed by the client");
            self.relayed.remove(&leg.relayed);
            self.observe(Event::RelayedAddressClosed(f));
            self.changes.push(Change::Closed {
                five,
                relayed: leg.relayed,
            });
            self.changed(five);
            return self.success(m, vec![Box::new(Lifetime(Duration::ZERO))], key);
        }
        let granted = if requested == Some(Duration::ZERO) {
            if let Some(ended) = self.remove_allocation(&five, EndReason::Deleted) {
                self.changes.push(Change::Ended(ended));
            }
            Duration::ZERO
        } else {
            let l = granted_lifetime(requested, self.cfg.max_lifetime);
            self.allocations
                .get_mut(&five)
                .expect("authenticated on it")
                .state
                .refresh(l, now);
            self.changed(five);
            l
        };
        self.success(m, vec![Box::new(Lifetime(granted))], key)
    }

    /// Checks peers against the policy and the allocation's family; the refusal to send if any.
    fn refuse_peers(
        &self,
        m: &Message,
        peers: &[SocketAddr],
        a: &Allocation<S>,
    ) -> Option<Vec<u8>> {
        for &p in peers {
            if a.leg(Family::of(p.ip())).is_none() {
                return Some(wire::error(m, 443, vec![]));
            }
            if let Err(reason) = self.policy_allows(p) {
                info!(user = %printable(&a.user), peer = %Redacted(p), reason = reason.as_str(), "403 peer refused");
                return Some(wire::error(m, 403, vec![]));
            }
        }
        None
    }

    pub(super) fn handle_create_permission(
        &mut self,
        m: &mut Message,
        on: OnAllocation,
    ) -> Vec<u8> {
        let OnAllocation { five, now, key } = on;
        let a = &self.allocations[&five];
        let peers = match wire::peer_addresses(m) {
            Some(p) if !p.is_empty() && p.len() <= MAX_PEERS_PER_REQUEST => p,
            _ => return wire::error(m, 400, vec![]),
        };
        if let Some(reply) = self.refuse_peers(m, &peers, a) {
            return reply;
        }
        let ips: Vec<IpAddr> = peers.iter().map(|p| p.ip()).collect();
        let a = self
            .allocations
            .get_mut(&five)
            .expect("authenticated on it");
        if let Err(e) = a.state.add_permissions(&ips, now) {
            debug!(user = %printable(&a.user), error = %e, "508 permission");
            return wire::error(m, 508, vec![]);
        }
        debug!(user = %printable(&a.user), ?peers, "permission installed");
        self.changed(five);
        self.success(m, vec![], key)
    }

    pub(super) fn handle_channel_bind(&mut self, m: &mut Message, on: OnAllocation) -> Vec<u8> {
        let OnAllocation { five, now, key } = on;
        let a = &self.allocations[&five];
        let mut number = ChannelNumber::default();
        let peers = wire::peer_addresses(m);
        let (Ok(()), Some([peer])) = (number.get_from(m), peers.as_deref()) else {
            return wire::error(m, 400, vec![]);
        };
        if let Some(reply) = self.refuse_peers(m, &[*peer], a) {
            return reply;
        }
        let a = self
            .allocations
            .get_mut(&five)
            .expect("authenticated on it");
        match a.state.bind_channel(number.0, *peer, now) {
            Ok(()) => {
                debug!(user = %printable(&a.user), channel = number.0, %peer, "channel bound");
                self.changed(five);
                self.success(m, vec![], key)
            }
            Err(e @ ChannelBindError::Full) => {
                debug!(user = %printable(&a.user), error = %e, "508 channel bind");
                wire::error(m, 508, vec![])
            }
            Err(e) => {
                debug!(user = %printable(&a.user), error = %e, "400 channel bind");
                wire::error(m, 400, vec![])
            }
        }
    }

    pub(super) fn handle_send(&self, m: &Message, five: FiveTuple, now: Instant) -> Output<S> {
        let Some(a) = self.allocations.get(&five) else {
            self.dropped(Dropped::NoAllocation);
            return Output::None;
        };
        let peers = wire::peer_addresses(m);
        let (Some([peer]), Ok(data)) = (peers.as_deref(), m.get(ATTR_DATA)) else {
            self.dropped(Dropped::Malformed);
            return Output::None;
        };
        if self.policy_allows(*peer).is_err() {
            return Output::None;
        }
        let leg = a.leg(Family::of(peer.ip()));
        let Some(leg) = leg.filter(|_| a.state.has_permission(peer.ip(), now)) else {
            self.dropped(Dropped::NoPermission);
            return Output::None;
        };
        Output::ToPeer {
            socket: leg.socket.clone(),
            peer: *peer,
            payload: Payload::Owned(data),
        }
    }

    pub(super) fn handle_channel_data(
        &self,
        buf: &[u8],
        five: FiveTuple,
        now: Instant,
    ) -> Output<S> {
        let Some((number, payload)) = wire::parse_channel_data(buf) else {
            self.dropped(Dropped::Malformed);
            return Output::None;
        };
        let Some(a) = self.allocations.get(&five) else {
            self.dropped(Dropped::NoAllocation);
            return Output::None;
        };
        let bound = a.state.channel_peer(number, now);
        let Some((peer, leg)) = bound.and_then(|p| Some((p, a.leg(Family::of(p.ip()))?))) else {
            self.dropped(Dropped::NoPermission);
            return Output::None;
        };
        Output::ToPeer {
            socket: leg.socket.clone(),
            peer,
            payload: Payload::Range(4..4 + payload.len()),
        }
    }
}
