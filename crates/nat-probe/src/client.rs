//! The probe's async shell: sockets, timers and STUN transactions. Decisions are made by
//! [`crate::classify`].
//!
//! With one RFC 5780 server, three independent suites run at once, each on its own fresh socket
//! so one test's mapping cannot bias another's result:
//! - mapping tests I, II, III (RFC 5780 section 4.3) from one socket, since they compare the
//!   mappings of that socket towards different destinations;
//! - filtering test II (CHANGE-REQUEST IP and port) after a test I from a second socket;
//! - filtering test III (CHANGE-REQUEST port) after a test I from a third socket.
//!
//! A server with one IP gives no OTHER-ADDRESS. The mapping socket then sends a Binding request
//! to the server's IP on its alternate port: the port after the primary one by convention (natkit
//! and coturn both use it), or the port a genuine filtering test III answer came from. A mapping
//! that changes there is address-and-port-dependent.
//!
//! Answers are checked, not believed: a CHANGE-REQUEST answer counts only if its packet source is
//! the changed address (and RESPONSE-ORIGIN agrees); OTHER-ADDRESS must differ from the server's
//! address in both IP and port.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stun::addr::MappedAddress;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::message::*;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tracing::{debug, Instrument};

use crate::classify::{self, MultiObservations, Observations, Outcome};
use crate::error::ProbeError;
use crate::icmp;
use crate::report::{NatReport, TestRecord};
use crate::rto::{schedule, RttEstimator};

/// Default STUN port.
pub const DEFAULT_PORT: u16 = 3478;

/// What to probe.
#[derive(Debug, Clone, Default)]
pub struct ProbeConfig {
    /// `host`, `host:port`, `ip`, `ip:port` or `[v6]:port`. One RFC 5780 server, or several plain
    /// STUN servers.
    pub servers: Vec<String>,
    /// Also test hairpinning.
    pub hairpin: bool,
    /// Also test how long an idle mapping survives, up to this long.
    pub lifetime: Option<Duration>,
    /// Measure one round trip with a TCP connect to the (first) server before the UDP tests and
    /// start their retransmission timer from it ([`tcp_round_trip`]).
    pub tcp_rtt_seed: bool,
    /// The address family to probe in (the servers' addresses of that family are used).
    pub family: Family,
}

/// Which of a server's addresses a probe uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// IPv4 when the server has an IPv4 address, else IPv6.
    #[default]
    Auto,
    V4,
    V6,
}

impl Family {
    fn accepts(self, a: &SocketAddr) -> bool {
        match self {
            Family::Auto => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Auto => "IPv4 or IPv6",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

struct Answer {
    msg: Message,
    from: SocketAddr,
}

impl Answer {
    fn error_code(&self) -> Option<u16> {
        let mut e = ErrorCodeAttribute::default();
        e.get_from(&self.msg).ok().map(|_| e.code.0)
    }

    fn mapped(&self) -> Option<SocketAddr> {
        let mut x = XorMappedAddress::default();
        if x.get_from(&self.msg).is_ok() {
            return Some(SocketAddr::new(x.ip, x.port));
        }
        self.addr(ATTR_MAPPED_ADDRESS)
    }

    fn addr(&self, t: AttrType) -> Option<SocketAddr> {
        let mut a = MappedAddress::default();
        a.get_from_as(&self.msg, t).ok()?;
        Some(SocketAddr::new(a.ip, a.port))
    }
}

/// A STUN client context shared by the suites: the RTT estimate adapts across all of them.
struct Ctx {
    rtt: Mutex<RttEstimator>,
    local_ip: IpAddr,
    /// ICMP errors seen so far (at most [`ICMP_KEPT`]).
    icmp: Mutex<Vec<icmp::Seen>>,
}

/// ICMP errors kept per probe: enough to judge every server asked.
const ICMP_KEPT: usize = 32;

impl Ctx {
    async fn socket(&self) -> Result<UdpSocket, ProbeError> {
        let addr = SocketAddr::new(self.local_ip, 0);
        let sock = UdpSocket::bind(addr)
            .await
            .map_err(|source| ProbeError::Bind { addr, source })?;
        // ICMP errors queued, to tell a closed port from a blocked network; without them (a
        // kernel that refuses) every silence is read as before.
        if let Err(e) = icmp::enable(&sock, addr.is_ipv6()) {
            debug!(error = %e, "IP_RECVERR not available");
        }
        Ok(sock)
    }

    /// Takes the ICMP errors queued on `sock` into the probe's list.
    fn note_icmp(&self, sock: &UdpSocket) {
        let seen = icmp::drain(sock, ICMP_KEPT);
        let mut kept = self.icmp.lock().expect("icmp lock");
        for s in seen {
            debug!(dest = %s.dest, offender = ?s.offender, kind = ?s.kind, "ICMP error");
            if kept.len() < ICMP_KEPT {
                kept.push(s);
            }
        }
    }

    /// Did `server`'s host answer that nothing listens on its port?
    fn no_stun_server(&self, sock: &UdpSocket, server: SocketAddr) -> bool {
        self.note_icmp(sock);
        icmp::no_stun_server(&self.icmp.lock().expect("icmp lock"), server)
    }

    /// Sends `req` to `to` on the RFC 8489 schedule (adapted to the RTT) and returns the first
    /// message carrying its transaction id, from any source.
    async fn transact(&self, sock: &UdpSocket, to: SocketAddr, req: &Message) -> Option<Answer> {
        let rto = self.rtt.lock().expect("rtt lock").rto();
        let plan = schedule(rto);
        let start = tokio::time::Instant::now();
        let mut sent = 0usize;
        let mut buf = vec![0u8; 2048];
        loop {
            while sent < plan.sends.len() && start.elapsed() >= plan.sends[sent] {
                if let Err(e) = sock.send_to(&req.raw, to).await {
                    // An earlier datagram's ICMP error can surface here too.
                    debug!(error = %e, %to, "send failed");
                    if self.no_stun_server(sock, to) {
                        return None;
                    }
                }
                sent += 1;
            }
            let deadline = start
                + if sent < plan.sends.len() {
                    plan.sends[sent]
                } else {
                    plan.give_up
                };
            match tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => {
                    let mut msg = Message::new();
                    msg.raw = buf[..n].to_vec();
                    if msg.decode().is_err() || msg.transaction_id != req.transaction_id {
                        continue;
                    }
                    if sent == 1 {
                        // Karn's rule: only unambiguous samples.
                        self.rtt.lock().expect("rtt lock").sample(start.elapsed());
                    }
                    return Some(Answer { msg, from });
                }
                Ok(Err(e)) => {
                    // ICMP errors surface here. The server's own port unreachable ends the
                    // transaction (nothing listens there); anything else is waited out as
                    // silence would be.
                    debug!(error = %e, "recv error");
                    if self.no_stun_server(sock, to) {
                        return None;
                    }
                    tokio::time::sleep_until(deadline).await;
                }
                Err(_) if sent >= plan.sends.len() => return None,
                Err(_) => {}
            }
        }
    }
}

fn binding(change: Option<[u8; 4]>) -> Message {
    let mut m = Message::new();
    m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .expect("binding request encodes");
    if let Some(flags) = change {
        m.add(ATTR_CHANGE_REQUEST, &flags);
    }
    FINGERPRINT.add_to(&mut m).expect("fingerprint");
    m
}

const CHANGE_IP_AND_PORT: [u8; 4] = [0, 0, 0, 6];
const CHANGE_PORT: [u8; 4] = [0, 0, 0, 2];

/// Splits `host[:port]` / `[v6]:port` and resolves it to one address of `family` (with
/// [`Family::Auto`], IPv4 when there is one).
async fn resolve(server: &str, family: Family) -> Result<SocketAddr, ProbeError> {
    let with_port = if server.parse::<SocketAddr>().is_ok() {
        server.to_owned()
    } else if server.parse::<IpAddr>().is_ok() || !server.contains(':') || server.ends_with(']') {
        let host = server.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{DEFAULT_PORT}"),
            _ => format!("{host}:{DEFAULT_PORT}"),
        }
    } else {
        server.to_owned()
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|source| ProbeError::Resolve {
            server: server.to_owned(),
            source,
        })?
        .collect();
    let first = |f: Family| addrs.iter().find(|a| f.accepts(a)).copied();
    let found = match family {
        Family::Auto => first(Family::V4).or_else(|| first(Family::V6)),
        f => first(f),
    };
    found.ok_or_else(|| ProbeError::NoAddress {
        server: server.to_owned(),
        family: family.name(),
    })
}

/// `ipv4` or `ipv6`, as the report names the family.
fn family_of(a: SocketAddr) -> &'static str {
    match a {
        SocketAddr::V4(_) => "ipv4",
        SocketAddr::V6(_) => "ipv6",
    }
}

/// The interface address the kernel uses towards `server` (connecting a UDP socket sends nothing).
fn local_ip_towards(server: SocketAddr) -> Result<IpAddr, ProbeError> {
    natkit_daemon::source_ip_towards(server)
        .map_err(|source| ProbeError::NoRoute { server, source })
}

/// How long [`tcp_round_trip`] waits: no longer than the first UDP retransmission would.
const TCP_SEED_TIMEOUT: std::time::Duration = crate::rto::INITIAL_RTO;

/// One round trip to `server` measured with a TCP connect to the same address: the SYN and its
/// answer (SYN-ACK, or RST when nothing listens) cross the same path as the UDP tests will. The
/// connection is closed at once. `None` when TCP gets no answer in time (filtered too).
///
/// It seeds the UDP retransmission timer, which otherwise starts at 100 ms: where UDP is
/// blocked, the seven transmissions then fit in about 23 round trips instead of 2.3 s, so the
/// `udp-blocked` verdict (and the TCP/TLS relay that follows it) comes in well under a second on
/// a nearby server, and no later than before on a far one.
async fn tcp_round_trip(server: SocketAddr) -> Option<std::time::Duration> {
    let start = Instant::now();
    match tokio::time::timeout(TCP_SEED_TIMEOUT, tokio::net::TcpStream::connect(server)).await {
        Ok(Ok(_)) => Some(start.elapsed()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(start.elapsed()),
        _ => None,
    }
}

/// Runs the probe and classifies the NAT. Errors only for bad input; "UDP blocked" is a verdict.
pub async fn probe(cfg: &ProbeConfig) -> Result<NatReport, ProbeError> {
    let span = tracing::info_span!("probe", servers = ?cfg.servers);
    probe_in_span(cfg).instrument(span).await
}

async fn probe_in_span(cfg: &ProbeConfig) -> Result<NatReport, ProbeError> {
    if cfg.servers.is_empty() {
        return Err(ProbeError::NoServer);
    }
    let mut servers = Vec::new();
    // Every server in the family of the first (RFC 5780 answers and mappings compare within one).
    let mut family = cfg.family;
    for s in &cfg.servers {
        let a = resolve(s, family).await?;
        if family == Family::Auto {
            family = if a.is_ipv4() { Family::V4 } else { Family::V6 };
        }
        servers.push(a);
    }
    let started = Instant::now();
    let local_ip = local_ip_towards(servers[0])?;
    let mut rtt = RttEstimator::default();
    if cfg.tcp_rtt_seed {
        if let Some(sample) = tcp_round_trip(servers[0]).await {
            debug!(
                rtt_us = sample.as_micros() as u64,
                "round trip seeded from a TCP connect"
            );
            rtt.sample(sample);
        }
    }
    let ctx = Arc::new(Ctx {
        rtt: Mutex::new(rtt),
        local_ip,
        icmp: Mutex::new(Vec::new()),
    });
    let mut report = if servers.len() == 1 {
        rfc5780(&ctx, servers[0], cfg).await?
    } else {
        multi(&ctx, &servers).await?
    };
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// A mapping test's answer from `dest`, checked: it must come from `dest` and carry a mapping.
fn mapping_outcome(
    dest: SocketAddr,
    a: Option<Answer>,
    name: &str,
    warnings: &Mutex<Vec<String>>,
) -> Outcome<SocketAddr> {
    match a {
        None => Outcome::NoResponse,
        Some(a) if a.from != dest => {
            warnings
                .lock()
                .expect("lock")
                .push(format!("{name}: answer to {dest} came from {}", a.from));
            Outcome::NotRun(format!("answer came from {}, not {dest}", a.from))
        }
        Some(a) => match a.mapped() {
            Some(m) => Outcome::Got(m),
            None => Outcome::NotRun(format!(
                "answer without a mapped address (error {:?})",
                a.error_code()
            )),
        },
    }
}

/// The conventional alternate port of a one-IP server: the one after its primary port.
fn conventional_alt_port(server: SocketAddr) -> Option<SocketAddr> {
    server
        .port()
        .checked_add(1)
        .map(|p| SocketAddr::new(server.ip(), p))
}

/// Mapping tests II and III from the socket that ran test I; with no OTHER-ADDRESS, the
/// one-IP port test instead (towards the conventional alternate port).
async fn mapping_suite(
    ctx: &Ctx,
    sock: &UdpSocket,
    server: SocketAddr,
    other: Option<SocketAddr>,
    m1: SocketAddr,
    warnings: &Mutex<Vec<String>>,
) -> (
    Outcome<SocketAddr>,
    Outcome<SocketAddr>,
    Outcome<SocketAddr>,
) {
    let one = |dest: SocketAddr, a: Option<Answer>, name: &str| -> Outcome<SocketAddr> {
        mapping_outcome(dest, a, name, warnings)
    };
    let Some(other) = other else {
        let why = "server gave no usable OTHER-ADDRESS".to_string();
        let port = match conventional_alt_port(server) {
            Some(dest) => one(
                dest,
                ctx.transact(sock, dest, &binding(None)).await,
                "mapping port test",
            ),
            None => Outcome::NotRun("no port after the server's".into()),
        };
        return (Outcome::NotRun(why.clone()), Outcome::NotRun(why), port);
    };
    let dest2 = SocketAddr::new(other.ip(), server.port());
    let m2 = one(
        dest2,
        ctx.transact(sock, dest2, &binding(None)).await,
        "mapping test II",
    );
    if m2 == Outcome::NoResponse {
        warnings.lock().expect("lock").push(format!(
            "mapping test II: no answer from {dest2} although {server} answered; the OTHER-ADDRESS {other} may not exist"
        ));
    }
    let m3 = match &m2 {
        Outcome::Got(m2) if *m2 == m1 => {
            Outcome::NotRun("not needed: mapping unchanged in test II".into())
        }
        Outcome::Got(_) => one(
            other,
            ctx.transact(sock, other, &binding(None)).await,
            "mapping test III",
        ),
        _ => Outcome::NotRun("mapping test II gave no mapping".into()),
    };
    let port = Outcome::NotRun("not needed: the server has a second IP".into());
    (m2, m3, port)
}

/// Test I then a CHANGE-REQUEST from a fresh socket; `expect` is where a genuine answer comes from.
async fn filtering_test(
    ctx: &Ctx,
    server: SocketAddr,
    change: [u8; 4],
    expect: Expect,
    name: &str,
    warnings: &Mutex<Vec<String>>,
) -> Result<Outcome<SocketAddr>, ProbeError> {
    let sock = ctx.socket().await?;
    if ctx.transact(&sock, server, &binding(None)).await.is_none() {
        return Ok(Outcome::NotRun(
            "no answer to test I from a fresh socket".into(),
        ));
    }
    let Some(a) = ctx.transact(&sock, server, &binding(Some(change))).await else {
        return Ok(Outcome::NoResponse);
    };
    if let Some(code) = a.error_code() {
        return Ok(Outcome::NotRun(format!(
            "server cannot honour the change (error {code})"
        )));
    }
    let genuine = match expect {
        Expect::Exactly(addr) => a.from == addr,
        Expect::SameIpOtherPort => a.from.ip() == server.ip() && a.from.port() != server.port(),
    };
    let warn = |w: String| warnings.lock().expect("lock").push(w);
    if !genuine {
        let w = if a.from == server {
            format!("{name}: the server ignored CHANGE-REQUEST (answered from {server})")
        } else {
            format!(
                "{name}: CHANGE-REQUEST answer came from {}, expected {expect:?}",
                a.from
            )
        };
        warn(w.clone());
        return Ok(Outcome::NotRun(w));
    }
    if let Some(origin) = a.addr(ATTR_RESPONSE_ORIGIN) {
        if origin != a.from {
            let w = format!(
                "{name}: RESPONSE-ORIGIN {origin} does not match packet source {}",
                a.from
            );
            warn(w.clone());
            return Ok(Outcome::NotRun(w));
        }
    }
    Ok(Outcome::Got(a.from))
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Exactly(SocketAddr),
    SameIpOtherPort,
}

async fn rfc5780(
    ctx: &Arc<Ctx>,
    server: SocketAddr,
    cfg: &ProbeConfig,
) -> Result<NatReport, ProbeError> {
    let warnings = Mutex::new(Vec::new());
    let sock = ctx.socket().await?;
    let local = sock.local_addr().map_err(|source| ProbeError::Bind {
        addr: SocketAddr::new(ctx.local_ip, 0),
        source,
    })?;
    let t1 = ctx.transact(&sock, server, &binding(None)).await;
    if t1.is_none() && ctx.no_stun_server(&sock, server) {
        return Err(ProbeError::NoStunServer { server });
    }
    let (mapping1, other) = match &t1 {
        None => (Outcome::NoResponse, None),
        Some(a) => {
            if a.from != server {
                warnings
                    .lock()
                    .expect("lock")
                    .push(format!("answer to {server} came from {}", a.from));
            }
            if let Some(origin) = a.addr(ATTR_RESPONSE_ORIGIN).filter(|o| *o != a.from) {
                warnings.lock().expect("lock").push(format!(
                    "mapping test I: RESPONSE-ORIGIN {origin} does not match packet source {}",
                    a.from
                ));
            }
            match a.mapped() {
                Some(m) => {
                    let other = a.addr(ATTR_OTHER_ADDRESS).filter(|o| {
                        let ok = o.ip() != server.ip() && o.port() != server.port();
                        if !ok {
                            warnings.lock().expect("lock").push(format!(
                                "OTHER-ADDRESS {o} does not differ from {server} in both IP and port; not believed"
                            ));
                        }
                        ok
                    });
                    (Outcome::Got(m), other)
                }
                None => (
                    Outcome::NotRun(format!(
                        "answer without a mapped address (error {:?})",
                        a.error_code()
                    )),
                    None,
                ),
            }
        }
    };
    let obs = match mapping1.got().copied() {
        None => Observations {
            local,
            mapping1: mapping1.clone(),
            mapping2: Outcome::NotRun("no answer to test I".into()),
            mapping3: Outcome::NotRun("no answer to test I".into()),
            mapping_port: Outcome::NotRun("no answer to test I".into()),
            filtering2: Outcome::NotRun("no answer to test I".into()),
            filtering3: Outcome::NotRun("no answer to test I".into()),
        },
        Some(m1) => {
            let f2 = async {
                match other {
                    Some(o) => {
                        filtering_test(
                            ctx,
                            server,
                            CHANGE_IP_AND_PORT,
                            Expect::Exactly(o),
                            "filtering test II",
                            &warnings,
                        )
                        .await
                    }
                    None => Ok(Outcome::NotRun(
                        "server gave no usable OTHER-ADDRESS".into(),
                    )),
                }
            };
            let f3_expect = other
                .map(|o| Expect::Exactly(SocketAddr::new(server.ip(), o.port())))
                .unwrap_or(Expect::SameIpOtherPort);
            let f3 = filtering_test(
                ctx,
                server,
                CHANGE_PORT,
                f3_expect,
                "filtering test III",
                &warnings,
            );
            let m = mapping_suite(ctx, &sock, server, other, m1, &warnings);
            let ((m2, m3, mut port), f2, f3) = tokio::join!(m, f2, f3);
            let (f2, f3) = (f2?, f3?);
            // The conventional alternate port did not answer, but the change-port answer came
            // from another one: test the mapping towards that.
            if let (Outcome::NoResponse, Outcome::Got(alt)) = (&port, &f3) {
                if Some(*alt) != conventional_alt_port(server) {
                    port = mapping_outcome(
                        *alt,
                        ctx.transact(&sock, *alt, &binding(None)).await,
                        "mapping port test",
                        &warnings,
                    );
                }
            }
            Observations {
                local,
                mapping1: mapping1.clone(),
                mapping2: m2,
                mapping3: m3,
                mapping_port: port,
                filtering2: f2.map_unit(),
                filtering3: f3.map_unit(),
            }
        }
    };
    let verdict = classify::classify(&obs);
    let mapped = obs.mapping1.got().copied();
    let hairpinning = match (cfg.hairpin, mapped) {
        (true, Some(m)) => Some(hairpin(ctx, &sock, m).await),
        _ => None,
    };
    let mapping_lifetime_s = match (cfg.lifetime, mapped) {
        (Some(max), Some(_)) => lifetime(ctx, server, max).await?,
        _ => None,
    };
    let tests = vec![
        TestRecord::from_outcome("mapping-1", &obs.mapping1),
        TestRecord::from_outcome("mapping-2", &obs.mapping2),
        TestRecord::from_outcome("mapping-3", &obs.mapping3),
        TestRecord::from_outcome("mapping-port", &obs.mapping_port),
        TestRecord::from_outcome("filtering-2", &obs.filtering2.as_text()),
        TestRecord::from_outcome("filtering-3", &obs.filtering3.as_text()),
    ];
    Ok(NatReport {
        family: family_of(local),
        nat_type: verdict.nat_type,
        mapping: verdict.mapping,
        filtering: verdict.filtering,
        mapping_possible: verdict.mapping_possible,
        filtering_possible: verdict.filtering_possible,
        local_address: local,
        mapped_address: mapped,
        port_preserved: mapped.map(|m| m.port() == local.port()),
        force_turn: verdict.force_turn,
        reason: verdict.reason,
        elapsed_ms: 0,
        servers: vec![server],
        other_address: other,
        hairpinning,
        mapping_lifetime_s,
        tests,
        warnings: warnings.into_inner().expect("lock"),
    })
}

/// Sends a Binding request from `sock` to its own mapped address: if the NAT hairpins, the
/// request comes back to the same socket.
async fn hairpin(ctx: &Ctx, sock: &UdpSocket, mapped: SocketAddr) -> bool {
    let req = binding(None);
    match ctx.transact(sock, mapped, &req).await {
        Some(a) => a.msg.typ == BINDING_REQUEST,
        None => false,
    }
}

/// Idles a fresh mapping for doubling periods and checks it is unchanged; returns the longest.
async fn lifetime(ctx: &Ctx, server: SocketAddr, max: Duration) -> Result<Option<u64>, ProbeError> {
    let sock = ctx.socket().await?;
    let Some(first) = ctx
        .transact(&sock, server, &binding(None))
        .await
        .and_then(|a| a.mapped())
    else {
        return Ok(None);
    };
    let mut kept = None;
    let mut wait = Duration::from_secs(1);
    while wait <= max {
        tokio::time::sleep(wait).await;
        match ctx
            .transact(&sock, server, &binding(None))
            .await
            .and_then(|a| a.mapped())
        {
            Some(m) if m == first => kept = Some(wait.as_secs()),
            _ => break,
        }
        wait *= 2;
    }
    Ok(kept)
}

async fn multi(ctx: &Arc<Ctx>, servers: &[SocketAddr]) -> Result<NatReport, ProbeError> {
    let sock = ctx.socket().await?;
    let local = sock.local_addr().map_err(|source| ProbeError::Bind {
        addr: SocketAddr::new(ctx.local_ip, 0),
        source,
    })?;
    let mut warnings = Vec::new();
    let mut mappings = Vec::new();
    for &s in servers {
        let o = match ctx.transact(&sock, s, &binding(None)).await {
            None if ctx.no_stun_server(&sock, s) => {
                return Err(ProbeError::NoStunServer { server: s })
            }
            None => Outcome::NoResponse,
            Some(a) => {
                if a.from != s {
                    warnings.push(format!("answer to {s} came from {}", a.from));
                }
                match a.mapped() {
                    Some(m) => Outcome::Got(m),
                    None => {
                        Outcome::NotRun(format!("no mapped address (error {:?})", a.error_code()))
                    }
                }
            }
        };
        mappings.push((s, o));
    }
    let obs = MultiObservations { local, mappings };
    let v = classify::classify_multi(&obs);
    let mapped = obs.mappings.iter().find_map(|(_, m)| m.got().copied());
    let mut tests: Vec<TestRecord> = obs
        .mappings
        .iter()
        .enumerate()
        .map(|(i, (_, o))| TestRecord::from_outcome(&format!("server-{}", i + 1), o))
        .collect();
    for name in ["filtering-2", "filtering-3"] {
        tests.push(TestRecord {
            name: name.into(),
            result: "not-run",
            detail: Some("plain STUN servers cannot answer from another address".into()),
        });
    }
    Ok(NatReport {
        family: family_of(local),
        nat_type: v.nat_type,
        mapping: v.mapping,
        filtering: v.filtering,
        mapping_possible: v.mapping_possible,
        filtering_possible: v.filtering_possible,
        local_address: local,
        mapped_address: mapped,
        port_preserved: mapped.map(|m| m.port() == local.port()),
        force_turn: v.force_turn,
        reason: v.reason,
        elapsed_ms: 0,
        servers: servers.to_vec(),
        other_address: None,
        hairpinning: None,
        mapping_lifetime_s: None,
        tests,
        warnings,
    })
}

trait OutcomeForms {
    /// The outcome without its value (a filtering test only tells whether an answer came).
    fn map_unit(&self) -> Outcome<()>;
}

impl<T> OutcomeForms for Outcome<T> {
    fn map_unit(&self) -> Outcome<()> {
        match self {
            Outcome::Got(_) => Outcome::Got(()),
            Outcome::NoResponse => Outcome::NoResponse,
            Outcome::NotRun(w) => Outcome::NotRun(w.clone()),
        }
    }
}

trait AsText {
    fn as_text(&self) -> Outcome<&'static str>;
}

impl AsText for Outcome<()> {
    fn as_text(&self) -> Outcome<&'static str> {
        match self {
            Outcome::Got(()) => Outcome::Got(""),
            Outcome::NoResponse => Outcome::NoResponse,
            Outcome::NotRun(w) => Outcome::NotRun(w.clone()),
        }
    }
}
