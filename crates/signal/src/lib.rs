//! natkit-signal: the WebSocket signaling server operators put on the internet.
//!
//! Rooms with addressed messages (offer, answer, trickle ICE candidates), optional signed join
//! tokens, limits, and fresh time-limited TURN credentials for every peer from the relay it embeds
//! (`natkit-stun-turn`) or from external relays sharing the TURN secret.
//!
//! # Layout
//! - The JSON messages are `natkit-proto`'s, shared with natkit-peer (documented in
//!   `docs/protocol.md`).
//! - [`rooms`]: routing as a pure state machine (message in, addressed messages out).
//! - [`token`]: signed, expiring, room-scoped join tokens (pure).
//! - [`admission`]: who may join and take TURN credentials (draining, token, revocation, the
//!   credential limits), one pure step per request that returns admitted or a refusal with its
//!   code; the shell only carries it out.
//! - [`limits`]: rate limits per connection, per client IP and per token (pure; the relay's
//!   `ratelimit` module, shared).
//! - [`config`]: flags, environment and TOML, validated before anything binds.
//! - [`ice`]: the ICE servers and credentials handed to peers; [`metrics`]: Prometheus series.
//! - [`fleet`]: which of several natkit-relays a room gets (pure), and their health checks.
//! - [`cluster`]: rooms shared by several nodes through Redis: the frames between nodes (pure)
//!   and [`cluster::store`], the Redis shell (scripts, lease, reaper, publisher); docs/cluster.md.
//! - [`node`]: a whole node (embedded relay, web and metrics listeners) bound from its
//!   configuration by `Node::start` and served by `Node::run`; the binary is parse, log, start,
//!   print, run.
//! - [`server`]: the axum shell: `/`, `/v1/ws`, `/v1/ice-servers`, `/healthz`, `/metrics`, and
//!   the drain (SIGUSR1: peers told to `reconnect` elsewhere); the shared TLS port
//!   (`tls_listen`: HTTPS, WSS and TURN over TLS), routed by [`demux`] (pure).
//!
//! # Out of scope
//! Persistence (rooms live in memory, in Redis when clustered, and nothing survives a Redis
//! restart but what the nodes tell it again). Certificates come from files (reloaded on
//! SIGHUP); ACME and the PROXY protocol are not there yet.

pub mod admission;
pub mod cluster;
pub mod config;
pub mod demux;
pub mod fleet;
#[doc(hidden)]
pub mod fuzz;
pub mod ice;
pub mod metrics;
pub mod node;
pub mod origin;
/// The rate limiters (token buckets, per-key limits, per-IP connection slots), shared with the
/// relay.
pub use natkit_stun_turn::ratelimit as limits;
pub mod rooms;
pub mod server;
/// Join tokens: natkit-proto's, so clients and application servers mint what this server checks.
pub use natkit_proto::token;
