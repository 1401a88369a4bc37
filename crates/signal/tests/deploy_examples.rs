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
