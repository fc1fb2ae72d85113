//! A Bearer token that guards a group of endpoints (the console, the admin
//! API). It is kept as its HMAC with a fixed message: a request's token is
//! checked by computing the same and comparing in constant time
//! (`auth::verify`), which reveals neither the token nor its length.

use actix_web::HttpRequest;

use super::{HttpError, HttpResult};
use crate::auth;

/// What the token's HMAC is taken over.
const TOKEN_CHECK: &[u8] = b"herald bearer token";

pub struct Bearer {
    check: String,
    /// What it guards, for the refusal ("console", "admin").
    guards: &'static str,
}

impl Bearer {
    pub fn new(token: &str, guards: &'static str) -> Bearer {
        Bearer {
            check: auth::sign(token, TOKEN_CHECK),
            guards,
        }
    }

    /// Ok when the request's `Authorization: Bearer …` is this token.
    pub fn check(&self, req: &HttpRequest) -> HttpResult<()> {
        let given = req
            .headers()
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if auth::verify(given, TOKEN_CHECK, &self.check) {
            Ok(())
        } else {
            Err(HttpError::Unauthorized(format!(
                "A valid {} token is required (Authorization: Bearer …)",
                self.guards
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let bearer = Bearer::new("secret-token-of-16", "console");
        let check = |header: Option<&str>| {
            let mut req = actix_web::test::TestRequest::default();
            if let Some(value) = header {
                req = req.insert_header(("Authorization", value));
            }
            bearer.check(&req.to_http_request()).is_ok()
        };
        assert!(check(Some("Bearer secret-token-of-16")));
        assert!(!check(Some("Bearer secret-token-of-17")));
        assert!(!check(Some("Bearer secret")));
        assert!(!check(Some("secret-token-of-16")), "without the scheme");
        assert!(!check(Some("Bearer ")));
        assert!(!check(None));
    }
}
