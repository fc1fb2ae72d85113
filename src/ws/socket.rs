//! The WebSocket side of a connection: one task that reads frames into the
//! protocol session, writes the connection's queue to the socket, and
//! watches one timer for activity (and, when the app requires it, the
//! sign-in deadline).

use std::time::Duration;

use actix_ws::{AggregatedMessage, MessageStream};
use bytestring::ByteString;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::close_reason;
use crate::hub::CloseRequest;
use crate::protocol::codes;
use crate::protocol::messages;
use crate::session::Session;

/// The activity clock: when the client was last heard from and whether the
/// server is waiting for an answer to its ping.
struct Liveness {
    last_seen: Instant,
    ping_sent: Option<Instant>,
}

/// Runs the connection until either side closes it.
pub(super) async fn run(
    mut session: Session,
    mut ws: actix_ws::Session,
    stream: MessageStream,
    mut queue: mpsc::Receiver<ByteString>,
) {
    let max = session.app.app.max_message_bytes;
    let mut stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let activity = Duration::from_secs(session.state.server.activity_timeout);
    let pong_wait = Duration::from_secs(session.state.server.pong_timeout);
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

    let close = loop {
        tokio::select! {
            biased;
            request = &mut close_requested => break Some(request),
            Some(frame) = queue.recv() => {
                // A client that stops reading must not pin the session:
                // a close request wins over a write that cannot finish.
                tokio::select! {
                    biased;
                    sent = ws.text(frame) => if sent.is_err() { break None },
                    request = &mut close_requested => break Some(request),
                }
            }
            message = stream.recv() => {
                let message = match message {
                    None => break None,
                    Some(Err(e)) => break Some(protocol_violation(&e)),
                    Some(Ok(m)) => m,
                };
                alive.last_seen = Instant::now();
                alive.ping_sent = None;
                match message {
                    AggregatedMessage::Text(text) => session.handle_text(&text).await,
                    AggregatedMessage::Ping(bytes) => {
                        if ws.pong(&bytes).await.is_err() {
                            break None;
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
                        break Some(CloseRequest {
                            code: codes::UNAUTHORIZED,
                            reason: "Connection not authorized within timeout.",
                            send_error: true,
                        });
                    }
                }
                match alive.ping_sent {
                    Some(sent) if now >= sent + pong_wait => {
                        break Some(CloseRequest {
                            code: codes::PONG_NOT_RECEIVED,
                            reason: "Pong reply not received",
                            send_error: true,
                        });
                    }
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

    // Bounded: a client that does not read gets its TCP connection
    // dropped instead of a close frame.
    let _ = tokio::time::timeout(CLOSE_GRACE, say_goodbye(ws, close)).await;
    session.leave_everything().await;
}

/// How long the final error and close frames may take to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Sends the closing `pusher:error` (when asked) and the close frame.
async fn say_goodbye(mut ws: actix_ws::Session, close: Option<CloseRequest>) {
    match close {
        Some(request) => {
            if request.send_error {
                let frame = messages::error(Some(request.code), request.reason, None);
                let _ = ws.text(frame).await;
            }
            let _ = ws
                .close(Some(close_reason(request.code, request.reason)))
                .await;
        }
        None => {
            let _ = ws.close(None).await;
        }
    }
}

/// A frame the codec refused: too large, or not valid WebSocket.
fn protocol_violation(error: &actix_ws::ProtocolError) -> CloseRequest {
    match error {
        actix_ws::ProtocolError::Overflow => CloseRequest {
            code: 1009,
            reason: "Message too large",
            send_error: false,
        },
        _ => CloseRequest {
            code: 1002,
            reason: "WebSocket protocol error",
            send_error: false,
        },
    }
}
