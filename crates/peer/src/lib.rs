//! natkit-peer: a WebRTC data-channel peer (webrtc 0.21) that asks nat-probe what its NAT does,
//! forces relay-only ICE when the NAT calls for it, and connects through natkit-signal.
//!
//! # Layout
//! - [`policy`]: relay-only or not, from `--relay` and the probe report (pure).
//! - [`signaling`]: the natkit-signal client.
//! - [`peer`]: the connection: probe, policy, offer/answer by convention, trickle ICE both ways,
//!   the data channel, `--echo` and `--send`; [`events`]: what it reports.
//!
//! - [`renewal`]: when to renew credentials, reconnect backoff, who yields on glare (pure).

pub mod events;
pub mod peer;
pub mod policy;
pub mod renewal;
pub mod signaling;
