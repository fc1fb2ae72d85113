//! `POST /events` and `POST /batch_events`: validate every event first, then
//! serialise each (event, channel) frame once and publish it.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::channels::{stats_json, Info};
use super::{json_body, HttpError, HttpResult, Signed};
use crate::adapter::Adapter;
use crate::config::AppConfig;
use crate::hub::AppHub;
use crate::protocol::channel::validate_channel_name;
use crate::protocol::{messages, ChannelKind, ChannelType, SocketId};

/// An event as the SDKs send it.
#[derive(Deserialize)]
struct EventBody {
    name: Option<String>,
    data: Option<Box<RawValue>>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// A validated event, ready to publish.
struct Event {
    name: String,
    data: String,
    channels: Vec<String>,
    except: Option<SocketId>,
    info: Option<Info>,
}

pub(super) async fn trigger(signed: Signed) -> HttpResult<actix_web::HttpResponse> {
    let body: EventBody = json_body(&signed.body)?;
    let event = validate(&signed.app.app(), body)?;
    publish(&signed, &event);
    let response = match event.info {
        Some(info) => {
            let mut channels = Map::new();
            for channel in &event.channels {
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
    for event in &events {
        publish(&signed, event);
    }
    if events.iter().all(|e| e.info.is_none()) {
        return Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({})));
    }
    let mut batch = Vec::with_capacity(events.len());
    for event in &events {
        batch.push(match (event.info, event.channels.first()) {
            (Some(info), Some(channel)) => channel_info(&signed, channel, info).await?,
            _ => Value::Object(Map::new()),
        });
    }
    Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({ "batch": batch })))
}

/// Queues the event on each channel: one frame per channel, shared by all
/// of that channel's subscribers; cache channels keep it.
fn publish(signed: &Signed, event: &Event) {
    publish_on(&signed.state.adapter, &signed.app, event);
}

/// The live console's test event: the body of `POST /events`, checked and
/// published the same way.
pub(crate) fn publish_test_event(adapter: &Adapter, app: &AppHub, body: &[u8]) -> HttpResult<()> {
    let body: EventBody = json_body(body)?;
    let event = validate(&app.app(), body)?;
    publish_on(adapter, app, &event);
    Ok(())
}

fn publish_on(adapter: &Adapter, app: &AppHub, event: &Event) {
    app.console.report(|| {
        serde_json::json!({
            "type": "api_event", "channels": event.channels, "event": event.name, "data": event.data,
        })
    });
    for channel in &event.channels {
        let kind = ChannelType::of(channel);
        if kind.kind != ChannelKind::ServerToUser
            && app.history.enabled()
            && app.app().keeps_history(channel)
        {
            adapter.record(app, channel, &event.name, &event.data);
        }
        let frame = messages::frame(&event.name, Some(channel), &event.data);
        app.metrics.events_published.inc();
        if kind.cached {
            adapter.publish_cached(app, channel, frame, event.except);
        } else {
            adapter.publish(app, channel, frame, event.except);
        }
    }
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

fn validate(app: &AppConfig, body: EventBody) -> HttpResult<Event> {
    let bad = |m: String| Err(HttpError::BadRequest(m));
    let name = match body.name {
        Some(n) if !n.is_empty() => n,
        _ => return bad("Missing event name".into()),
    };
    if name.len() > app.max_event_name_length {
        return bad(format!(
            "Event name longer than {} characters",
            app.max_event_name_length
        ));
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return bad("Event names starting with pusher: are reserved".into());
    }
    let data = match body.data {
        // A JSON string is forwarded as its content; anything else (not
        // valid per Pusher, but sent by some clients) as compact JSON.
        Some(raw) => {
            serde_json::from_str::<String>(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
        }
        None => return bad("Missing data".into()),
    };
    if data.len() > app.max_event_bytes {
        return Err(HttpError::PayloadTooLarge(format!(
            "Event data larger than {} bytes",
            app.max_event_bytes
        )));
    }
    let channels = match (body.channels, body.channel) {
        (Some(list), _) => list,
        (None, Some(one)) => vec![one],
        (None, None) => return bad("Missing channels".into()),
    };
    if channels.is_empty() {
        return bad("Missing channels".into());
    }
    if channels.len() > app.max_channels_per_event {
        return bad(format!(
            "Too many channels: at most {} per event",
            app.max_channels_per_event
        ));
    }
    for channel in &channels {
        if let Err(e) = validate_channel_name(channel, app.max_channel_name_length) {
            return bad(format!("Invalid channel {channel:?}: {e}"));
        }
    }
    if channels.len() > 1 && channels.iter().any(|c| ChannelType::of(c).is_encrypted()) {
        return bad("Events to encrypted channels must target exactly one channel".into());
    }
    let except = match body.socket_id {
        Some(s) => Some(
            s.parse::<SocketId>()
                .map_err(|_| HttpError::BadRequest(format!("Invalid socket_id {s:?}")))?,
        ),
        None => None,
    };
    let info = body.info.as_deref().map(Info::parse).transpose()?;
    Ok(Event {
        name,
        data,
        channels,
        except,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> EventBody {
        serde_json::from_str(json).expect("json")
    }

    fn app() -> AppConfig {
        AppConfig::new("1", "k", "s")
    }

    #[test]
    fn accepts_php_and_node_shapes() {
        let e = validate(
            &app(),
            body(r#"{"name":"App\\Events\\X","channel":"c","data":"{\"a\":1}","socket_id":"1.2"}"#),
        )
        .expect("ok");
        assert_eq!(e.channels, vec!["c"]);
        assert_eq!(e.data, r#"{"a":1}"#);
        assert_eq!(e.except, Some(SocketId::new(1, 2)));
        let e = validate(
            &app(),
            body(r#"{"name":"n","channels":["a","b"],"data":{"x":1}}"#),
        )
        .expect("ok");
        assert_eq!(e.channels.len(), 2);
        assert_eq!(e.data, r#"{"x":1}"#);
    }

    #[test]
    fn rejects_bad_events() {
        let bad = |json: &str| validate(&app(), body(json)).is_err();
        assert!(bad(r#"{"channel":"c","data":"1"}"#));
        assert!(bad(r#"{"name":"n","data":"1"}"#));
        assert!(bad(r#"{"name":"n","channel":"c"}"#));
        assert!(bad(r#"{"name":"n","channels":[],"data":"1"}"#));
        assert!(bad(r#"{"name":"pusher:x","channel":"c","data":"1"}"#));
        assert!(bad(r#"{"name":"n","channel":"bad name","data":"1"}"#));
        assert!(bad(
            r#"{"name":"n","channel":"c","data":"1","socket_id":"x"}"#
        ));
        assert!(bad(
            r#"{"name":"n","channels":["private-encrypted-a","b"],"data":"1"}"#
        ));
        assert!(bad(
            r#"{"name":"n","channel":"c","data":"1","info":"bogus"}"#
        ));
        let big = format!(
            r#"{{"name":"n","channel":"c","data":"{}"}}"#,
            "x".repeat(10 * 1024 + 1)
        );
        assert!(matches!(
            validate(&app(), body(&big)),
            Err(HttpError::PayloadTooLarge(_))
        ));
        let many: Vec<String> = (0..101).map(|i| format!("\"c{i}\"")).collect();
        assert!(bad(&format!(
            r#"{{"name":"n","channels":[{}],"data":"1"}}"#,
            many.join(",")
        )));
    }
}
