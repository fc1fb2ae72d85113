//! The live debug console at `/console`: a page served by Herald itself
//! (plain HTML, CSS and JavaScript, no build step) and the small API behind
//! it. Off unless `[console] token` is set; every API call carries the
//! token in an `Authorization: Bearer` header (the page asks for it and
//! never puts it in a URL).
//!
//! Per app: a live stream of what happens (`feed`), the occupied channels
//! with their counts and presence members, and sending a test event. The
//! stream is pushed as server-sent events over one long response, and
//! costs nothing while no console is open.

mod feed;
mod observer;

pub use feed::Feed;
pub use observer::Consoles;

use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::http::bearer::Bearer;
use crate::http::body;
use crate::http::State;
use crate::http::{event, HttpError, HttpResult};
use crate::hub::AppHub;
use crate::metrics::METRICS;
use crate::protocol::ChannelType;

/// The console's token (a type of its own: the admin API has another).
pub struct Token(Bearer);

impl Token {
    pub fn new(token: &str) -> Token {
        Token(Bearer::new(token, "console"))
    }
}

/// A comment line sent this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Channels listed at most (the busiest deployments have more).
const MAX_LISTED: usize = 500;

/// Presence members listed per channel at most.
const MAX_MEMBERS: usize = 100;

/// Registers `/console` and its API (only called when a token is set).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(page)).service(
        web::scope("/console/api")
            .route("/apps", web::get().to(apps))
            .route("/apps/{app_id}/channels", web::get().to(channels))
            .route("/apps/{app_id}/stream", web::get().to(stream_events))
            .route("/apps/{app_id}/events", web::post().to(send_event)),
    );
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(include_str!("page.html"))
}

/// Checks the bearer token (see [`Token`]).
fn authorize(req: &HttpRequest) -> HttpResult<()> {
    req.app_data::<web::Data<Token>>()
        .ok_or_else(|| HttpError::NotFound("Not found".into()))?
        .0
        .check(req)
}

fn app_of(state: &State, req: &HttpRequest) -> HttpResult<std::sync::Arc<AppHub>> {
    authorize(req)?;
    let id = req.match_info().get("app_id").unwrap_or_default();
    state
        .hub
        .by_id(id)
        .ok_or_else(|| HttpError::NotFound(format!("Unknown app {id:?}")))
}

async fn apps(req: HttpRequest, state: web::Data<State>) -> HttpResult<HttpResponse> {
    authorize(&req)?;
    let apps = state.hub.apps();
    let mut ids: Vec<&str> = apps.iter().map(|a| a.id()).collect();
    ids.sort();
    // Live connections per app, cluster-wide.
    let connections: serde_json::Map<String, serde_json::Value> = apps
        .iter()
        .map(|app| {
            let count = app.connection_count() + state.adapter.connections_elsewhere(app);
            (app.id().to_owned(), json!(count))
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "apps": ids, "connections": connections })))
}

/// Occupied channels (cluster-wide in cluster mode) with their counts, and
/// the members of presence channels.
async fn channels(req: HttpRequest, state: web::Data<State>) -> HttpResult<HttpResponse> {
    let app = app_of(&state, &req)?;
    let mut channels = state.adapter.channels(&app, None).await?;
    channels.sort_by(|a, b| a.0.cmp(&b.0));
    let total = channels.len();
    channels.truncate(MAX_LISTED);
    // Presence members of every listed channel at once (one round trip
    // each in cluster mode, made together rather than one after another).
    let members = futures_util::future::try_join_all(channels.iter().map(|(name, _)| {
        let (adapter, app) = (&state.adapter, &app);
        async move {
            if !ChannelType::of(name).is_presence() {
                return Ok(None);
            }
            let mut users = adapter.channel_users(app, name).await?;
            users.sort();
            users.truncate(MAX_MEMBERS);
            Ok::<_, HttpError>(Some(users))
        }
    }))
    .await?;
    let listed: Vec<_> = channels
        .into_iter()
        .zip(members)
        .map(|((name, stats), members)| {
            json!({
                "name": name,
                "subscription_count": stats.subscription_count,
                "user_count": stats.user_count,
                "members": members,
            })
        })
        .collect();
    // The node's permessage-deflate saving, which the page shows as a
    // ratio beside the channels it refreshes.
    let compression = json!({
        "enabled": state.server.compression,
        "before": METRICS.deflate_in.get(),
        "after": METRICS.deflate_out.get(),
    });
    Ok(HttpResponse::Ok().json(json!({
        "channels": listed,
        "total": total,
        "compression": compression,
    })))
}

/// The app's feed as server-sent events, until the page goes away.
async fn stream_events(req: HttpRequest, state: web::Data<State>) -> HttpResult<HttpResponse> {
    let app = app_of(&state, &req)?;
    let events = req
        .app_data::<web::Data<Consoles>>()
        .and_then(|consoles| consoles.feed(app.id()))
        .ok_or_else(|| HttpError::NotFound(format!("No console for app {:?}", app.id())))?
        .listen();
    let opening = Bytes::from_static(b": connected\n\n");
    let body = stream::unfold((Some(opening), events), |(first, mut events)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, actix_web::Error>(first), (None, events)));
        }
        let chunk = tokio::select! {
            received = events.events.recv() => match received {
                Ok(event) => format!("data: {event}\n\n"),
                Err(RecvError::Lagged(missed)) => {
                    format!("data: {}\n\n", json!({"type": "skipped", "count": missed}))
                }
                Err(RecvError::Closed) => return None,
            },
            () = tokio::time::sleep(KEEPALIVE) => ": keepalive\n\n".to_owned(),
        };
        Some((Ok(Bytes::from(chunk)), (None, events)))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(body))
}

/// Publishes a test event: the body of `POST /events`
/// (`{"name", "channel", "data"}`), checked the same way. The token is
/// checked before the body is read, and the body is bounded like the API's.
async fn send_event(
    req: HttpRequest,
    state: web::Data<State>,
    payload: web::Payload,
) -> HttpResult<HttpResponse> {
    let app = app_of(&state, &req)?;
    if !app.app().enabled {
        return Err(HttpError::Forbidden("Application disabled".into()));
    }
    let body = body::read(
        &mut payload.into_inner(),
        body::content_length(&req),
        state.server.max_request_bytes,
        Duration::from_secs(state.server.request_body_timeout),
    )
    .await?;
    let event = event::parse(&app.app(), &body)?;
    state.adapter.publish_api_event(&app, &event);
    Ok(HttpResponse::Ok().json(json!({})))
}
