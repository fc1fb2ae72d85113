//! WebSocket connections at `/app/{key}`: the upgrade, then one task per
//! admitted connection running [`socket::run`] over a protocol
//! [`Session`](crate::session::Session).

mod socket;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason};

use crate::protocol::messages;
use crate::session::{self, Session};
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
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    match session::admit(&state, &key, req.query_string()) {
        Ok(admitted) => {
            let session = Session::start(state.get_ref().clone(), admitted.app, admitted.conn);
            actix_web::rt::spawn(socket::run(session, ws, stream, admitted.queue));
        }
        Err((code, message)) => {
            actix_web::rt::spawn(refuse(ws, code, message));
        }
    }
    Ok(response)
}

async fn refuse(mut ws: actix_ws::Session, code: u16, message: &'static str) {
    let _ = ws.text(messages::error(Some(code), message, None)).await;
    let _ = ws.close(Some(close_reason(code, message))).await;
}

/// A close frame with a Pusher code.
pub(crate) fn close_reason(code: u16, message: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::Other(code),
        description: Some(message.to_owned()),
    }
}
