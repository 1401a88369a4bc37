//! The configuration merge and validation, as tables.
use super::*;

fn no_file(_: &str) -> std::io::Result<String> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no such file",
    ))
}

/// Validates `o` with `secret` as `NATKIT_TURN_SECRET`.
fn resolve(o: RelayOptions, secret: Option<&str>, read: Read) -> Result<Settings, ConfigError> {
    let turn_secret = secret.map(|s| SecretText(s.into()));
    let relay = RelayConfig::from_options(
        RelayOptions {
            turn_secret,
            ..o.clone()
        },
        read,
    )?;
    Settings::new(&o, relay)
}

type Read = fn(&str) -> std::io::Result<String>;

/// The flags and environment layer exactly as natkit-relay's clap parses it, with `env` set
/// for the parse only.
fn parse_cli(args: &[&str], env: &[(&str, &str)]) -> RelayOptions {
    #[derive(clap::Parser)]
    struct Relay {
        #[command(flatten)]
        options: RelayOptions,
    }
    let argv = std::iter::once("natkit-relay").chain(args.iter().copied());
    natkit_testkit::with_env(env, || {
        <Relay as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .options
    })
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let cli = parse_cli(
        &[],
        &[
            ("NATKIT_ALT_IP", ""),
            ("NATKIT_PUBLIC_IP", " "),
            ("NATKIT_MAX_LIFETIME", "120"),
        ],
    );
    let s = resolve(cli.over(&RelayOptions::default()), Some("sekret"), no_file).unwrap();
    assert_eq!(s.relay.alt_ip, None);
    assert!(s.relay.listen.iter().all(|l| l.public_ip.is_none()));
    assert_eq!(s.relay.max_lifetime, std::time::Duration::from_secs(120));
}

/// One row per source: each key set where the table says, and the winner.
#[test]
fn precedence_flags_env_file_defaults() {
    let cli = parse_cli(
        &["--listen", "127.0.0.1:1000", "--allow-peer", "10.1.0.0/16"],
        &[
            ("NATKIT_LISTEN", "127.0.0.1:2000"),
            ("NATKIT_REALM", "env-realm"),
            ("NATKIT_DENY_PEER", "10.0.0.0/8, 192.168.0.0/16"),
            ("NATKIT_ALLOW_PEER", "10.2.0.0/16"),
            ("UNRELATED", "x"),
        ],
    );
    let file: RelayOptions = layer::parse_toml(
        "listen = \"127.0.0.1:3000\"\nrealm = \"file-realm\"\nalt_port = 4000\nuser_quota = 3\n\
         deny_peer = [\"172.16.0.0/12\"]\n",
        "t.toml",
    )
    .unwrap();
    let s = resolve(cli.over(&file), Some("sekret"), no_file).unwrap();
    assert_eq!(s.relay.primary_listen(), "127.0.0.1:1000".parse().unwrap()); // flag over env and file
    assert_eq!(
        s.relay.listen.len(),
        1,
        "one listen address given: one family"
    );
    assert_eq!(s.relay.allow_peers, vec!["10.1.0.0/16".parse().unwrap()]); // flag over env
    assert_eq!(s.relay.realm, "env-realm"); // env over file
    assert_eq!(s.relay.deny_peers.len(), 2); // env (a comma-separated list) over file
    assert_eq!(s.relay.alt_port, 4000); // file
    assert_eq!(s.relay.user_quota, 3); // file
    assert_eq!(s.relay.total_quota, 10_000); // default
    assert_eq!(s.relay.relay_ports, DEFAULT_RELAY_PORTS);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9641".parse().unwrap()));
    assert_eq!(s.relay.secrets.len(), 1);
}

/// Each row: a file (the one layer reads flags, variables and files alike) and the key its
/// error must name.
#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("listen = \"nope\"", "listen"),
        ("alt_port = 70000", "alt_port"),
        ("alt_port = 3478", "alt_port"),
        ("alt_ip = \"1.2.3\"", "alt_ip"),
        // alt ip with a wildcard listen address cannot work
        ("alt_ip = \"192.0.2.2\"", "alt_ip"),
        ("public_ip = \"x\"", "public_ip"),
        // One listen address and one public IP per family.
        ("listen = [\"0.0.0.0:3478\", \"127.0.0.1:3479\"]", "listen"),
        ("listen = [\"[::]:3478\", \"[::1]:3479\"]", "listen"),
        ("listen = \"0.0.0.0:3478\"\npublic_ip = \"2001:db8::1\"", "public_ip"),
        ("public_ip = [\"192.0.2.1\", \"192.0.2.2\"]", "public_ip"),
        ("public_ip = \"0.0.0.0\"", "public_ip"),
        ("listen = \"[::1]:3478\"\nalt_ip = \"192.0.2.2\"", "alt_ip"),
        ("default_family = \"ipv6\"", "default_family"),
        ("relay_ports = \"5000\"", "relay_ports"),
        ("relay_ports = \"6000-5000\"", "relay_ports"),
        ("allow_peer = [\"10.0.0.0/33\"]", "allow_peer"),
        ("user_quota = -1", "user_quota"),
        ("metrics_listen = 9641", "metrics_listen"),
        // The kernel path rewrites packets addressed to one IPv4 address.
        ("kernel_path = [\"eth0\"]", "kernel_path"),
        (
            "listen = \"[2001:db8::1]:3478\"\nkernel_path = [\"eth0\"]",
            "kernel_path",
        ),
        (
            "listen = \"192.0.2.1:3478\"\nkernel_path = [\"eth0/../x\"]",
            "kernel_path",
        ),
        // ACME: the challenge is answered on the TLS listener, one certificate source.
        ("acme_domains = [\"turn.example.com\"]", "tls_listen"),
        (
            "tls_listen = \":443\"\nacme_domains = [\"turn.example.com\"]\ntls_cert = \"c.pem\"",
            "acme_domains",
        ),
        (
            "tls_listen = \":443\"\nacme_domains = [\"*.example.com\"]",
            "acme_domains",
        ),
        (
            "tls_listen = \":443\"\nacme_domains = [\"192.0.2.1\"]",
            "acme_domains",
        ),
        (
            "tls_listen = \":443\"\nacme_domains = [\"localhost\"]",
            "acme_domains",
        ),
        (
            "tls_listen = \":443\"\nacme_domains = [\"a..example.com\"]",
            "acme_domains",
        ),
        (
            "tls_listen = \":443\"\nacme_domains = [\"a.example.com\"]\nacme_directory = \"http://ca.test/dir\"",
            "acme_directory",
        ),
        (
            "tls_listen = \":443\"\nacme_domains = [\"a.example.com\"]\nacme_email = \"ops\"",
            "acme_email",
        ),
        ("acme_email = \"ops@example.com\"", "acme_email"),
        ("acme_state_dir = \"/tmp/x\"", "acme_state_dir"),
    ];
    for (file, key) in cases {
        let raw: RelayOptions = layer::parse_toml(file, "t.toml").unwrap();
        let err = resolve(raw, Some("s"), no_file).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{key}:")), "{file} gave {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}

#[test]
fn secrets_from_env_and_file_in_order() {
    let raw = RelayOptions {
        secret_file: Some("/run/secrets/turn".into()),
        ..Default::default()
    };
    let read = |p: &str| {
        assert_eq!(p, "/run/secrets/turn");
        Ok("# rotated 2026-11-01\nnew-one\n\n  old-one  \n".to_string())
    };
    let s = resolve(raw.clone(), Some("env-one"), read).unwrap();
    let secrets = s.relay.secrets;
    assert_eq!(secrets.len(), 3);
    assert_eq!(secrets.current(), &Secret::new("env-one").unwrap());
    let s = resolve(raw.clone(), None, read).unwrap();
    assert_eq!(s.relay.secrets.current(), &Secret::new("new-one").unwrap());

    let err = resolve(raw.clone(), None, no_file).unwrap_err().to_string();
    assert!(
        err.starts_with("secret_file /run/secrets/turn: cannot read"),
        "{err}"
    );
    let err = resolve(raw, None, |_| Ok("# only a comment\n".into()))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("secret_file:"), "{err}");
    // No secret anywhere: the error says how to set one.
    let err = resolve(RelayOptions::default(), None, no_file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("NATKIT_TURN_SECRET") && err.contains("secret_file"),
        "{err}"
    );
}

#[test]
fn file_rejects_unknown_keys_and_secrets() {
    for text in [
        "secret = \"x\"\n",
        "turn_secret = \"x\"\n",
        "lisen = \"1.2.3.4:1\"\n",
    ] {
        assert!(
            layer::parse_toml::<RelayOptions>(text, "f.toml").is_err(),
            "{text}"
        );
    }
    // A value of the wrong kind is read, then refused naming its key.
    let o: RelayOptions = layer::parse_toml("alt_port = \"x\"\n", "f.toml").unwrap();
    let err = resolve(o, Some("s"), no_file).unwrap_err().to_string();
    assert!(err.starts_with("alt_port:"), "{err}");
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
    let raw = RelayOptions {
        metrics_listen: Some("off".into()),
        ..Default::default()
    };
    assert_eq!(
        resolve(raw, Some("s"), no_file).unwrap().metrics_listen,
        None
    );
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
        let o = RelayOptions {
            listen: vec![listen.into()],
            alt_port: alt.map(Setting::from),
            ..Default::default()
        };
        let s = resolve(o, Some("sekret"), no_file).unwrap();
        assert_eq!(s.relay.alt_port, want, "{listen} {alt:?}");
    }
}

#[test]
fn acme_keys_from_flags_and_environment() {
    let cli = parse_cli(
        &["--tls-listen", ":443", "--acme-domain", "Turn.Example.com"],
        &[
            ("NATKIT_ACME_EMAIL", "ops@example.com"),
            ("NATKIT_ACME_STATE_DIR", "/srv/acme"),
        ],
    );
    let s = resolve(cli, Some("s"), no_file).unwrap();
    let tls = s.relay.streams.tls.unwrap();
    assert_eq!(tls.listen, "0.0.0.0:443".parse().unwrap());
    assert_eq!(
        tls.source,
        CertSource::Acme(AcmeConfig {
            domains: vec!["turn.example.com".into()],
            directory: crate::acme::LETS_ENCRYPT.into(),
            email: Some("ops@example.com".into()),
            state_dir: "/srv/acme".into(),
            ca: None,
        })
    );
}

/// `listen` and `public_ip` take one address per family, as repeated flags, a TOML array or one
/// comma-separated variable; IPv4 comes first, and the default adds `[::]:3478` where it can.
#[test]
fn one_listen_address_and_public_ip_per_family() {
    let cli = parse_cli(
        &[
            "--listen",
            "[::]:3478",
            "--listen",
            "0.0.0.0:3478",
            "--public-ip",
            "2001:db8::1",
            "--public-ip",
            "203.0.113.1",
        ],
        &[],
    );
    let s = resolve(cli.over(&RelayOptions::default()), Some("sekret"), no_file).unwrap();
    let got: Vec<(String, Option<String>, bool)> = s
        .relay
        .listen
        .iter()
        .map(|l| {
            (
                l.addr.to_string(),
                l.public_ip.map(|p| p.to_string()),
                l.if_available,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("0.0.0.0:3478".into(), Some("203.0.113.1".into()), false),
            ("[::]:3478".into(), Some("2001:db8::1".into()), false),
        ]
    );
    let env = parse_cli(&[], &[("NATKIT_LISTEN", "127.0.0.1:0, [::1]:0")]);
    let s = resolve(env.over(&RelayOptions::default()), Some("sekret"), no_file).unwrap();
    assert_eq!(s.relay.listen.len(), 2);
    let file: RelayOptions = layer::parse_toml(
        "listen = [\"[::1]:3478\", \"127.0.0.1:3478\"]\npublic_ip = \"2001:db8::7\"\ndefault_family = \"client\"\n",
        "t.toml",
    )
    .unwrap();
    let s = resolve(file, Some("sekret"), no_file).unwrap();
    assert_eq!(s.relay.primary_listen(), "127.0.0.1:3478".parse().unwrap());
    assert_eq!(
        s.relay.listen[1].public_ip,
        Some("2001:db8::7".parse().unwrap())
    );
    assert_eq!(s.relay.default_family, crate::family::DefaultFamily::Client);
    // Nothing set: 0.0.0.0:3478, and [::]:3478 if the host has IPv6; IPv4 to clients that ask
    // for no family.
    let s = resolve(RelayOptions::default(), Some("sekret"), no_file).unwrap();
    let defaults: Vec<(String, bool)> = s
        .relay
        .listen
        .iter()
        .map(|l| (l.addr.to_string(), l.if_available))
        .collect();
    assert_eq!(
        defaults,
        vec![("0.0.0.0:3478".into(), false), ("[::]:3478".into(), true)]
    );
    assert_eq!(s.relay.default_family, crate::family::DefaultFamily::Ipv4);
}
