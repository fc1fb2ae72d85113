//! Making a set of app settings the node's apps without dropping anyone:
//! what a reload (SIGHUP) and the app store both do.
//!
//! Added apps accept connections; changed ones (secret, limits, switches,
//! webhooks) take their new settings with their connections open; removed
//! or disabled ones have their connections closed with 4003. An app whose
//! key changed is a new app.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::info;

use super::Catalog;
use crate::config::AppConfig;
use crate::hub::AppHub;
use crate::protocol::Close;

impl Catalog {
    /// Makes `apps` the node's apps (see the module docs).
    pub fn apply(&self, apps: &[AppConfig]) {
        let _one_at_a_time = self.applying.lock();
        self.apply_locked(apps);
    }

    /// Adds, changes (`Some`) or removes (`None`) the app with `id`,
    /// leaving the others as they are.
    pub fn apply_one(&self, id: &str, app: Option<AppConfig>) {
        let _one_at_a_time = self.applying.lock();
        let mut apps = self.served();
        apps.retain(|a| a.id != id);
        if let Some(app) = app {
            // A key another app held here is that app's no more (the
            // store says so; it is read again at the next refresh).
            apps.retain(|other| other.key != app.key);
            apps.push(app);
        }
        self.apply_locked(&apps);
    }

    fn apply_locked(&self, apps: &[AppConfig]) {
        let hub = &self.state.hub;
        let mut current: HashMap<String, Arc<AppHub>> = hub
            .apps()
            .into_iter()
            .map(|app| (app.id().to_owned(), app))
            .collect();
        let mut next = Vec::new();
        // Apps whose key changed: closed once the new key is served, so a
        // client told 4003 can connect with the new key at once.
        let mut rekeyed = Vec::new();
        for config in apps {
            let app = match current.remove(&config.id) {
                Some(app) if app.app().key == config.key => {
                    let old = app.app().clone();
                    if *old != *config {
                        app.set_config(config.clone());
                        if old.enabled && !config.enabled {
                            app.close_all(Close::APP_DISABLED);
                        }
                        if webhooks_changed(&old, config) {
                            self.webhooks.attach(&app);
                        }
                        info!(app = %config.id, "app settings changed");
                    }
                    app
                }
                old => {
                    // A new key is a new app: the old key's sockets go.
                    rekeyed.extend(old);
                    let app = Arc::new(AppHub::new(Arc::new(config.clone())));
                    self.webhooks.attach(&app);
                    if let Some(consoles) = &self.consoles {
                        consoles.attach(&app);
                    }
                    info!(app = %config.id, "app added");
                    app
                }
            };
            next.push(app);
        }
        hub.replace_apps(next);
        if let Some(consoles) = &self.consoles {
            consoles.retain(&|id| hub.by_id(id).is_some());
        }
        for old in rekeyed {
            old.close_all(Close::APP_DISABLED);
        }
        // Apps that left: their sockets go.
        for (id, app) in current {
            app.close_all(Close::APP_DISABLED);
            info!(app = %id, "app removed; its connections are closed");
        }
        self.state.adapter.apps_changed();
    }
}

/// Whether the settings that shape an app's webhook delivery differ (its
/// URLs, their handling, what its requests are signed with).
fn webhooks_changed(old: &AppConfig, new: &AppConfig) -> bool {
    old.webhooks != new.webhooks
        || old.webhook_batching != new.webhook_batching
        || old.webhook_debounce != new.webhook_debounce
        || old.webhook_timeout != new.webhook_timeout
        || old.webhook_retry_for != new.webhook_retry_for
        || old.webhook_max_pending != new.webhook_max_pending
        || old.subscription_count != new.subscription_count
        || old.secret != new.secret
}
