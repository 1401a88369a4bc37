//! The configuration merge and validation, as tables.
use super::*;

fn no_file(_: &str) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no such file",
    ))
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let env = RawSettings::from_env([
        ("NATKIT_ALT_IP".to_string(), String::new()),
        ("NATKIT_PUBLIC_IP".to_string(), " ".to_string()),
        ("NATKIT_MAX_LIFETIME".to_string(), "120".to_string()),
    ]);
    assert_eq!(env.alt_ip, None);
    assert_eq!(env.public_ip, None);
    let s = RawSettings::merge(RawSettings::default(), env, RawSettings::default())
        .resolve(Some("sekret".into()), no_file)
        .unwrap();
    assert_eq!(s.relay.max_lifetime, std::time::Duration::from_secs(120));
}

#[test]
fn precedence_flags_env_file_defaults() {
    let flags = RawSettings {
        listen: Some("127.0.0.1:1000".into()),
        ..Default::default()
    };
    let env = RawSettings::from_env([
        ("NATKIT_LISTEN".to_string(), "127.0.0.1:2000".to_string()),
        ("NATKIT_REALM".to_string(), "env-realm".to_string()),
        (
            "NATKIT_DENY_PEER".to_string(),
            "10.0.0.0/8, 192.168.0.0/16".to_string(),
        ),
        ("UNRELATED".to_string(), "x".to_string()),
    ]);
    let file: RawSettings = FileSettings::parse(
        "listen = \"127.0.0.1:3000\"\nrealm = \"file-realm\"\nalt_port = 4000\nuser_quota = 3\n",
        "t.toml",
    )
    .unwrap()
    .into();
    let s = RawSettings::merge(flags, env, file)
        .resolve(Some("sekret".into()), no_file)
        .unwrap();
    assert_eq!(s.relay.listen, "127.0.0.1:1000".parse().unwrap()); // flag
    assert_eq!(s.relay.realm, "env-realm"); // env over file
    assert_eq!(s.relay.alt_port, 4000); // file
    assert_eq!(s.relay.user_quota, 3); // file
    assert_eq!(s.relay.total_quota, 10_000); // default
    assert_eq!(s.relay.deny_peers.len(), 2);
    assert_eq!(s.relay.relay_ports, DEFAULT_RELAY_PORTS);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9641".parse().unwrap()));
    assert_eq!(s.relay.secrets.unwrap().len(), 1);
}

#[test]
fn bad_values_name_their_key() {
    let cases: [(RawSettings, &str); 14] = [
        (
            RawSettings {
                listen: Some("nope".into()),
                ..Default::default()
            },
            "listen",
        ),
        (
            RawSettings {
                alt_port: Some("70000".into()),
                ..Default::default()
            },
            "alt_port",
        ),
        (
            RawSettings {
                alt_port: Some("3478".into()),
                ..Default::default()
            },
            "alt_port",
        ),
        (
            RawSettings {
                alt_ip: Some("1.2.3".into()),
                ..Default::default()
            },
            "alt_ip",
        ),
        // alt ip with a wildcard listen address cannot work
        (
            RawSettings {
                alt_ip: Some("192.0.2.2".into()),
                ..Default::default()
            },
            "alt_ip",
        ),
        (
            RawSettings {
                public_ip: Some("x".into()),
                ..Default::default()
            },
            "public_ip",
        ),
        (
            RawSettings {
                relay_ports: Some("5000".into()),
                ..Default::default()
            },
            "relay_ports",
        ),
        (
            RawSettings {
                relay_ports: Some("6000-5000".into()),
                ..Default::default()
            },
            "relay_ports",
        ),
        (
            RawSettings {
                allow_peer: Some(vec!["10.0.0.0/33".into()]),
                ..Default::default()
            },
            "allow_peer",
        ),
        (
            RawSettings {
                user_quota: Some("-1".into()),
                ..Default::default()
            },
            "user_quota",
        ),
        (
            RawSettings {
                metrics_listen: Some("9641".into()),
                ..Default::default()
            },
            "metrics_listen",
        ),
        // The kernel path rewrites packets addressed to one IPv4 address.
        (
            RawSettings {
                kernel_path: Some(vec!["eth0".into()]),
                ..Default::default()
            },
            "kernel_path",
        ),
        (
            RawSettings {
                listen: Some("[2001:db8::1]:3478".into()),
                kernel_path: Some(vec!["eth0".into()]),
                ..Default::default()
            },
            "kernel_path",
        ),
        (
            RawSettings {
                listen: Some("192.0.2.1:3478".into()),
                kernel_path: Some(vec!["eth0/../x".into()]),
                ..Default::default()
            },
            "kernel_path",
        ),
    ];
    for (raw, key) in cases {
        let err = raw.clone().resolve(Some("s".into()), no_file).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{key}:")), "{raw:?} gave {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}

#[test]
fn secrets_from_env_and_file_in_order() {
    let raw = RawSettings {
        secret_file: Some("/run/secrets/turn".into()),
        ..Default::default()
    };
    let read = |p: &str| {
        assert_eq!(p, "/run/secrets/turn");
        Ok("# rotated 2026-11-01\nnew-one\n\n  old-one  \n".to_string())
    };
    let s = raw.clone().resolve(Some("env-one".into()), read).unwrap();
    let secrets = s.relay.secrets.unwrap();
    assert_eq!(secrets.len(), 3);
    assert_eq!(secrets.current(), &Secret::new("env-one").unwrap());
    let s = raw.clone().resolve(None, read).unwrap();
    assert_eq!(
        s.relay.secrets.unwrap().current(),
        &Secret::new("new-one").unwrap()
    );

    let err = raw.clone().resolve(None, no_file).unwrap_err().to_string();
    assert!(
        err.starts_with("secret_file /run/secrets/turn: cannot read"),
        "{err}"
    );
    let err = raw
        .resolve(None, |_| Ok("# only a comment\n".into()))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("secret_file:"), "{err}");
    // No secret anywhere is not an error here: the binary decides what that means.
    assert!(RawSettings::default()
        .resolve(None, no_file)
        .unwrap()
        .relay
        .secrets
        .is_none());
}

#[test]
fn file_rejects_unknown_keys_and_secrets() {
    for text in [
        "secret = \"x\"\n",
        "lisen = \"1.2.3.4:1\"\n",
        "alt_port = \"x\"\n",
    ] {
        assert!(FileSettings::parse(text, "f.toml").is_err(), "{text}");
    }
}

#[test]
fn cidr_forms() {
    assert_eq!(
        parse_cidr("k", "10.1.2.3/8").unwrap().to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        parse_cidr("k", "127.0.0.1").unwrap().to_string(),
        "127.0.0.1/32"
    );
    assert_eq!(parse_cidr("k", "::1").unwrap().to_string(), "::1/128");
    assert!(parse_cidr("k", "banana").is_err());
}

#[test]
fn metrics_can_be_turned_off() {
    let raw = RawSettings {
        metrics_listen: Some("off".into()),
        ..Default::default()
    };
    assert_eq!(raw.resolve(None, no_file).unwrap().metrics_listen, None);
}

#[test]
fn the_alternate_port_follows_the_listen_port_unless_set() {
    let cases = [
        // (listen, alt_port set, alt_port used)
        ("0.0.0.0:3478", None, 3479),
        ("127.0.0.1:4478", None, 4479),
        ("127.0.0.1:0", None, 0),
        ("127.0.0.1:65535", None, 65534),
        ("127.0.0.1:4478", Some("3479"), 3479),
    ];
    for (listen, alt, want) in cases {
        let s = RawSettings {
            listen: Some(listen.into()),
            alt_port: alt.map(str::to_owned),
            ..Default::default()
        }
        .resolve(Some("sekret".into()), no_file)
        .unwrap();
        assert_eq!(s.relay.alt_port, want, "{listen} {alt:?}");
    }
}
