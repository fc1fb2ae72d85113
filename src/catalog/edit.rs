//! The changes the admin API makes: create, update, delete an app and
//! rotate its secret. Each is written to the store, applied on this node at
//! once, and announced to the others (PostgreSQL's trigger notifies them
//! too). Input is checked with the config file's rules, each error naming
//! its field. Without a store the apps are the file's: readable, not
//! writable here.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::Catalog;
use crate::app_store::StoreError;
use crate::config::{AppConfig, PreviousSecret};
use crate::http::HttpError;
use crate::metrics::METRICS;
use crate::support::clock::unix_secs;

/// The answer to a change the file's apps cannot take.
fn read_only() -> HttpError {
    HttpError::Conflict(
        "the apps come from the config file: edit it and send SIGHUP, or keep them in an [app_store]"
            .to_owned(),
    )
}

fn stored(e: StoreError) -> HttpError {
    match e {
        StoreError::Conflict(message) => HttpError::Conflict(message),
        other => HttpError::Unavailable(other.to_string()),
    }
}

/// Random lowercase hex of `bytes` random bytes.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), &mut buf[..]);
    hex::encode(buf)
}

/// An app from a JSON object of `[[apps]]` keys, checked as the config
/// file is (`{"error": "max_connections: …"}`).
fn app_of(body: Value) -> Result<AppConfig, HttpError> {
    let app: AppConfig = serde_json::from_value(body)
        .map_err(|e| HttpError::BadRequest(format!("invalid app: {e}")))?;
    app.validate(|field| field.to_owned())
        .map_err(|e| HttpError::BadRequest(e.to_string()))?;
    Ok(app)
}

fn object(body: Value) -> Result<Map<String, Value>, HttpError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(HttpError::BadRequest(
            "the body must be a JSON object of app settings".to_owned(),
        )),
    }
}

impl Catalog {
    /// Every app, by id: the store's (every node gives the same answer),
    /// or the file's.
    pub async fn list(&self) -> Result<Vec<AppConfig>, HttpError> {
        match &self.store {
            Some(store) => {
                METRICS.app_store_queries.with_label_values(&["all"]).inc();
                self.answered(store.db.all().await).map_err(stored)
            }
            None => {
                let mut apps = self.served();
                apps.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(apps)
            }
        }
    }

    /// One app by id.
    pub async fn get(&self, id: &str) -> Result<AppConfig, HttpError> {
        let found = match &self.store {
            Some(store) => {
                METRICS.app_store_queries.with_label_values(&["id"]).inc();
                self.answered(store.db.by_id(id).await).map_err(stored)?
            }
            None => self.state.hub.by_id(id).map(|a| AppConfig::clone(&a.app())),
        };
        found.ok_or_else(|| HttpError::NotFound(format!("Unknown app {id:?}")))
    }

    /// Creates an app; id, key and secret are made up when not given.
    pub async fn create(self: &Arc<Self>, body: Value) -> Result<AppConfig, HttpError> {
        let store = self.store.as_ref().ok_or_else(read_only)?;
        let mut body = object(body)?;
        let given_id = body.contains_key("id");
        for (field, value) in [("key", random_hex(10)), ("secret", random_hex(20))] {
            body.entry(field).or_insert(Value::String(value));
        }
        // Pusher's ids are numbers; a made-up one that is taken is made
        // up again.
        for _ in 0..5 {
            if !given_id {
                let id = rand::Rng::random_range(&mut rand::rng(), 1_000_000..10_000_000u32);
                body.insert("id".to_owned(), Value::String(id.to_string()));
            }
            let app = app_of(Value::Object(body.clone()))?;
            METRICS
                .app_store_queries
                .with_label_values(&["write"])
                .inc();
            match self.answered(store.db.insert(&app).await) {
                Ok(()) => {
                    self.changed_here(app.clone());
                    return Ok(app);
                }
                Err(StoreError::Conflict(_)) if !given_id => continue,
                Err(e) => return Err(stored(e)),
            }
        }
        Err(HttpError::Conflict("no free app id was found".to_owned()))
    }

    /// Changes the settings the body names (the id cannot change).
    pub async fn update(self: &Arc<Self>, id: &str, body: Value) -> Result<AppConfig, HttpError> {
        let store = self.store.as_ref().ok_or_else(read_only)?;
        let patch = object(body)?;
        if patch
            .get("id")
            .is_some_and(|given| given.as_str() != Some(id))
        {
            return Err(HttpError::BadRequest("id: cannot be changed".to_owned()));
        }
        let current = self.get(id).await?;
        let Ok(Value::Object(mut merged)) = serde_json::to_value(&current) else {
            return Err(HttpError::Unavailable("cannot read the app".to_owned()));
        };
        merged.extend(patch);
        let mut app = app_of(Value::Object(merged))?;
        app.previous_secret = current.previous_secret;
        self.write(store, app).await
    }

    /// A new secret; the old one is still accepted for `grace` seconds
    /// (default: `[app_store] secret_grace_seconds`).
    pub async fn rotate_secret(
        self: &Arc<Self>,
        id: &str,
        grace: Option<u64>,
    ) -> Result<AppConfig, HttpError> {
        let store = self.store.as_ref().ok_or_else(read_only)?;
        let mut app = self.get(id).await?;
        let grace = grace.unwrap_or(store.config.secret_grace_seconds);
        let old = std::mem::replace(&mut app.secret, random_hex(20));
        app.previous_secret = (grace > 0).then(|| PreviousSecret {
            secret: old,
            until: unix_secs() + grace,
        });
        self.write(store, app).await
    }

    async fn write(
        self: &Arc<Self>,
        store: &super::Store,
        app: AppConfig,
    ) -> Result<AppConfig, HttpError> {
        METRICS
            .app_store_queries
            .with_label_values(&["write"])
            .inc();
        match self.answered(store.db.update(&app).await) {
            Ok(true) => {
                self.changed_here(app.clone());
                Ok(app)
            }
            Ok(false) => Err(HttpError::NotFound(format!("Unknown app {:?}", app.id))),
            Err(e) => Err(stored(e)),
        }
    }

    /// Deletes an app: its connections are closed with 4003 on every node.
    pub async fn delete(self: &Arc<Self>, id: &str) -> Result<(), HttpError> {
        let store = self.store.as_ref().ok_or_else(read_only)?;
        METRICS
            .app_store_queries
            .with_label_values(&["write"])
            .inc();
        match self.answered(store.db.delete(id).await) {
            Ok(true) => {
                store.changes.fetch_add(1, Ordering::AcqRel);
                self.apply_one(id, None);
                self.state.adapter.announce_app_change(id);
                Ok(())
            }
            Ok(false) => Err(HttpError::NotFound(format!("Unknown app {id:?}"))),
            Err(e) => Err(stored(e)),
        }
    }

    /// A write of this node's: applied here now, and announced.
    fn changed_here(&self, app: AppConfig) {
        if let Some(store) = &self.store {
            store.changes.fetch_add(1, Ordering::AcqRel);
            store.misses.forget(&format!("k:{}", app.key));
            store.misses.forget(&format!("i:{}", app.id));
        }
        let id = app.id.clone();
        self.apply_one(&id, Some(app));
        self.state.adapter.announce_app_change(&id);
    }
}
