//! WebSocket connections at `/app/{key}`: the upgrade, then one task per
//! admitted connection running [`socket::run`] over a protocol
//! [`Session`](crate::session::Session).

pub mod frame_guard;
mod socket;

use crate::support::peer::PeerSocket;

use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason};
use futures_util::Stream;

use crate::metrics::Transport;
use crate::protocol::{messages, Close};
use crate::session;
use crate::state::State;

/// Handles `GET /app/{key}`: upgrades, then either runs a session or sends
/// the refusal as a `pusher:error` plus a close frame with the same code
/// (pusher-js acts on the code of either).
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    key: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, actix_web::Error> {
    let admitted = session::admit(
        &state.hub,
        &state.session_context(),
        &key,
        req.query_string(),
        Transport::WebSocket,
    );
    // Frame sizes are checked on the raw bytes, before actix buffers a frame.
    let max = match &admitted {
        Ok(session) => session.app.app().max_message_bytes,
        Err(_) => REFUSED_MAX_MESSAGE,
    };
    let guard: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(frame_guard::Guarded::new(body.into_inner(), max));
    let mut guarded = Payload::Stream { payload: guard };
    let body = web::Payload::from_request(&req, &mut guarded).await?;
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    let peer = req.conn_data::<PeerSocket>().map(PeerSocket::handle);
    match admitted {
        Ok(session) => {
            actix_web::rt::spawn(socket::run(session, ws, stream, peer));
        }
        Err(refusal) => {
            actix_web::rt::spawn(async move {
                socket::say_goodbye(ws, Some(refusal)).await;
                drop(stream);
                socket::release(peer).await;
            });
        }
    }
    Ok(response)
}

/// What a refused connection may still send while it is told goodbye.
const REFUSED_MAX_MESSAGE: usize = 1024;

/// A close frame with a Pusher code.
pub(crate) fn close_reason(close: Close) -> CloseReason {
    CloseReason {
        code: CloseCode::Other(close.code),
        description: Some(close.reason.to_owned()),
    }
}

/// The `pusher:error` frame that goes before a close that asks for one.
fn error_frame(close: Close) -> Option<bytestring::ByteString> {
    close
        .send_error
        .then(|| messages::error(Some(close.code), close.reason, None))
}
