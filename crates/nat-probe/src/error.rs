//! Errors of the probe library.

/// The probe could not start, or its server is not one. Reaching a verdict (UDP blocked
/// included) is never an error.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The server's host answered with ICMP port unreachable: UDP reached it and nothing serves
    /// STUN on that port (a mistyped port, a stopped server). A configuration error, not a NAT
    /// verdict.
    #[error("no STUN server at {server}: port unreachable (UDP reached the host; check the port and that the server runs)")]
    NoStunServer { server: std::net::SocketAddr },
    /// Give at least one server, e.g. `nat-probe stun.example.org`.
    #[error("no STUN server given")]
    NoServer,
    /// Check the spelling, or the resolver: nothing else is tried.
    #[error("cannot resolve STUN server {server:?}")]
    Resolve {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("STUN server {server:?} has no {family} address")]
    NoAddress {
        server: String,
        family: &'static str,
    },
    /// The host has no route towards the server (no default route, interface down).
    #[error("no local address routes to {server}")]
    NoRoute {
        server: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open a UDP socket on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
