//! Batched UDP I/O on Linux: `recvmmsg(2)`, `sendmmsg(2)` and UDP generic segmentation offload,
//! for any socket that has a descriptor (std, tokio, mio). It does not wait: readiness belongs to
//! the caller's runtime (natkit-stun-turn's shells use tokio's, the bench blocks or polls).
//!
//! On Linux most of a relayed datagram's cost is the kernel's: entering it once per datagram to
//! read and once to write, and the IP path (routing, netfilter, the device) once per datagram
//! sent. [`RecvBatch`] reads up to its number of slots per call. [`try_send`] writes a slice of
//! datagrams with `sendmmsg`, consecutive datagrams to one destination of the same length leaving
//! as one GSO send (`UDP_SEGMENT`, Linux 4.18+): the kernel cuts one buffer into datagrams after
//! crossing the IP path once. Where GSO is refused the datagrams go one by one: after an EIO (a
//! device without checksum offload) GSO is off for the process, after an EINVAL (a segment over
//! the path MTU) for segments that long or longer. [`SendBatch`] is an owned queue sent one
//! datagram per message (the bench's traffic, which must look like a network's).
//!
//! This crate is where natkit's batched I/O keeps its `unsafe` code (the role quinn-udp plays for
//! quinn): it hands the kernel arrays of headers that point into buffers alive for the duration
//! of one call.
//!
//! # Layout
//! - [`RecvBatch`], [`Wait`]: reading.
//! - [`Datagram`], [`try_send`], [`SendBatch`], [`set_udp_segment`]: writing.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use socket2::{SockAddr, SockAddrStorage};

/// Largest UDP payload.
pub const MAX_DATAGRAM: usize = 65_536;
/// Datagrams per `sendmmsg` at most.
pub const MAX_PER_CALL: usize = 64;
/// Segments of one GSO send at most (the kernel's `UDP_MAX_SEGMENTS` since 4.18).
const MAX_SEGMENTS: usize = 64;
/// Bytes of one GSO send at most (under the 64 KiB an IP packet can carry).
const MAX_GSO_BYTES: usize = 65_000;

/// Cleared when the kernel refuses GSO with EIO (no checksum offload on the way out).
static GSO: AtomicBool = AtomicBool::new(true);
/// The largest segment the kernel took with GSO; lowered when a segment was over the path MTU.
static GSO_MAX_SEGMENT: AtomicUsize = AtomicUsize::new(MAX_DATAGRAM);

/// What [`RecvBatch::recv`] does when nothing is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Return `WouldBlock` at once (a non-blocking socket, or one polled through epoll).
    No,
    /// Block until one datagram arrives, then take what else is queued (a blocking socket).
    ForOne,
}

/// Receive slots for up to `slots` datagrams of at most `stride` bytes each, with the headers
/// `recvmmsg` fills in built once (they point into heap buffers, which stay put when the batch
/// moves). The buffer is reserved, not touched: a slot costs resident memory only once a datagram
/// that long has been read into it.
pub struct RecvBatch {
    data: Vec<u8>,
    stride: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point into `data`, `addrs` and `iovs`, heap
// buffers the batch owns and moves with it; nothing else holds them. Only `recv` (`&mut self`)
// hands them to the kernel; a shared reference reads plain data.
unsafe impl Send for RecvBatch {}
// SAFETY: as above; `&RecvBatch` offers reads only.
unsafe impl Sync for RecvBatch {}

impl RecvBatch {
    /// `slots` datagrams a call at most, each cut to `stride` bytes ([`MAX_DATAGRAM`]: never
    /// cut).
    pub fn new(slots: usize, stride: usize) -> Self {
        assert!(slots > 0 && stride > 0, "a batch holds at least one byte");
        let mut data = vec![0u8; stride * slots];
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { zeroed() }; slots];
        let mut iovs: Vec<libc::iovec> = (0..slots)
            .map(|i| libc::iovec {
                iov_base: data[i * stride..].as_mut_ptr().cast(),
                iov_len: stride,
            })
            .collect();
        let hdrs = (0..slots)
            .map(|i| {
                // SAFETY: mmsghdr is plain old data; the fields that matter are set below.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_iov = &mut iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch {
            data,
            stride,
            addrs,
            iovs,
            hdrs,
            count: 0,
        }
    }

    /// How many datagrams one call reads at most.
    pub fn slots(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives up to [`RecvBatch::slots`] datagrams from `sock` in one call and returns how
    /// many; `WouldBlock` when none is queued (with [`Wait::No`]). A read that returns fewer than
    /// the slots found the queue empty: callers clear readiness then instead of paying one more
    /// call to see `WouldBlock`.
    pub fn recv(&mut self, sock: &impl AsRawFd, wait: Wait) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        let flags = match wait {
            Wait::No => libc::MSG_DONTWAIT,
            Wait::ForOne => libc::MSG_WAITFORONE,
        };
        // SAFETY: every header points at its own iovec (covering `stride` bytes of `self.data`)
        // and address buffer; all are heap allocations owned by `self`, alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        Ok(self.count)
    }

    /// How many datagrams the last [`RecvBatch::recv`] brought.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last read (cut to the stride).
    pub fn payload(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "datagram {i} of {}", self.count);
        let start = i * self.stride;
        let len = (self.hdrs[i].msg_len as usize).min(self.stride);
        debug_assert_eq!(self.iovs[i].iov_len, self.stride);
        &self.data[start..start + len]
    }

    /// Where datagram `i` came from (`None` for an address family other than IPv4 and IPv6).
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        assert!(i < self.count, "datagram {i} of {}", self.count);
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: `view_as` is given the platform's own storage type; the kernel wrote a socket
        // address of `msg_namelen` bytes into `addrs[i]`, which is what `SockAddr::new` needs.
        let addr = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.addrs[i];
            SockAddr::new(storage, self.hdrs[i].msg_hdr.msg_namelen)
        };
        addr.as_socket()
    }

    /// Datagram `i` and its source.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        (self.payload(i), self.source(i))
    }
}

/// One datagram to send; `to` is `None` on a connected socket.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub bytes: &'a [u8],
    pub to: Option<SocketAddr>,
}

/// Sends what it can of `out` on `sock` without waiting, in order: consecutive datagrams to one
/// destination and of one length (the last of such a run may be shorter) leave as one GSO send.
/// `sent(i)` is called for each datagram the kernel took. Returns how many datagrams were dealt
/// with: all of them, unless the send buffer filled (`WouldBlock`), and the rest waits. A
/// datagram the kernel refuses otherwise (an unreachable route, a size over the path MTU, a
/// peer's ICMP error surfacing) is dropped, as UDP drops it, and counts as dealt with.
pub fn try_send(sock: &impl AsRawFd, out: &[Datagram<'_>], mut sent: impl FnMut(usize)) -> usize {
    let fd = sock.as_raw_fd();
    let mut first = 0;
    while first < out.len() {
        let end = (first + MAX_PER_CALL).min(out.len());
        let chunk = &out[first..end];
        if let [one] = chunk {
            // One datagram (the usual case with many allocations): a plain send costs less than
            // a sendmmsg of one, and needs no plan.
            match send_one(fd, one) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return first,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "dropped");
                    first += 1;
                }
                Ok(()) => {
                    sent(first);
                    first += 1;
                }
            }
            continue;
        }
        let runs = plan_runs(chunk, GSO.load(Ordering::Relaxed));
        match send_runs(fd, chunk, &runs) {
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
                        tracing::debug!(error = %e, datagrams = len, "dropped");
                        first += len;
                    }
                }
            }
        }
    }
    out.len()
}

/// Groups `out` into runs `(start, len)` that can leave as one GSO send each (each datagram its
/// own run without `gso`).
fn plan_runs(out: &[Datagram<'_>], gso: bool) -> Vec<(usize, usize)> {
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

/// One `sendto` (a `send` on a connected socket), without waiting.
fn send_one(fd: i32, d: &Datagram<'_>) -> io::Result<()> {
    let addr = d.to.map(SockAddr::from);
    let (name, len) = match &addr {
        Some(a) => (a.as_ptr(), a.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: the buffer and the address (or null and 0) are alive for the call; the kernel
    // only reads them.
    let n = unsafe {
        libc::sendto(
            fd,
            d.bytes.as_ptr().cast(),
            d.bytes.len(),
            libc::MSG_DONTWAIT,
            name.cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    let addrs: Vec<Option<SockAddr>> = runs
        .iter()
        .map(|&(s, _)| out[s].to.map(SockAddr::from))
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
            if let Some(addr) = addr {
                h.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = addr.len();
            }
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
    // (or none) and at a control buffer in `cmsgs`, all alive for the call; the kernel only reads
    // them.
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

/// Datagrams queued for `sendmmsg`, each with its own destination (or none, on a connected
/// socket), each sent as a datagram of its own: no GSO, so that traffic looks like a network's
/// (one skb per datagram). Callers flush when [`SendBatch::is_full`].
#[derive(Default)]
pub struct SendBatch {
    data: Vec<u8>,
    spans: Vec<(usize, usize, Option<SocketAddr>)>,
}

impl SendBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// One `sendmmsg`'s worth is queued.
    pub fn is_full(&self) -> bool {
        self.spans.len() >= MAX_PER_CALL
    }

    /// Queues one datagram.
    pub fn push(&mut self, payload: &[u8], dest: Option<SocketAddr>) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.spans.push((start, payload.len(), dest));
    }

    /// Sends what is queued on `sock` and empties the batch. Returns how many datagrams the
    /// kernel took: on a full socket (`WouldBlock` part-way) the rest are dropped, as a relay
    /// drops what it cannot send; a peer's ICMP port unreachable, surfacing on a send, skips one.
    pub fn flush(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        let out: Vec<Datagram<'_>> = self
            .spans
            .iter()
            .map(|&(start, len, to)| Datagram {
                bytes: &self.data[start..start + len],
                to,
            })
            .collect();
        let mut sent = 0;
        let mut at = 0;
        let result = loop {
            if at == out.len() {
                break Ok(sent);
            }
            let chunk = &out[at..(at + MAX_PER_CALL).min(out.len())];
            let singles: Vec<(usize, usize)> = (0..chunk.len()).map(|i| (i, 1)).collect();
            match send_runs(sock.as_raw_fd(), chunk, &singles) {
                Ok(n) => {
                    sent += n;
                    at += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(sent),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => at += 1,
                Err(e) => break Err(e),
            }
        };
        drop(out);
        self.data.clear();
        self.spans.clear();
        result
    }
}

/// Asks the kernel to cut every send on `sock` longer than `segment` bytes into datagrams of
/// `segment` bytes (UDP generic segmentation offload, Linux 4.18+): one `send` of `k * segment`
/// contiguous bytes then leaves as `k` datagrams, for the cost of about one on the way out.
pub fn set_udp_segment(sock: &impl AsRawFd, segment: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(segment).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the option value is a c_int on the stack, passed with its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
