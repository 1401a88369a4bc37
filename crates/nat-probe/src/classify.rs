//! NAT classification: a pure function from what the probe observed to a verdict.
//!
//! Mapping and filtering are named as in RFC 4787 (endpoint-independent, address-dependent,
//! address-and-port-dependent) and found with RFC 5780's tests (section 4.3: mapping tests I, II,
//! III; section 4.4: filtering tests II and III). A test that could not run leaves its behaviour
//! `None`: "not tested" is never reported as a behaviour.
//!
//! What could not be decided is still narrowed down: the verdict lists the behaviours that
//! remain possible ([`Verdict::mapping_possible`]). A server with one IP and two ports (RFC 5780's
//! change-port honoured, change-IP refused) cannot tell endpoint-independent from
//! address-dependent behaviour, but a mapping that changes with the destination port proves
//! address-and-port-dependent mapping (a symmetric NAT), and a change-port answer that never
//! arrives proves address-and-port-dependent filtering.

use std::net::SocketAddr;

use serde::Serialize;

/// RFC 4787 behaviour of a NAT's mapping or filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

impl Behaviour {
    pub const ALL: [Behaviour; 3] = [
        Behaviour::EndpointIndependent,
        Behaviour::AddressDependent,
        Behaviour::AddressAndPortDependent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "endpoint-independent",
            Behaviour::AddressDependent => "address-dependent",
            Behaviour::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// The classic (RFC 3489) names, kept because operators search for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatType {
    OpenInternet,
    FullCone,
    RestrictedCone,
    PortRestrictedCone,
    Symmetric,
    SymmetricUdpFirewall,
    UdpBlocked,
    Unknown,
}

impl NatType {
    pub fn as_str(self) -> &'static str {
        match self {
            NatType::OpenInternet => "open-internet",
            NatType::FullCone => "full-cone",
            NatType::RestrictedCone => "restricted-cone",
            NatType::PortRestrictedCone => "port-restricted-cone",
            NatType::Symmetric => "symmetric",
            NatType::SymmetricUdpFirewall => "symmetric-udp-firewall",
            NatType::UdpBlocked => "udp-blocked",
            NatType::Unknown => "unknown",
        }
    }
}

/// What one test saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// A response that passed the checks (right source, right RESPONSE-ORIGIN).
    Got(T),
    /// Nothing came back after every retransmission.
    NoResponse,
    /// The test could not be run or its answer was not believable; the text says why.
    NotRun(String),
}

impl<T> Outcome<T> {
    pub fn got(&self) -> Option<&T> {
        match self {
            Outcome::Got(t) => Some(t),
            _ => None,
        }
    }
}

/// RFC 5780 observations against one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observations {
    /// The local address the mapping tests were sent from (a concrete interface address).
    pub local: SocketAddr,
    /// Mapping test I: to the primary address.
    pub mapping1: Outcome<SocketAddr>,
    /// Mapping test II: to the alternate IP, primary port.
    pub mapping2: Outcome<SocketAddr>,
    /// Mapping test III: to the alternate IP and port.
    pub mapping3: Outcome<SocketAddr>,
    /// With a one-IP server (no OTHER-ADDRESS): from the same socket to the server's IP and its
    /// alternate port.
    pub mapping_port: Outcome<SocketAddr>,
    /// Filtering test II: CHANGE-REQUEST(IP and port) answered from the alternate address.
    pub filtering2: Outcome<()>,
    /// Filtering test III: CHANGE-REQUEST(port) answered from the alternate port.
    pub filtering3: Outcome<()>,
}

/// Observations against several plain STUN servers (no RFC 5780 support), from one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiObservations {
    pub local: SocketAddr,
    /// (server, mapped address it saw).
    pub mappings: Vec<(SocketAddr, Outcome<SocketAddr>)>,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub nat_type: NatType,
    /// The mapping behaviour, when exactly one remains possible.
    pub mapping: Option<Behaviour>,
    pub filtering: Option<Behaviour>,
    /// Every mapping behaviour the observations leave possible (all three when nothing was
    /// learnt), in the order of [`Behaviour::ALL`].
    pub mapping_possible: Vec<Behaviour>,
    pub filtering_possible: Vec<Behaviour>,
    /// `Some(true)` when the mapped address equals the local address.
    pub no_nat: Option<bool>,
    pub force_turn: bool,
    pub reason: String,
}

use Behaviour::{
    AddressAndPortDependent as Apd, AddressDependent as Ad, EndpointIndependent as Ei,
};

/// The one behaviour left, if only one is.
fn only(possible: &[Behaviour]) -> Option<Behaviour> {
    match possible {
        [b] => Some(*b),
        _ => None,
    }
}

/// Behaviours in `Behaviour::ALL` order, without repeats.
fn set(of: &[Behaviour]) -> Vec<Behaviour> {
    Behaviour::ALL
        .into_iter()
        .filter(|b| of.contains(b))
        .collect()
}

fn mapping_possible(o: &Observations, m1: SocketAddr) -> Vec<Behaviour> {
    if m1 == o.local {
        // No translation at all: trivially independent of the endpoint.
        return vec![Ei];
    }
    if let Outcome::Got(m2) = o.mapping2 {
        if m2 == m1 {
            return vec![Ei];
        }
        return match o.mapping3 {
            Outcome::Got(m3) if m3 == m2 => vec![Ad],
            Outcome::Got(_) => vec![Apd],
            // The mapping changed with the address; whether the port matters too is unknown.
            _ => set(&[Ad, Apd]),
        };
    }
    match o.mapping_port {
        // Same IP, other port, other mapping: the port matters.
        Outcome::Got(mp) if mp != m1 => vec![Apd],
        // Same IP, other port, same mapping: only another IP could split EI from AD.
        Outcome::Got(_) => set(&[Ei, Ad]),
        _ => Behaviour::ALL.to_vec(),
    }
}

fn filtering_possible(o: &Observations) -> Vec<Behaviour> {
    use Outcome::*;
    match (&o.filtering2, &o.filtering3) {
        (Got(()), _) => vec![Ei],
        (NoResponse, Got(())) => vec![Ad],
        (NoResponse, NoResponse) => vec![Apd],
        // Without the change-IP test (one-IP server), a blocked change-port answer still proves
        // address-and-port-dependent filtering; an answered one cannot tell EI from AD.
        (NotRun(_), NoResponse) => vec![Apd],
        (NotRun(_), Got(())) => set(&[Ei, Ad]),
        // Change-IP blocked: not endpoint-independent.
        (NoResponse, NotRun(_)) => set(&[Ad, Apd]),
        _ => Behaviour::ALL.to_vec(),
    }
}

fn nat_type(no_nat: bool, mapping: &[Behaviour], filtering: &[Behaviour]) -> NatType {
    let endpoint_dependent = |p: &[Behaviour]| !p.is_empty() && !p.contains(&Ei);
    if no_nat {
        return if filtering == [Ei] {
            NatType::OpenInternet
        } else if endpoint_dependent(filtering) {
            NatType::SymmetricUdpFirewall
        } else {
            NatType::Unknown
        };
    }
    // The classic names call any mapping that depends on the destination symmetric.
    if endpoint_dependent(mapping) {
        return NatType::Symmetric;
    }
    match (mapping, filtering) {
        ([Ei], [Ei]) => NatType::FullCone,
        ([Ei], [Ad]) => NatType::RestrictedCone,
        ([Ei], [Apd]) => NatType::PortRestrictedCone,
        _ => NatType::Unknown,
    }
}

/// "endpoint-independent or address-dependent": the behaviours still possible, for people.
pub fn possible_text(possible: &[Behaviour]) -> String {
    match possible {
        [] => "none".into(),
        p if p.len() == Behaviour::ALL.len() => "not determined".into(),
        p => p
            .iter()
            .map(|b| b.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn decide(nat: NatType, mapping: &[Behaviour], blocked: bool) -> (bool, String) {
    use Behaviour::*;
    if nat == NatType::Unknown && mapping == [EndpointIndependent] {
        return (
            false,
            "mapping is endpoint-independent but filtering was not determined (the server cannot answer from another address): TURN not forced".into(),
        );
    }
    if blocked {
        return (
            true,
            "UDP to the STUN server gets no answer: only TURN over TCP/TLS can work".into(),
        );
    }
    match mapping {
        p if !p.is_empty() && !p.contains(&EndpointIndependent) => (
            true,
            format!(
                "mapping is {}: the address peers learn from STUN does not work for them, relay through TURN",
                possible_text(p)
            ),
        ),
        [EndpointIndependent] => (
            false,
            match nat {
                NatType::OpenInternet => "no NAT and no filtering: peers can connect directly".into(),
                NatType::SymmetricUdpFirewall => {
                    "no NAT but a stateful firewall: direct connections work when both sides send (ICE does)".into()
                }
                _ => "mapping is endpoint-independent: hole punching works, TURN is only a fallback".into(),
            },
        ),
        [EndpointIndependent, AddressDependent] => (
            false,
            "mapping is endpoint-independent or address-dependent (it stayed the same towards another port of the server; only a server with a second IP could tell the two apart): TURN not forced, kept as an ICE fallback".into(),
        ),
        _ => (
            false,
            "mapping behaviour not determined: TURN not forced, keep it as an ICE fallback".into(),
        ),
    }
}

/// The verdict when no mapping was seen: UDP blocked if nothing answered at all, else unknown.
fn unanswered(blocked: bool, why: &str) -> Verdict {
    let (nat_type, (force_turn, reason)) = if blocked {
        (NatType::UdpBlocked, decide(NatType::UdpBlocked, &[], true))
    } else {
        (NatType::Unknown, (false, why.to_owned()))
    };
    Verdict {
        nat_type,
        mapping: None,
        filtering: None,
        mapping_possible: Behaviour::ALL.to_vec(),
        filtering_possible: Behaviour::ALL.to_vec(),
        no_nat: None,
        force_turn,
        reason,
    }
}

/// Classifies RFC 5780 observations.
pub fn classify(o: &Observations) -> Verdict {
    let Some(&m1) = o.mapping1.got() else {
        return unanswered(
            o.mapping1 == Outcome::NoResponse,
            "the first Binding request gave no usable answer",
        );
    };
    let no_nat = m1 == o.local;
    let mapping = mapping_possible(o, m1);
    let filtering = filtering_possible(o);
    let nat = nat_type(no_nat, &mapping, &filtering);
    let (force_turn, reason) = decide(nat, &mapping, false);
    Verdict {
        nat_type: nat,
        mapping: only(&mapping),
        filtering: only(&filtering),
        mapping_possible: mapping,
        filtering_possible: filtering,
        no_nat: Some(no_nat),
        force_turn,
        reason,
    }
}

/// Classifies observations from several plain STUN servers: the mapping varies by destination
/// (symmetric) if the servers saw different mapped addresses. Filtering cannot be tested.
pub fn classify_multi(o: &MultiObservations) -> Verdict {
    let seen: Vec<(SocketAddr, SocketAddr)> = o
        .mappings
        .iter()
        .filter_map(|(s, m)| m.got().map(|m| (*s, *m)))
        .collect();
    if seen.is_empty() {
        let blocked = o.mappings.iter().all(|(_, m)| *m == Outcome::NoResponse);
        return unanswered(blocked, "no server gave a usable answer");
    }
    let no_nat = seen.iter().all(|(_, m)| *m == o.local);
    // Pairs of servers that differ in IP, or share the IP and differ in port, and whether their
    // mappings differ: each kind of pair rules behaviours in or out.
    let pairs = |same_ip: bool| -> Vec<bool> {
        let mut out = Vec::new();
        for (s1, m1) in &seen {
            for (s2, m2) in &seen {
                let kind = if same_ip {
                    s1.ip() == s2.ip() && s1.port() != s2.port()
                } else {
                    s1.ip() != s2.ip()
                };
                if kind {
                    out.push(m1 != m2);
                }
            }
        }
        out
    };
    let mut possible: Vec<Behaviour> = if no_nat {
        vec![Ei]
    } else {
        Behaviour::ALL.to_vec()
    };
    for changed in pairs(false) {
        // Another IP: EI keeps the mapping, AD and APD change it.
        possible.retain(|b| (*b != Ei) == changed);
    }
    for changed in pairs(true) {
        // Same IP, another port: EI and AD keep it, APD changes it.
        possible.retain(|b| (*b == Apd) == changed);
    }
    let varies = seen.iter().any(|(_, m)| *m != seen[0].1);
    let nat = if no_nat {
        NatType::Unknown // filtering untested: open internet vs firewall is unknown
    } else if varies {
        NatType::Symmetric
    } else {
        NatType::Unknown
    };
    let (force_turn, reason) = if varies {
        (
            true,
            format!(
                "mapping varies by destination ({} servers saw {} different addresses): relay through TURN",
                seen.len(),
                {
                    let mut m: Vec<_> = seen.iter().map(|(_, m)| m).collect();
                    m.sort();
                    m.dedup();
                    m.len()
                }
            ),
        )
    } else {
        decide(nat, &possible, false)
    };
    Verdict {
        nat_type: nat,
        mapping: only(&possible),
        filtering: None,
        mapping_possible: possible,
        filtering_possible: Behaviour::ALL.to_vec(),
        no_nat: Some(no_nat),
        force_turn,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Behaviour::*;
    use Outcome::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const LOCAL: &str = "198.51.100.10:40000";
    const M1: &str = "203.0.113.254:40000";

    fn obs(
        m2: Outcome<SocketAddr>,
        m3: Outcome<SocketAddr>,
        f2: Outcome<()>,
        f3: Outcome<()>,
    ) -> Observations {
        Observations {
            local: a(LOCAL),
            mapping1: Got(a(M1)),
            mapping2: m2,
            mapping3: m3,
            mapping_port: NotRun("not needed".into()),
            filtering2: f2,
            filtering3: f3,
        }
    }

    #[test]
    fn every_mapping_times_filtering_combination() {
        // How each mapping behaviour shows in tests II and III.
        let mappings = [
            (EndpointIndependent, Got(a(M1)), NotRun("not needed".into())),
            (
                AddressDependent,
                Got(a("203.0.113.254:50001")),
                Got(a("203.0.113.254:50001")),
            ),
            (
                AddressAndPortDependent,
                Got(a("203.0.113.254:50001")),
                Got(a("203.0.113.254:50002")),
            ),
        ];
        let filterings = [
            (EndpointIndependent, Got(()), NotRun("not needed".into())),
            (AddressDependent, NoResponse, Got(())),
            (AddressAndPortDependent, NoResponse, NoResponse),
        ];
        for (m, m2, m3) in &mappings {
            for (f, f2, f3) in &filterings {
                let v = classify(&obs(m2.clone(), m3.clone(), f2.clone(), f3.clone()));
                let want_type = match (m, f) {
                    (EndpointIndependent, EndpointIndependent) => NatType::FullCone,
                    (EndpointIndependent, AddressDependent) => NatType::RestrictedCone,
                    (EndpointIndependent, AddressAndPortDependent) => NatType::PortRestrictedCone,
                    _ => NatType::Symmetric,
                };
                assert_eq!(v.mapping, Some(*m), "{m:?} {f:?}");
                assert_eq!(v.filtering, Some(*f), "{m:?} {f:?}");
                assert_eq!(v.nat_type, want_type, "{m:?} {f:?}");
                assert_eq!(v.force_turn, *m != EndpointIndependent, "{m:?} {f:?}");
                assert_eq!(v.no_nat, Some(false));
            }
        }
    }

    #[test]
    fn no_nat_cases() {
        let open = Observations {
            local: a(LOCAL),
            mapping1: Got(a(LOCAL)),
            mapping2: Got(a(LOCAL)),
            mapping3: NotRun("not needed".into()),
            mapping_port: NotRun("not needed".into()),
            filtering2: Got(()),
            filtering3: NotRun("not needed".into()),
        };
        let v = classify(&open);
        assert_eq!(
            (v.nat_type, v.mapping, v.filtering, v.force_turn),
            (
                NatType::OpenInternet,
                Some(EndpointIndependent),
                Some(EndpointIndependent),
                false
            )
        );
        let firewall = Observations {
            filtering2: NoResponse,
            filtering3: NoResponse,
            ..open.clone()
        };
        let v = classify(&firewall);
        assert_eq!(
            (v.nat_type, v.filtering, v.force_turn),
            (
                NatType::SymmetricUdpFirewall,
                Some(AddressAndPortDependent),
                false
            )
        );
    }

    #[test]
    fn blocked_and_untested() {
        let blocked = Observations {
            local: a(LOCAL),
            mapping1: NoResponse,
            mapping2: NotRun("no response to test I".into()),
            mapping3: NotRun("no response to test I".into()),
            mapping_port: NotRun("no response to test I".into()),
            filtering2: NotRun("no response to test I".into()),
            filtering3: NotRun("no response to test I".into()),
        };
        let v = classify(&blocked);
        assert_eq!(
            (v.nat_type, v.mapping, v.filtering, v.force_turn),
            (NatType::UdpBlocked, None, None, true)
        );

        // A server without an alternate address: nothing but test I and the change-port test.
        let one_ip = obs(
            NotRun("no OTHER-ADDRESS".into()),
            NotRun("no OTHER-ADDRESS".into()),
            NotRun("420".into()),
            Got(()),
        );
        let v = classify(&one_ip);
        assert_eq!(
            (v.nat_type, v.mapping, v.filtering, v.force_turn),
            (NatType::Unknown, None, None, false)
        );
        let one_ip_apdf = obs(
            NotRun("no OTHER-ADDRESS".into()),
            NotRun("no OTHER-ADDRESS".into()),
            NotRun("420".into()),
            NoResponse,
        );
        assert_eq!(
            classify(&one_ip_apdf).filtering,
            Some(AddressAndPortDependent)
        );

        // A server that faked CHANGE-REQUEST: filtering stays unknown, mapping still counts.
        let faked = obs(
            Got(a(M1)),
            NotRun("x".into()),
            NotRun("answer came from the primary address".into()),
            NotRun("same".into()),
        );
        let v = classify(&faked);
        assert_eq!(
            (v.mapping, v.filtering, v.nat_type),
            (Some(EndpointIndependent), None, NatType::Unknown)
        );

        // Mapping test III lost: AD and APD cannot be split, so mapping is None; but the mapping
        // changed towards another IP, which is enough to call it symmetric and force TURN.
        let v = classify(&obs(
            Got(a("203.0.113.254:50001")),
            NoResponse,
            Got(()),
            NotRun("x".into()),
        ));
        assert_eq!(
            (v.mapping, v.nat_type, v.force_turn),
            (None, NatType::Symmetric, true)
        );
        assert_eq!(
            v.mapping_possible,
            [AddressDependent, AddressAndPortDependent]
        );
    }

    /// What a server with one IP and two ports sees of each RFC 4787 combination: the mapping
    /// towards its other port, and whether its change-port answer gets through.
    fn one_ip(mapping: Behaviour, filtering: Behaviour) -> Observations {
        Observations {
            local: a(LOCAL),
            mapping1: Got(a(M1)),
            mapping2: NotRun("server gave no usable OTHER-ADDRESS".into()),
            mapping3: NotRun("server gave no usable OTHER-ADDRESS".into()),
            mapping_port: Got(if mapping == AddressAndPortDependent {
                a("203.0.113.254:50001")
            } else {
                a(M1)
            }),
            filtering2: NotRun("server cannot honour the change (error 420)".into()),
            filtering3: if filtering == AddressAndPortDependent {
                NoResponse
            } else {
                Got(())
            },
        }
    }

    #[test]
    fn one_ip_server_is_right_or_honestly_partial_for_every_combination() {
        for m in Behaviour::ALL {
            for f in Behaviour::ALL {
                let v = classify(&one_ip(m, f));
                let what = format!("{m:?} x {f:?}: {v:?}");
                assert!(v.mapping_possible.contains(&m), "{what}");
                assert!(v.filtering_possible.contains(&f), "{what}");
                if let Some(decided) = v.mapping {
                    assert_eq!(decided, m, "{what}");
                }
                if let Some(decided) = v.filtering {
                    assert_eq!(decided, f, "{what}");
                }
                // Never a wrong classic name: either the right one or unknown.
                let truth = match (m, f) {
                    (EndpointIndependent, EndpointIndependent) => NatType::FullCone,
                    (EndpointIndependent, AddressDependent) => NatType::RestrictedCone,
                    (EndpointIndependent, AddressAndPortDependent) => NatType::PortRestrictedCone,
                    _ => NatType::Symmetric,
                };
                assert!(
                    v.nat_type == truth || v.nat_type == NatType::Unknown,
                    "{what}"
                );
                // TURN forced exactly for the mapping a one-IP server can prove.
                assert_eq!(v.force_turn, m == AddressAndPortDependent, "{what}");
                if m == AddressAndPortDependent {
                    assert_eq!(v.nat_type, NatType::Symmetric, "{what}");
                    assert_eq!(v.mapping, Some(AddressAndPortDependent), "{what}");
                }
            }
        }
        // The partial answers, spelled out.
        let cone = classify(&one_ip(EndpointIndependent, AddressAndPortDependent));
        assert_eq!(
            cone.mapping_possible,
            [EndpointIndependent, AddressDependent]
        );
        assert_eq!(cone.filtering, Some(AddressAndPortDependent));
        assert!(
            cone.reason
                .contains("endpoint-independent or address-dependent"),
            "{}",
            cone.reason
        );
        let full = classify(&one_ip(EndpointIndependent, EndpointIndependent));
        assert_eq!(
            full.filtering_possible,
            [EndpointIndependent, AddressDependent]
        );
        assert_eq!(
            possible_text(&full.filtering_possible),
            "endpoint-independent or address-dependent"
        );
        // The other port never answered: nothing learnt about the mapping.
        let silent = Observations {
            mapping_port: NoResponse,
            ..one_ip(EndpointIndependent, EndpointIndependent)
        };
        let v = classify(&silent);
        assert_eq!(v.mapping_possible, Behaviour::ALL);
        assert_eq!(possible_text(&v.mapping_possible), "not determined");
        assert!(!v.force_turn);
    }

    #[test]
    fn multi_server_table() {
        let s1 = a("192.0.2.1:3478");
        let s1b = a("192.0.2.1:3479");
        let s2 = a("192.0.2.2:3478");
        let m = |p: u16| Got(SocketAddr::new("203.0.113.254".parse().unwrap(), p));
        // (observations, NAT type, mapping, force TURN)
        type Row = (
            Vec<(SocketAddr, Outcome<SocketAddr>)>,
            NatType,
            Option<Behaviour>,
            bool,
        );
        let cases: Vec<Row> = vec![
            (
                vec![(s1, m(1)), (s2, m(1))],
                NatType::Unknown,
                Some(EndpointIndependent),
                false,
            ),
            (vec![(s1, m(1)), (s2, m(2))], NatType::Symmetric, None, true),
            (
                vec![(s1, m(1)), (s1b, m(2)), (s2, m(3))],
                NatType::Symmetric,
                Some(AddressAndPortDependent),
                true,
            ),
            (
                vec![(s1, m(1)), (s1b, m(1)), (s2, m(3))],
                NatType::Symmetric,
                Some(AddressDependent),
                true,
            ),
            (
                vec![(s1, m(1)), (s2, NoResponse)],
                NatType::Unknown,
                None,
                false,
            ),
            // Two ports of one IP that saw the same mapping: EI or AD, not decided.
            (vec![(s1, m(1)), (s1b, m(1))], NatType::Unknown, None, false),
            // One server unreachable does not stop the verdict from the others.
            (
                vec![(s1, m(1)), (s2, NoResponse), (s1b, m(2))],
                NatType::Symmetric,
                Some(AddressAndPortDependent),
                true,
            ),
            (
                vec![(s1, NoResponse), (s2, NoResponse)],
                NatType::UdpBlocked,
                None,
                true,
            ),
        ];
        for (mappings, nat, mapping, force) in cases {
            let v = classify_multi(&MultiObservations {
                local: a(LOCAL),
                mappings: mappings.clone(),
            });
            assert_eq!(
                (v.nat_type, v.mapping, v.force_turn, v.filtering),
                (nat, mapping, force, None),
                "{mappings:?}"
            );
        }
    }
}
