//! The NAT lab: for every topology, `nat-probe --json` in the client namespace must report the
//! right mapping, filtering, NAT type and TURN decision, against natkit-relay and against coturn's
//! turnserver (both with two public addresses), and keep its verdict under 10% packet loss.
//! Needs root: fails under CI without it, skips with a message elsewhere.

use std::process::{Command, Stdio};

use natkit_lab::{
    require_root, wait_udp_listening, Lab, Nat, SERVER_ALT_IP, SERVER_IP, SERVER_IP6,
};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_nat-probe");

#[derive(Clone, Copy, Debug)]
enum Server {
    Natkit,
    Coturn,
}

impl Server {
    /// Starts the server in the lab's server namespace and returns its primary port.
    fn start(self, lab: &mut Lab) -> u16 {
        match self {
            Server::Natkit => lab.start_natkit_relay("lab-secret"),
            Server::Coturn => {
                start_coturn(lab, &[SERVER_IP, SERVER_ALT_IP], 3480);
                // coturn's RFC 5780 alternate port is its listening port + 1.
                wait_udp_listening(&lab.server, &format!("{SERVER_ALT_IP}:3481"));
                3480
            }
        }
    }
}

/// coturn's turnserver in the lab's server namespace on `ips` (two make it an RFC 5780 server,
/// one a plain STUN/TURN server), UDP only, REST secret `lab-secret`.
fn start_coturn(lab: &mut Lab, ips: &[&str], port: u16) {
    let dir = std::env::temp_dir().join(format!("natkit-lab-{}-{port}", lab.server.name));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = lab.server.cmd("turnserver");
    cmd.args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp"])
        .args(ips.iter().map(|ip| format!("--listening-ip={ip}")))
        .arg(format!("--listening-port={port}"))
        .args([
            "--use-auth-secret",
            "--static-auth-secret=lab-secret",
            "--realm=natkit",
        ])
        .arg(format!("--pidfile={}/pid", dir.display()))
        .arg(format!("--userdb={}/db", dir.display()))
        .args(["--log-file=stdout", "--simple-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.spawn(&mut cmd);
}

fn probe(lab: &Lab, site: usize, port: u16) -> Value {
    natkit_testkit::json_of(
        "nat-probe",
        lab.sites[site]
            .client
            .cmd(PROBE)
            .args(["--json", &format!("{SERVER_IP}:{port}")]),
    )
}

/// (mapping, filtering, nat_type, force_turn) for each topology.
fn expected(nat: Nat) -> (Value, Value, &'static str, bool) {
    let ei = Value::from("endpoint-independent");
    let ad = Value::from("address-dependent");
    let apd = Value::from("address-and-port-dependent");
    match nat {
        Nat::OpenInternet => (ei.clone(), ei, "open-internet", false),
        Nat::PortRestrictedCone => (ei, apd, "port-restricted-cone", false),
        Nat::Symmetric | Nat::SymmetricIpv6Firewall => (apd.clone(), apd, "symmetric", true),
        Nat::FullCone => (ei.clone(), ei, "full-cone", false),
        Nat::RestrictedCone => (ei, ad, "restricted-cone", false),
        Nat::AddressDependentMapping => (ad, apd, "symmetric", true),
        Nat::UdpBlocked | Nat::Only443 | Nat::UdpRejected | Nat::UdpProhibited => {
            (Value::Null, Value::Null, "udp-blocked", true)
        }
        Nat::DoubleNat | Nat::Ipv6Open | Nat::Ipv6Firewall | Nat::Nat66 | Nat::Ipv4Only => {
            (ei, apd, "port-restricted-cone", false)
        }
        // No IPv4 to probe: its IPv6 verdict is checked by `ipv6_only_is_a_udp_firewall`.
        Nat::Ipv6Only => (Value::Null, Value::Null, "no-ipv4", false),
    }
}

fn check(nat: Nat, server: Server, report: &Value) {
    let (mapping, filtering, nat_type, force_turn) = expected(nat);
    let ctx = format!("{} against {server:?}: {report}", nat.name());
    assert_eq!(report["mapping"], mapping, "{ctx}");
    assert_eq!(report["filtering"], filtering, "{ctx}");
    assert_eq!(report["nat_type"], nat_type, "{ctx}");
    assert_eq!(report["force_turn"], force_turn, "{ctx}");
    assert_eq!(report["warnings"], Value::Array(vec![]), "{ctx}");
    let local = report["local_address"].as_str().unwrap();
    assert!(
        local.starts_with("198.51.100."),
        "local address must be the interface's, not the wildcard: {ctx}"
    );
}

fn topology(nat: Nat) {
    if !require_root(nat.name()) {
        return;
    }
    for server in [Server::Natkit, Server::Coturn] {
        let mut lab = Lab::new();
        let site = lab.add_site(nat);
        let port = server.start(&mut lab);
        let report = probe(&lab, site, port);
        check(nat, server, &report);
        eprintln!(
            "{} vs {server:?}: {} in {} ms",
            nat.name(),
            report["nat_type"],
            report["elapsed_ms"]
        );
    }
}

#[test]
fn open_internet() {
    topology(Nat::OpenInternet);
}
#[test]
fn masquerade_is_port_restricted_cone() {
    topology(Nat::PortRestrictedCone);
}
#[test]
fn masquerade_random_fully_is_symmetric() {
    topology(Nat::Symmetric);
}
#[test]
fn snat_dnat_is_full_cone() {
    topology(Nat::FullCone);
}
#[test]
fn nft_address_filter_is_restricted_cone() {
    topology(Nat::RestrictedCone);
}
#[test]
fn nft_hash_mapping_is_address_dependent() {
    topology(Nat::AddressDependentMapping);
}
#[test]
fn udp_blocked() {
    topology(Nat::UdpBlocked);
}
/// A router that refuses UDP with its own ICMP port unreachable (not the server's): still
/// `udp-blocked`, not "no STUN server".
#[test]
fn udp_rejected_by_the_router_is_blocked() {
    topology(Nat::UdpRejected);
}
/// ICMP administratively prohibited: a firewall, `udp-blocked`.
#[test]
fn udp_prohibited_by_the_router_is_blocked() {
    topology(Nat::UdpProhibited);
}

/// Behind a NAT, against a port of the server where nothing listens: the server's own ICMP port
/// unreachable comes back through the NAT, and nat-probe says there is no STUN server there
/// (exit 3) instead of a verdict.
#[test]
fn a_closed_port_on_the_server_is_no_stun_server() {
    if !require_root("a_closed_port_on_the_server_is_no_stun_server") {
        return;
    }
    let mut lab = Lab::new();
    let site = lab.add_site(Nat::PortRestrictedCone);
    let out = lab.sites[site]
        .client
        .cmd(PROBE)
        .args(["--json", &format!("{SERVER_IP}:3470")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no STUN server at {SERVER_IP}:3470: port unreachable"
        )),
        "{stderr}"
    );
}

/// An IPv6 site against natkit-relay on IPv6 (alternate IP 2001:db8::2): `nat-probe --family 6`
/// names the family and gives the verdict of what the site does to IPv6 (its IPv4 side, a
/// MASQUERADE, is checked with the other topologies' expectations).
fn ipv6_topology(nat: Nat, want: (&str, &str, &str, bool)) {
    if !require_root(nat.name()) {
        return;
    }
    let mut lab = Lab::new();
    let site = lab.add_site(nat);
    let port6 = lab.start_natkit_relay_v6("lab-secret");
    let r = natkit_testkit::json_of(
        "nat-probe",
        lab.sites[site].client.cmd(PROBE).args([
            "--json",
            "--family",
            "6",
            &format!("[{SERVER_IP6}]:{port6}"),
        ]),
    );
    let ctx = format!("{}: {r}", nat.name());
    assert_eq!(r["family"], "ipv6", "{ctx}");
    assert_eq!(r["mapping"], want.0, "{ctx}");
    assert_eq!(r["filtering"], want.1, "{ctx}");
    assert_eq!(r["nat_type"], want.2, "{ctx}");
    assert_eq!(r["force_turn"], want.3, "{ctx}");
    assert_eq!(r["warnings"], Value::Array(vec![]), "{ctx}");
    eprintln!(
        "{} over IPv6: {} in {} ms",
        nat.name(),
        r["nat_type"],
        r["elapsed_ms"]
    );
}

/// Routed IPv6, nothing filtered: no NAT, open.
#[test]
fn ipv6_routed_is_open_internet() {
    ipv6_topology(
        Nat::Ipv6Open,
        (
            "endpoint-independent",
            "endpoint-independent",
            "open-internet",
            false,
        ),
    );
}

/// The usual home IPv6: no translation, a stateful firewall that admits only answers to the
/// inside's own flows: address-and-port-dependent filtering, direct connections work when both
/// sides send (ICE does).
#[test]
fn ipv6_behind_a_stateful_firewall_is_a_udp_firewall() {
    ipv6_topology(
        Nat::Ipv6Firewall,
        (
            "endpoint-independent",
            "address-and-port-dependent",
            "symmetric-udp-firewall",
            false,
        ),
    );
}

/// An IPv6-only network (the mobile case): routed IPv6 behind the carrier's stateful firewall.
#[test]
fn ipv6_only_is_a_udp_firewall() {
    ipv6_topology(
        Nat::Ipv6Only,
        (
            "endpoint-independent",
            "address-and-port-dependent",
            "symmetric-udp-firewall",
            false,
        ),
    );
}

/// An IPv6-only host asked to probe an IPv4 server: a clear error, not a NAT verdict.
#[test]
fn ipv6_only_asked_for_ipv4_is_an_error_not_a_verdict() {
    if !require_root("ipv6_only_asked_for_ipv4_is_an_error_not_a_verdict") {
        return;
    }
    let mut lab = Lab::new();
    let site = lab.add_site(Nat::Ipv6Only);
    let port = lab.start_natkit_relay("lab-secret");
    let out = lab.sites[site]
        .client
        .cmd(PROBE)
        .arg(format!("{SERVER_IP}:{port}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("udp-blocked"),
        "no verdict without a route"
    );
}

/// An IPv4-only office: its MASQUERADE, as any port-restricted cone.
#[test]
fn ipv4_only_is_port_restricted_cone() {
    topology(Nat::Ipv4Only);
}

/// NAT66 MASQUERADE: the IPv6 analogue of a port-restricted cone.
#[test]
fn nat66_masquerade_is_port_restricted_cone() {
    ipv6_topology(
        Nat::Nat66,
        (
            "endpoint-independent",
            "address-and-port-dependent",
            "port-restricted-cone",
            false,
        ),
    );
}

#[test]
fn double_nat_behind_cgn() {
    topology(Nat::DoubleNat);
}

/// The Python package's probe (`python -m natkit probe --json`: this crate's classifier through
/// the package's extension) reports what nat-probe reports, field for field, in every topology.
#[test]
fn the_python_package_gives_nat_probes_verdicts() {
    if !require_root("python probe") {
        return;
    }
    let python = natkit_testkit::natkit_python();
    let mut lab = Lab::with_sites(&Nat::ALL);
    let port = lab.start_natkit_relay("lab-secret");
    let server = format!("{SERVER_IP}:{port}");
    let keys = |v: &Value| {
        v.as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    for (site, nat) in Nat::ALL.into_iter().enumerate() {
        let rust = probe(&lab, site, port);
        let py = natkit_testkit::json_of(
            "python -m natkit probe",
            lab.sites[site]
                .client
                .cmd(python.to_str().expect("utf-8 path"))
                .args(["-m", "natkit", "probe", "--json", &server]),
        );
        check(nat, Server::Natkit, &py);
        assert_eq!(keys(&py), keys(&rust), "{}", nat.name());
        for k in [
            "nat_type",
            "mapping",
            "filtering",
            "mapping_possible",
            "filtering_possible",
            "force_turn",
            "reason",
            "servers",
            "other_address",
            "warnings",
        ] {
            assert_eq!(py[k], rust[k], "{}: {k}", nat.name());
        }
    }
}

#[test]
fn verdicts_survive_ten_percent_loss() {
    if !require_root("verdicts_survive_ten_percent_loss") {
        return;
    }
    for nat in [Nat::PortRestrictedCone, Nat::Symmetric, Nat::RestrictedCone] {
        let mut lab = Lab::new();
        let site = lab.add_site(nat);
        lab.loss(site, 10);
        let port = Server::Natkit.start(&mut lab);
        for _ in 0..5 {
            check(nat, Server::Natkit, &probe(&lab, site, port));
        }
    }
}

#[test]
fn namespaces_are_removed_when_a_test_fails() {
    if !require_root("namespaces_are_removed_when_a_test_fails") {
        return;
    }
    let id = std::sync::Mutex::new(String::new());
    let r = std::panic::catch_unwind(|| {
        let mut lab = Lab::new();
        *id.lock().unwrap() = format!("{}-", lab.id());
        lab.add_site(Nat::Symmetric);
        panic!("simulated test failure");
    });
    assert!(r.is_err());
    let mine = id.into_inner().unwrap();
    assert!(mine.len() > 1);
    let after = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap()
        .stdout;
    let after = String::from_utf8_lossy(&after);
    assert!(!after.contains(&mine), "namespaces left behind:\n{after}");
}

/// The RFC 4787 behaviours a topology really has: (mapping, filtering).
fn truth(nat: Nat) -> (&'static str, &'static str) {
    let (ei, ad, apd) = (
        "endpoint-independent",
        "address-dependent",
        "address-and-port-dependent",
    );
    match nat {
        Nat::OpenInternet => (ei, ei),
        Nat::PortRestrictedCone | Nat::DoubleNat => (ei, apd),
        // Their IPv4 side is a MASQUERADE.
        Nat::Ipv6Open | Nat::Ipv6Firewall | Nat::Nat66 | Nat::Ipv4Only => (ei, apd),
        Nat::Ipv6Only => ("", ""),
        Nat::Symmetric | Nat::SymmetricIpv6Firewall => (apd, apd),
        Nat::FullCone => (ei, ei),
        Nat::RestrictedCone => (ei, ad),
        Nat::AddressDependentMapping => (ad, apd),
        Nat::UdpBlocked | Nat::Only443 | Nat::UdpRejected | Nat::UdpProhibited => ("", ""),
    }
}

/// A verdict is right or honestly partial: the true behaviours are among the possible ones, a
/// decided behaviour is the true one, the classic name is the true one or `unknown`.
fn assert_right_or_partial(nat: Nat, report: &Value, ctx: &str) {
    let ctx = format!("{} {ctx}: {report}", nat.name());
    if matches!(
        nat,
        Nat::UdpBlocked | Nat::Only443 | Nat::UdpRejected | Nat::UdpProhibited
    ) {
        assert_eq!(report["nat_type"], "udp-blocked", "{ctx}");
        assert_eq!(report["force_turn"], true, "{ctx}");
        return;
    }
    let (m, f) = truth(nat);
    let has = |key: &str, b: &str| {
        report[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing: {ctx}"))
            .iter()
            .any(|v| v == b)
    };
    assert!(has("mapping_possible", m), "mapping {m} ruled out: {ctx}");
    assert!(
        has("filtering_possible", f),
        "filtering {f} ruled out: {ctx}"
    );
    for (key, want) in [("mapping", m), ("filtering", f)] {
        if !report[key].is_null() {
            assert_eq!(report[key], want, "{key} decided wrongly: {ctx}");
        }
    }
    let want_type = expected(nat).2;
    assert!(
        report["nat_type"] == want_type || report["nat_type"] == "unknown",
        "nat_type wrong: {ctx}"
    );
}

/// natkit-relay and natkit-signal as almost every operator runs them: one public IP, no
/// `--alt-ip`/`NATKIT_ALT_IP`. Every topology's verdict is right or honestly partial; the
/// symmetric NAT (`--random-fully`) is found and forces TURN; nothing else forces it except UDP
/// blocked; the text output claims a direct connection only when it knows.
#[test]
fn one_ip_deployments_give_right_or_partial_verdicts() {
    if !require_root("one_ip_deployments_give_right_or_partial_verdicts") {
        return;
    }
    for server in ["natkit-relay", "natkit-signal"] {
        let mut lab = Lab::new();
        let sites: Vec<(Nat, usize)> = Nat::ALL.iter().map(|&n| (n, lab.add_site(n))).collect();
        let port = if server == "natkit-relay" {
            let bin = natkit_testkit::workspace_bin("natkit-relay");
            let mut cmd = lab.server.cmd(bin.to_str().unwrap());
            cmd.env("NATKIT_TURN_SECRET", "s")
                .args(["--listen", &format!("{SERVER_IP}:3478")])
                .args(["--metrics-listen", "off"]);
            lab.start_daemon(&mut cmd).addr("stun").port()
        } else {
            // An empty NATKIT_ALT_IP counts as unset: the embedded relay has one IP.
            lab.start_natkit_signal_with("s", &[("NATKIT_ALT_IP", "")]);
            3478
        };
        for (nat, site) in sites {
            let report = probe(&lab, site, port);
            eprintln!(
                "one IP, {server}, {}: {} mapping {} filtering {} force_turn {} ({} ms)",
                nat.name(),
                report["nat_type"],
                report["mapping_possible"],
                report["filtering_possible"],
                report["force_turn"],
                report["elapsed_ms"]
            );
            assert_right_or_partial(nat, &report, server);
            assert_eq!(
                report["other_address"],
                Value::Null,
                "one IP claims no other"
            );
            let force = matches!(nat, Nat::Symmetric | Nat::UdpBlocked);
            assert_eq!(
                report["force_turn"],
                force,
                "{} {server}: {report}",
                nat.name()
            );
            if nat == Nat::Symmetric {
                assert_eq!(report["nat_type"], "symmetric", "{report}");
                assert_eq!(report["mapping"], "address-and-port-dependent", "{report}");
            }
            // The text never claims a direct connection it cannot vouch for.
            let text = lab.sites[site]
                .client
                .run(PROBE, &[&format!("{SERVER_IP}:{port}")]);
            let text = String::from_utf8_lossy(&text.stdout);
            let ei_known = report["mapping"] == "endpoint-independent";
            assert_eq!(
                text.contains("Direct connection possible"),
                ei_known && !force,
                "{} {server}:\n{text}",
                nat.name()
            );
        }
    }
}

/// Two plain STUN servers on two IPs (coturn with one listening IP, which does no RFC 5780, and
/// natkit-relay on the other IP): the mapping is decided by comparing what each saw.
#[test]
fn two_plain_servers_on_two_ips_decide_the_mapping() {
    if !require_root("two_plain_servers_on_two_ips_decide_the_mapping") {
        return;
    }
    let mut lab = Lab::new();
    let sites: Vec<(Nat, usize)> = Nat::ALL.iter().map(|&n| (n, lab.add_site(n))).collect();
    start_coturn(&mut lab, &[SERVER_IP], 3480);
    wait_udp_listening(&lab.server, &format!("{SERVER_IP}:3480"));
    let bin = natkit_testkit::workspace_bin("natkit-relay");
    let mut relay = lab.server.cmd(bin.to_str().unwrap());
    relay
        .env("NATKIT_TURN_SECRET", "s")
        .args(["--listen", &format!("{SERVER_ALT_IP}:3478")])
        .args(["--metrics-listen", "off"]);
    lab.start_daemon(&mut relay);
    for (nat, site) in sites {
        let out = lab.sites[site].client.run(
            PROBE,
            &[
                "--json",
                &format!("{SERVER_IP}:3480"),
                &format!("{SERVER_ALT_IP}:3478"),
            ],
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!(
            "two plain servers, {}: {} mapping {} force_turn {}",
            nat.name(),
            report["nat_type"],
            report["mapping_possible"],
            report["force_turn"]
        );
        assert_right_or_partial(nat, &report, "two plain servers");
        match truth(nat).0 {
            "endpoint-independent" => {
                assert_eq!(report["mapping"], "endpoint-independent", "{report}");
                assert_eq!(report["force_turn"], false, "{report}");
            }
            "" => {}
            _ => {
                assert_eq!(report["nat_type"], "symmetric", "{report}");
                assert_eq!(report["force_turn"], true, "{report}");
            }
        }
        assert_eq!(report["servers"].as_array().unwrap().len(), 2);
    }
}
