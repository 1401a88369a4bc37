//! The relay's UDP sockets: registered with tokio for readiness, read and written in batches by
//! natkit-udp (`recvmmsg`, `sendmmsg` and UDP GSO, where the batched I/O's `unsafe` code lives).
//!
//! Readiness is tokio's ([`AsyncFd`]); a read that returns fewer datagrams than it asked for
//! found the queue empty, so the shells clear readiness then instead of paying one more call to
//! see `WouldBlock`. A send that finds the buffer full waits for room, a millisecond at a time,
//! up to [`FULL_BUFFER_WAIT`] (only overload fills a 4 MiB buffer).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use natkit_udp::Wait;
pub(crate) use natkit_udp::{Datagram, RecvBatch, MAX_DATAGRAM};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// Datagrams per `recvmmsg` at most.
pub(crate) const SLOTS: usize = 32;
/// Milliseconds a send waits at most for room in a full send buffer (4 MiB: only overload fills
/// it).
const FULL_BUFFER_WAIT: u32 = 20;

/// Receive slots for [`SLOTS`] datagrams of any size (2 MiB reserved, touched only as long
/// datagrams arrive).
pub(crate) fn recv_batch() -> RecvBatch {
    RecvBatch::new(SLOTS, MAX_DATAGRAM)
}

/// A non-blocking UDP socket, registered with tokio for reading or (a relayed socket, which the
/// [`crate::relayed`] poller watches) not.
pub(crate) struct Udp {
    // Declared first, so it is dropped (deregistered) before the socket closes.
    ready: Option<AsyncFd<RawFd>>,
    sock: std::net::UdpSocket,
}

/// Readiness to read, from [`Udp::readable`]; cleared by the shells when a read found the queue
/// empty.
pub(crate) type ReadGuard<'a> = AsyncFdReadyGuard<'a, RawFd>;

impl Udp {
    /// `socket` must be non-blocking. Registered with tokio for reading: [`Udp::readable`] works.
    pub(crate) fn new(socket: std::net::UdpSocket) -> io::Result<Udp> {
        // Readable only: with EPOLLOUT in the set, every datagram the kernel frees would queue a
        // writability event for the driver. A full send buffer is waited out by polling
        // ([`Udp::send_to`]), which only happens under overload.
        // SAFETY: the descriptor belongs to `sock`, which stays open and the same until `ready`
        // has been dropped (field order).
        let ready =
            unsafe { AsyncFd::register_with_interest(socket.as_raw_fd(), Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
        Ok(Udp {
            ready: Some(ready),
            sock: socket,
        })
    }

    /// `socket` must be non-blocking. Not registered with tokio: read through a poller.
    pub(crate) fn unregistered(socket: std::net::UdpSocket) -> Udp {
        Udp {
            ready: None,
            sock: socket,
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Waits until the socket is readable (an error for an unregistered socket).
    pub(crate) async fn readable(&self) -> io::Result<ReadGuard<'_>> {
        match &self.ready {
            Some(r) => r.readable().await,
            None => Err(io::Error::other("socket not registered for reading")),
        }
    }

    /// Reads up to [`SLOTS`] queued datagrams into `batch`; `WouldBlock` when none is queued.
    pub(crate) fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.recv(&self.sock, Wait::No)
    }

    /// Sends one datagram now, or returns `WouldBlock`.
    pub(crate) fn try_send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(bytes, to)
    }

    /// Sends one datagram, waiting while the socket's send buffer is full, up to
    /// [`FULL_BUFFER_WAIT`]; then `WouldBlock` (the datagram is dropped, as an overloaded
    /// interface drops it).
    pub(crate) async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        let mut waits = FULL_BUFFER_WAIT;
        loop {
            match self.try_send_to(bytes, to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && waits > 0 => {
                    waits -= 1;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                r => return r,
            }
        }
    }

    /// Sends `out` in order, waiting while the send buffer is full as [`Udp::send_to`] does;
    /// `sent(i)` is called for each datagram the kernel took. Returns how many were dealt with
    /// (see [`Udp::try_send_batch`]); the rest found the buffer full for too long.
    pub(crate) async fn send_batch(
        &self,
        out: &[Datagram<'_>],
        mut sent: impl FnMut(usize),
    ) -> usize {
        let mut done = self.try_send_batch(out, &mut sent);
        let mut waits = FULL_BUFFER_WAIT;
        while done < out.len() && waits > 0 {
            waits -= 1;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            done += self.try_send_batch(&out[done..], |i| sent(done + i));
        }
        done
    }

    /// Sends what it can of `out` now ([`natkit_udp::try_send`]: GSO runs, `WouldBlock` stops,
    /// other refusals drop); returns how many datagrams were dealt with.
    pub(crate) fn try_send_batch(&self, out: &[Datagram<'_>], sent: impl FnMut(usize)) -> usize {
        natkit_udp::try_send(&self.sock, out, sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[tokio::test]
    async fn a_batch_reads_every_queued_datagram_with_its_source() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let addr = rx.local_addr().unwrap();
        let rx = Udp::new(rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = recv_batch();
        assert_eq!(
            rx.recv_batch(&mut batch).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // Longer than any MTU, and more than one batch.
        let sizes: Vec<usize> = (0..40)
            .map(|i| if i == 5 { 65_000 } else { 10 + i })
            .collect();
        for (i, &n) in sizes.iter().enumerate() {
            tx.send_to(&vec![i as u8; n], addr).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < sizes.len() {
            let _ = rx.readable().await.unwrap();
            let n = match rx.recv_batch(&mut batch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            };
            assert!(n <= SLOTS);
            for i in 0..n {
                assert_eq!(batch.source(i), Some(tx.local_addr().unwrap()));
                got.push(batch.payload(i).to_vec());
            }
        }
        let want: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u8; n])
            .collect();
        assert_eq!(got, want);
    }
}
