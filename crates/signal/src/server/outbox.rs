//! One connection's outgoing queue: what the rooms send it, waiting for its writer, and the
//! switch that closes the connection (eviction: a full queue, an id taken over). Bounded in
//! messages and in bytes (a connection that lets it fill is closed, never left with a gap: a
//! peer that never reads must not make the server hold 256 maximum-size frames for it) and
//! empty-cheap: no buffer is held while nothing waits, which matters at tens of thousands of
//! idle peers (docs/signaling-performance.md): a tokio channel keeps a 32-slot block per
//! connection and a watch channel ~0.3 KiB.

use std::collections::VecDeque;
use std::sync::Mutex;

use axum::extract::ws::Message;
use tokio::sync::Notify;

/// The queue is full (or closed): the message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Full;

/// What a message adds to the queue's byte count.
fn payload_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.as_str().len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(c) => c.as_ref().map_or(0, |c| 2 + c.reason.as_str().len()),
    }
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Message>,
    /// Payload bytes of what is queued.
    bytes: usize,
    closed: bool,
    /// Why the connection is to be closed (code 1013), once it is.
    evicted: Option<&'static str>,
}

pub(super) struct Outbox {
    limit: usize,
    limit_bytes: usize,
    inner: Mutex<Inner>,
    ready: Notify,
    evicted: Notify,
}

impl Outbox {
    /// At most `limit` messages of `limit_bytes` payload bytes in all wait at once; a single
    /// message over `limit_bytes` is never queued.
    pub(super) fn new(limit: usize, limit_bytes: usize) -> Outbox {
        Outbox {
            limit,
            limit_bytes,
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            evicted: Notify::new(),
        }
    }

    pub(super) fn try_send(&self, m: Message) -> Result<(), Full> {
        let mut g = self.inner.lock().expect("outbox lock");
        let len = payload_len(&m);
        if g.closed || g.queue.len() >= self.limit || g.bytes + len > self.limit_bytes {
            return Err(Full);
        }
        g.bytes += len;
        g.queue.push_back(m);
        drop(g);
        self.ready.notify_one();
        Ok(())
    }

    /// The next message; `None` once closed and drained.
    pub(super) async fn recv(&self) -> Option<Message> {
        loop {
            {
                let mut g = self.inner.lock().expect("outbox lock");
                if let Some(m) = g.queue.pop_front() {
                    g.bytes -= payload_len(&m);
                    if g.queue.is_empty() {
                        // Nothing waits: hold no buffer.
                        g.queue = VecDeque::new();
                    }
                    return Some(m);
                }
                if g.closed {
                    return None;
                }
            }
            // notify_one keeps a permit when the writer is not waiting yet: nothing is missed.
            self.ready.notified().await;
        }
    }

    /// No more messages are taken; the writer ends once it has sent what is queued.
    pub(super) fn close(&self) {
        self.inner.lock().expect("outbox lock").closed = true;
        self.ready.notify_one();
    }

    /// Closes the connection for `why`: nothing more is taken, what is queued is dropped (or,
    /// with `keep_queued`, sent first), then the close frame. True the first time.
    pub(super) fn evict(&self, why: &'static str, keep_queued: bool) -> bool {
        let mut g = self.inner.lock().expect("outbox lock");
        if g.evicted.is_some() {
            return false;
        }
        g.evicted = Some(why);
        g.closed = true;
        if !keep_queued {
            g.queue = VecDeque::new();
            g.bytes = 0;
        }
        drop(g);
        self.ready.notify_one();
        self.evicted.notify_one();
        true
    }

    /// Why the connection was evicted, if it was.
    pub(super) fn eviction(&self) -> Option<&'static str> {
        self.inner.lock().expect("outbox lock").evicted
    }

    /// Completes once the connection is evicted, with why.
    pub(super) async fn wait_evicted(&self) -> &'static str {
        loop {
            if let Some(why) = self.eviction() {
                return why;
            }
            self.evicted.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_ordered_and_closed() {
        let o = std::sync::Arc::new(Outbox::new(2, 1024));
        assert_eq!(o.try_send(Message::Text("a".into())), Ok(()));
        assert_eq!(o.try_send(Message::Text("b".into())), Ok(()));
        assert_eq!(
            o.try_send(Message::Text("c".into())),
            Err(Full),
            "full at the limit"
        );
        assert_eq!(o.recv().await, Some(Message::Text("a".into())));
        // A waiting writer is woken by the next message.
        let w = std::sync::Arc::clone(&o);
        let reader = tokio::spawn(async move {
            let b = w.recv().await;
            let d = w.recv().await;
            (b, d, w.recv().await)
        });
        tokio::task::yield_now().await;
        o.try_send(Message::Text("d".into())).unwrap();
        o.close();
        assert_eq!(o.try_send(Message::Text("e".into())), Err(Full), "closed");
        let (b, d, end) = reader.await.unwrap();
        assert_eq!(b, Some(Message::Text("b".into())));
        assert_eq!(d, Some(Message::Text("d".into())));
        assert_eq!(end, None);
        assert_eq!(o.eviction(), None);
    }

    #[tokio::test]
    async fn bytes_are_bounded_too() {
        let o = Outbox::new(10, 10);
        let text = |n: usize| Message::Text("x".repeat(n).into());
        assert_eq!(
            o.try_send(text(11)),
            Err(Full),
            "one message over the budget"
        );
        assert_eq!(o.try_send(text(6)), Ok(()));
        assert_eq!(o.try_send(text(5)), Err(Full), "6 + 5 bytes");
        assert_eq!(o.try_send(text(4)), Ok(()), "6 + 4 bytes");
        assert_eq!(o.try_send(Message::Ping(vec![0].into())), Err(Full));
        assert_eq!(o.recv().await, Some(text(6)));
        assert_eq!(o.try_send(text(6)), Ok(()), "what was sent frees its bytes");
        assert!(o.evict("too slow", false));
        assert_eq!(o.recv().await, None);
        let o = Outbox::new(10, 10);
        o.try_send(text(10)).unwrap();
        assert_eq!(o.recv().await, Some(text(10)));
        assert_eq!(
            o.try_send(text(10)),
            Ok(()),
            "an emptied queue has its whole budget"
        );
    }

    #[tokio::test]
    async fn eviction_drops_or_keeps_the_queue_and_is_said_once() {
        for (keep, want) in [(false, None), (true, Some(Message::Text("q".into())))] {
            let o = std::sync::Arc::new(Outbox::new(4, 1024));
            o.try_send(Message::Text("q".into())).unwrap();
            let w = std::sync::Arc::clone(&o);
            let waiter = tokio::spawn(async move { w.wait_evicted().await });
            tokio::task::yield_now().await;
            assert!(o.evict("too slow", keep));
            assert!(!o.evict("again", keep), "once");
            assert_eq!(waiter.await.unwrap(), "too slow");
            assert_eq!(o.recv().await, want, "keep_queued {keep}");
            assert_eq!(o.recv().await, None);
            assert_eq!(o.try_send(Message::Text("late".into())), Err(Full));
        }
    }
}
