//! Reload on SIGHUP: the config file is read again and what can change
//! live is applied without dropping anyone.
//!
//! * Apps: added ones accept connections; changed ones (secret, limits,
//!   switches, webhooks) take their new settings with their connections
//!   open; removed or disabled ones have their connections closed with
//!   4003. An app whose key changed is a new app.
//! * The TLS certificate is read again (new connections get it).
//! * The log level (`[server] log_level`) applies, unless `HERALD_LOG` /
//!   `RUST_LOG` set it; so does `[server] accept_traffic_memory_percent`.
//! * Everything else of `[server]`, `[cluster]` and `[metrics]` is only
//!   reported as needing a restart.
//!
//! A file that does not load or validate is refused with a logged error,
//! and the running configuration stays. In a cluster each node reloads its
//! own file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{AppConfig, Config, ProcessEnv};
use crate::console::Consoles;
use crate::http::State;
use crate::hub::AppHub;
use crate::protocol::Close;
use crate::tls::Certificates;
use crate::webhooks::Webhooks;

/// Changes the log filter (built by `main`, which owns the subscriber).
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What `main` hands the server for reloading.
pub struct Reload {
    /// The config file (`None`: configured from the environment, which a
    /// running process cannot re-read; a reload then changes nothing).
    pub path: Option<PathBuf>,
    /// `None` while the environment fixes the log level.
    pub log_level: Option<SetLogLevel>,
    /// `--host` / `--port`, which win over the file on reload as at start.
    pub host: Option<String>,
    pub port: Option<u16>,
}

/// Everything a reload touches.
pub struct Reloader {
    reload: Reload,
    running: Config,
    state: State,
    webhooks: Arc<Webhooks>,
    /// The console's feeds, when the console is on.
    consoles: Option<Arc<Consoles>>,
    certificates: Option<Arc<Certificates>>,
}

impl Reloader {
    pub fn new(
        reload: Reload,
        running: Config,
        state: State,
        webhooks: Arc<Webhooks>,
        consoles: Option<Arc<Consoles>>,
        certificates: Option<Arc<Certificates>>,
    ) -> Reloader {
        Reloader {
            reload,
            running,
            state,
            webhooks,
            consoles,
            certificates,
        }
    }

    /// Reads the config again and applies it (see the module docs).
    pub fn reload(&mut self) {
        if let Some(certificates) = &self.certificates {
            match certificates.reload() {
                Ok(()) => info!("reload: TLS certificate read again"),
                Err(e) => warn!("reload: keeping the current TLS certificate: {e}"),
            }
        }
        let Some(path) = &self.reload.path else {
            info!("reload: no config file to read again (configured from the environment)");
            return;
        };
        let mut fresh = match Config::load(Some(path), &ProcessEnv) {
            Ok(config) => config,
            Err(e) => {
                warn!("reload refused, the running configuration stays: {e}");
                return;
            }
        };
        // Command-line flags win on reload as they did at start.
        if let Some(host) = &self.reload.host {
            fresh.server.host = host.clone();
        }
        if let Some(port) = self.reload.port {
            fresh.server.port = port;
        }
        for key in restart_needed(&self.running, &fresh) {
            warn!("reload: {key} changed; that takes a restart");
        }
        if fresh.server.log_level != self.running.server.log_level {
            match &self.reload.log_level {
                Some(set) => match set(&fresh.server.log_level) {
                    Ok(()) => info!("reload: log level is now {:?}", fresh.server.log_level),
                    Err(e) => warn!("reload: log level unchanged: {e}"),
                },
                None => info!("reload: HERALD_LOG / RUST_LOG set the log level; log_level ignored"),
            }
            self.running.server.log_level = fresh.server.log_level.clone();
        }
        let percent = fresh.server.accept_traffic_memory_percent;
        if percent != self.running.server.accept_traffic_memory_percent {
            self.state.admission.set_memory_percent(percent);
            self.running.server.accept_traffic_memory_percent = percent;
            info!("reload: accept_traffic_memory_percent is now {percent}");
        }
        self.apply_apps(&fresh.apps);
        self.running.apps = fresh.apps;
        info!("reload: done");
    }

    fn apply_apps(&self, apps: &[AppConfig]) {
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
                        info!(app = %config.id, "reload: app settings changed");
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
                    info!(app = %config.id, "reload: app added");
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
            info!(app = %id, "reload: app removed; its connections are closed");
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

/// The keys outside the apps that differ, as `section.key`.
fn restart_needed(running: &Config, fresh: &Config) -> Vec<String> {
    let table = |config: &Config| toml::Table::try_from(config).unwrap_or_default();
    let (old, new) = (table(running), table(fresh));
    let mut changed = Vec::new();
    for section in ["server", "cluster", "metrics", "console"] {
        let pick = |t: &toml::Table| t.get(section).and_then(|s| s.as_table()).cloned();
        let (a, b) = (
            pick(&old).unwrap_or_default(),
            pick(&new).unwrap_or_default(),
        );
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            // Applied live (see `Reloader::reload`).
            if section == "server" && (key == "log_level" || key == "accept_traffic_memory_percent")
            {
                continue;
            }
            if a.get(key) != b.get(key) {
                changed.push(format!("{section}.{key}"));
            }
        }
    }
    changed
}
