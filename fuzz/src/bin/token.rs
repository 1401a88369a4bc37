//! Join tokens: `natkit_signal::fuzz::token`.
fn main() {
    afl::fuzz!(|data: &[u8]| natkit_signal::fuzz::token(data));
}
