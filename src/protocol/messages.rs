//! Wire messages: what clients send and the frames the server writes.
//!
//! Every server frame carries `data` as a JSON *string* (Pusher's double
//! encoding), which every client accepts. Frames are built once as
//! [`ByteString`]s so that one broadcast buffer can be shared by all
//! subscribers.

use bytestring::ByteString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::SocketId;

/// One frame received from a client, with `data` kept raw so that client
/// events can be forwarded without being re-interpreted.
#[derive(Debug, Deserialize)]
pub struct ClientMessage<'a> {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

impl<'a> ClientMessage<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Decodes `data` of a `pusher:*` event, which pusher-js sends as an
    /// object and other clients as a string containing an object.
    pub fn decode_data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let raw = self.data.map(RawValue::get).unwrap_or("{}");
        if raw.starts_with('"') {
            let inner: String = serde_json::from_str(raw)?;
            serde_json::from_str(&inner)
        } else {
            serde_json::from_str(raw)
        }
    }

    /// The payload of a client event as the string that is forwarded: a
    /// string stays as it is, anything else is its compact JSON text.
    pub fn data_as_string(&self) -> String {
        match self.data {
            None => "{}".to_owned(),
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(s) => s,
                Err(_) => raw.get().to_owned(),
            },
        }
    }
}

/// `pusher:subscribe` data.
#[derive(Debug, Deserialize)]
pub struct SubscribeData {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `pusher:unsubscribe` data.
#[derive(Debug, Deserialize)]
pub struct UnsubscribeData {
    pub channel: String,
}

/// `pusher:signin` data.
#[derive(Debug, Deserialize)]
pub struct SigninData {
    pub auth: String,
    pub user_data: String,
}

/// Serialises a frame. `data` is always written as a JSON string.
#[derive(Serialize)]
struct Frame<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// Builds the text of one server frame.
pub fn frame(event: &str, channel: Option<&str>, data: &str) -> ByteString {
    frame_with_user(event, channel, data, None)
}

/// Builds a frame that names the sending user (presence client events).
pub fn frame_with_user(
    event: &str,
    channel: Option<&str>,
    data: &str,
    user_id: Option<&str>,
) -> ByteString {
    let frame = Frame {
        event,
        channel,
        data,
        user_id,
    };
    // Serialising plain strings into a Vec cannot fail.
    serde_json::to_string(&frame).unwrap_or_default().into()
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub fn connection_established(socket_id: SocketId, activity_timeout: u64) -> ByteString {
    #[derive(Serialize)]
    struct Data {
        socket_id: String,
        activity_timeout: u64,
    }
    frame(
        "pusher:connection_established",
        None,
        &json(&Data {
            socket_id: socket_id.to_string(),
            activity_timeout,
        }),
    )
}

/// `pusher:error`; `code` is `None` for non-fatal errors.
pub fn error(code: Option<u16>, message: &str, channel: Option<&str>) -> ByteString {
    #[derive(Serialize)]
    struct Data<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    frame("pusher:error", channel, &json(&Data { code, message }))
}

pub fn ping() -> ByteString {
    frame("pusher:ping", None, "{}")
}

pub fn pong() -> ByteString {
    frame("pusher:pong", None, "{}")
}

pub fn subscription_succeeded(channel: &str, data: &str) -> ByteString {
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        data,
    )
}

/// `pusher:subscription_error`, routed by pusher-js to the channel's handlers.
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> ByteString {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    }
    frame(
        "pusher:subscription_error",
        Some(channel),
        &json(&Data {
            kind,
            error: message,
            status,
        }),
    )
}

pub fn member_added(channel: &str, user_id: &str, user_info: &RawValue) -> ByteString {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
        user_info: &'a RawValue,
    }
    frame(
        "pusher_internal:member_added",
        Some(channel),
        &json(&Data { user_id, user_info }),
    )
}

pub fn member_removed(channel: &str, user_id: &str) -> ByteString {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
    }
    frame(
        "pusher_internal:member_removed",
        Some(channel),
        &json(&Data { user_id }),
    )
}

pub fn cache_miss(channel: &str) -> ByteString {
    frame("pusher:cache_miss", Some(channel), "{}")
}

pub fn subscription_count(channel: &str, count: usize) -> ByteString {
    frame(
        "pusher_internal:subscription_count",
        Some(channel),
        &format!("{{\"subscription_count\":{count}}}"),
    )
}

pub fn signin_success(user_data: &str) -> ByteString {
    #[derive(Serialize)]
    struct Data<'a> {
        user_data: &'a str,
    }
    frame("pusher:signin_success", None, &json(&Data { user_data }))
}

/// `pusher_internal:watchlist_events` with one `online`/`offline` entry per
/// non-empty list.
pub fn watchlist_events(online: &[&str], offline: &[&str]) -> ByteString {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
        user_ids: &'a [&'a str],
    }
    #[derive(Serialize)]
    struct Data<'a> {
        events: Vec<Entry<'a>>,
    }
    let mut events = Vec::new();
    if !online.is_empty() {
        events.push(Entry {
            name: "online",
            user_ids: online,
        });
    }
    if !offline.is_empty() {
        events.push(Entry {
            name: "offline",
            user_ids: offline,
        });
    }
    frame(
        "pusher_internal:watchlist_events",
        None,
        &json(&Data { events }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_double_encode_data() {
        let f = connection_established(SocketId::new(123, 456), 30);
        assert_eq!(
            &*f,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":30}"}"#
        );
        assert_eq!(&*pong(), r#"{"event":"pusher:pong","data":"{}"}"#);
        assert_eq!(
            &*error(None, "bad", Some("c")),
            r#"{"event":"pusher:error","channel":"c","data":"{\"code\":null,\"message\":\"bad\"}"}"#
        );
    }

    #[test]
    fn client_data_is_accepted_as_object_or_string() {
        let obj = ClientMessage::parse(r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#)
            .expect("valid");
        assert_eq!(obj.decode_data::<SubscribeData>().expect("ok").channel, "a");
        let s =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#)
                .expect("valid");
        assert_eq!(s.decode_data::<SubscribeData>().expect("ok").channel, "b");
    }

    #[test]
    fn client_event_data_is_forwarded_as_string() {
        let m =
            ClientMessage::parse(r#"{"event":"client-x","channel":"c","data":{"typing":true}}"#)
                .expect("valid");
        assert_eq!(m.data_as_string(), r#"{"typing":true}"#);
        let m = ClientMessage::parse(r#"{"event":"client-x","channel":"c","data":"hi"}"#)
            .expect("valid");
        assert_eq!(m.data_as_string(), "hi");
        assert_eq!(
            &*frame_with_user("client-x", Some("c"), r#"{"typing":true}"#, Some("42")),
            r#"{"event":"client-x","channel":"c","data":"{\"typing\":true}","user_id":"42"}"#
        );
    }

    #[test]
    fn watchlist_frame_lists_online_and_offline() {
        assert_eq!(
            &*watchlist_events(&["7"], &["8"]),
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"7\"]},{\"name\":\"offline\",\"user_ids\":[\"8\"]}]}"}"#
        );
    }
}
