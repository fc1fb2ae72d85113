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
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::rate_limit::RateLimit;
use self::signin::SignedInUser;
use crate::adapter::Adapter;
use crate::config::ServerConfig;
use crate::hub::{AppEvent, AppHub, Connection, Hub};
use crate::metrics::{self, Transport};
use crate::protocol::channel::server_to_user_id;
use crate::protocol::messages::{self, ClientMessage};
use crate::protocol::{Close, SocketId};
use crate::support::query::Query;
use crate::support::rate::TokenBucket;

/// What a session needs of the server: its settings and the adapter
/// through which it joins channels and publishes.
#[derive(Clone)]
pub struct Context {
    pub server: Arc<ServerConfig>,
    pub adapter: Arc<Adapter>,
}

/// Per-connection state, owned by the task that runs the transport.
pub struct Session {
    pub(crate) ctx: Context,
    pub(crate) app: Arc<AppHub>,
    pub(crate) conn: Arc<Connection>,
    /// The socket id as text, for building signed strings.
    socket_id: String,
    /// Channels this socket is on, with its presence user id where it has one.
    channels: HashMap<String, Option<Arc<str>>>,
    user: Option<SignedInUser>,
    client_events: RateLimit,
    /// A private or presence subscription succeeded (Pusher's authorized
    /// connections).
    authorized_subscription: bool,
    /// Every frame the client sends takes a token.
    inbound: TokenBucket,
    transport: Transport,
}

impl Session {
    /// A session for an admitted connection; queues `connection_established`.
    fn start(ctx: Context, app: Arc<AppHub>, conn: Arc<Connection>, transport: Transport) -> Self {
        let rate = app.app().client_event_rate;
        app.metrics().opened(transport);
        app.emit(AppEvent::ConnectionOpened {
            socket: conn.socket_id,
            transport,
        });
        tracing::debug!(app = %app.id(), socket = %conn.socket_id, ?transport, "connection opened");
        conn.send(messages::connection_established(
            conn.socket_id,
            ctx.server.activity_timeout,
        ));
        Session {
            socket_id: conn.socket_id.to_string(),
            ctx,
            conn,
            channels: HashMap::new(),
            user: None,
            client_events: RateLimit::per_second(rate),
            authorized_subscription: false,
            inbound: TokenBucket::new(app.app().inbound_rate, app.app().inbound_burst),
            transport,
            app,
        }
    }

    /// Counts one frame from the client (of any kind, pings included)
    /// against its inbound budget; the transport closes the connection
    /// with the returned close when the budget is spent.
    pub fn count_inbound(&mut self) -> Result<(), Close> {
        if self.inbound.take() {
            Ok(())
        } else {
            Err(Close::INBOUND_RATE)
        }
    }

    /// When the app requires sign-in (or authorized connections): the
    /// moment a connection that is not authorized by then must be closed.
    pub fn signin_deadline(&self) -> Option<Instant> {
        let app = self.app.app();
        (app.require_signin || app.require_authorization)
            .then(|| Instant::now() + Duration::from_secs(app.signin_timeout))
    }

    pub fn is_signed_in(&self) -> bool {
        self.user.is_some()
    }

    /// Whether the connection passed what the app requires of it: a
    /// sign-in under `require_signin`; under `require_authorization`, a
    /// sign-in or one successful private or presence subscription.
    pub fn is_authorized(&self) -> bool {
        let app = self.app.app();
        if app.require_signin {
            self.is_signed_in()
        } else {
            self.is_signed_in() || self.authorized_subscription
        }
    }

    /// Dispatches one text frame by event name.
    pub async fn handle_text(&mut self, text: &str) {
        self.app.metrics().received(text.len());
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

    /// Leaves every channel and forgets the sign-in; run once at the end,
    /// with the close Herald sent (`None`: the client closed or went away).
    pub async fn leave_everything(&mut self, close: Option<Close>) {
        let code = close.map(|c| c.code);
        self.app.metrics().closed(self.transport, code);
        self.app.emit(AppEvent::ConnectionClosed {
            socket: self.conn.socket_id,
            transport: self.transport,
            close,
        });
        tracing::debug!(
            app = %self.app.id(),
            socket = %self.conn.socket_id,
            code = code.map_or_else(|| "client".to_owned(), |c| c.to_string()),
            reason = close.map_or("closed by the client", |c| c.reason),
            "connection closed"
        );
        let socket = self.conn.socket_id;
        let adapter = &self.ctx.adapter;
        for (channel, user) in std::mem::take(&mut self.channels) {
            if server_to_user_id(&channel).is_none() {
                adapter.unsubscribe(&self.app, socket, &channel).await;
                self.app.emit(AppEvent::Unsubscribed {
                    socket,
                    channel: &channel,
                    user_id: user.as_deref(),
                    reason: Some("connection closed"),
                });
            }
        }
        if let Some(user) = self.user.take() {
            self.app.unwatch(&user.watchlist, socket);
            adapter.user_signed_out(&self.app, &user.id, socket).await;
        }
        self.app.release(socket);
        adapter.connections_changed(&self.app);
    }
}

/// What a connection shows of itself when it opens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opening<'a> {
    /// The query string of its first request.
    pub query: &'a str,
    /// Its `Origin` header (browsers send one; server-side clients not).
    pub origin: Option<&'a str>,
}

/// Admission of a new connection to app `key`: app exists (4001),
/// protocol version (4007 / 4008), app enabled (4003), origin allowed
/// (4009), connection quota (4004). Returns the running session, which
/// has queued `connection_established`.
pub fn admit(
    hub: &Hub,
    ctx: &Context,
    key: &str,
    opening: Opening<'_>,
    transport: Transport,
) -> Result<Session, Close> {
    let app = hub.by_key(key).ok_or(Close::APP_NOT_FOUND)?;
    let refuse = |reason: &str, close: Close| {
        metrics::refused(reason);
        app.emit(AppEvent::ConnectionRefused {
            transport,
            reason,
            code: close.code,
        });
        Err(close)
    };
    check_protocol(opening.query, ctx.server.require_protocol_param)?;
    if !app.app().enabled {
        return Err(Close::APP_DISABLED);
    }
    if !app.app().origin_allowed(opening.origin) {
        return refuse("origin", Close::ORIGIN_NOT_ALLOWED);
    }
    let conn = Arc::new(Connection::new(
        SocketId::random(),
        ctx.server.connection_queue,
    ));
    if !app.admit(&conn, ctx.adapter.connections_elsewhere(&app)) {
        return refuse("app_max_connections", Close::OVER_QUOTA);
    }
    ctx.adapter.connections_changed(&app);
    Ok(Session::start(ctx.clone(), app, conn, transport))
}

/// Accepts protocol 4 to 7 (the Java client sends 5); a missing parameter
/// is taken as 7 unless `strict` asks for 4008.
fn check_protocol(query: &str, strict: bool) -> Result<(), Close> {
    let query = Query::parse(query).map_err(|_| Close::UNSUPPORTED_PROTOCOL)?;
    match query.get("protocol") {
        None if strict => Err(Close::NO_PROTOCOL),
        None => Ok(()),
        Some(v) => match v.parse::<u32>() {
            Ok(4..=7) => Ok(()),
            _ => Err(Close::UNSUPPORTED_PROTOCOL),
        },
    }
}

#[cfg(test)]
mod protocol_tests {
    use super::*;

    #[test]
    fn protocol_versions() {
        assert!(check_protocol("protocol=7&client=js", false).is_ok());
        assert!(check_protocol("protocol=5", false).is_ok());
        assert!(check_protocol("", false).is_ok());
        assert_eq!(check_protocol("", true), Err(Close::NO_PROTOCOL));
        for bad in ["protocol=3", "protocol=8", "protocol=x", "protocol="] {
            assert_eq!(
                check_protocol(bad, false),
                Err(Close::UNSUPPORTED_PROTOCOL),
                "{bad}"
            );
        }
    }
}
