//! The TCP socket under a request, seen from the tasks that serve it: a
//! WebSocket session that ends makes sure its socket ends too, and a held
//! HTTP fallback response notices at once when its client went away.
//!
//! actix-http's connection task owns the socket. A client that stops reading
//! leaves that task waiting forever to flush its write buffer, holding the
//! socket (and megabytes of kernel buffers) outside any quota. So when a
//! session has ended and the connection task has not finished within a
//! grace period, Herald resets the socket (`SO_LINGER` 0, then `shutdown`):
//! the connection task wakes with an error and drops it, and the kernel
//! frees its buffers at once.
//!
//! Why touching the raw descriptor is sound: the connection task, the
//! upgrade handler and the session task all run on one actix worker thread.
//! The descriptor is used only while `alive`, which lives in the
//! connection's data and is dropped together with the socket, can still be
//! upgraded; nothing on this thread can close the socket in between.

use std::any::Any;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

use actix_web::dev::Extensions;
use socket2::SockRef;
use tokio::time::Instant;

/// How often a finished session checks whether its socket is gone.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How often a held response checks whether its client closed.
const PEER_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Stored in each TCP connection's data when it is accepted.
pub struct PeerSocket {
    fd: RawFd,
    alive: Rc<()>,
}

impl PeerSocket {
    /// `HttpServer::on_connect` hook: remembers the accepted socket.
    pub fn on_connect(conn: &dyn Any, data: &mut Extensions) {
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        let tcp = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .or_else(|| conn.downcast_ref::<Tls>().map(|tls| tls.get_ref().0));
        if let Some(tcp) = tcp {
            data.insert(PeerSocket {
                fd: tcp.as_raw_fd(),
                alive: Rc::new(()),
            });
        }
    }

    /// A handle that does not keep the connection's data alive.
    pub fn handle(&self) -> SocketHandle {
        SocketHandle {
            fd: self.fd,
            alive: Rc::downgrade(&self.alive),
        }
    }
}

/// A session's view of its socket.
#[derive(Clone)]
pub struct SocketHandle {
    fd: RawFd,
    alive: Weak<()>,
}

impl SocketHandle {
    /// Whether actix still holds the socket.
    fn is_open(&self) -> bool {
        self.alive.strong_count() > 0
    }

    /// Waits up to `grace` for actix to finish with the socket (the close
    /// frame flushed and the TCP connection shut), then resets it if it is
    /// still held.
    pub async fn release(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.is_open() && Instant::now() < deadline {
            tokio::time::sleep(CHECK_EVERY).await;
        }
        if self.is_open() {
            self.reset();
        }
    }

    /// Resolves once the peer closed its side of the connection (or actix
    /// let go of the socket). Checked every second with a non-consuming
    /// peek, so a held response notices a closed tab without writing.
    pub async fn closed_by_peer(&self) {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        loop {
            tokio::time::sleep(PEER_CHECK_EVERY).await;
            let Some(_alive) = self.alive.upgrade() else {
                return;
            };
            // SAFETY: as in `reset`.
            let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
            // The socket is non-blocking: no data is WouldBlock, EOF is 0.
            if let Ok(0) = SockRef::from(&fd).peek(&mut byte) {
                return;
            }
        }
    }

    fn reset(&self) {
        // Checked again right before use: see the module comment.
        let Some(_alive) = self.alive.upgrade() else {
            return;
        };
        // SAFETY: the connection task still owns the descriptor (alive is
        // held), and it cannot be closed before this function returns.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let socket = SockRef::from(&fd);
        let _ = socket.set_linger(Some(Duration::ZERO));
        let _ = socket.shutdown(Shutdown::Both);
    }
}
