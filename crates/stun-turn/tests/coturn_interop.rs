//! Interoperability with coturn (Debian's `coturn` package): its client and NAT discovery tool
//! against natkit, and its server against credentials natkit mints.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use natkit_stun_turn::config::RelayOptions;
use stun::message::*;
use tokio::process::Command;

async fn run(cmd: &mut Command, secs: u64) -> String {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(secs), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish in {secs} s"))
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs one of coturn's tools against `relay` on loopback (`-p PORT 127.0.0.1` follow `args`).
async fn against(relay: &TestRelay, name: &str, args: &[&str], secs: u64) -> String {
    let port = relay.addr().port().to_string();
    run(
        Command::new(tool(name))
            .args(args)
            .args(["-p", &port, "127.0.0.1"]),
        secs,
    )
    .await
}

/// turnutils_uclient with the REST secret `secret`: two clients (`-m 2`), each sending
/// `messages` to the peer at 127.0.0.1:`peer_port`.
async fn uclient_to_peer(
    relay: &TestRelay,
    secret: &str,
    peer_port: u16,
    messages: &str,
) -> String {
    let peer = peer_port.to_string();
    let args = [
        "-W",
        secret,
        "-u",
        "uclient",
        "-e",
        "127.0.0.1",
        "-r",
        &peer,
        "-n",
        messages,
        "-m",
        "2",
    ];
    against(relay, "turnutils_uclient", &args, 60).await
}

/// coturn's `turnutils_peer` echoing on `ip` (a free port): the port and the process.
async fn echo_peer(ip: &str) -> (u16, tokio::process::Child) {
    let port = natkit_testkit::third_party_udp_port();
    let child = Command::new(tool("turnutils_peer"))
        .args(["-L", ip, "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    (port, child)
}

/// Two uclients' 20 messages each went out and every one came back through `relay`.
fn all_came_back(relay: &TestRelay, out: &str) {
    let (sent, received) = uclient_totals(out);
    assert!(sent >= 40, "uclient sent {sent}:\n{out}");
    assert_eq!(
        sent, received,
        "every message must come back through the relay:\n{out}"
    );
    assert!(out.contains("Total lost packets 0 "), "{out}");
    assert!(relay.metric("natkit_relay_allocations_created_total") >= 2.0);
}

#[tokio::test]
async fn coturn_uclient_relays_through_natkit_with_rest_secret() {
    let relay = TestRelay::with(|o| o.allow_peer = vec!["127.0.0.1".into()]).await;
    let (peer_port, _peer) = echo_peer("127.0.0.1").await;
    // -W: TURN REST API secret; uclient derives username and password as coturn does.
    // Default mode asks for an RTP/RTCP pair (EVEN-PORT with reservation) and binds channels.
    let out = uclient_to_peer(&relay, SECRET, peer_port, "20").await;
    all_came_back(&relay, &out);

    // The same client with a wrong secret is refused.
    let out = uclient_to_peer(&relay, "not-the-secret", peer_port, "2").await;
    assert!(
        out.contains("Cannot complete Allocation"),
        "wrong secret must be refused:\n{out}"
    );
    assert!(relay.metric("natkit_relay_auth_failures_total{reason=\"bad_integrity\"}") >= 1.0);
}

/// natkit-relay on IPv6 only (`[::1]`): coturn's client allocates an IPv6 relayed address,
/// binds channels and relays every message to an IPv6 peer and back.
#[tokio::test]
async fn coturn_uclient_relays_through_natkit_over_ipv6() {
    let relay = TestRelay::with(|o| {
        o.listen = vec!["[::1]:0".into()];
        o.allow_peer = vec!["::1".into()];
    })
    .await;
    assert!(relay.addr().is_ipv6());
    let (peer_port, _peer) = echo_peer("::1").await;
    let out = run(
        Command::new(tool("turnutils_uclient"))
            .args(["-W", SECRET, "-u", "uclient", "-e", "::1"])
            .args(["-r", &peer_port.to_string(), "-n", "20", "-m", "2"])
            .args(["-p", &relay.addr().port().to_string(), "::1"]),
        60,
    )
    .await;
    all_came_back(&relay, &out);
}

#[tokio::test]
async fn coturn_uclient_client_to_client_needs_no_allow_list() {
    // -y: uclient's clients relay to each other's relayed addresses on the same server.
    let relay = TestRelay::start(RelayOptions::default()).await;
    let out = against(
        &relay,
        "turnutils_uclient",
        &["-y", "-W", SECRET, "-u", "pair", "-n", "20", "-m", "2"],
        60,
    )
    .await;
    let (sent, received) = uclient_totals(&out);
    assert!(
        sent >= 40 && sent == received,
        "sent {sent} received {received}:\n{out}"
    );
    assert_eq!(
        relay.metric("natkit_relay_peer_refused_total{reason=\"loopback\"}"),
        0.0
    );
}

#[tokio::test]
async fn coturn_natdiscovery_gets_rfc5780_verdicts_from_two_addresses() {
    let relay = TestRelay::with(|o| o.alt_ip = Some("127.0.0.2".into())).await;
    let out = against(&relay, "turnutils_natdiscovery", &["-m", "-f"], 30).await;
    // Loopback has no NAT: both behaviours are endpoint-independent.
    assert!(
        out.contains("NAT with Endpoint Independent Mapping!"),
        "{out}"
    );
    assert!(
        out.contains("NAT with Endpoint Independent Filtering!"),
        "{out}"
    );
    // CHANGE-REQUEST answers really came from the changed addresses.
    let (p, alt) = (relay.addr().port(), relay.addrs.alt_port.port());
    assert!(
        out.contains(&format!("Response origin: : 127.0.0.2:{alt}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Response origin: : 127.0.0.2:{p}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Other addr: : 127.0.0.2:{alt}")),
        "{out}"
    );
    assert!(relay.metric("natkit_relay_binding_requests_total") >= 4.0);
}

#[tokio::test]
async fn one_address_relay_never_claims_an_other_address() {
    let relay = TestRelay::start(RelayOptions::default()).await;
    let out = against(&relay, "turnutils_natdiscovery", &["-m", "-f"], 30).await;
    assert!(!out.contains("Other addr"), "{out}");
    assert!(
        !out.contains("NAT with"),
        "no verdict may be claimed without an alternate IP:\n{out}"
    );
    // What a one-IP relay does answer: change-port from the alternate port, change-IP with 420.
    let c = StunClient::new(relay.addr()).await;
    let mut port = request(METHOD_BINDING, vec![], None);
    port.add(stun::attributes::ATTR_CHANGE_REQUEST, &[0, 0, 0, 2]);
    c.send(&port.raw).await;
    let mut buf = [0u8; 1500];
    let (_, from) = tokio::time::timeout(Duration::from_secs(2), c.sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, relay.addrs.alt_port);
    let mut ip = request(METHOD_BINDING, vec![], None);
    ip.add(stun::attributes::ATTR_CHANGE_REQUEST, &[0, 0, 0, 4]);
    assert_eq!(error_code(&c.transact(&ip).await), Some(420));
}

/// coturn's `turnserver` with `use-auth-secret`, on loopback; killed on drop.
struct Coturn {
    _child: tokio::process::Child,
    addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_coturn(secret: &str) -> Coturn {
    let port = natkit_testkit::third_party_udp_port();
    let dir = std::env::temp_dir().join(format!("natkit-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(tool("turnserver"))
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--use-auth-secret",
            &format!("--static-auth-secret={secret}"),
            "--realm=natkit",
            "--allow-loopback-peers",
            "--min-port=40000",
            "--max-port=40999",
            &format!("--pidfile={}/turnserver.pid", dir.display()),
            &format!("--userdb={}/turndb", dir.display()),
            "--log-file=stdout",
            "--simple-log",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start turnserver");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let probe = StunClient::new(addr).await;
    for _ in 0..50 {
        if probe
            .try_transact(&request(METHOD_BINDING, vec![], None))
            .await
            .is_some()
        {
            return Coturn {
                _child: child,
                addr,
                _dir: TempDir(dir),
            };
        }
    }
    panic!("turnserver did not answer on {addr}");
}

#[tokio::test]
async fn coturn_server_accepts_natkit_minted_credentials() {
    let coturn = start_coturn(SECRET).await;
    // The raw client: natkit's credential allocates on coturn...
    let c = StunClient::new(coturn.addr).await;
    let (r, _) = c.allocate(&mint(SECRET, "alice", 600)).await;
    assert_eq!(
        r.typ.class, CLASS_SUCCESS_RESPONSE,
        "coturn refused a natkit credential"
    );
    // ...an expired one and one for another secret do not.
    for cred in [expired(SECRET, "alice"), mint("other", "alice", 600)] {
        let c = StunClient::new(coturn.addr).await;
        let (r, _) = c.allocate(&cred).await;
        assert_eq!(r.typ.class, CLASS_ERROR_RESPONSE, "{cred:?}");
    }
    // And the turn crate's client relays through coturn with a natkit credential.
    let cred = mint(SECRET, "bob", 600);
    let client = natkit_testkit::turn_client(coturn.addr, &cred.username, &cred.password)
        .await
        .unwrap();
    let conn = client.allocate().await.expect("allocate on coturn");
    assert_eq!(
        util::Conn::local_addr(&conn).unwrap().ip().to_string(),
        "127.0.0.1"
    );
    client.close().await.unwrap();
}
