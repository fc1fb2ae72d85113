//! The WebSocket side of a connection: one task that reads frames into the
//! protocol session, writes the connection's queue to the socket, and
//! watches one timer for activity (and, when the app requires it, the
//! sign-in deadline).
//!
//! Every write races the connection's close request: a client that stops
//! reading blocks writes, and must not keep its session (or its socket)
//! alive past a close.

use std::time::Duration;

use actix_ws::{AggregatedMessage, MessageStream};
use tokio::time::{sleep_until, Instant};

use super::{close_reason, error_frame};
use crate::protocol::{messages, Close};
use crate::session::Session;
use crate::support::peer::SocketHandle;

/// The activity clock: when the client was last heard from and whether the
/// server is waiting for an answer to its ping.
struct Liveness {
    last_seen: Instant,
    ping_sent: Option<Instant>,
}

/// Runs the connection until either side closes it, then makes sure the
/// TCP connection ends too.
pub(super) async fn run(
    mut session: Session,
    mut ws: actix_ws::Session,
    stream: MessageStream,
    peer: Option<SocketHandle>,
) {
    let max = session.app.app().max_message_bytes;
    let mut stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let server = session.ctx.server.clone();
    let activity = Duration::from_secs(server.activity_timeout);
    let pong_wait = Duration::from_secs(server.pong_timeout);
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

    let close = 'session: loop {
        tokio::select! {
            biased;
            request = &mut close_requested => break Some(request),
            request = conn.next_frames(&mut batch) => {
                if request.is_some() {
                    break request;
                }
                session.app.metrics.sent(&batch);
                for frame in batch.drain(..) {
                    tokio::select! {
                        biased;
                        sent = ws.text(frame) => if sent.is_err() { break 'session None },
                        request = &mut close_requested => break 'session Some(request),
                    }
                }
            }
            message = stream.recv() => {
                let message = match message {
                    None => break None,
                    Some(Err(e)) => break protocol_violation(&e),
                    Some(Ok(m)) => m,
                };
                alive.last_seen = Instant::now();
                alive.ping_sent = None;
                if let Err(close) = session.count_inbound() {
                    break Some(close);
                }
                match message {
                    AggregatedMessage::Text(text) => session.handle_text(&text).await,
                    AggregatedMessage::Ping(bytes) => {
                        tokio::select! {
                            biased;
                            sent = ws.pong(&bytes) => if sent.is_err() { break None },
                            request = &mut close_requested => break Some(request),
                        }
                    }
                    AggregatedMessage::Close(_) => break None,
                    // Pusher carries no protocol in binary frames.
                    AggregatedMessage::Pong(_) | AggregatedMessage::Binary(_) => {}
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if let Some(deadline) = signin_deadline {
                    if !session.is_signed_in() && now >= deadline {
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
                if let Some(deadline) = signin_deadline.filter(|_| !session.is_signed_in()) {
                    next = next.min(deadline);
                }
                timer.as_mut().reset(next);
            }
        }
    };

    say_goodbye(ws, close).await;
    drop(stream);
    session.leave_everything(close).await;
    release(peer).await;
}

/// How long actix gets to flush the goodbye and shut the TCP connection
/// after the session ended, before Herald resets it.
const RELEASE_GRACE: Duration = Duration::from_secs(2);

/// Ends the TCP connection of a finished session (see `peer`).
pub(super) async fn release(peer: Option<SocketHandle>) {
    if let Some(peer) = peer {
        peer.release(RELEASE_GRACE).await;
    }
}

/// How long the final error and close frames may take to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Sends the closing `pusher:error` (when asked) and the close frame,
/// within [`CLOSE_GRACE`]: a client that does not read gets its TCP
/// connection dropped instead.
pub(super) async fn say_goodbye(ws: actix_ws::Session, close: Option<Close>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, write_goodbye(ws, close)).await;
}

async fn write_goodbye(mut ws: actix_ws::Session, close: Option<Close>) {
    match close {
        Some(close) => {
            if let Some(frame) = error_frame(close) {
                let _ = ws.text(frame).await;
            }
            let _ = ws.close(Some(close_reason(close))).await;
        }
        None => {
            let _ = ws.close(None).await;
        }
    }
}

/// A frame the codec (or the frame guard before it) refused: too large, or
/// not valid WebSocket; `None` when the connection itself broke (the client
/// went away without a close frame), which is no protocol error.
fn protocol_violation(error: &actix_ws::ProtocolError) -> Option<Close> {
    use actix_web::error::PayloadError;
    match error {
        actix_ws::ProtocolError::Overflow => Some(Close::TOO_LARGE),
        actix_ws::ProtocolError::Io(io)
            if io
                .get_ref()
                .and_then(|e| e.downcast_ref::<PayloadError>())
                .is_some_and(|e| matches!(e, PayloadError::Overflow)) =>
        {
            Some(Close::TOO_LARGE)
        }
        actix_ws::ProtocolError::Io(_) => None,
        _ => Some(Close::PROTOCOL_ERROR),
    }
}
