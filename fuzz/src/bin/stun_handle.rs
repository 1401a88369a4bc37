//! The relay's decision path for one datagram (raw and re-signed): `natkit_turn_core::fuzz`.
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;

use natkit_turn_core::fuzz::{attribute_count, RelayHarness};

/// The harness sits in a RefCell behind AssertUnwindSafe, so the closure below captures a shared
/// reference and is unwind-safe: a panic ends the run (AFL++ records the crash) and the harness
/// is not reused after one.
fn feed(harness: &AssertUnwindSafe<RefCell<RelayHarness>>, data: &[u8]) {
    harness.0.borrow_mut().datagram(data);
    attribute_count(data);
}

fn main() {
    let harness = AssertUnwindSafe(RefCell::new(RelayHarness::new()));
    afl::fuzz!(|data: &[u8]| feed(&harness, data));
}
