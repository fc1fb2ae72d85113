//! HTTP API request lines: the query parser and the signature check, from
//! any method, path and query string (and a body checked against it).
#![no_main]

use herald::api::signature::{self, SignedParts};
use herald::config::AppConfig;
use herald::support::query::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // method \n path \n query \n body
    let mut parts = text.splitn(4, '\n');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let raw_query = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let Ok(query) = Query::parse(raw_query) else {
        return;
    };
    let _ = query.get("info");
    let _ = signature::signed_params(&query);
    let app = AppConfig::new("1", "app-key", "app-secret");
    let parts = SignedParts {
        method,
        path,
        query: &query,
        mount: "/ws",
    };
    if let Ok(body_md5) = signature::verify(&app, &parts, 1_700_000_000, 600) {
        let _ = signature::verify_body(body_md5.as_deref(), body.as_bytes());
    }
});
