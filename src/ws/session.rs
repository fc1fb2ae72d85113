//! One client connection: a single task that reads frames, writes the
//! connection's queue to the socket, and watches one timer for activity
//! (and, when the app requires it, the sign-in deadline).
//!
//! Every frame to the client goes through the connection's bounded queue,
//! replies included, so that frames keep the order in which the hub decided
//! them. When the session ends, the socket leaves every channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, MessageStream};
use bytestring::ByteString;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::close_reason;
use super::rate_limit::RateLimit;
use super::signin::SignedInUser;
use crate::hub::{AppHub, CloseRequest, Connection};
use crate::protocol::channel::server_to_user_id;
use crate::protocol::codes;
use crate::protocol::messages::{self, ClientMessage};
use crate::state::State;

/// Per-connection state owned by the session task.
pub(super) struct Session {
    pub(super) state: State,
    pub(super) app: Arc<AppHub>,
    pub(super) conn: Arc<Connection>,
    /// The socket id as text, for building signed strings.
    pub(super) socket_id: String,
    /// Channels this socket is on, with its presence user id where it has one.
    pub(super) channels: HashMap<String, Option<Arc<str>>>,
    pub(super) user: Option<SignedInUser>,
    pub(super) client_events: RateLimit,
}

/// The activity clock: when the client was last heard from and whether the
/// server is waiting for an answer to its ping.
struct Liveness {
    last_seen: Instant,
    ping_sent: Option<Instant>,
}

impl Session {
    pub(super) fn new(state: State, app: Arc<AppHub>, conn: Arc<Connection>) -> Self {
        let rate = app.app.client_event_rate;
        Session {
            socket_id: conn.socket_id.to_string(),
            state,
            app,
            conn,
            channels: HashMap::new(),
            user: None,
            client_events: RateLimit::per_second(rate),
        }
    }

    /// Runs the connection until either side closes it.
    pub(super) async fn run(
        mut self,
        mut ws: actix_ws::Session,
        stream: MessageStream,
        mut queue: mpsc::Receiver<ByteString>,
    ) {
        let max = self.app.app.max_message_bytes;
        let mut stream = stream
            .max_frame_size(max)
            .aggregate_continuations()
            .max_continuation_size(max);
        let activity = Duration::from_secs(self.state.server.activity_timeout);
        let pong_wait = Duration::from_secs(self.state.server.pong_timeout);
        let signin_deadline = self
            .app
            .app
            .require_signin
            .then(|| Instant::now() + Duration::from_secs(self.app.app.signin_timeout));

        self.conn.send(messages::connection_established(
            self.conn.socket_id,
            self.state.server.activity_timeout,
        ));
        let mut alive = Liveness {
            last_seen: Instant::now(),
            ping_sent: None,
        };
        let first_deadline = alive.last_seen + activity;
        let timer = sleep_until(signin_deadline.map_or(first_deadline, |d| d.min(first_deadline)));
        tokio::pin!(timer);

        let close = loop {
            tokio::select! {
                biased;
                request = self.conn.close_requested() => break Some(request),
                Some(frame) = queue.recv() => {
                    // A client that stops reading must not pin the session:
                    // a close request wins over a write that cannot finish.
                    tokio::select! {
                        biased;
                        request = self.conn.close_requested() => break Some(request),
                        sent = ws.text(frame) => if sent.is_err() { break None },
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
                        AggregatedMessage::Text(text) => self.handle_text(&text).await,
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
                        if self.user.is_none() && now >= deadline {
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
                            self.conn.send(messages::ping());
                            alive.ping_sent = Some(now);
                        }
                        _ => {}
                    }
                    let mut next = match alive.ping_sent {
                        Some(sent) => sent + pong_wait,
                        None => alive.last_seen + activity,
                    };
                    if let Some(deadline) = signin_deadline.filter(|_| self.user.is_none()) {
                        next = next.min(deadline);
                    }
                    timer.as_mut().reset(next);
                }
            }
        };

        // Bounded: a client that does not read gets its TCP connection
        // dropped instead of a close frame.
        let _ = tokio::time::timeout(CLOSE_GRACE, say_goodbye(ws, close)).await;
        self.leave_everything().await;
    }

    /// Dispatches one text frame by event name.
    async fn handle_text(&mut self, text: &str) {
        let message = match ClientMessage::parse(text) {
            Ok(m) => m,
            Err(_) => {
                self.send_error(
                    None,
                    "Invalid message format: expected a JSON object with an \"event\" string",
                );
                return;
            }
        };
        match message.event.as_str() {
            "pusher:ping" => {
                self.conn.send(messages::pong());
            }
            "pusher:pong" => {}
            "pusher:subscribe" => self.on_subscribe(&message).await,
            "pusher:unsubscribe" => self.on_unsubscribe(&message).await,
            "pusher:signin" => self.on_signin(&message),
            event if event.starts_with("pusher:") || event.starts_with("pusher_internal:") => {}
            _ => self.on_client_event(&message),
        }
    }

    pub(super) fn send_error(&self, code: Option<u16>, message: &str) {
        self.conn.send(messages::error(code, message, None));
    }

    /// Leaves every channel and forgets the sign-in; run once at the end.
    async fn leave_everything(&mut self) {
        let socket = self.conn.socket_id;
        for (channel, _) in std::mem::take(&mut self.channels) {
            if server_to_user_id(&channel).is_none() {
                self.state
                    .adapter
                    .unsubscribe(self.app.clone(), socket, channel)
                    .await;
            }
        }
        if let Some(user) = self.user.take() {
            self.app.unwatch(&user.watchlist, socket);
            self.app.remove_user(&user.id, socket);
        }
        self.app.release(socket);
        self.state.adapter.connections_changed(&self.app);
    }
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
