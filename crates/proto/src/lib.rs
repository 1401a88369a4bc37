//! natkit's signaling protocol, typed once for both sides.
//!
//! natkit-signal (the server), natkit-peer (a client) and the tests all read and write the
//! messages through these types, so a field renamed on one side cannot silently break the other.
//! `docs/protocol.md` documents the same messages; a test parses its example exchange with these
//! types, so the document cannot drift either.
//!
//! # Layout
//! - [`messages`]: every WebSocket message in both directions ([`ClientMsg`], [`ServerMsg`],
//!   [`Welcome`]) and [`PROTOCOL_VERSION`].
//! - [`announcement`]: what a relay announces of itself in the cluster's Redis, and the keys.
//! - [`codes`]: the machine-readable error codes ([`ErrorCode`]) and the HTTP error body.
//! - [`ice`]: the `RTCIceServer` / `RTCConfiguration.iceServers` shape handed to clients, and a
//!   trickled ICE candidate.
//! - [`nat`]: the NAT summary peers send each other (`nat-summary`).
//! - [`redact`]: how logs show client and peer addresses ([`Redacted`]: a tag by default).
//! - [`token`]: join tokens (HMAC-SHA256, expiring, one room): what an application server or
//!   a client library mints and natkit-signal checks.
//!
//! # Compatibility
//! Readers are tolerant: unknown fields are ignored on both sides, and a client ignores server
//! messages of a type it does not know ([`ServerMsg::Unknown`]) and error codes it does not know
//! ([`ErrorCode::Other`]). A client may say which version it speaks (`version` in `join`); the
//! server answers with its own in `welcome`. What old and new sides do with each other is in
//! `docs/protocol.md`, "Versions".
//!
//! Out of scope: IO of any kind. This crate is serde types and pure functions (the token MAC included) (and the one switch
//! that shows addresses in logs).

pub mod announcement;
pub mod codes;
pub mod ice;
pub mod messages;
pub mod nat;
pub mod redact;
pub mod token;

pub use codes::{ErrorCode, HttpError};
pub use ice::{IceCandidate, IceServer, IceServers, RelayEndpoints};
pub use messages::{
    valid_name, ClientMsg, ParseError, ServerMsg, Token, Welcome, PROTOCOL_VERSION,
};
pub use nat::{AddressFamily, NatBehaviour, NatSummary};
pub use redact::Redacted;
