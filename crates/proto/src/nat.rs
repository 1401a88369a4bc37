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

/// One side's NAT: the mapping and filtering behaviours its probe left possible, and whether UDP
/// got out at all. An empty list means nothing is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatSummary {
    #[serde(default)]
    pub mapping: Vec<NatBehaviour>,
    #[serde(default)]
    pub filtering: Vec<NatBehaviour>,
    #[serde(default)]
    pub udp_blocked: bool,
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
