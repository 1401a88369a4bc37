use super::*;

fn none(_: &str) -> std::io::Result<String> {
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no"))
}

use natkit_testkit::with_env;

/// Validates `o`, `token` standing for `NATKIT_SIGNAL_TOKEN_SECRET`.
fn resolve(o: SignalOptions, token: Option<&str>, read: Read) -> SignalResult {
    let with_token = SignalOptions {
        token_secret: token.map(|t| SecretText(t.into())),
        ..o
    };
    SignalConfig::from_options(with_token, read)
}

type Read = fn(&str) -> std::io::Result<String>;
type SignalResult = Result<SignalConfig, SignalConfigError>;

/// natkit-signal's flags over the environment, as its clap parses them.
fn parse_cli(args: &[&str]) -> SignalOptions {
    #[derive(clap::Parser)]
    struct Signal {
        #[command(flatten)]
        options: SignalOptions,
    }
    let argv = std::iter::once("natkit-signal").chain(args.iter().copied());
    <Signal as clap::Parser>::try_parse_from(argv)
        .unwrap()
        .options
}

/// One table for both layers a node reads: the signal keys (flags > `NATKIT_SIGNAL_*` > file >
/// defaults) and its embedded relay's (`--relay-*` flags > the relay's `NATKIT_*` > `[relay]`).
#[test]
fn precedence_and_defaults() {
    let dir = std::env::temp_dir().join(format!("natkit-signal-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("signal.toml");
    std::fs::write(
        &file,
        "peers_per_room = 5\nmax_rooms = 7\nno_relay = true\n[relay]\nrelay_ports = \"50000-50100\"\n\
         realm = \"file-realm\"\nuser_quota = 4\npublic_ip = \"192.0.2.9\"\n",
    )
    .unwrap();
    let node = with_env(
        &[
            ("NATKIT_SIGNAL_LISTEN", "127.0.0.1:2"),
            ("NATKIT_SIGNAL_PEERS_PER_ROOM", "2"),
            ("NATKIT_SIGNAL_ICE_SERVERS", "stun:a:3478, turn:b:3478"),
            ("NATKIT_TURN_SECRET", "turn"),
            ("NATKIT_REALM", "env-realm"),
            ("NATKIT_PUBLIC_IP", "192.0.2.8"),
            ("NATKIT_RELAY_PORTS", "40000-40010"),
        ],
        || {
            let cli = parse_cli(&["--listen", "127.0.0.1:1", "--relay-ports", "30000-30010"]);
            load(&cli, Some(&file)).unwrap()
        },
    );
    let s = &node.signal;
    assert_eq!(s.listen, "127.0.0.1:1".parse().unwrap()); // flag over env
    assert_eq!(s.peers_per_room, 2); // env over file
    assert_eq!(s.max_rooms, 7); // file
    assert!(!s.embedded_relay); // file
    assert_eq!(s.ice_urls, ["stun:a:3478", "turn:b:3478"]); // env list
    assert_eq!(s.messages_per_second, 50); // default
    assert_eq!(s.idle_timeout, Duration::from_secs(60));
    // Safe by default: no secret configured still means tokens, with a generated secret.
    assert!(s.token.is_some() && s.generated_token && !s.open);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9642".parse().unwrap()));
    assert_eq!(s.max_connections_per_ip, 32);
    assert_eq!(s.credentials_per_minute, 30);
    let r = &node.relay;
    assert_eq!(r.relay_ports, 30000..=30010); // --relay-ports over NATKIT_RELAY_PORTS
    assert_eq!(r.listen[0].public_ip, Some("192.0.2.8".parse().unwrap())); // env over [relay]
    assert_eq!(r.realm, "env-realm"); // env over [relay]
    assert_eq!(r.user_quota, 4); // [relay]
    assert_eq!(r.total_quota, 10_000); // default
    assert!(!node.generated_secret); // NATKIT_TURN_SECRET
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn flags_that_take_no_value_and_their_variables() {
    let (open, no_relay) = with_env(&[("NATKIT_SIGNAL_NO_RELAY", "yes")], || {
        (parse_cli(&["--open"]), parse_cli(&[]))
    });
    let s = resolve(open.over(&SignalOptions::default()), None, none).unwrap();
    assert!(s.open && s.token.is_none());
    assert!(no_relay.no_relay);
    let off = with_env(&[("NATKIT_SIGNAL_NO_RELAY", "0")], || parse_cli(&[]));
    assert!(!off.no_relay);
    // A file's switch stands unless a flag or variable turns it on: they cannot turn it off.
    let file: SignalOptions = layer::parse_toml("no_relay = true\n", "f").unwrap();
    assert!(off.over(&file).no_relay);
}

/// Each row: a file (the one layer reads flags, variables and files alike) and the key its
/// error must name.
#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("auth = \"closed\"", "auth"),
        ("metrics_listen = \"nowhere\"", "metrics_listen"),
        ("header_timeout = 0", "header_timeout"),
        ("listen = \"x\"", "listen"),
        ("credential_ttl = 0", "credential_ttl"),
        ("max_frame_bytes = 10", "max_frame_bytes"),
        ("ping_interval = 30\nidle_timeout = 30", "idle_timeout"),
        ("ice_servers = [\"http://x\"]", "ice_server"),
        ("token_secret_file = \"/nope\"", "token_secret_file"),
    ];
    for (file, key) in cases {
        let raw: SignalOptions = layer::parse_toml(file, "t.toml").unwrap();
        let e = resolve(raw, None, none).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{key}:")), "{file}: {e}");
    }
    assert!(layer::parse_toml::<SignalOptions>("lisen = 1\n", "f").is_err());
    assert!(layer::parse_toml::<SignalOptions>("open = true\n", "f").is_err());
    // Open mode and a token secret contradict each other; so do --open and auth = "token".
    let open = SignalOptions {
        auth: Some("open".into()),
        ..Default::default()
    };
    let e = resolve(open, Some("secret"), none).unwrap_err().to_string();
    assert!(e.starts_with("auth:"), "{e}");
    let both = SignalOptions {
        auth: Some("token".into()),
        open: true,
        ..Default::default()
    };
    let e = resolve(both, None, none).unwrap_err().to_string();
    assert!(e.starts_with("auth:"), "{e}");
}

#[test]
fn open_mode_and_metrics_off_are_explicit() {
    let o = SignalOptions {
        auth: Some("open".into()),
        metrics_listen: Some("off".into()),
        ..Default::default()
    };
    let s = resolve(o, None, none).unwrap();
    assert!(s.open && s.token.is_none() && !s.generated_token);
    assert_eq!(s.metrics_listen, None);
    let raw: SignalOptions = layer::parse_toml("auth = \"open\"\n", "f").unwrap();
    assert_eq!(raw.auth, Some("open".into()));
    let env = with_env(&[("NATKIT_SIGNAL_AUTH", "token")], || parse_cli(&[]));
    let s = resolve(env, Some("k"), none).unwrap();
    assert!(!s.open && !s.generated_token && s.token.is_some());
}

#[test]
fn cluster_keys_from_each_source_and_their_errors() {
    let env = with_env(
        &[
            ("NATKIT_SIGNAL_CLUSTER", "redis://10.0.0.5:6379"),
            ("NATKIT_SIGNAL_CLUSTER_LEASE", "3"),
        ],
        || parse_cli(&[]),
    );
    let s = resolve(env.over(&SignalOptions::default()), Some("shared"), none).unwrap();
    let c = s.cluster.unwrap();
    assert_eq!(
        (c.url.as_str(), c.lease),
        ("redis://10.0.0.5:6379", Duration::from_secs(3))
    );
    let file: SignalOptions = layer::parse_toml("cluster = \"redis://r:6379\"\n", "f").unwrap();
    let s = resolve(SignalOptions::default().over(&file), Some("shared"), none).unwrap();
    assert_eq!(s.cluster.unwrap().lease, Duration::from_secs(5));
    // Without it, one process is the whole world.
    assert!(resolve(SignalOptions::default(), None, none)
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
        let o = SignalOptions {
            cluster: Some(cluster.into()),
            cluster_lease: lease.map(Into::into),
            ..Default::default()
        };
        let e = resolve(o, token, none).unwrap_err().to_string();
        assert!(e.starts_with(key), "{cluster} {lease:?}: {e}");
    }
}

/// `plain_api` only means something beside the TLS port.
#[test]
fn plain_api_needs_the_tls_port() {
    let o: SignalOptions = layer::parse_toml("plain_api = true\n", "t.toml").unwrap();
    let e = NodeConfig::try_from(o).err().expect("an error").to_string();
    assert!(e.starts_with("plain_api:"), "{e}");
    let o: SignalOptions = layer::parse_toml(
        "plain_api = true\n[relay]\ntls_listen = \":443\"\nacme_domains = [\"turn.example.com\"]\n",
        "t.toml",
    )
    .unwrap();
    let node = NodeConfig::try_from(o).unwrap_or_else(|e| panic!("{e}"));
    assert!(node.signal.plain_api);
}
