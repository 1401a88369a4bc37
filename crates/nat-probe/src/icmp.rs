//! ICMP errors for the probe's UDP socket: a closed port is not a blocked network.
//!
//! With `IP_RECVERR` (`IPV6_RECVERR`) the kernel queues each ICMP error about a datagram the
//! socket sent, with the ICMP type and code, the address that sent the ICMP message (the
//! offender) and the datagram's destination. [`judge`] and [`no_stun_server`] decide (pure);
//! [`enable`] and [`drain`] are the socket shell. Port unreachable from the server's own address
//! means UDP reached that host and nothing serves STUN on the port: a configuration error.
//! Silence, a router's port unreachable (a firewall's REJECT) and administratively prohibited
//! stay what they are: UDP blocked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What an ICMP error says about the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Port unreachable: the host got the datagram and nothing listens on the port.
    Port,
    /// Communication administratively prohibited, or a policy refusal: a firewall.
    Prohibited,
    /// Host, network or anything else.
    Other,
}

/// One ICMP error the kernel queued for the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Where the datagram that caused it was going.
    pub dest: SocketAddr,
    /// Who sent the ICMP message, when the kernel says.
    pub offender: Option<IpAddr>,
    pub kind: Unreachable,
}

/// `sock_extended_err.ee_origin` values (linux/errqueue.h).
const ORIGIN_ICMP: u8 = 2;
const ORIGIN_ICMP6: u8 = 3;

/// An ICMP error's meaning from its origin (ICMP or ICMPv6), type and code (RFC 792 and 1812,
/// RFC 4443).
pub fn judge(origin: u8, typ: u8, code: u8) -> Unreachable {
    match (origin, typ, code) {
        // Destination unreachable: port.
        (ORIGIN_ICMP, 3, 3) | (ORIGIN_ICMP6, 1, 4) => Unreachable::Port,
        // Net/host administratively prohibited (9, 10), communication administratively
        // prohibited (13); ICMPv6 administratively prohibited (1), source policy (5), reject
        // route (6).
        (ORIGIN_ICMP, 3, 9 | 10 | 13) | (ORIGIN_ICMP6, 1, 1 | 5 | 6) => Unreachable::Prohibited,
        _ => Unreachable::Other,
    }
}

/// Did `server` itself say that nothing listens on its STUN port?
pub fn no_stun_server(seen: &[Seen], server: SocketAddr) -> bool {
    seen.iter()
        .any(|s| s.kind == Unreachable::Port && s.dest == server && s.offender == Some(server.ip()))
}

/// Asks the kernel to queue ICMP errors for `sock` (of `family` `v6` or not).
pub fn enable(sock: &impl std::os::fd::AsRawFd, v6: bool) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    let (level, name) = match v6 {
        false => (libc::SOL_IP, libc::IP_RECVERR),
        true => (libc::SOL_IPV6, libc::IPV6_RECVERR),
    };
    // SAFETY: a valid fd, and a c_int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Takes every queued ICMP error off `sock` without blocking (at most `limit`).
pub fn drain(sock: &impl std::os::fd::AsRawFd, limit: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    while out.len() < limit {
        match read_one(sock.as_raw_fd()) {
            Some(Some(seen)) => out.push(seen),
            Some(None) => continue,
            None => break,
        }
    }
    out
}

/// One message of the error queue: `None` when it is empty, `Some(None)` for one that is not an
/// ICMP error.
fn read_one(fd: std::os::fd::RawFd) -> Option<Option<Seen>> {
    // The original datagram's destination, and room for a cmsg with the extended error and the
    // offender's address.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut data = [0u8; 64];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below points into live buffers above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: fd is a socket; msg describes the buffers above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let dest = sockaddr(&name)?;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let ours = (c.cmsg_level == libc::SOL_IP && c.cmsg_type == libc::IP_RECVERR)
                || (c.cmsg_level == libc::SOL_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
            if ours {
                let ee = libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err;
                let e = std::ptr::read_unaligned(ee);
                if e.ee_origin != ORIGIN_ICMP && e.ee_origin != ORIGIN_ICMP6 {
                    return Some(None);
                }
                // SO_EE_OFFENDER: the address right after the structure.
                let off = ee.add(1) as *const libc::sockaddr_storage;
                let offender = sockaddr(&std::ptr::read_unaligned(off)).map(|a| a.ip());
                return Some(Some(Seen {
                    dest,
                    offender,
                    kind: judge(e.ee_origin, e.ee_type, e.ee_code),
                }));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Some(None)
}

fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_types_and_codes() {
        let cases = [
            (ORIGIN_ICMP, 3, 3, Unreachable::Port),
            (ORIGIN_ICMP, 3, 13, Unreachable::Prohibited),
            (ORIGIN_ICMP, 3, 10, Unreachable::Prohibited),
            (ORIGIN_ICMP, 3, 9, Unreachable::Prohibited),
            (ORIGIN_ICMP, 3, 1, Unreachable::Other), // host unreachable
            (ORIGIN_ICMP, 3, 0, Unreachable::Other), // net unreachable
            (ORIGIN_ICMP, 11, 0, Unreachable::Other), // time exceeded
            (ORIGIN_ICMP6, 1, 4, Unreachable::Port),
            (ORIGIN_ICMP6, 1, 1, Unreachable::Prohibited),
            (ORIGIN_ICMP6, 1, 5, Unreachable::Prohibited),
            (ORIGIN_ICMP6, 1, 6, Unreachable::Prohibited),
            (ORIGIN_ICMP6, 1, 3, Unreachable::Other), // address unreachable
            (ORIGIN_ICMP6, 3, 4, Unreachable::Other), // ICMPv6 type 3 is time exceeded
            (ORIGIN_ICMP6, 3, 3, Unreachable::Other),
        ];
        for (origin, typ, code, want) in cases {
            assert_eq!(judge(origin, typ, code), want, "{origin} {typ} {code}");
        }
    }

    #[test]
    fn only_the_servers_own_port_unreachable_means_no_stun_server() {
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let router: IpAddr = "198.51.100.1".parse().unwrap();
        let seen = |dest: SocketAddr, offender: Option<IpAddr>, kind| Seen {
            dest,
            offender,
            kind,
        };
        let other_port: SocketAddr = "192.0.2.1:3479".parse().unwrap();
        let cases = [
            (vec![], false),
            (
                vec![seen(server, Some(server.ip()), Unreachable::Port)],
                true,
            ),
            // A firewall's REJECT on the way: sent by the router, not the server.
            (vec![seen(server, Some(router), Unreachable::Port)], false),
            (
                vec![seen(server, Some(server.ip()), Unreachable::Prohibited)],
                false,
            ),
            (vec![seen(server, None, Unreachable::Port)], false),
            // About another destination (the alternate port).
            (
                vec![seen(other_port, Some(server.ip()), Unreachable::Port)],
                false,
            ),
            (
                vec![
                    seen(server, Some(router), Unreachable::Other),
                    seen(server, Some(server.ip()), Unreachable::Port),
                ],
                true,
            ),
        ];
        for (list, want) in cases {
            assert_eq!(no_stun_server(&list, server), want, "{list:?}");
        }
    }
}
