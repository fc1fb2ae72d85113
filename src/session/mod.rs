//! One client's protocol session, whatever carries it (a WebSocket, or
//! pusher-js's HTTP fallback transports): admission, the per-connection
//! state, and the handling of every client message. Transports feed it text
//! frames and write out the connection's queue.
//!
//! Every frame to the client goes through the connection's bounded queue,
//! replies included, so that frames keep the order in which the hub decided
//! them. When the session ends, the socket leaves every channel.

mod client_event;
mod rate_limit;
mod signin;
mod subscribe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::rate_limit::RateLimit;
use self::signin::SignedInUser;
use crate::hub::{AppHub, Connection};
use crate::protocol::channel::server_to_user_id;
use crate::protocol::messages::{self, ClientMessage};
use crate::protocol::{codes, SocketId};
use crate::state::State;

/// Per-connection state, owned by the task that runs the transport.
pub struct Session {
    pub(crate) state: State,
    pub(crate) app: Arc<AppHub>,
    pub(crate) conn: Arc<Connection>,
    /// The socket id as text, for building signed strings.
    socket_id: String,
    /// Channels this socket is on, with its presence user id where it has one.
    channels: HashMap<String, Option<Arc<str>>>,
    user: Option<SignedInUser>,
    client_events: RateLimit,
}

impl Session {
    /// A session for an admitted connection; queues `connection_established`.
    pub fn start(state: State, app: Arc<AppHub>, conn: Arc<Connection>) -> Self {
        let rate = app.app.client_event_rate;
        conn.send(messages::connection_established(
            conn.socket_id,
            state.server.activity_timeout,
        ));
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

    /// When the app requires sign-in: the moment an unauthenticated
    /// connection must be closed.
    pub fn signin_deadline(&self) -> Option<Instant> {
        self.app
            .app
            .require_signin
            .then(|| Instant::now() + Duration::from_secs(self.app.app.signin_timeout))
    }

    pub fn is_signed_in(&self) -> bool {
        self.user.is_some()
    }

    /// Dispatches one text frame by event name.
    pub async fn handle_text(&mut self, text: &str) {
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
            "pusher:signin" => self.on_signin(&message).await,
            event if event.starts_with("pusher:") || event.starts_with("pusher_internal:") => {}
            _ => self.on_client_event(&message),
        }
    }

    fn send_error(&self, code: Option<u16>, message: &str) {
        self.conn.send(messages::error(code, message, None));
    }

    /// Leaves every channel and forgets the sign-in; run once at the end.
    pub async fn leave_everything(&mut self) {
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
            self.state
                .adapter
                .user_signed_out(self.app.clone(), user.id.clone(), socket)
                .await;
        }
        self.app.release(socket);
        self.state.adapter.connections_changed(&self.app);
    }
}

/// An admitted connection: its app, its handle, and its queue's receiver.
pub struct Admitted {
    pub app: Arc<AppHub>,
    pub conn: Arc<Connection>,
    pub queue: mpsc::Receiver<ByteString>,
}

/// Admission checks for a new connection to app `key` with the query
/// string of its first request: app exists (4001), protocol version (4007 /
/// 4008), app enabled (4003), connection quota (4004).
pub fn admit(state: &State, key: &str, query: &str) -> Result<Admitted, (u16, &'static str)> {
    let app = state
        .hub
        .by_key(key)
        .ok_or((codes::APP_NOT_FOUND, "Application does not exist"))?;
    check_protocol(query, state.server.require_protocol_param)?;
    if !app.app.enabled {
        return Err((codes::APP_DISABLED, "Application disabled"));
    }
    let (conn, queue) = Connection::new(SocketId::random(), state.server.connection_queue);
    let conn = Arc::new(conn);
    if !app.admit(&conn, state.adapter.connections_elsewhere(app)) {
        return Err((
            codes::OVER_CONNECTION_QUOTA,
            "Application is over connection quota",
        ));
    }
    state.adapter.connections_changed(app);
    Ok(Admitted {
        app: app.clone(),
        conn,
        queue,
    })
}

/// Accepts protocol 4 to 7 (the Java client sends 5); a missing parameter
/// is taken as 7 unless `strict` asks for 4008.
fn check_protocol(query: &str, strict: bool) -> Result<(), (u16, &'static str)> {
    let protocol = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "protocol")
        .map(|(_, v)| v);
    match protocol {
        None if strict => Err((codes::NO_PROTOCOL, "No protocol version supplied")),
        None => Ok(()),
        Some(v) => match v.parse::<u32>() {
            Ok(4..=7) => Ok(()),
            _ => Err((codes::UNSUPPORTED_PROTOCOL, "Unsupported protocol version")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert!(check_protocol("protocol=7&client=js", false).is_ok());
        assert!(check_protocol("protocol=5", false).is_ok());
        assert!(check_protocol("", false).is_ok());
        assert_eq!(check_protocol("", true).unwrap_err().0, codes::NO_PROTOCOL);
        for bad in ["protocol=3", "protocol=8", "protocol=x", "protocol="] {
            assert_eq!(
                check_protocol(bad, false).unwrap_err().0,
                codes::UNSUPPORTED_PROTOCOL,
                "{bad}"
            );
        }
    }
}
