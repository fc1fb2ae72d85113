//! Reading a request body with a bound on its size and on the time it may
//! take, so that a client that announces a large body, or sends it slowly,
//! or stops just before the end, holds neither memory nor a task for long.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::web::{Bytes, BytesMut};
use futures_util::StreamExt;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("Request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("Request body not received within {0:?}")]
    TooSlow(Duration),
    #[error("Could not read the request body: {0}")]
    Read(String),
}

/// Reads the whole body: at most `limit` bytes, within `deadline`. A
/// `Content-Length` above the limit is refused before anything is read.
pub async fn read(
    payload: &mut Payload,
    content_length: Option<usize>,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    if content_length.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| BodyError::TooSlow(deadline))?
}

/// The request's `Content-Length`, when it sent a valid one.
pub fn content_length(req: &actix_web::HttpRequest) -> Option<usize> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
