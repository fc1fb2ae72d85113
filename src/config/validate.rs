//! The checks of a loaded configuration: every value that could make the
//! server misbehave is refused at start (and on reload), naming its key.

use std::collections::HashSet;

use super::{invalid, AppConfig, ClusterDriver, Config, ConfigError, DEFAULT_APP_SECRET};

impl Config {
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
        if !(0.0..=100.0).contains(&s.accept_traffic_memory_percent) {
            return Err(invalid(
                "server.accept_traffic_memory_percent",
                "must be a percentage (0 turns it off)",
            ));
        }
        if self.console.token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "console.token",
                "must be at least 16 characters (it guards a view of all traffic)",
            ));
        }
        let path_ok = s.path.is_empty()
            || (s.path.starts_with('/')
                && !s.path.ends_with('/')
                && s.path[1..]
                    .split('/')
                    .all(|segment| !segment.is_empty() && segment.chars().all(path_char)));
        if !path_ok {
            return Err(invalid(
                "server.path",
                format!(
                    "{:?} is not a path prefix such as \"/ws\" (letters, digits, - . _ ~ between slashes)",
                    s.path
                ),
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
            let tls = ["rediss://", "rediss+sentinel://", "rediss+cluster://"]
                .iter()
                .any(|scheme| c.url.starts_with(scheme));
            let sentinel = ["redis+sentinel://", "rediss+sentinel://"]
                .iter()
                .any(|scheme| c.url.starts_with(scheme));
            if !(tls
                || sentinel
                || ["redis://", "unix://", "redis+cluster://"]
                    .iter()
                    .any(|scheme| c.url.starts_with(scheme)))
            {
                return Err(invalid(
                    "cluster.url",
                    "must be a redis:// or rediss:// URL (redis+sentinel:// for a master under Sentinel, redis+cluster:// for a Redis Cluster; rediss+… over TLS)",
                ));
            }
            if c.sentinel_password.is_some() && !sentinel {
                return Err(invalid(
                    "cluster.sentinel_password",
                    "is for a redis+sentinel:// URL",
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
        self.app_store.validate()?;
        self.admin.validate()?;
        if self.app_store.url.is_some() {
            if !self.apps.is_empty() {
                return Err(invalid(
                    "apps",
                    "the apps come from [app_store]: create them there (herald apps create), or remove [app_store].url",
                ));
            }
            return Ok(());
        }
        if self.apps.is_empty() {
            return Err(invalid("apps", "at least one app is required"));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = |field: &str| format!("apps[{i}].{field}");
            app.validate(at)?;
            if !ids.insert(app.id.as_str()) {
                return Err(invalid(at("id"), format!("duplicate app id {:?}", app.id)));
            }
            if !keys.insert(app.key.as_str()) {
                return Err(invalid(
                    at("key"),
                    format!("duplicate app key {:?}", app.key),
                ));
            }
        }
        Ok(())
    }

    /// True while any app still uses the built-in default secret.
    pub fn uses_default_secret(&self) -> bool {
        self.apps.iter().any(|a| a.secret == DEFAULT_APP_SECRET)
    }
}

impl AppConfig {
    /// The checks of one app, as the config file and the admin API apply
    /// them; `at` names a field for the error (`apps[0].key`, `key`).
    pub fn validate(&self, at: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        let app = self;
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
        positive(&at("max_presence_members"), app.max_presence_members as u64)?;
        positive(
            &at("max_presence_user_info_bytes"),
            app.max_presence_user_info_bytes as u64,
        )?;
        positive(&at("max_user_id_length"), app.max_user_id_length as u64)?;
        positive(&at("max_event_bytes"), app.max_event_bytes as u64)?;
        positive(
            &at("max_channels_per_event"),
            app.max_channels_per_event as u64,
        )?;
        positive(&at("max_batch_events"), app.max_batch_events as u64)?;
        positive(
            &at("max_channel_name_length"),
            app.max_channel_name_length as u64,
        )?;
        positive(
            &at("max_event_name_length"),
            app.max_event_name_length as u64,
        )?;
        positive(&at("max_message_bytes"), app.max_message_bytes as u64)?;
        positive(
            &at("max_channels_per_connection"),
            app.max_channels_per_connection as u64,
        )?;
        if app.inbound_rate > 0 {
            positive(&at("inbound_burst"), app.inbound_burst as u64)?;
        }
        positive(&at("cache_ttl"), app.cache_ttl)?;
        positive(&at("history_ttl"), app.history_ttl)?;
        if app.require_signin || app.require_authorization {
            positive(&at("signin_timeout"), app.signin_timeout)?;
        }
        for origin in &app.allowed_origins {
            if !super::app::valid_origin_pattern(origin) {
                return Err(invalid(
                    at("allowed_origins"),
                    format!("{origin:?} is not an origin such as \"https://app.example.com\" or \"https://*.example.com\""),
                ));
            }
        }
        for (w, webhook) in app.webhooks.iter().enumerate() {
            webhook.validate(|field| at(&format!("webhooks[{w}].{field}")))?;
        }
        positive(&at("webhook_timeout"), app.webhook_timeout)?;
        positive(&at("webhook_max_pending"), app.webhook_max_pending as u64)?;
        Ok(())
    }
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// A character a path prefix may hold unescaped (RFC 3986 unreserved).
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}
