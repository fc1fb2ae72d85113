//! For clients that cannot hold a WebSocket: pusher-js's own HTTP
//! transports ([`xhr`]). (The JSON polling endpoint is [`crate::polling`].)

pub mod framing;
pub mod xhr;

use actix_web::http::Method;
use actix_web::web;

use crate::http::cors;

pub use xhr::HttpSessions;

/// pusher-js's default `httpPath`; the transports are also served at the
/// root for apps that set `httpPath: '/'`-style prefixes through a proxy.
const HTTP_PATHS: [&str; 2] = ["/pusher", ""];

/// Registers the fallback routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in HTTP_PATHS {
        let base = format!("{prefix}/app/{{key}}/{{server}}/{{session}}");
        cfg.service(
            web::resource(format!("{base}/xhr_streaming"))
                .route(web::post().to(xhr::streaming))
                .route(web::method(Method::OPTIONS).to(cors::preflight)),
        )
        .service(
            web::resource(format!("{base}/xhr"))
                .route(web::post().to(xhr::polling))
                .route(web::method(Method::OPTIONS).to(cors::preflight)),
        )
        .service(
            web::resource(format!("{base}/xhr_send"))
                .route(web::post().to(xhr::send))
                .route(web::method(Method::OPTIONS).to(cors::preflight)),
        );
    }
}
