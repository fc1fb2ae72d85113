//! The table of open pusher-js HTTP sessions, one session's state, and
//! opening one: the first receive request of a session admits the
//! connection exactly as a WebSocket upgrade would (the node's admission,
//! the address's quota, the app's checks) and starts its task.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use dashmap::DashMap;
use tokio::sync::{mpsc, Mutex as AsyncMutex};
use tokio::time::Instant;

use super::{frames_response, task, INBOUND_QUEUE};
use crate::config::ServerConfig;
use crate::fallback::framing;
use crate::http::admission::Admitted;
use crate::http::cors;
use crate::http::per_address::{client_address, AddressPermit, PerAddress};
use crate::http::{HttpError, State};
use crate::hub::{AppHub, Connection};
use crate::metrics::Transport;
use crate::protocol::Close;
use crate::session;
use crate::support::wait::Generation;

/// The open HTTP sessions of this node, by `{key}/{server}/{session}`.
pub struct HttpSessions {
    pub(super) sessions: DashMap<String, Arc<HttpSession>>,
    /// Sessions held, and opened per second, per client address.
    per_address: Arc<PerAddress>,
    trust_forwarded_for: bool,
}

impl HttpSessions {
    pub fn new(server: &ServerConfig) -> Self {
        HttpSessions {
            sessions: DashMap::new(),
            per_address: PerAddress::new(
                server.max_http_sessions_per_address,
                server.new_http_sessions_per_second,
            ),
            trust_forwarded_for: server.trust_forwarded_for,
        }
    }

    /// Forgets idle addresses (run periodically).
    pub fn sweep(&self) {
        self.per_address.sweep();
    }
}

/// One pusher-js HTTP session.
pub struct HttpSession {
    pub(super) conn: Arc<Connection>,
    /// The app (for its metrics).
    pub(super) app: Arc<AppHub>,
    /// The app's largest accepted client message, bytes.
    pub(super) max_message_bytes: usize,
    pub(super) inbound: mpsc::Sender<String>,
    /// Held by the receive request that drains the connection's queue.
    pub(super) receiving: Arc<AsyncMutex<()>>,
    /// Whether `o` was written (it must be, exactly once).
    pub(super) opened: AtomicBool,
    /// Receive requests currently open.
    pub(super) receivers: AtomicUsize,
    /// When the client was last heard from.
    last_seen: Mutex<Instant>,
    /// The newest receive request; older ones step aside for it.
    pub(super) generation: Generation,
    /// This session's place in its client address's quota.
    _address: AddressPermit,
    /// Its place among the node's connections.
    _admitted: Admitted,
}

impl HttpSession {
    pub(super) fn touch(&self) {
        if let Ok(mut seen) = self.last_seen.lock() {
            *seen = Instant::now();
        }
    }

    pub(super) fn last_seen(&self) -> Instant {
        self.last_seen
            .lock()
            .map(|seen| *seen)
            .unwrap_or_else(|_| Instant::now())
    }

    pub(super) fn idle_for(&self) -> Duration {
        self.last_seen().elapsed()
    }
}

/// Counts an open receive request for as long as it lives.
/// When it ends because its client closed the connection, the session's
/// idle clock keeps the time the client was last served, not now: that is
/// when it was last known to be there.
pub(super) struct Receiving {
    session: Arc<HttpSession>,
    client_gone: bool,
}

impl Receiving {
    pub(super) fn new(session: Arc<HttpSession>) -> Self {
        session.receivers.fetch_add(1, Ordering::AcqRel);
        session.touch();
        Receiving {
            session,
            client_gone: false,
        }
    }

    /// The request ended because its client closed the connection.
    pub(super) fn client_left(&mut self) {
        self.client_gone = true;
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if !self.client_gone {
            self.session.touch();
        }
        self.session.receivers.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) type SessionPath = web::Path<(String, String, String)>;

/// The session's id, `{key}/{server}/{session}`, when the path has
/// pusher-js's shape: a server number of at most 4 digits and a session
/// id of at most 32 letters and digits.
pub(super) fn session_key(path: &SessionPath) -> Option<String> {
    key_of(&path.0, &path.1, &path.2)
}

fn key_of(key: &str, server: &str, session: &str) -> Option<String> {
    let server_ok =
        !server.is_empty() && server.len() <= 4 && server.bytes().all(|b| b.is_ascii_digit());
    let session_ok = !session.is_empty()
        && session.len() <= 32
        && session.bytes().all(|b| b.is_ascii_alphanumeric());
    (server_ok && session_ok).then(|| format!("{key}/{server}/{session}"))
}

/// Why a receive request got no session.
pub(super) enum Refused {
    /// Not a pusher-js session path.
    BadPath,
    /// Admission failed: the frames to send (`o`, `pusher:error`, `c[...]`).
    Frames(String),
    /// A browser on an origin the app does not allow: 403.
    Origin,
}

impl Refused {
    pub(super) fn respond(self, req: &HttpRequest) -> HttpResponse {
        match self {
            Refused::BadPath => cors::apply(req, HttpResponse::NotFound()).finish(),
            Refused::Frames(body) => frames_response(req, body),
            Refused::Origin => HttpError::Forbidden("Origin not allowed".into())
                .respond(cors::apply(req, HttpResponse::Forbidden())),
        }
    }
}

/// Finds the session, or admits a new connection for it.
pub(super) async fn find_or_open(
    req: &HttpRequest,
    state: &State,
    sessions: &web::Data<HttpSessions>,
    path: &SessionPath,
) -> Result<Arc<HttpSession>, Refused> {
    let Some(id) = session_key(path) else {
        return Err(Refused::BadPath);
    };
    if let Some(existing) = sessions.sessions.get(&id) {
        return Ok(existing.clone());
    }
    let origin = req.headers().get("Origin").and_then(|v| v.to_str().ok());
    if let Some(app) = state.hub.find_key(&path.0).await {
        if !app.app().origin_allowed(origin) {
            crate::metrics::refused("origin");
            return Err(Refused::Origin);
        }
    }
    let address = client_address(req, sessions.trust_forwarded_for);
    let closed =
        |close: &Close| Refused::Frames(format!("{}{}", framing::OPEN, framing::close(close)));
    let Some(permit) = sessions.per_address.acquire(address) else {
        return Err(closed(&Close::TOO_MANY_SESSIONS));
    };
    let admitted = state
        .admission
        .admit(address)
        .map_err(|refusal| closed(&refusal.report(&state.hub, &path.0, Transport::Http)))?;
    let session = session::admit(
        &state.hub,
        &state.session_context(),
        &path.0,
        session::Opening {
            query: req.query_string(),
            origin,
        },
        Transport::Http,
    )
    .map_err(|refusal| closed(&refusal))?;
    let (inbound, inbox) = mpsc::channel(INBOUND_QUEUE);
    let http = Arc::new(HttpSession {
        conn: session.conn.clone(),
        app: session.app.clone(),
        max_message_bytes: session.app.app().max_message_bytes,
        inbound,
        receiving: Arc::new(AsyncMutex::new(())),
        opened: AtomicBool::new(false),
        receivers: AtomicUsize::new(0),
        last_seen: Mutex::new(Instant::now()),
        generation: Generation::default(),
        _address: permit,
        _admitted: admitted,
    });
    sessions.sessions.insert(id.clone(), http.clone());
    actix_web::rt::spawn(task::run(
        session,
        http.clone(),
        inbox,
        sessions.clone(),
        id,
    ));
    Ok(http)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::AppConfig;
    use crate::http::admission::Admission;
    use crate::protocol::SocketId;

    fn session() -> Arc<HttpSession> {
        let address: IpAddr = "10.0.0.1".parse().expect("ip");
        let (inbound, _) = mpsc::channel(1);
        Arc::new(HttpSession {
            conn: Arc::new(Connection::new(SocketId::new(1, 2), 8)),
            app: Arc::new(AppHub::new(Arc::new(AppConfig::new("1", "k", "s")))),
            max_message_bytes: 1024,
            inbound,
            receiving: Arc::default(),
            opened: AtomicBool::new(false),
            receivers: AtomicUsize::new(0),
            last_seen: Mutex::new(Instant::now()),
            generation: Generation::default(),
            _address: PerAddress::new(0, 0).acquire(address).expect("a place"),
            _admitted: Admission::new(&ServerConfig::default())
                .admit(address)
                .expect("admitted"),
        })
    }

    #[test]
    fn session_paths_have_pusher_js_shape() {
        assert_eq!(key_of("k", "123", "abc01").as_deref(), Some("k/123/abc01"));
        for (server, session) in [
            ("", "a"),
            ("12345", "a"),
            ("1x", "a"),
            ("1", ""),
            ("1", "a-b"),
        ] {
            assert_eq!(key_of("k", server, session), None, "{server}/{session}");
        }
        assert_eq!(key_of("k", "1", &"a".repeat(33)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_receive_request_keeps_the_session_alive_until_its_client_leaves() {
        let http = session();
        tokio::time::advance(Duration::from_secs(5)).await;
        let receiving = Receiving::new(http.clone());
        assert_eq!(http.receivers.load(Ordering::Acquire), 1);
        assert_eq!(http.idle_for(), Duration::ZERO, "touched when it opened");
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(receiving);
        assert_eq!(http.receivers.load(Ordering::Acquire), 0);
        assert_eq!(http.idle_for(), Duration::ZERO, "served until it ended");

        tokio::time::advance(Duration::from_secs(3)).await;
        let mut gone = Receiving::new(http.clone());
        tokio::time::advance(Duration::from_secs(4)).await;
        gone.client_left();
        drop(gone);
        assert_eq!(
            http.idle_for(),
            Duration::from_secs(4),
            "a client that left was last seen when it was last served"
        );
    }
}
