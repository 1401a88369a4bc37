//! Whether to force relay-only ICE: a pure decision from the `--relay` mode and the probe report.

use natkit_nat_probe::NatReport;

/// The `--relay` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayMode {
    /// Probe the NAT and relay only when the report says `force_turn`.
    Auto,
    /// Always `iceTransportPolicy: relay`.
    Always,
    /// Never relay: TURN servers are left out, only direct paths are tried.
    Never,
}

/// The ICE transport policy chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub relay_only: bool,
    pub reason: String,
}

/// `report` is `None` in `auto` mode when the probe could not run (no STUN URL, or an error).
pub fn decide(mode: RelayMode, report: Option<&NatReport>) -> Policy {
    match (mode, report) {
        (RelayMode::Always, _) => Policy {
            relay_only: true,
            reason: "--relay always".into(),
        },
        (RelayMode::Never, _) => Policy {
            relay_only: false,
            reason: "--relay never".into(),
        },
        (RelayMode::Auto, Some(r)) if r.force_turn => Policy {
            relay_only: true,
            reason: format!("nat-probe: {} NAT: {}", r.nat_type.as_str(), r.reason),
        },
        (RelayMode::Auto, Some(r)) => Policy {
            relay_only: false,
            reason: format!("nat-probe: {} NAT: {}", r.nat_type.as_str(), r.reason),
        },
        (RelayMode::Auto, None) => Policy {
            relay_only: false,
            reason: "no probe result: all candidates, TURN as ICE fallback".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natkit_nat_probe::classify::NatType;

    fn report(nat: NatType, force: bool) -> NatReport {
        NatReport {
            nat_type: nat,
            mapping: None,
            filtering: None,
            local_address: "198.51.100.10:1".parse().unwrap(),
            mapped_address: None,
            port_preserved: None,
            force_turn: force,
            reason: "r".into(),
            elapsed_ms: 1,
            servers: vec![],
            other_address: None,
            hairpinning: None,
            mapping_lifetime_s: None,
            tests: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn policy_table() {
        let sym = report(NatType::Symmetric, true);
        let cone = report(NatType::PortRestrictedCone, false);
        let blocked = report(NatType::UdpBlocked, true);
        let cases: [(RelayMode, Option<&NatReport>, bool); 8] = [
            (RelayMode::Auto, Some(&sym), true),
            (RelayMode::Auto, Some(&blocked), true),
            (RelayMode::Auto, Some(&cone), false),
            (RelayMode::Auto, None, false),
            (RelayMode::Always, Some(&cone), true),
            (RelayMode::Always, None, true),
            (RelayMode::Never, Some(&sym), false),
            (RelayMode::Never, None, false),
        ];
        for (mode, r, want) in cases {
            let p = decide(mode, r);
            assert_eq!(p.relay_only, want, "{mode:?} {:?}", r.map(|r| r.nat_type));
            assert!(!p.reason.is_empty());
        }
        assert!(decide(RelayMode::Auto, Some(&sym))
            .reason
            .contains("symmetric"));
    }
}
