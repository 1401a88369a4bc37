//! Which peers the relay agrees to send to (CVE-2020-26262 class protection).
//!
//! A TURN relay sends datagrams wherever an authenticated client asks. Without a policy, any
//! holder of a credential can reach services that trust the relay's network position: its own
//! loopback, the cloud metadata service at 169.254.169.254, multicast groups, the private network
//! of the VM it runs on, or the relay itself (a TURN loop). [`PeerPolicy::decide`] is consulted
//! for every CreatePermission, ChannelBind and Send indication.
//!
//! The decision, in order (docs/relay.md has the same table):
//! 1. A relayed address this relay really allocated (a live allocation's) is allowed, so two
//!    peers that are both behind TURN on this server can talk.
//! 2. The relay's own sockets are denied whatever the allow list says (`self`): its STUN/TURN
//!    listener and RFC 5780 ports and its metrics port on any of its addresses, and every port of
//!    its alternate IP (where it never allocates). The relay's addresses are its listen, public
//!    and relay IPs, and every local address when it listens on a wildcard.
//! 3. The operator's `allow` and `deny` CIDR lists: the longest matching prefix wins, and `deny`
//!    wins a tie. An allow list can open a built-in or private range, never rule 2.
//! 4. Any other port on one of the relay's own addresses is denied (`self`), relay-range ports
//!    that no allocation holds included (another program's ephemeral port, say).
//! 5. Built-in denials: unspecified (0.0.0.0/8, ::), loopback (127.0.0.0/8, ::1), link-local
//!    (169.254.0.0/16 including cloud metadata, fe80::/10), multicast (224.0.0.0/4, ff00::/8)
//!    and broadcast (255.255.255.255).
//! 6. Private ranges are denied (`private`): RFC 1918 (10/8, 172.16/12, 192.168/16), the shared
//!    address space 100.64/10 and unique-local fc00::/7. `allow_peer` reopens them.
//! 7. Everything else is allowed.
//!
//! IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`) and NAT64 peers of the well-known prefix
//! (`64:ff9b::/96`, RFC 6052) are judged as the IPv4 address they carry: through a NAT64
//! gateway `64:ff9b::10.0.0.1` is the private 10.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

/// Why a peer was refused. Also the `reason` label of `natkit_relay_peer_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    Unspecified,
    Loopback,
    LinkLocal,
    Multicast,
    Broadcast,
    /// One of the relay's own sockets or addresses.
    OwnAddress,
    /// Matched an operator `deny_peer` CIDR.
    Configured,
    /// A private range (RFC 1918, 100.64/10, fc00::/7) not reopened by `allow_peer`.
    Private,
}

impl DenyReason {
    pub const ALL: [DenyReason; 8] = [
        DenyReason::Unspecified,
        DenyReason::Loopback,
        DenyReason::LinkLocal,
        DenyReason::Multicast,
        DenyReason::Broadcast,
        DenyReason::OwnAddress,
        DenyReason::Configured,
        DenyReason::Private,
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
            DenyReason::Private => "private",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

/// What the relay is: the addresses and ports a peer must never be.
#[derive(Debug, Clone, Default)]
pub struct OwnSockets {
    /// Listen, public and relay IPs.
    pub ips: Vec<IpAddr>,
    /// Every local address (and local range, like 127.0.0.0/8) for a wildcard listener.
    pub nets: Vec<IpNet>,
    /// The alternate IP: none of its ports is a peer.
    pub alt_ips: Vec<IpAddr>,
    /// The listener, RFC 5780 and metrics ports.
    pub ports: Vec<u16>,
}

/// The relay's peer policy. Built once from configuration; `decide` is pure.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    own: OwnSockets,
}

impl PeerPolicy {
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>, own: OwnSockets) -> Self {
        let clean = |ips: Vec<IpAddr>| -> Vec<IpAddr> {
            ips.into_iter()
                .map(canonical)
                .filter(|ip| !ip.is_unspecified())
                .collect()
        };
        PeerPolicy {
            allow,
            deny,
            own: OwnSockets {
                ips: clean(own.ips),
                nets: own.nets,
                alt_ips: clean(own.alt_ips),
                ports: own.ports,
            },
        }
    }

    /// `allocated`: the peer is the relayed address of a live allocation of this relay.
    pub fn decide(&self, peer: SocketAddr, allocated: bool) -> Decision {
        let ip = canonical(peer.ip());
        if allocated {
            return Decision::Allow;
        }
        let own = self.own.ips.contains(&ip) || self.own.nets.iter().any(|n| n.contains(&ip));
        if self.own.alt_ips.contains(&ip) || (own && self.own.ports.contains(&peer.port())) {
            return Decision::Deny(DenyReason::OwnAddress);
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

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), or a NAT64 one of the well-known prefix
/// (`64:ff9b::a.b.c.d`, RFC 6052: a NAT64 gateway forwards it to that IPv4 address), as the
/// IPv4 address it carries; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

fn builtin_denial(ip: IpAddr) -> Option<DenyReason> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if a == 0 {
                Some(DenyReason::Unspecified)
            } else if v4.is_loopback() {
                Some(DenyReason::Loopback)
            } else if v4.is_link_local() {
                Some(DenyReason::LinkLocal)
            } else if v4.is_multicast() {
                Some(DenyReason::Multicast)
            } else if v4 == Ipv4Addr::BROADCAST {
                Some(DenyReason::Broadcast)
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some(DenyReason::Private)
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
            } else if (v6.segments()[0] & 0xfe00) == 0xfc00 {
                Some(DenyReason::Private)
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

    fn own(ips: &[&str], alt: &[&str], ports: &[u16]) -> OwnSockets {
        OwnSockets {
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            nets: vec![],
            alt_ips: alt.iter().map(|s| s.parse().unwrap()).collect(),
            ports: ports.to_vec(),
        }
    }

    #[test]
    fn default_policy_table() {
        let p = PeerPolicy::new(
            vec![],
            vec![],
            own(
                &["203.0.113.10", "0.0.0.0", "2001:db8::10"],
                &["203.0.113.11"],
                &[3478, 3479, 9641],
            ),
        );
        let cases = [
            ("198.51.100.7:5000", false, Allow),
            // Private ranges are denied by default (a relay on a VM must not reach its VPC).
            ("10.1.2.3:5000", false, Deny(Private)),
            ("172.16.0.1:5000", false, Deny(Private)),
            ("172.31.255.255:5000", false, Deny(Private)),
            ("172.32.0.1:5000", false, Allow),
            ("192.168.1.1:5000", false, Deny(Private)),
            ("100.64.0.1:5000", false, Deny(Private)),
            ("100.127.255.255:5000", false, Deny(Private)),
            ("100.128.0.1:5000", false, Allow),
            ("[fd00::1]:5000", false, Deny(Private)),
            ("[fc00::1]:5000", false, Deny(Private)),
            ("127.0.0.1:5000", false, Deny(Loopback)),
            ("127.9.9.9:5000", false, Deny(Loopback)),
            ("0.0.0.0:5000", false, Deny(Unspecified)),
            ("0.1.2.3:5000", false, Deny(Unspecified)),
            ("169.254.169.254:80", false, Deny(LinkLocal)),
            ("224.0.0.251:5353", false, Deny(Multicast)),
            ("239.255.255.250:1900", false, Deny(Multicast)),
            ("255.255.255.255:9", false, Deny(Broadcast)),
            ("[::1]:5000", false, Deny(Loopback)),
            ("[::]:5000", false, Deny(Unspecified)),
            ("[fe80::1]:5000", false, Deny(LinkLocal)),
            ("[ff02::1]:5000", false, Deny(Multicast)),
            ("[::ffff:127.0.0.1]:5000", false, Deny(Loopback)),
            ("[::ffff:169.254.169.254]:80", false, Deny(LinkLocal)),
            ("[2001:db8::1]:5000", false, Allow),
            // NAT64 (64:ff9b::/96): the IPv4 address it reaches decides.
            ("[64:ff9b::7f00:1]:5000", false, Deny(Loopback)),
            ("[64:ff9b::a00:1]:5000", false, Deny(Private)),
            ("[64:ff9b::a9fe:a9fe]:80", false, Deny(LinkLocal)),
            ("[64:ff9b::cb00:710a]:3478", false, Deny(OwnAddress)),
            ("[64:ff9b::c633:6407]:5000", false, Allow),
            // Only the well-known /96: another prefix is an ordinary IPv6 address.
            ("[64:ff9b:1::a00:1]:5000", false, Allow),
            // The relay's own IPv6 address, as for IPv4.
            ("[2001:db8::10]:3478", false, Deny(OwnAddress)),
            ("[2001:db8::10]:50000", false, Deny(OwnAddress)),
            ("[2001:db8::10]:50000", true, Allow),
            // The relay's relayed addresses work only when an allocation really holds them.
            ("203.0.113.10:50000", true, Allow),
            ("203.0.113.10:50000", false, Deny(OwnAddress)),
            ("203.0.113.10:3478", false, Deny(OwnAddress)),
            ("203.0.113.10:22", false, Deny(OwnAddress)),
            ("[::ffff:203.0.113.10]:9641", false, Deny(OwnAddress)),
            // The alternate IP: no port of it is a peer.
            ("203.0.113.11:50000", false, Deny(OwnAddress)),
            ("203.0.113.11:3478", false, Deny(OwnAddress)),
        ];
        for (peer, allocated, want) in cases {
            assert_eq!(p.decide(peer.parse().unwrap(), allocated), want, "{peer}");
        }
    }

    #[test]
    fn operator_lists_longest_prefix_wins() {
        let p = PeerPolicy::new(
            nets(&["127.0.0.1/32", "10.0.0.0/8", "10.9.0.0/16"]),
            nets(&["10.0.0.0/8", "10.9.9.0/24", "192.168.0.0/16"]),
            own(&["127.0.0.1"], &[], &[3478, 3479]),
        );
        let cases = [
            // allow-listed loopback peer (tests, single-host setups)
            ("127.0.0.1:7000", Allow),
            ("127.0.0.1:50005", Allow),
            ("127.0.0.2:7000", Deny(Loopback)),
            // ...but never the relay's own sockets, whatever the allow list says
            ("127.0.0.1:3478", Deny(OwnAddress)),
            ("127.0.0.1:3479", Deny(OwnAddress)),
            // tie at /8: deny wins
            ("10.1.1.1:1", Deny(Configured)),
            // more specific allow beats the /8 deny (and reopens the private range)
            ("10.9.1.1:1", Allow),
            // more specific deny beats the /16 allow
            ("10.9.9.9:1", Deny(Configured)),
            ("192.168.7.7:1", Deny(Configured)),
            ("198.51.100.1:1", Allow),
        ];
        for (peer, want) in cases {
            assert_eq!(p.decide(peer.parse().unwrap(), false), want, "{peer}");
        }
    }

    #[test]
    fn allow_list_opens_builtin_and_private_denials_but_not_the_relay() {
        let p = PeerPolicy::new(
            nets(&["127.0.0.0/8", "10.0.0.0/8"]),
            vec![],
            own(&["127.0.0.1"], &["127.0.0.2"], &[3478, 3479, 9641]),
        );
        assert_eq!(p.decide("127.0.0.1:9".parse().unwrap(), false), Allow);
        assert_eq!(p.decide("10.0.0.5:9".parse().unwrap(), false), Allow);
        assert_eq!(
            p.decide("127.0.0.1:3478".parse().unwrap(), false),
            Deny(OwnAddress),
            "--allow-peer 127.0.0.0/8 does not reopen the relay's own listener"
        );
        assert_eq!(
            p.decide("127.0.0.2:40000".parse().unwrap(), false),
            Deny(OwnAddress),
            "nor its alternate IP"
        );
        assert_eq!(
            p.decide("169.254.169.254:80".parse().unwrap(), false),
            Deny(LinkLocal)
        );
    }

    #[test]
    fn a_wildcard_listener_owns_every_local_address() {
        // What a relay on 0.0.0.0 sees of the host: 127.0.0.0/8 is local, as is 192.0.2.2.
        let p = PeerPolicy::new(
            nets(&["127.0.0.0/8"]),
            vec![],
            OwnSockets {
                ips: vec!["0.0.0.0".parse().unwrap()],
                nets: nets(&["127.0.0.0/8", "192.0.2.2/32"]),
                alt_ips: vec![],
                ports: vec![3478, 3479],
            },
        );
        for (peer, want) in [
            ("127.0.0.1:3478", Deny(OwnAddress)),
            ("127.0.0.2:3478", Deny(OwnAddress)),
            ("192.0.2.2:3479", Deny(OwnAddress)),
            ("192.0.2.2:5000", Deny(OwnAddress)),
            ("127.0.0.2:5000", Allow),
            ("192.0.2.3:5000", Allow),
        ] {
            assert_eq!(p.decide(peer.parse().unwrap(), false), want, "{peer}");
        }
    }
}
