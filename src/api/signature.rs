//! Checks the signature of an HTTP API request exactly as the official SDKs
//! (PHP, node, python) sign it: `auth_key`, `auth_timestamp` within the
//! window, `auth_version` 1.0, `auth_signature` over every other received
//! parameter, and `body_md5` of the exact body bytes.
//!
//! The signature covers `body_md5`, so it is checked from the request line
//! alone ([`verify`]), before any of the body is read; the body is then read
//! (bounded in size and time) and compared with the signed MD5
//! ([`verify_body`]).

use std::collections::BTreeMap;

use crate::auth;
use crate::config::AppConfig;
use crate::http::HttpError;
use crate::support::query::{self, Query};

/// A request line as the signature sees it.
pub struct SignedParts<'a> {
    pub method: &'a str,
    /// The path as received (percent-encoded, without query).
    pub path: &'a str,
    pub query: &'a Query,
    /// The server's path prefix (`[server] path`; empty: none).
    pub mount: &'a str,
}

/// The parameters as the SDKs sign them: keys lower-cased, repeated keys
/// joined with `,`, sorted by key.
pub fn signed_params(query: &Query) -> BTreeMap<String, String> {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in query.pairs() {
        merged
            .entry(k.to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    merged
}

fn unauthorized(message: impl Into<String>) -> HttpError {
    HttpError::Unauthorized(message.into())
}

/// Verifies the request line; `now` is Unix seconds. Returns the signed
/// `body_md5`, for [`verify_body`].
pub fn verify(
    app: &AppConfig,
    request: &SignedParts,
    now: u64,
    window: u64,
) -> Result<Option<String>, HttpError> {
    let params = signed_params(request.query);
    let param = |key: &str| params.get(key).map(String::as_str);
    let required =
        |key: &str| param(key).ok_or_else(|| unauthorized(format!("Missing {key} parameter")));
    let key = required("auth_key")?;
    let timestamp = required("auth_timestamp")?;
    let version = required("auth_version")?;
    let signature = required("auth_signature")?;

    if version != "1.0" {
        return Err(unauthorized(
            "Version not supported: auth_version must be 1.0",
        ));
    }
    if key != app.key {
        return Err(unauthorized("Unknown auth_key"));
    }
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| unauthorized("auth_timestamp must be Unix seconds"))?;
    if now.abs_diff(ts) >= window {
        return Err(unauthorized(format!(
            "Timestamp expired: given timestamp {ts} not within {window}s of server time {now}"
        )));
    }
    let body_md5 = param("body_md5").map(str::to_owned);

    // The decoded path is what the SDKs sign; the raw one is tried too in
    // case a client signed it as sent. Under a path prefix, the SDKs sign
    // the path without it (the PHP SDK given `'path' => '/ws/'` sends to
    // `/ws/apps/…` and signs `/apps/…`), so that is tried as well.
    let decoded = query::decode(request.path, false);
    let unmounted = match decoded.strip_prefix(request.mount) {
        Some(rest) if !request.mount.is_empty() && rest.starts_with('/') => Some(rest),
        _ => None,
    };
    let params: Vec<(String, String)> =
        params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut tried = Vec::with_capacity(3);
    let paths = [Some(decoded.as_str()), Some(request.path), unmounted];
    for path in paths.into_iter().flatten() {
        let to_sign = auth::http_string_to_sign(request.method, path, &params);
        if app
            .verifying_secrets()
            .any(|secret| auth::verify(secret, to_sign.as_bytes(), signature))
        {
            return Ok(body_md5);
        }
        tried.push(to_sign);
    }
    Err(unauthorized(format!(
        "Invalid signature: you should have sent HmacSHA256Hex({:?}, your_secret_key)",
        tried[0]
    )))
}

/// Checks the body against the signed `body_md5` (required when there is a
/// body).
pub fn verify_body(body_md5: Option<&str>, body: &[u8]) -> Result<(), HttpError> {
    if body.is_empty() && body_md5.is_none() {
        return Ok(());
    }
    let actual = auth::md5_hex(body);
    match body_md5 {
        Some(sent) if sent.eq_ignore_ascii_case(&actual) => Ok(()),
        Some(_) => Err(unauthorized("body_md5 does not match the request body")),
        None => Err(unauthorized(
            "Missing body_md5 parameter for a request with a body",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppConfig {
        AppConfig::new("1", "app-key", "app-secret")
    }

    fn check(
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), HttpError> {
        let body_md5 = verify(
            &app(),
            &SignedParts {
                method,
                path,
                query: &Query::parse(query).expect("query"),
                mount: "",
            },
            now,
            600,
        )?;
        verify_body(body_md5.as_deref(), body)
    }

    const BODY: &[u8] =
        br#"{"name":"my-event","channel":"my-channel","data":"{\"hello\":\"world\"}"}"#;
    const Q: &str = "auth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=349c71b13ec8d76fc16325f273365ba5&auth_signature=fee634367542f75080291c3d2d0e1acb69fed9aa363eb720c643283fb5ba3158";

    #[test]
    fn accepts_sdk_requests() {
        check("POST", "/apps/1/events", Q, BODY, 1_700_000_100).expect("php/node POST");
        let php = "auth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&info=user_count%2Csubscription_count&auth_signature=467f42910f775913fbfd8b974c490c726316f16c2bf2fc1bcfe7558125c99cd0";
        check(
            "GET",
            "/apps/1/channels/presence-room.1",
            php,
            b"",
            1_700_000_000,
        )
        .expect("php GET");
        let node = php.replace("%2C", ",");
        check(
            "GET",
            "/apps/1/channels/presence-room.1",
            &node,
            b"",
            1_700_000_000,
        )
        .expect("node GET");
        let python = "auth_key=app-key&auth_signature=951b8afd0d8bccbbdc941d33c3e1f5a026b422ffaf4e2aeae720bc3195c707a7&auth_timestamp=1700000000&auth_version=1.0&body_md5=d41d8cd98f00b204e9800998ecf8427e&filter_by_prefix=presence-&info=user_count";
        check("GET", "/apps/1/channels", python, b"", 1_700_000_000).expect("python GET");
    }

    #[test]
    fn rejects_every_signing_failure() {
        let now = 1_700_000_000;
        let unauthorized = |r: Result<(), HttpError>| matches!(r, Err(HttpError::Unauthorized(_)));
        assert!(
            unauthorized(check("POST", "/apps/1/events", Q, b"{}", now)),
            "body changed"
        );
        assert!(
            unauthorized(check("POST", "/apps/1/events", Q, BODY, now + 600)),
            "expired"
        );
        assert!(
            unauthorized(check("POST", "/apps/1/events", Q, BODY, now - 600)),
            "future"
        );
        assert!(
            unauthorized(check("POST", "/apps/2/events", Q, BODY, now)),
            "path"
        );
        assert!(
            unauthorized(check("GET", "/apps/1/events", Q, BODY, now)),
            "method"
        );
        for drop in [
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
            "body_md5",
        ] {
            let q: Vec<&str> = Q.split('&').filter(|p| !p.starts_with(drop)).collect();
            assert!(
                unauthorized(check("POST", "/apps/1/events", &q.join("&"), BODY, now)),
                "{drop}"
            );
        }
        let q = Q.replace("auth_version=1.0", "auth_version=2.0");
        assert!(unauthorized(check("POST", "/apps/1/events", &q, BODY, now)));
        let q = Q.replace("auth_key=app-key", "auth_key=other");
        assert!(unauthorized(check("POST", "/apps/1/events", &q, BODY, now)));
        let err = check(
            "POST",
            "/apps/1/events",
            &Q.replace("fee6", "0000"),
            BODY,
            now,
        )
        .expect_err("bad signature")
        .to_string();
        assert!(
            err.contains("POST\\n/apps/1/events\\nauth_key=app-key"),
            "{err}"
        );
        assert!(!err.contains("app-secret"));
    }

    #[test]
    fn decodes_percent_escapes_in_paths() {
        let decode = |path| query::decode(path, false);
        assert_eq!(decode("/apps/1/channels/a%2Cb"), "/apps/1/channels/a,b");
        assert_eq!(decode("/x%2"), "/x%2");
        assert_eq!(decode("/x%zz"), "/x%zz");
        assert_eq!(decode("%23server"), "#server");
    }
}
