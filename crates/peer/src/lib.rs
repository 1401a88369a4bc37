//! natkit-peer: a WebRTC data-channel peer that runs the NAT probe and forces relay-only ICE
//! when the NAT calls for it.
//!
//! Not built yet: this crate is an empty library until the peer issue lands. It ships no binary.
