//! ChannelData framing: `natkit_turn_core::fuzz::channel_data`.
fn main() {
    afl::fuzz!(|data: &[u8]| natkit_turn_core::fuzz::channel_data(data));
}
