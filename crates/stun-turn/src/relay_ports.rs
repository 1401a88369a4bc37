//! Relay ports: what an Allocate asks the shell to open (a port, an even one, a pair, a
//! reserved one, a second family's), bound on the relay range of the family's IP and handed to
//! a poller, and the core's answer once they are open.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tracing::warn;

use crate::core::{Bound, FiveTuple, PendingAllocate, PortWant, Transport};
use crate::family::Family;
use crate::kernel_path::Offload;
use crate::relayed::ClientSink;
use crate::shared::{RelaySocket, Shared};
use crate::sockets::bind_relayed;

impl Shared {
    /// Opens what an Allocate asked for and returns the core's answer to it.
    pub(crate) fn allocate(
        &self,
        pending: PendingAllocate<RelaySocket>,
        sink: ClientSink,
    ) -> Vec<u8> {
        let bound = self.open(&pending, sink);
        self.core
            .lock()
            .expect("core lock")
            .finish_allocate(pending, bound, self.clock.now())
    }

    /// Opens the relay port(s) an Allocate asked for and gives each relayed socket to a poller.
    fn open(
        &self,
        pending: &PendingAllocate<RelaySocket>,
        sink: ClientSink,
    ) -> Option<Bound<RelaySocket>> {
        let family = pending.family;
        let (socket, next) = match &pending.want {
            PortWant::Any => (self.bind_relay_port(family, false, false)?.0, None),
            PortWant::Even => (self.bind_relay_port(family, true, false)?.0, None),
            PortWant::EvenPair => {
                let (s, n) = self.bind_relay_port(family, true, true)?;
                (s, n)
            }
            PortWant::Reserved { socket, .. } => (socket.clone(), None),
        };
        let (port, guard) = self.watch(&socket, sink.clone(), pending.five)?;
        let next = next.and_then(|n| Some((n.socket.local_addr().ok()?.port(), n)));
        // A dual allocation's second address: without a port it is refused alone (508 in
        // ADDRESS-ERROR-CODE), the first goes on.
        let additional = pending.additional.and_then(|f| {
            let (socket, _) = self.bind_relay_port(f, false, false)?;
            let (port, guard) = self.watch(&socket, sink, pending.five)?;
            Some((port, socket, guard))
        });
        Some(Bound {
            port,
            socket,
            guard,
            next,
            additional,
        })
    }

    /// Gives a relayed socket to the next poller: its peers' datagrams go to `sink` from now on,
    /// until the returned guard is dropped. Returns its port too.
    fn watch(
        &self,
        socket: &RelaySocket,
        sink: ClientSink,
        five: FiveTuple,
    ) -> Option<(u16, crate::core::Guard)> {
        let local = socket.socket.local_addr().ok()?;
        let family = Family::of(local.ip());
        if self.kernel.is_some() && (family == Family::V6 || !Offload::takes(&five)) {
            self.metrics
                .kernel_path_userspace(if five.transport == Transport::Udp {
                    "ipv6"
                } else {
                    "stream"
                });
        }
        let counters = self
            .metrics
            .direction("peer_to_client", five.transport, family);
        let turn = self
            .next_poller
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let poller = &self.pollers[turn % self.pollers.len()];
        match poller.add(
            Arc::clone(&socket.socket),
            sink,
            Arc::clone(&socket.peers),
            counters,
        ) {
            Ok(r) => Some((local.port(), Box::new(r))),
            Err(e) => {
                warn!(error = %e, "relay socket not watched; allocation refused");
                None
            }
        }
    }

    /// The relay's advertised IP in `client`'s family (the 5-tuple's server side).
    pub(crate) fn server_ip(&self, client: SocketAddr) -> IpAddr {
        let f = Family::of(client.ip());
        self.primary_addrs
            .get(f)
            .or(*self.primary_addrs.get(f.other()))
            .expect("one family at least")
            .ip()
    }

    /// Binds a socket of `family` on a free port of the relay range, starting at a random port;
    /// with `pair`, also the port after it (for an even port and its reserved successor).
    fn bind_relay_port(
        &self,
        family: Family,
        even: bool,
        pair: bool,
    ) -> Option<(RelaySocket, Option<RelaySocket>)> {
        let Some(bind_ip) = *self.relay_bind_ips.get(family) else {
            warn!(
                family = family.as_str(),
                "no relayed address of this family"
            );
            return None;
        };
        let (lo, hi) = (
            *self.relay_ports.start() as u32,
            *self.relay_ports.end() as u32,
        );
        let span = hi - lo + 1;
        let start = rand::random::<u32>() % span;
        for i in 0..span {
            let port = lo + (start + i) % span;
            if (even && port % 2 != 0) || (pair && port + 1 > hi) {
                continue;
            }
            let Ok(s) = bind_relayed(SocketAddr::new(bind_ip, port as u16)) else {
                continue;
            };
            if !pair {
                return Some((RelaySocket::new(s), None));
            }
            if let Ok(next) = bind_relayed(SocketAddr::new(bind_ip, (port + 1) as u16)) {
                return Some((RelaySocket::new(s), Some(RelaySocket::new(next))));
            }
        }
        warn!(range = ?self.relay_ports, "no free relay port");
        None
    }
}
