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

mod receive;
mod send;
mod sessions;
mod task;

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse};

pub use self::receive::{polling, streaming};
pub use self::send::send;
pub use self::sessions::HttpSessions;
use crate::http::cors;
use crate::http::State;

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

fn frames_response(req: &HttpRequest, body: String) -> HttpResponse {
    cors::apply(req, HttpResponse::Ok())
        .content_type("application/javascript; charset=UTF-8")
        .insert_header((
            "Cache-Control",
            "no-store, no-cache, must-revalidate, max-age=0",
        ))
        .body(body)
}
