//! The environment's part of the configuration beyond the
//! `HERALD_<SECTION>__<KEY>` overlay: the default app, made from the
//! variables a Laravel `.env` already has when the file names no app.

use super::{
    invalid, overlay, AppConfig, Config, ConfigError, WebhookConfig, DEFAULT_APP_ID,
    DEFAULT_APP_KEY, DEFAULT_APP_SECRET,
};

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

/// Where the default app's credentials came from (said in the start-up
/// log, and deciding which `.env` lines Herald prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppSource {
    /// `HERALD_APP_ID/KEY/SECRET`.
    Herald,
    /// `REVERB_APP_ID/KEY/SECRET`: a Laravel app set up for Reverb.
    Reverb,
    /// `PUSHER_APP_ID/KEY/SECRET`: a Laravel app set up for Pusher.
    Pusher,
    /// None of them: the built-in `app-id` / `app-key` / `app-secret`.
    #[default]
    BuiltIn,
}

impl AppSource {
    /// The variables, as the log names them.
    pub fn variables(self) -> &'static str {
        match self {
            AppSource::Herald => "HERALD_APP_ID/KEY/SECRET",
            AppSource::Reverb => "REVERB_APP_ID/KEY/SECRET",
            AppSource::Pusher => "PUSHER_APP_ID/KEY/SECRET",
            AppSource::BuiltIn => "the built-in default",
        }
    }

    fn prefix(self) -> Option<&'static str> {
        match self {
            AppSource::Herald => Some("HERALD_APP_"),
            AppSource::Reverb => Some("REVERB_APP_"),
            AppSource::Pusher => Some("PUSHER_APP_"),
            AppSource::BuiltIn => None,
        }
    }
}

/// The order in which the default app's variables are looked for:
/// Herald's own, then Reverb's, then Pusher's; but when the app's
/// `BROADCAST_CONNECTION` (`BROADCAST_DRIVER` on Laravel <= 10) names
/// `pusher`, its `PUSHER_*` come before a leftover `REVERB_*` (Laravel
/// broadcasts with the connection it names).
fn sources(env: &dyn Env) -> [AppSource; 3] {
    let connection = env
        .var("BROADCAST_CONNECTION")
        .or_else(|| env.var("BROADCAST_DRIVER"));
    if connection.as_deref() == Some("pusher") {
        [AppSource::Herald, AppSource::Pusher, AppSource::Reverb]
    } else {
        [AppSource::Herald, AppSource::Reverb, AppSource::Pusher]
    }
}

/// Reverb's own server variables, for a Laravel app that ran
/// `php artisan reverb:start`: its bind address and path prefix. Applied
/// below the `HERALD_*` variables (which win).
pub(super) const REVERB_SERVER: [(&str, &str); 3] = [
    ("REVERB_SERVER_HOST", "host"),
    ("REVERB_SERVER_PORT", "port"),
    ("REVERB_SERVER_PATH", "path"),
];

/// Reverb's port when `REVERB_SERVER_PORT` is not set (Laravel's stock
/// `.env` has `REVERB_PORT=8080` for the clients, and Reverb listens there).
pub const REVERB_DEFAULT_PORT: u16 = 8080;

/// Puts `REVERB_SERVER_*` into the table's `[server]`.
pub(super) fn apply_reverb_server(
    table: &mut toml::Table,
    env: &dyn Env,
) -> Result<(), ConfigError> {
    for (name, key) in REVERB_SERVER {
        let Some(value) = env.var(name) else { continue };
        let value = if key == "port" {
            let port: u16 = value
                .trim()
                .parse()
                .map_err(|_| invalid(name, format!("{value:?} is not a port number")))?;
            toml::Value::Integer(i64::from(port))
        } else {
            toml::Value::String(value)
        };
        let server = table
            .entry("server")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(server) = server.as_table_mut() {
            server.insert(key.to_owned(), value);
        }
    }
    Ok(())
}

impl Config {
    /// What the environment says beyond `overlay`: the default app, when
    /// the file has none (see [`AppSource`]). An app from `REVERB_*` is
    /// served on Reverb's port when nothing else set one (`port_set`).
    pub(super) fn apply_env(&mut self, env: &dyn Env, port_set: bool) -> Result<(), ConfigError> {
        if !self.apps.is_empty() {
            // The file names the apps: app variables change nothing, and a
            // user who set them expects they did (the start-up log says so).
            self.ignored_app_variables = ["HERALD_APP_", "REVERB_APP_", "PUSHER_APP_"]
                .iter()
                .flat_map(|prefix| {
                    ["ID", "KEY", "SECRET"].map(move |field| format!("{prefix}{field}"))
                })
                .filter(|name| env.var(name).is_some())
                .collect();
        }
        // With an app store the database names the apps.
        if self.apps.is_empty() && self.app_store.url.is_none() {
            let order = sources(env);
            let pick = |field: &str, default: &str| {
                order
                    .iter()
                    .find_map(|source| {
                        let prefix = source.prefix()?;
                        Some((env.var(&format!("{prefix}{field}"))?, *source))
                    })
                    .unwrap_or_else(|| (default.to_owned(), AppSource::BuiltIn))
            };
            let (id, _) = pick("ID", DEFAULT_APP_ID);
            let (key, source) = pick("KEY", DEFAULT_APP_KEY);
            let (secret, _) = pick("SECRET", DEFAULT_APP_SECRET);
            self.default_app = Some(source);
            if source == AppSource::Reverb && !port_set {
                self.server.port = REVERB_DEFAULT_PORT;
            }
            let mut app = AppConfig::new(id, key, secret);
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
}
