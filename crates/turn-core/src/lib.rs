//! natkit's STUN/TURN core: every decision of the relay, with no socket, no task and no clock.
//!
//! The relay shells (natkit-stun-turn: UDP, TCP and TLS) hand the core one message, the 5-tuple
//! it came on and `now`, and carry out what it answers: a reply, a payload for a peer, ports to
//! open. The core takes its randomness as a seed and reports what it did as values: the
//! allocations a message changed ([`core::Change`], which the shells' relayed path and kernel
//! path mirror) and the events operators count ([`observe::Event`]). It neither reads the clock
//! nor imports tokio, so its tests are tables and the fuzz harness runs it at full speed.
//!
//! # Layout
//! - [`credentials`]: minting and checking TURN REST API credentials (shared with
//!   natkit-signal), with the quota group of a user id.
//! - [`five_tuple`]: the client's transport and 5-tuple, the key of an allocation.
//! - [`family`]: which address families an Allocate gets (RFC 6156, RFC 8656 dual allocation).
//! - [`nonce`]: stateless nonces, so unauthenticated floods cost no memory.
//! - [`policy`]: which peers may be relayed to.
//! - [`rfc5780`]: which socket answers a Binding request with CHANGE-REQUEST.
//! - [`allocation`]: permissions, channel bindings, lifetimes and quotas.
//! - [`ratelimit`]: token buckets per key and connection slots per IP (natkit-signal's too).
//! - [`revocation`]: what a revocation file withdraws (users, join tokens).
//! - [`core`]: the relay's state machine: authentication, the TURN methods, RFC 5780 answers,
//!   allocations keyed by the 5-tuple with its transport.
//! - [`observe`]: the events the core reports and their label values.
//! - [`framing`]: STUN and ChannelData on a byte stream.
//! - [`proxy_header`]: the PROXY protocol header (v1, v2) a TCP load balancer sends first.
//! - [`wire`]: STUN/TURN message helpers over the `stun` and `turn` crates.
//! - [`error`]: credential and revocation errors.
//! - `fuzz`: the harnesses `fuzz/` runs under AFL++ and the tests replay over the corpus.
//!
//! # Out of scope
//! Sockets, timers, TLS, metrics registries, files: natkit-stun-turn's shells own them.
//!
//! # RFC sections
//! RFC 8489 sections 6.3, 9.2 and 14.2; RFC 8656 sections 7 to 12 (Allocate with
//! REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY, Refresh,
//! permissions, Send/Data, channels, ChannelData and 12.5 stream padding); RFC 5780 sections 6
//! and 7. natkit-stun-turn's crate docs list them in full.

pub mod allocation;
pub mod core;
pub mod credentials;
pub mod error;
pub mod family;
pub mod five_tuple;
pub mod framing;
#[doc(hidden)]
pub mod fuzz;
pub mod nonce;
pub mod observe;
pub mod policy;
pub mod proxy_header;
pub mod ratelimit;
pub mod revocation;
pub mod rfc5780;
pub mod wire;

pub use error::{CredentialError, RevocationError};
