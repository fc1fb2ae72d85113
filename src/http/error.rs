//! The error of every HTTP endpoint (the API, the polling endpoint, the
//! fallback's JSON answers) and its one mapping to status codes, always with
//! a JSON body `{"error": "..."}` (SDKs surface the body text verbatim).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            HttpError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.respond(HttpResponse::build(self.status_code()))
    }
}

impl HttpError {
    /// The JSON error body on a response already started with this error's
    /// status (for endpoints that add headers, such as CORS).
    pub fn respond(&self, mut builder: HttpResponseBuilder) -> HttpResponse {
        builder.json(json!({ "error": self.to_string() }))
    }
}

impl From<crate::http::body::BodyError> for HttpError {
    fn from(e: crate::http::body::BodyError) -> Self {
        use crate::http::body::BodyError;
        match e {
            BodyError::TooLarge(_) => HttpError::PayloadTooLarge(e.to_string()),
            BodyError::TooSlow(_) => HttpError::RequestTimeout(e.to_string()),
            BodyError::Read(_) => HttpError::BadRequest(e.to_string()),
        }
    }
}

impl From<crate::support::query::QueryError> for HttpError {
    fn from(e: crate::support::query::QueryError) -> Self {
        HttpError::BadRequest(e.to_string())
    }
}

impl From<crate::adapter::AdapterError> for HttpError {
    fn from(e: crate::adapter::AdapterError) -> Self {
        HttpError::Unavailable(e.to_string())
    }
}

pub type HttpResult<T> = Result<T, HttpError>;
