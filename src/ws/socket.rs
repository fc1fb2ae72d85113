//! The WebSocket side of a connection: one task that owns the socket, reads
//! frames into the protocol session, writes the connection's queue, and
//! watches one timer for activity (and, when the app requires it, the
//! sign-in deadline).
//!
//! The task is spawned at the upgrade, when actix-http hands the socket
//! over and its HTTP/1 dispatcher's task ends (see `listener`), so a
//! connection costs one task sized for it, and its buffers exist only while
//! there is something in them: an idle connection holds neither a read nor
//! a write buffer.
//!
//! Every write races the connection's close request: a client that stops
//! reading blocks writes, and must not keep its session (or its socket)
//! alive past a close.

use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

use super::deflate::Deflate;
use super::frame;
use super::io::Io;
use super::reader::{Incoming, Reader};
use crate::metrics::METRICS;
use crate::protocol::deflate::{self, Agreed};
use crate::protocol::{messages, Close};
use crate::session::Session;

/// A WebSocket connection's socket and what is half-read or half-written.
pub(super) struct Socket<T> {
    io: T,
    reader: Reader,
    /// Frames encoded and not yet written (empty and unallocated when
    /// idle).
    write: BytesMut,
    /// What the connection agreed to compress (and its place in the
    /// node's count of such connections), and from what size on.
    deflate: Option<(Deflate, Agreed)>,
    compress_from: usize,
}

/// What ended a wait of the connection loop.
enum Woke {
    CloseRequested(Close),
    /// Frames were queued (in the batch), or a close was requested.
    Frames(Option<Close>),
    Read(std::io::Result<usize>),
    Timer,
}

/// The activity clock: when the client was last heard from and whether the
/// server is waiting for an answer to its ping.
struct Liveness {
    last_seen: Instant,
    ping_sent: Option<Instant>,
}

impl<T: Io> Socket<T> {
    /// A socket whose handshake is done; `read` holds whatever the client
    /// sent after it. With `deflate`, text messages of `compress_from`
    /// bytes or more are sent compressed, and the client may compress its
    /// own.
    pub(super) fn new(
        io: T,
        read: BytesMut,
        max_message: usize,
        deflate: Option<Deflate>,
        compress_from: usize,
    ) -> Self {
        Socket {
            io,
            reader: Reader::new(read, max_message, deflate.is_some()),
            write: BytesMut::new(),
            deflate: deflate.map(|agreed| (agreed, Agreed::new(compress_from))),
            compress_from,
        }
    }

    /// Encodes a text message for the next write: compressed (once per
    /// frame, whoever sends it: see `protocol::deflate`) when the
    /// connection agreed to it and the frame is large enough.
    fn queue_text(&mut self, text: &ByteString) {
        match &self.deflate {
            Some((deflate, _)) if text.len() >= self.compress_from => {
                let write = &mut self.write;
                let sent = deflate::with_compressed(text, deflate.window_bits, |bytes| {
                    frame::encode(write, frame::TEXT, true, bytes);
                    bytes.len()
                });
                METRICS.deflate_in.inc_by(text.len() as u64);
                METRICS.deflate_out.inc_by(sent as u64);
            }
            _ => frame::encode(&mut self.write, frame::TEXT, false, text.as_bytes()),
        }
    }

    /// Writes everything queued; the buffer is released once it is out.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.write.is_empty() {
            return Ok(());
        }
        self.io.write_all(&self.write).await?;
        self.write = BytesMut::new();
        Ok(())
    }
}

/// Runs the connection until either side closes it, then ends the TCP
/// connection too.
// (Written out on purpose; see the comment in the body.)
#[allow(clippy::manual_async_fn)]
pub(super) fn run<T: Io>(
    mut session: Session,
    mut socket: Socket<T>,
) -> impl std::future::Future<Output = ()> {
    // An async block, not an async fn: an async fn's future keeps its
    // arguments twice (as arguments and as the locals they move into),
    // 408 bytes more for every idle connection.
    async move {
        let server = session.ctx.server.clone();
        let activity = Duration::from_secs(server.activity_timeout);
        let pong_wait = Duration::from_secs(server.pong_timeout);
        // A client whose socket takes nothing for this long stopped reading.
        let stall = activity + pong_wait;
        let signin_deadline = session.signin_deadline();
        let conn = session.conn.clone();
        let mut alive = Liveness {
            last_seen: Instant::now(),
            ping_sent: None,
        };
        let first_deadline = alive.last_seen + activity;
        let timer = sleep_until(signin_deadline.map_or(first_deadline, |d| d.min(first_deadline)));
        tokio::pin!(timer);

        // One close-request future for the whole connection: it registers for
        // the wake-up once, not once per frame.
        let close_requested = conn.close_requested();
        tokio::pin!(close_requested);
        let mut batch = Vec::new();

        let close = loop {
            // What the client sent already (after the handshake, or several
            // frames in one read) is handled before waiting for more.
            let incoming = match socket.reader.next_message() {
                Ok(incoming) => incoming,
                Err(close) => break Some(close),
            };
            if let Some(message) = incoming {
                alive.last_seen = Instant::now();
                alive.ping_sent = None;
                if let Err(close) = session.count_inbound() {
                    break Some(close);
                }
                match message {
                    // Boxed: what handling a message awaits (a subscription in
                    // the cluster, say) is large, and an idle connection's
                    // task must not carry room for it (see the module docs).
                    Incoming::Text(text) => Box::pin(session.handle_text(&text)).await,
                    Incoming::Ping(bytes) => {
                        frame::encode(&mut socket.write, frame::PONG, false, &bytes);
                        if let Err(close) =
                            write_out(&mut socket, close_requested.as_mut(), stall).await
                        {
                            break close;
                        }
                    }
                    Incoming::Close => break None,
                    Incoming::Ignored => {}
                }
                continue;
            }
            // What woke the connection is taken out of the select first, so
            // that the writes it leads to are not awaited beside the select's
            // own futures (the task would carry room for both).
            let woke = tokio::select! {
                biased;
                request = &mut close_requested => Woke::CloseRequested(request),
                request = conn.next_frames(&mut batch) => Woke::Frames(request),
                read = socket.io.read_some(&mut socket.reader.buffer) => Woke::Read(read),
                () = &mut timer => Woke::Timer,
            };
            match woke {
                Woke::CloseRequested(request) => break Some(request),
                Woke::Frames(Some(request)) => break Some(request),
                Woke::Frames(None) => {
                    session.app.metrics().sent(&batch);
                    for text in batch.drain(..) {
                        socket.queue_text(&text);
                    }
                    if let Err(close) =
                        write_out(&mut socket, close_requested.as_mut(), stall).await
                    {
                        break close;
                    }
                }
                // The client went away without a close frame: no protocol
                // error, nothing to say.
                Woke::Read(Ok(0) | Err(_)) => break None,
                Woke::Read(Ok(_)) => {}
                Woke::Timer => {
                    let now = Instant::now();
                    if let Some(deadline) = signin_deadline {
                        if !session.is_authorized() && now >= deadline {
                            break Some(Close::SIGNIN_TIMEOUT);
                        }
                    }
                    match alive.ping_sent {
                        Some(sent) if now >= sent + pong_wait => break Some(Close::PONG_TIMEOUT),
                        None if now >= alive.last_seen + activity => {
                            conn.send(messages::ping());
                            alive.ping_sent = Some(now);
                        }
                        _ => {}
                    }
                    let mut next = match alive.ping_sent {
                        Some(sent) => sent + pong_wait,
                        None => alive.last_seen + activity,
                    };
                    if let Some(deadline) = signin_deadline.filter(|_| !session.is_authorized()) {
                        next = next.min(deadline);
                    }
                    timer.as_mut().reset(next);
                }
            }
        };

        // (Boxed for the same reason: only a closing connection needs them.)
        Box::pin(async move {
            let said = say_goodbye(&mut socket, close).await;
            session.leave_everything(close).await;
            hang_up(socket, said).await;
        })
        .await;
    }
}

/// Writes what is queued, unless the connection is asked to close first, or
/// the client's socket takes nothing for `stall` (a client that stopped
/// reading while nothing more is published would otherwise hold its task
/// forever). The error is how the connection ends.
async fn write_out<T: Io>(
    socket: &mut Socket<T>,
    close_requested: std::pin::Pin<&mut impl std::future::Future<Output = Close>>,
    stall: Duration,
) -> Result<(), Option<Close>> {
    tokio::select! {
        biased;
        request = close_requested => Err(Some(request)),
        written = socket.flush() => written.map_err(|_| None),
        // Not registered with the timer unless the write has to wait.
        () = tokio::time::sleep(stall) => Err(Some(Close::TOO_SLOW)),
    }
}

/// How long the final error and close frames, and the TCP shutdown, may
/// take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long the client then has to close its side.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Sends the closing `pusher:error` (when asked) and the close frame, and
/// shuts our side of the TCP connection, within [`CLOSE_GRACE`]; says
/// whether that was done.
pub(super) async fn say_goodbye<T: Io>(socket: &mut Socket<T>, close: Option<Close>) -> bool {
    match close {
        Some(close) => {
            if let Some(text) = super::error_frame(close) {
                socket.queue_text(&text);
            }
            frame::encode_close(&mut socket.write, Some((close.code, close.reason)));
        }
        None => frame::encode_close(&mut socket.write, None),
    }
    let sent = tokio::time::timeout(CLOSE_GRACE, async {
        socket.flush().await?;
        socket.io.shutdown().await
    })
    .await;
    matches!(sent, Ok(Ok(())))
}

/// Ends the TCP connection after the goodbye. What the client still sends
/// is read and dropped until it closes its side too (closing a socket with
/// unread bytes would reset it and lose the close frame on the client's
/// side); a client that has not within [`DRAIN_GRACE`], or that did not
/// take the goodbye, has its connection reset, so no kernel buffers stay
/// behind for one that stopped reading.
pub(super) async fn hang_up<T: Io>(mut socket: Socket<T>, said_goodbye: bool) {
    let closed = said_goodbye
        && tokio::time::timeout(DRAIN_GRACE, drain(&mut socket.io))
            .await
            .is_ok();
    if !closed {
        let _ = socket2::SockRef::from(socket.io.tcp()).set_linger(Some(Duration::ZERO));
    }
}

/// Reads until the client closes its side (or the connection fails).
async fn drain<T: Io>(io: &mut T) {
    let mut scratch = [0u8; 1024];
    while let Ok(1..) = io.read(&mut scratch).await {}
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn of two arguments returns.
    fn future_of<A, B, F: std::future::Future>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// An idle connection is this future (its task's one allocation):
    /// what handling a message or closing awaits is boxed, so that room
    /// for it is not carried by every idle connection. (2920 bytes before; the handshake, 4.3 KB, is a task of its own.)
    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = future_of(super::run::<tokio::net::TcpStream>);
        assert!(size <= 1536, "the connection loop's future is {size} bytes");
        // Over TLS the stream holds the TLS session's state (1.2 KB).
        let size = future_of(super::run::<super::super::io::TlsStream>);
        assert!(size <= 4096, "over TLS: {size} bytes");
    }
}
