//! The sockets a WebSocket connection runs on, plain TCP or TLS, as the
//! connection loop needs them: it reads only when there is something to
//! read, so that an idle connection holds no read buffer at all.

use std::future::Future;
use std::io;

use actix_web::rt::net::TcpStream;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// A TLS connection as actix-tls accepts it.
pub type TlsStream = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;

/// A connection's socket.
pub trait Io: AsyncRead + AsyncWrite + Unpin + 'static {
    /// Reads what has arrived into `buf` (growing it only then); 0 at the
    /// end of the stream. Cancel-safe: dropped before it completes, it has
    /// read nothing.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + 'a;

    /// The TCP socket underneath (to reset it when a client will not let
    /// it close).
    fn tcp(&self) -> &TcpStream;
}

impl Io for TcpStream {
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // Readiness needs no buffer: the buffer is taken only for bytes
            // that are there.
            self.readable().await?;
            buf.reserve(READ_CHUNK);
            match self.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Readiness stays set until a read finds nothing, so
                    // this is the usual way back to waiting: without the
                    // buffer.
                    if buf.is_empty() {
                        *buf = BytesMut::new();
                    }
                }
                read => return read,
            }
        }
    }

    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Io for TlsStream {
    /// rustls may hold decrypted bytes the socket no longer signals, so a
    /// TLS connection reads directly (holding the buffer while it waits).
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(READ_CHUNK);
        self.read_buf(buf).await
    }

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}
