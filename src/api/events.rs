//! `POST /events` and `POST /batch_events`: validate every event first, then
//! serialise each (event, channel) frame once and publish it.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::channels::{stats_json, Info};
use super::{HttpError, HttpResult, Signed, Spend};
use crate::adapter::ApiEvent;
use crate::config::AppConfig;
use crate::http::event::{self, json_body, EventBody};
use crate::protocol::ChannelType;

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// A validated event, ready to publish, and what its answer reports.
struct Event {
    event: ApiEvent,
    info: Option<Info>,
}

pub(super) async fn trigger(signed: Signed) -> HttpResult<actix_web::HttpResponse> {
    let body: EventBody = json_body(&signed.body)?;
    let event = validate(&signed.app.app(), body)?;
    signed.spend(Spend::Events(1))?;
    publish(&signed, &event);
    let response = match event.info {
        Some(info) => {
            let mut channels = Map::new();
            for channel in &event.event.channels {
                channels.insert(channel.clone(), channel_info(&signed, channel, info).await?);
            }
            serde_json::json!({ "channels": channels })
        }
        None => serde_json::json!({}),
    };
    Ok(actix_web::HttpResponse::Ok().json(response))
}

pub(super) async fn trigger_batch(signed: Signed) -> HttpResult<actix_web::HttpResponse> {
    let body: BatchBody = json_body(&signed.body)?;
    // A copy of the settings: the batch's answers await.
    let app = &signed.app.app().clone();
    if body.batch.is_empty() {
        return Err(HttpError::BadRequest(
            "Batch must contain at least one event".into(),
        ));
    }
    if body.batch.len() > app.max_batch_events {
        return Err(HttpError::BadRequest(format!(
            "Batch too large: at most {} events",
            app.max_batch_events
        )));
    }
    let events = body
        .batch
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            validate(app, e).map_err(|err| match err {
                HttpError::BadRequest(m) => HttpError::BadRequest(format!("batch[{i}]: {m}")),
                HttpError::PayloadTooLarge(m) => {
                    HttpError::PayloadTooLarge(format!("batch[{i}]: {m}"))
                }
                other => other,
            })
        })
        .collect::<HttpResult<Vec<_>>>()?;
    signed.spend(Spend::Events(events.len() as u32))?;
    for event in &events {
        publish(&signed, event);
    }
    if events.iter().all(|e| e.info.is_none()) {
        return Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({})));
    }
    let mut batch = Vec::with_capacity(events.len());
    for event in &events {
        batch.push(match (event.info, event.event.channels.first()) {
            (Some(info), Some(channel)) => channel_info(&signed, channel, info).await?,
            _ => Value::Object(Map::new()),
        });
    }
    Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({ "batch": batch })))
}

/// Queues the event on each channel (see `Adapter::publish_api_event`).
fn publish(signed: &Signed, event: &Event) {
    signed
        .state
        .adapter
        .publish_api_event(&signed.app, &event.event);
}

/// The attributes `info` asked for, for one channel; `user_count` only on
/// presence channels.
async fn channel_info(signed: &Signed, channel: &str, info: Info) -> HttpResult<Value> {
    let stats = signed
        .state
        .adapter
        .channel(&signed.app, channel)
        .await?
        .unwrap_or_default();
    let presence = ChannelType::of(channel).is_presence();
    Ok(stats_json(stats, info.with_user_count(presence)))
}

/// The event's checks (`http::event`), then the `info` it asks for.
fn validate(app: &AppConfig, mut body: EventBody) -> HttpResult<Event> {
    let info = body.info.take();
    let event = event::validate(app, body)?;
    let info = info.as_deref().map(Info::parse).transpose()?;
    Ok(Event { event, info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_info_attribute_is_refused() {
        let body = |json: &str| serde_json::from_str::<EventBody>(json).expect("json");
        let app = AppConfig::new("1", "k", "s");
        let info = r#"{"name":"n","channel":"c","data":"1","info":"user_count"}"#;
        assert!(validate(&app, body(info)).is_ok());
        let bogus = r#"{"name":"n","channel":"c","data":"1","info":"bogus"}"#;
        assert!(validate(&app, body(bogus)).is_err());
    }
}
