//! natkit-peer: a WebRTC data-channel peer (webrtc 0.21) that asks nat-probe what its NAT does,
//! forces relay-only ICE when the NAT calls for it, and connects through natkit-signal.
//!
//! # Layout
//! - [`policy`]: relay-only or not, from `--relay` and the probe report (pure).
//! - [`signaling`]: the natkit-signal client.
//! - [`session`]: the session as a sans-IO state machine (signaling, WebRTC and timer inputs in,
//!   actions out): who offers, glare, candidate buffering, renewal, ICE restarts, the remote peer
//!   leaving and coming back, and the outcome. Table-tested without a socket.
//! - [`peer`]: the driver: join, probe, policy, carrying out the session's actions over the
//!   signaling connection and the data channel; [`events`]: what it reports.
//! - [`rtc`]: the webrtc glue: the peer connection for a policy, its callbacks as events,
//!   candidates and ICE servers converted, the selected pair read from the stats.
//! - [`renewal`]: when to renew credentials, reconnect backoff, who yields on glare (pure).
//! - The signaling messages are `natkit-proto`'s, shared with natkit-signal.

pub mod events;
pub mod peer;
pub mod policy;
pub mod renewal;
pub mod rtc;
pub mod session;
pub mod signaling;
