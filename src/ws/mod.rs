//! WebSocket connections at `/app/{key}`.
//!
//! actix-http hands every HTTP/1 request that asks for an upgrade, with its
//! socket, to [`upgrade`]: it checks the handshake, admits the connection
//! and runs it on a task of its own ([`socket::run`], sized for its loop
//! alone), reading and writing the socket itself. So a connection is one
//! task and no buffer while idle,
//! instead of actix-http's dispatcher (two 8 KiB buffers), actix-ws's
//! channel and a session task beside them.

pub mod deflate;
pub mod frame;
pub mod io;
pub mod reader;
mod socket;

use actix_codec::{Encoder, Framed};
use actix_http::body::BodySize;
use actix_http::header::{HeaderValue, SEC_WEBSOCKET_EXTENSIONS};
use actix_http::{h1, HttpMessage, Request, Response, StatusCode};
use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::AsyncWriteExt;

use self::deflate::Deflate;
pub use self::io::{Io, TlsStream};
use self::socket::Socket;
use crate::http::per_address::address_of;
use crate::http::State;
use crate::metrics::Transport;
use crate::protocol::{messages, Close};
use crate::session;

/// What a refused connection may still send while it is told goodbye.
const REFUSED_MAX_MESSAGE: usize = 1024;

/// Serves an upgrade request: `GET /app/{key}` becomes a WebSocket
/// connection (refused ones hear why as a `pusher:error` plus a close frame
/// with the same code, which pusher-js acts on); anything else is answered
/// and the connection closed.
pub async fn upgrade<T: Io>(state: State, req: Request, framed: Framed<T, h1::Codec>) {
    // The dispatcher's write buffer (8 KiB) goes now; its read buffer holds
    // whatever the client sent after the handshake.
    let actix_codec::FramedParts {
        mut io,
        mut codec,
        read_buf: read,
        ..
    } = framed.into_parts();
    let Some(key) = app_key(req.path(), &state.server.path) else {
        // (actix-http hands over WebSocket upgrades to any path; other
        // upgrades, such as h2c, are served as plain HTTP/1.1 requests.)
        let body = r#"{"error":"WebSocket connections are served at /app/{key} only"}"#;
        return answer(&mut io, &mut codec, StatusCode::NOT_FOUND, body).await;
    };
    let mut accepted = match actix_http::ws::handshake(req.head()) {
        Ok(mut accepted) => accepted.finish().drop_body(),
        Err(refused) => {
            let status = Response::from(refused).status();
            let body = r#"{"error":"Expected a WebSocket handshake"}"#;
            return answer(&mut io, &mut codec, status, body).await;
        }
    };
    let deflate = compression(&state, &req, &mut accepted);
    let mut head = BytesMut::new();
    if codec
        .encode(h1::Message::Item((accepted, BodySize::None)), &mut head)
        .is_err()
        || io.write_all(&head).await.is_err()
    {
        return;
    }
    // The node's admission first (caps, rates, memory), then the app's.
    let address = address_of(
        req.headers(),
        req.peer_addr(),
        state.server.trust_forwarded_for,
    );
    let admitted = match state.admission.admit(address) {
        // (With an app store, a key not in memory is asked for first.)
        Ok(place) if state.hub.find_key(key).await.is_none() => {
            drop(place);
            Err(Close::APP_NOT_FOUND)
        }
        Ok(place) => session::admit(
            &state.hub,
            &state.session_context(),
            key,
            session::Opening {
                query: req.uri().query().unwrap_or(""),
                origin: req
                    .headers()
                    .get(actix_http::header::ORIGIN)
                    .and_then(|v| v.to_str().ok()),
            },
            Transport::WebSocket,
        )
        .map(|session| (session, place)),
        Err(refusal) => Err(refusal.report(&state.hub, key, Transport::WebSocket)),
    };
    let compress_from = state.server.compression_min_bytes;
    // Nothing of the request is needed any more: a connection lives long.
    drop((head, codec, req, state));
    match admitted {
        Ok((session, place)) => {
            let max = session.app.app().max_message_bytes;
            let socket = Socket::new(io, read, max, deflate, compress_from);
            // A task of its own, sized for the connection's loop alone:
            // this one (as large as the handshake's state) ends here.
            // (A combinator, not an async block: a block would keep the
            // session and socket twice, as captures and in the loop.)
            let run = socket::run(session, socket).map(move |()| drop(place));
            actix_web::rt::spawn(run);
        }
        Err(refusal) => {
            let mut socket = Socket::new(io, read, REFUSED_MAX_MESSAGE, deflate, compress_from);
            let said = socket::say_goodbye(&mut socket, Some(refusal)).await;
            socket::hang_up(socket, said).await;
        }
    }
}

/// Agrees to permessage-deflate when the server compresses and the client
/// offers terms Herald can honour, saying so in the handshake's answer;
/// otherwise the connection is plain (never a failed handshake).
fn compression(state: &State, req: &Request, accepted: &mut Response<()>) -> Option<Deflate> {
    if !state.server.compression {
        return None;
    }
    let offers = req
        .headers()
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .filter_map(|offer| offer.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (deflate, response) = Deflate::negotiate(&offers)?;
    let response = HeaderValue::from_str(&response).ok()?;
    accepted
        .headers_mut()
        .insert(SEC_WEBSOCKET_EXTENSIONS, response);
    Some(deflate)
}

/// The key in `/app/{key}`, under the path prefix `mount` or at the root.
fn app_key<'a>(path: &'a str, mount: &str) -> Option<&'a str> {
    let path = match path.strip_prefix(mount) {
        Some(rest) if !mount.is_empty() && rest.starts_with('/') => rest,
        _ => path,
    };
    path.strip_prefix("/app/")
        .filter(|key| !key.is_empty() && !key.contains('/'))
}

/// Answers a request that is no WebSocket handshake with a JSON error, and
/// closes the connection.
async fn answer<T: Io>(io: &mut T, codec: &mut h1::Codec, status: StatusCode, body: &str) {
    let mut response = Response::with_body(status, ());
    response.headers_mut().insert(
        actix_http::header::CONTENT_TYPE,
        actix_http::header::HeaderValue::from_static("application/json"),
    );
    response
        .head_mut()
        .set_connection_type(actix_http::ConnectionType::Close);
    let mut out = BytesMut::new();
    let size = BodySize::Sized(body.len() as u64);
    if codec
        .encode(h1::Message::Item((response, size)), &mut out)
        .is_ok()
    {
        out.extend_from_slice(body.as_bytes());
        let _ = io.write_all(&out).await;
        let _ = io.shutdown().await;
    }
}

/// The `pusher:error` frame that goes before a close that asks for one.
fn error_frame(close: Close) -> Option<bytestring::ByteString> {
    close
        .send_error
        .then(|| messages::error(Some(close.code), close.reason, None))
}

#[cfg(test)]
mod tests {
    use super::app_key;

    #[test]
    fn only_app_paths_are_websockets() {
        assert_eq!(app_key("/app/key", ""), Some("key"));
        for path in ["/app/", "/app/key/extra", "/apps/1/events", "/"] {
            assert_eq!(app_key(path, ""), None, "{path}");
        }
    }

    #[test]
    fn under_a_path_prefix_and_at_the_root() {
        assert_eq!(app_key("/ws/app/key", "/ws"), Some("key"));
        assert_eq!(app_key("/app/key", "/ws"), Some("key"));
        assert_eq!(app_key("/wsx/app/key", "/ws"), None);
        assert_eq!(app_key("/ws/app/", "/ws"), None);
    }
}
