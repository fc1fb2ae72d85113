//! The Pusher HTTP API under `/apps/{app_id}`: one handler per endpoint, each
//! taking a [`Signed`] request (app found, body read within its limit,
//! signature checked) before doing anything.

mod channels;
mod events;
mod poll;
pub mod signature;
mod users;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use actix_web::dev::{Payload, Service, ServiceResponse};
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};

pub use crate::http::{HttpError, HttpResult};

use crate::http::body;
use crate::http::State;
use crate::hub::AppHub;
use crate::metrics;
use crate::support::clock::unix_secs;
use crate::support::query::Query;

/// Registers the API routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/apps/{app_id}")
            .wrap_fn(|req, service| {
                let started = std::time::Instant::now();
                let response = service.call(req);
                async move {
                    let response = response.await?;
                    count(&response, started.elapsed());
                    Ok(response)
                }
            })
            .route("/events", web::post().to(events::trigger))
            .route("/batch_events", web::post().to(events::trigger_batch))
            .route("/channels", web::get().to(channels::list))
            .route("/channels/{channel}", web::get().to(channels::show))
            .route("/channels/{channel}/users", web::get().to(channels::users))
            .route(
                "/users/{user_id}/terminate_connections",
                web::post().to(users::terminate_connections),
            )
            .route("/poll/v1", web::get().to(poll::poll)),
    );
}

/// Counts an answered API request (metrics and a debug line for errors),
/// labelled by a known app id only, so a stranger cannot make up labels.
fn count(response: &ServiceResponse, took: Duration) {
    let req = response.request();
    let app = req.match_info().get("app_id").unwrap_or_default();
    let known = req
        .app_data::<web::Data<State>>()
        .is_some_and(|state| state.hub.by_id(app).is_some());
    let app = if known { app } else { "unknown" };
    let pattern = req.match_pattern().unwrap_or_default();
    let endpoint = pattern.strip_prefix("/apps/{app_id}").unwrap_or("other");
    let status = response.status().as_u16();
    metrics::api_request(app, endpoint, status, took);
    if status >= 400 {
        tracing::debug!(app, endpoint, status, "HTTP API request refused");
    }
}

/// What a request spends of its app's per-second API budget on this node.
pub(super) enum Spend {
    /// Triggering `n` events (a batch counts its events).
    Events(u32),
    /// One read request (channels, a channel, its users).
    Read,
}

impl Signed {
    /// Takes what the request spends, or 429 (counted) beyond the budget.
    pub(super) fn spend(&self, spend: Spend) -> HttpResult<()> {
        let app = self.app.app();
        let budget = self.app.api_budget();
        let (within, reason, what) = match spend {
            Spend::Events(n) => (
                budget.take_events(n, app.max_backend_events_per_second),
                "api_events",
                format!("{} events per second", app.max_backend_events_per_second),
            ),
            Spend::Read => (
                budget.take_read(app.max_read_requests_per_second),
                "api_reads",
                format!(
                    "{} read requests per second",
                    app.max_read_requests_per_second
                ),
            ),
        };
        if within {
            return Ok(());
        }
        metrics::refused(reason);
        Err(HttpError::TooManyRequests(format!(
            "Rate limit exceeded: this app may make {what} (per node)"
        )))
    }
}

/// A request whose app exists and whose signature is valid.
pub struct Signed {
    pub app: Arc<AppHub>,
    pub state: State,
    pub body: Bytes,
    /// The query string, parsed once.
    pub query: Query,
}

impl FromRequest for Signed {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move { authenticate(req, payload).await })
    }
}

/// Finds the app and checks the signature from the request line alone;
/// only then reads the body (bounded in size and time) and checks it
/// against the signed `body_md5`.
async fn authenticate(req: HttpRequest, mut payload: Payload) -> HttpResult<Signed> {
    let state = req
        .app_data::<web::Data<State>>()
        .ok_or_else(|| HttpError::Unavailable("server state missing".into()))?
        .get_ref()
        .clone();
    let app_id = req.match_info().get("app_id").unwrap_or_default();
    let app = state
        .hub
        .find_id(app_id)
        .await
        .ok_or_else(|| HttpError::NotFound(format!("Unknown app {app_id:?}")))?
        .clone();
    let query = Query::parse(req.query_string())?;
    let body_md5 = signature::verify(
        &app.app(),
        &signature::SignedParts {
            method: req.method().as_str(),
            path: req.path(),
            query: &query,
            mount: &state.server.path,
        },
        unix_secs(),
        state.server.http_timestamp_window,
    )?;
    let body = body::read(
        &mut payload,
        body::content_length(&req),
        state.server.max_request_bytes,
        Duration::from_secs(state.server.request_body_timeout),
    )
    .await?;
    signature::verify_body(body_md5.as_deref(), &body)?;
    if !app.app().enabled {
        return Err(HttpError::Forbidden("Application disabled".into()));
    }
    Ok(Signed {
        app,
        state,
        body,
        query,
    })
}
