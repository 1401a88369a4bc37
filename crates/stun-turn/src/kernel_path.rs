//! The kernel path (`--kernel-path IFACE`, off by default): ChannelData between UDP clients and
//! the peers their channels are bound to is relayed by a TC ingress program
//! (`bpf/relay.bpf.c`) on the named interfaces, both ways, without waking the relay. The
//! userspace path stays the reference and the fallback: the program relays only what its maps
//! describe exactly and hands everything else to the relay's sockets untouched.
//!
//! This module decides what the maps hold, without sockets or clock: [`Offload`] turns an
//! allocation's channel bindings ([`AllocState::kernel_bindings`]) into map writes and removals,
//! each direction with the instant it stops being valid (the kernel compares it with
//! `CLOCK_MONOTONIC`, so expiry is exact without the relay's help). The relay calls it after
//! every Refresh, CreatePermission and ChannelBind of a UDP client (before the answer leaves, so
//! a deleted allocation relays nothing more), when allocations end, and once a second to
//! forget expired entries. The peer policy and the quotas are decided before a binding exists,
//! so they hold as they are.
//!
//! [`AllocState::kernel_bindings`]: crate::allocation::AllocState::kernel_bindings

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use crate::core::{FiveTuple, Transport};
use crate::error::RelayError;
#[cfg(feature = "kernel-path")]
use crate::family::Family;
use crate::metrics::{DirectionCounters, RelayMetrics};

pub use crate::allocation::KernelBinding;

/// `chan_in`'s key: ChannelData from `client` to the relay's `server` address on `channel`.
/// Addresses, ports and the channel number are in network byte order, as in the packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct InKey {
    pub client_ip: u32,
    pub server_ip: u32,
    pub client_port: u16,
    pub server_port: u16,
    pub channel: u16,
    pub pad: u16,
}

/// `chan_in`'s value: where the payload goes, and until when (CLOCK_MONOTONIC nanoseconds).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InVal {
    pub relay_ip: u32,
    pub peer_ip: u32,
    pub relay_port: u16,
    pub peer_port: u16,
    pub pad: u32,
    pub expires_ns: u64,
}

/// `chan_out`'s key: a datagram from `peer` to the relayed address.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OutKey {
    pub peer_ip: u32,
    pub relay_ip: u32,
    pub peer_port: u16,
    pub relay_port: u16,
}

/// `chan_out`'s value: the client it goes to as ChannelData (on `to.channel`, from `to.server`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutVal {
    /// The client's side of the channel, as `chan_in`'s key names it.
    pub to: InKey,
    pub expires_ns: u64,
}

/// The program's per-CPU counters, in the order of `bpf/relay.bpf.c`.
pub const COUNTERS: usize = 7;
pub const TO_PEER_PACKETS: usize = 0;
pub const TO_PEER_BYTES: usize = 1;
pub const TO_CLIENT_PACKETS: usize = 2;
pub const TO_CLIENT_BYTES: usize = 3;
pub use crate::metrics::KERNEL_PASSED as PASSED;

/// The program's counters, one set per CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub n: [u64; COUNTERS],
}

/// A change to the program's maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapOp {
    PutIn(InKey, InVal),
    DelIn(InKey),
    PutOut(OutKey, OutVal),
    DelOut(OutKey),
}

/// Converts [`Instant`]s to the kernel's CLOCK_MONOTONIC nanoseconds (Rust's `Instant` is
/// CLOCK_MONOTONIC on Linux; the pair read together anchors one to the other).
#[derive(Debug, Clone, Copy)]
pub struct Mono {
    pub at: Instant,
    pub ns: u64,
}

impl Mono {
    pub fn ns(&self, t: Instant) -> u64 {
        if t >= self.at {
            self.ns
                .saturating_add((t - self.at).as_nanos().min(u64::MAX as u128) as u64)
        } else {
            self.ns
                .saturating_sub((self.at - t).as_nanos().min(u64::MAX as u128) as u64)
        }
    }
}

fn ip(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

/// What is installed for one allocation.
#[derive(Debug, Clone, Default)]
struct Installed {
    /// The relayed socket's port (fixed for an allocation's life).
    relay_port: u16,
    /// The bindings as last written (a binding whose peer-to-client entry is in `chan_out` has
    /// `to_client_until`; an entry is used until its `to_peer_until`, the later of the two).
    entries: Vec<(u16, SocketAddrV4, Instant, Option<Instant>)>,
}

/// How the maps' keys are made: the primary socket's own address (where UDP clients' packets are
/// addressed; the five-tuple's server side is the advertised address, which may be a 1:1 NAT's)
/// and the relayed sockets' own IP.
#[derive(Debug, Clone, Copy)]
struct Keys {
    server: SocketAddrV4,
    relay_ip: Ipv4Addr,
}

impl Keys {
    fn in_key(&self, client: SocketAddrV4, channel: u16) -> InKey {
        InKey {
            client_ip: ip(*client.ip()),
            server_ip: ip(*self.server.ip()),
            client_port: client.port().to_be(),
            server_port: self.server.port().to_be(),
            channel: channel.to_be(),
            pad: 0,
        }
    }

    fn out_key(&self, peer: SocketAddrV4, relay_port: u16) -> OutKey {
        OutKey {
            peer_ip: ip(*peer.ip()),
            relay_ip: ip(self.relay_ip),
            peer_port: peer.port().to_be(),
            relay_port: relay_port.to_be(),
        }
    }
}

/// The maps' contents as the relay wants them, kept so that every change is a small diff.
#[derive(Debug, Clone)]
pub struct Offload {
    keys: Keys,
    installed: HashMap<FiveTuple, Installed>,
}

impl Offload {
    pub fn new(server: SocketAddrV4, relay_ip: Ipv4Addr) -> Offload {
        Offload {
            keys: Keys { server, relay_ip },
            installed: HashMap::new(),
        }
    }

    /// Does the kernel path take this client's allocation? UDP over IPv4 only.
    pub fn takes(five: &FiveTuple) -> bool {
        five.transport == Transport::Udp && v4(five.client).is_some()
    }

    /// Entries in the maps now (both directions).
    pub fn entries(&self) -> usize {
        self.installed
            .values()
            .flat_map(|i| &i.entries)
            .map(|e| 1 + e.3.is_some() as usize)
            .sum()
    }

    /// The map changes that make `five`'s entries match its allocation now: `alloc` is the
    /// relayed port and the live bindings ([`AllocState::kernel_bindings`]), `None` when the
    /// allocation is gone. Bindings to peers outside IPv4 stay with the userspace path. What is
    /// already written as it should be is not written again, so a request that changed nothing
    /// (a retransmission, or one the core refused) costs no map write.
    ///
    /// [`AllocState::kernel_bindings`]: crate::allocation::AllocState::kernel_bindings
    pub fn sync(
        &mut self,
        five: &FiveTuple,
        alloc: Option<(u16, &[KernelBinding])>,
        mono: Mono,
    ) -> Vec<MapOp> {
        let mut ops = Vec::new();
        let Some(client) = v4(five.client).filter(|_| Self::takes(five)) else {
            return ops;
        };
        let keys = self.keys;
        let old = self.installed.remove(five).unwrap_or_default();
        let (relay_port, bindings) = alloc.unwrap_or((old.relay_port, &[]));
        let mut new = Installed {
            relay_port,
            entries: Vec::new(),
        };
        for b in bindings {
            let Some(peer) = v4(b.peer) else { continue };
            let key = keys.in_key(client, b.channel);
            let had = old.entries.iter().find(|e| e.0 == b.channel && e.1 == peer);
            if had.map(|e| e.2) != Some(b.to_peer_until) {
                ops.push(MapOp::PutIn(
                    key,
                    InVal {
                        relay_ip: ip(keys.relay_ip),
                        peer_ip: ip(*peer.ip()),
                        relay_port: relay_port.to_be(),
                        peer_port: peer.port().to_be(),
                        pad: 0,
                        expires_ns: mono.ns(b.to_peer_until),
                    },
                ));
            }
            // Without a permission, an entry it had goes with the others below.
            match b.to_client_until {
                Some(until) if had.and_then(|e| e.3) != Some(until) => ops.push(MapOp::PutOut(
                    keys.out_key(peer, relay_port),
                    OutVal {
                        to: key,
                        expires_ns: mono.ns(until),
                    },
                )),
                _ => {}
            }
            new.entries
                .push((b.channel, peer, b.to_peer_until, b.to_client_until));
        }
        // What the allocation no longer has.
        for &(channel, peer, _, out) in &old.entries {
            if !new.entries.iter().any(|e| e.0 == channel) {
                ops.push(MapOp::DelIn(keys.in_key(client, channel)));
            }
            if out.is_some() && !new.entries.iter().any(|e| e.1 == peer && e.3.is_some()) {
                ops.push(MapOp::DelOut(keys.out_key(peer, old.relay_port)));
            }
        }
        if !new.entries.is_empty() {
            self.installed.insert(*five, new);
        }
        ops
    }

    /// Removes the entries of bindings whose every direction has expired by `now` (the kernel
    /// no longer uses them; this frees their room).
    pub fn prune(&mut self, now: Instant) -> Vec<MapOp> {
        let mut ops = Vec::new();
        let keys = self.keys;
        self.installed.retain(|five, inst| {
            let Some(client) = v4(five.client) else {
                return false;
            };
            let port = inst.relay_port;
            inst.entries.retain(|&(channel, peer, until, out)| {
                if now < until {
                    return true;
                }
                ops.push(MapOp::DelIn(keys.in_key(client, channel)));
                if out.is_some() {
                    ops.push(MapOp::DelOut(keys.out_key(peer, port)));
                }
                false
            });
            !inst.entries.is_empty()
        });
        ops
    }
}

/// The kernel path of a running relay: the plan, the loaded program, and its counters as last
/// read into the metrics.
pub(crate) struct KernelPath {
    offload: Offload,
    maps: Maps,
    seen: [u64; COUNTERS],
    metrics: RelayMetrics,
    to_peer: DirectionCounters,
    to_client: DirectionCounters,
}

#[cfg(feature = "kernel-path")]
type Maps = KernelMaps;
/// Without the feature there is no program: a relay asked for the kernel path refuses to start.
#[cfg(not(feature = "kernel-path"))]
enum Maps {}

#[cfg(not(feature = "kernel-path"))]
impl Maps {
    fn apply(&mut self, _: &[MapOp]) -> usize {
        match *self {}
    }

    fn counters(&self) -> Option<[u64; COUNTERS]> {
        match *self {}
    }
}

impl KernelPath {
    /// Loads the program and attaches it to `ifaces`; `server` is the primary socket's own
    /// address, `relay_ip` the relayed sockets' own IP.
    pub(crate) fn start(
        ifaces: &[String],
        server: SocketAddrV4,
        relay_ip: Ipv4Addr,
        metrics: RelayMetrics,
    ) -> Result<KernelPath, RelayError> {
        #[cfg(not(feature = "kernel-path"))]
        {
            let _ = (ifaces, server, relay_ip, metrics);
            Err(RelayError::KernelPathNotBuilt)
        }
        #[cfg(feature = "kernel-path")]
        {
            let maps = KernelMaps::attach(ifaces).map_err(|e| RelayError::KernelPath {
                ifaces: ifaces.join(","),
                source: Box::new(e),
            })?;
            Ok(KernelPath {
                offload: Offload::new(server, relay_ip),
                maps,
                seen: [0; COUNTERS],
                to_peer: metrics.direction("client_to_peer", Transport::Udp, Family::V4),
                to_client: metrics.direction("peer_to_client", Transport::Udp, Family::V4),
                metrics,
            })
        }
    }

    /// Makes the maps match `five`'s allocation: its relayed port and live bindings, or `None`
    /// when it has ended.
    pub(crate) fn sync(&mut self, five: &FiveTuple, alloc: Option<(u16, Vec<KernelBinding>)>) {
        let ops = self.offload.sync(
            five,
            alloc.as_ref().map(|(port, b)| (*port, b.as_slice())),
            mono_now(),
        );
        self.apply(&ops);
    }

    fn apply(&mut self, ops: &[MapOp]) {
        if ops.is_empty() {
            return;
        }
        let refused = self.maps.apply(ops);
        self.metrics.kernel_path_refused.inc_by(refused as u64);
        self.metrics
            .kernel_path_entries
            .set(self.offload.entries() as i64);
    }

    /// Once a second: forgets expired entries and adds what the program counted to the metrics.
    pub(crate) fn tick(&mut self, now: Instant) {
        let ops = self.offload.prune(now);
        self.apply(&ops);
        let Some(now_counts) = self.maps.counters() else {
            return;
        };
        let mut d = [0u64; COUNTERS];
        for (i, v) in d.iter_mut().enumerate() {
            *v = now_counts[i].wrapping_sub(self.seen[i]);
        }
        self.seen = now_counts;
        self.to_peer
            .relayed_many(d[TO_PEER_PACKETS], d[TO_PEER_BYTES]);
        self.to_client
            .relayed_many(d[TO_CLIENT_PACKETS], d[TO_CLIENT_BYTES]);
        let k = &self.metrics.kernel_path_packets;
        k.with_label_values(&["client_to_peer"])
            .inc_by(d[TO_PEER_PACKETS]);
        k.with_label_values(&["peer_to_client"])
            .inc_by(d[TO_CLIENT_PACKETS]);
        for (i, reason) in PASSED {
            self.metrics
                .kernel_path_passed
                .with_label_values(&[reason])
                .inc_by(d[i]);
        }
    }
}

/// `Instant::now()` and CLOCK_MONOTONIC read together.
fn mono_now() -> Mono {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Mono {
        at: Instant::now(),
        ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
    }
}

#[cfg(test)]
mod tests;

#[cfg(feature = "kernel-path")]
mod maps;
#[cfg(feature = "kernel-path")]
pub use maps::{KernelMaps, KernelPathError};
