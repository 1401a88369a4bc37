//! TURN over TCP/TLS: one connection's bytes cut into frames and run through the relay's core
//! (`natkit_turn_core::fuzz::RelayHarness::stream`).
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;

use natkit_turn_core::fuzz::RelayHarness;

fn feed(harness: &AssertUnwindSafe<RefCell<RelayHarness>>, data: &[u8]) {
    harness.0.borrow_mut().stream(data);
}

fn main() {
    let harness = AssertUnwindSafe(RefCell::new(RelayHarness::new()));
    afl::fuzz!(|data: &[u8]| feed(&harness, data));
}
