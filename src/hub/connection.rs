//! The hub's handle on one client connection: its socket id, its bounded
//! outbound queue and a way to ask its session to close.
//!
//! Publishing never waits on a client: frames are offered with `try_send`,
//! and a client whose queue is full is told to go away (close 4100, pusher-js
//! reconnects after a back-off) instead of slowing everyone else down or
//! growing memory without bound.

use std::sync::OnceLock;

use bytestring::ByteString;
use tokio::sync::{mpsc, Notify};

use crate::protocol::{codes, SocketId};

/// Why the hub asked a connection to close.
#[derive(Debug, Clone)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: &'static str,
    /// Send a `pusher:error` with the same code before the close frame.
    pub send_error: bool,
}

/// Shared handle on a connection; the session owns the receiving half.
#[derive(Debug)]
pub struct Connection {
    pub socket_id: SocketId,
    queue: mpsc::Sender<ByteString>,
    close: OnceLock<CloseRequest>,
    close_signal: Notify,
}

impl Connection {
    /// A handle plus the queue's receiving end for the session's writer.
    pub fn new(socket_id: SocketId, capacity: usize) -> (Self, mpsc::Receiver<ByteString>) {
        let (queue, rx) = mpsc::channel(capacity);
        let conn = Connection {
            socket_id,
            queue,
            close: OnceLock::new(),
            close_signal: Notify::new(),
        };
        (conn, rx)
    }

    /// Queues a frame; a full queue marks the client as too slow and asks the
    /// session to close. Returns whether the frame was queued.
    pub fn send(&self, frame: ByteString) -> bool {
        match self.queue.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.request_close(CloseRequest {
                    code: codes::OVER_CAPACITY,
                    reason: "Client too slow to receive messages",
                    send_error: false,
                });
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the session to close; the first request wins.
    pub fn request_close(&self, request: CloseRequest) {
        if self.close.set(request).is_ok() {
            // Every waiter (a WebSocket loop, or an HTTP session task and
            // its open receive request) must hear it.
            self.close_signal.notify_waiters();
        }
    }

    /// The close request, if one was made.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.close.get().cloned()
    }

    /// Resolves once a close was requested, with the request.
    pub async fn close_requested(&self) -> CloseRequest {
        loop {
            // Registered before the check, so a request made in between
            // still wakes us.
            let notified = self.close_signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(request) = self.close.get() {
                return request.clone();
            }
            notified.await;
        }
    }
}
