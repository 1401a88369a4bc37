//! The state of one TURN allocation and the allocation quotas (RFC 8656 sections 7 to 12).
//!
//! No sockets and no clock: every method takes `now`. The server shell owns the relay socket and
//! asks this state whether a datagram may pass and how to frame it.

use rustc_hash::FxHashMap as HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// RFC 8656 section 3.2: allocations live 10 minutes unless refreshed.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The longest lifetime granted, as the RFC's recommended maximum (and coturn's default).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// RFC 8656 section 9: permissions last 5 minutes.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 section 12: channel bindings last 10 minutes.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

/// Channel numbers accepted. RFC 8656 narrowed the range to 0x4000..=0x4FFF; RFC 5766 clients
/// (and coturn) use up to 0x7FFF, so natkit accepts the older, wider range.
pub const CHANNEL_RANGE: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

/// The lifetime granted for a requested one (RFC 8656 sections 7.2 and 7.3): the request capped at
/// the server's maximum `max` ([`MAX_LIFETIME`] unless configured), raised to the default
/// lifetime, which is [`DEFAULT_LIFETIME`] or `max` if that is shorter. Zero means "delete" and is
/// handled by the caller for Refresh requests.
pub fn granted_lifetime(requested: Option<Duration>, max: Duration) -> Duration {
    let default = DEFAULT_LIFETIME.min(max);
    match requested {
        None => default,
        Some(d) => d.min(max).max(default),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    expires: Instant,
}

/// Permissions (peer IPs) one allocation may hold at once; more are refused with 508.
pub const MAX_PERMISSIONS: usize = 64;
/// Channel bindings one allocation may hold at once; more are refused with 508.
pub const MAX_CHANNELS: usize = 64;

/// An allocation holds as many permissions as it may ([`MAX_PERMISSIONS`]): 508.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the allocation holds {MAX_PERMISSIONS} permissions already")]
pub struct PermissionsFull;

/// Why a ChannelBind was refused (400 Bad Request, or 508 when the allocation is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelBindError {
    #[error("the allocation holds {MAX_CHANNELS} channel bindings already")]
    Full,
    #[error("channel number {0:#06x} is outside 0x4000..=0x7fff")]
    InvalidNumber(u16),
    #[error("channel {number:#06x} is bound to another peer")]
    NumberBoundElsewhere { number: u16 },
    #[error("peer {peer} is bound to channel {number:#06x}")]
    PeerBoundElsewhere { peer: SocketAddr, number: u16 },
}

/// Permissions, channel bindings and expiry of one allocation. They are looked up for every
/// relayed datagram and hold at most 64 entries each (most allocations have one or two), so they
/// are kept as short vectors searched in order: one or two cache lines where maps cost a hash and
/// a pointer chase per lookup (measured at 1000 allocations, docs/performance.md). A client
/// that fills its own 64 slots slows only its own lookups.
#[derive(Debug, Clone)]
pub struct AllocState {
    expires: Instant,
    permissions: Vec<(IpAddr, Instant)>,
    /// At most one entry per channel number and one per peer (a stale entry for a peer is removed
    /// when the peer is bound to another number).
    channels: Vec<Channel>,
}

impl AllocState {
    pub fn new(lifetime: Duration, now: Instant) -> Self {
        AllocState {
            expires: now + lifetime,
            permissions: Vec::new(),
            channels: Vec::new(),
        }
    }

    pub fn refresh(&mut self, lifetime: Duration, now: Instant) {
        self.expires = now + lifetime;
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires
    }

    /// Seconds left, for the LIFETIME attribute of a retransmitted Allocate response.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires.saturating_duration_since(now)
    }

    fn permission(&self, ip: &IpAddr) -> Option<usize> {
        self.permissions.iter().position(|(p, _)| p == ip)
    }

    fn channel(&self, number: u16) -> Option<&Channel> {
        self.channels.iter().find(|c| c.number == number)
    }

    /// Installs or refreshes a permission (RFC 8656 section 9: keyed by IP only).
    pub fn add_permission(&mut self, ip: IpAddr, now: Instant) -> Result<(), PermissionsFull> {
        self.add_permissions(&[ip], now)
    }

    /// Installs or refreshes permissions for every IP, or none of them when they would take the
    /// allocation past [`MAX_PERMISSIONS`].
    pub fn add_permissions(&mut self, ips: &[IpAddr], now: Instant) -> Result<(), PermissionsFull> {
        let new = |st: &Self| {
            let mut seen: Vec<&IpAddr> = ips
                .iter()
                .filter(|ip| st.permission(ip).is_none())
                .collect();
            seen.sort();
            seen.dedup();
            seen.len()
        };
        if self.permissions.len() + new(self) > MAX_PERMISSIONS {
            self.permissions.retain(|(_, exp)| now < *exp);
            if self.permissions.len() + new(self) > MAX_PERMISSIONS {
                return Err(PermissionsFull);
            }
        }
        for ip in ips {
            self.install_permission(*ip, now);
        }
        Ok(())
    }

    /// Sets `ip`'s permission to expire [`PERMISSION_LIFETIME`] from `now` (room checked).
    fn install_permission(&mut self, ip: IpAddr, now: Instant) {
        let expires = now + PERMISSION_LIFETIME;
        match self.permission(&ip) {
            Some(i) => self.permissions[i].1 = expires,
            None => self.permissions.push((ip, expires)),
        }
    }

    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions
            .iter()
            .any(|(p, exp)| *p == ip && now < *exp)
    }

    /// Binds or refreshes a channel; a binding also installs or refreshes the peer's permission.
    pub fn bind_channel(
        &mut self,
        number: u16,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<(), ChannelBindError> {
        if !CHANNEL_RANGE.contains(&number) {
            return Err(ChannelBindError::InvalidNumber(number));
        }
        if let Some(c) = self.channel(number) {
            if c.peer != peer && now < c.expires {
                return Err(ChannelBindError::NumberBoundElsewhere { number });
            }
        }
        if let Some(other) = self.channels.iter().find(|c| c.peer == peer) {
            if other.number != number && now < other.expires {
                return Err(ChannelBindError::PeerBoundElsewhere {
                    peer,
                    number: other.number,
                });
            }
        }
        if self.channel(number).is_none() && self.channels.len() >= MAX_CHANNELS {
            self.prune(now);
            if self.channels.len() >= MAX_CHANNELS {
                return Err(ChannelBindError::Full);
            }
        }
        // A binding installs the peer's permission; a full permission table refuses it too.
        if self.permission(&peer.ip()).is_none() && self.permissions.len() >= MAX_PERMISSIONS {
            self.permissions.retain(|(_, exp)| now < *exp);
            if self.permissions.len() >= MAX_PERMISSIONS {
                return Err(ChannelBindError::Full);
            }
        }
        // The peer's stale binding to another number goes; this number's entry is replaced.
        self.channels
            .retain(|c| c.number != number && c.peer != peer);
        self.channels.push(Channel {
            number,
            peer,
            expires: now + CHANNEL_LIFETIME,
        });
        self.install_permission(peer.ip(), now);
        Ok(())
    }

    /// The peer bound to `number`, if the binding is alive.
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channel(number)
            .filter(|c| now < c.expires)
            .map(|c| c.peer)
    }

    /// The channel bound to `peer`, if the binding is alive.
    pub fn peer_channel(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == peer)
            .filter(|c| now < c.expires)
            .map(|c| c.number)
    }

    /// The live channel bindings as the kernel path relays them (natkit-stun-turn's `kernel_path`): the
    /// same rules as [`AllocState::channel_peer`] (client to peer: the binding is alive) and the
    /// peers' path (peer to client: a permission too), each direction ending no later than the
    /// allocation. Nothing once the allocation has expired.
    pub fn kernel_bindings(&self, now: Instant) -> Vec<KernelBinding> {
        if self.is_expired(now) {
            return Vec::new();
        }
        self.channels
            .iter()
            .filter(|c| now < c.expires)
            .map(|c| {
                let to_peer_until = c.expires.min(self.expires);
                let permission = self
                    .permissions
                    .iter()
                    .find(|(ip, exp)| *ip == c.peer.ip() && now < *exp)
                    .map(|(_, exp)| (*exp).min(to_peer_until));
                KernelBinding {
                    channel: c.number,
                    peer: c.peer,
                    to_peer_until,
                    to_client_until: permission,
                }
            })
            .collect()
    }

    /// Drops the permissions and channel bindings of one family (`v6`: IPv6 peers, else IPv4),
    /// when a dual allocation's relayed address of that family closes.
    pub fn forget_family(&mut self, v6: bool) {
        self.permissions.retain(|(ip, _)| ip.is_ipv6() != v6);
        self.channels.retain(|c| c.peer.is_ipv6() != v6);
    }

    /// Drops expired permissions and channel bindings.
    pub fn prune(&mut self, now: Instant) {
        self.permissions.retain(|(_, exp)| now < *exp);
        self.channels.retain(|c| now < c.expires);
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        (self.permissions.len(), self.channels.len())
    }
}

/// One channel binding as the kernel path relays it ([`AllocState::kernel_bindings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelBinding {
    pub channel: u16,
    pub peer: SocketAddr,
    /// ChannelData from the client goes to the peer until then (the binding's and the
    /// allocation's end, whichever is first).
    pub to_peer_until: Instant,
    /// The peer's datagrams go to the client as ChannelData until then (its permission too);
    /// `None` without a live permission.
    pub to_client_until: Option<Instant>,
}

/// Which quota an Allocate hit (answered with 486 Allocation Quota Reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error("user already holds {limit} allocations")]
    User { limit: u32 },
    #[error("relay already holds {limit} allocations")]
    Total { limit: u32 },
}

/// Allocation counts per user and in total. A limit of 0 means unlimited.
#[derive(Debug, Clone, Default)]
pub struct Quotas {
    user_limit: u32,
    total_limit: u32,
    per_user: HashMap<String, u32>,
    total: u32,
}

impl Quotas {
    pub fn new(user_limit: u32, total_limit: u32) -> Self {
        Quotas {
            user_limit,
            total_limit,
            ..Default::default()
        }
    }

    /// Counts one more allocation for `user` (in its quota group, see
    /// [`crate::credentials::quota_key`]), or says which quota it would exceed.
    pub fn acquire(&mut self, user: &str) -> Result<(), QuotaExceeded> {
        let user = crate::credentials::quota_key(user);
        if self.total_limit != 0 && self.total >= self.total_limit {
            return Err(QuotaExceeded::Total {
                limit: self.total_limit,
            });
        }
        let held = self.per_user.get(user).copied().unwrap_or(0);
        if self.user_limit != 0 && held >= self.user_limit {
            return Err(QuotaExceeded::User {
                limit: self.user_limit,
            });
        }
        *self.per_user.entry(user.to_owned()).or_insert(0) += 1;
        self.total += 1;
        Ok(())
    }

    /// Returns an allocation of `user`. Users with none left are forgotten.
    pub fn release(&mut self, user: &str) {
        let user = crate::credentials::quota_key(user);
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn users(&self) -> usize {
        self.per_user.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn lifetime_table() {
        // (requested, configured maximum, granted)
        let cases = [
            (None, 3600, 600),
            (Some(0), 3600, 600),
            (Some(30), 3600, 600),
            (Some(600), 3600, 600),
            (Some(1200), 3600, 1200),
            (Some(3600), 3600, 3600),
            (Some(86400), 3600, 3600),
            // A maximum below the RFC's default lowers the default with it.
            (None, 20, 20),
            (Some(600), 20, 20),
            (Some(5), 20, 20),
            (Some(900), 7200, 900),
            (Some(9000), 7200, 7200),
        ];
        for (req, max, want) in cases {
            assert_eq!(
                granted_lifetime(req.map(secs), secs(max)),
                secs(want),
                "{req:?} max {max}"
            );
        }
    }

    #[test]
    fn expiry_and_refresh() {
        let t0 = Instant::now();
        let mut a = AllocState::new(secs(600), t0);
        assert!(!a.is_expired(t0 + secs(599)));
        assert!(a.is_expired(t0 + secs(600)));
        a.refresh(secs(600), t0 + secs(500));
        assert!(!a.is_expired(t0 + secs(1099)));
        assert_eq!(a.remaining(t0 + secs(1000)), secs(100));
    }

    #[test]
    fn permissions_are_per_ip_and_expire() {
        let t0 = Instant::now();
        let mut a = AllocState::new(secs(600), t0);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(!a.has_permission(ip, t0));
        a.add_permission(ip, t0).unwrap();
        assert!(a.has_permission(ip, t0 + secs(299)));
        assert!(!a.has_permission(ip, t0 + secs(300)));
        assert!(!a.has_permission("198.51.100.2".parse().unwrap(), t0));
        a.add_permission(ip, t0 + secs(200)).unwrap();
        assert!(a.has_permission(ip, t0 + secs(499)));
    }

    #[test]
    fn permissions_and_channels_are_capped_per_allocation() {
        let t0 = Instant::now();
        let mut a = AllocState::new(secs(600), t0);
        let ip = |i: usize| -> IpAddr {
            format!("198.51.{}.{}", i / 250, i % 250 + 1)
                .parse()
                .unwrap()
        };
        let all: Vec<IpAddr> = (0..MAX_PERMISSIONS).map(ip).collect();
        a.add_permissions(&all, t0).unwrap();
        // Refreshing held ones is fine; one more is refused, and nothing of a refused batch stays.
        a.add_permissions(&all[..3], t0 + secs(1)).unwrap();
        assert_eq!(
            a.add_permission(ip(MAX_PERMISSIONS), t0),
            Err(PermissionsFull)
        );
        let batch = [ip(MAX_PERMISSIONS + 1), ip(0)];
        assert_eq!(a.add_permissions(&batch, t0), Err(PermissionsFull));
        assert!(!a.has_permission(batch[0], t0));
        // Once they expire there is room again.
        a.add_permission(ip(MAX_PERMISSIONS), t0 + secs(301))
            .unwrap();
        // A million addresses in one request cost at most MAX_PERMISSIONS entries.
        let mut b = AllocState::new(secs(600), t0);
        let flood: Vec<IpAddr> = (0..100_000).map(|i| ip(i % 60_000)).collect();
        assert_eq!(b.add_permissions(&flood, t0), Err(PermissionsFull));
        assert_eq!(b.sizes().0, 0);

        let mut c = AllocState::new(secs(600), t0);
        for n in 0..MAX_CHANNELS {
            let peer = SocketAddr::new(ip(n), 5000);
            c.bind_channel(0x4000 + n as u16, peer, t0).unwrap();
        }
        let extra = SocketAddr::new(ip(MAX_CHANNELS), 5000);
        assert_eq!(
            c.bind_channel(0x4000 + MAX_CHANNELS as u16, extra, t0),
            Err(ChannelBindError::Full)
        );
        // Refreshing a held binding still works.
        c.bind_channel(0x4000, SocketAddr::new(ip(0), 5000), t0 + secs(1))
            .unwrap();
    }

    #[test]
    fn channel_binding_rules() {
        let t0 = Instant::now();
        let p1: SocketAddr = "198.51.100.1:1000".parse().unwrap();
        let p2: SocketAddr = "198.51.100.2:2000".parse().unwrap();
        let mut a = AllocState::new(secs(600), t0);

        assert_eq!(
            a.bind_channel(0x3fff, p1, t0),
            Err(ChannelBindError::InvalidNumber(0x3fff))
        );
        assert_eq!(
            a.bind_channel(0x8000, p1, t0),
            Err(ChannelBindError::InvalidNumber(0x8000))
        );
        assert_eq!(a.bind_channel(0x4000, p1, t0), Ok(()));
        // binding installs a permission
        assert!(a.has_permission(p1.ip(), t0));
        // refresh of the same binding is fine
        assert_eq!(a.bind_channel(0x4000, p1, t0 + secs(10)), Ok(()));
        // the number is taken by p1
        assert_eq!(
            a.bind_channel(0x4000, p2, t0),
            Err(ChannelBindError::NumberBoundElsewhere { number: 0x4000 })
        );
        // p1 is already on 0x4000
        assert_eq!(
            a.bind_channel(0x4001, p1, t0),
            Err(ChannelBindError::PeerBoundElsewhere {
                peer: p1,
                number: 0x4000
            })
        );
        assert_eq!(a.channel_peer(0x4000, t0), Some(p1));
        assert_eq!(a.peer_channel(p1, t0), Some(0x4000));
        assert_eq!(a.peer_channel(p2, t0), None);

        // after expiry both the number and the peer are free again
        let later = t0 + secs(10) + CHANNEL_LIFETIME;
        assert_eq!(a.channel_peer(0x4000, later), None);
        assert_eq!(a.bind_channel(0x4000, p2, later), Ok(()));
        assert_eq!(a.bind_channel(0x4001, p1, later), Ok(()));
        assert_eq!(a.channel_peer(0x4000, later), Some(p2));
        assert_eq!(a.peer_channel(p1, later), Some(0x4001));
        assert_eq!(a.sizes(), (2, 2));
        a.prune(later + CHANNEL_LIFETIME);
        assert_eq!(a.sizes(), (0, 0));
    }

    #[test]
    fn quotas_table() {
        let mut q = Quotas::new(2, 3);
        let steps: [(&str, bool, Result<(), QuotaExceeded>); 8] = [
            ("alice", true, Ok(())),
            ("alice", true, Ok(())),
            ("alice", true, Err(QuotaExceeded::User { limit: 2 })),
            ("bob", true, Ok(())),
            ("carol", true, Err(QuotaExceeded::Total { limit: 3 })),
            ("alice", false, Ok(())),
            ("carol", true, Ok(())),
            ("carol", true, Err(QuotaExceeded::Total { limit: 3 })),
        ];
        for (i, (user, acquire, want)) in steps.into_iter().enumerate() {
            if acquire {
                assert_eq!(q.acquire(user), want, "step {i}");
            } else {
                q.release(user);
            }
        }
        assert_eq!(q.total(), 3);
        q.release("alice");
        q.release("bob");
        q.release("carol");
        q.release("nobody");
        assert_eq!((q.total(), q.users()), (0, 0));

        // Users of one quota group (credentials minted for one join token) share one quota;
        // a group never counts against a plain user id of the same spelling.
        let mut g = Quotas::new(2, 0);
        let grouped: [(&str, Result<(), QuotaExceeded>); 5] = [
            ("http-a#g1", Ok(())),
            ("r/p#g1", Ok(())),
            ("http-b#g1", Err(QuotaExceeded::User { limit: 2 })),
            ("http-c#g2", Ok(())),
            ("g1", Ok(())),
        ];
        for (i, (user, want)) in grouped.into_iter().enumerate() {
            assert_eq!(g.acquire(user), want, "grouped step {i}");
        }
        g.release("http-a#g1");
        assert_eq!(
            g.acquire("http-z#g1"),
            Ok(()),
            "a release frees the group's quota"
        );
        assert_eq!(g.users(), 3);

        let mut unlimited = Quotas::new(0, 0);
        for _ in 0..10_000 {
            unlimited.acquire("x").unwrap();
        }
    }
}
