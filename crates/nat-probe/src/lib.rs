//! nat-probe: a NAT classifier in RFC 5780 and RFC 4787 terms.
//!
//! Not built yet: this crate is an empty library until the nat-probe issue lands. It ships no
//! binary.
