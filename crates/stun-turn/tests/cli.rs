//! The `natkit-relay` binary as an operator runs it: configuration errors, the `credentials`
//! subcommand, graceful SIGTERM, and memory under a flood of unauthenticated requests.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use natkit_testkit::Daemon;
use stun::message::*;

const BIN: &str = env!("CARGO_BIN_EXE_natkit-relay");

fn relay_cmd() -> Command {
    let mut c = Command::new(BIN);
    // A clean environment: only what each test sets.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

/// A running `natkit-relay` (killed on drop) and where it listens.
struct RelayProcess {
    daemon: Daemon,
    primary: SocketAddr,
    metrics: Option<String>,
}

fn spawn_relay(extra: &[&str]) -> RelayProcess {
    let daemon = Daemon::start(
        relay_cmd()
            .env("NATKIT_TURN_SECRET", SECRET)
            .args(["--listen", "127.0.0.1:0", "--alt-port", "0"])
            .args(if extra.contains(&"--metrics-listen") {
                &[][..]
            } else {
                &["--metrics-listen", "127.0.0.1:0"][..]
            })
            .args(extra),
    );
    RelayProcess {
        primary: daemon.addr("stun"),
        metrics: daemon
            .has("metrics")
            .then(|| format!("http://{}/metrics", daemon.addr("metrics"))),
        daemon,
    }
}

use natkit_testkit::rss_kib;

#[test]
fn bad_configuration_is_a_one_line_error_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("natkit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "lisen = \"0.0.0.0:3478\"\n").unwrap();
    let typo = typo.to_string_lossy().into_owned();
    // (flags, environment, what the error says)
    type Row<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Row> = vec![
        (vec!["--relay-ports", "9-2"], vec![], "relay_ports"),
        (vec!["--listen", "localhost"], vec![], "listen"),
        (vec![], vec![("NATKIT_ALT_PORT", "abc")], "alt_port"),
        (vec!["--deny-peer", "10.0.0.0/40"], vec![], "deny_peer"),
        (vec!["--config", &typo], vec![], "unknown field `lisen`"),
        (
            vec!["--config", "/nonexistent/natkit.toml"],
            vec![],
            "cannot read config file /nonexistent/natkit.toml",
        ),
        (
            vec!["--secret-file", "/nonexistent/secret"],
            vec![],
            "secret_file /nonexistent/secret",
        ),
    ];
    for (args, env, want) in cases {
        let out = relay_cmd()
            .env("NATKIT_TURN_SECRET", "s")
            .envs(env.iter().copied())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} must fail");
        assert!(err.contains(want), "{args:?} {env:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    let out = relay_cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("NATKIT_TURN_SECRET") && err.contains("--secret-file"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn credentials_subcommand_output_is_accepted_by_the_relay() {
    let relay = spawn_relay(&[]);
    let json = natkit_testkit::json_of(
        "natkit-relay credentials",
        relay_cmd().env("NATKIT_TURN_SECRET", SECRET).args([
            "--listen",
            &relay.primary.to_string(),
            "credentials",
            "--user",
            "alice",
            "--ttl",
            "120",
        ]),
    );
    assert_eq!(json["ttl"], 120);
    let server = &json["iceServers"][0];
    let port = relay.primary.port();
    assert_eq!(
        server["urls"],
        serde_json::json!([
            format!("stun:127.0.0.1:{port}"),
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp")
        ])
    );
    let username = server["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let expiry: u64 = expiry.parse().unwrap();
    assert!((now() + 115..=now() + 121).contains(&expiry), "{expiry}");
    let cred = natkit_stun_turn::credentials::Credential {
        username: username.into(),
        password: server["credential"].as_str().unwrap().into(),
        ttl: 120,
    };
    let c = StunClient::new(relay.primary).await;
    let (r, _) = c.allocate(&cred).await;
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);

    // The metrics endpoint reflects it.
    let url = relay.metrics.clone().unwrap();
    let body = reqwest_lite(&url);
    assert_eq!(metric_value(&body, "natkit_relay_allocations_active"), 1.0);
    assert!(body.contains("# TYPE natkit_relay_relayed_packets_total counter"));

    let out = relay_cmd()
        .env("NATKIT_TURN_SECRET", SECRET)
        .args(["credentials", "--user", "a:b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains ':'"));
}

use natkit_testkit::http_get as reqwest_lite;

#[test]
fn sigterm_closes_allocations_and_exits_zero() {
    let mut relay = spawn_relay(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = StunClient::new(relay.primary).await;
        c.allocated("bob").await;
    });
    relay.daemon.process().terminate();
    let status = relay.daemon.process().wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    // The log reader may still be taking the last lines.
    natkit_testkit::wait_until("the relay's last log line", Duration::from_secs(2), || {
        relay.daemon.logged("relay stopped")
    });
    let log = relay.daemon.log();
    let stopped = log
        .iter()
        .find(|l| l.contains("relay stopped"))
        .unwrap_or_else(|| panic!("{log:?}"));
    assert!(stopped.contains("closed_allocations=1"), "{stopped}");
    assert!(
        !log.iter().any(|l| l.contains(SECRET)),
        "the secret leaked into the log"
    );
}

#[tokio::test]
async fn unauthenticated_flood_does_not_grow_memory() {
    // The flood is about memory, so the per-source answer limit is off (it has its own test).
    let relay = spawn_relay(&["--metrics-listen", "off", "--answers-per-second", "0"]);
    let pid = relay.daemon.id();
    let server = relay.primary;
    // 64 clients, each on its own 5-tuple, send Allocate requests without credentials as fast as
    // the relay answers them. Each one makes the `turn` crate's server store a nonce forever.
    async fn flood(server: SocketAddr, clients: usize, per_client: usize) -> usize {
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let answered = Arc::clone(&answered);
            tasks.push(tokio::spawn(async move {
                let c = StunClient::new(server).await;
                for _ in 0..per_client {
                    let m = request(METHOD_ALLOCATE, vec![udp()], None);
                    if let Some(r) = c.try_transact(&m).await {
                        assert_eq!(error_code(&r), Some(401));
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        answered.load(std::sync::atomic::Ordering::Relaxed)
    }
    flood(server, 64, 150).await; // warm-up: buffers, runtime, allocator arenas
    let before = rss_kib(pid);
    let started = Instant::now();
    let answered = flood(server, 64, 1500).await;
    let after = rss_kib(pid);
    let growth = after as i64 - before as i64;
    println!(
        "flood: {answered} unauthenticated Allocates answered with 401 in {:.1} s; relay RSS {before} KiB -> {after} KiB ({growth:+} KiB)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        answered >= 90_000,
        "the relay must keep answering: {answered}"
    );
    // A nonce table would hold ~96k entries here (several MiB). Stateless nonces hold none.
    assert!(growth < 1024, "RSS grew {growth} KiB under the flood");
}

/// Refresh with LIFETIME 0: the client deletes its allocation.
async fn delete(c: &StunClient, auth: &Auth) -> Message {
    c.call(METHOD_REFRESH, vec![lifetime(0)], Some(auth)).await
}

/// A relay with `extra` flags holding one allocation (returned with its client), then sent
/// SIGUSR1 and seen draining.
fn draining_with_an_allocation(
    rt: &tokio::runtime::Runtime,
    extra: &[&str],
) -> (RelayProcess, (StunClient, Auth)) {
    let mut relay = spawn_relay(extra);
    let metrics = relay.metrics.clone().unwrap();
    let held = rt.block_on(async {
        let c = StunClient::new(relay.primary).await;
        let auth = c.allocated("before-drain").await;
        (c, auth)
    });
    relay.daemon.process().signal("USR1");
    natkit_testkit::wait_until("the relay drains", Duration::from_secs(5), || {
        metric_value(&reqwest_lite(&metrics), "natkit_relay_draining") == 1.0
    });
    (relay, held)
}

/// SIGUSR1 drains: a new client is sent to the alternate relay (300 Try Alternate, signed, with
/// ALTERNATE-SERVER), the allocation made before goes on (Refresh works), and the relay exits 0
/// once it has ended. Without an alternate, new clients get 486.
#[test]
fn sigusr1_drains_new_clients_away_and_exits_when_the_last_allocation_ends() {
    use stun::integrity::MessageIntegrity;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut relay, old) =
        draining_with_an_allocation(&rt, &["--drain-alternate", "192.0.2.9:3478"]);
    rt.block_on(async {
        let cred = mint(SECRET, "new", 600);
        let c = StunClient::new(relay.primary).await;
        let (r, auth) = c.allocate(&cred).await;
        assert_eq!(error_code(&r), Some(300), "{r:?}");
        let mut alt = stun::addr::MappedAddress::default();
        alt.get_from_as(&r, stun::attributes::ATTR_ALTERNATE_SERVER)
            .unwrap();
        assert_eq!(
            SocketAddr::new(alt.ip, alt.port),
            "192.0.2.9:3478".parse().unwrap()
        );
        let mut signed = r.clone();
        MessageIntegrity::new_long_term_integrity(auth.username, auth.realm, auth.password)
            .check(&mut signed)
            .expect("the 300 is signed with the client's credential");
        // The allocation made before the drain goes on...
        let (c, auth) = &old;
        let refresh = c.call(METHOD_REFRESH, vec![], Some(auth)).await;
        assert_eq!(refresh.typ.class, CLASS_SUCCESS_RESPONSE);
        // ...until its client deletes it.
        let gone = delete(c, auth).await;
        assert_eq!(gone.typ.class, CLASS_SUCCESS_RESPONSE);
    });
    let status = relay.daemon.process().wait_exit(Duration::from_secs(10));
    assert!(status.success(), "a drained relay exits 0: {status:?}");
    assert!(relay.daemon.logged("draining"));

    // No alternate: 486. An allocation held meanwhile keeps the relay up for the check.
    let (mut relay, keeper) = draining_with_an_allocation(&rt, &[]);
    rt.block_on(async {
        let c = StunClient::new(relay.primary).await;
        let (r, _) = c.allocate(&mint(SECRET, "late", 600)).await;
        assert_eq!(error_code(&r), Some(486), "{r:?}");
        let (c, auth) = &keeper;
        let gone = delete(c, auth).await;
        assert_eq!(gone.typ.class, CLASS_SUCCESS_RESPONSE);
    });
    assert!(relay
        .daemon
        .process()
        .wait_exit(Duration::from_secs(10))
        .success());
}
