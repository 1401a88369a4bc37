//! The configuration examples operators copy from deploy/ load with the relay's own parser.

use natkit_stun_turn::config::{FileSettings, RawSettings};

#[test]
fn relay_example_toml_loads_and_validates() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/relay.example.toml"
    );
    let file: RawSettings = FileSettings::load(path).expect("example parses").into();
    let settings = RawSettings::merge(RawSettings::default(), RawSettings::default(), file)
        .resolve(None, |p| {
            assert_eq!(p, "/run/secrets/natkit_turn_secret");
            Ok("example-secret\n".into())
        })
        .expect("example validates");
    assert_eq!(settings.relay.listen.port(), 3478);
    assert_eq!(settings.relay.alt_port, 3479);
    assert_eq!(settings.relay.deny_peers.len(), 3);
    assert_eq!(settings.relay.secrets.unwrap().len(), 1);
}
