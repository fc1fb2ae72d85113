//! Keeping the apps in memory in step with the store: a full read every
//! `refresh_seconds` (sooner while the store does not answer, and when a
//! notification may have been missed), and on PostgreSQL a listener that
//! rereads each changed row as its notification arrives.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Catalog;
use crate::metrics::METRICS;

/// How often a store that does not answer is asked again.
const RETRY: Duration = Duration::from_secs(2);

/// Changed apps read one by one at most; beyond, one full read instead
/// (a bulk `UPDATE` notifies every row it touched).
const MAX_REREADS: usize = 64;

/// Changed ids remembered at most while they wait (then a full read).
const MAX_CHANGED: usize = 10_000;

impl super::Store {
    /// App `id` changed: read it again soon (by the one task that does).
    pub(super) fn note_change(&self, id: &str) {
        let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        if changed.len() < MAX_CHANGED {
            changed.insert(id.to_owned());
        } else {
            self.refresh_now.notify_one();
        }
        drop(changed);
        self.changed_now.notify_one();
    }
}

impl Catalog {
    /// Starts the refresh and, on PostgreSQL, the listener.
    pub fn start_sync(self: &Arc<Self>) {
        if self.store.is_none() {
            return;
        }
        tokio::spawn(refresh_loop(self.clone()));
        tokio::spawn(listen_loop(self.clone()));
        tokio::spawn(reread_loop(self.clone()));
    }

    /// Reads every app and makes them the node's apps (rows that are not
    /// valid apps are logged and left out). False when the store did not
    /// answer.
    pub async fn refresh(&self) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        let seen = store.changes.load(Ordering::Acquire);
        METRICS.app_store_queries.with_label_values(&["all"]).inc();
        let Ok(apps) = self.answered(store.db.all().await) else {
            return false;
        };
        if store.changes.load(Ordering::Acquire) != seen {
            // A single app changed while the table was read: the read may
            // predate it. Read again rather than undo it.
            store.refresh_now.notify_one();
            return true;
        }
        let apps: Vec<_> = apps.into_iter().filter_map(super::servable).collect();
        self.apply(&apps);
        true
    }
}

async fn refresh_loop(catalog: Arc<Catalog>) {
    let Some(store) = &catalog.store else { return };
    let every = Duration::from_secs(store.config.refresh_seconds);
    loop {
        let healthy = store.healthy.load(Ordering::Acquire);
        let wait = if healthy { every } else { RETRY.min(every) };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = store.refresh_now.notified() => {}
        }
        catalog.refresh().await;
    }
}

/// Reads the apps noted as changed: one by one while they are few, with
/// one full read when many changed at once.
async fn reread_loop(catalog: Arc<Catalog>) {
    let Some(store) = &catalog.store else { return };
    loop {
        store.changed_now.notified().await;
        let ids: Vec<String> = {
            let mut changed = store.changed.lock().unwrap_or_else(|e| e.into_inner());
            changed.drain().collect()
        };
        if ids.len() > MAX_REREADS {
            catalog.refresh().await;
            continue;
        }
        for id in ids {
            catalog.reread(&id).await;
        }
    }
}

/// PostgreSQL's notifications of changed rows (see `schema::notify_trigger`).
async fn listen_loop(catalog: Arc<Catalog>) {
    let Some(store) = &catalog.store else { return };
    let mut first = true;
    loop {
        let mut listener = match store.db.listen().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                let _ = catalog.answered::<()>(Err(e));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if !first {
            // What changed while nobody listened.
            store.refresh_now.notify_one();
        }
        first = false;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => store.note_change(notification.payload()),
                // The connection was lost (the next call reconnects), and
                // with it whatever was notified meanwhile.
                Ok(None) => store.refresh_now.notify_one(),
                Err(_) => break,
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}
