//! The relay's UDP sockets as the shells bind them (buffer sizes, SO_REUSEPORT groups), the
//! host's own addresses (for the peer policy), and the address clients are told.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tracing::warn;

use crate::config::{Listen, RelayConfig};
use crate::error::RelayError;
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
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| RelayError::BindTcp { addr, source };
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() && v6_only {
        s.set_only_v6(true).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    s.listen(1024).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    tokio::net::TcpListener::from_std(s.into()).map_err(err)
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
    advertised_ip_of(&cfg.listen[0]).unwrap_or_else(|| {
        let loopback = if cfg.listen[0].addr.is_ipv6() {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        warn!("no default route and no --public-ip: advertising {loopback}");
        loopback
    })
}
