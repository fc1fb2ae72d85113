//! The app management API at `/admin/apps`, guarded by `[admin] token`
//! (`Authorization: Bearer …`; without a token the routes do not exist):
//!
//! * `GET /admin/apps`, `POST /admin/apps` (a JSON object of `[[apps]]`
//!   keys; id, key and secret are made up when missing),
//! * `GET`, `PATCH` (the keys to change), `DELETE /admin/apps/{id}`,
//! * `POST /admin/apps/{id}/rotate-secret` (`{"grace_seconds": n}`
//!   optional).
//!
//! Answers are the app's settings as JSON plus its live `connections`
//! (cluster-wide) and, during a rotation's grace, `previous_secret_until`.
//! The work is `catalog`'s; `cli` is `herald apps`, its client.

pub mod cli;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::config::AppConfig;
use crate::http::bearer::Bearer;
use crate::http::{HttpError, HttpResult};

/// Largest request body of the admin API.
const MAX_BODY: usize = 64 * 1024;

/// The admin token (a type of its own: the console has another).
pub struct Token(Bearer);

impl Token {
    pub fn new(token: &str) -> Token {
        Token(Bearer::new(token, "admin"))
    }
}

/// The admin routes (mounted when `[admin] token` is set), with the
/// catalog and token they need.
pub fn routes(cfg: &mut web::ServiceConfig, catalog: web::Data<Catalog>, token: web::Data<Token>) {
    cfg.service(
        web::scope("/admin/apps")
            .app_data(catalog)
            .app_data(token)
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route("", web::get().to(list))
            .route("", web::post().to(create))
            .route("/{id}", web::get().to(show))
            .route("/{id}", web::patch().to(update))
            .route("/{id}", web::delete().to(delete))
            .route("/{id}/rotate-secret", web::post().to(rotate_secret)),
    );
}

fn authorize(req: &HttpRequest) -> HttpResult<()> {
    req.app_data::<web::Data<Token>>()
        .ok_or_else(|| HttpError::NotFound("Not found".into()))?
        .0
        .check(req)
}

fn json_body(body: &web::Bytes) -> HttpResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| HttpError::BadRequest(format!("invalid JSON: {e}")))
}

/// An app as the API shows it.
fn shown(catalog: &Catalog, app: &AppConfig) -> Value {
    let mut value = serde_json::to_value(app).unwrap_or_else(|_| json!({}));
    let state = catalog.state();
    let connections = state.hub.by_id(&app.id).map_or(0, |hub| {
        hub.connection_count() + state.adapter.connections_elsewhere(&hub)
    });
    if let Value::Object(map) = &mut value {
        map.insert("connections".into(), json!(connections));
        if let Some(previous) = &app.previous_secret {
            map.insert("previous_secret_until".into(), json!(previous.until));
        }
    }
    value
}

async fn list(req: HttpRequest, catalog: web::Data<Catalog>) -> HttpResult<HttpResponse> {
    authorize(&req)?;
    let apps = catalog.list().await?;
    let apps: Vec<Value> = apps.iter().map(|a| shown(&catalog, a)).collect();
    Ok(HttpResponse::Ok().json(json!({ "apps": apps })))
}

async fn show(
    req: HttpRequest,
    id: web::Path<String>,
    catalog: web::Data<Catalog>,
) -> HttpResult<HttpResponse> {
    authorize(&req)?;
    let app = catalog.get(&id).await?;
    Ok(HttpResponse::Ok().json(shown(&catalog, &app)))
}

async fn create(
    req: HttpRequest,
    body: web::Bytes,
    catalog: web::Data<Catalog>,
) -> HttpResult<HttpResponse> {
    authorize(&req)?;
    let catalog: Arc<Catalog> = catalog.into_inner();
    let app = catalog.create(json_body(&body)?).await?;
    Ok(HttpResponse::Created().json(shown(&catalog, &app)))
}

async fn update(
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
    catalog: web::Data<Catalog>,
) -> HttpResult<HttpResponse> {
    authorize(&req)?;
    let catalog: Arc<Catalog> = catalog.into_inner();
    let app = catalog.update(&id, json_body(&body)?).await?;
    Ok(HttpResponse::Ok().json(shown(&catalog, &app)))
}

async fn delete(
    req: HttpRequest,
    id: web::Path<String>,
    catalog: web::Data<Catalog>,
) -> HttpResult<HttpResponse> {
    authorize(&req)?;
    catalog.into_inner().delete(&id).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id.as_str(), "deleted": true })))
}

async fn rotate_secret(
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
    catalog: web::Data<Catalog>,
) -> HttpResult<HttpResponse> {
    authorize(&req)?;
    let grace = match json_body(&body)?.get("grace_seconds") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            HttpError::BadRequest("grace_seconds: must be a whole number of seconds".into())
        })?),
    };
    let catalog: Arc<Catalog> = catalog.into_inner();
    let app = catalog.rotate_secret(&id, grace).await?;
    Ok(HttpResponse::Ok().json(shown(&catalog, &app)))
}
