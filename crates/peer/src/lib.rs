//! natkit-peer: a WebRTC data-channel peer (webrtc 0.21) that asks nat-probe what its NAT does,
//! forces relay-only ICE when the NAT calls for it, and connects through natkit-signal.
//!
//! # Layout
//! - [`policy`], [`session`], [`renewal`], [`events`]: the decisions, from `natkit-peer-core`
//!   (pure, shared with the Python package): the pair rule, the session state machine, renewal
//!   timing, what a peer reports.
//! - [`signaling`]: the natkit-signal client.
//! - [`peer`]: the driver: join, probe, policy, carrying out the session's actions over the
//!   signaling connection and the data channel; [`events`]: what it reports.
//! - [`rtc`]: the webrtc glue: the peer connection for a policy, its callbacks as events,
//!   candidates and ICE servers converted, the selected pair read from the stats.
//! - The signaling messages are `natkit-proto`'s, shared with natkit-signal.

pub use natkit_peer_core::{events, policy, renewal, session};
pub mod peer;
pub mod rtc;
pub mod signaling;
