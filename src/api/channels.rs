//! `GET /channels`, `GET /channels/{name}` and `GET /channels/{name}/users`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::{HttpError, HttpResult, Signed, Spend};
use crate::hub::ChannelStats;
use crate::protocol::channel::validate_channel_name;
use crate::protocol::ChannelType;

/// The attributes an `info` parameter asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Info {
    pub user_count: bool,
    pub subscription_count: bool,
}

impl Info {
    /// Parses `user_count,subscription_count`; anything else is a 400.
    pub fn parse(value: &str) -> HttpResult<Info> {
        let mut info = Info::default();
        for attribute in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match attribute {
                "user_count" => info.user_count = true,
                "subscription_count" => info.subscription_count = true,
                other => {
                    return Err(HttpError::BadRequest(format!(
                        "Unsupported info attribute {other:?}: use user_count, subscription_count"
                    )))
                }
            }
        }
        Ok(info)
    }

    /// Drops `user_count` where it does not apply.
    pub fn with_user_count(self, presence: bool) -> Info {
        Info {
            user_count: self.user_count && presence,
            ..self
        }
    }
}

/// The requested counts as a JSON object.
pub(super) fn stats_json(stats: ChannelStats, info: Info) -> Value {
    let mut out = Map::new();
    if info.user_count {
        out.insert("user_count".into(), stats.user_count.unwrap_or(0).into());
    }
    if info.subscription_count {
        out.insert("subscription_count".into(), stats.subscription_count.into());
    }
    Value::Object(out)
}

fn info_param(signed: &Signed) -> HttpResult<Info> {
    signed
        .query
        .get("info")
        .map(Info::parse)
        .transpose()
        .map(Option::unwrap_or_default)
}

fn channel_name(path: &web::Path<(String, String)>, signed: &Signed) -> HttpResult<String> {
    let name = path.1.clone();
    validate_channel_name(&name, signed.app.app().max_channel_name_length)
        .map_err(|e| HttpError::BadRequest(format!("Invalid channel {name:?}: {e}")))?;
    Ok(name)
}

/// `GET /apps/{id}/channels[?filter_by_prefix=..&info=..]`: occupied channels.
pub(super) async fn list(signed: Signed) -> HttpResult<HttpResponse> {
    signed.spend(Spend::Read)?;
    let info = info_param(&signed)?;
    let prefix = signed.query.get("filter_by_prefix");
    if info.user_count && !prefix.is_some_and(|p| p.starts_with("presence-")) {
        return Err(HttpError::BadRequest(
            "info=user_count requires filter_by_prefix to start with presence-".into(),
        ));
    }
    let channels = signed.state.adapter.channels(&signed.app, prefix).await?;
    let mut out = Map::new();
    for (name, stats) in channels {
        out.insert(name, stats_json(stats, info));
    }
    Ok(HttpResponse::Ok().json(json!({ "channels": out })))
}

/// `GET /apps/{id}/channels/{name}[?info=..]`: `occupied` plus requested counts.
pub(super) async fn show(
    signed: Signed,
    path: web::Path<(String, String)>,
) -> HttpResult<HttpResponse> {
    signed.spend(Spend::Read)?;
    let name = channel_name(&path, &signed)?;
    let info = info_param(&signed)?;
    if info.user_count && !ChannelType::of(&name).is_presence() {
        return Err(HttpError::BadRequest(
            "info=user_count is only supported for presence channels".into(),
        ));
    }
    let stats = signed.state.adapter.channel(&signed.app, &name).await?;
    let mut out = match stats_json(stats.unwrap_or_default(), info) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.insert("occupied".into(), stats.is_some().into());
    Ok(HttpResponse::Ok().json(Value::Object(out)))
}

/// `GET /apps/{id}/channels/{name}/users`: a presence channel's members.
pub(super) async fn users(
    signed: Signed,
    path: web::Path<(String, String)>,
) -> HttpResult<HttpResponse> {
    signed.spend(Spend::Read)?;
    let name = channel_name(&path, &signed)?;
    if !ChannelType::of(&name).is_presence() {
        return Err(HttpError::BadRequest(
            "Users can only be listed for presence channels".into(),
        ));
    }
    let ids = signed
        .state
        .adapter
        .channel_users(&signed.app, &name)
        .await?;
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}
