//! `natkit-bench` as an operator runs it: the binary against natkit's relay (in process, on
//! loopback), against coturn's `turnserver`, and against its own echo peer and forwarder. Each
//! run prints one JSON report; these tests read the figures a user would read.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use natkit_stun_turn::config::{RelayConfig, RelayOptions, SecretText};
use natkit_stun_turn::metrics::RelayMetrics;
use natkit_stun_turn::server::Relay;
use natkit_testkit::{Daemon, Process};
use serde_json::Value;

const SECRET: &str = "generator-test-secret";
const BIN: &str = env!("CARGO_BIN_EXE_natkit-bench");

/// Runs `natkit-bench MODE --server ADDR ARGS` to completion and parses the JSON report it prints.
fn report(mode: &str, server: SocketAddr, args: &[&str]) -> Value {
    natkit_testkit::json_of(
        &format!("natkit-bench {mode} {args:?}"),
        Command::new(BIN)
            .args([mode, "--server", &server.to_string()])
            .args(args)
            .env("NATKIT_TURN_SECRET", SECRET),
    )
}

fn num(r: &Value, key: &str) -> f64 {
    r[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing from {r}"))
}

/// natkit's relay on a fresh runtime thread, loopback peers allowed, no quotas.
fn natkit_relay() -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = rt.block_on(async {
        let options = RelayOptions {
            listen: vec!["127.0.0.1:0".into()],
            alt_port: Some("0".into()),
            allow_peer: vec!["127.0.0.1".into()],
            // The allocation-rate runs hammer from one IP: no per-source answer limit.
            answers_per_second: Some("0".into()),
            user_quota: Some("0".into()),
            total_quota: Some("0".into()),
            turn_secret: Some(SecretText(SECRET.into())),
            ..Default::default()
        };
        let config = RelayConfig::try_from(options).expect("relay settings");
        let relay = Relay::bind(config, RelayMetrics::new())
            .await
            .expect("bind relay");
        let addr = relay.addresses().primary;
        tokio::spawn(relay.run(std::future::pending::<()>()));
        addr
    });
    (addr, rt)
}

fn assert_closed_loop_report(r: &Value, allocations: u64) {
    assert_eq!(num(r, "allocations") as u64, allocations);
    let (sent, received) = (num(r, "sent"), num(r, "received"));
    assert!(sent > 100.0, "only {sent} datagrams sent: {r}");
    // A bounded window on loopback: nothing may be lost, and every answer has a round trip.
    assert_eq!(sent, received, "closed-loop traffic lost datagrams: {r}");
    assert_eq!(num(r, "loss_pct"), 0.0);
    assert_eq!(
        num(r, "misrouted"),
        0.0,
        "answers came back to the wrong allocation: {r}"
    );
    assert!(num(r, "relayed_pps") > 0.0);
    assert!(num(r, "rtt_p50_us") <= num(r, "rtt_p99_us"));
}

#[test]
fn drives_natkit_relay_with_channel_data_and_reports_its_cpu_and_memory() {
    let (addr, _rt) = natkit_relay();
    let pid = std::process::id().to_string(); // the relay runs in this test process
    let r = report(
        "relay",
        addr,
        &[
            "--server-pid",
            &pid,
            "--allocations",
            "20",
            "--window",
            "2",
            "--seconds",
            "1",
        ],
    );
    assert_closed_loop_report(&r, 20);
    assert!(num(&r, "cpu_s_per_million") > 0.0, "no server CPU: {r}");
    assert!(num(&r, "rss_before_kib") > 0.0, "no server RSS: {r}");
    assert!(
        num(&r, "server_core_pct") > 0.0,
        "no server utilisation: {r}"
    );
}

#[test]
fn send_indications_and_an_open_loop_rate_reach_the_echo_peer_too() {
    let (addr, _rt) = natkit_relay();
    let r = report(
        "relay",
        addr,
        &[
            "--allocations",
            "4",
            "--send",
            "--window",
            "2",
            "--seconds",
            "1",
        ],
    );
    assert_closed_loop_report(&r, 4);

    // 2,000 datagrams per second for 2 s, spread over 10 allocations: about 4,000 sent.
    let r = report(
        "relay",
        addr,
        &["--allocations", "10", "--rate", "2000", "--seconds", "2"],
    );
    let sent = num(&r, "sent");
    assert!(
        (3900.0..=4000.0).contains(&sent),
        "paced at 2000/s for 2 s, sent {sent}: {r}"
    );
    assert!(
        num(&r, "loss_pct") < 1.0,
        "a relay at 2,000 datagrams/s lost: {r}"
    );
}

#[test]
fn counts_allocations_per_second_and_failures() {
    let (addr, _rt) = natkit_relay();
    let r = report("alloc-rate", addr, &["--count", "300"]);
    assert_eq!(num(&r, "succeeded"), 300.0, "{r}");
    assert_eq!(num(&r, "failed"), 0.0);
    assert!(num(&r, "per_second") > 0.0);

    // With the wrong secret every allocation fails, and the report says so.
    let out = Command::new(BIN)
        .args(["alloc-rate", "--server", &addr.to_string(), "--count", "5"])
        .env("NATKIT_TURN_SECRET", "not-the-secret")
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(num(&r, "failed"), 5.0, "{r}");
    assert_eq!(num(&r, "succeeded"), 0.0);
}

#[test]
fn drives_coturn_the_same_way() {
    let port = natkit_testkit::third_party_udp_port();
    let dir = std::env::temp_dir().join(format!("natkit-bench-test-coturn-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new("turnserver");
    natkit_bench::coturn::args(&mut cmd, addr, SECRET, (41000, 41999), &dir);
    // turnserver from Debian's coturn package (tests/run installs it).
    let turnserver = Process::spawn(&mut cmd);
    let pid = turnserver.id().to_string();
    // turnserver takes a moment to listen; the generator's allocation retries cover 2.5 s.
    let mut r = Value::Null;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        let out = Command::new(BIN)
            .args(["relay", "--server", &addr.to_string(), "--server-pid", &pid])
            .args(["--allocations", "10", "--window", "4", "--seconds", "1"])
            .env("NATKIT_TURN_SECRET", SECRET)
            .output()
            .unwrap();
        if out.status.success() {
            r = serde_json::from_slice(&out.stdout).unwrap();
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !r.is_null(),
        "natkit-bench never relayed through turnserver on {addr}"
    );
    assert_closed_loop_report(&r, 10);
    assert!(num(&r, "cpu_s_per_million") > 0.0, "{r}");
}

#[test]
fn drives_its_own_forwarder_and_echo_peer() {
    // Both take port 0 and say which port they got.
    let echo_peer = Daemon::start(Command::new(BIN).args(["echo", "--listen", "127.0.0.1:0"]));
    let echo = echo_peer.addr("echo").to_string();
    let forwarder = Daemon::start(Command::new(BIN).args([
        "forwarder",
        "--listen",
        "127.0.0.1:0",
        "--peer",
        &echo,
    ]));
    let fwd = forwarder.addr("forwarder");
    let pid = forwarder.id().to_string();
    let r = report(
        "relay",
        fwd,
        &[
            "--plain",
            "--echo",
            &echo,
            "--server-pid",
            &pid,
            "--allocations",
            "30",
            "--window",
            "4",
            "--seconds",
            "1",
        ],
    );
    assert_closed_loop_report(&r, 30);
    assert!(num(&r, "cpu_s_per_million") > 0.0, "{r}");

    // Bad numbers are refused with a reason, before any traffic.
    for (flag, value, says) in [
        ("--allocations", "0", "--allocations must be at least 1"),
        ("--window", "0", "--inflight must be at least 1"),
        ("--size", "8", "--size must be 16"),
        ("--size", "70000", "--size must be 16"),
        ("--rate", "0", "--rate must be at least 1"),
    ] {
        let out = Command::new(BIN)
            .args([
                "relay",
                "--plain",
                "--server",
                &fwd.to_string(),
                "--echo",
                &echo,
                flag,
                value,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }

    // Without --echo, --plain is refused with a reason.
    let out = Command::new(BIN)
        .args(["relay", "--plain", "--server", &fwd.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--plain needs --echo"));
}
