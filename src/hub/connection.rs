//! The hub's handle on one client connection: its socket id, its bounded
//! outbound queue and a way to ask its session to close.
//!
//! Publishing never waits on a client: a frame is appended under a short
//! lock, and a client whose queue is full is told to go away (close 4100,
//! pusher-js reconnects after a back-off) instead of slowing everyone else
//! down or growing memory without bound.
//!
//! The queue is a plain `VecDeque` that allocates nothing until the first
//! frame and gives its memory back once a burst is drained, so an idle
//! connection costs only this struct.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use bytestring::ByteString;
use tokio::sync::Notify;

use crate::protocol::{Close, SocketId};
use crate::support::wait;

/// A drained queue keeps at most this many slots for the next burst.
const KEEP_SLOTS: usize = 16;

/// Shared handle on a connection; its session drains the queue.
#[derive(Debug)]
pub struct Connection {
    pub socket_id: SocketId,
    capacity: usize,
    queue: Mutex<VecDeque<ByteString>>,
    close: OnceLock<Close>,
    /// Woken (one permit) when frames arrive in an empty queue or a close
    /// is requested: the session's writer waits on it.
    ready: Notify,
    /// Woken (every waiter) when a close is requested.
    closing: Notify,
}

impl Connection {
    /// A connection whose queue holds at most `capacity` frames.
    pub fn new(socket_id: SocketId, capacity: usize) -> Self {
        Connection {
            socket_id,
            capacity,
            queue: Mutex::new(VecDeque::new()),
            close: OnceLock::new(),
            ready: Notify::new(),
            closing: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<ByteString>> {
        // A panic while holding this lock cannot leave the queue invalid.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame; a full queue marks the client as too slow and asks the
    /// session to close. Returns whether the frame was queued.
    pub fn send(&self, frame: ByteString) -> bool {
        if self.close.get().is_some() {
            return false;
        }
        let was_empty = {
            let mut queue = self.lock();
            if queue.len() >= self.capacity {
                drop(queue);
                self.request_close(Close::TOO_SLOW);
                return false;
            }
            queue.push_back(frame);
            queue.len() == 1
        };
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    /// Moves every queued frame into `out` (in order); false when none were
    /// queued.
    pub fn drain_into(&self, out: &mut Vec<ByteString>) -> bool {
        let mut queue = self.lock();
        if queue.is_empty() {
            return false;
        }
        out.extend(queue.drain(..));
        if queue.capacity() > KEEP_SLOTS {
            queue.shrink_to(KEEP_SLOTS);
        }
        true
    }

    /// Waits until frames are queued or a close was requested, then moves
    /// the frames into `out`. Returns the close request once there is one
    /// (frames still queued then are dropped: the client is leaving). For
    /// one consumer at a time.
    pub async fn next_frames(&self, out: &mut Vec<ByteString>) -> Option<Close> {
        loop {
            if let Some(close) = self.close_request() {
                return Some(close);
            }
            if self.drain_into(out) {
                return None;
            }
            self.ready.notified().await;
        }
    }

    /// Asks the session to close; the first request wins.
    pub fn request_close(&self, request: Close) {
        if self.close.set(request).is_ok() {
            self.ready.notify_one();
            // Every waiter (a WebSocket loop, or an HTTP session task and
            // its open receive request) must hear it.
            self.closing.notify_waiters();
        }
    }

    /// The close request, if one was made.
    pub fn close_request(&self) -> Option<Close> {
        self.close.get().copied()
    }

    /// Resolves once a close was requested, with the request.
    pub async fn close_requested(&self) -> Close {
        wait::until(&self.closing, || self.close_request()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_come_out_in_order_and_a_full_queue_closes() {
        let conn = Connection::new(SocketId::new(1, 1), 2);
        assert!(conn.send("a".into()));
        assert!(conn.send("b".into()));
        let mut out = Vec::new();
        assert_eq!(conn.next_frames(&mut out).await, None);
        assert_eq!(out, ["a", "b"]);
        assert!(conn.send("c".into()));
        assert!(conn.send("d".into()));
        assert!(!conn.send("e".into()));
        assert_eq!(conn.close_request(), Some(Close::TOO_SLOW));
        assert_eq!(conn.next_frames(&mut out).await, Some(Close::TOO_SLOW));
        assert!(!conn.send("f".into()));
    }

    #[tokio::test]
    async fn a_burst_does_not_keep_its_memory() {
        let conn = Connection::new(SocketId::new(1, 1), 4096);
        for _ in 0..1000 {
            conn.send("x".into());
        }
        let mut out = Vec::new();
        conn.next_frames(&mut out).await;
        assert_eq!(out.len(), 1000);
        assert!(conn.lock().capacity() <= KEEP_SLOTS);
    }
}
