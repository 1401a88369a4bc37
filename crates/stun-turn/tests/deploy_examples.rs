//! The configuration examples operators copy from deploy/ load with the relay's own parser, and
//! name every key.

use natkit_stun_turn::config::{RelayConfig, RelayOptions, Settings};

use natkit_testkit::repo_file;

const EXAMPLE: &str = "deploy/relay.example.toml";

#[test]
fn relay_example_toml_loads_and_validates() {
    let file = RelayOptions::from_file(&repo_file(EXAMPLE)).expect("example parses");
    let relay = RelayConfig::from_options(
        file.clone(),
        natkit_testkit::one_file("/run/secrets/natkit_turn_secret", "example-secret\n"),
    )
    .expect("example validates");
    let settings = Settings::new(&file, relay).expect("example validates");
    assert_eq!(settings.relay.primary_listen().port(), 3478);
    assert_eq!(settings.relay.alt_port, 3479);
    assert_eq!(settings.relay.deny_peers.len(), 3);
    assert_eq!(settings.relay.secrets.len(), 1);
}

/// Every key of the relay's file is in the example, set or commented out.
#[test]
fn the_relay_example_names_every_key() {
    let text = std::fs::read_to_string(repo_file(EXAMPLE)).unwrap();
    let missing = natkit_testkit::keys_missing_from(&text, &RelayOptions::default(), &[]);
    assert!(
        missing.is_empty(),
        "deploy/relay.example.toml lacks {missing:?}"
    );
}
