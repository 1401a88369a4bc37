//! `nat-probe` as users run it, on loopback: against natkit-relay with two addresses, against
//! several plain servers, against a lying server, and with bad arguments.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use natkit_testkit::{natkit_relay_on_loopback, Daemon};
use serde_json::Value;
use stun::addr::MappedAddress;
use stun::attributes::*;
use stun::message::*;
use stun::xoraddr::XorMappedAddress;

const PROBE: &str = env!("CARGO_BIN_EXE_nat-probe");

/// natkit-relay on 127.0.0.1 (ephemeral ports), optionally with 127.0.0.2 as alternate IP;
/// returns it with its primary port.
fn relay(alt_ip: bool) -> (Daemon, u16) {
    let extra: &[&str] = if alt_ip {
        &["--alt-ip", "127.0.0.2"]
    } else {
        &[]
    };
    let d = natkit_relay_on_loopback("s", extra);
    let port = d.addr("stun").port();
    (d, port)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(PROBE).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn loopback_is_open_internet_with_stable_json_keys() {
    let (_relay, port) = relay(true);
    let r = json(&["--json", "--hairpin", &format!("127.0.0.1:{port}")]);
    assert_eq!(r["nat_type"], "open-internet");
    assert_eq!(r["mapping"], "endpoint-independent");
    assert_eq!(r["filtering"], "endpoint-independent");
    assert_eq!(r["force_turn"], false);
    assert_eq!(r["port_preserved"], true);
    assert_eq!(r["hairpinning"], true);
    assert_eq!(r["local_address"], r["mapped_address"]);
    assert!(r["local_address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(r["elapsed_ms"].as_u64().unwrap() < 1000);
    assert!(r["reason"].as_str().unwrap().len() > 10);
    // The documented keys, all present.
    for key in [
        "family",
        "nat_type",
        "mapping",
        "filtering",
        "local_address",
        "mapped_address",
        "port_preserved",
        "force_turn",
        "reason",
        "elapsed_ms",
        "servers",
        "other_address",
        "hairpinning",
        "mapping_lifetime_s",
        "tests",
        "warnings",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    let (code, out, _) = run(&[&format!("127.0.0.1:{port}")]);
    assert_eq!(code, 0);
    assert!(out.contains("NAT type:   open-internet"), "{out}");
    assert!(out.contains("Direct connection possible"), "{out}");
}

#[test]
fn one_address_server_leaves_filtering_undetermined() {
    let (_relay, port) = relay(false);
    let r = json(&["--json", &format!("127.0.0.1:{port}")]);
    assert_eq!(r["filtering"], Value::Null, "{r}");
    assert_eq!(r["nat_type"], "unknown", "{r}");
    assert_eq!(r["other_address"], Value::Null);
    let tests = r["tests"].as_array().unwrap();
    let f2 = tests.iter().find(|t| t["name"] == "filtering-2").unwrap();
    assert_eq!(f2["result"], "not-run");
}

#[test]
fn several_plain_servers_compare_mappings() {
    let (_a, pa) = relay(false);
    let (_b, pb) = relay(false);
    let r = json(&[
        "--json",
        &format!("127.0.0.1:{pa}"),
        &format!("127.0.0.1:{pb}"),
    ]);
    assert_eq!(r["servers"].as_array().unwrap().len(), 2);
    assert_eq!(r["filtering"], Value::Null);
    assert_eq!(r["force_turn"], false);
    let names: Vec<&str> = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["server-1", "server-2", "filtering-2", "filtering-3"]
    );
}

/// A STUN server that answers every Binding request from its own socket, claims an OTHER-ADDRESS
/// it does not have and ignores CHANGE-REQUEST: the probe must warn and not believe it.
fn lying_server() -> (std::thread::JoinHandle<()>, SocketAddr) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut req = Message::new();
            req.raw = buf[..n].to_vec();
            if req.decode().is_err() {
                continue;
            }
            let mut m = Message::new();
            m.build(&[
                Box::new(req.transaction_id),
                Box::new(BINDING_SUCCESS),
                Box::new(XorMappedAddress {
                    ip: from.ip(),
                    port: from.port(),
                }),
            ])
            .unwrap();
            MappedAddress {
                ip: "127.0.0.2".parse().unwrap(),
                port: addr.port() + 1,
            }
            .add_to_as(&mut m, ATTR_OTHER_ADDRESS)
            .unwrap();
            // Claims the answer came from the alternate address.
            MappedAddress {
                ip: "127.0.0.2".parse().unwrap(),
                port: addr.port() + 1,
            }
            .add_to_as(&mut m, ATTR_RESPONSE_ORIGIN)
            .unwrap();
            let _ = sock.send_to(&m.raw, from);
        }
    });
    (h, addr)
}

#[test]
fn server_faking_change_request_is_reported_not_believed() {
    let (_h, addr) = lying_server();
    let r = json(&["--json", &addr.to_string()]);
    // Believing it would give "full-cone"/"open-internet" with endpoint-independent filtering.
    assert_eq!(r["filtering"], Value::Null, "{r}");
    assert_ne!(r["nat_type"], "open-internet");
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("ignored CHANGE-REQUEST")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("may not exist")),
        "the fake OTHER-ADDRESS never answers: {warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("RESPONSE-ORIGIN")),
        "RESPONSE-ORIGIN claims an address the answer did not come from: {warnings:?}"
    );
    // (mapping stays "endpoint-independent": on loopback mapped == local, no test II needed.)
}

#[test]
fn silence_is_udp_blocked_with_exit_zero() {
    // A bound socket that never answers.
    let quiet = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = quiet.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let r = json(&["--json", &format!("127.0.0.1:{port}")]);
    assert_eq!(r["nat_type"], "udp-blocked");
    assert_eq!(r["force_turn"], true);
    assert_eq!(r["mapping"], Value::Null);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A port where nothing listens: the host answers ICMP port unreachable, which is no NAT
/// verdict but a wrong address. nat-probe says so and exits 3, at once.
#[test]
fn a_closed_port_is_no_stun_server_with_exit_three() {
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port();
    drop(gone);
    let server = format!("127.0.0.1:{port}");
    for args in [vec![server.as_str()], vec!["--json", server.as_str()]] {
        let started = std::time::Instant::now();
        let out = Command::new(PROBE).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "no verdict printed");
        assert!(
            stderr.contains(&format!("no STUN server at {server}: port unreachable")),
            "{stderr}"
        );
        eprintln!("{args:?}: answered in {:?}", started.elapsed());
    }
}

/// natkit-relay on [::1], beside one on 127.0.0.1 with the same port: nat-probe probes the
/// family asked for (an IPv6-only server without asking), names it in the JSON, and with
/// `--family both` reports each family it can, one JSON object per line.
#[test]
fn ipv6_and_both_families_are_probed_and_named() {
    let v4 = natkit_relay_on_loopback("s", &[]);
    let port = v4.addr("stun").port();
    let v6 = Daemon::start(
        Command::new(natkit_testkit::workspace_bin("natkit-relay"))
            .env("NATKIT_TURN_SECRET", "s")
            .args(["--listen", &format!("[::1]:{port}"), "--alt-port", "0"])
            .args(["--metrics-listen", "off"]),
    );
    let r = json(&["--json", &format!("[::1]:{port}")]);
    assert_eq!(r["family"], "ipv6", "{r}");
    // One address (no second IPv6 loopback): the mapping is decided, the filtering is not, as
    // for IPv4 against a one-address server.
    assert_eq!(r["mapping"], "endpoint-independent", "{r}");
    assert_eq!(r["force_turn"], false, "{r}");
    assert_eq!(r["local_address"], r["mapped_address"], "{r}");
    assert!(
        r["local_address"].as_str().unwrap().starts_with("[::1]:"),
        "{r}"
    );
    let r = json(&["--json", &format!("127.0.0.1:{port}")]);
    assert_eq!(r["family"], "ipv4", "{r}");
    // An IPv4 literal has no IPv6 address.
    let (code, _, err) = run(&["--family", "6", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no IPv6 address"), "{err}");
    // Both families: each is probed and reported on its own (a name with A and AAAA records
    // gives two reports); one the server lacks is said on stderr, and a verdict in the other
    // still exits 0.
    let v6_server = format!("[::1]:{port}");
    let (code, out, err) = run(&["--json", "--family", "both", &v6_server]);
    assert_eq!(code, 0, "{err}");
    let reports: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 1, "{out}");
    assert_eq!(reports[0]["family"], "ipv6", "{out}");
    assert!(
        err.contains(&format!(
            "IPv4: error: STUN server {v6_server:?} has no IPv4 address"
        )),
        "{err}"
    );
    let (_, text, _) = run(&["--family", "both", &v6_server]);
    assert!(text.starts_with("IPv6\nNAT type:"), "{text}");
    drop(v6);
}

#[test]
fn bad_arguments_exit_two_with_a_message() {
    let cases: [(&[&str], &str); 4] = [
        (&[], "SERVER"),
        (
            &["no-such-host.invalid"],
            "cannot resolve STUN server \"no-such-host.invalid\"",
        ),
        (&["127.0.0.1:99999"], "cannot resolve"),
        (&["--bogus", "127.0.0.1"], "--bogus"),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn lifetime_reports_the_longest_idle_period_the_mapping_survived() {
    let (_relay, port) = relay(true);
    // Idles 1 s then 2 s; loopback keeps the "mapping", so the answer is the longest period tried.
    let r = json(&["--json", "--lifetime", "2", &format!("127.0.0.1:{port}")]);
    assert_eq!(r["mapping_lifetime_s"], 2, "{r}");
    assert_eq!(r["hairpinning"], Value::Null, "not asked for");
    assert!(r["elapsed_ms"].as_u64().unwrap() >= 3000);
}
