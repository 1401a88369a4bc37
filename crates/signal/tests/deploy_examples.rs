//! deploy/signal.example.toml loads with natkit-signal's own parser, relay table included.

use natkit_signal::config::{SignalConfig, SignalOptions};
use natkit_stun_turn::config::RelayConfig;

fn example() -> std::path::PathBuf {
    natkit_testkit::repo_file("deploy/signal.example.toml")
}

#[test]
fn signal_example_toml_loads_and_validates() {
    let file = SignalOptions::from_file(&example()).expect("example parses");
    let s = SignalConfig::from_options(
        file.clone(),
        natkit_testkit::one_file(
            "/run/secrets/natkit_signal_token_secret",
            "example-token-secret\n",
        ),
    )
    .expect("example validates");
    assert!(s.token.is_some());
    assert!(s.embedded_relay);
    assert_eq!(s.peers_per_room, 16);
    let relay = RelayConfig::from_options(
        file.relay,
        natkit_testkit::one_file("/run/secrets/natkit_turn_secret", "example-turn-secret\n"),
    )
    .expect("relay table validates");
    assert_eq!(relay.deny_peers.len(), 3);
    assert_eq!(relay.primary_listen().port(), 3478);
}

/// Every key of natkit-signal's file is in the example, set or commented out, so operators can
/// find each one. (The `[relay]` table's keys are natkit-relay's, checked against
/// deploy/relay.example.toml, to which the table points.)
#[test]
fn the_signal_example_names_every_key() {
    let text = std::fs::read_to_string(example()).unwrap();
    let (top, _relay) = text.split_once("\n[relay]\n").expect("a [relay] table");
    let missing = natkit_testkit::keys_missing_from(top, &SignalOptions::default(), &["relay"]);
    assert!(
        missing.is_empty(),
        "deploy/signal.example.toml lacks {missing:?}"
    );
    assert!(text.contains("deploy/relay.example.toml"));
}

/// The Python token minter in deploy/README.md ("Tokens") makes tokens natkit-signal accepts.
#[test]
fn the_python_token_example_in_the_deploy_readme_mints_valid_tokens() {
    let readme = include_str!("../../../deploy/README.md");
    let code = readme
        .split("```python\n")
        .nth(1)
        .and_then(|r| r.split("```").next())
        .expect("deploy/README.md has a python example");
    let program =
        format!("{code}\nprint(natkit_token(\" example-secret \\n\", \"standup\", 600))\n");
    let out = std::process::Command::new("python3")
        .args(["-c", &program])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let key = natkit_signal::token::TokenSecret::new("example-secret").unwrap();
    let expires = key
        .authorize(Some(token.trim()), "standup", natkit_daemon::unix_now())
        .expect("the server accepts the Python token");
    assert!(expires > natkit_daemon::unix_now() + 500);
}
