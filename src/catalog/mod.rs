//! The node's apps as a live set: where they come from (the config file, or
//! an app store kept in step with its database), how a change is applied
//! (`apply`), and the changes the admin API makes (`edit`).
//!
//! With an app store, every app is read at start and held in memory (by
//! key for connections, by id for the API): no connection or request waits
//! for the database, except for a key or id not in memory, which is looked
//! up once (`misses`). Changes reach the node by PostgreSQL's
//! `LISTEN/NOTIFY`, by the cluster's Redis (`AppChanged` on the control
//! channel), and by a full read every `refresh_seconds` (`sync`).

mod apply;
pub mod edit;
mod misses;
mod sync;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tracing::{info, warn};

use self::misses::{Begin, Misses};
use crate::app_store::{AppStore, StoreResult};
use crate::config::{AppConfig, AppStoreConfig};
use crate::console::Consoles;
use crate::http::State;
use crate::hub::AppSource;
use crate::metrics::METRICS;
use crate::webhooks::Webhooks;

/// The live set of apps and what keeps it.
pub struct Catalog {
    state: State,
    webhooks: Arc<Webhooks>,
    consoles: Option<Arc<Consoles>>,
    /// The app store, when the apps live in one.
    store: Option<Store>,
    /// Applying is one change at a time (each reads the set it replaces).
    applying: Mutex<()>,
    /// Itself, for the tasks it starts.
    me: Weak<Catalog>,
}

/// The app store side of the catalog.
struct Store {
    db: AppStore,
    config: AppStoreConfig,
    misses: Misses,
    /// Whether the last query was answered.
    healthy: AtomicBool,
    /// Counts the changes applied from single-app reads and writes: a full
    /// read that saw it move is stale and is not applied (see `sync`).
    changes: AtomicU64,
    /// Asks the refresh task for a full read now.
    refresh_now: Notify,
    /// Apps other nodes or the database said changed, waiting to be read
    /// again by the one task that does (see `sync`).
    changed: Mutex<HashSet<String>>,
    changed_now: Notify,
}

impl Catalog {
    /// A catalog of the config file's apps (already in the hub).
    pub fn of_file(
        state: State,
        webhooks: Arc<Webhooks>,
        consoles: Option<Arc<Consoles>>,
    ) -> Arc<Catalog> {
        Arc::new_cyclic(|me| Catalog {
            state,
            webhooks,
            consoles,
            store: None,
            applying: Mutex::new(()),
            me: me.clone(),
        })
    }

    /// A catalog kept from `db`: registers itself as the hub's source of
    /// unknown keys and ids. `healthy` says whether the apps in the hub
    /// came from the store (not from the fallback file).
    pub fn of_store(
        state: State,
        webhooks: Arc<Webhooks>,
        consoles: Option<Arc<Consoles>>,
        db: AppStore,
        config: AppStoreConfig,
        healthy: bool,
    ) -> Arc<Catalog> {
        let misses = Misses::new(Duration::from_secs(config.miss_seconds));
        let catalog = Arc::new_cyclic(|me| Catalog {
            state,
            webhooks,
            consoles,
            store: Some(Store {
                db,
                config,
                misses,
                healthy: AtomicBool::new(healthy),
                changes: AtomicU64::new(0),
                refresh_now: Notify::new(),
                changed: Mutex::new(HashSet::new()),
                changed_now: Notify::new(),
            }),
            applying: Mutex::new(()),
            me: me.clone(),
        });
        let source: Arc<dyn AppSource> = catalog.clone();
        catalog.state.hub.set_source(&source);
        catalog
    }

    /// Whether the apps live in an app store (else the file, read-only).
    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The settings of the apps the node serves now.
    fn served(&self) -> Vec<AppConfig> {
        self.state
            .hub
            .apps()
            .iter()
            .map(|a| AppConfig::clone(&a.app()))
            .collect()
    }

    /// The store's answer was `result`: keeps the health (said once per
    /// change in the log), and passes the result on.
    fn answered<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        let Some(store) = &self.store else {
            return result;
        };
        let ok = result.is_ok();
        if store.healthy.swap(ok, Ordering::AcqRel) != ok {
            match &result {
                Ok(_) => info!("the app store answers again"),
                Err(e) => warn!("{e}; apps in memory are still served"),
            }
        }
        result
    }

    /// Looks up one app not in memory (`name` is `k:<key>` or `i:<id>`),
    /// once however many ask, and adds it to the hub if the store has it.
    async fn find(self: &Arc<Self>, name: String) {
        let Some(store) = &self.store else { return };
        let mut done = match store.misses.begin(&name) {
            Begin::Unknown => return,
            Begin::Wait(done) => done,
            Begin::Query(sender) => {
                let receiver = sender.subscribe();
                // A task of its own: the lookup ends (and is remembered)
                // even when the asker goes away.
                let catalog = self.clone();
                tokio::spawn(async move { catalog.look_up(name, sender).await });
                receiver
            }
        };
        let wait = crate::app_store::QUERY_TIMEOUT + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, done.wait_for(|done| *done)).await;
    }

    async fn look_up(&self, name: String, sender: tokio::sync::watch::Sender<bool>) {
        let Some(store) = &self.store else { return };
        let found = match name.split_at(2) {
            ("k:", key) => {
                METRICS.app_store_queries.with_label_values(&["key"]).inc();
                self.answered(store.db.by_key(key).await)
            }
            (_, id) => {
                METRICS.app_store_queries.with_label_values(&["id"]).inc();
                self.answered(store.db.by_id(id).await)
            }
        };
        let found = found.ok().flatten().and_then(servable);
        let exists = found.is_some();
        if let Some(app) = found {
            store.changes.fetch_add(1, Ordering::AcqRel);
            self.apply_one(&app.id.clone(), Some(app));
        }
        store.misses.finish(&name, exists, sender);
    }

    /// Reads app `id` again and applies what the store says of it.
    pub async fn reread(&self, id: &str) {
        let Some(store) = &self.store else { return };
        METRICS.app_store_queries.with_label_values(&["id"]).inc();
        match self.answered(store.db.by_id(id).await) {
            Ok(app) => {
                let app = app.and_then(servable);
                if let Some(app) = &app {
                    store.misses.forget(&format!("k:{}", app.key));
                }
                store.misses.forget(&format!("i:{id}"));
                store.changes.fetch_add(1, Ordering::AcqRel);
                self.apply_one(id, app);
            }
            // The refresh catches up once the store answers.
            Err(_) => store.refresh_now.notify_one(),
        }
    }
}

impl AppSource for Catalog {
    fn find_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(me) = self.me.upgrade() {
                me.find(format!("k:{key}")).await;
            }
        })
    }

    fn find_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(me) = self.me.upgrade() {
                me.find(format!("i:{id}")).await;
            }
        })
    }

    fn changed(&self, id: &str) {
        if let Some(store) = &self.store {
            store.note_change(id);
        }
    }

    fn healthy(&self) -> bool {
        self.store
            .as_ref()
            .is_none_or(|s| s.healthy.load(Ordering::Acquire))
    }
}

/// A row of the store as an app to serve: `None` (and a warning) when it
/// breaks the rules the config file is held to.
pub fn servable(app: AppConfig) -> Option<AppConfig> {
    match app.validate(|field| field.to_owned()) {
        Ok(()) => Some(app),
        Err(e) => {
            warn!(app = %app.id, "the app store's row is not a valid app; not served: {e}");
            None
        }
    }
}

/// The `[[apps]]` of a config file (the app store's `fallback_file`),
/// checked as at start; the rest of the file is not used.
pub fn fallback_apps(path: &str) -> Result<Vec<AppConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut config =
        crate::config::Config::from_toml(&text).map_err(|e| format!("invalid {path}: {e}"))?;
    config.app_store = AppStoreConfig::default();
    config
        .validate()
        .map_err(|e| format!("invalid {path}: {e}"))?;
    Ok(config.apps)
}
