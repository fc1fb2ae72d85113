//! Every config key from the environment, so a container needs no file.
//!
//! The rule: `HERALD_<SECTION>__<KEY>` sets `key` of `[section]`
//! (`HERALD_SERVER__PORT=7000`, `HERALD_CLUSTER__URL=redis://…`,
//! `HERALD_METRICS__PORT=0`); `HERALD_APPS__<N>__<KEY>` sets `key` of the
//! Nth `[[apps]]` entry (from 0); `HERALD_APP__<KEY>` sets `key` of the
//! default app, the one made when there is no `[[apps]]`. Names are case
//! insensitive; the double underscore separates levels. A value is read as
//! the type its key has: numbers, `true`/`false`, TOML arrays
//! (`["member_added","member_removed"]`), and anything else as a string.

use super::{invalid, AppConfig, Config, ConfigError};

const PREFIX: &str = "HERALD_";
const DEFAULT_APP: &str = "APP";

/// The older single names: each sets the key named here, like its
/// `HERALD_<SECTION>__<KEY>`, and is applied after those, so it wins (as it
/// always has). An empty value is ignored.
const SINGLE_NAMES: [(&str, &str, &str); 9] = [
    ("HERALD_HOST", "server", "host"),
    ("HERALD_PORT", "server", "port"),
    ("HERALD_ACTIVITY_TIMEOUT", "server", "activity_timeout"),
    (
        "HERALD_TRUST_FORWARDED_FOR",
        "server",
        "trust_forwarded_for",
    ),
    ("HERALD_TLS_CERT", "server", "tls_cert"),
    ("HERALD_TLS_KEY", "server", "tls_key"),
    ("HERALD_CONSOLE_TOKEN", "console", "token"),
    ("HERALD_METRICS_PORT", "metrics", "port"),
    ("HERALD_REDIS_URL", "cluster", "url"),
];

/// Applies the `HERALD_<SECTION>__<KEY>` and `HERALD_APPS__<N>__<KEY>`
/// variables to the file's table.
pub fn apply(table: &mut toml::Table, vars: &[(String, String)]) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let app_defaults = toml::Table::try_from(AppConfig::default()).unwrap_or_default();
    for (name, raw) in vars {
        let Some(path) = path_of(name) else { continue };
        match path.as_slice() {
            [section, key] if section != DEFAULT_APP && section != "APPS" => {
                let (section, key) = (section.to_lowercase(), key.to_lowercase());
                set(table, &defaults, &section, &key, name, raw)?;
            }
            [apps, index, key] if apps == "APPS" => {
                let index: usize = index
                    .parse()
                    .map_err(|_| invalid(name, "the app index must be a number"))?;
                let key = key.to_lowercase();
                let value = parse(name, raw, app_defaults.get(&key))?;
                let apps = table
                    .entry("apps")
                    .or_insert_with(|| toml::Value::Array(Vec::new()));
                let apps = apps
                    .as_array_mut()
                    .ok_or_else(|| invalid(name, "apps is not a list"))?;
                let app = apps
                    .get_mut(index)
                    .and_then(toml::Value::as_table_mut)
                    .ok_or_else(|| invalid(name, format!("there is no apps[{index}]")))?;
                app.insert(key, value);
            }
            [app, _] if app == DEFAULT_APP => {
                let has_apps = table
                    .get("apps")
                    .and_then(toml::Value::as_array)
                    .is_some_and(|apps| !apps.is_empty());
                if has_apps {
                    return Err(invalid(
                        name,
                        "sets the default app, but the config file has [[apps]]: use HERALD_APPS__<N>__<KEY>",
                    ));
                }
            }
            _ => return Err(invalid(name, "expected HERALD_<SECTION>__<KEY>")),
        }
    }
    for (single, section, key) in SINGLE_NAMES {
        let Some((name, raw)) = vars.iter().find(|(n, v)| n == single && !v.is_empty()) else {
            continue;
        };
        let section = set(table, &defaults, section, key, name, raw)?;
        // A Redis URL alone switches a node to cluster mode.
        if single == "HERALD_REDIS_URL" {
            section.insert("driver".to_owned(), toml::Value::String("redis".into()));
        }
    }
    Ok(())
}

/// Sets `key` of `[section]` to the value of variable `name`, read as the
/// type the key's default has; returns the section.
fn set<'a>(
    table: &'a mut toml::Table,
    defaults: &toml::Table,
    section: &str,
    key: &str,
    name: &str,
    raw: &str,
) -> Result<&'a mut toml::Table, ConfigError> {
    let hint = defaults.get(section).and_then(|s| s.get(key));
    let value = parse(name, raw, hint)?;
    let section = section_table(table, section, name)?;
    section.insert(key.to_owned(), value);
    Ok(section)
}

/// Applies the `HERALD_APP__<KEY>` variables to the default app.
pub fn apply_to_default_app(
    app: AppConfig,
    vars: &[(String, String)],
) -> Result<AppConfig, ConfigError> {
    let defaults = toml::Table::try_from(AppConfig::default()).unwrap_or_default();
    let mut table = toml::Table::try_from(&app).unwrap_or_default();
    let mut changed = false;
    for (name, raw) in vars {
        let Some(path) = path_of(name) else { continue };
        if let [first, key] = path.as_slice() {
            if first == DEFAULT_APP {
                let key = key.to_lowercase();
                table.insert(key.clone(), parse(name, raw, defaults.get(&key))?);
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(app);
    }
    table
        .try_into()
        .map_err(|e: toml::de::Error| invalid("HERALD_APP__*", e.message().to_owned()))
}

/// `HERALD_SERVER__PORT` -> `["SERVER", "PORT"]`; `None` for variables
/// without a `__` (the older single names like `HERALD_PORT`).
fn path_of(name: &str) -> Option<Vec<String>> {
    let rest = name.to_uppercase();
    let rest = rest.strip_prefix(PREFIX)?;
    if !rest.contains("__") {
        return None;
    }
    Some(rest.split("__").map(str::to_owned).collect())
}

fn section_table<'a>(
    table: &'a mut toml::Table,
    section: &str,
    name: &str,
) -> Result<&'a mut toml::Table, ConfigError> {
    table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| invalid(name, format!("[{section}] is not a section")))
}

/// Reads `raw` as the type of `hint` (the key's default value).
fn parse(name: &str, raw: &str, hint: Option<&toml::Value>) -> Result<toml::Value, ConfigError> {
    let wrong = |what: &str| invalid(name, format!("{raw:?} is not {what}"));
    Ok(match hint {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| wrong("a whole number"))?)
        }
        Some(toml::Value::Float(_)) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| wrong("a number"))?)
        }
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(wrong("true or false")),
        }),
        Some(toml::Value::Array(_)) | Some(toml::Value::Table(_)) => {
            let parsed: toml::Table =
                toml::from_str(&format!("v = {raw}")).map_err(|_| wrong("a TOML value"))?;
            parsed
                .get("v")
                .cloned()
                .ok_or_else(|| wrong("a TOML value"))?
        }
        _ => toml::Value::String(raw.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sections_and_apps_take_typed_values() {
        let mut table: toml::Table =
            toml::from_str("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n").expect("toml");
        apply(
            &mut table,
            &vars(&[
                ("HERALD_SERVER__PORT", "7000"),
                ("HERALD_SERVER__TRUST_FORWARDED_FOR", "true"),
                ("HERALD_CLUSTER__URL", "redis://10.0.0.1:6379"),
                ("herald_metrics__port", "0"),
                ("HERALD_APPS__0__SECRET", "123456"),
                ("HERALD_APPS__0__MAX_CONNECTIONS", "50"),
            ]),
        )
        .expect("applies");
        let config: Config = table.try_into().expect("valid");
        assert_eq!(config.server.port, 7000);
        assert!(config.server.trust_forwarded_for);
        assert_eq!(config.cluster.url, "redis://10.0.0.1:6379");
        assert_eq!(config.metrics.port, 0);
        assert_eq!(config.apps[0].secret, "123456");
        assert_eq!(config.apps[0].max_connections, 50);
    }

    #[test]
    fn single_names_win_over_long_ones() {
        let mut table = toml::Table::new();
        apply(
            &mut table,
            &vars(&[
                ("HERALD_PORT", "7001"),
                ("HERALD_SERVER__PORT", "7000"),
                ("HERALD_TLS_CERT", ""),
                ("HERALD_REDIS_URL", "redis://10.0.0.2:6379"),
            ]),
        )
        .expect("applies");
        let config: Config = table.try_into().expect("valid");
        assert_eq!(config.server.port, 7001);
        assert_eq!(config.server.tls_cert, None, "empty: ignored");
        assert_eq!(config.cluster.url, "redis://10.0.0.2:6379");
        assert_eq!(config.cluster.driver, super::super::ClusterDriver::Redis);
        let mut table = toml::Table::new();
        let e = apply(&mut table, &vars(&[("HERALD_PORT", "nope")])).expect_err("bad");
        assert!(e.to_string().contains("HERALD_PORT"), "{e}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut table = toml::Table::new();
        let e = apply(&mut table, &vars(&[("HERALD_SERVER__PORT", "x")])).expect_err("bad");
        assert!(e.to_string().contains("HERALD_SERVER__PORT"), "{e}");
        let e = apply(&mut table, &vars(&[("HERALD_APPS__3__KEY", "k")])).expect_err("no app");
        assert!(e.to_string().contains("apps[3]"), "{e}");
    }

    #[test]
    fn the_default_app_takes_its_own_variables() {
        let app = apply_to_default_app(
            AppConfig::new("1", "k", "s"),
            &vars(&[
                ("HERALD_APP__CLIENT_EVENTS", "false"),
                ("HERALD_APP__WEBHOOK_BATCHING", "true"),
                ("HERALD_APP__MAX_PRESENCE_MEMBERS", "7"),
            ]),
        )
        .expect("applies");
        assert!(!app.client_events && app.webhook_batching);
        assert_eq!(app.max_presence_members, 7);
        assert_eq!(app.key, "k");
    }
}
