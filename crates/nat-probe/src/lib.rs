//! nat-probe: what does this host's NAT do, and does a peer behind it need TURN?
//!
//! Inputs: one RFC 5780 STUN server (natkit-relay with `--alt-ip`, or coturn with two listening
//! IPs), or several plain STUN servers. Output: a [`report::NatReport`] with the RFC 4787 mapping
//! and filtering behaviours, the classic NAT type name and a `force_turn` decision.
//!
//! # Layout
//! - [`classify`]: the verdict as a pure function of observations (table-tested).
//! - [`rto`]: the RFC 8489 retransmission schedule, adapted to the measured RTT (pure).
//! - [`client`]: the async shell that runs the tests on fresh sockets; [`probe`] is the entry point.
//! - [`icmp`]: ICMP errors on the probe's socket, so that a closed port (port unreachable from
//!   the server itself) is a [`ProbeError::NoStunServer`], not `udp-blocked`.
//! - [`report`]: the report and its stable JSON form (`docs/nat-probe.md`).
//!
//! # RFC sections
//! RFC 5780 sections 4.3 (mapping), 4.4 (filtering), 4.5 (hairpinning), 4.6 (binding lifetime,
//! measured here by re-binding after idle periods since natkit has no RESPONSE-PORT), 7.2
//! (CHANGE-REQUEST); RFC 4787 sections 4.1 and 5 (behaviour names); RFC 8489 section 6.2.1
//! (retransmissions).
//!
//! # Out of scope
//! TCP behaviour, NAT collision and port-prediction tests. IPv6 runs the same tests in that family
//! ([`Family`]; an IPv6 network usually translates nothing, so what it shows is its firewall's
//! filtering); NAT64 is not detected as such.

pub mod classify;
pub mod client;
pub mod error;
pub mod icmp;
pub mod report;
pub mod rto;

pub use classify::{Behaviour, NatType};
pub use client::{probe, Family, ProbeConfig};
pub use error::ProbeError;
pub use report::NatReport;
