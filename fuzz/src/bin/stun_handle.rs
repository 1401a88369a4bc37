//! The relay's decision path for one datagram (raw and re-signed): `natkit_stun_turn::fuzz`.
use std::panic::AssertUnwindSafe;

use natkit_stun_turn::fuzz::{attribute_count, RelayHarness};

/// Takes the wrapper whole, so the closure below captures it (not its field) and is unwind-safe:
/// a panic ends the run (AFL++ records the crash) and the harness is not reused after one.
fn feed(harness: &AssertUnwindSafe<RelayHarness>, data: &[u8]) {
    harness.0.datagram(data);
    attribute_count(data);
}

fn main() {
    let harness = AssertUnwindSafe(RelayHarness::new());
    afl::fuzz!(|data: &[u8]| feed(&harness, data));
}
