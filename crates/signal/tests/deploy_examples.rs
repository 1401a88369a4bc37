//! deploy/signal.example.toml loads with natkit-signal's own parser, relay table included.

use natkit_signal::config::{SignalFile, SignalRaw};

#[test]
fn signal_example_toml_loads_and_validates() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/signal.example.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let (signal, relay) = SignalFile::parse(&text, path)
        .expect("example parses")
        .split();
    let s = SignalRaw::merge(SignalRaw::default(), SignalRaw::default(), signal)
        .resolve(None, |p| {
            assert_eq!(p, "/run/secrets/natkit_signal_token_secret");
            Ok("example-token-secret\n".into())
        })
        .expect("example validates");
    assert!(s.token.is_some());
    assert!(s.embedded_relay);
    assert_eq!(s.peers_per_room, 16);
    let relay = relay
        .resolve(None, |p| {
            assert_eq!(p, "/run/secrets/natkit_turn_secret");
            Ok("example-turn-secret\n".into())
        })
        .expect("relay table validates");
    assert_eq!(relay.relay.deny_peers.len(), 3);
    assert_eq!(relay.relay.listen.port(), 3478);
}
