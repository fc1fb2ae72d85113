//! The in-node state of every app, looked up by app id (HTTP API) or by key
//! (WebSocket path). See [`AppHub`] for what one app holds.

pub mod app_hub;
pub mod connection;
pub mod history;
mod member_order;
pub mod presence;
pub mod rules;

use std::collections::HashMap;
use std::sync::Arc;

pub use app_hub::{AppHub, ChannelStats};
pub use connection::Connection;
pub use presence::{MemberInfo, Roster};
pub use rules::{ChannelRules, JoinOutcome, SubscribeError};

use crate::config::AppConfig;

/// Every app's state; the set of apps is fixed at start-up.
#[derive(Debug, Default)]
pub struct Hub {
    by_id: HashMap<String, Arc<AppHub>>,
    by_key: HashMap<String, Arc<AppHub>>,
}

impl Hub {
    pub fn new(apps: impl IntoIterator<Item = AppConfig>) -> Self {
        let mut hub = Hub::default();
        for app in apps {
            let state = Arc::new(AppHub::new(Arc::new(app)));
            hub.by_id.insert(state.app.id.clone(), state.clone());
            hub.by_key.insert(state.app.key.clone(), state);
        }
        hub
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<AppHub>> {
        self.by_id.get(id)
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<AppHub>> {
        self.by_key.get(key)
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<AppHub>> {
        self.by_id.values()
    }

    /// Resolves once every app's connections are released.
    pub async fn all_released(&self) {
        for app in self.apps() {
            app.all_released().await;
        }
    }
}
