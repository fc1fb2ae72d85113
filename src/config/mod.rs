//! Configuration: `config.toml` (optional) plus environment overrides, checked
//! once at start-up into one [`Config`] value.
//!
//! Precedence, lowest first: built-in defaults, the config file, environment
//! variables, command-line flags. With no `[[apps]]` in the file, one default
//! app is made from `HERALD_APP_ID/KEY/SECRET` or the `PUSHER_APP_ID/KEY/SECRET`
//! variables a Laravel `.env` already has.

use std::path::Path;

use serde::{Deserialize, Serialize};

mod app;
mod app_store;
mod cluster;
mod env;
mod env_file;
mod overlay;
mod server;
mod validate;

pub use app::{AppConfig, PreviousSecret, WebhookConfig};
pub use app_store::{AdminConfig, AppStoreConfig, StoreKind, ADMIN_TOKEN_MIN};
pub use cluster::{ClusterConfig, ClusterDriver};
pub use env::{AppSource, Env, ProcessEnv, REVERB_DEFAULT_PORT};
pub use env_file::EnvFile;
pub use server::{normalize_path, ConsoleConfig, MetricsConfig, ServerConfig};

/// Built-in credentials of the default app; a warning is logged while the
/// secret is in use.
pub const DEFAULT_APP_ID: &str = "app-id";
pub const DEFAULT_APP_KEY: &str = "app-key";
pub const DEFAULT_APP_SECRET: &str = "app-secret";

/// A configuration problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid value for {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub app_store: AppStoreConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Where the default app came from (`None`: the file has `[[apps]]`).
    #[serde(skip)]
    pub default_app: Option<AppSource>,
    /// App variables (`PUSHER_APP_KEY`, ...) set in the environment that
    /// changed nothing, because the file names the apps.
    #[serde(skip)]
    pub ignored_app_variables: Vec<String>,
}

impl Config {
    /// Loads the file (if any), applies environment overrides and validates.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let (mut table, source) = match path {
            Some(path) => (Self::read_table(path)?, path.display().to_string()),
            None => (toml::Table::new(), "the environment".to_owned()),
        };
        env::apply_reverb_server(&mut table, env)?;
        overlay::apply(&mut table, &env.herald_vars())?;
        let port_set = table
            .get("server")
            .and_then(|server| server.get("port"))
            .is_some();
        let mut config: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: source,
                    message: toml_message(&e),
                })?;
        config.apply_env(env, port_set)?;
        config.server.path = normalize_path(&config.server.path);
        config.validate()?;
        Ok(config)
    }

    fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Parse {
            path: display,
            message: toml_message(&e),
        })
    }

    /// Parses TOML text; the error message names the offending key.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| toml_message(&e))
    }
}

/// A TOML error on one line (it names the key at fault).
fn toml_message(e: &toml::de::Error) -> String {
    e.to_string().trim().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MapEnv(HashMap<&'static str, &'static str>);

    impl Env for MapEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }

        fn herald_vars(&self) -> Vec<(String, String)> {
            self.0
                .iter()
                .filter(|(k, _)| k.starts_with("HERALD_"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect())
    }

    #[test]
    fn an_app_store_names_the_apps_and_is_checked() {
        let store = [("HERALD_APP_STORE__URL", "postgres://u:p@db/herald")];
        let c = Config::load(None, &env(&store)).expect("valid");
        assert!(c.apps.is_empty(), "no default app with a store");
        assert_eq!(c.app_store.table, "herald_apps");
        assert_eq!(c.app_store.refresh_seconds, 30);
        let refused = |pairs: &[(&'static str, &'static str)], key: &str| {
            let e = Config::load(None, &env(pairs))
                .expect_err("refused")
                .to_string();
            assert!(e.contains(key), "{e}");
        };
        refused(&[("HERALD_APP_STORE__URL", "sqlite://x")], "app_store.url");
        refused(
            &[
                ("HERALD_APP_STORE__URL", "mysql://db/h"),
                ("HERALD_APP_STORE__TABLE", "apps; DROP"),
            ],
            "app_store.table",
        );
        refused(
            &[
                ("HERALD_APP_STORE__URL", "mysql://db/h"),
                ("HERALD_APP_STORE__REFRESH_SECONDS", "0"),
            ],
            "app_store.refresh_seconds",
        );
        refused(&[("HERALD_ADMIN__TOKEN", "too-short")], "admin.token");
        let with_apps = "[app_store]\nurl = \"mysql://db/h\"\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
        let e = Config::from_toml(with_apps)
            .expect("parses")
            .validate()
            .expect_err("apps and a store");
        assert!(e.to_string().contains("[app_store]"), "{e}");
    }

    #[test]
    fn zero_config_has_the_default_app() {
        let c = Config::load(None, &env(&[])).expect("valid");
        assert_eq!(c.server.port, 6001);
        assert_eq!(c.apps.len(), 1);
        assert_eq!(c.apps[0].key, "app-key");
        assert!(c.uses_default_secret());
    }

    #[test]
    fn laravel_and_herald_variables_override() {
        let c = Config::load(
            None,
            &env(&[
                ("PUSHER_APP_ID", "1"),
                ("PUSHER_APP_KEY", "k"),
                ("PUSHER_APP_SECRET", "s"),
                ("HERALD_APP_SECRET", "s2"),
                ("HERALD_PORT", "7000"),
            ]),
        )
        .expect("valid");
        assert_eq!((c.apps[0].id.as_str(), c.apps[0].key.as_str()), ("1", "k"));
        assert_eq!(c.apps[0].secret, "s2");
        assert_eq!(c.server.port, 7000);
        assert!(!c.uses_default_secret());
    }

    #[test]
    fn a_reverb_app_is_served_where_reverb_was() {
        let reverb = [
            ("REVERB_APP_ID", "123456"),
            ("REVERB_APP_KEY", "rkey"),
            ("REVERB_APP_SECRET", "rsecret"),
            ("PUSHER_APP_KEY", "stale"),
        ];
        let c = Config::load(None, &env(&reverb)).expect("valid");
        assert_eq!(c.default_app, Some(AppSource::Reverb));
        assert_eq!(c.apps[0].key, "rkey");
        assert_eq!(c.apps[0].secret, "rsecret");
        assert_eq!(c.server.port, REVERB_DEFAULT_PORT, "Reverb's port");
        assert_eq!(c.server.path, "");

        let mut with_server = reverb.to_vec();
        with_server.extend([
            ("REVERB_SERVER_HOST", "127.0.0.2"),
            ("REVERB_SERVER_PORT", "9090"),
            ("REVERB_SERVER_PATH", "ws/"),
        ]);
        let c = Config::load(None, &env(&with_server)).expect("valid");
        assert_eq!(c.server.host, "127.0.0.2");
        assert_eq!(c.server.port, 9090);
        assert_eq!(c.server.path, "/ws");

        // HERALD_* wins over Reverb's variables.
        with_server.extend([("HERALD_PORT", "7000"), ("HERALD_APP_KEY", "hkey")]);
        let c = Config::load(None, &env(&with_server)).expect("valid");
        assert_eq!(c.server.port, 7000);
        assert_eq!(c.apps[0].key, "hkey");
        assert_eq!(c.default_app, Some(AppSource::Herald));

        let e = Config::load(None, &env(&[("REVERB_SERVER_PORT", "x")])).expect_err("bad port");
        assert!(e.to_string().contains("REVERB_SERVER_PORT"), "{e}");
    }

    #[test]
    fn the_broadcast_connection_decides_between_leftover_credentials() {
        let both = |connection: &'static str| {
            env(&[
                ("BROADCAST_CONNECTION", connection),
                ("REVERB_APP_KEY", "rkey"),
                ("PUSHER_APP_KEY", "pkey"),
            ])
        };
        let c = Config::load(None, &both("pusher")).expect("valid");
        assert_eq!(
            (c.apps[0].key.as_str(), c.default_app),
            ("pkey", Some(AppSource::Pusher))
        );
        assert_eq!(c.server.port, 6001);
        let c = Config::load(None, &both("reverb")).expect("valid");
        assert_eq!(
            (c.apps[0].key.as_str(), c.default_app),
            ("rkey", Some(AppSource::Reverb))
        );
        let c = Config::load(None, &env(&[])).expect("valid");
        assert_eq!(c.default_app, Some(AppSource::BuiltIn));
    }

    #[test]
    fn a_path_prefix_must_be_a_path() {
        for bad in ["/a b", "/a?b", "/a//b"] {
            let mut c = Config::load(None, &env(&[])).expect("valid");
            c.server.path = bad.to_owned();
            let e = c.validate().expect_err(bad).to_string();
            assert!(e.contains("server.path"), "{e}");
        }
    }

    #[test]
    fn app_variables_beside_file_apps_are_reported_as_ignored() {
        let dir = std::env::temp_dir().join(format!("herald-ignored-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("config.toml");
        std::fs::write(&file, "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n")
            .expect("write");
        let c = Config::load(Some(&file), &env(&[("PUSHER_APP_SECRET", "x")])).expect("valid");
        assert_eq!(c.apps[0].secret, "s");
        assert_eq!(c.ignored_app_variables, ["PUSHER_APP_SECRET"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_apps_and_limits() {
        let c = Config::from_toml(
            r#"
            [server]
            port = 7001
            [[apps]]
            id = "1"
            key = "k1"
            secret = "s1"
            max_presence_members = 5
            client_events = false
            [[apps]]
            id = "2"
            key = "k2"
            secret = "s2"
            "#,
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.apps[0].max_presence_members, 5);
        assert!(!c.apps[0].client_events);
        assert_eq!(c.apps[1].max_presence_members, 100);
    }

    #[test]
    fn the_shipped_example_is_valid_and_shows_the_defaults() {
        let example = Config::from_toml(include_str!("../../config.toml.example")).expect("parses");
        example.validate().expect("valid");
        let defaults = ServerConfig::default();
        assert_eq!(example.server.port, defaults.port);
        assert_eq!(example.server.activity_timeout, defaults.activity_timeout);
        let app = &example.apps[0];
        let d = AppConfig::default();
        assert_eq!(app.max_event_bytes, d.max_event_bytes);
        assert_eq!(app.max_presence_members, d.max_presence_members);
        assert_eq!(app.client_event_rate, d.client_event_rate);
        assert_eq!(app.cache_ttl, d.cache_ttl);
    }

    #[test]
    fn redis_url_switches_to_cluster_mode() {
        let c = Config::load(
            None,
            &env(&[("HERALD_REDIS_URL", "redis://127.0.0.1:7777")]),
        )
        .expect("valid");
        assert_eq!(c.cluster.driver, ClusterDriver::Redis);
        assert_eq!(c.cluster.url, "redis://127.0.0.1:7777");
        let mut c = Config::from_toml("[cluster]\ndriver = \"redis\"\nurl = \"http://x\"\n")
            .expect("parses");
        c.apps.push(AppConfig::new("1", "k", "s"));
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cluster.url"));
        assert!(Config::from_toml("[cluster]\ndriver = \"nats\"\n").is_err());
    }

    #[test]
    fn bad_config_names_the_key() {
        let e = Config::from_toml("[server]\nprot = 1\n").expect_err("unknown key");
        assert!(e.contains("prot"), "{e}");
        let e = Config::from_toml("[server]\nport = \"x\"\n").expect_err("wrong type");
        assert!(e.contains("port"), "{e}");
        let mut c =
            Config::from_toml("[[apps]]\nid=\"1\"\nkey=\"k\"\nsecret=\"\"\n").expect("parses");
        let e = c.validate().expect_err("empty secret").to_string();
        assert!(e.contains("apps[0].secret"), "{e}");
        c.apps[0].secret = "s".into();
        c.apps.push(c.apps[0].clone());
        let e = c.validate().expect_err("duplicate").to_string();
        assert!(e.contains("apps[1].id"), "{e}");
        let e = Config::load(None, &env(&[("HERALD_PORT", "nope")])).expect_err("bad port");
        assert!(e.to_string().contains("HERALD_PORT"));
    }
}
