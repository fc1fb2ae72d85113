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

use crate::config::AppConfig;

/// Every app's state, looked up by id or key. The set of apps is replaced
/// as a whole on reload (`server::reload`); a lookup sees one set or the
/// other, never a mix.
#[derive(Debug, Default)]
pub struct Hub {
    apps: ArcSwap<Apps>,
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
        }
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<AppHub>> {
        self.apps.load().by_id.get(id).cloned()
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<AppHub>> {
        self.apps.load().by_key.get(key).cloned()
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
