//! The body of `POST /events` (one event of `POST /batch_events`) as the
//! SDKs send it, and its checks: shared by the HTTP API and the console's
//! test events, so both refuse the same things with the same words.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{HttpError, HttpResult};
use crate::adapter::ApiEvent;
use crate::config::AppConfig;
use crate::protocol::channel::validate_channel_name;
use crate::protocol::{ChannelType, SocketId};

/// An event as the SDKs send it.
#[derive(Deserialize)]
pub struct EventBody {
    name: Option<String>,
    data: Option<Box<RawValue>>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    /// The attributes to answer with (read by the API handler).
    pub info: Option<String>,
}

/// Parses a JSON body, 400 with the parser's message otherwise.
pub fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> HttpResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::BadRequest(format!("Invalid JSON body: {e}")))
}

/// Parses and checks one event body (see [`validate`]).
pub fn parse(app: &AppConfig, body: &[u8]) -> HttpResult<ApiEvent> {
    validate(app, json_body(body)?)
}

/// Checks an event against the app's limits: name, data size, channels
/// and their names, the encrypted-channel rule, `socket_id`.
pub fn validate(app: &AppConfig, body: EventBody) -> HttpResult<ApiEvent> {
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
    Ok(ApiEvent {
        name,
        data,
        channels,
        except,
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
