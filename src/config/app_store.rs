//! `[app_store]` and `[admin]`: apps kept in a database (PostgreSQL or
//! MySQL/MariaDB) instead of the file, and the HTTP API that manages them.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Where the apps live when they are not in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppStoreConfig {
    /// `postgres://user:pw@host/db` or `mysql://user:pw@host/db`
    /// (`postgresql://` and `mariadb://` too); unset: the apps are the
    /// config file's `[[apps]]`.
    pub url: Option<String>,
    /// The table of apps (created by `herald apps migrate`).
    pub table: String,
    /// Seconds between full reads of the table: the backstop for changes
    /// no notification announced (MySQL has none).
    pub refresh_seconds: u64,
    /// Seconds an unknown key or id is remembered as unknown, so a flood
    /// of bad keys does not reach the database.
    pub miss_seconds: u64,
    /// A config file whose `[[apps]]` are served while the database cannot
    /// be read at start; without one Herald does not start then.
    pub fallback_file: Option<String>,
    /// Seconds a rotated secret's predecessor is still accepted on
    /// signatures (0: not at all); `rotate-secret` may say otherwise.
    pub secret_grace_seconds: u64,
}

impl Default for AppStoreConfig {
    fn default() -> Self {
        AppStoreConfig {
            url: None,
            table: "herald_apps".to_owned(),
            refresh_seconds: 30,
            miss_seconds: 10,
            fallback_file: None,
            secret_grace_seconds: 0,
        }
    }
}

/// The database kinds an app store may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    MySql,
}

impl StoreKind {
    /// The kind a URL names, by its scheme.
    pub fn of(url: &str) -> Option<StoreKind> {
        let scheme = url.split_once("://")?.0;
        match scheme {
            "postgres" | "postgresql" => Some(StoreKind::Postgres),
            "mysql" | "mariadb" => Some(StoreKind::MySql),
            _ => None,
        }
    }
}

impl AppStoreConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        if StoreKind::of(url).is_none() {
            return Err(invalid(
                "app_store.url",
                "must be a postgres:// or mysql:// URL (postgresql:// and mariadb:// too)",
            ));
        }
        let identifier = !self.table.is_empty()
            && self.table.len() <= 48
            && self
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.table.starts_with(|c: char| c.is_ascii_digit());
        if !identifier {
            return Err(invalid(
                "app_store.table",
                "must be a plain table name (letters, digits and _, at most 48)",
            ));
        }
        if self.refresh_seconds == 0 {
            return Err(invalid(
                "app_store.refresh_seconds",
                "must be greater than 0",
            ));
        }
        if let Some(path) = &self.fallback_file {
            std::fs::metadata(path).map_err(|e| {
                invalid(
                    "app_store.fallback_file",
                    format!("cannot read {path:?}: {e}"),
                )
            })?;
        }
        Ok(())
    }
}

/// The app management API at `/admin/apps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The Bearer token it asks for; unset: the API is off.
    pub token: Option<String>,
}

/// The shortest admin token accepted: it guards every app's secret.
pub const ADMIN_TOKEN_MIN: usize = 32;

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match &self.token {
            Some(token) if token.len() < ADMIN_TOKEN_MIN => Err(invalid(
                "admin.token",
                format!(
                    "must be at least {ADMIN_TOKEN_MIN} characters (it guards every app's secret)"
                ),
            )),
            _ => Ok(()),
        }
    }
}
