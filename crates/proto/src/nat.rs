//! The NAT summary peers send each other (`nat-summary`): what each side's probe found, in
//! RFC 4787 terms, so that both can decide whether the pair needs a relay. It says nothing ICE
//! does not reveal anyway (no addresses).

use serde::{Deserialize, Serialize};

/// An RFC 4787 behaviour, as nat-probe spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatBehaviour {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
    /// A behaviour this side does not know (from a newer peer); it rules nothing out.
    #[serde(other)]
    Other,
}

/// An IP address family a peer can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
    /// A family this side does not know (from a newer peer).
    #[serde(other)]
    Other,
}

impl AddressFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Ipv4 => "ipv4",
            AddressFamily::Ipv6 => "ipv6",
            AddressFamily::Other => "other",
        }
    }
}

/// One side's NAT: the mapping and filtering behaviours its probe left possible, whether UDP
/// got out at all, and the address families it can reach the internet in. An empty list means
/// nothing is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatSummary {
    #[serde(default)]
    pub mapping: Vec<NatBehaviour>,
    #[serde(default)]
    pub filtering: Vec<NatBehaviour>,
    #[serde(default)]
    pub udp_blocked: bool,
    /// `ipv4`, `ipv6` or both: two peers with no family in common can meet only through a relay
    /// that holds both (RFC 8656 dual allocation). Empty: not known (older peers, browsers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<AddressFamily>,
    /// A dual-stack side's IPv6 behaviours, when it probed IPv6 too (the fields above are its
    /// IPv4's): a pair whose IPv4 needs a relay may still connect directly over IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Box<NatSummary>>,
}

impl NatSummary {
    /// The mapping is known to depend on the destination (a symmetric NAT): endpoint-independent
    /// mapping is ruled out.
    pub fn symmetric(&self) -> bool {
        known_dependent(&self.mapping)
    }

    /// Filtering is known to be address- or address-and-port-dependent (a restricted cone or
    /// stricter): endpoint-independent filtering is ruled out.
    pub fn restricted_filtering(&self) -> bool {
        known_dependent(&self.filtering)
    }

    /// Both sides name their families and none is in both (an unknown family counts as shared:
    /// it may be the other's).
    pub fn no_common_family(&self, other: &NatSummary) -> bool {
        let known =
            |s: &NatSummary| !s.families.is_empty() && !s.families.contains(&AddressFamily::Other);
        known(self) && known(other) && !self.families.iter().any(|f| other.families.contains(f))
    }

    /// The side's IPv6 behaviours: its `ipv6` summary, or the summary itself when IPv6 is its
    /// only family; `None` when it has no IPv6 (or did not say).
    pub fn ipv6_view(&self) -> Option<&NatSummary> {
        match (&self.ipv6, self.families.as_slice()) {
            (Some(v6), _) => Some(v6),
            (None, [AddressFamily::Ipv6]) => Some(self),
            _ => None,
        }
    }

    /// The families as the pair rule's reasons say them: `ipv4,ipv6`, or `unknown`.
    pub fn families_text(&self) -> String {
        if self.families.is_empty() {
            return "unknown".into();
        }
        self.families
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The short form for logs and events: `mapping=...;filtering=...` or `udp-blocked`.
    pub fn describe(&self) -> String {
        if self.udp_blocked {
            return "udp-blocked".into();
        }
        let list = |l: &[NatBehaviour]| {
            if l.is_empty() {
                "unknown".to_owned()
            } else {
                l.iter()
                    .map(|b| match b {
                        NatBehaviour::EndpointIndependent => "EI",
                        NatBehaviour::AddressDependent => "AD",
                        NatBehaviour::AddressAndPortDependent => "APD",
                        NatBehaviour::Other => "?",
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            }
        };
        format!(
            "mapping {} filtering {}",
            list(&self.mapping),
            list(&self.filtering)
        )
    }
}

fn known_dependent(possible: &[NatBehaviour]) -> bool {
    !possible.is_empty()
        && possible.iter().all(|b| {
            matches!(
                b,
                NatBehaviour::AddressDependent | NatBehaviour::AddressAndPortDependent
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use NatBehaviour::*;

    #[test]
    fn what_a_summary_proves() {
        let s = |m: &[NatBehaviour], f: &[NatBehaviour]| NatSummary {
            mapping: m.to_vec(),
            filtering: f.to_vec(),
            udp_blocked: false,
            families: vec![],
            ipv6: None,
        };
        for (summary, symmetric, restricted) in [
            (
                s(&[AddressAndPortDependent], &[AddressAndPortDependent]),
                true,
                true,
            ),
            (
                s(&[AddressDependent, AddressAndPortDependent], &[]),
                true,
                false,
            ),
            (
                s(
                    &[EndpointIndependent, AddressDependent],
                    &[EndpointIndependent, AddressDependent],
                ),
                false,
                false,
            ),
            (s(&[EndpointIndependent], &[AddressDependent]), false, true),
            (s(&[], &[]), false, false),
            (s(&[Other], &[Other]), false, false),
        ] {
            assert_eq!(summary.symmetric(), symmetric, "{summary:?}");
            assert_eq!(summary.restricted_filtering(), restricted, "{summary:?}");
        }
        assert_eq!(
            s(
                &[EndpointIndependent, AddressDependent],
                &[AddressAndPortDependent]
            )
            .describe(),
            "mapping EI|AD filtering APD"
        );
    }

    #[test]
    fn a_newer_peers_summary_is_read_tolerantly() {
        let s: NatSummary = serde_json::from_str(
            r#"{"mapping":["endpoint-independent","port-restricted-v2"],"hairpin":true}"#,
        )
        .unwrap();
        assert_eq!(s.mapping, [EndpointIndependent, Other]);
        assert!(s.filtering.is_empty() && !s.udp_blocked);
    }
}
