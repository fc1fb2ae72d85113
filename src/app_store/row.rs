//! A row of the apps table as JSON, and back: the database hands a row
//! over as one JSON object (`to_jsonb` / `JSON_OBJECT`), which becomes an
//! [`AppConfig`] the way a `[[apps]]` table does.

use serde_json::{Map, Value};

use super::schema::{self, Column, Kind};
use crate::config::{AppConfig, PreviousSecret};

/// Reads a row. MySQL gives booleans as 0/1 and (MariaDB) JSON columns as
/// text; columns Herald does not know are left out.
pub fn decode(columns: &[Column], text: &str) -> Result<AppConfig, String> {
    let Value::Object(mut row) =
        serde_json::from_str::<Value>(text).map_err(|e| format!("a row is not JSON: {e}"))?
    else {
        return Err("a row is not a JSON object".to_owned());
    };
    let previous = row.remove(schema::PREVIOUS_SECRET);
    let until = row.remove(schema::PREVIOUS_SECRET_UNTIL);
    let mut settings = Map::new();
    for column in columns {
        let Some(value) = row.remove(&column.name) else {
            continue;
        };
        let value = match (column.kind, value) {
            (Kind::Bool, Value::Number(n)) => Value::Bool(n.as_i64().unwrap_or(0) != 0),
            (Kind::Json, Value::String(s)) => {
                serde_json::from_str(&s).map_err(|e| format!("{} is not JSON: {e}", column.name))?
            }
            (_, Value::Null) => continue,
            (_, value) => value,
        };
        settings.insert(column.name.clone(), value);
    }
    let id = settings
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut app: AppConfig =
        serde_json::from_value(Value::Object(settings)).map_err(|e| format!("app {id:?}: {e}"))?;
    if let (Some(Value::String(secret)), Some(until)) =
        (previous, until.as_ref().and_then(Value::as_u64))
    {
        app.previous_secret = Some(PreviousSecret { secret, until });
    }
    Ok(app)
}

/// A value to write to one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Bool(bool),
    Integer(i64),
    Text(String),
    Json(String),
    /// SQL NULL of a text or an integer column (no previous secret).
    NullText,
    NullInteger,
}

/// The row of `app`, column by column (the settings, then the previous
/// secret and its expiry).
pub fn encode(columns: &[Column], app: &AppConfig) -> Result<Vec<(String, Field)>, String> {
    let Value::Object(mut settings) = serde_json::to_value(app).map_err(|e| e.to_string())? else {
        return Err("an app is not a JSON object".to_owned());
    };
    let mut fields = Vec::with_capacity(columns.len() + 2);
    for column in columns {
        let value = settings.remove(&column.name).unwrap_or(Value::Null);
        let field = match (column.kind, value) {
            (Kind::Bool, Value::Bool(b)) => Field::Bool(b),
            (Kind::Integer, Value::Number(n)) => Field::Integer(
                n.as_i64()
                    .ok_or_else(|| format!("{} is out of range", column.name))?,
            ),
            (Kind::Text, Value::String(s)) => Field::Text(s),
            (Kind::Json, value) => Field::Json(value.to_string()),
            (_, value) => return Err(format!("{} cannot be {value}", column.name)),
        };
        fields.push((column.name.clone(), field));
    }
    let (previous, until) = match &app.previous_secret {
        Some(p) => (
            Field::Text(p.secret.clone()),
            Field::Integer(i64::try_from(p.until).unwrap_or(i64::MAX)),
        ),
        None => (Field::NullText, Field::NullInteger),
    };
    fields.push((schema::PREVIOUS_SECRET.to_owned(), previous));
    fields.push((schema::PREVIOUS_SECRET_UNTIL.to_owned(), until));
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookConfig;

    #[test]
    fn an_app_survives_the_round_trip_through_a_row() {
        let columns = schema::columns();
        let mut app = AppConfig::new("1", "k", "s");
        app.enabled = false;
        app.max_connections = 7;
        app.allowed_origins = vec!["https://a.test".into()];
        app.webhooks = vec![WebhookConfig::all_events("http://h.test/hook")];
        app.previous_secret = Some(PreviousSecret {
            secret: "old".into(),
            until: 1_900_000_000,
        });
        let fields = encode(&columns, &app).expect("encodes");
        // As PostgreSQL's to_jsonb gives it back.
        let mut row = Map::new();
        for (name, field) in fields {
            let value = match field {
                Field::Bool(b) => Value::Bool(b),
                Field::Integer(i) => Value::from(i),
                Field::Text(s) => Value::String(s),
                Field::Json(j) => serde_json::from_str(&j).expect("json"),
                Field::NullText | Field::NullInteger => Value::Null,
            };
            row.insert(name, value);
        }
        row.insert(
            "created_at".into(),
            Value::String("2026-12-08T00:00:00".into()),
        );
        let back = decode(&columns, &Value::Object(row).to_string()).expect("decodes");
        assert_eq!(back, app);
    }

    #[test]
    fn mysql_booleans_and_mariadb_json_text_are_read() {
        let columns = schema::columns();
        let row = r#"{"id":"1","key":"k","secret":"s","enabled":0,"client_events":1,
            "allowed_origins":"[\"https://a.test\"]","previous_secret":null,"previous_secret_until":null}"#;
        let app = decode(&columns, row).expect("decodes");
        assert!(!app.enabled);
        assert!(app.client_events);
        assert_eq!(app.allowed_origins, ["https://a.test"]);
        assert_eq!(app.previous_secret, None);
        assert_eq!(app.max_event_bytes, AppConfig::default().max_event_bytes);
    }
}
