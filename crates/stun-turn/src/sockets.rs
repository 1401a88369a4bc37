//! The relay's UDP sockets as the shells bind them (buffer sizes, SO_REUSEPORT groups), one
//! address family's listener ([`Stack`]), the host's own addresses (for the peer policy), and
//! the address clients are told.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tracing::warn;

use tokio::net::TcpListener;

use crate::config::{Listen, RelayConfig};
use crate::error::RelayError;
use crate::family::Family;
use crate::rfc5780::Slot;
use crate::server::FamilyAddresses;
use crate::udp::Udp;

/// Socket buffer size asked for on every relay socket (the kernel doubles it: 4 MiB, as coturn
/// ends up with): bursts are absorbed
/// instead of dropped. The kernel caps it at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 2 << 20;

pub(crate) fn bind_udp(addr: SocketAddr) -> Result<Arc<Udp>, RelayError> {
    bind_udp_with(addr, false)
}

/// `reuse_port`: join the address's SO_REUSEPORT group (the primary listener's sockets), so the
/// kernel spreads clients over them by 4-tuple hash, each client always to the same socket.
pub(crate) fn bind_udp_with(addr: SocketAddr, reuse_port: bool) -> Result<Arc<Udp>, RelayError> {
    let s = udp_socket(addr, reuse_port)?;
    Udp::new(s)
        .map(Arc::new)
        .map_err(|source| RelayError::Bind { addr, source })
}

/// A relayed transport address's socket: read by a [`crate::relayed::Poller`], not by tokio.
pub(crate) fn bind_relayed(addr: SocketAddr) -> Result<Arc<Udp>, RelayError> {
    Ok(Arc::new(Udp::unregistered(udp_socket(addr, false)?)))
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> Result<std::net::UdpSocket, RelayError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| RelayError::Bind { addr, source };
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    // Best effort: a smaller cap only means the kernel default.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    if reuse_port {
        s.set_reuse_port(true).map_err(err)?;
    }
    // One socket per family: `[::]` must not take IPv4 too (0.0.0.0 has the same port).
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    Ok(s.into())
}

/// A TCP listener on `addr`; with `v6_only`, an IPv6 address takes IPv6 alone (as [`bind_udp`],
/// beside the IPv4 listener of the same port), else `[::]` takes both families where the host
/// allows (`bindv6only` 0, Linux's default).
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    v6_only: bool,
) -> Result<tokio::net::TcpListener, RelayError> {
    let err = |source| RelayError::BindTcp { addr, source };
    let l = natkit_daemon::tcp_listener(addr, v6_only.then_some(true)).map_err(err)?;
    tokio::net::TcpListener::from_std(l).map_err(err)
}

/// This host's local addresses and local ranges (127.0.0.0/8), from the kernel's tables
/// (`/proc/net/fib_trie`'s "host LOCAL" entries for IPv4, `/proc/net/if_inet6` for IPv6); empty
/// where they cannot be read.
pub(crate) fn local_addresses() -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        // "|-- 127.0.0.0" then "/8 host LOCAL": the prefix on the next line.
        let mut last: Option<std::net::Ipv4Addr> = None;
        for line in trie.lines() {
            let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
            if let Ok(ip) = t.parse::<std::net::Ipv4Addr>() {
                last = Some(ip);
            } else if let (Some(ip), Some(rest)) = (last, t.strip_prefix('/')) {
                last = None;
                let mut parts = rest.split_whitespace();
                let len = parts.next().and_then(|l| l.parse::<u8>().ok());
                if let (Some(len), true) = (len, t.contains("host LOCAL")) {
                    if let Ok(net) = ipnet::Ipv4Net::new(ip, len) {
                        let net = ipnet::IpNet::V4(net);
                        if !out.contains(&net) {
                            out.push(net);
                        }
                    }
                }
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next().filter(|h| h.len() == 32) else {
                continue;
            };
            if let Ok(bits) = u128::from_str_radix(hex, 16) {
                out.push(ipnet::IpNet::V6(
                    ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(bits), 128).expect("/128"),
                ));
            }
        }
    }
    out
}

/// The source address the kernel would pick towards the outside in `listen`'s family, for a
/// wildcard listener with no `--public-ip`. Connecting a UDP socket sends nothing.
fn default_route_ip(v6: bool) -> Option<IpAddr> {
    let outside = if v6 {
        "[2001:db8::1]:9"
    } else {
        "203.0.113.1:9"
    };
    natkit_daemon::source_ip_towards(outside.parse().expect("valid")).ok()
}

/// The address clients see on `listen`: its `public_ip`, else the concrete listen IP, else the
/// IP of the family's default route; `None` for a wildcard without a default route.
pub fn advertised_ip_of(listen: &Listen) -> Option<IpAddr> {
    match listen.public_ip {
        Some(ip) => Some(ip),
        None if listen.addr.ip().is_unspecified() => default_route_ip(listen.addr.is_ipv6()),
        None => Some(listen.addr.ip()),
    }
}

/// The address clients see on the first listener ([`advertised_ip_of`]), else loopback (with a
/// warning).
pub fn advertised_ip(cfg: &RelayConfig) -> IpAddr {
    advertised_or_loopback(&cfg.listen[0])
}

/// [`advertised_ip_of`] `listen`, else the loopback address of its family (with a warning).
pub(crate) fn advertised_or_loopback(listen: &Listen) -> IpAddr {
    advertised_ip_of(listen).unwrap_or_else(|| {
        let loopback = if listen.addr.is_ipv6() {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        warn!(listen = %listen.addr, "no default route and no --public-ip: advertising {loopback}");
        loopback
    })
}

/// The sockets of one address family's listener, bound.
pub(crate) struct Stack {
    pub(crate) family: Family,
    pub(crate) listen: crate::config::Listen,
    /// The primary socket's own address (the advertised one may be a public IP behind NAT).
    pub(crate) bound: SocketAddr,
    pub(crate) advertised: IpAddr,
    /// (slot, socket, the address RESPONSE-ORIGIN and OTHER-ADDRESS name for it)
    pub(crate) sockets: Vec<(Slot, Arc<Udp>, SocketAddr)>,
    /// More sockets on the primary address (SO_REUSEPORT).
    pub(crate) extra: Vec<Arc<Udp>>,
    pub(crate) tcp: Option<TcpListener>,
    pub(crate) addresses: FamilyAddresses,
}

impl Stack {
    /// Binds `listen`'s primary socket (`listeners` of them in an SO_REUSEPORT group), its
    /// RFC 5780 sockets and its TCP listener.
    pub(crate) fn bind(
        cfg: &RelayConfig,
        listen: &crate::config::Listen,
        advertised: IpAddr,
        listeners: usize,
    ) -> Result<Stack, RelayError> {
        let family = Family::of(listen.addr.ip());
        // TCP on the UDP port (3478/tcp beside 3478/udp). With port 0 the kernel's free UDP port
        // may be taken over TCP: try another.
        let mut attempts = if listen.addr.port() == 0 { 32 } else { 1 };
        let (addr, tcp) = loop {
            let probe = bind_udp(listen.addr)?;
            let addr = probe.local_addr().map_err(RelayError::LocalAddr)?;
            if !cfg.streams.tcp {
                break (addr, None);
            }
            match bind_tcp(addr, true) {
                Ok(l) => break (addr, Some(l)),
                Err(e) => {
                    attempts -= 1;
                    if attempts == 0 {
                        return Err(e);
                    }
                }
            }
        };
        // A plain bind first (above): the port must be free. Without it, a second relay started
        // on the same port would silently join this group and receive half of the clients.
        let primary = bind_udp_with(addr, listeners > 1)?;
        let primary_addr = primary.local_addr().map_err(RelayError::LocalAddr)?;
        let extra = (1..listeners)
            .map(|_| bind_udp_with(primary_addr, true))
            .collect::<Result<Vec<_>, _>>()?;
        if cfg.alt_port != 0 && cfg.alt_port == primary_addr.port() {
            return Err(RelayError::AltPortSameAsListen { port: cfg.alt_port });
        }
        let alt_port = bind_udp(SocketAddr::new(listen.addr.ip(), cfg.alt_port))?;
        let alt_port_addr = alt_port.local_addr().map_err(RelayError::LocalAddr)?;
        let mut sockets = vec![
            (
                Slot::PRIMARY,
                primary,
                SocketAddr::new(advertised, primary_addr.port()),
            ),
            (
                Slot::ALT_PORT,
                alt_port,
                SocketAddr::new(advertised, alt_port_addr.port()),
            ),
        ];
        let mut alt_ip_addrs = None;
        if let Some(alt_ip) = cfg.alt_ip.filter(|ip| Family::of(*ip) == family) {
            if listen.addr.ip().is_unspecified() {
                return Err(RelayError::AltIpNeedsConcreteListen {
                    listen: listen.addr,
                    alt_ip,
                });
            }
            if alt_ip == listen.addr.ip() {
                return Err(RelayError::AltIpSameAsListen { alt_ip });
            }
            let a = bind_udp(SocketAddr::new(alt_ip, primary_addr.port()))?;
            let b = bind_udp(SocketAddr::new(alt_ip, alt_port_addr.port()))?;
            let a_addr = a.local_addr().map_err(RelayError::LocalAddr)?;
            let b_addr = b.local_addr().map_err(RelayError::LocalAddr)?;
            sockets.push((Slot::ALT_IP, a, a_addr));
            sockets.push((Slot::ALT_BOTH, b, b_addr));
            alt_ip_addrs = Some((a_addr, b_addr));
        }
        let advertised_primary = SocketAddr::new(advertised, primary_addr.port());
        Ok(Stack {
            family,
            listen: listen.clone(),
            bound: primary_addr,
            advertised,
            sockets,
            extra,
            addresses: FamilyAddresses {
                primary: advertised_primary,
                alt_port: SocketAddr::new(advertised, alt_port_addr.port()),
                alt_ip: alt_ip_addrs,
                relay_ip: advertised,
                tcp: tcp.as_ref().map(|_| advertised_primary),
            },
            tcp,
        })
    }
}
