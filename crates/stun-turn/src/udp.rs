//! The relay's UDP sockets and their batched I/O.
//!
//! On Linux most of a relayed datagram's cost is the kernel's: entering it once per datagram to
//! read and once to write, and the IP path (routing, netfilter, the device) once per datagram
//! sent. So the shells read with `recvmmsg(2)`, up to [`SLOTS`] datagrams per call, and write
//! with `sendmmsg(2)`, in which consecutive datagrams to one destination of the same length
//! leave as one GSO send (`UDP_SEGMENT`, Linux 4.18+): the kernel cuts one buffer into datagrams
//! after crossing the IP path once. Where GSO is refused the datagrams go one by one: after an
//! EIO (a device without checksum offload) GSO is off for the process, after an EINVAL (a segment
//! over the path MTU) for segments that long or longer.
//!
//! Readiness is tokio's ([`AsyncFd`]); a read that returns fewer datagrams than it asked for
//! found the queue empty, so the shells clear readiness then instead of paying one more call to
//! see `WouldBlock`.
//!
//! This module holds most of the crate's `unsafe` code (the rest is the pollers' epoll set in
//! [`crate::relayed`]): it hands the kernel arrays of headers that point into buffers alive for
//! the duration of one call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use socket2::{SockAddr, SockAddrStorage};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

/// Datagrams per `recvmmsg` at most.
pub(crate) const SLOTS: usize = 32;
/// Datagrams per `sendmmsg` at most.
const MAX_PER_CALL: usize = 64;
/// Segments of one GSO send at most (the kernel's `UDP_MAX_SEGMENTS` since 4.18).
const MAX_SEGMENTS: usize = 64;
/// Bytes of one GSO send at most (under the 64 KiB an IP packet can carry).
const MAX_GSO_BYTES: usize = 65_000;

/// Milliseconds a send waits at most for room in a full send buffer (4 MiB: only overload fills
/// it).
const FULL_BUFFER_WAIT: u32 = 20;

/// Cleared when the kernel refuses GSO with EIO (no checksum offload on the way out).
static GSO: AtomicBool = AtomicBool::new(true);
/// The largest segment the kernel took with GSO; lowered when a segment was over the path MTU.
/// Largest UDP payload; datagrams are never truncated.
pub(crate) const MAX_DATAGRAM: usize = 65_536;

static GSO_MAX_SEGMENT: AtomicUsize = AtomicUsize::new(MAX_DATAGRAM);

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
        batch.recv(self.sock.as_raw_fd())
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

    /// Sends what it can of `out`, in order: consecutive datagrams to one destination and of one
    /// length (the last of such a run may be shorter) leave as one GSO send. `sent(i)` is called
    /// for each datagram the kernel took. Returns how many datagrams were dealt with: all of them,
    /// unless the send buffer filled (`WouldBlock`), and the rest waits. A datagram the kernel
    /// refuses otherwise (an unreachable route, a size over the path MTU) is dropped, as UDP
    /// drops it, and counts as dealt with.
    pub(crate) fn try_send_batch(
        &self,
        out: &[Datagram<'_>],
        mut sent: impl FnMut(usize),
    ) -> usize {
        if let [one] = out {
            // One datagram: sendto costs less than a sendmmsg of one.
            return match self.try_send_to(one.bytes, one.to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.try_send_batch(out, sent),
                Err(e) => {
                    tracing::debug!(error = %e, to = %one.to, "dropped");
                    1
                }
                Ok(_) => {
                    sent(0);
                    1
                }
            };
        }
        let fd = self.sock.as_raw_fd();
        let mut first = 0;
        while first < out.len() {
            let end = (first + MAX_PER_CALL).min(out.len());
            let runs = plan_runs(&out[first..end]);
            match send_runs(fd, &out[first..end], &runs) {
                Ok(messages) => {
                    for &(start, len) in &runs[..messages] {
                        (start..start + len).for_each(|i| sent(first + i));
                    }
                    first += runs[..messages].iter().map(|r| r.1).sum::<usize>();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return first,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let (_, len) = runs[0];
                    let segment = out[first].bytes.len();
                    match e.raw_os_error() {
                        // GSO refused: this run goes again, one by one.
                        Some(libc::EIO) if len > 1 => {
                            GSO.store(false, Ordering::Relaxed);
                            tracing::info!(error = %e, "UDP GSO refused by the kernel; sending datagrams one by one from now on");
                        }
                        // A segment over the path MTU.
                        Some(libc::EINVAL | libc::EMSGSIZE) if len > 1 => {
                            GSO_MAX_SEGMENT.fetch_min(segment - 1, Ordering::Relaxed);
                        }
                        _ => {
                            tracing::debug!(error = %e, to = %out[first].to, datagrams = len, "dropped");
                            first += len;
                        }
                    }
                }
            }
        }
        out.len()
    }
}

/// One datagram to send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Datagram<'a> {
    pub bytes: &'a [u8],
    pub to: SocketAddr,
}

/// Groups `out` into runs `(start, len)` that can leave as one GSO send each.
fn plan_runs(out: &[Datagram<'_>]) -> Vec<(usize, usize)> {
    let gso = GSO.load(Ordering::Relaxed);
    let max_segment = GSO_MAX_SEGMENT.load(Ordering::Relaxed);
    let mut runs = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        let head = out[i];
        let segment = head.bytes.len();
        let mut bytes = segment;
        let mut k = i + 1;
        if gso && segment > 0 && segment <= max_segment {
            while k < out.len() && k - i < MAX_SEGMENTS {
                let d = out[k];
                if d.to != head.to
                    || d.bytes.is_empty()
                    || d.bytes.len() > segment
                    || bytes + d.bytes.len() > MAX_GSO_BYTES
                {
                    break;
                }
                bytes += d.bytes.len();
                k += 1;
                if d.bytes.len() < segment {
                    break;
                }
            }
        }
        runs.push((i, k - i));
        i = k;
    }
    runs
}

/// Room for one control message carrying a u16 (UDP_SEGMENT), aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SegmentCmsg([u8; 32]);

/// One `sendmmsg` of `runs` over `out`; returns how many runs (messages) the kernel took.
fn send_runs(fd: i32, out: &[Datagram<'_>], runs: &[(usize, usize)]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = out
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.bytes.as_ptr() as *mut libc::c_void,
            iov_len: d.bytes.len(),
        })
        .collect();
    let addrs: Vec<SockAddr> = runs
        .iter()
        .map(|&(s, _)| SockAddr::from(out[s].to))
        .collect();
    let mut cmsgs = vec![SegmentCmsg([0; 32]); runs.len()];
    // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic on the size of a u16.
    let (space, cmsg_len) = unsafe {
        (
            libc::CMSG_SPACE(size_of::<u16>() as u32) as usize,
            libc::CMSG_LEN(size_of::<u16>() as u32) as usize,
        )
    };
    debug_assert!(space <= size_of::<SegmentCmsg>());
    let iov_base = iovs.as_mut_ptr();
    let mut hdrs: Vec<libc::mmsghdr> = runs
        .iter()
        .zip(&addrs)
        .zip(cmsgs.iter_mut())
        .map(|((&(start, len), addr), cmsg)| {
            // SAFETY: mmsghdr is plain old data; the fields that matter are set here.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = addr.len();
            // SAFETY: `start + len <= iovs.len()`: the run is a range of `out`.
            h.msg_hdr.msg_iov = unsafe { iov_base.add(start) };
            h.msg_hdr.msg_iovlen = len as _;
            if len > 1 {
                h.msg_hdr.msg_control = cmsg.0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = space as _;
                // SAFETY: the control buffer is `space` bytes, room for one header and a u16;
                // CMSG_FIRSTHDR returns its start, CMSG_DATA the aligned data within it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = cmsg_len as _;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(c).cast::<u16>(),
                        out[start].bytes.len() as u16,
                    );
                }
            }
            h
        })
        .collect();
    // SAFETY: every header points at iovecs over the caller's buffers, at an address in `addrs`
    // and at a control buffer in `cmsgs`, all alive for the call; the kernel only reads them.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Receive slots for [`SLOTS`] datagrams of any size.
/// The 2 MiB they span is reserved, not touched: a slot costs resident memory only once a
/// datagram that long has been read into it.
pub(crate) struct RecvBatch {
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    names: [libc::socklen_t; SLOTS],
    lens: [usize; SLOTS],
    count: usize,
}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            data: vec![0u8; SLOTS * MAX_DATAGRAM],
            // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
            addrs: vec![unsafe { zeroed() }; SLOTS],
            names: [0; SLOTS],
            lens: [0; SLOTS],
            count: 0,
        }
    }

    fn recv(&mut self, fd: i32) -> io::Result<usize> {
        let base = self.data.as_mut_ptr();
        let mut iovs: [libc::iovec; SLOTS] = std::array::from_fn(|i| libc::iovec {
            // SAFETY: slot i lies within `data` (SLOTS * MAX_DATAGRAM bytes).
            iov_base: unsafe { base.add(i * MAX_DATAGRAM) }.cast(),
            iov_len: MAX_DATAGRAM,
        });
        let addrs = self.addrs.as_mut_ptr();
        let mut hdrs: [libc::mmsghdr; SLOTS] = std::array::from_fn(|i| {
            // SAFETY: mmsghdr is plain old data; the fields that matter are set here.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            // SAFETY: `addrs` has SLOTS entries.
            h.msg_hdr.msg_name = unsafe { addrs.add(i) }.cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h
        });
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own iovec (one slot of `data`) and address buffer,
        // all owned by `self` or this frame and alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        for (i, h) in hdrs.iter().take(self.count).enumerate() {
            self.lens[i] = h.msg_len as usize;
            self.names[i] = h.msg_hdr.msg_namelen;
        }
        Ok(self.count)
    }

    /// How many datagrams the last read brought.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Datagram `i` of the last read.
    pub(crate) fn payload(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "datagram {i} of {}", self.count);
        let start = i * MAX_DATAGRAM;
        &self.data[start..start + self.lens[i]]
    }

    /// Where datagram `i` came from (None for an address family the relay does not serve).
    pub(crate) fn source(&self, i: usize) -> Option<SocketAddr> {
        assert!(i < self.count, "datagram {i} of {}", self.count);
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: `view_as` is given the platform's own storage type; the kernel wrote a socket
        // address of `names[i]` bytes into `addrs[i]`, which is what `SockAddr::new` needs.
        let addr = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.addrs[i];
            SockAddr::new(storage, self.names[i])
        };
        addr.as_socket()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn to(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn runs_group_one_destination_and_length_with_a_shorter_last() {
        static A: [u8; 100] = [7; 100];
        static SHORT: [u8; 40] = [7; 40];
        static LONG: [u8; 200] = [7; 200];
        static BIG: [u8; 20_000] = [1; 20_000];
        let (a, short, long, big): (&[u8], &[u8], &[u8], &[u8]) = (&A, &SHORT, &LONG, &BIG);
        let d = |bytes: &'static [u8], port| Datagram {
            bytes,
            to: to(port),
        };
        type Row<'a> = (Vec<Datagram<'a>>, Vec<(usize, usize)>);
        let cases: Vec<Row> = vec![
            (vec![], vec![]),
            (vec![d(a, 1)], vec![(0, 1)]),
            (vec![d(a, 1), d(a, 1), d(a, 1)], vec![(0, 3)]),
            // A shorter datagram ends the run it joins.
            (
                vec![d(a, 1), d(short, 1), d(a, 1), d(a, 1)],
                vec![(0, 2), (2, 2)],
            ),
            // A longer one starts a new run; so does another destination.
            (vec![d(a, 1), d(long, 1), d(long, 1)], vec![(0, 1), (1, 2)]),
            (
                vec![d(a, 1), d(a, 2), d(a, 2), d(a, 1)],
                vec![(0, 1), (1, 2), (3, 1)],
            ),
        ];
        for (out, want) in cases {
            assert_eq!(plan_runs(&out), want, "{out:?}");
        }
        // At most MAX_SEGMENTS segments and MAX_GSO_BYTES bytes per run.
        let many = vec![d(a, 1); 150];
        assert_eq!(plan_runs(&many), vec![(0, 64), (64, 64), (128, 22)]);
        assert_eq!(
            plan_runs(&vec![d(big, 1); 5]),
            vec![(0, 3), (3, 2)],
            "3 x 20,000 bytes fit in 65,000, 4 do not"
        );
    }

    fn drain(rx: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 70_000];
        while got.len() < want {
            let n = rx.recv(&mut buf).expect("datagram");
            got.push(buf[..n].to_vec());
        }
        got
    }

    #[tokio::test]
    async fn a_batch_to_two_destinations_arrives_as_separate_datagrams_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let tx = Udp::new(tx).unwrap();
        // Runs of equal sizes to `a` (GSO), a shorter tail, then single datagrams to `b`.
        let payloads: Vec<Vec<u8>> = (0..100u8)
            .map(|i| match i {
                0..=39 => vec![i; 300],
                40 => vec![i; 17],
                _ => vec![i; 1 + i as usize],
            })
            .collect();
        let out: Vec<Datagram> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Datagram {
                bytes: p,
                to: if i <= 40 {
                    a.local_addr().unwrap()
                } else {
                    b.local_addr().unwrap()
                },
            })
            .collect();
        let mut sent = Vec::new();
        tx.send_batch(&out, |i| sent.push(i)).await;
        assert_eq!(sent, (0..100).collect::<Vec<_>>());
        assert_eq!(drain(&a, 41), payloads[..41].to_vec());
        assert_eq!(drain(&b, 59), payloads[41..].to_vec());
    }

    #[tokio::test]
    async fn a_batch_reads_every_queued_datagram_with_its_source() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let addr = rx.local_addr().unwrap();
        let rx = Udp::new(rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new();
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
