//! pusher-js's own HTTP fallback transports, `xhr_streaming` and
//! `xhr_polling`, served unchanged:
//!
//! ```text
//! POST {httpPath}/app/{key}/{server}/{session}/xhr_streaming   receive (one long response)
//! POST {httpPath}/app/{key}/{server}/{session}/xhr             receive (one poll)
//! POST {httpPath}/app/{key}/{server}/{session}/xhr_send        send: ["<frame>", ...]
//! ```
//!
//! The first receive request of a session admits the connection exactly as
//! a WebSocket upgrade would and starts a task that runs its protocol
//! [`Session`]; sends are fed to that task, receives drain the connection's
//! queue. The client never says goodbye over HTTP, so a session whose
//! client has had no receive request open for `http_session_timeout`
//! seconds ends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use bytestring::ByteString;
use dashmap::DashMap;
use futures_util::stream;
use tokio::sync::{mpsc, Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

use super::framing;
use crate::config::ServerConfig;
use crate::http::admission::Admitted;
use crate::http::body;
use crate::http::cors;
use crate::http::peer::{PeerSocket, SocketHandle};
use crate::http::per_address::{client_address, AddressPermit, PerAddress};
use crate::http::HttpError;
use crate::http::State;
use crate::hub::{AppHub, Connection};
use crate::metrics::Transport;
use crate::protocol::Close;
use crate::session::{self, Session};
use crate::support::wait::Generation;

/// A held poll or an idle stream gets a heartbeat at least this often.
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(25);
/// pusher-js replaces a stream once it has received more than this many
/// characters (UTF-16 code units, its `MAX_BUFFER_LENGTH`).
const STREAM_LIMIT: usize = 256 * 1024;

/// How often held requests get a heartbeat: writing is how a vanished client
/// is noticed, so at most half the session timeout.
fn heartbeat_interval(state: &State) -> Duration {
    let half = Duration::from_millis(state.server.http_session_timeout * 500);
    half.clamp(Duration::from_secs(1), MAX_HEARTBEAT_INTERVAL)
}

/// Messages from `xhr_send` waiting for the session task.
const INBOUND_QUEUE: usize = 64;
/// How long a closed session stays findable, so that the client's next
/// receive request still gets its `c[...]`.
const LINGER: Duration = Duration::from_secs(5);

/// The open HTTP sessions of this node, by `{key}/{server}/{session}`.
pub struct HttpSessions {
    sessions: DashMap<String, Arc<HttpSession>>,
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
    conn: Arc<Connection>,
    /// The app (for its metrics).
    app: Arc<AppHub>,
    /// The app's largest accepted client message, bytes.
    max_message_bytes: usize,
    inbound: mpsc::Sender<String>,
    /// Held by the receive request that drains the connection's queue.
    receiving: Arc<AsyncMutex<()>>,
    /// Whether `o` was written (it must be, exactly once).
    opened: AtomicBool,
    /// Receive requests currently open.
    receivers: AtomicUsize,
    /// When the client was last heard from.
    last_seen: Mutex<Instant>,
    /// The newest receive request; older ones step aside for it.
    generation: Generation,
    /// This session's place in its client address's quota.
    _address: AddressPermit,
    /// Its place among the node's connections.
    _admitted: Admitted,
}

impl HttpSession {
    fn touch(&self) {
        if let Ok(mut seen) = self.last_seen.lock() {
            *seen = Instant::now();
        }
    }

    fn last_seen(&self) -> Instant {
        self.last_seen
            .lock()
            .map(|seen| *seen)
            .unwrap_or_else(|_| Instant::now())
    }

    fn idle_for(&self) -> Duration {
        self.last_seen().elapsed()
    }
}

/// Counts an open receive request for as long as it lives.
/// When it ends because its client closed the connection, the session's
/// idle clock keeps the time the client was last served, not now: that is
/// when it was last known to be there.
struct Receiving {
    session: Arc<HttpSession>,
    client_gone: bool,
}

impl Receiving {
    fn new(session: Arc<HttpSession>) -> Self {
        session.receivers.fetch_add(1, Ordering::AcqRel);
        session.touch();
        Receiving {
            session,
            client_gone: false,
        }
    }

    /// The request ended because its client closed the connection.
    fn client_left(&mut self) {
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

/// Resolves when the client of this request closed its connection.
async fn client_closed(peer: Option<&SocketHandle>) {
    match peer {
        Some(peer) => peer.closed_by_peer().await,
        None => std::future::pending().await,
    }
}

type SessionPath = web::Path<(String, String, String)>;

fn session_key(path: &SessionPath) -> Option<String> {
    let (key, server, session) = (&path.0, &path.1, &path.2);
    let server_ok =
        !server.is_empty() && server.len() <= 4 && server.bytes().all(|b| b.is_ascii_digit());
    let session_ok = !session.is_empty()
        && session.len() <= 32
        && session.bytes().all(|b| b.is_ascii_alphanumeric());
    (server_ok && session_ok).then(|| format!("{key}/{server}/{session}"))
}

/// Why a receive request got no session.
enum Refused {
    /// Not a pusher-js session path.
    BadPath,
    /// Admission failed: the frames to send (`o`, `pusher:error`, `c[...]`).
    Frames(String),
    /// A browser on an origin the app does not allow: 403.
    Origin,
}

impl Refused {
    fn respond(self, req: &HttpRequest) -> HttpResponse {
        match self {
            Refused::BadPath => cors::apply(req, HttpResponse::NotFound()).finish(),
            Refused::Frames(body) => frames_response(req, body),
            Refused::Origin => HttpError::Forbidden("Origin not allowed".into())
                .respond(cors::apply(req, HttpResponse::Forbidden())),
        }
    }
}

/// Finds the session, or admits a new connection for it.
fn find_or_open(
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
    if let Some(app) = state.hub.by_key(&path.0) {
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
        .map_err(|_| closed(&Close::OVER_CAPACITY))?;
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
    actix_web::rt::spawn(run(session, http.clone(), inbox, sessions.clone(), id));
    Ok(http)
}

/// The session task: feeds sent frames to the protocol session until the
/// connection is closed or the client is gone.
async fn run(
    mut session: Session,
    http: Arc<HttpSession>,
    mut inbox: mpsc::Receiver<String>,
    sessions: web::Data<HttpSessions>,
    id: String,
) {
    let signin_deadline = session.signin_deadline();
    let disconnect_timeout = Duration::from_secs(session.ctx.server.http_session_timeout);
    // One timer, set to the next moment something could be due: the
    // session's idle limit, or the sign-in deadline.
    let next_check = |signed_in: bool| {
        let idle_limit = if http.receivers.load(Ordering::Acquire) > 0 {
            Instant::now() + disconnect_timeout
        } else {
            http.last_seen() + disconnect_timeout
        };
        match signin_deadline.filter(|_| !signed_in) {
            Some(deadline) => idle_limit.min(deadline),
            None => idle_limit,
        }
    };
    let timer = tokio::time::sleep_until(next_check(false));
    tokio::pin!(timer);
    let close_requested = http.conn.close_requested();
    tokio::pin!(close_requested);
    let closed = loop {
        tokio::select! {
            biased;
            request = &mut close_requested => break Some(request),
            text = inbox.recv() => match text {
                Some(text) => match session.count_inbound() {
                    Ok(()) => session.handle_text(&text).await,
                    Err(close) => http.conn.request_close(close),
                },
                None => break None,
            },
            () = &mut timer => {
                if http.receivers.load(Ordering::Acquire) == 0 && http.idle_for() >= disconnect_timeout {
                    break None;
                }
                if signin_deadline.is_some_and(|d| Instant::now() >= d) && !session.is_authorized() {
                    http.conn.request_close(Close::SIGNIN_TIMEOUT);
                }
                timer.as_mut().reset(next_check(session.is_authorized()));
            }
        }
    };
    session.leave_everything(closed).await;
    if closed.is_some() {
        // Let the client's next receive request collect the close frame.
        tokio::time::sleep(LINGER).await;
    }
    sessions.sessions.remove(&id);
}

/// Takes the session's outbound queue for this receive request, making an
/// older receive request (e.g. a stream pusher-js replaced) let go of it.
async fn take_queue(http: &Arc<HttpSession>) -> Option<(u64, OwnedMutexGuard<()>)> {
    let generation = http.generation.advance();
    let guard = tokio::time::timeout(Duration::from_secs(2), http.receiving.clone().lock_owned())
        .await
        .ok()?;
    Some((generation, guard))
}

/// What one wait on the session produced.
enum Next {
    /// Frames were moved into the batch.
    Frames,
    Close(Close),
    Heartbeat,
    /// A newer receive request took over.
    Stop,
    /// The client closed this request's connection.
    ClientGone,
}

async fn next(
    http: &HttpSession,
    generation: u64,
    batch: &mut Vec<ByteString>,
    heartbeat: Instant,
    peer: Option<&SocketHandle>,
) -> Next {
    tokio::select! {
        biased;
        request = http.conn.close_requested() => Next::Close(request),
        () = http.generation.changed_from(generation) => Next::Stop,
        () = client_closed(peer) => Next::ClientGone,
        request = http.conn.next_frames(batch) => match request {
            Some(request) => Next::Close(request),
            None => {
                http.app.metrics().sent(batch.iter());
                Next::Frames
            }
        },
        () = tokio::time::sleep_until(heartbeat) => Next::Heartbeat,
    }
}

/// `POST .../xhr_streaming`: one long response carrying every frame.
pub async fn streaming(
    req: HttpRequest,
    path: SessionPath,
    state: web::Data<State>,
    sessions: web::Data<HttpSessions>,
) -> HttpResponse {
    let http = match find_or_open(&req, &state, &sessions, &path) {
        Ok(http) => http,
        Err(refused) => return refused.respond(&req),
    };
    let Some((generation, turn)) = take_queue(&http).await else {
        return frames_response(&req, "c[2010,\"Another connection still open\"]\n".into());
    };
    let mut first = framing::streaming_prelude();
    if !http.opened.swap(true, Ordering::AcqRel) {
        first.push_str(framing::OPEN);
    }
    struct Stream {
        http: Arc<HttpSession>,
        generation: u64,
        _turn: OwnedMutexGuard<()>,
        batch: Vec<ByteString>,
        pending: Option<String>,
        /// Characters sent so far, counted as the browser counts them.
        written: usize,
        heartbeat: Duration,
        session_timeout: Duration,
        done: bool,
        receiving: Receiving,
        peer: Option<SocketHandle>,
    }
    let state0 = Stream {
        receiving: Receiving::new(http.clone()),
        peer: req.conn_data::<PeerSocket>().map(PeerSocket::handle),
        http,
        generation,
        _turn: turn,
        batch: Vec::new(),
        pending: Some(first),
        written: 0,
        heartbeat: heartbeat_interval(&state),
        session_timeout: Duration::from_secs(state.server.http_session_timeout),
        done: false,
    };
    let body = stream::unfold(state0, |mut s| async move {
        if let Some(chunk) = s.pending.take() {
            s.written += chunk.encode_utf16().count();
            return Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), s));
        }
        if s.done {
            return None;
        }
        if s.written > STREAM_LIMIT {
            // pusher-js is replacing this stream: take no frame it would
            // never read, and keep the queue for its next request.
            let deadline = Instant::now() + s.session_timeout;
            s.http
                .generation
                .changed_before(s.generation, deadline)
                .await;
            return None;
        }
        let heartbeat = Instant::now() + s.heartbeat;
        let next = next(
            &s.http,
            s.generation,
            &mut s.batch,
            heartbeat,
            s.peer.as_ref(),
        );
        let chunk = match next.await {
            Next::Frames => framing::messages(&std::mem::take(&mut s.batch)),
            Next::Heartbeat => framing::HEARTBEAT.to_owned(),
            Next::Close(request) => {
                s.done = true;
                framing::close(&request)
            }
            Next::Stop => return None,
            Next::ClientGone => {
                s.receiving.client_left();
                return None;
            }
        };
        s.http.touch();
        s.written += chunk.encode_utf16().count();
        Some((Ok(Bytes::from(chunk)), s))
    });
    cors::apply(&req, HttpResponse::Ok())
        .content_type("application/javascript; charset=UTF-8")
        .insert_header((
            "Cache-Control",
            "no-store, no-cache, must-revalidate, max-age=0",
        ))
        .streaming(body)
}

/// `POST .../xhr`: one poll, answered as soon as there is something to say.
pub async fn polling(
    req: HttpRequest,
    path: SessionPath,
    state: web::Data<State>,
    sessions: web::Data<HttpSessions>,
) -> HttpResponse {
    let http = match find_or_open(&req, &state, &sessions, &path) {
        Ok(http) => http,
        Err(refused) => return refused.respond(&req),
    };
    let mut receiving = Receiving::new(http.clone());
    if !http.opened.swap(true, Ordering::AcqRel) {
        // The open frame alone; connection_established follows on the next poll.
        return frames_response(&req, framing::OPEN.to_owned());
    }
    let Some((generation, _turn)) = take_queue(&http).await else {
        return frames_response(&req, "c[2010,\"Another connection still open\"]\n".into());
    };
    let mut batch = Vec::new();
    let peer = req.conn_data::<PeerSocket>().map(PeerSocket::handle);
    let body = match next(
        &http,
        generation,
        &mut batch,
        Instant::now() + heartbeat_interval(&state),
        peer.as_ref(),
    )
    .await
    {
        Next::Frames => framing::messages(&batch),
        Next::Heartbeat => framing::HEARTBEAT.to_owned(),
        Next::Close(request) => framing::close(&request),
        Next::Stop => String::new(),
        Next::ClientGone => {
            receiving.client_left();
            String::new()
        }
    };
    frames_response(&req, body)
}

/// `POST .../xhr_send`: a JSON array of frames from the client.
pub async fn send(
    req: HttpRequest,
    path: SessionPath,
    payload: web::Payload,
    sessions: web::Data<HttpSessions>,
    state: web::Data<State>,
) -> HttpResponse {
    let session = session_key(&path).and_then(|id| sessions.sessions.get(&id).map(|s| s.clone()));
    let Some(http) = session else {
        return cors::apply(&req, HttpResponse::NotFound()).finish();
    };
    http.touch();
    // One message at most max_message_bytes, JSON-escaped inside an array.
    let limit = 2 * http.max_message_bytes + 1024;
    let deadline = Duration::from_secs(state.server.request_body_timeout);
    let read = body::read(
        &mut payload.into_inner(),
        body::content_length(&req),
        limit,
        deadline,
    )
    .await;
    let body = match read {
        Ok(body) => body,
        Err(e) => {
            if matches!(e, body::BodyError::TooLarge(_)) {
                // As a WebSocket would: close 1009, message too big.
                http.conn.request_close(Close::TOO_LARGE);
            }
            let e = HttpError::from(e);
            let status = actix_web::ResponseError::status_code(&e);
            return e.respond(cors::apply(&req, HttpResponse::build(status)));
        }
    };
    let frames = match framing::decode_sent(&body) {
        Some(frames) => frames,
        None => {
            return cors::apply(&req, HttpResponse::BadRequest()).json(
                serde_json::json!({"error": "xhr_send body must be a JSON array of strings"}),
            );
        }
    };
    for frame in frames {
        if frame.len() > http.max_message_bytes {
            // As a WebSocket would: close 1009, message too big.
            http.conn.request_close(Close::TOO_LARGE);
            break;
        }
        if http.inbound.try_send(frame).is_err() {
            // The session task is not keeping up: the client floods it.
            http.conn.request_close(Close::FLOODING);
            break;
        }
    }
    cors::apply(&req, HttpResponse::NoContent()).finish()
}

fn frames_response(req: &HttpRequest, body: String) -> HttpResponse {
    cors::apply(req, HttpResponse::Ok())
        .content_type("application/javascript; charset=UTF-8")
        .insert_header((
            "Cache-Control",
            "no-store, no-cache, must-revalidate, max-age=0",
        ))
        .body(body)
}
