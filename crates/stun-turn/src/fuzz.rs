//! Fuzz harnesses: what `fuzz/` runs under AFL++ (`cargo afl fuzz`) and what
//! `tests/fuzz_corpus.rs` replays over the committed corpus in every test run. Each takes raw
//! bytes, and must never panic; the relay harness also checks that state stays bounded.
//!
//! The relay harness runs every input twice: as it is, and, when it decodes as a STUN request, re-
//! signed with a valid long-term credential and nonce, so the authenticated methods (Allocate,
//! Refresh, CreatePermission, ChannelBind) and their limits are fuzzed too, not only the paths a
//! forged message reaches. Four client addresses rotate, so inputs meet each other's allocations.

use std::net::SocketAddr;

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;

use crate::config::RawSettings;
use crate::credentials::{self, Secret};
use crate::metrics::RelayMetrics;
use crate::server::Relay;
use crate::wire::{self, LongTermAuth};

const SECRET: &str = "fuzz-secret";
/// Fewer than the harness's clients: the quota is exercised too.
const USER_QUOTA: usize = 3;

/// A relay bound on 127.0.0.1 in its own runtime, fed datagrams directly.
pub struct RelayHarness {
    rt: tokio::runtime::Runtime,
    relay: Relay,
    clients: Vec<SocketAddr>,
}

impl Default for RelayHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayHarness {
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let settings = RawSettings {
            listen: Some("127.0.0.1:0".into()),
            alt_port: Some("0".into()),
            user_quota: Some(USER_QUOTA.to_string()),
            answers_per_second: Some("0".into()),
            allow_peer: Some(vec!["198.51.100.0/24".into()]),
            ..Default::default()
        }
        .resolve(Some(SECRET.into()), |_| unreachable!("no files"))
        .expect("valid settings");
        let relay = rt
            .block_on(Relay::bind(settings.relay, RelayMetrics::new()))
            .expect("bind a loopback relay");
        let clients = (1..=4)
            .map(|i| SocketAddr::from(([198, 51, 100, i], 40000 + i as u16)))
            .collect();
        RelayHarness { rt, relay, clients }
    }

    /// Feeds `data` (its first byte picks the client), raw and re-signed.
    pub fn datagram(&self, data: &[u8]) {
        let Some((&pick, msg)) = data.split_first() else {
            return;
        };
        let src = self.clients[pick as usize % self.clients.len()];
        let _guard = self.rt.enter();
        if let Some(reply) = self.relay.fuzz_datagram(msg, src) {
            assert!(
                reply.len() <= 1500,
                "answers stay small: {} bytes",
                reply.len()
            );
        }
        if let Some(signed) = self.resign(msg, src) {
            let _ = self.relay.fuzz_datagram(&signed, src);
        }
        // Every allocation an input can make is the harness user's (a forged one cannot
        // authenticate), so the user quota bounds them, reserved ports included.
        assert!(
            self.relay.allocation_count() <= USER_QUOTA,
            "the user quota holds: {} allocations",
            self.relay.allocation_count()
        );
    }

    /// `msg` as a request signed with a valid credential and a fresh nonce for `src`.
    fn resign(&self, msg: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let mut m = Message::new();
        m.raw = msg.to_vec();
        m.decode().ok()?;
        if m.typ.class != CLASS_REQUEST || m.typ.method == METHOD_BINDING {
            return None;
        }
        // Learn a nonce the way a client does: an unauthenticated request gets a 401.
        let probe = wire::request(m.typ.method, vec![], None);
        let challenge = self.relay.fuzz_datagram(&probe.raw, src)?;
        let mut c = Message::new();
        c.raw = challenge;
        c.decode().ok()?;
        let text = |t| TextAttribute::get_from_as(&c, t).ok().map(|a| a.text);
        let (realm, nonce) = (text(ATTR_REALM)?, text(ATTR_NONCE)?);
        let cred = credentials::mint(
            &Secret::new(SECRET).ok()?,
            "fuzz",
            600,
            natkit_daemon::unix_now(),
        )
        .ok()?;
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
