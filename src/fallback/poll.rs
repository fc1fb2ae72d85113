//! The JSON polling endpoint (version 1): the recent events of one or more
//! channels since a cursor, for any HTTP client.
//!
//! ```text
//! GET /apps/{app_id}/poll/v1?channels=a,b&cursor=..&wait=25   signed like the HTTP API (servers, scripts)
//! GET /app/{key}/poll/v1/session                             {"socket_id": ".."} for a browser poller
//! GET /app/{key}/poll/v1?socket_id=..&channel=private-a&auth[private-a]=..&cursor=..   (browsers)
//! ```
//!
//! The cursor is `channel:id|channel:id`, returned by every answer. A cursor
//! whose events were already dropped is answered 410 with a fresh cursor,
//! never by silently skipping. See docs/fallback.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::cors;
use crate::api::{ApiError, ApiResult, Signed};
use crate::auth;
use crate::hub::history::{Read, StoredEvent};
use crate::hub::AppHub;
use crate::protocol::channel::validate_channel_name;
use crate::protocol::{ChannelKind, ChannelType, SocketId};
use crate::state::State;

/// Longest long-poll, seconds.
const MAX_WAIT: u64 = 30;
/// Events per channel per answer, by default and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Channels one poll may read.
const MAX_CHANNELS: usize = 100;

/// A parsed poll request.
struct Poll {
    channels: Vec<String>,
    cursor: HashMap<String, String>,
    wait: Duration,
    limit: usize,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

fn pairs(query: &str) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(query).map_err(|_| bad("Malformed query string"))
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Poll {
    fn parse(pairs: &[(String, String)], app: &AppHub) -> ApiResult<Poll> {
        let mut channels: Vec<String> = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "channel" => channels.push(v.clone()),
                "channels" => {
                    channels.extend(v.split(',').filter(|c| !c.is_empty()).map(str::to_owned))
                }
                _ => {}
            }
        }
        channels.dedup();
        if channels.is_empty() {
            return Err(bad(
                "Name at least one channel: channels=a,b or channel=a&channel=b",
            ));
        }
        if channels.len() > MAX_CHANNELS {
            return Err(bad(format!("At most {MAX_CHANNELS} channels per poll")));
        }
        for channel in &channels {
            validate_channel_name(channel, app.app.max_channel_name_length)
                .map_err(|e| bad(format!("Invalid channel {channel:?}: {e}")))?;
            if ChannelType::of(channel).kind == ChannelKind::ServerToUser {
                return Err(bad("#server-to-user channels cannot be polled"));
            }
        }
        let cursor = match value(pairs, "cursor").filter(|c| !c.is_empty()) {
            Some(c) => parse_cursor(c)?,
            None => HashMap::new(),
        };
        let wait = match value(pairs, "wait") {
            Some(w) => w
                .parse::<u64>()
                .map_err(|_| bad("wait must be a number of seconds"))?
                .min(MAX_WAIT),
            None => 0,
        };
        let limit = match value(pairs, "limit") {
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| bad(format!("limit must be 1 to {MAX_LIMIT}")))?,
            None => DEFAULT_LIMIT,
        };
        Ok(Poll {
            channels,
            cursor,
            wait: Duration::from_secs(wait),
            limit,
        })
    }
}

/// `channel:id|channel:id` (neither `:` nor `|` can occur in channel names).
fn parse_cursor(cursor: &str) -> ApiResult<HashMap<String, String>> {
    cursor
        .split('|')
        .map(|part| {
            part.split_once(':')
                .filter(|(c, id)| !c.is_empty() && !id.is_empty())
                .map(|(c, id)| (c.to_owned(), id.to_owned()))
                .ok_or_else(|| bad("Malformed cursor: use the cursor of the previous answer"))
        })
        .collect()
}

fn format_cursor(channels: &[String], ids: &HashMap<String, String>) -> String {
    channels
        .iter()
        .filter_map(|c| ids.get(c).map(|id| format!("{c}:{id}")))
        .collect::<Vec<_>>()
        .join("|")
}

/// Reads (and, with `wait`, waits for) the events after the cursor.
async fn answer(
    state: &State,
    app: &Arc<AppHub>,
    poll: Poll,
) -> ApiResult<(u16, serde_json::Value)> {
    if !app.history.enabled() {
        return Err(ApiError::NotFound(
            "Polling is disabled for this app (history_size = 0)".into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + poll.wait;
    loop {
        let seen = app.poll_epoch();
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut expired: Vec<&str> = Vec::new();
        for channel in &poll.channels {
            let cursor = poll.cursor.get(channel).cloned();
            let read = state
                .adapter
                .history(app.clone(), channel.clone(), cursor.clone(), poll.limit)
                .await?;
            match read {
                Read::TooOld { last_id } => {
                    expired.push(channel);
                    ids.insert(channel.clone(), last_id);
                }
                Read::Events {
                    events: found,
                    last_id,
                } => {
                    let next = found
                        .last()
                        .map(|e| e.id.clone())
                        .or(cursor)
                        .unwrap_or(last_id);
                    ids.insert(channel.clone(), next);
                    events.extend(found);
                }
            }
        }
        let cursor = format_cursor(&poll.channels, &ids);
        if !expired.is_empty() {
            return Ok((
                410,
                json!({
                    "version": 1,
                    "error": format!(
                        "Cursor too old for {}: events after it were dropped. Resync (e.g. reload the data), then poll from the returned cursor",
                        expired.join(", ")
                    ),
                    "expired": expired,
                    "cursor": cursor,
                }),
            ));
        }
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok((
                200,
                json!({ "version": 1, "cursor": cursor, "events": events }),
            ));
        }
        app.wait_for_event(seen, deadline).await;
    }
}

fn respond(req: Option<&HttpRequest>, (status, body): (u16, serde_json::Value)) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or_default();
    let builder = HttpResponse::build(status);
    match req {
        Some(req) => cors::apply(req, builder).json(body),
        None => {
            let mut builder = builder;
            builder.json(body)
        }
    }
}

/// `GET /apps/{app_id}/poll/v1`: for holders of the app secret; every
/// channel is readable.
pub async fn signed_poll(signed: Signed) -> ApiResult<HttpResponse> {
    let poll = Poll::parse(&pairs(&signed.query)?, &signed.app)?;
    let result = answer(&signed.state, &signed.app, poll).await?;
    Ok(respond(None, result))
}

/// The socket id a poller uses to get channel signatures from the app's
/// auth endpoint: `<n>.<HMAC-derived n>`, so Herald can tell its own ids
/// from invented ones without remembering them.
fn poll_socket_id(secret: &str, major: u32) -> SocketId {
    let mac = auth::sign(secret, format!("herald-poll:{major}").as_bytes());
    let minor = u32::from_str_radix(&mac[..8], 16).unwrap_or_default();
    SocketId::new(major, minor)
}

fn app_by_key(state: &State, key: &str) -> ApiResult<Arc<AppHub>> {
    let app = state
        .hub
        .by_key(key)
        .ok_or_else(|| ApiError::NotFound(format!("Unknown app key {key:?}")))?;
    if !app.app.enabled {
        return Err(ApiError::Forbidden("Application disabled".into()));
    }
    Ok(app.clone())
}

/// `GET /app/{key}/poll/v1/session`: a socket id for a browser poller.
pub async fn session(
    req: HttpRequest,
    key: web::Path<String>,
    state: web::Data<State>,
) -> ApiResult<HttpResponse> {
    let app = app_by_key(&state, &key)?;
    let socket_id = poll_socket_id(&app.app.secret, rand::random());
    Ok(cors::apply(&req, HttpResponse::Ok()).json(json!({ "socket_id": socket_id.to_string() })))
}

/// `GET /app/{key}/poll/v1`: for browsers. Private, encrypted and presence
/// channels need the signature the app's auth endpoint gives for the
/// poller's socket id: `auth[channel]=key:sig` (and `channel_data[channel]`
/// for presence channels).
pub async fn browser_poll(
    req: HttpRequest,
    key: web::Path<String>,
    state: web::Data<State>,
) -> HttpResponse {
    match browser_answer(&req, &key, &state).await {
        Ok(result) => respond(Some(&req), result),
        Err(e) => {
            let status = actix_web::ResponseError::status_code(&e);
            cors::apply(&req, HttpResponse::build(status)).json(json!({ "error": e.to_string() }))
        }
    }
}

async fn browser_answer(
    req: &HttpRequest,
    key: &str,
    state: &State,
) -> ApiResult<(u16, serde_json::Value)> {
    let app = app_by_key(state, key)?;
    let pairs = pairs(req.query_string())?;
    let poll = Poll::parse(&pairs, &app)?;
    let needs_auth = poll
        .channels
        .iter()
        .any(|c| ChannelType::of(c).requires_auth());
    if needs_auth {
        let socket_id = value(&pairs, "socket_id").ok_or_else(|| {
            ApiError::Unauthorized("Private channels need socket_id and auth[channel]".into())
        })?;
        let parsed: SocketId = socket_id
            .parse()
            .map_err(|_| ApiError::Unauthorized("Invalid socket_id".into()))?;
        let major: u32 = socket_id
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or_default();
        if poll_socket_id(&app.app.secret, major) != parsed {
            return Err(ApiError::Unauthorized(
                "Unknown socket_id: get one from /app/{key}/poll/v1/session".into(),
            ));
        }
        for channel in poll
            .channels
            .iter()
            .filter(|c| ChannelType::of(c).requires_auth())
        {
            let signature = value(&pairs, &format!("auth[{channel}]")).ok_or_else(|| {
                ApiError::Unauthorized(format!(
                    "Missing auth[{channel}]: private channels need a signature"
                ))
            })?;
            let channel_data = value(&pairs, &format!("channel_data[{channel}]"));
            let signed = auth::channel_string_to_sign(socket_id, channel, channel_data);
            auth::verify_auth(&app.app.key, &app.app.secret, &signed, signature)
                .map_err(|e| ApiError::Unauthorized(format!("{channel}: {e}")))?;
        }
    }
    answer(state, &app, poll).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let parsed = parse_cursor("orders:3|private-a.b:1700000000000-0").expect("valid");
        assert_eq!(parsed["orders"], "3");
        assert_eq!(parsed["private-a.b"], "1700000000000-0");
        let channels = vec!["orders".to_owned(), "private-a.b".to_owned()];
        assert_eq!(
            format_cursor(&channels, &parsed),
            "orders:3|private-a.b:1700000000000-0"
        );
        assert!(parse_cursor("orders").is_err());
        assert!(parse_cursor("orders:").is_err());
    }

    #[test]
    fn poll_socket_ids_are_recognised() {
        let id = poll_socket_id("secret", 42);
        assert_eq!(poll_socket_id("secret", 42), id);
        assert_ne!(poll_socket_id("other", 42), id);
        assert!(id.to_string().starts_with("42."));
    }
}
