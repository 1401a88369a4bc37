//! A connection's opening bytes, on the web and TLS ports: who it is from (the PROXY protocol
//! header a trusted load balancer sends first, [`natkit_stun_turn::proxy_header`], pure) and
//! what it is ([`sniff`]: HTTP or TURN, [`crate::demux`], pure). From a trusted network
//! (`trusted_proxies`) the header's client is the connection's (a connection without one is the
//! balancer's own); from anyone else a header closes the connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ipnet::IpNet;
use natkit_stun_turn::proxy_header::{parse, Header, V2_MAX};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::AppState;
use crate::demux::{classify, FirstBytes, DECIDING_BYTES};
use crate::limits::IpSlot;

/// Is `peer` a load balancer whose PROXY headers are believed?
fn trusted(peer: SocketAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&peer.ip()))
}

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

/// Reads what the first bytes say before `deadline`: the client the connection speaks for and
/// the stream from its own first byte; or why it is closed (the label of
/// `natkit_signal_connections_refused_total`).
async fn client_of(
    mut stream: TcpStream,
    peer: SocketAddr,
    trusted: bool,
    deadline: Instant,
) -> Result<(SocketAddr, Prefixed<TcpStream>), &'static str> {
    let mut head = Vec::new();
    loop {
        match parse(&head) {
            Header::None => return Ok((peer, Prefixed::new(head, stream))),
            Header::Proxy { len, client } if trusted => {
                let rest = head.split_off(len);
                return Ok((client.unwrap_or(peer), Prefixed::new(rest, stream)));
            }
            Header::Proxy { .. } => return Err("untrusted_proxy_header"),
            Header::Invalid(why) => {
                tracing::debug!(why, "bad PROXY header");
                return Err(if trusted {
                    "bad_proxy_header"
                } else {
                    "untrusted_proxy_header"
                });
            }
            Header::NeedMore => {}
        }
        let mut buf = [0u8; 256];
        let room = (V2_MAX + 1 - head.len()).min(buf.len());
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[..room])).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            Ok(_) => return Err("closed_early"),
            Err(_) => return Err("silent"),
        }
    }
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

/// A stream whose first bytes were read already: they are read again first.
pub(crate) struct Prefixed<IO> {
    head: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub(crate) fn new(head: Vec<u8>, io: IO) -> Self {
        Prefixed { head, at: 0, io }
    }

    /// The bytes not read yet, and the stream.
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, IO) {
        (self.head.split_off(self.at), self.io)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.at);
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
