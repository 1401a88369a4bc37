//! Which peers the relay agrees to send to (CVE-2020-26262 class protection).
//!
//! A TURN relay sends datagrams wherever an authenticated client asks. Without a policy, any
//! holder of a credential can reach services that trust the relay's network position: its own
//! loopback, the cloud metadata service at 169.254.169.254, multicast groups. [`PeerPolicy::decide`]
//! is consulted for every CreatePermission, ChannelBind and Send indication.
//!
//! The decision, in order:
//! 1. A relayed address of this relay (its relay IP with a port in the relay range) is always
//!    allowed, so two peers that are both behind TURN on this server can talk.
//! 2. The operator's `allow` and `deny` CIDR lists: the longest matching prefix wins, and `deny`
//!    wins a tie.
//! 3. Any other port on one of the relay's own addresses is denied (`self`): the relay must not
//!    become a proxy to its own signaling, metrics or SSH ports through its public address.
//! 4. Built-in denials: unspecified (0.0.0.0/8, ::), loopback (127.0.0.0/8, ::1), link-local
//!    (169.254.0.0/16 including cloud metadata, fe80::/10), multicast (224.0.0.0/4, ff00::/8)
//!    and broadcast (255.255.255.255).
//! 5. Everything else is allowed, private ranges included (deny them with `deny_peer`, e.g.
//!    `10.0.0.0/8`, on a relay whose private network must stay out of reach).
//!
//! IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`) are judged as the IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;

use ipnet::IpNet;

/// Why a peer was refused. Also the `reason` label of `natkit_relay_peer_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    Unspecified,
    Loopback,
    LinkLocal,
    Multicast,
    Broadcast,
    /// A non-relay port on one of the relay's own addresses.
    OwnAddress,
    /// Matched an operator `deny_peer` CIDR.
    Configured,
}

impl DenyReason {
    pub const ALL: [DenyReason; 7] = [
        DenyReason::Unspecified,
        DenyReason::Loopback,
        DenyReason::LinkLocal,
        DenyReason::Multicast,
        DenyReason::Broadcast,
        DenyReason::OwnAddress,
        DenyReason::Configured,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Unspecified => "unspecified",
            DenyReason::Loopback => "loopback",
            DenyReason::LinkLocal => "link_local",
            DenyReason::Multicast => "multicast",
            DenyReason::Broadcast => "broadcast",
            DenyReason::OwnAddress => "self",
            DenyReason::Configured => "configured",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

/// The relay's peer policy. Built once from configuration; `decide` is pure.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// Addresses that are this relay: listen, alternate, public and relay IPs.
    own_ips: Vec<IpAddr>,
    relay_ports: RangeInclusive<u16>,
}

impl PeerPolicy {
    pub fn new(
        allow: Vec<IpNet>,
        deny: Vec<IpNet>,
        own_ips: Vec<IpAddr>,
        relay_ports: RangeInclusive<u16>,
    ) -> Self {
        let own_ips = own_ips
            .into_iter()
            .map(canonical)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        PeerPolicy {
            allow,
            deny,
            own_ips,
            relay_ports,
        }
    }

    pub fn decide(&self, peer: SocketAddr) -> Decision {
        let ip = canonical(peer.ip());
        let own = self.own_ips.contains(&ip);
        if own && self.relay_ports.contains(&peer.port()) {
            return Decision::Allow;
        }
        let best = |nets: &[IpNet]| {
            nets.iter()
                .filter(|n| n.contains(&ip))
                .map(|n| n.prefix_len())
                .max()
        };
        match (best(&self.allow), best(&self.deny)) {
            (Some(a), Some(d)) if a > d => return Decision::Allow,
            (_, Some(_)) => return Decision::Deny(DenyReason::Configured),
            (Some(_), None) => return Decision::Allow,
            (None, None) => {}
        }
        if own {
            return Decision::Deny(DenyReason::OwnAddress);
        }
        match builtin_denial(ip) {
            Some(reason) => Decision::Deny(reason),
            None => Decision::Allow,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn builtin_denial(ip: IpAddr) -> Option<DenyReason> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.octets()[0] == 0 {
                Some(DenyReason::Unspecified)
            } else if v4.is_loopback() {
                Some(DenyReason::Loopback)
            } else if v4.is_link_local() {
                Some(DenyReason::LinkLocal)
            } else if v4.is_multicast() {
                Some(DenyReason::Multicast)
            } else if v4 == Ipv4Addr::BROADCAST {
                Some(DenyReason::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some(DenyReason::Unspecified)
            } else if v6.is_loopback() {
                Some(DenyReason::Loopback)
            } else if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                Some(DenyReason::LinkLocal)
            } else if v6.is_multicast() {
                Some(DenyReason::Multicast)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use DenyReason::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn default_policy_table() {
        let p = PeerPolicy::new(
            vec![],
            vec![],
            vec!["203.0.113.10".parse().unwrap(), "0.0.0.0".parse().unwrap()],
            49152..=65535,
        );
        let cases = [
            ("198.51.100.7:5000", Allow),
            ("10.1.2.3:5000", Allow),
            ("192.168.1.1:5000", Allow),
            ("100.64.0.1:5000", Allow),
            ("127.0.0.1:5000", Deny(Loopback)),
            ("127.9.9.9:5000", Deny(Loopback)),
            ("0.0.0.0:5000", Deny(Unspecified)),
            ("0.1.2.3:5000", Deny(Unspecified)),
            ("169.254.169.254:80", Deny(LinkLocal)),
            ("224.0.0.251:5353", Deny(Multicast)),
            ("239.255.255.250:1900", Deny(Multicast)),
            ("255.255.255.255:9", Deny(Broadcast)),
            ("[::1]:5000", Deny(Loopback)),
            ("[::]:5000", Deny(Unspecified)),
            ("[fe80::1]:5000", Deny(LinkLocal)),
            ("[ff02::1]:5000", Deny(Multicast)),
            ("[::ffff:127.0.0.1]:5000", Deny(Loopback)),
            ("[::ffff:169.254.169.254]:80", Deny(LinkLocal)),
            ("[2001:db8::1]:5000", Allow),
            // the relay's own relayed addresses always work, other own ports never
            ("203.0.113.10:50000", Allow),
            ("203.0.113.10:49152", Allow),
            ("203.0.113.10:65535", Allow),
            ("203.0.113.10:3478", Deny(OwnAddress)),
            ("203.0.113.10:22", Deny(OwnAddress)),
            ("[::ffff:203.0.113.10]:9641", Deny(OwnAddress)),
        ];
        for (peer, want) in cases {
            assert_eq!(p.decide(peer.parse().unwrap()), want, "{peer}");
        }
    }

    #[test]
    fn operator_lists_longest_prefix_wins() {
        let p = PeerPolicy::new(
            nets(&["127.0.0.1/32", "10.0.0.0/8", "10.9.0.0/16"]),
            nets(&["10.0.0.0/8", "10.9.9.0/24", "192.168.0.0/16"]),
            vec!["127.0.0.1".parse().unwrap()],
            50000..=50010,
        );
        let cases = [
            // allow-listed loopback peer (tests, single-host setups)
            ("127.0.0.1:7000", Allow),
            ("127.0.0.1:50005", Allow),
            ("127.0.0.2:7000", Deny(Loopback)),
            // tie at /8: deny wins
            ("10.1.1.1:1", Deny(Configured)),
            // more specific allow beats the /8 deny
            ("10.9.1.1:1", Allow),
            // more specific deny beats the /16 allow
            ("10.9.9.9:1", Deny(Configured)),
            ("192.168.7.7:1", Deny(Configured)),
            ("198.51.100.1:1", Allow),
        ];
        for (peer, want) in cases {
            assert_eq!(p.decide(peer.parse().unwrap()), want, "{peer}");
        }
    }

    #[test]
    fn allow_list_opens_builtin_denials() {
        let p = PeerPolicy::new(nets(&["127.0.0.0/8"]), vec![], vec![], 1..=2);
        assert_eq!(p.decide("127.0.0.1:9".parse().unwrap()), Allow);
        assert_eq!(
            p.decide("169.254.169.254:80".parse().unwrap()),
            Deny(LinkLocal)
        );
    }
}
