//! natkit-peer-core: what a natkit peer decides, with no socket, clock or WebRTC stack of its
//! own. natkit-peer (Rust, on webrtc-rs) and the Python package (on aiortc) are shells around
//! it, so a peer in either language probes, pairs, renews and restarts by the same rules.
//!
//! # Layout
//! - [`policy`]: the pair rule: relay-only or not, from the relay mode, this side's NAT summary
//!   and the remote peer's; which ICE servers a session uses. Its table is `pair_rule.tsv`,
//!   read by the tests of every language.
//! - [`session`]: the session as a sans-IO state machine (signaling, WebRTC and timer inputs in,
//!   actions out): who offers, glare, candidate buffering, renewal, ICE restarts, the remote peer
//!   leaving and coming back, and the outcome. Table-tested without a socket.
//! - [`renewal`]: when to renew credentials, reconnect backoff, who yields on glare.
//! - [`events`]: what a peer reports (natkit-peer's `--json` lines).

pub mod events;
pub mod policy;
pub mod renewal;
pub mod session;
