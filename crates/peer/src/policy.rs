//! Whether to force relay-only ICE: a pure decision from the `--relay` mode and the probe report.

use natkit_nat_probe::NatReport;
use natkit_proto::ice::is_turn_url;
use natkit_proto::IceServer;

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

/// The ICE servers a session uses: all of them, except that `never` leaves every TURN URL out
/// (with TURN URLs, ICE would still fall back to relay pairs). Entries left with no URL go.
pub fn usable_servers(servers: &[IceServer], mode: RelayMode) -> Vec<IceServer> {
    let mut servers = servers.to_vec();
    if mode == RelayMode::Never {
        for s in &mut servers {
            s.urls.retain(|u| !is_turn_url(u));
        }
        servers.retain(|s| !s.urls.is_empty());
    }
    servers
}

/// The STUN server to probe: the first `stun:HOST[:PORT]` URL.
pub fn stun_target(servers: &[IceServer]) -> Option<String> {
    servers.iter().find_map(IceServer::stun_target)
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
            mapping_possible: vec![],
            filtering_possible: vec![],
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
    fn usable_servers_table() {
        let relay = IceServer::for_relay("203.0.113.1", 3478, "1:a".into(), "p".into());
        let turn_only = IceServer {
            urls: vec!["turns:relay.example:5349?transport=tcp".into()],
            username: Some("1:a".into()),
            credential: Some("p".into()),
        };
        let all = vec![relay.clone(), turn_only];
        for mode in [RelayMode::Auto, RelayMode::Always] {
            assert_eq!(usable_servers(&all, mode), all, "{mode:?}");
        }
        let never = usable_servers(&all, RelayMode::Never);
        assert_eq!(never.len(), 1, "the TURN-only entry goes");
        assert_eq!(never[0].urls, ["stun:203.0.113.1:3478"]);
        assert_eq!(stun_target(&all).as_deref(), Some("203.0.113.1:3478"));
        assert_eq!(stun_target(&all[1..]), None);
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
