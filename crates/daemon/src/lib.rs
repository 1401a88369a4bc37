//! What every natkit binary needs and none should write again: logging set-up, the shutdown
//! signal, the wall clock in Unix seconds, and the `listening` line that says where a server
//! bound (tests start servers on port 0 and read the real ports from it).
//!
//! # Layout
//! - [`init_tracing`]: the one `tracing` subscriber a binary installs (`RUST_LOG`, optional JSON,
//!   on standard error).
//! - [`terminate_signal`]: completes on SIGTERM or ctrl-c.
//! - [`unix_now`]: seconds since the Unix epoch, for the shells that own the clock.
//! - [`source_ip_towards`]: the local address the kernel picks towards a destination.
//! - [`listening_line`] / [`parse_listening`]: the machine-readable line servers print at start,
//!   and its reader (used by natkit-testkit), kept side by side so they cannot drift.
//!
//! - [`layer`]: the one configuration layer (flags, environment, TOML) every server's
//!   `config.rs` derives, and its generic merge.
//!
//! Out of scope: each server's keys and their validation (each crate's `config.rs`) and anything
//! protocol-specific.

pub mod clock;
pub mod layer;

pub use clock::Clock;

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Installs the process's `tracing` subscriber: filter from `RUST_LOG` (else `default_filter`),
/// text on standard error (coloured only on a terminal), or JSON lines with `json`.
///
/// Client and peer addresses show as tags ([`natkit_proto::Redacted`]) unless
/// `NATKIT_LOG_ADDRESSES` is `1`, `true` or `yes`.
pub fn init_tracing(json: bool, default_filter: &str) {
    let show = std::env::var("NATKIT_LOG_ADDRESSES").unwrap_or_default();
    natkit_proto::redact::show_addresses(matches!(show.trim(), "1" | "true" | "yes"));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

/// Completes on SIGTERM or ctrl-c: the shutdown future the binaries hand to their servers.
pub async fn terminate_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it): the system's [`Clock::unix`].
pub fn unix_now() -> u64 {
    Clock::system().unix()
}

/// The interface address the kernel uses as the source towards `target`: a UDP socket is
/// connected (which sends nothing) and asked for its local address. Errors when there is no
/// route; an unspecified answer is an error too.
pub fn source_ip_towards(target: SocketAddr) -> std::io::Result<IpAddr> {
    let wildcard: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(wildcard)?;
    s.connect(target)?;
    let ip = s.local_addr()?.ip();
    if ip.is_unspecified() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("no source address towards {target}"),
        ));
    }
    Ok(ip)
}

/// A non-blocking TCP listener on `addr` (SO_REUSEADDR, a backlog of 1024). For an IPv6 address,
/// `ipv6_only` says whether it takes IPv6 alone (`Some(true)`: beside an IPv4 listener of the
/// same port), both families (`Some(false)`: `[::]` for everyone), or what the host's
/// `bindv6only` says (`None`).
pub fn tcp_listener(
    addr: SocketAddr,
    ipv6_only: Option<bool>,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if let (true, Some(only)) = (addr.is_ipv6(), ipv6_only) {
        s.set_only_v6(only)?;
    }
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The marker after the program name: `natkit-relay: listening stun=127.0.0.1:3478 ...`.
const LISTENING: &str = ": listening ";

/// The line a server prints on standard error once every socket is bound: the program name,
/// then `name=address` for each socket, with the ports really bound (so a server given port 0
/// says which it got).
pub fn listening_line(program: &str, sockets: &[(&str, SocketAddr)]) -> String {
    let mut line = format!("{program}{LISTENING}");
    let parts: Vec<String> = sockets.iter().map(|(k, a)| format!("{k}={a}")).collect();
    line.push_str(&parts.join(" "));
    line
}

/// Reads a [`listening_line`]: the program and its sockets, or `None` for any other line.
pub fn parse_listening(line: &str) -> Option<(String, Vec<(String, SocketAddr)>)> {
    let (program, rest) = line.trim_end().split_once(LISTENING)?;
    if program.is_empty() || program.contains(' ') {
        return None;
    }
    let sockets = rest
        .split(' ')
        .map(|part| {
            let (k, a) = part.split_once('=')?;
            Some((k.to_owned(), a.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((program.to_owned(), sockets))
}

/// The metrics listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}; pick another --metrics-listen or \"off\"")]
pub struct MetricsListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds the Prometheus listener when there is an address for it (`None`: metrics are `off`):
/// the listener and the address it got.
pub async fn bind_metrics(
    addr: Option<SocketAddr>,
) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, MetricsListenError> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let bound = async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bound
        .await
        .map(Some)
        .map_err(|source| MetricsListenError { addr, source })
}

/// Raises this process's soft limit on open files to its hard limit (as coturn does): a relay
/// holding thousands of TCP connections and relay sockets must not stop at the common soft
/// default of 1024. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_round_trips() {
        let sockets: [(&str, SocketAddr); 3] = [
            ("http", "127.0.0.1:40123".parse().unwrap()),
            ("stun", "[2001:db8::1]:3478".parse().unwrap()),
            ("stun-alt", "203.0.113.1:3479".parse().unwrap()),
        ];
        let line = listening_line("natkit-signal", &sockets);
        assert_eq!(
            line,
            "natkit-signal: listening http=127.0.0.1:40123 stun=[2001:db8::1]:3478 stun-alt=203.0.113.1:3479"
        );
        let (program, got) = parse_listening(&line).unwrap();
        assert_eq!(program, "natkit-signal");
        let want: Vec<(String, SocketAddr)> =
            sockets.iter().map(|(k, a)| (k.to_string(), *a)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn other_lines_are_not_listening_lines() {
        for line in [
            "natkit-signal: web page and signaling on http://127.0.0.1:8080/",
            "natkit-relay: listening stun=not-an-address",
            "2026-12-01T00:00:00Z  INFO natkit: listening stun=127.0.0.1:1",
            "",
        ] {
            assert_eq!(parse_listening(line), None, "{line:?}");
        }
    }

    #[test]
    fn loopback_is_reached_from_loopback() {
        let ip = source_ip_towards("127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(unix_now() > 1_577_836_800);
    }
}
