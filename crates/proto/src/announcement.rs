//! What a natkit-relay announces of itself in the signaling cluster's Redis, and where: the one
//! type both the announcing relay (`natkit_stun_turn::announce`) and the natkit-signal nodes
//! that hand relays out (`natkit_signal::fleet`) read and write. docs/cluster.md, "Relay fleet".

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RelayEndpoints;

/// How often a relay renews its announcement.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long an announcement lives without renewal.
pub const EXPIRY: Duration = Duration::from_secs(6);
/// The set of announced relays.
pub const RELAYS: &str = "natkit:relays";

/// The key of the announcement of the relay at `addr` (`HOST:PORT`).
pub fn key(addr: &str) -> String {
    format!("natkit:relay:{addr}")
}

/// One relay's announcement, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The host (public IP) clients reach the relay at, and its UDP (and TCP) port.
    pub host: String,
    pub port: u16,
    pub tcp: bool,
    /// `turns:` name and port, when TLS is on.
    pub tls: Option<(String, u16)>,
    /// Allocations active now (every transport).
    pub allocations: u64,
    /// `total_quota`: allocations the relay accepts at most (0: no limit).
    pub capacity: u64,
    pub draining: bool,
}

impl Announcement {
    /// `HOST:PORT`, the announcement's identity.
    pub fn addr(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    pub fn endpoints(&self) -> RelayEndpoints {
        RelayEndpoints {
            host: self.host.clone(),
            port: self.port,
            tcp: self.tcp,
            tls: self.tls.clone(),
        }
    }

    /// Nearly full (90% of `capacity`): not handed out for new rooms.
    pub fn full(&self) -> bool {
        self.capacity != 0 && self.allocations * 10 >= self.capacity * 9
    }
}
