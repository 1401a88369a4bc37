//! natkit's embeddable STUN/TURN relay.
//!
//! A TURN server (RFC 8656) reached over UDP, TCP and TLS that accepts time-limited TURN REST API
//! credentials, answers RFC 5780 NAT behaviour discovery, refuses to relay towards addresses it
//! must not reach and exports Prometheus metrics. It is the `natkit-relay` binary and the relay
//! that `natkit-signal` embeds.
//!
//! # Layout
//! - [`credentials`]: minting and checking TURN REST API credentials (pure, shared with
//!   natkit-signal).
//! - [`five_tuple`]: the client's transport and 5-tuple, the key of an allocation (pure).
//! - [`nonce`]: stateless nonces, so unauthenticated floods cost no memory (pure).
//! - [`policy`]: which peers may be relayed to (pure).
//! - [`rfc5780`]: which socket answers a Binding request with CHANGE-REQUEST (pure).
//! - [`allocation`]: permissions, channel bindings, lifetimes and quotas (pure).
//! - [`ratelimit`]: token buckets per key and connection slots per IP (pure; natkit-signal's
//!   too).
//! - [`revocation`]: revoked TURN users and join tokens, from a watched file.
//! - [`core`]: every STUN/TURN decision for every transport, socket-free (pure but for the
//!   state it holds): authentication, the TURN methods, RFC 5780 answers, allocations keyed by
//!   the 5-tuple with its transport.
//! - [`framing`]: STUN and ChannelData on a byte stream (pure).
//! - [`config`]: the relay's keys ([`config::RelayOptions`]: flags, environment and TOML are one
//!   struct) and their validation into a [`config::RelayConfig`] that cannot be invalid.
//! - [`server`]: the UDP shell that owns the sockets (bound by `sockets`, read in batches by
//!   `udp`) and the pollers of the relayed sockets (`relayed`);
//!   [`stream`]: the TCP/TLS shell (its outgoing queues in `queue`, the state both shells read
//!   in `shared`, so neither shell imports the other); [`tls`]: certificate loading and SIGHUP
//!   reload; [`http`]: the metrics endpoint.
//! - [`node`]: the standalone relay (relay, metrics endpoint, cluster announcement) bound by
//!   `Node::start` and served by `Node::run`: what the `natkit-relay` binary runs.
//! - [`wire`]: STUN/TURN message helpers over the `stun` and `turn` crates.
//!
//! # Embedding
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use natkit_stun_turn::config::{RelayConfig, RelayOptions, SecretText};
//! use natkit_stun_turn::{metrics::RelayMetrics, server::Relay};
//! let config = RelayConfig::try_from(RelayOptions {
//!     listen: Some("127.0.0.1:0".into()),
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
//! DTLS, IPv6 relayed addresses for IPv4 clients (RFC 6156 dual allocation), DONT-FRAGMENT,
//! MESSAGE-INTEGRITY-SHA256 and the RFC 8489 password algorithms.
//!
//! # RFC sections
//! RFC 8489 sections 6.3 (420 for unknown comprehension-required attributes), 9.2 (long-term
//! credentials, stale nonces), 14.2 (XOR addresses); RFC 8656 sections 3.1 (TCP and TLS to the
//! server), 7 (Allocate, 437, 442, 486, 508; EVEN-PORT and RESERVATION-TOKEN), 8 (Refresh), 9 and
//! 10 (permissions, Send/Data), 11 and 12 (channels, ChannelData, 12.5 stream padding);
//! RFC 5780 sections 6 and 7 (CHANGE-REQUEST, RESPONSE-ORIGIN, OTHER-ADDRESS).

pub mod allocation;
pub mod announce;
pub mod config;
pub mod core;
pub mod credentials;
pub mod error;
pub mod five_tuple;
pub mod framing;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod kernel_path;
pub mod metrics;
pub mod node;
pub mod nonce;
pub mod policy;
pub(crate) mod queue;
pub mod ratelimit;
pub(crate) mod relayed;
pub mod revocation;
pub mod rfc5780;
pub mod server;
pub(crate) mod shared;
pub(crate) mod sockets;
pub mod stream;
pub mod tls;
pub(crate) mod udp;
pub mod wire;

pub use error::{ConfigError, CredentialError, RelayError, TlsError};
