//! `xhr_send`: the client's frames, fed to its session's task, with the
//! same limits a WebSocket has (message size, flooding).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use super::sessions::{session_key, HttpSessions, SessionPath};
use crate::fallback::framing;
use crate::http::body;
use crate::http::cors;
use crate::http::{HttpError, State};
use crate::protocol::Close;

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
