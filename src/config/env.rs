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

impl Config {
    /// What the environment says beyond `overlay`: the default app, when
    /// the file has none.
    pub(super) fn apply_env(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
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
}
