//! Fuzz harnesses: what `fuzz/` runs under AFL++ (`cargo afl fuzz`) and what
//! `tests/fuzz_corpus.rs` replays over the committed corpus in every test run. Each takes raw
//! bytes, and must never panic; the relay harness also checks that state stays bounded.
//!
//! The relay harness runs every input twice: as it is, and, when it decodes as a STUN request, re-
//! signed with a valid long-term credential and nonce, so the authenticated methods (Allocate,
//! Refresh, CreatePermission, ChannelBind) and their limits are fuzzed too, not only the paths a
//! forged message reaches. Four clients rotate (two over UDP, two over TCP), so inputs meet each
//! other's allocations. It drives the socket-free core ([`crate::core`]) directly.

use std::net::SocketAddr;
use std::time::Instant;

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;

use crate::core::{core_config, Bound, FiveTuple, Output, PortWant, RelayCore, Transport};
use crate::credentials::{self, Secret};
use crate::rfc5780::Slot;
use crate::wire::{self, LongTermAuth};

const SECRET: &str = "fuzz-secret";
/// Fewer than the harness's clients: the quota is exercised too.
const USER_QUOTA: usize = 3;
/// The Unix time the harness's credentials and nonces are checked at.
const UNIX_NOW: u64 = 1_800_000_000;

/// The relay's protocol core with in-memory "ports", fed messages directly: no socket, no
/// runtime, so AFL runs it at full speed.
pub struct RelayHarness {
    core: RelayCore<u16>,
    /// The harness's clock stands still: a run is the same every time.
    now: Instant,
    clients: Vec<FiveTuple>,
    next_port: u16,
}

impl Default for RelayHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayHarness {
    pub fn new() -> Self {
        let server: SocketAddr = "203.0.113.1:3478".parse().expect("valid");
        let clients = (1..=4u8)
            .map(|i| FiveTuple {
                // Two of the clients come over TCP: allocations are per transport.
                transport: if i % 2 == 0 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                },
                client: SocketAddr::from(([198, 51, 100, i], 40000 + i as u16)),
                server,
            })
            .collect();
        RelayHarness {
            core: RelayCore::new(
                {
                    // Dual-stack, so dual allocations and both families are fuzzed.
                    let mut c = core_config(SECRET, USER_QUOTA as u32);
                    c.relay_ips.v6 = Some("2001:db8::1".parse().expect("valid"));
                    c
                },
                (),
                [7; 32],
            ),
            now: Instant::now(),
            clients,
            next_port: 49152,
        }
    }

    /// One message through the core, with Allocate's ports "opened" in memory.
    fn feed(&mut self, msg: &[u8], five: FiveTuple) -> Option<Vec<u8>> {
        let now = self.now;
        match self.core.handle(Slot::PRIMARY, five, msg, now, UNIX_NOW) {
            Output::Reply { bytes, .. } => Some(bytes),
            Output::Open(pending) => {
                let port = self.next_port;
                self.next_port = self.next_port.checked_add(2).unwrap_or(49152);
                let (port, next) = match &pending.want {
                    PortWant::Reserved { port, .. } => (*port, None),
                    PortWant::EvenPair => (port, Some((port + 1, port + 1))),
                    _ => (port, None),
                };
                let additional = pending
                    .additional
                    .map(|_| (port ^ 1, port ^ 1, Box::new(()) as crate::core::Guard));
                let bound = Bound {
                    port,
                    socket: port,
                    guard: Box::new(()),
                    next,
                    additional,
                };
                Some(self.core.finish_allocate(pending, Some(bound), now))
            }
            _ => None,
        }
    }

    /// Feeds `data` (its first byte picks the client), raw and re-signed.
    pub fn datagram(&mut self, data: &[u8]) {
        let Some((&pick, msg)) = data.split_first() else {
            return;
        };
        let five = self.clients[pick as usize % self.clients.len()];
        if let Some(reply) = self.feed(msg, five) {
            assert!(
                reply.len() <= 1500,
                "answers stay small: {} bytes",
                reply.len()
            );
        }
        if let Some(signed) = self.resign(msg, five) {
            let _ = self.feed(&signed, five);
        }
        // Every allocation an input can make is the harness user's (a forged one cannot
        // authenticate), so the user quota bounds them, reserved ports included.
        let held = self.core.allocation_count() + self.core.reservation_count();
        assert!(
            held <= USER_QUOTA,
            "the user quota holds: {held} allocations and reservations"
        );
    }

    /// Feeds `data` as the bytes of one TCP connection (its first byte picks the client): cut
    /// into frames as the stream shell cuts them, each frame raw and re-signed.
    pub fn stream(&mut self, data: &[u8]) {
        crate::framing::fuzz(data);
        let Some((&pick, mut rest)) = data.split_first() else {
            return;
        };
        let streams: Vec<FiveTuple> = self
            .clients
            .iter()
            .copied()
            .filter(|c| c.transport.is_stream())
            .collect();
        let five = streams[pick as usize % streams.len()];
        while let Ok(Some(f)) = crate::framing::next_frame(rest) {
            let msg = &rest[..f.message];
            let _ = self.feed(msg, five);
            if let Some(signed) = self.resign(msg, five) {
                let _ = self.feed(&signed, five);
            }
            rest = &rest[f.consumed..];
        }
        self.core.close(&five);
        let held = self.core.allocation_count() + self.core.reservation_count();
        assert!(held <= USER_QUOTA, "the user quota holds: {held}");
    }

    /// `msg` as a request signed with a valid credential and a fresh nonce for `src`.
    fn resign(&mut self, msg: &[u8], five: FiveTuple) -> Option<Vec<u8>> {
        let mut m = Message::new();
        m.raw = msg.to_vec();
        m.decode().ok()?;
        if m.typ.class != CLASS_REQUEST || m.typ.method == METHOD_BINDING {
            return None;
        }
        // Learn a nonce the way a client does: an unauthenticated request gets a 401.
        let probe = wire::request(m.typ.method, vec![], None);
        let challenge = self.feed(&probe.raw, five)?;
        let mut c = Message::new();
        c.raw = challenge;
        c.decode().ok()?;
        let text = |t| TextAttribute::get_from_as(&c, t).ok().map(|a| a.text);
        let (realm, nonce) = (text(ATTR_REALM)?, text(ATTR_NONCE)?);
        let cred = credentials::mint(&Secret::new(SECRET).ok()?, "fuzz", 600, UNIX_NOW).ok()?;
        let auth = LongTermAuth {
            username: cred.username,
            password: cred.password,
            realm,
            nonce,
        };
        // Keep the input's own attributes, minus the ones the signature replaces.
        let own = [
            ATTR_USERNAME,
            ATTR_REALM,
            ATTR_NONCE,
            ATTR_MESSAGE_INTEGRITY,
            ATTR_FINGERPRINT,
        ];
        let attrs: Vec<Box<dyn Setter>> = m
            .attributes
            .0
            .iter()
            .filter(|a| !own.contains(&a.typ))
            .map(|a| Box::new(wire::RawAttribute(a.typ, a.value.clone())) as Box<dyn Setter>)
            .collect();
        Some(wire::request(m.typ.method, attrs, Some(&auth)).raw)
    }
}

/// ChannelData framing: parse, and check what it returns lies inside the input.
pub fn channel_data(data: &[u8]) {
    if let Some((number, payload)) = wire::parse_channel_data(data) {
        assert!(wire::is_channel_data(data[0]), "{number:#x}");
        assert!(payload.len() + 4 <= data.len());
        let header = wire::channel_data_header(number, payload.len());
        assert_eq!(&data[..4], &header[..], "the header round-trips");
    }
}

/// How many attributes the relay would count (the pre-decode limit) never exceeds what fits.
pub fn attribute_count(data: &[u8]) {
    assert!(wire::attribute_count(data) <= data.len() / 4 + 1);
}
