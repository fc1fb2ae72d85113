//! `GET /apps/{app_id}/poll/v1`: the signed door of the JSON polling
//! endpoint (see [`crate::polling`]), for holders of the app secret; every
//! channel is readable.

use actix_web::{HttpRequest, HttpResponse};

use super::{HttpResult, Signed};
use crate::http::gzip;
use crate::polling::{self, Poll};

pub(super) async fn poll(req: HttpRequest, signed: Signed) -> HttpResult<HttpResponse> {
    let poll = Poll::parse(&signed.query, &signed.app)?;
    let _held = polling::hold_long_poll(&signed.state, &req, &poll)?;
    let (status, body) = polling::answer(&signed.state.adapter, &signed.app, poll).await?;
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or_default();
    Ok(gzip::json(
        &req,
        &signed.state,
        HttpResponse::build(status),
        &body,
    ))
}
