//! `[[apps]]`: one application's credentials, switches and limits, and its
//! webhook URLs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{invalid, ConfigError};
use crate::protocol::webhook::Kind;

/// One application: credentials, switches and limits (Pusher's values by
/// default; 0 means unlimited where noted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: bool,
    /// Accept `client-*` events on private and presence channels.
    pub client_events: bool,
    /// Broadcast `pusher_internal:subscription_count` on non-presence channels.
    pub subscription_count: bool,
    /// Close connections that have not signed in within `signin_timeout`.
    pub require_signin: bool,
    /// Pusher's "authorized connections": close connections that neither
    /// signed in nor subscribed to a private or presence channel within
    /// `signin_timeout` (4009).
    pub require_authorization: bool,
    /// Seconds a connection may stay unauthenticated when `require_signin`
    /// or `require_authorization` is on.
    pub signin_timeout: u64,
    /// Origins a browser may connect from (WebSocket, HTTP fallback, the
    /// polling endpoint): exact (`https://app.example.com`) or with a
    /// wildcard subdomain (`https://*.example.com`); empty: any origin.
    pub allowed_origins: Vec<String>,
    /// Whether a connection without an `Origin` header (a server-side
    /// client, not a browser) is accepted while `allowed_origins` is set.
    pub allow_missing_origin: bool,
    /// Events the HTTP API may trigger per second on this node (a batch
    /// counts its events); 0 = unlimited. 429 beyond.
    pub max_backend_events_per_second: u32,
    /// HTTP API read requests (channels, a channel, its users) per second
    /// on this node; 0 = unlimited. 429 beyond.
    pub max_read_requests_per_second: u32,
    /// Send watchlist online/offline events to signed-in users.
    pub watchlist_events: bool,
    /// Concurrent connections (0 = unlimited).
    pub max_connections: usize,
    /// Distinct users per presence channel.
    pub max_presence_members: usize,
    /// Serialised size of a presence member's `user_info`, bytes.
    pub max_presence_user_info_bytes: usize,
    /// Length of a presence or signed-in `user_id`.
    pub max_user_id_length: usize,
    /// Size of one event's `data`, bytes (API events and client events).
    pub max_event_bytes: usize,
    /// Channels one API event may target.
    pub max_channels_per_event: usize,
    /// Events in one `batch_events` request.
    pub max_batch_events: usize,
    pub max_channel_name_length: usize,
    pub max_event_name_length: usize,
    /// Client events per connection per second (0 = unlimited).
    pub client_event_rate: u32,
    /// Channels one connection may be subscribed to at once.
    pub max_channels_per_connection: usize,
    /// Frames of any kind a connection may send per second, sustained
    /// (0 = unlimited); beyond its burst the connection is closed with 4301.
    pub inbound_rate: u32,
    /// Frames a connection may send at once before `inbound_rate` applies.
    pub inbound_burst: u32,
    /// Largest WebSocket message accepted from a client, bytes.
    pub max_message_bytes: usize,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl: u64,
    /// Events kept per channel for the JSON polling endpoint (0 = off).
    pub history_size: usize,
    /// Seconds an event stays in a channel's polling history.
    pub history_ttl: u64,
    /// Channel-name prefixes whose events are kept for polling; empty: every
    /// channel's. (In a cluster each kept event is a write to Redis.)
    pub history_channels: Vec<String>,
    /// Where this app's webhooks go (`[[apps.webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// Several events per webhook request (at most 50 or 64 KiB).
    pub webhook_batching: bool,
    /// Seconds `channel_vacated` / `member_removed` are held back, and
    /// dropped if the channel is occupied again / the user rejoins.
    pub webhook_debounce: u64,
    /// Seconds one webhook attempt may take before it counts as failed.
    pub webhook_timeout: u64,
    /// Seconds a failing webhook is retried (with backoff) before it is
    /// dropped.
    pub webhook_retry_for: u64,
    /// Webhook events waiting per URL (single node) or in the app's
    /// cluster outbox; beyond it new ones are dropped and logged.
    pub webhook_max_pending: usize,
    /// The secret before the last rotation, still accepted on signatures
    /// until it expires (app store only; never in a file).
    #[serde(skip)]
    pub previous_secret: Option<PreviousSecret>,
}

/// A rotated-out secret and when it stops being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub secret: String,
    /// Unix seconds.
    pub until: u64,
}

/// One webhook endpoint of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// Event names sent to this URL; empty: all seven.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Only events of channels whose name starts with this.
    #[serde(default)]
    pub channel_prefix: Option<String>,
    /// Only events of channels whose name ends with this.
    #[serde(default)]
    pub channel_suffix: Option<String>,
}

impl WebhookConfig {
    /// A URL that gets every event.
    pub fn all_events(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            event_types: Vec::new(),
            headers: BTreeMap::new(),
            channel_prefix: None,
            channel_suffix: None,
        }
    }

    /// A name for the URL's consumer group (cluster delivery) that every
    /// node derives alike from the same configuration.
    pub fn group_name(&self) -> String {
        let mut digest = Sha256::new();
        for part in [
            self.url.as_str(),
            &self.event_types.join(","),
            self.channel_prefix.as_deref().unwrap_or_default(),
            self.channel_suffix.as_deref().unwrap_or_default(),
        ] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        format!("url-{}", hex::encode(&digest.finalize()[..8]))
    }

    /// Checks the URL, event names and headers; `key` names a field for
    /// the error message.
    pub(super) fn validate(&self, key: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        let uri: actix_web::http::Uri = self
            .url
            .parse()
            .map_err(|e| invalid(key("url"), format!("{:?} is not a URL: {e}", self.url)))?;
        match uri.scheme_str() {
            Some("http") | Some("https") if uri.host().is_some_and(|h| !h.is_empty()) => {}
            _ => {
                return Err(invalid(
                    key("url"),
                    format!("{:?} is not an http:// or https:// URL", self.url),
                ))
            }
        }
        for name in &self.event_types {
            if Kind::from_name(name).is_none() {
                return Err(invalid(
                    key("event_types"),
                    format!(
                        "unknown event type {name:?} (known: {})",
                        Kind::ALL.map(Kind::name).join(", ")
                    ),
                ));
            }
        }
        for (name, value) in &self.headers {
            let valid = actix_web::http::header::HeaderName::try_from(name.as_str()).is_ok()
                && actix_web::http::header::HeaderValue::try_from(value.as_str()).is_ok();
            if !valid {
                return Err(invalid(
                    key("headers"),
                    format!("{name:?} is not a valid header"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: String::new(),
            key: String::new(),
            secret: String::new(),
            enabled: true,
            client_events: true,
            subscription_count: false,
            require_signin: false,
            require_authorization: false,
            signin_timeout: 30,
            allowed_origins: Vec::new(),
            allow_missing_origin: true,
            max_backend_events_per_second: 0,
            max_read_requests_per_second: 0,
            watchlist_events: true,
            max_connections: 0,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_user_id_length: 128,
            max_event_bytes: 10 * 1024,
            max_channels_per_event: 100,
            max_batch_events: 10,
            max_channel_name_length: 200,
            max_event_name_length: 200,
            client_event_rate: 10,
            max_channels_per_connection: 1000,
            inbound_rate: 100,
            inbound_burst: 1000,
            max_message_bytes: 64 * 1024,
            cache_ttl: 30 * 60,
            history_size: 100,
            history_ttl: 120,
            history_channels: Vec::new(),
            webhooks: Vec::new(),
            webhook_batching: false,
            webhook_debounce: 3,
            webhook_timeout: 5,
            webhook_retry_for: 300,
            webhook_max_pending: 10_000,
            previous_secret: None,
        }
    }
}

impl AppConfig {
    /// Whether a connection with this `Origin` header may connect.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.is_empty() {
            return true;
        }
        let Some(origin) = origin
            .map(str::trim)
            .filter(|o| !o.is_empty() && *o != "null")
        else {
            return self.allow_missing_origin;
        };
        self.allowed_origins
            .iter()
            .any(|allowed| origin_matches(allowed, origin))
    }

    /// Whether `channel`'s events are kept for the polling endpoint.
    pub fn keeps_history(&self, channel: &str) -> bool {
        self.history_size > 0
            && (self.history_channels.is_empty()
                || self
                    .history_channels
                    .iter()
                    .any(|prefix| channel.starts_with(prefix.as_str())))
    }

    /// The secrets a signature may be made with now: the secret, and its
    /// predecessor while its grace lasts.
    pub fn verifying_secrets(&self) -> impl Iterator<Item = &str> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let previous = self
            .previous_secret
            .as_ref()
            .filter(|p| p.until > now)
            .map(|p| p.secret.as_str());
        std::iter::once(self.secret.as_str()).chain(previous)
    }

    /// An app with the given credentials and every default.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        AppConfig {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            ..AppConfig::default()
        }
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the allowed one: equal
/// (ASCII case aside), or for `scheme://*.domain[:port]` any subdomain of
/// `domain` (not `domain` itself) on the same scheme and port; `*` is any.
fn origin_matches(allowed: &str, origin: &str) -> bool {
    if allowed == "*" || allowed.eq_ignore_ascii_case(origin) {
        return true;
    }
    let (Some((scheme, pattern)), Some((origin_scheme, host))) =
        (allowed.split_once("://"), origin.split_once("://"))
    else {
        return false;
    };
    let Some(domain) = pattern.strip_prefix("*.") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(origin_scheme) || domain.is_empty() {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    host.len() > domain.len() + 1
        && host.ends_with(&domain)
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

/// Checks one `allowed_origins` entry's shape.
pub(super) fn valid_origin_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let Some((scheme, host)) = pattern.split_once("://") else {
        return false;
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && !host.contains(['/', '*', '?', '#', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_wildcard_subdomain() {
        let mut app = AppConfig::new("1", "k", "s");
        assert!(
            app.origin_allowed(Some("https://anything.test")),
            "empty: any"
        );
        app.allowed_origins = vec![
            "https://app.example.com".into(),
            "https://*.example.org".into(),
        ];
        assert!(app.origin_allowed(Some("https://app.example.com")));
        assert!(app.origin_allowed(Some("HTTPS://APP.EXAMPLE.COM")));
        assert!(
            !app.origin_allowed(Some("http://app.example.com")),
            "scheme"
        );
        assert!(
            !app.origin_allowed(Some("https://app.example.com:8443")),
            "port"
        );
        assert!(app.origin_allowed(Some("https://a.example.org")));
        assert!(app.origin_allowed(Some("https://a.b.example.org")));
        assert!(
            !app.origin_allowed(Some("https://example.org")),
            "not the domain itself"
        );
        assert!(!app.origin_allowed(Some("https://badexample.org")));
        assert!(!app.origin_allowed(Some("https://example.org.evil.test")));
        assert!(app.origin_allowed(None), "server-side clients by default");
        assert!(app.origin_allowed(Some("null")), "treated as missing");
        app.allow_missing_origin = false;
        assert!(!app.origin_allowed(None));
        for ok in ["*", "https://a.b", "http://*.b.c:8080"] {
            assert!(valid_origin_pattern(ok), "{ok}");
        }
        for bad in ["a.b", "ftp://a", "https://", "https://a/b", "https://*"] {
            assert!(!valid_origin_pattern(bad), "{bad}");
        }
    }
}
