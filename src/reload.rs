//! Reload on SIGHUP: the config file is read again and what can change
//! live is applied without dropping anyone.
//!
//! * Apps: as `catalog::apply` says (added ones are served, changed ones
//!   keep their connections, removed or disabled ones are closed with
//!   4003); with an app store, the store is read again instead.
//! * The TLS certificate is read again (new connections get it).
//! * The log level (`[server] log_level`) applies, unless `HERALD_LOG` /
//!   `RUST_LOG` set it; so does `[server] accept_traffic_memory_percent`.
//! * Everything else of `[server]`, `[cluster]` and `[metrics]` is only
//!   reported as needing a restart.
//!
//! A file that does not load or validate is refused with a logged error,
//! and the running configuration stays. In a cluster each node reloads its
//! own file.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use crate::catalog::Catalog;
use crate::config::{Config, ProcessEnv};
use crate::http::State;
use crate::tls::Certificates;

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
    catalog: Arc<Catalog>,
    certificates: Option<Arc<Certificates>>,
}

impl Reloader {
    pub fn new(
        reload: Reload,
        running: Config,
        state: State,
        catalog: Arc<Catalog>,
        certificates: Option<Arc<Certificates>>,
    ) -> Reloader {
        Reloader {
            reload,
            running,
            state,
            catalog,
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
        if self.catalog.has_store() {
            // The store names the apps; it is read again too.
            let catalog = self.catalog.clone();
            tokio::spawn(async move { catalog.refresh().await });
        } else {
            self.catalog.apply(&fresh.apps);
            self.running.apps = fresh.apps;
        }
        info!("reload: done");
    }
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
