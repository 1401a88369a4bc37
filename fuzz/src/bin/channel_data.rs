//! ChannelData framing: `natkit_stun_turn::fuzz::channel_data`.
fn main() {
    afl::fuzz!(|data: &[u8]| natkit_stun_turn::fuzz::channel_data(data));
}
