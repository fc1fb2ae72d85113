//! The TCP socket under an HTTP request, seen from the task that serves
//! it: a held HTTP fallback response notices at once when its client went
//! away, without writing. (A WebSocket connection owns its socket after the
//! upgrade and ends it itself, see `ws::socket`.)
//!
//! Why touching the raw descriptor is sound: the connection task and the
//! handlers it runs are on one actix worker thread. The descriptor is used
//! only while `alive`, which lives in the connection's data and is dropped
//! together with the socket, can still be upgraded; nothing on this thread
//! can close the socket in between.

use std::any::Any;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

use actix_web::dev::Extensions;
use socket2::SockRef;

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
            // SAFETY: the connection task still owns the descriptor (alive
            // is held), and it cannot be closed before this use ends.
            let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
            // The socket is non-blocking: no data is WouldBlock, EOF is 0.
            if let Ok(0) = SockRef::from(&fd).peek(&mut byte) {
                return;
            }
        }
    }
}
