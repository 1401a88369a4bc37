//! Errors of the probe library.

/// The probe could not start. Reaching a verdict (UDP blocked included) is never an error.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
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
    #[error("STUN server {server:?} has no IPv4 address")]
    NoIpv4 { server: String },
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
