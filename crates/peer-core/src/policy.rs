//! Whether to force relay-only ICE: a pure decision from the `--relay` mode, this side's probe
//! report and, when the remote peer sent one, its NAT summary.
//!
//! | this side | the other side | ICE policy | rule |
//! | --- | --- | --- | --- |
//! | `--relay always` / `--relay never` | any | relay / all (no TURN) | `relay-always` / `relay-never` |
//! | not probed (no STUN URL, probe failed) | any | all, TURN as fallback | `no-probe` |
//! | UDP blocked | any | relay | `udp-blocked` |
//! | any | UDP blocked | relay | `udp-blocked` |
//! | families known (e.g. IPv6 only) | families known, none in common (IPv4 only) | relay | `no-common-family` |
//! | IPv4 a symmetric row below, IPv6 summary (dual stack or IPv6 only) | IPv6 summary, not a symmetric row over IPv6 | all | `direct-ipv6` |
//! | symmetric (mapping known to depend on the destination) | symmetric | relay on the answering side, all on the offering side | `symmetric-pair` |
//! | symmetric | filtering known to be address- or port-restricted | relay on the answering side, all on the offering side | `symmetric-restricted` |
//! | filtering known to be restricted | symmetric | relay on the answering side, all on the offering side | `symmetric-restricted` |
//! | any other | any other | all, TURN as fallback (and ICE restarted relay-only if no direct pair works in time) | `direct-possible` |
//! | symmetric | no summary (aiortc, a browser, an older natkit-peer) | relay | `this-side-only` |
//! | not symmetric | no summary | all, TURN as fallback | `this-side-only` |
//!
//! Every row, with each RFC 4787 mapping x filtering pair of both sides, is spelled out in
//! `crates/peer-core/pair_rule.tsv`: one table, checked by this crate's tests and the Python
//! package's.
//!
//! One relay hop is enough where a direct path cannot work: the answering side is relay-only
//! and the offering side reaches the answerer's relayed address from its own (a TURN permission
//! is per IP address, RFC 8656 section 9, and a symmetric NAT keeps its IP from one destination to
//! the next). The offering side still gathers its own relay candidate, so a NAT that changes its
//! public IP per destination (RFC 4787's arbitrary pooling) still has relay-to-relay pairs to
//! fall back on. One hop halves the relay's work for such a pair and lets the offering side
//! check before its own allocation exists (a browser's comes ~70 ms into a gathering).

use natkit_nat_probe::{Behaviour, NatReport};
use natkit_proto::ice::is_turn_url;
use natkit_proto::{AddressFamily, IceServer, NatBehaviour, NatSummary};

/// The `--relay` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RelayMode {
    /// Probe the NAT, exchange NAT summaries and relay only when the pair cannot connect directly.
    Auto,
    /// Always `iceTransportPolicy: relay`.
    Always,
    /// Never relay: TURN servers are left out, only direct paths are tried.
    Never,
}

/// This side's part in the offer/answer exchange: the answering side relays for the rows one
/// relay hop is enough for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Offerer,
    Answerer,
}

/// Which row of the table decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    RelayAlways,
    RelayNever,
    NoProbe,
    UdpBlocked,
    /// The two sides share no address family (IPv6-only facing IPv4-only): only a dual-stack
    /// relay joins them.
    NoCommonFamily,
    SymmetricPair,
    SymmetricRestricted,
    DirectPossible,
    /// IPv4 would need a relay, IPv6 can connect directly: every candidate.
    DirectIpv6,
    ThisSideOnly,
    /// No direct pair worked in time: ICE restarted relay-only.
    DirectDeadline,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RelayAlways => "relay-always",
            Rule::RelayNever => "relay-never",
            Rule::NoProbe => "no-probe",
            Rule::UdpBlocked => "udp-blocked",
            Rule::NoCommonFamily => "no-common-family",
            Rule::SymmetricPair => "symmetric-pair",
            Rule::SymmetricRestricted => "symmetric-restricted",
            Rule::DirectPossible => "direct-possible",
            Rule::DirectIpv6 => "direct-ipv6",
            Rule::ThisSideOnly => "this-side-only",
            Rule::DirectDeadline => "direct-deadline",
        }
    }
}

/// The ICE transport policy chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub relay_only: bool,
    pub rule: Rule,
    pub reason: String,
}

impl Policy {
    /// Can a pair without a relay work? Not where this side relays, nor where the other side
    /// does because no direct path can (`symmetric-pair`, `symmetric-restricted`).
    pub fn direct_expected(&self) -> bool {
        !self.relay_only && !matches!(self.rule, Rule::SymmetricPair | Rule::SymmetricRestricted)
    }
}

fn behaviour(b: Behaviour) -> NatBehaviour {
    match b {
        Behaviour::EndpointIndependent => NatBehaviour::EndpointIndependent,
        Behaviour::AddressDependent => NatBehaviour::AddressDependent,
        Behaviour::AddressAndPortDependent => NatBehaviour::AddressAndPortDependent,
    }
}

/// The summary of a probe report that natkit-peer sends the remote peer.
pub fn summary(report: &NatReport) -> NatSummary {
    let blocked = report.nat_type == natkit_nat_probe::NatType::UdpBlocked;
    NatSummary {
        mapping: report
            .mapping_possible
            .iter()
            .copied()
            .map(behaviour)
            .collect(),
        filtering: report
            .filtering_possible
            .iter()
            .copied()
            .map(behaviour)
            .collect(),
        udp_blocked: blocked,
        families: vec![],
        ipv6: None,
    }
}

/// Decides this side's ICE policy. `local` is `None` when this side could not probe; `remote`
/// is `None` when the other peer sent no summary; `role` matters only for the rows where one
/// relay hop is enough (`symmetric-pair`, `symmetric-restricted`: the answerer relays).
pub fn decide(
    mode: RelayMode,
    role: Role,
    local: Option<&NatSummary>,
    remote: Option<&NatSummary>,
) -> Policy {
    let policy = |relay_only: bool, rule: Rule, reason: String| Policy {
        relay_only,
        rule,
        reason,
    };
    match mode {
        RelayMode::Always => return policy(true, Rule::RelayAlways, "--relay always".into()),
        RelayMode::Never => return policy(false, Rule::RelayNever, "--relay never".into()),
        RelayMode::Auto => {}
    }
    let Some(local) = local else {
        return policy(
            false,
            Rule::NoProbe,
            "no probe result: all candidates, TURN as ICE fallback".into(),
        );
    };
    let mine = local.describe();
    if local.udp_blocked {
        return policy(
            true,
            Rule::UdpBlocked,
            "UDP is blocked here: only a relay can carry the session".into(),
        );
    }
    let Some(remote) = remote else {
        return if local.symmetric() {
            policy(
                true,
                Rule::ThisSideOnly,
                format!("this side's NAT is symmetric ({mine}); the remote peer sent no NAT summary: relay"),
            )
        } else {
            policy(
                false,
                Rule::ThisSideOnly,
                format!("this side ({mine}) can take direct connections; the remote peer sent no NAT summary: all candidates, TURN as ICE fallback"),
            )
        };
    };
    let theirs = remote.describe();
    if remote.udp_blocked {
        return policy(
            true,
            Rule::UdpBlocked,
            "UDP is blocked at the remote peer: only a relay can carry the session".into(),
        );
    }
    if local.no_common_family(remote) {
        return policy(
            true,
            Rule::NoCommonFamily,
            format!(
                "no address family in common (here {}, there {}): only a relay holding both can join them",
                local.families_text(),
                remote.families_text()
            ),
        );
    }
    // Each family both sides have is judged alone (an IPv6-only side's summary is its IPv6's; a
    // dual-stack side's is its IPv4's, with its IPv6's in `ipv6`; no families said: IPv4).
    let v4 = |s: &'_ NatSummary| -> bool {
        s.families.is_empty() || s.families.contains(&natkit_proto::AddressFamily::Ipv4)
    };
    let over_v4 = (v4(local) && v4(remote)).then(|| symmetric_rule(local, remote));
    let over_v6 = match (local.ipv6_view(), remote.ipv6_view()) {
        (Some(l6), Some(r6)) if !l6.udp_blocked && !r6.udp_blocked => {
            Some((symmetric_rule(l6, r6), l6.describe(), r6.describe()))
        }
        _ => None,
    };
    // No family both can be judged in (a dual-stack side that did not probe IPv6 facing an
    // IPv6-only one): their summaries as they are.
    let over_v4 = match (&over_v4, &over_v6) {
        (None, None) => Some(symmetric_rule(local, remote)),
        _ => over_v4,
    };
    match (over_v4, over_v6.clone()) {
        (Some(Some(_)), Some((None, l6, r6))) => policy(
            false,
            Rule::DirectIpv6,
            format!("IPv4 needs a relay (here {mine}, there {theirs}), IPv6 can connect directly (here {l6}, there {r6}): all candidates, TURN as ICE fallback"),
        ),
        (Some(Some(rule)), _) | (None, Some((Some(rule), _, _))) => {
            let (l, r) = match &over_v6 {
                Some((_, l6, r6)) if over_v4.is_none() => (l6.clone(), r6.clone()),
                _ => (mine.clone(), theirs.clone()),
            };
            let why = match rule {
                Rule::SymmetricPair => "both NATs are symmetric",
                _ => "a symmetric NAT facing restricted filtering",
            };
            match role {
                Role::Answerer => policy(
                    true,
                    rule,
                    format!("{why} (here {l}, there {r}): no direct path; the answering side (this one) relays"),
                ),
                Role::Offerer => policy(
                    false,
                    rule,
                    format!("{why} (here {l}, there {r}): no direct path; the answering side relays and this side reaches its relayed address from its own (one relay hop), TURN as ICE fallback"),
                ),
            }
        }
        (_, over_v6) => {
            let (l, r) = match over_v6 {
                Some((_, l6, r6)) if over_v4.is_none() => (l6, r6),
                _ => (mine, theirs),
            };
            policy(
                false,
                Rule::DirectPossible,
                format!("a direct path can work (here {l}, there {r}): all candidates, TURN as ICE fallback"),
            )
        }
    }
}

/// The symmetric rows of the table for two sides' behaviours in one family: `None` when a
/// direct path can work.
fn symmetric_rule(local: &NatSummary, remote: &NatSummary) -> Option<Rule> {
    if local.symmetric() && remote.symmetric() {
        return Some(Rule::SymmetricPair);
    }
    ((local.symmetric() && remote.restricted_filtering())
        || (remote.symmetric() && local.restricted_filtering()))
    .then_some(Rule::SymmetricRestricted)
}

/// The ICE servers a session uses: all of them, except that `never` leaves every TURN URL out
/// (with TURN URLs, ICE would still fall back to relay pairs), and that where this side's probe
/// found UDP blocked (`local`), only TURN over TCP and TLS is kept when there is any: UDP URLs
/// could only time out. Entries left with no URL go.
pub fn usable_servers(
    servers: &[IceServer],
    mode: RelayMode,
    local: Option<&NatSummary>,
) -> Vec<IceServer> {
    let mut servers = servers.to_vec();
    if mode == RelayMode::Never {
        for s in &mut servers {
            s.urls.retain(|u| !is_turn_url(u));
        }
    }
    // URLs of an address family this host does not have could only fail (an IPv6-only phone
    // handed a dual-stack relay's IPv4 URLs).
    if let Some(families) = local
        .map(|n| n.families.as_slice())
        .filter(|f| !f.is_empty() && !f.contains(&AddressFamily::Other))
    {
        for s in &mut servers {
            s.urls.retain(|u| reachable(families, url_family(u)));
        }
    }
    let udp_blocked = local.is_some_and(|n| n.udp_blocked);
    if udp_blocked
        && servers
            .iter()
            .flat_map(|s| &s.urls)
            .any(|u| is_stream_turn_url(u))
    {
        for s in &mut servers {
            s.urls.retain(|u| is_stream_turn_url(u));
        }
    }
    servers.retain(|s| !s.urls.is_empty());
    servers
}

/// The address family of a `stun:`/`turn:`/`turns:` URL's host when it is an IP literal;
/// `None` for a host name (it may resolve to either).
fn url_family(url: &str) -> Option<AddressFamily> {
    let rest = url.split_once(':')?.1;
    host_family(rest.split(['?', '/']).next().unwrap_or(rest))
}

/// The address family of `HOST[:PORT]` (`[V6]:PORT` bracketed) when the host is an IP literal.
fn host_family(hostport: &str) -> Option<AddressFamily> {
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
    };
    match host.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => Some(AddressFamily::Ipv4),
        std::net::IpAddr::V6(_) => Some(AddressFamily::Ipv6),
    }
}

/// Does `url` reach a TURN server over TCP or TLS (`turns:`, or `turn:` with
/// `transport=tcp`)?
pub fn is_stream_turn_url(url: &str) -> bool {
    url.starts_with("turns:") || (url.starts_with("turn:") && url.contains("transport=tcp"))
}

/// How a relay candidate's server was reached, from the URL it was gathered through: `tls`,
/// `tcp` or `udp` (the `relay_protocol` of the `connected` event).
pub fn relay_protocol(url: &str) -> &'static str {
    if url.starts_with("turns:") {
        "tls"
    } else if url.contains("transport=tcp") {
        "tcp"
    } else {
        "udp"
    }
}

/// The STUN server to probe: the first `stun:HOST[:PORT]` URL this host can reach, given the
/// address families it has (`families`, empty when not known: any URL); a host name may resolve
/// to either family and is always a candidate.
pub fn stun_target(servers: &[IceServer], families: &[AddressFamily]) -> Option<String> {
    servers
        .iter()
        .filter_map(IceServer::stun_target)
        .find(|t| reachable(families, host_family(t)))
}

/// Can a host with `families` (empty: not known) reach a host of `family` (`None`: a name,
/// which may resolve to either)?
fn reachable(families: &[AddressFamily], family: Option<AddressFamily>) -> bool {
    families.is_empty() || family.is_none_or(|f| families.contains(&f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use NatBehaviour::*;

    fn nat(mapping: NatBehaviour, filtering: NatBehaviour) -> NatSummary {
        NatSummary {
            mapping: vec![mapping],
            filtering: vec![filtering],
            udp_blocked: false,
            families: vec![],
            ipv6: None,
        }
    }

    fn blocked() -> NatSummary {
        NatSummary {
            mapping: vec![],
            filtering: vec![],
            udp_blocked: true,
            families: vec![],
            ipv6: None,
        }
    }

    /// `pair_rule.tsv`'s NAT notation: `MAPPING/FILTERING` (each a comma-separated list of EI,
    /// AD, APD), `blocked`, or `-` for no summary; `@ipv4`, `@ipv6` or `@ipv4,ipv6` after it
    /// names the side's address families.
    fn side(text: &str) -> Option<NatSummary> {
        let (text, ipv6) = match text.split_once('+') {
            Some((t, v6)) => (t, side_nat(v6).map(Box::new)),
            None => (text, None),
        };
        let (text, families) = match text.split_once('@') {
            Some((t, f)) => (
                t,
                f.split(',')
                    .map(|f| match f {
                        "ipv4" => AddressFamily::Ipv4,
                        "ipv6" => AddressFamily::Ipv6,
                        other => panic!("pair_rule.tsv: unknown family {other:?}"),
                    })
                    .collect(),
            ),
            None => (text, vec![]),
        };
        side_nat(text).map(|n| NatSummary {
            families,
            ipv6,
            ..n
        })
    }

    fn side_nat(text: &str) -> Option<NatSummary> {
        let list = |l: &str| -> Vec<NatBehaviour> {
            l.split(',')
                .map(|b| match b {
                    "EI" => EndpointIndependent,
                    "AD" => AddressDependent,
                    "APD" => AddressAndPortDependent,
                    other => panic!("pair_rule.tsv: unknown behaviour {other:?}"),
                })
                .collect()
        };
        match text {
            "-" => None,
            "blocked" => Some(blocked()),
            _ => {
                let (m, f) = text.split_once('/').expect("MAPPING/FILTERING");
                Some(NatSummary {
                    mapping: list(m),
                    filtering: list(f),
                    udp_blocked: false,
                    families: vec![],
                    ipv6: None,
                })
            }
        }
    }

    /// The shared table, every row: the decision, its rule, and a reason to show. The Python
    /// package's tests read the same file.
    #[test]
    fn the_shared_pair_rule_table() {
        let table = include_str!("../pair_rule.tsv");
        let mut auto_pairs = std::collections::HashMap::new();
        for row in table.lines().filter(|l| !l.starts_with('#')).skip(1) {
            let [mode, local, remote, policy, rule] = row.split('\t').collect::<Vec<_>>()[..]
            else {
                panic!("pair_rule.tsv: not five columns: {row:?}");
            };
            let mode = match mode {
                "auto" => RelayMode::Auto,
                "always" => RelayMode::Always,
                "never" => RelayMode::Never,
                other => panic!("pair_rule.tsv: unknown mode {other:?}"),
            };
            let [offerer, answerer] = [Role::Offerer, Role::Answerer]
                .map(|role| decide(mode, role, side(local).as_ref(), side(remote).as_ref()));
            let got = match (offerer.relay_only, answerer.relay_only) {
                (true, true) => "relay",
                (false, false) => "all",
                (false, true) => "answerer",
                (true, false) => panic!("{row}: the offerer relays, the answerer does not"),
            };
            assert_eq!((got, offerer.rule), (policy, answerer.rule), "{row}");
            assert_eq!(offerer.rule.as_str(), rule, "{row}");
            for p in [&offerer, &answerer] {
                assert!(!p.reason.is_empty(), "{row}");
            }
            if mode == RelayMode::Auto {
                auto_pairs.insert((local, remote), got);
            }
        }
        // Every RFC 4787 mapping x filtering pair of both sides is in the table, and both sides
        // of a pair reach the same decision.
        let all = ["EI", "AD", "APD"];
        let sides: Vec<String> = all
            .iter()
            .flat_map(|m| all.iter().map(move |f| format!("{m}/{f}")))
            .collect();
        for (l, r) in sides.iter().flat_map(|l| sides.iter().map(move |r| (l, r))) {
            let here = auto_pairs.get(&(l.as_str(), r.as_str()));
            let there = auto_pairs.get(&(r.as_str(), l.as_str()));
            assert!(here.is_some(), "pair_rule.tsv lacks {l} vs {r}");
            assert_eq!(here, there, "{l} vs {r}: the two sides disagree");
        }
    }

    #[test]
    fn a_report_becomes_a_summary() {
        use natkit_nat_probe::NatType;
        let report = NatReport {
            family: "ipv4",
            nat_type: NatType::Unknown,
            mapping: None,
            filtering: Some(Behaviour::AddressAndPortDependent),
            mapping_possible: vec![Behaviour::EndpointIndependent, Behaviour::AddressDependent],
            filtering_possible: vec![Behaviour::AddressAndPortDependent],
            local_address: "198.51.100.10:1".parse().unwrap(),
            mapped_address: None,
            port_preserved: None,
            force_turn: false,
            reason: "r".into(),
            elapsed_ms: 1,
            servers: vec![],
            other_address: None,
            hairpinning: None,
            mapping_lifetime_s: None,
            tests: vec![],
            warnings: vec![],
        };
        let s = summary(&report);
        assert_eq!(s.mapping, [EndpointIndependent, AddressDependent]);
        assert_eq!(s.filtering, [AddressAndPortDependent]);
        assert!(!s.udp_blocked && !s.symmetric() && s.restricted_filtering());
        let blocked = NatReport {
            nat_type: NatType::UdpBlocked,
            ..report
        };
        assert!(summary(&blocked).udp_blocked);
    }

    #[test]
    fn usable_servers_table() {
        let relay = IceServer::for_relay("203.0.113.1", 3478, "1:a".into(), "p".into());
        let turn_only = IceServer {
            urls: vec!["turns:relay.example:5349?transport=tcp".into()],
            username: Some("1:a".into()),
            credential: Some("p".into()),
        };
        let all = vec![relay.clone(), turn_only];
        for mode in [RelayMode::Auto, RelayMode::Always] {
            assert_eq!(usable_servers(&all, mode, None), all, "{mode:?}");
        }
        let never = usable_servers(&all, RelayMode::Never, None);
        assert_eq!(never.len(), 1, "the TURN-only entry goes");
        assert_eq!(never[0].urls, ["stun:203.0.113.1:3478"]);
        assert_eq!(stun_target(&all, &[]).as_deref(), Some("203.0.113.1:3478"));
        assert_eq!(stun_target(&all[1..], &[]), None);
        // A dual-stack relay's URLs: each host probes a family it has.
        let v6 = IceServer::for_relay("2001:db8::1", 3478, "1:a".into(), "p".into());
        let named = IceServer::for_relay("turn.example", 3478, "1:a".into(), "p".into());
        let dual = vec![all[0].clone(), v6.clone()];
        use AddressFamily::{Ipv4, Ipv6};
        let rows: [(&[IceServer], &[AddressFamily], Option<&str>); 6] = [
            (&dual, &[Ipv4, Ipv6], Some("203.0.113.1:3478")),
            (&dual, &[Ipv6], Some("[2001:db8::1]:3478")),
            (&dual, &[Ipv4], Some("203.0.113.1:3478")),
            (&dual[..1], &[Ipv6], None),
            (
                std::slice::from_ref(&named),
                &[Ipv6],
                Some("turn.example:3478"),
            ),
            (std::slice::from_ref(&v6), &[], Some("[2001:db8::1]:3478")),
        ];
        for (servers, families, want) in rows {
            assert_eq!(
                stun_target(servers, families).as_deref(),
                want,
                "{families:?}"
            );
        }
    }

    /// A host that names its families keeps only the URLs it can reach: IP literals of its
    /// families, and host names.
    #[test]
    fn urls_of_a_family_the_host_lacks_are_left_out() {
        let mut ep4 = natkit_proto::RelayEndpoints::udp("203.0.113.1", 3478);
        ep4.tls = Some(("turn.example".into(), 443));
        let ep6 = natkit_proto::RelayEndpoints {
            tcp: true,
            ..natkit_proto::RelayEndpoints::udp("2001:db8::1", 3478)
        };
        let servers = vec![
            IceServer::for_endpoints(&ep4, "1:a".into(), "p".into()),
            IceServer::for_endpoints(&ep6, "1:a".into(), "p".into()),
        ];
        let with = |families: Vec<AddressFamily>| NatSummary {
            mapping: vec![EndpointIndependent],
            filtering: vec![EndpointIndependent],
            families,
            ..NatSummary::default()
        };
        let urls = |local: Option<&NatSummary>| -> Vec<String> {
            usable_servers(&servers, RelayMode::Auto, local)
                .into_iter()
                .flat_map(|s| s.urls)
                .collect()
        };
        let all: Vec<String> = servers.iter().flat_map(|s| s.urls.clone()).collect();
        use AddressFamily::{Ipv4, Ipv6};
        let six = with(vec![Ipv6]);
        let four = with(vec![Ipv4]);
        let both = with(vec![Ipv4, Ipv6]);
        let unknown = with(vec![]);
        assert_eq!(urls(None), all);
        assert_eq!(urls(Some(&both)), all);
        assert_eq!(urls(Some(&unknown)), all);
        assert_eq!(
            urls(Some(&six)),
            [
                "turns:turn.example:443?transport=tcp",
                "stun:[2001:db8::1]:3478",
                "turn:[2001:db8::1]:3478?transport=udp",
                "turn:[2001:db8::1]:3478?transport=tcp",
            ]
        );
        assert_eq!(
            urls(Some(&four)),
            [
                "stun:203.0.113.1:3478",
                "turn:203.0.113.1:3478?transport=udp",
                "turns:turn.example:443?transport=tcp",
            ]
        );
    }

    #[test]
    fn udp_blocked_keeps_only_tcp_and_tls_turn() {
        let ep = natkit_proto::RelayEndpoints {
            host: "203.0.113.1".into(),
            port: 3478,
            tcp: true,
            tls: Some(("turn.example".into(), 5349)),
        };
        let relay = IceServer::for_endpoints(&ep, "1:a".into(), "p".into());
        let blocked = NatSummary {
            mapping: vec![],
            filtering: vec![],
            udp_blocked: true,
            families: vec![],
            ipv6: None,
        };
        let open = nat(EndpointIndependent, EndpointIndependent);
        let kept = usable_servers(
            std::slice::from_ref(&relay),
            RelayMode::Auto,
            Some(&blocked),
        );
        assert_eq!(
            kept[0].urls,
            [
                "turn:203.0.113.1:3478?transport=tcp",
                "turns:turn.example:5349?transport=tcp"
            ]
        );
        assert_eq!(
            usable_servers(std::slice::from_ref(&relay), RelayMode::Auto, Some(&open))[0].urls,
            relay.urls
        );
        // With no TCP/TLS URL at all, nothing is taken away.
        let udp_only = IceServer::for_relay("203.0.113.1", 3478, "1:a".into(), "p".into());
        assert_eq!(
            usable_servers(
                std::slice::from_ref(&udp_only),
                RelayMode::Auto,
                Some(&blocked)
            )[0]
            .urls,
            udp_only.urls
        );
        let cases = [
            ("turn:h:3478?transport=udp", "udp"),
            ("turn:h:3478", "udp"),
            ("turn:h:3478?transport=tcp", "tcp"),
            ("turns:h:5349?transport=tcp", "tls"),
            ("turns:h:443", "tls"),
        ];
        for (url, want) in cases {
            assert_eq!(relay_protocol(url), want, "{url}");
        }
    }
}
