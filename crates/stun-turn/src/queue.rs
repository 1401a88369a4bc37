//! The outgoing side of one TCP/TLS client connection: a bounded byte queue that the stream
//! shell's writer drains and the relayed sockets' pollers ([`crate::relayed`]) fill. A client that
//! stops reading loses relayed datagrams, as it would over UDP, and never grows the relay's memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntCounter;
use tokio::sync::Notify;

/// Bytes waiting to be written to one client; beyond this, relayed datagrams are dropped.
pub const QUEUE_BYTES: usize = 256 * 1024;

/// Bytes waiting for one connection's writer: frames are written into it directly (no buffer
/// per frame), and the writer takes the whole of it at once.
pub(crate) struct Outgoing {
    pub(crate) buf: Mutex<Vec<u8>>,
    pub(crate) ready: Notify,
    pub(crate) closed: AtomicBool,
}

/// The outgoing side of one connection, shared with the poller that reads its relayed socket.
#[derive(Clone)]
pub(crate) struct StreamQueue {
    pub(crate) out: Arc<Outgoing>,
    pub(crate) drops: IntCounter,
}

impl StreamQueue {
    /// Appends a frame of `len` bytes written by `write`; `false` (and counted) when the client
    /// is too far behind or the connection is closing.
    pub(crate) fn push_with(&self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut buf = self.out.buf.lock().expect("queue lock");
        if self.out.closed.load(Ordering::Relaxed) {
            return false;
        }
        if buf.len() + len > QUEUE_BYTES {
            drop(buf);
            self.drops.inc();
            return false;
        }
        let was_empty = buf.is_empty();
        write(&mut buf);
        drop(buf);
        if was_empty {
            self.out.ready.notify_one();
        }
        true
    }

    /// Appends a whole message.
    pub(crate) fn push(&self, message: &[u8]) -> bool {
        self.push_with(message.len(), |b| b.extend_from_slice(message))
    }

    pub(crate) fn close(&self) {
        self.out.closed.store(true, Ordering::Relaxed);
        self.out.ready.notify_one();
    }
}
