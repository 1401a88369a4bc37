//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)`, up to [`BATCH`] datagrams per system call.
//!
//! On loopback most of a datagram's cost is the kernel's, and a good part of that is entering and
//! leaving it once per datagram. The load generator, the echo peer and the forwarder use these
//! batches so that they spend less of the machine's two cores than the servers they measure.
//!
//! This module is the crate's only `unsafe` code: it hands the kernel arrays of headers that
//! point into buffers owned by the batch, for the duration of one call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams per system call at most.
pub const BATCH: usize = 64;

/// What [`RecvBatch::recv`] does when nothing is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Return `WouldBlock` at once (for sockets polled through epoll).
    No,
    /// Block until one datagram arrives, then take what else is queued (a blocking socket).
    ForOne,
}

/// Receive buffers for up to [`BATCH`] datagrams of at most `stride` bytes each, with the
/// headers `recvmmsg` fills in built once (they point into heap buffers, which stay put when the
/// batch moves).
pub struct RecvBatch {
    data: Vec<u8>,
    stride: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    count: usize,
}

impl RecvBatch {
    pub fn new(stride: usize) -> Self {
        let mut data = vec![0u8; stride * BATCH];
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
        let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { zeroed() }; BATCH];
        let mut iovs: Vec<libc::iovec> = (0..BATCH)
            .map(|i| libc::iovec {
                iov_base: data[i * stride..].as_mut_ptr().cast(),
                iov_len: stride,
            })
            .collect();
        let hdrs = (0..BATCH)
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

    /// Receives up to [`BATCH`] datagrams from `sock` in one call and returns how many; they are
    /// then read with [`RecvBatch::get`]. Datagrams longer than `stride` are truncated.
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
                BATCH as libc::c_uint,
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

    /// Datagram `i` of the last [`RecvBatch::recv`], with its source address.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        assert!(i < self.count, "datagram {i} of {}", self.count);
        let start = i * self.stride;
        let len = (self.hdrs[i].msg_len as usize).min(self.stride);
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: `view_as` is given the platform's own storage type; the kernel wrote a socket
        // address of `msg_namelen` bytes into `addrs[i]`, which is what `SockAddr::new` needs.
        let addr = unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.addrs[i];
            SockAddr::new(storage, self.hdrs[i].msg_hdr.msg_namelen)
        };
        debug_assert_eq!(self.iovs[i].iov_len, self.stride);
        (&self.data[start..start + len], addr.as_socket())
    }
}

/// Up to [`BATCH`] datagrams queued for one `sendmmsg(2)`, each with its own destination (or
/// none, on a connected socket).
#[derive(Default)]
pub struct SendBatch {
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
    dests: Vec<Option<SockAddr>>,
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

    pub fn is_full(&self) -> bool {
        self.spans.len() >= BATCH
    }

    /// Queues one datagram. Callers flush when [`SendBatch::is_full`].
    pub fn push(&mut self, payload: &[u8], dest: Option<SocketAddr>) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.spans.push((start, payload.len()));
        self.dests.push(dest.map(SockAddr::from));
    }

    /// Sends what is queued on `sock` and empties the batch. Returns how many datagrams the kernel
    /// took: on a full non-blocking socket (`WouldBlock` part-way), the rest are dropped, as a
    /// relay drops what it cannot send.
    pub fn flush(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        let total = self.spans.len();
        let mut sent = 0;
        let result = loop {
            if sent == total {
                break Ok(sent);
            }
            match self.send_from(sock, sent) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(sent),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A peer's ICMP port unreachable surfaces on the next send; skip that datagram.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => sent += 1,
                Err(e) => break Err(e),
            }
        };
        self.data.clear();
        self.spans.clear();
        self.dests.clear();
        result
    }

    fn send_from(&mut self, sock: &impl AsRawFd, first: usize) -> io::Result<usize> {
        let count = (self.spans.len() - first).min(BATCH);
        let mut iovs: Vec<libc::iovec> = self.spans[first..first + count]
            .iter()
            .map(|&(start, len)| libc::iovec {
                iov_base: self.data[start..].as_mut_ptr().cast(),
                iov_len: len,
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(&self.dests[first..first + count])
            .map(|(iov, dest)| {
                // SAFETY: mmsghdr is plain old data; the fields that matter are set below.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                if let Some(d) = dest {
                    h.msg_hdr.msg_name = d.as_ptr() as *mut libc::c_void;
                    h.msg_hdr.msg_namelen = d.len();
                }
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: the headers point at iovecs over `self.data` and at addresses in `self.dests`,
        // all of which outlive the call; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_batch_sent_to_several_destinations_arrives_whole_and_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = SendBatch::new();
        for i in 0..100u8 {
            let dest = if i % 2 == 0 { &a } else { &b };
            out.push(&vec![i; 1 + i as usize], Some(dest.local_addr().unwrap()));
            if out.is_full() {
                assert_eq!(out.flush(&tx).unwrap(), BATCH);
            }
        }
        assert_eq!(out.flush(&tx).unwrap(), 100 - BATCH);
        assert!(out.is_empty());

        for (sock, parity) in [(&a, 0u8), (&b, 1u8)] {
            let mut got = Vec::new();
            let mut batch = RecvBatch::new(2048);
            while got.len() < 50 {
                let n = batch.recv(sock, Wait::ForOne).unwrap();
                for i in 0..n {
                    let (data, from) = batch.get(i);
                    assert_eq!(from, Some(tx.local_addr().unwrap()));
                    got.push(data.to_vec());
                }
            }
            let want: Vec<Vec<u8>> = (0..100u8)
                .filter(|i| i % 2 == parity)
                .map(|i| vec![i; 1 + i as usize])
                .collect();
            assert_eq!(got, want);
            assert_eq!(
                batch.recv(sock, Wait::No).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
        }
    }

    #[test]
    fn a_connected_socket_sends_without_destinations_and_long_datagrams_are_cut_to_the_stride() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let mut out = SendBatch::new();
        out.push(&[7; 300], None);
        out.push(&[8; 10], None);
        assert_eq!(out.flush(&tx).unwrap(), 2);
        let mut batch = RecvBatch::new(100);
        let mut lens = Vec::new();
        while lens.len() < 2 {
            let n = batch.recv(&rx, Wait::ForOne).unwrap();
            lens.extend((0..n).map(|i| batch.get(i).0.len()));
        }
        assert_eq!(lens, vec![100, 10]);
    }
}
