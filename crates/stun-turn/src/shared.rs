//! The state the relay's shells share: the protocol core behind its lock, the sockets, the
//! relayed sockets' pollers, the kernel path and the metrics. Defined apart from the UDP shell
//! ([`crate::server`], where its methods are) so that the TCP/TLS shell ([`crate::stream`]) reads
//! it without importing that shell.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::allocation::AllocState;
use crate::config::{DrainConfig, StreamConfig};
use crate::core::RelayCore;
use crate::family::{Family, PerFamily};
use crate::kernel_path::KernelPath;
use crate::metrics::{DirectionCounters, RelayMetrics};
use crate::relayed::{PeerView, Poller};
use crate::revocation::RevocationFile;
use crate::rfc5780::Slot;
use crate::tls::TlsKeys;
use crate::udp::Udp;

/// The relay's handle of an allocation's relay port, as the core holds it: the socket, and the
/// view its poller reads.
#[derive(Clone)]
pub(crate) struct RelaySocket {
    pub(crate) socket: Arc<Udp>,
    pub(crate) peers: PeerView,
}

impl RelaySocket {
    /// A socket whose view lets nothing through until the core says otherwise.
    pub(crate) fn new(socket: Arc<Udp>) -> Self {
        RelaySocket {
            socket,
            peers: Arc::new(Mutex::new(AllocState::new(Duration::ZERO, Instant::now()))),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) core: Mutex<RelayCore<RelaySocket>>,
    /// The IP relayed sockets are bound to, per family served.
    pub(crate) relay_bind_ips: PerFamily<Option<IpAddr>>,
    pub(crate) relay_ports: RangeInclusive<u16>,
    /// Socket per family and RFC 5780 slot.
    pub(crate) sockets: HashMap<(Family, Slot), Arc<Udp>>,
    /// More sockets on the primary addresses (SO_REUSEPORT), served like the primary.
    pub(crate) primary_extra: Vec<(Family, Arc<Udp>)>,
    /// The primary address of each family as clients see it (the UDP and TCP 5-tuples' server
    /// side).
    pub(crate) primary_addrs: PerFamily<Option<SocketAddr>>,
    pub(crate) revoked_file: Option<Mutex<RevocationFile>>,
    pub(crate) metrics: RelayMetrics,
    /// By transport, then by the peer's family.
    pub(crate) client_to_peer: [[DirectionCounters; 2]; 3],
    pub(crate) streams: StreamConfig,
    pub(crate) tls: Option<Arc<TlsKeys>>,
    pub(crate) drain: DrainConfig,
    /// When the drain started.
    pub(crate) drain_started: Mutex<Option<Instant>>,
    /// Signalled by the janitor when a drain is over (no allocation left, or its deadline).
    pub(crate) drained: tokio::sync::Notify,
    /// The relayed sockets' pollers, one per worker thread; allocations take turns.
    pub(crate) pollers: Vec<Arc<Poller>>,
    pub(crate) next_poller: std::sync::atomic::AtomicUsize,
    /// `--kernel-path`: the TC program and what its maps hold. Locked after the core.
    pub(crate) kernel: Option<Mutex<KernelPath>>,
    /// What the core's `now` and `unix` are read from.
    pub(crate) clock: natkit_daemon::Clock,
}
