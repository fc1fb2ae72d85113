//! Configuration: `config.toml` (optional) plus environment overrides, checked
//! once at start-up into one [`Config`] value.
//!
//! Precedence, lowest first: built-in defaults, the config file, environment
//! variables, command-line flags. With no `[[apps]]` in the file, one default
//! app is made from `HERALD_APP_ID/KEY/SECRET` or the `PUSHER_APP_ID/KEY/SECRET`
//! variables a Laravel `.env` already has.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::webhooks::Kind;

mod overlay;

/// Built-in credentials of the default app; a warning is logged while the
/// secret is in use.
pub const DEFAULT_APP_ID: &str = "app-id";
pub const DEFAULT_APP_KEY: &str = "app-key";
pub const DEFAULT_APP_SECRET: &str = "app-secret";

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// The live debug console at `/console`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Turns the console on; the page asks for it.
    pub token: Option<String>,
}

/// The Prometheus listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub host: String,
    /// 0 turns the listener off.
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            host: "0.0.0.0".into(),
            port: 9601,
        }
    }
}

/// Which adapter connects the node to others.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClusterDriver {
    /// One node, all state in memory.
    #[default]
    Local,
    /// Several nodes sharing one Redis.
    Redis,
}

/// Cluster mode settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub driver: ClusterDriver,
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0`, or the nodes of a
    /// Redis Cluster: `redis+cluster://10.0.0.1:7000,10.0.0.2:7000`;
    /// `rediss://` and `rediss+cluster://` connect over TLS.
    pub url: String,
    /// PEM file of the certificate authorities that sign Redis's TLS
    /// certificate (`rediss://`); unset: the system's trusted roots.
    pub tls_ca: Option<String>,
    /// Prefix of every Redis key and pub/sub channel Herald uses.
    pub prefix: String,
    /// Seconds without a heartbeat after which a node is presumed dead and
    /// its members and counts are removed by the survivors.
    pub node_timeout: u64,
    /// Seconds between heartbeats (and dead-node checks).
    pub heartbeat_interval: u64,
    /// Threads that send what other nodes publish (0: the relay task sends
    /// itself). Default: one per core beyond two, at most eight; on two
    /// cores the hand-off costs more than it spreads.
    pub fanout_threads: usize,
    /// Milliseconds a node keeps hearing a channel after its last local
    /// subscriber or long-poll left (so clients that come back cost Redis
    /// nothing).
    pub interest_linger_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            driver: ClusterDriver::Local,
            url: "redis://127.0.0.1:6379".into(),
            tls_ca: None,
            prefix: "herald".into(),
            node_timeout: 30,
            heartbeat_interval: 1,
            fanout_threads: std::thread::available_parallelism()
                .map_or(1, usize::from)
                .saturating_sub(2)
                .min(8),
            interest_linger_ms: 15_000,
        }
    }
}

/// Settings of the node itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port for WebSocket and HTTP API alike.
    pub port: u16,
    /// Seconds of silence before the server pings a client; also what
    /// `connection_established` advertises.
    pub activity_timeout: u64,
    /// Seconds to wait for any frame after a server ping before closing 4201.
    pub pong_timeout: u64,
    /// Frames queued for one connection before it is dropped as too slow.
    pub connection_queue: usize,
    /// Largest accepted HTTP request body, in bytes.
    pub max_request_bytes: usize,
    /// Allowed clock skew of `auth_timestamp` on HTTP API requests, seconds.
    pub http_timestamp_window: u64,
    /// Seconds a request body (HTTP API, `xhr_send`) may take to arrive.
    pub request_body_timeout: u64,
    /// Take the client address for per-address limits from the last entry
    /// of `X-Forwarded-For` (set when Herald runs behind a reverse proxy).
    pub trust_forwarded_for: bool,
    /// HTTP fallback sessions one client address may hold (0 = unlimited).
    pub max_http_sessions_per_address: usize,
    /// New HTTP fallback sessions per second per client address (burst
    /// twice that; 0 = unlimited).
    pub new_http_sessions_per_second: u32,
    /// Long-polls (`wait` > 0) one client address may hold (0 = unlimited).
    pub max_long_polls_per_address: usize,
    /// Refuse connections that send no `protocol` query parameter (4008).
    pub require_protocol_param: bool,
    /// Seconds given to open connections to leave on shutdown.
    pub shutdown_timeout: u64,
    /// Seconds an HTTP fallback session (xhr_streaming / xhr_polling)
    /// survives with no receive request open before it counts as gone.
    pub http_session_timeout: u64,
    /// PEM certificate chain: with `tls_key`, the port serves `wss://` and
    /// `https://` (read again on SIGHUP).
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<String>,
    /// Log level or filter (`info`, `debug`, `herald=debug,info`), applied
    /// again on reload; `HERALD_LOG` / `RUST_LOG` win over it.
    pub log_level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "0.0.0.0".into(),
            port: 6001,
            activity_timeout: 30,
            pong_timeout: 30,
            connection_queue: 1024,
            max_request_bytes: 1024 * 1024,
            http_timestamp_window: 600,
            request_body_timeout: 10,
            trust_forwarded_for: false,
            max_http_sessions_per_address: 1000,
            new_http_sessions_per_second: 50,
            max_long_polls_per_address: 100,
            require_protocol_param: false,
            shutdown_timeout: 10,
            http_session_timeout: 10,
            tls_cert: None,
            tls_key: None,
            log_level: "info".into(),
        }
    }
}

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
    /// Seconds a connection may stay unauthenticated when `require_signin` is on.
    pub signin_timeout: u64,
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

    /// Checks the URL, event names and headers; `key` names a field for
    /// the error message.
    fn validate(&self, key: impl Fn(&str) -> String) -> Result<(), ConfigError> {
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
            signin_timeout: 30,
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
        }
    }
}

impl AppConfig {
    /// Whether `channel`'s events are kept for the polling endpoint.
    pub fn keeps_history(&self, channel: &str) -> bool {
        self.history_size > 0
            && (self.history_channels.is_empty()
                || self
                    .history_channels
                    .iter()
                    .any(|prefix| channel.starts_with(prefix.as_str())))
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

/// Reads environment variables; a function so tests can supply their own.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    /// Every `HERALD_…` variable (for the `HERALD_<SECTION>__<KEY>` rule).
    fn herald_vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn herald_vars(&self) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(name, _)| name.to_uppercase().starts_with("HERALD_"))
            .collect()
    }
}

impl Config {
    /// Loads the file (if any), applies environment overrides and validates.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let (mut table, source) = match path {
            Some(path) => (Self::read_table(path)?, path.display().to_string()),
            None => (toml::Table::new(), "the environment".to_owned()),
        };
        overlay::apply(&mut table, &env.herald_vars())?;
        let mut config: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: source,
                    message: toml_message(&e),
                })?;
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Parse {
            path: display,
            message: toml_message(&e),
        })
    }

    /// Parses TOML text; the error message names the offending key.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| toml_message(&e))
    }

    /// What the environment says beyond `overlay`: the default app, when
    /// the file has none.
    fn apply_env(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
        if self.apps.is_empty() {
            let pick = |herald: &str, pusher: &str, default: &str| {
                env.var(herald)
                    .or_else(|| env.var(pusher))
                    .unwrap_or_else(|| default.to_owned())
            };
            let mut app = AppConfig::new(
                pick("HERALD_APP_ID", "PUSHER_APP_ID", DEFAULT_APP_ID),
                pick("HERALD_APP_KEY", "PUSHER_APP_KEY", DEFAULT_APP_KEY),
                pick("HERALD_APP_SECRET", "PUSHER_APP_SECRET", DEFAULT_APP_SECRET),
            );
            if let Some(url) = env.var("HERALD_WEBHOOK_URL") {
                let mut webhook = WebhookConfig::all_events(url);
                if let Some(events) = env.var("HERALD_WEBHOOK_EVENTS") {
                    webhook.event_types = events
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                webhook.validate(|field| match field {
                    "event_types" => "HERALD_WEBHOOK_EVENTS".to_owned(),
                    _ => "HERALD_WEBHOOK_URL".to_owned(),
                })?;
                app.webhooks.push(webhook);
            } else if env.var("HERALD_WEBHOOK_EVENTS").is_some() {
                return Err(invalid(
                    "HERALD_WEBHOOK_EVENTS",
                    "needs HERALD_WEBHOOK_URL (where to send them)",
                ));
            }
            self.apps
                .push(overlay::apply_to_default_app(app, &env.herald_vars())?);
        }
        Ok(())
    }

    /// Checks every value that could make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.host.trim().is_empty() {
            return Err(invalid("server.host", "must not be empty"));
        }
        positive("server.activity_timeout", s.activity_timeout)?;
        positive("server.pong_timeout", s.pong_timeout)?;
        positive("server.connection_queue", s.connection_queue as u64)?;
        positive("server.max_request_bytes", s.max_request_bytes as u64)?;
        positive("server.http_timestamp_window", s.http_timestamp_window)?;
        positive("server.request_body_timeout", s.request_body_timeout)?;
        positive("server.http_session_timeout", s.http_session_timeout)?;
        if self.console.token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "console.token",
                "must be at least 16 characters (it guards a view of all traffic)",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&s.log_level)
            .map_err(|e| invalid("server.log_level", e.to_string()))?;
        match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => {
                for (name, path) in [("server.tls_cert", cert), ("server.tls_key", key)] {
                    std::fs::metadata(path)
                        .map_err(|e| invalid(name, format!("cannot read {path:?}: {e}")))?;
                }
            }
            (None, None) => {}
            (Some(_), None) => return Err(invalid("server.tls_key", "is needed with tls_cert")),
            (None, Some(_)) => return Err(invalid("server.tls_cert", "is needed with tls_key")),
        }
        let c = &self.cluster;
        if c.driver == ClusterDriver::Redis {
            let tls = c.url.starts_with("rediss://") || c.url.starts_with("rediss+cluster://");
            if !(tls
                || c.url.starts_with("redis://")
                || c.url.starts_with("unix://")
                || c.url.starts_with("redis+cluster://"))
            {
                return Err(invalid(
                    "cluster.url",
                    "must be a redis:// or rediss:// URL (redis+cluster:// or rediss+cluster:// for a Redis Cluster)",
                ));
            }
            if let Some(path) = &c.tls_ca {
                if !tls {
                    return Err(invalid("cluster.tls_ca", "needs a rediss:// URL"));
                }
                std::fs::metadata(path)
                    .map_err(|e| invalid("cluster.tls_ca", format!("cannot read {path:?}: {e}")))?;
            }
            if c.prefix.is_empty() {
                return Err(invalid("cluster.prefix", "must not be empty"));
            }
            positive("cluster.heartbeat_interval", c.heartbeat_interval)?;
            if c.node_timeout <= c.heartbeat_interval {
                return Err(invalid(
                    "cluster.node_timeout",
                    "must be longer than cluster.heartbeat_interval",
                ));
            }
        }
        if self.apps.is_empty() {
            return Err(invalid("apps", "at least one app is required"));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = |field: &str| format!("apps[{i}].{field}");
            for (field, value) in [("id", &app.id), ("key", &app.key), ("secret", &app.secret)] {
                if value.trim().is_empty() {
                    return Err(invalid(at(field), "must not be empty"));
                }
            }
            if app.key.contains(':') {
                return Err(invalid(at("key"), "must not contain ':'"));
            }
            if app.id.contains('/') || app.key.contains('/') {
                return Err(invalid(at("id"), "id and key must not contain '/'"));
            }
            // The cluster relay's message header is one field per line.
            if app.id.chars().any(char::is_control) {
                return Err(invalid(at("id"), "must not contain control characters"));
            }
            if !ids.insert(app.id.as_str()) {
                return Err(invalid(at("id"), format!("duplicate app id {:?}", app.id)));
            }
            if !keys.insert(app.key.as_str()) {
                return Err(invalid(
                    at("key"),
                    format!("duplicate app key {:?}", app.key),
                ));
            }
            let l = app;
            positive(&at("max_presence_members"), l.max_presence_members as u64)?;
            positive(
                &at("max_presence_user_info_bytes"),
                l.max_presence_user_info_bytes as u64,
            )?;
            positive(&at("max_user_id_length"), l.max_user_id_length as u64)?;
            positive(&at("max_event_bytes"), l.max_event_bytes as u64)?;
            positive(
                &at("max_channels_per_event"),
                l.max_channels_per_event as u64,
            )?;
            positive(&at("max_batch_events"), l.max_batch_events as u64)?;
            positive(
                &at("max_channel_name_length"),
                l.max_channel_name_length as u64,
            )?;
            positive(&at("max_event_name_length"), l.max_event_name_length as u64)?;
            positive(&at("max_message_bytes"), l.max_message_bytes as u64)?;
            positive(
                &at("max_channels_per_connection"),
                l.max_channels_per_connection as u64,
            )?;
            if l.inbound_rate > 0 {
                positive(&at("inbound_burst"), l.inbound_burst as u64)?;
            }
            positive(&at("cache_ttl"), l.cache_ttl)?;
            positive(&at("history_ttl"), l.history_ttl)?;
            if app.require_signin {
                positive(&at("signin_timeout"), app.signin_timeout)?;
            }
            for (w, webhook) in app.webhooks.iter().enumerate() {
                webhook.validate(|field| at(&format!("webhooks[{w}].{field}")))?;
            }
            positive(&at("webhook_timeout"), app.webhook_timeout)?;
            positive(&at("webhook_max_pending"), app.webhook_max_pending as u64)?;
        }
        Ok(())
    }

    /// True while any app still uses the built-in default secret.
    pub fn uses_default_secret(&self) -> bool {
        self.apps.iter().any(|a| a.secret == DEFAULT_APP_SECRET)
    }
}

/// A TOML error on one line (it names the key at fault).
fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().trim().replace('\n', " ")
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }

        fn herald_vars(&self) -> Vec<(String, String)> {
            self.0
                .iter()
                .filter(|(k, _)| k.starts_with("HERALD_"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect())
    }

    #[test]
    fn zero_config_has_the_default_app() {
        let c = Config::load(None, &env(&[])).expect("valid");
        assert_eq!(c.server.port, 6001);
        assert_eq!(c.apps.len(), 1);
        assert_eq!(c.apps[0].key, "app-key");
        assert!(c.uses_default_secret());
    }

    #[test]
    fn laravel_and_herald_variables_override() {
        let c = Config::load(
            None,
            &env(&[
                ("PUSHER_APP_ID", "1"),
                ("PUSHER_APP_KEY", "k"),
                ("PUSHER_APP_SECRET", "s"),
                ("HERALD_APP_SECRET", "s2"),
                ("HERALD_PORT", "7000"),
            ]),
        )
        .expect("valid");
        assert_eq!((c.apps[0].id.as_str(), c.apps[0].key.as_str()), ("1", "k"));
        assert_eq!(c.apps[0].secret, "s2");
        assert_eq!(c.server.port, 7000);
        assert!(!c.uses_default_secret());
    }

    #[test]
    fn file_apps_and_limits() {
        let c = Config::from_toml(
            r#"
            [server]
            port = 7001
            [[apps]]
            id = "1"
            key = "k1"
            secret = "s1"
            max_presence_members = 5
            client_events = false
            [[apps]]
            id = "2"
            key = "k2"
            secret = "s2"
            "#,
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.apps[0].max_presence_members, 5);
        assert!(!c.apps[0].client_events);
        assert_eq!(c.apps[1].max_presence_members, 100);
    }

    #[test]
    fn the_shipped_example_is_valid_and_shows_the_defaults() {
        let example = Config::from_toml(include_str!("../../config.toml.example")).expect("parses");
        example.validate().expect("valid");
        let defaults = ServerConfig::default();
        assert_eq!(example.server.port, defaults.port);
        assert_eq!(example.server.activity_timeout, defaults.activity_timeout);
        let app = &example.apps[0];
        let d = AppConfig::default();
        assert_eq!(app.max_event_bytes, d.max_event_bytes);
        assert_eq!(app.max_presence_members, d.max_presence_members);
        assert_eq!(app.client_event_rate, d.client_event_rate);
        assert_eq!(app.cache_ttl, d.cache_ttl);
    }

    #[test]
    fn redis_url_switches_to_cluster_mode() {
        let c = Config::load(
            None,
            &env(&[("HERALD_REDIS_URL", "redis://127.0.0.1:7777")]),
        )
        .expect("valid");
        assert_eq!(c.cluster.driver, ClusterDriver::Redis);
        assert_eq!(c.cluster.url, "redis://127.0.0.1:7777");
        let mut c = Config::from_toml("[cluster]\ndriver = \"redis\"\nurl = \"http://x\"\n")
            .expect("parses");
        c.apps.push(AppConfig::new("1", "k", "s"));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cluster.url"));
        assert!(Config::from_toml("[cluster]\ndriver = \"nats\"\n").is_err());
    }

    #[test]
    fn bad_config_names_the_key() {
        let e = Config::from_toml("[server]\nprot = 1\n").expect_err("unknown key");
        assert!(e.contains("prot"), "{e}");
        let e = Config::from_toml("[server]\nport = \"x\"\n").expect_err("wrong type");
        assert!(e.contains("port"), "{e}");
        let mut c =
            Config::from_toml("[[apps]]\nid=\"1\"\nkey=\"k\"\nsecret=\"\"\n").expect("parses");
        let e = c.validate().expect_err("empty secret").to_string();
        assert!(e.contains("apps[0].secret"), "{e}");
        c.apps[0].secret = "s".into();
        c.apps.push(c.apps[0].clone());
        let e = c.validate().expect_err("duplicate").to_string();
        assert!(e.contains("apps[1].id"), "{e}");
        let e = Config::load(None, &env(&[("HERALD_PORT", "nope")])).expect_err("bad port");
        assert!(e.to_string().contains("HERALD_PORT"));
    }
}
