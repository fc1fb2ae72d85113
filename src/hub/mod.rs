//! The in-node state of every app, looked up by app id (HTTP API) or by key
//! (WebSocket path). See [`AppHub`] for what one app holds.

mod api_budget;
pub mod app_hub;
mod channel;
mod cluster_hooks;
pub mod connection;
pub mod events;
pub mod fanout;
pub mod history;
mod last_event;
mod member_order;
mod pollers;
pub mod presence;
pub mod rules;
mod source;
mod users;

use std::collections::HashMap;

use arc_swap::ArcSwap;
use std::sync::Arc;

pub use api_budget::ApiBudget;
pub use app_hub::AppHub;
pub use channel::ChannelStats;
pub use connection::Connection;
pub use events::{AppEvent, EventKind, Observer, ObserverSlot, Observers};
pub use presence::{MemberInfo, Roster};
pub use rules::{ChannelRules, JoinOutcome, SubscribeError};
pub use source::AppSource;

use crate::config::AppConfig;

/// Every app's state, looked up by id or key. The set of apps is replaced
/// as a whole on reload (`server::reload`); a lookup sees one set or the
/// other, never a mix.
#[derive(Debug, Default)]
pub struct Hub {
    apps: ArcSwap<Apps>,
    /// The app store's lookups, when the apps live in one.
    source: source::Source,
}

#[derive(Debug, Default)]
struct Apps {
    by_id: HashMap<String, Arc<AppHub>>,
    by_key: HashMap<String, Arc<AppHub>>,
}

impl Apps {
    fn of(apps: impl IntoIterator<Item = Arc<AppHub>>) -> Apps {
        let mut set = Apps::default();
        for app in apps {
            set.by_id.insert(app.id().to_owned(), app.clone());
            set.by_key.insert(app.app().key.clone(), app);
        }
        set
    }
}

impl Hub {
    pub fn new(apps: impl IntoIterator<Item = AppConfig>) -> Self {
        let hubs = apps
            .into_iter()
            .map(|app| Arc::new(AppHub::new(Arc::new(app))));
        Hub {
            apps: ArcSwap::from_pointee(Apps::of(hubs)),
            source: source::Source::default(),
        }
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<AppHub>> {
        self.apps.load().by_id.get(id).cloned()
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<AppHub>> {
        self.apps.load().by_key.get(key).cloned()
    }

    /// The app with this key, asking the app store when it is not in
    /// memory (see [`AppSource`]).
    pub async fn find_key(&self, key: &str) -> Option<Arc<AppHub>> {
        if let Some(app) = self.by_key(key) {
            return Some(app);
        }
        self.source.get()?.find_key(key).await;
        self.by_key(key)
    }

    /// The app with this id, asking the app store when it is not in memory.
    pub async fn find_id(&self, id: &str) -> Option<Arc<AppHub>> {
        if let Some(app) = self.by_id(id) {
            return Some(app);
        }
        self.source.get()?.find_id(id).await;
        self.by_id(id)
    }

    /// Makes `source` the place unknown keys and ids are looked for.
    pub fn set_source(&self, source: &Arc<dyn AppSource>) {
        self.source.set(source);
    }

    /// Another node changed app `id` in the app store.
    pub fn app_changed(&self, id: &str) {
        if let Some(source) = self.source.get() {
            source.changed(id);
        }
    }

    /// False while the app store does not answer (true without one).
    pub fn source_healthy(&self) -> bool {
        self.source.get().is_none_or(|s| s.healthy())
    }

    /// Every app, as of now.
    pub fn apps(&self) -> Vec<Arc<AppHub>> {
        self.apps.load().by_id.values().cloned().collect()
    }

    /// Makes `apps` the set of apps (reload).
    pub fn replace_apps(&self, apps: Vec<Arc<AppHub>>) {
        self.apps.store(Arc::new(Apps::of(apps)));
    }

    /// Resolves once every app's connections are released.
    pub async fn all_released(&self) {
        for app in self.apps() {
            app.all_released().await;
        }
    }
}
