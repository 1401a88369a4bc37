//! natkit-signal: the WebSocket signaling server (rooms, trickle ICE, time-limited ICE
//! credentials) that embeds the relay from `natkit-stun-turn`.
//!
//! Not built yet: this crate is an empty library until the signaling issue lands. It ships no
//! binary, so nothing here pretends to work.
