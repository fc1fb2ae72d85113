//! WebSocket connections at `/app/{key}`: the upgrade and its admission checks
//! (app key, protocol version, app enabled, connection quota), then one
//! [`session::Session`] per admitted connection.

mod client_event;
mod rate_limit;
mod session;
mod signin;
mod subscribe;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason};

use crate::hub::Connection;
use crate::protocol::{codes, messages, SocketId};
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
    let admitted = admit(&state, &key, req.query_string());
    match admitted {
        Ok((app, conn, rx)) => {
            let session = session::Session::new(state.get_ref().clone(), app, conn);
            actix_web::rt::spawn(session.run(ws, stream, rx));
        }
        Err((code, message)) => {
            actix_web::rt::spawn(refuse(ws, code, message));
        }
    }
    Ok(response)
}

type Admitted = (
    Arc<crate::hub::AppHub>,
    Arc<Connection>,
    tokio::sync::mpsc::Receiver<bytestring::ByteString>,
);

fn admit(state: &State, key: &str, query: &str) -> Result<Admitted, (u16, &'static str)> {
    let app = state
        .hub
        .by_key(key)
        .ok_or((codes::APP_NOT_FOUND, "Application does not exist"))?;
    check_protocol(query, state.server.require_protocol_param)?;
    if !app.app.enabled {
        return Err((codes::APP_DISABLED, "Application disabled"));
    }
    let (conn, rx) = Connection::new(SocketId::random(), state.server.connection_queue);
    let conn = Arc::new(conn);
    if !app.admit(&conn, state.adapter.connections_elsewhere(app)) {
        return Err((
            codes::OVER_CONNECTION_QUOTA,
            "Application is over connection quota",
        ));
    }
    state.adapter.connections_changed(app);
    Ok((app.clone(), conn, rx))
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
