//! How a client reaches the relay: its transport and 5-tuple (RFC 8656 section 2.2: allocations
//! are keyed by the 5-tuple, transport included). Pure values every module shares; the core
//! re-exports them.

use std::net::SocketAddr;

/// How a client reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    /// The `transport` label of the metrics, and the `relay_protocol` natkit-peer reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Is this a byte stream (ChannelData padded, one connection per 5-tuple)?
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }
}

/// The client's 5-tuple: transport, the client's address and the relay's (advertised) address it
/// reached. An allocation belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
}
