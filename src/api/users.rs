//! `POST /users/{user_id}/terminate_connections`: closes every socket signed
//! in as the user (close 4009, so pusher-js does not reconnect on its own).

use actix_web::{web, HttpResponse};

use super::{HttpResult, Signed};

pub(super) async fn terminate_connections(
    signed: Signed,
    path: web::Path<(String, String)>,
) -> HttpResult<HttpResponse> {
    let user_id = &path.1;
    signed.state.adapter.terminate_user(&signed.app, user_id);
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}
