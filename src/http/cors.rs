//! CORS for the fallback endpoints, which browsers call from the app's own
//! origin. pusher-js never sends credentials, so echoing the origin (or `*`)
//! is enough; its POSTs carry `Content-Type: application/json`, so every one
//! is preflighted.

use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};

/// Adds the headers that let the calling origin read the response.
pub fn apply(req: &HttpRequest, mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    match req.headers().get("Origin").and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            builder.insert_header(("Access-Control-Allow-Origin", origin));
            builder.insert_header(("Vary", "Origin"));
        }
        None => {
            builder.insert_header(("Access-Control-Allow-Origin", "*"));
        }
    }
    builder
}

/// Answers an `OPTIONS` preflight.
pub async fn preflight(req: HttpRequest) -> HttpResponse {
    let headers = req
        .headers()
        .get("Access-Control-Request-Headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Content-Type")
        .to_owned();
    apply(&req, HttpResponse::NoContent())
        .insert_header(("Access-Control-Allow-Methods", "GET, POST, OPTIONS"))
        .insert_header(("Access-Control-Allow-Headers", headers))
        .insert_header(("Access-Control-Max-Age", "86400"))
        .finish()
}
