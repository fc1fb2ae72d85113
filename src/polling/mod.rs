//! The JSON polling endpoint (version 1): the recent events of one or more
//! channels since a cursor, for any HTTP client. This is the endpoint's
//! logic; its two doors are `api::poll` (signed like the HTTP API, for
//! servers) and `fallback::poll` (for browsers, with CORS).
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

mod browser;

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{web, HttpRequest};
use serde_json::json;

use crate::adapter::Adapter;
use crate::auth;
use crate::http::cors;
use crate::http::per_address::{client_address, AddressPermit};
use crate::http::State;
use crate::http::{HttpError, HttpResult};
use crate::hub::history::{Read, StoredEvent};
use crate::hub::AppHub;
use crate::protocol::channel::validate_channel_name;
use crate::protocol::{ChannelKind, ChannelType, SocketId};
use crate::support::query::Query;

/// Registers the browser door (the signed `/apps/{app_id}/poll/v1` is in
/// the API scope, `api::poll`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/app/{key}/poll/v1/session")
            .route(web::get().to(browser::session))
            .route(web::method(Method::OPTIONS).to(cors::preflight)),
    )
    .service(
        web::resource("/app/{key}/poll/v1")
            .route(web::get().to(browser::browser_poll))
            .route(web::method(Method::OPTIONS).to(cors::preflight)),
    );
}

/// Longest long-poll, seconds.
const MAX_WAIT: u64 = 30;
/// Events per channel per answer, by default and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Channels one poll may read.
const MAX_CHANNELS: usize = 100;

/// A parsed poll request.
pub struct Poll {
    channels: Vec<String>,
    cursor: HashMap<String, String>,
    wait: Duration,
    limit: usize,
}

fn bad(message: impl Into<String>) -> HttpError {
    HttpError::BadRequest(message.into())
}

impl Poll {
    /// Reads `channels=a,b` / `channel=a` (repeatable), `cursor`, `wait`
    /// and `limit`.
    pub fn parse(query: &Query, app: &AppHub) -> HttpResult<Poll> {
        let mut channels: Vec<String> = Vec::new();
        for (k, v) in query.pairs() {
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
            validate_channel_name(channel, app.app().max_channel_name_length)
                .map_err(|e| bad(format!("Invalid channel {channel:?}: {e}")))?;
            if ChannelType::of(channel).kind == ChannelKind::ServerToUser {
                return Err(bad("#server-to-user channels cannot be polled"));
            }
        }
        let cursor = match query.get("cursor").filter(|c| !c.is_empty()) {
            Some(c) => parse_cursor(c)?,
            None => HashMap::new(),
        };
        let wait = match query.get("wait") {
            Some(w) => w
                .parse::<u64>()
                .map_err(|_| bad("wait must be a number of seconds"))?
                .min(MAX_WAIT),
            None => 0,
        };
        let limit = match query.get("limit") {
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
pub fn parse_cursor(cursor: &str) -> HttpResult<HashMap<String, String>> {
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

/// A long-poll's place in its client address's quota; `None` for a poll
/// that does not wait. 429 when the address holds too many already.
pub fn hold_long_poll(
    state: &State,
    req: &HttpRequest,
    poll: &Poll,
) -> HttpResult<Option<AddressPermit>> {
    if poll.wait.is_zero() {
        return Ok(None);
    }
    let address = client_address(req, state.server.trust_forwarded_for);
    match state.long_polls.acquire(address) {
        Some(permit) => Ok(Some(permit)),
        None => Err(HttpError::TooManyRequests(
            "Too many long-polls from this address: wait for one to end".into(),
        )),
    }
}

/// Reads (and, with `wait`, waits for) the events after the cursor: status
/// 200 with the events, or 410 when a cursor is too old.
pub async fn answer(
    adapter: &Adapter,
    app: &AppHub,
    poll: Poll,
) -> HttpResult<(u16, serde_json::Value)> {
    if !app.history().enabled() {
        return Err(HttpError::NotFound(
            "Polling is disabled for this app (history_size = 0)".into(),
        ));
    }
    if let Some(channel) = poll.channels.iter().find(|c| !app.app().keeps_history(c)) {
        return Err(HttpError::NotFound(format!(
            "Channel {channel:?} keeps no polling history: history_channels does not name it"
        )));
    }
    let deadline = tokio::time::Instant::now() + poll.wait;
    loop {
        let watched = app.watch_for_events(&poll.channels);
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut expired: Vec<&str> = Vec::new();
        // Every channel's history at once: in cluster mode the reads share
        // one round trip on the multiplexed Redis connection.
        let reads = futures_util::future::join_all(poll.channels.iter().map(|channel| {
            let cursor = poll.cursor.get(channel).map(String::as_str);
            adapter.history(app, channel, cursor, poll.limit)
        }))
        .await;
        for (channel, read) in poll.channels.iter().zip(reads) {
            let cursor = poll.cursor.get(channel).cloned();
            match read? {
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
        app.wait_for_event(&watched, deadline).await;
    }
}

/// The socket id a poller uses to get channel signatures from the app's
/// auth endpoint: `<n>.<HMAC-derived n>`, so Herald can tell its own ids
/// from invented ones without remembering them.
pub fn poll_socket_id(secret: &str, major: u32) -> SocketId {
    let mac = auth::sign(secret, format!("herald-poll:{major}").as_bytes());
    let minor = u32::from_str_radix(&mac[..8], 16).unwrap_or_default();
    SocketId::new(major, minor)
}

/// Checks a browser poller's right to the private, encrypted and presence
/// channels of `poll`: a socket id Herald issued ([`poll_socket_id`]) and,
/// per channel, `auth[channel]=key:sig` (with `channel_data[channel]` for
/// presence channels) as the app's auth endpoint signs them.
pub fn authorize_browser(query: &Query, app: &AppHub, poll: &Poll) -> HttpResult<()> {
    let mut private = poll
        .channels
        .iter()
        .filter(|c| ChannelType::of(c).requires_auth())
        .peekable();
    if private.peek().is_none() {
        return Ok(());
    }
    let socket_id = query.get("socket_id").ok_or_else(|| {
        HttpError::Unauthorized("Private channels need socket_id and auth[channel]".into())
    })?;
    let parsed: SocketId = socket_id
        .parse()
        .map_err(|_| HttpError::Unauthorized("Invalid socket_id".into()))?;
    let major: u32 = socket_id
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    if poll_socket_id(&app.app().secret, major) != parsed {
        return Err(HttpError::Unauthorized(
            "Unknown socket_id: get one from /app/{key}/poll/v1/session".into(),
        ));
    }
    for channel in private {
        let signature = query.get(&format!("auth[{channel}]")).ok_or_else(|| {
            HttpError::Unauthorized(format!(
                "Missing auth[{channel}]: private channels need a signature"
            ))
        })?;
        let channel_data = query.get(&format!("channel_data[{channel}]"));
        let signed = auth::channel_string_to_sign(socket_id, channel, channel_data);
        auth::verify_auth_any(
            &app.app().key,
            app.app().verifying_secrets(),
            &signed,
            signature,
        )
        .map_err(|e| HttpError::Unauthorized(format!("{channel}: {e}")))?;
    }
    Ok(())
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
