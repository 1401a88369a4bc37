//! natkit's embeddable STUN/TURN relay.
//!
//! A TURN server (RFC 8656) reached over UDP, TCP and TLS that accepts time-limited TURN REST API
//! credentials, answers RFC 5780 NAT behaviour discovery, refuses to relay towards addresses it
//! must not reach and exports Prometheus metrics. It is the `natkit-relay` binary and the relay
//! that `natkit-signal` embeds.
//!
//! # Layout
//! Every decision is in the socket-free core crate, `natkit-turn-core`, re-exported here under
//! the same module names: [`credentials`], [`five_tuple`], [`nonce`], [`policy`], [`rfc5780`],
//! [`allocation`], [`ratelimit`], [`core`] (the TURN methods), [`observe`] (what the core
//! reports for the metrics), [`framing`] and [`wire`]. This crate is the shells around it:
//! - [`config`]: the relay's keys ([`config::RelayOptions`]: flags, environment and TOML are one
//!   struct) and their validation into a [`config::RelayConfig`] that cannot be invalid.
//! - [`server`]: the UDP shell that owns the sockets (bound by `sockets`, read in batches by
//!   `udp`) and the pollers of the relayed sockets (`relayed`);
//!   [`stream`]: the TCP/TLS shell (its outgoing queues in `queue`, the state both shells read
//!   in `shared`, so neither shell imports the other); [`tls`]: certificate loading and SIGHUP
//!   reload; [`http`]: the metrics endpoint.
//! - [`node`]: the standalone relay (relay, metrics endpoint, cluster announcement) bound by
//!   `Node::start` and served by `Node::run`: what the `natkit-relay` binary runs.
//! - [`revocation`]: the watched revocation file (what it revokes is the core's).
//! - [`metrics`]: the Prometheus metrics (counting the core's events); [`kernel_path`]: the
//!   optional eBPF path for UDP ChannelData; [`announce`]: the cluster announcement in Redis.
//!
//! # Embedding
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use natkit_stun_turn::config::{RelayConfig, RelayOptions, SecretText};
//! use natkit_stun_turn::{metrics::RelayMetrics, server::Relay};
//! let config = RelayConfig::try_from(RelayOptions {
//!     listen: vec!["127.0.0.1:0".into()],
//!     alt_port: Some("0".into()),
//!     turn_secret: Some(SecretText("secret".into())),
//!     ..Default::default()
//! })?;
//! let relay = Relay::bind(config, RelayMetrics::new()).await?;
//! println!("TURN on {}", relay.addresses().primary);
//! relay.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! # Out of scope
//! RFC 6062 TCP relaying (clients reach the relay over TCP and TLS; the relayed side is UDP),
//! DTLS, DONT-FRAGMENT, MESSAGE-INTEGRITY-SHA256 and the RFC 8489 password algorithms. The
//! kernel path relays IPv4 only (IPv6 is relayed in userspace, counted in
//! `natkit_relay_kernel_path_userspace_total{reason="ipv6"}`).
//!
//! # Address families
//! One listener per family (`--listen 0.0.0.0:3478 --listen [::]:3478`, the default where the
//! host has IPv6), each with its own advertised IP (`--public-ip`, one per family). An Allocate
//! gets a relayed address in the family it asks for (REQUESTED-ADDRESS-FAMILY, RFC 6156), in
//! both (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 section 7.2: two XOR-RELAYED-ADDRESS, or one and an
//! ADDRESS-ERROR-CODE), or when it asks for none in IPv4 (`default_family = "client"`: the
//! family it came over); see [`family`].
//!
//! # RFC sections
//! RFC 8489 sections 6.3 (420 for unknown comprehension-required attributes), 9.2 (long-term
//! credentials, stale nonces), 14.2 (XOR addresses); RFC 8656 sections 3.1 (TCP and TLS to the
//! server), 7 (Allocate, 437, 440, 442, 486, 508; EVEN-PORT and RESERVATION-TOKEN;
//! REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY), 8 (Refresh, 443), 9 and
//! 10 (permissions, Send/Data), 11 and 12 (channels, ChannelData, 12.5 stream padding);
//! RFC 5780 sections 6 and 7 (CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS).

pub mod acme;
pub mod announce;
pub mod config;
pub mod error;
pub mod http;
pub mod kernel_path;
pub mod metrics;
pub mod node;
pub mod proxied;
pub(crate) mod queue;
pub(crate) mod relay_ports;
pub(crate) mod relayed;
pub mod revocation;
pub mod server;
pub(crate) mod shared;
pub(crate) mod sockets;
pub mod stream;
pub mod tls;
pub(crate) mod udp;

pub use error::{ConfigError, CredentialError, RelayError, TlsError};
#[doc(hidden)]
pub use natkit_turn_core::fuzz;
pub use natkit_turn_core::{
    allocation, core, credentials, family, five_tuple, framing, nonce, observe, policy,
    proxy_header, ratelimit, rfc5780, wire,
};
