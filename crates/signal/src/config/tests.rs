use super::*;

fn none(_: &str) -> std::io::Result<String> {
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no"))
}

#[test]
fn precedence_and_defaults() {
    let flags = SignalRaw {
        listen: Some("127.0.0.1:1".into()),
        ..Default::default()
    };
    let env = SignalRaw::from_env([
        ("NATKIT_SIGNAL_LISTEN".into(), "127.0.0.1:2".into()),
        ("NATKIT_SIGNAL_PEERS_PER_ROOM".into(), "2".into()),
        (
            "NATKIT_SIGNAL_ICE_SERVERS".into(),
            "stun:a:3478, turn:b:3478".into(),
        ),
    ]);
    let (file, relay) = SignalFile::parse(
            "peers_per_room = 5\nmax_rooms = 7\nno_relay = true\n[relay]\nrelay_ports = \"50000-50100\"\n",
            "f.toml",
        )
        .unwrap()
        .split();
    let s = SignalRaw::merge(flags, env, file)
        .resolve(None, none)
        .unwrap();
    assert_eq!(s.listen, "127.0.0.1:1".parse().unwrap());
    assert_eq!(s.peers_per_room, 2);
    assert_eq!(s.max_rooms, 7);
    assert!(!s.embedded_relay);
    assert_eq!(s.ice_urls, ["stun:a:3478", "turn:b:3478"]);
    assert_eq!(s.messages_per_second, 50);
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    // Safe by default: no secret configured still means tokens, with a generated secret.
    assert!(s.token.is_some() && s.generated_token && !s.open);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9642".parse().unwrap()));
    assert_eq!(s.max_connections_per_ip, 32);
    assert_eq!(s.credentials_per_minute, 30);
    assert_eq!(relay.relay_ports.as_deref(), Some("50000-50100"));
}

#[test]
fn bad_values_name_their_key() {
    let cases: [(SignalRaw, &str); 9] = [
        (
            SignalRaw {
                auth: Some("closed".into()),
                ..Default::default()
            },
            "auth:",
        ),
        (
            SignalRaw {
                metrics_listen: Some("nowhere".into()),
                ..Default::default()
            },
            "metrics_listen:",
        ),
        (
            SignalRaw {
                header_timeout: Some("0".into()),
                ..Default::default()
            },
            "header_timeout:",
        ),
        (
            SignalRaw {
                listen: Some("x".into()),
                ..Default::default()
            },
            "listen:",
        ),
        (
            SignalRaw {
                credential_ttl: Some("0".into()),
                ..Default::default()
            },
            "credential_ttl:",
        ),
        (
            SignalRaw {
                max_frame_bytes: Some("10".into()),
                ..Default::default()
            },
            "max_frame_bytes:",
        ),
        (
            SignalRaw {
                ping_interval: Some("30".into()),
                idle_timeout: Some("30".into()),
                ..Default::default()
            },
            "idle_timeout:",
        ),
        (
            SignalRaw {
                ice_servers: Some(vec!["http://x".into()]),
                ..Default::default()
            },
            "ice_server:",
        ),
        (
            SignalRaw {
                token_secret_file: Some("/nope".into()),
                ..Default::default()
            },
            "token_secret_file:",
        ),
    ];
    for (raw, key) in cases {
        let e = raw.clone().resolve(None, none).unwrap_err().to_string();
        assert!(e.starts_with(key), "{raw:?}: {e}");
    }
    assert!(SignalFile::parse("lisen = 1\n", "f").is_err());
    // Open mode and a token secret contradict each other.
    let e = SignalRaw {
        auth: Some("open".into()),
        ..Default::default()
    }
    .resolve(Some("secret".into()), none)
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("auth:"), "{e}");
}

#[test]
fn open_mode_and_metrics_off_are_explicit() {
    let s = SignalRaw {
        auth: Some("open".into()),
        metrics_listen: Some("off".into()),
        ..Default::default()
    }
    .resolve(None, none)
    .unwrap();
    assert!(s.open && s.token.is_none() && !s.generated_token);
    assert_eq!(s.metrics_listen, None);
    let (raw, _) = SignalFile::parse("auth = \"open\"\n", "f").unwrap().split();
    assert_eq!(raw.auth.as_deref(), Some("open"));
    let s = SignalRaw::from_env([("NATKIT_SIGNAL_AUTH".to_owned(), "token".to_owned())])
        .resolve(Some("k".into()), none)
        .unwrap();
    assert!(!s.open && !s.generated_token && s.token.is_some());
}

#[test]
fn cluster_keys_from_each_source_and_their_errors() {
    let env = SignalRaw::from_env([
        (
            "NATKIT_SIGNAL_CLUSTER".into(),
            "redis://10.0.0.5:6379".into(),
        ),
        ("NATKIT_SIGNAL_CLUSTER_LEASE".into(), "3".into()),
    ]);
    let s = SignalRaw::merge(SignalRaw::default(), env, SignalRaw::default())
        .resolve(Some("shared".into()), none)
        .unwrap();
    let c = s.cluster.unwrap();
    assert_eq!(
        (c.url.as_str(), c.lease),
        ("redis://10.0.0.5:6379", Duration::from_secs(3))
    );
    let (file, _) = SignalFile::parse("cluster = \"redis://r:6379\"\n", "f")
        .unwrap()
        .split();
    let s = SignalRaw::merge(SignalRaw::default(), SignalRaw::default(), file)
        .resolve(Some("shared".into()), none)
        .unwrap();
    assert_eq!(s.cluster.unwrap().lease, Duration::from_secs(5));
    // Without it, one process is the whole world.
    assert!(SignalRaw::default()
        .resolve(None, none)
        .unwrap()
        .cluster
        .is_none());
    // A password in the URL is never shown.
    let c = ClusterSettings {
        url: "redis://natkit:hunter2@r:6379/0".into(),
        lease: Duration::from_secs(5),
    };
    assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
    assert_eq!(c.redacted(), "redis://***@r:6379/0");
    for (cluster, lease, token, key) in [
        ("http://r:6379", None, Some("s"), "cluster:"),
        ("rediss://r:6379", None, Some("s"), "cluster:"),
        ("redis://r:6379", Some("0"), Some("s"), "cluster_lease:"),
        ("redis://r:6379", Some("61"), Some("s"), "cluster_lease:"),
        // A secret generated per node would make every other node refuse its tokens.
        ("redis://r:6379", None, None, "cluster:"),
    ] {
        let e = SignalRaw {
            cluster: Some(cluster.into()),
            cluster_lease: lease.map(Into::into),
            ..Default::default()
        }
        .resolve(token.map(Into::into), none)
        .unwrap_err()
        .to_string();
        assert!(e.starts_with(key), "{cluster} {lease:?}: {e}");
    }
}
