//! A connection's opening bytes, on the web and TLS ports: who it is from (the PROXY protocol
//! header a trusted load balancer sends first, [`natkit_stun_turn::proxied`]) and
//! what it is ([`sniff`]: HTTP or TURN, [`crate::demux`], pure). From a trusted network
//! (`trusted_proxies`) the header's client is the connection's (a connection without one is the
//! balancer's own); from anyone else a header closes the connection.

use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) use natkit_stun_turn::proxied::Prefixed;
use natkit_stun_turn::proxied::{client_of, trusted};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::AppState;
use crate::demux::{classify, FirstBytes, DECIDING_BYTES};
use crate::limits::IpSlot;

/// A new connection's client, its stream from its own first byte, and the client's per-IP
/// slot; or why it is closed. A direct client's slot is taken at once; a balancer's
/// connection counts against the client its header names, once read.
pub(crate) async fn admit(
    state: &AppState,
    stream: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<(SocketAddr, Prefixed<TcpStream>, Arc<IpSlot>), &'static str> {
    let balancer = trusted(peer, &state.settings.trusted_proxies);
    let early = match balancer {
        true => None,
        false => Some(state.ip_slots.acquire(peer.ip()).ok_or("per_ip_limit")?),
    };
    let (client, io) = client_of(stream, peer, balancer, deadline).await?;
    let slot = match early {
        Some(s) => s,
        None => state.ip_slots.acquire(client.ip()).ok_or("per_ip_limit")?,
    };
    Ok((client, io, slot))
}

/// Reads `io` (after the `head` read already) until its first bytes say what it is, before
/// `deadline`: the verdict and the stream from its first byte; `Err("silent")` when they do not
/// come in time.
pub(crate) async fn sniff<IO: AsyncRead + Unpin>(
    mut head: Vec<u8>,
    mut io: IO,
    deadline: Instant,
) -> Result<(FirstBytes, Prefixed<IO>), &'static str> {
    let kind = loop {
        match classify(&head) {
            FirstBytes::NeedMore => {}
            kind => break kind,
        }
        let mut buf = [0u8; DECIDING_BYTES];
        let want = DECIDING_BYTES.saturating_sub(head.len()).max(1);
        match tokio::time::timeout_at(deadline, io.read(&mut buf[..want])).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return Err("silent"),
        }
    };
    Ok((kind, Prefixed::new(head, io)))
}
