//! A stream connection's opening bytes when load balancers may stand in front
//! (`trusted_proxies`): from a trusted network the PROXY protocol header's client
//! ([`crate::proxy_header`], pure) is the connection's (a connection without one is the
//! balancer's own); from anyone else a header closes the connection. Used by the relay's TCP and
//! TLS listeners and by natkit-signal's web and TLS ports.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy_header::{parse, Header, V2_MAX};

/// Is `peer` a load balancer whose PROXY headers are believed?
pub fn trusted(peer: SocketAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&peer.ip()))
}

/// Reads what the first bytes say before `deadline`: the client the connection speaks for and
/// the stream from its own first byte; or why it is closed (the label of
/// `natkit_signal_connections_refused_total`): `untrusted_proxy_header`, `bad_proxy_header`,
/// `closed_early`, `silent`.
pub async fn client_of(
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

/// A stream whose first bytes were read already: they are read again first.
pub struct Prefixed<IO> {
    head: Vec<u8>,
    at: usize,
    io: IO,
}

impl<IO> Prefixed<IO> {
    pub fn new(head: Vec<u8>, io: IO) -> Self {
        Prefixed { head, at: 0, io }
    }

    /// The next byte without taking it, read from the stream if need be before `deadline`:
    /// `Ok(None)` when the stream ended, `Err` when `deadline` passed first.
    pub async fn peek_byte(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<u8>, tokio::time::error::Elapsed>
    where
        IO: AsyncRead + Unpin,
    {
        if let Some(b) = self.head.get(self.at) {
            return Ok(Some(*b));
        }
        let mut b = [0u8; 1];
        match tokio::time::timeout_at(deadline, self.io.read(&mut b)).await? {
            Ok(1) => {
                self.head = b.to_vec();
                self.at = 0;
                Ok(Some(b[0]))
            }
            _ => Ok(None),
        }
    }

    /// The bytes not read yet, and the stream.
    pub fn into_parts(mut self) -> (Vec<u8>, IO) {
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
