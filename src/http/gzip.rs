//! gzip for JSON answers that may be large (the polling endpoint): used
//! when the client asks for it (`Accept-Encoding`), the server compresses
//! (`[server] compression`) and the body is at least
//! `compression_min_bytes`, the same rule as permessage-deflate.

use std::io::Write;

use actix_web::http::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, VARY};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use flate2::write::GzEncoder;
use flate2::Compression;

use super::State;

/// Whether `Accept-Encoding` takes gzip (named, or `*`, with a weight
/// above 0).
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let weight = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            ["gzip", "x-gzip", "*"].contains(&name.to_ascii_lowercase().as_str()) && weight > 0.0
        })
}

/// `body` as a JSON answer from `response`, gzipped when the client takes
/// it and it is large enough to be worth it.
pub fn json(
    req: &HttpRequest,
    state: &State,
    mut response: HttpResponseBuilder,
    body: &serde_json::Value,
) -> HttpResponse {
    let bytes = body.to_string().into_bytes();
    response.content_type("application/json");
    response.insert_header((VARY, HeaderValue::from_static("Accept-Encoding")));
    if state.server.compression
        && bytes.len() >= state.server.compression_min_bytes
        && accepts_gzip(req)
    {
        let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::new(6));
        // Writing into a Vec cannot fail.
        if encoder.write_all(&bytes).is_ok() {
            if let Ok(gzipped) = encoder.finish() {
                response.insert_header((CONTENT_ENCODING, HeaderValue::from_static("gzip")));
                return response.body(gzipped);
            }
        }
    }
    response.body(bytes)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn gzip_is_used_only_where_accepted() {
        let asks = |value: &str| {
            accepts_gzip(
                &TestRequest::default()
                    .insert_header((ACCEPT_ENCODING, value))
                    .to_http_request(),
            )
        };
        assert!(asks("gzip, deflate, br"));
        assert!(asks("br;q=1.0, gzip;q=0.5"));
        assert!(asks("*"));
        assert!(!asks("gzip;q=0"));
        assert!(!asks("br, deflate"));
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }
}
