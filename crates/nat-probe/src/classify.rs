//! NAT classification: a pure function from what the probe observed to a verdict.
//!
//! Mapping and filtering are named as in RFC 4787 (endpoint-independent, address-dependent,
//! address-and-port-dependent) and found with RFC 5780's tests (section 4.3: mapping tests I, II,
//! III; section 4.4: filtering tests II and III). A test that could not run leaves its behaviour
//! `None`: "not tested" is never reported as a behaviour.

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
    pub mapping: Option<Behaviour>,
    pub filtering: Option<Behaviour>,
    /// `Some(true)` when the mapped address equals the local address.
    pub no_nat: Option<bool>,
    pub force_turn: bool,
    pub reason: String,
}

fn mapping_behaviour(o: &Observations, m1: SocketAddr) -> Option<Behaviour> {
    if m1 == o.local {
        // No translation at all: trivially independent of the endpoint.
        return Some(Behaviour::EndpointIndependent);
    }
    let m2 = *o.mapping2.got()?;
    if m2 == m1 {
        return Some(Behaviour::EndpointIndependent);
    }
    let m3 = *o.mapping3.got()?;
    Some(if m3 == m2 {
        Behaviour::AddressDependent
    } else {
        Behaviour::AddressAndPortDependent
    })
}

fn filtering_behaviour(o: &Observations) -> Option<Behaviour> {
    match (&o.filtering2, &o.filtering3) {
        (Outcome::Got(()), _) => Some(Behaviour::EndpointIndependent),
        (Outcome::NoResponse, Outcome::Got(())) => Some(Behaviour::AddressDependent),
        (Outcome::NoResponse, Outcome::NoResponse) => Some(Behaviour::AddressAndPortDependent),
        // Without the change-IP test (one-IP server), a blocked change-port answer still proves
        // address-and-port-dependent filtering; an answered one cannot tell EI from AD.
        (Outcome::NotRun(_), Outcome::NoResponse) => Some(Behaviour::AddressAndPortDependent),
        _ => None,
    }
}

fn nat_type(no_nat: bool, mapping: Option<Behaviour>, filtering: Option<Behaviour>) -> NatType {
    use Behaviour::*;
    if no_nat {
        return match filtering {
            Some(EndpointIndependent) => NatType::OpenInternet,
            Some(_) => NatType::SymmetricUdpFirewall,
            None => NatType::Unknown,
        };
    }
    match (mapping, filtering) {
        (Some(AddressDependent | AddressAndPortDependent), _) => NatType::Symmetric,
        (Some(EndpointIndependent), Some(EndpointIndependent)) => NatType::FullCone,
        (Some(EndpointIndependent), Some(AddressDependent)) => NatType::RestrictedCone,
        (Some(EndpointIndependent), Some(AddressAndPortDependent)) => NatType::PortRestrictedCone,
        _ => NatType::Unknown,
    }
}

fn decide(nat: NatType, mapping: Option<Behaviour>, blocked: bool) -> (bool, String) {
    use Behaviour::*;
    if nat == NatType::Unknown && mapping == Some(EndpointIndependent) {
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
        Some(m @ (AddressDependent | AddressAndPortDependent)) => (
            true,
            format!(
                "mapping is {}: the address peers learn from STUN does not work for them, relay through TURN",
                m.as_str()
            ),
        ),
        Some(EndpointIndependent) => (
            false,
            match nat {
                NatType::OpenInternet => "no NAT and no filtering: peers can connect directly".into(),
                NatType::SymmetricUdpFirewall => {
                    "no NAT but a stateful firewall: direct connections work when both sides send (ICE does)".into()
                }
                _ => "mapping is endpoint-independent: hole punching works, TURN is only a fallback".into(),
            },
        ),
        None => (
            false,
            "mapping behaviour not determined: TURN not forced, keep it as an ICE fallback".into(),
        ),
    }
}

/// The verdict when no mapping was seen: UDP blocked if nothing answered at all, else unknown.
fn unanswered(blocked: bool, why: &str) -> Verdict {
    let (nat_type, (force_turn, reason)) = if blocked {
        (NatType::UdpBlocked, decide(NatType::UdpBlocked, None, true))
    } else {
        (NatType::Unknown, (false, why.to_owned()))
    };
    Verdict {
        nat_type,
        mapping: None,
        filtering: None,
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
    let mapping = mapping_behaviour(o, m1);
    let filtering = filtering_behaviour(o);
    let nat = nat_type(no_nat, mapping, filtering);
    let (force_turn, reason) = decide(nat, mapping, false);
    Verdict {
        nat_type: nat,
        mapping,
        filtering,
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
    let all_same = seen.iter().all(|(_, m)| *m == seen[0].1);
    let mapping = if no_nat || (all_same && seen.len() >= 2) {
        Some(Behaviour::EndpointIndependent)
    } else if all_same {
        None // one answer cannot show how the mapping varies
    } else {
        // Differing mappings. Two servers on one IP with different ports that saw different
        // mappings prove port dependence; otherwise AD and APD cannot be told apart.
        let port_dependent = seen.iter().any(|(s1, m1)| {
            seen.iter()
                .any(|(s2, m2)| s1.ip() == s2.ip() && s1.port() != s2.port() && m1 != m2)
        });
        let ip_only = seen.iter().all(|(s1, m1)| {
            seen.iter()
                .filter(|(s2, _)| s1.ip() == s2.ip())
                .all(|(_, m2)| m1 == m2)
        }) && seen
            .iter()
            .any(|(s1, _)| seen.iter().any(|(s2, _)| s1.ip() == s2.ip() && s1 != s2));
        if port_dependent {
            Some(Behaviour::AddressAndPortDependent)
        } else if ip_only {
            Some(Behaviour::AddressDependent)
        } else {
            None
        }
    };
    let varies = !all_same;
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
        decide(nat, mapping, false)
    };
    Verdict {
        nat_type: nat,
        mapping,
        filtering: None,
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

        // Mapping test III lost: symmetric or not cannot be split into AD/APD, so mapping is None.
        let v = classify(&obs(
            Got(a("203.0.113.254:50001")),
            NoResponse,
            Got(()),
            NotRun("x".into()),
        ));
        assert_eq!((v.mapping, v.force_turn), (None, false));
    }

    #[test]
    fn multi_server_table() {
        let s1 = a("192.0.2.1:3478");
        let s1b = a("192.0.2.1:3479");
        let s2 = a("192.0.2.2:3478");
        let m = |p: u16| Got(SocketAddr::new("203.0.113.254".parse().unwrap(), p));
        let cases: Vec<(
            Vec<(SocketAddr, Outcome<SocketAddr>)>,
            NatType,
            Option<Behaviour>,
            bool,
        )> = vec![
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
