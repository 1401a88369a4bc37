//! Signaling frames read by the server and by clients: `natkit_signal::fuzz::signal_json`.
fn main() {
    afl::fuzz!(|data: &[u8]| natkit_signal::fuzz::signal_json(data));
}
