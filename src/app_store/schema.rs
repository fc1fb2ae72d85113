//! The table of apps: one column per `[[apps]]` key, derived from
//! [`AppConfig`] itself (so a key added to the config is a column the next
//! `herald apps migrate` adds), and the statements that create it.

use serde_json::Value;

use crate::config::{AppConfig, StoreKind};

/// The schema version `herald apps migrate` brings a table to; kept in the
/// table `<table>_schema`. Version 1: the table, its columns, and (on
/// PostgreSQL) the trigger that notifies nodes of changes.
pub const VERSION: i64 = 1;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Integer,
    /// The credentials: short text.
    Text,
    /// Lists and the webhooks, as JSON.
    Json,
}

/// One column of an app's settings.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    /// Its value in `AppConfig::default()` (the column's default).
    pub default: Value,
}

/// The columns beside the settings: a rotated-out secret and until when
/// it is accepted (unix seconds), and when the row was made and changed.
pub const PREVIOUS_SECRET: &str = "previous_secret";
pub const PREVIOUS_SECRET_UNTIL: &str = "previous_secret_until";

/// The settings' columns, credentials first.
pub fn columns() -> Vec<Column> {
    let Ok(Value::Object(defaults)) = serde_json::to_value(AppConfig::default()) else {
        return Vec::new();
    };
    let mut columns: Vec<Column> = defaults
        .into_iter()
        .map(|(name, default)| {
            let kind = match (&default, name.as_str()) {
                (_, "id" | "key" | "secret") => Kind::Text,
                (Value::Bool(_), _) => Kind::Bool,
                (Value::Number(_), _) => Kind::Integer,
                _ => Kind::Json,
            };
            Column {
                name,
                kind,
                default,
            }
        })
        .collect();
    let rank = |c: &Column| ["id", "key", "secret"].iter().position(|n| *n == c.name);
    columns.sort_by_key(|c| rank(c).unwrap_or(usize::MAX));
    columns
}

/// Quotes an identifier for the dialect (names here are checked to be
/// plain words; `key` is a reserved word in MySQL).
pub fn quote(kind: StoreKind, name: &str) -> String {
    match kind {
        StoreKind::Postgres => format!("\"{name}\""),
        StoreKind::MySql => format!("`{name}`"),
    }
}

/// A column's definition in `CREATE TABLE` / `ADD COLUMN`.
fn definition(kind: StoreKind, column: &Column) -> String {
    let name = quote(kind, &column.name);
    let default = match &column.default {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    };
    match (column.kind, kind) {
        (Kind::Text, _) if column.name == "id" => {
            format!("{name} VARCHAR(255) NOT NULL PRIMARY KEY")
        }
        (Kind::Text, _) if column.name == "key" => format!("{name} VARCHAR(255) NOT NULL UNIQUE"),
        (Kind::Text, _) => format!("{name} VARCHAR(255) NOT NULL"),
        (Kind::Bool, _) => format!("{name} BOOLEAN NOT NULL DEFAULT {default}"),
        (Kind::Integer, _) => format!("{name} BIGINT NOT NULL DEFAULT {default}"),
        (Kind::Json, StoreKind::Postgres) => format!("{name} JSONB NOT NULL DEFAULT {default}"),
        // MySQL takes a default on JSON only as an expression.
        (Kind::Json, StoreKind::MySql) => format!("{name} JSON NOT NULL DEFAULT ({default})"),
    }
}

/// The definitions of the extra columns.
fn extras(kind: StoreKind) -> Vec<(&'static str, String)> {
    let q = |n: &str| quote(kind, n);
    vec![
        (
            PREVIOUS_SECRET,
            format!("{} VARCHAR(255) NULL", q(PREVIOUS_SECRET)),
        ),
        (
            PREVIOUS_SECRET_UNTIL,
            format!("{} BIGINT NULL", q(PREVIOUS_SECRET_UNTIL)),
        ),
        (
            "created_at",
            format!(
                "{} TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP",
                q("created_at")
            ),
        ),
        (
            "updated_at",
            format!(
                "{} TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP",
                q("updated_at")
            ),
        ),
    ]
}

/// `CREATE TABLE IF NOT EXISTS` with every column.
pub fn create_table(kind: StoreKind, table: &str) -> String {
    let mut parts: Vec<String> = columns().iter().map(|c| definition(kind, c)).collect();
    parts.extend(extras(kind).into_iter().map(|(_, d)| d));
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
        quote(kind, table),
        parts.join(",\n  ")
    )
}

/// `ALTER TABLE … ADD COLUMN` for each column the table lacks (a table
/// made by an older Herald).
pub fn add_missing(kind: StoreKind, table: &str, present: &[String]) -> Vec<String> {
    let has = |name: &str| present.iter().any(|p| p.eq_ignore_ascii_case(name));
    let mut wanted: Vec<(String, String)> = columns()
        .iter()
        .map(|c| (c.name.clone(), definition(kind, c)))
        .collect();
    wanted.extend(extras(kind).into_iter().map(|(n, d)| (n.to_owned(), d)));
    wanted
        .into_iter()
        .filter(|(name, _)| !has(name))
        .map(|(_, definition)| {
            format!("ALTER TABLE {} ADD COLUMN {definition}", quote(kind, table))
        })
        .collect()
}

/// The pub/sub channel PostgreSQL notifies a change of the table on.
pub fn channel(table: &str) -> String {
    format!("{table}_changed")
}

/// PostgreSQL: a trigger that notifies every listening node of a changed
/// row (its id; both ids when an update changed it), whoever changed it.
pub fn notify_trigger(table: &str) -> Vec<String> {
    let q = |n: &str| quote(StoreKind::Postgres, n);
    let function = q(&format!("{table}_notify"));
    let channel = channel(table);
    vec![
        format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN PERFORM pg_notify('{channel}', OLD.\"id\"); END IF;
  IF TG_OP <> 'DELETE' THEN PERFORM pg_notify('{channel}', NEW.\"id\"); END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql"
        ),
        format!("DROP TRIGGER IF EXISTS {function} ON {}", q(table)),
        format!(
            "CREATE TRIGGER {function} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {function}()",
            q(table)
        ),
    ]
}

/// The table that records the schema version.
pub fn version_table(kind: StoreKind, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({} BIGINT NOT NULL, {} TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        quote(kind, &format!("{table}_schema")),
        quote(kind, "version"),
        quote(kind, "applied_at")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_app_setting_is_a_column_with_its_default() {
        let columns = columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(&names[..3], ["id", "key", "secret"]);
        for name in ["enabled", "max_connections", "webhooks", "allowed_origins"] {
            assert!(names.contains(&name), "{name}");
        }
        let kind = |n: &str| columns.iter().find(|c| c.name == n).map(|c| c.kind);
        assert_eq!(kind("enabled"), Some(Kind::Bool));
        assert_eq!(kind("max_event_bytes"), Some(Kind::Integer));
        assert_eq!(kind("webhooks"), Some(Kind::Json));
        let pg = create_table(StoreKind::Postgres, "herald_apps");
        assert!(
            pg.contains("\"max_event_bytes\" BIGINT NOT NULL DEFAULT 10240"),
            "{pg}"
        );
        assert!(
            pg.contains("\"webhooks\" JSONB NOT NULL DEFAULT '[]'"),
            "{pg}"
        );
        let my = create_table(StoreKind::MySql, "herald_apps");
        assert!(my.contains("`key` VARCHAR(255) NOT NULL UNIQUE"), "{my}");
        assert!(
            my.contains("`webhooks` JSON NOT NULL DEFAULT ('[]')"),
            "{my}"
        );
    }

    #[test]
    fn an_older_table_gets_only_the_columns_it_lacks() {
        let mut present: Vec<String> = columns().into_iter().map(|c| c.name).collect();
        present.retain(|n| n != "webhook_debounce");
        present.extend(
            [
                "previous_secret",
                "previous_secret_until",
                "created_at",
                "updated_at",
            ]
            .map(String::from),
        );
        let added = add_missing(StoreKind::Postgres, "t", &present);
        assert_eq!(added.len(), 1, "{added:?}");
        assert!(added[0].starts_with("ALTER TABLE \"t\" ADD COLUMN \"webhook_debounce\" BIGINT"));
    }
}
