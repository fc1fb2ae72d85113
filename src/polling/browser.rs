//! The browser door of the JSON polling endpoint (see [`crate::polling`]):
//! a socket id for the poller, then polls authorised with the app's own
//! `/broadcasting/auth` signatures, with CORS on every answer.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{self as polling, Poll};
use crate::http::State;
use crate::http::{cors, gzip};
use crate::http::{HttpError, HttpResult};
use crate::hub::AppHub;
use crate::support::query::Query;

/// The app of `key`, enabled, for a browser on an origin it allows.
async fn app_by_key(
    state: &State,
    req: &HttpRequest,
    key: &str,
) -> HttpResult<std::sync::Arc<AppHub>> {
    let app = state
        .hub
        .find_key(key)
        .await
        .ok_or_else(|| HttpError::NotFound(format!("Unknown app key {key:?}")))?;
    if !app.app().enabled {
        return Err(HttpError::Forbidden("Application disabled".into()));
    }
    let origin = req.headers().get("Origin").and_then(|v| v.to_str().ok());
    if !app.app().origin_allowed(origin) {
        crate::metrics::refused("origin");
        return Err(HttpError::Forbidden("Origin not allowed".into()));
    }
    Ok(app)
}

/// `GET /app/{key}/poll/v1/session`: a socket id for a browser poller.
pub async fn session(
    req: HttpRequest,
    key: web::Path<String>,
    state: web::Data<State>,
) -> HttpResponse {
    let answer = app_by_key(&state, &req, &key).await.map(|app| {
        let socket_id = polling::poll_socket_id(&app.app().secret, rand::random());
        json!({ "socket_id": socket_id.to_string() })
    });
    respond(&req, &state, answer.map(|body| (200, body)))
}

/// `GET /app/{key}/poll/v1`: for browsers; private, encrypted and presence
/// channels need the signature the app's auth endpoint gives for the
/// poller's socket id.
pub async fn browser_poll(
    req: HttpRequest,
    key: web::Path<String>,
    state: web::Data<State>,
) -> HttpResponse {
    let answer = async {
        let app = app_by_key(&state, &req, &key).await?;
        let query = Query::parse(req.query_string())?;
        let poll = Poll::parse(&query, &app)?;
        polling::authorize_browser(&query, &app, &poll)?;
        let _held = polling::hold_long_poll(&state, &req, &poll)?;
        polling::answer(&state.adapter, &app, poll).await
    };
    respond(&req, &state, answer.await)
}

/// Every answer, errors included, carries CORS headers; large ones are
/// gzipped for clients that take it.
fn respond(
    req: &HttpRequest,
    state: &State,
    answer: HttpResult<(u16, serde_json::Value)>,
) -> HttpResponse {
    match answer {
        Ok((status, body)) => {
            let status = actix_web::http::StatusCode::from_u16(status).unwrap_or_default();
            gzip::json(
                req,
                state,
                cors::apply(req, HttpResponse::build(status)),
                &body,
            )
        }
        Err(e) => {
            let status = actix_web::ResponseError::status_code(&e);
            e.respond(cors::apply(req, HttpResponse::build(status)))
        }
    }
}
