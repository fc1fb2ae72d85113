//! `herald apps`: the command-line client of the admin API (`list`,
//! `show`, `create`, `update`, `delete`, `rotate-secret`), and `migrate`,
//! which creates or upgrades the app store's table itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::app_store::AppStore;
use crate::config::{Config, ProcessEnv};
use crate::trigger::base_url;

#[derive(Args, Debug)]
pub struct AppsArgs {
    /// Base URL of a running Herald.
    #[arg(
        long,
        global = true,
        env = "HERALD_URL",
        default_value = "http://127.0.0.1:6001"
    )]
    pub url: String,
    /// The admin token [default: HERALD_ADMIN_TOKEN, or the config's
    /// `[admin] token`].
    #[arg(
        long,
        global = true,
        env = "HERALD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Config file (for the admin token, and the app store of `migrate`).
    #[arg(long, short = 'c', global = true, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM file of a private CA that signed Herald's certificate.
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: AppsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Every app, with its live connections.
    List,
    /// One app.
    Show { id: String },
    /// Creates an app (id, key and secret are made up unless given).
    Create {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        /// Any other setting, as in `[[apps]]`: `--set max_connections=500`
        /// (values are JSON where they parse as JSON, else text).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Changes settings of an app: `--set enabled=false`.
    Update {
        id: String,
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
    },
    /// Deletes an app (its connections are closed with 4003).
    Delete { id: String },
    /// Gives an app a new secret.
    RotateSecret {
        id: String,
        /// Seconds the old secret is still accepted [default: the server's
        /// `[app_store] secret_grace_seconds`].
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
    /// Creates or upgrades the app store's table (idempotent).
    Migrate,
}

/// `KEY=VALUE` pairs as a JSON object.
fn settings(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--set {pair:?}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        map.insert(key.trim().to_owned(), value);
    }
    Ok(map)
}

pub fn run(args: AppsArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), &ProcessEnv) {
        Ok(config) => config,
        Err(e) => return fail(&e.to_string(), 2),
    };
    if matches!(args.command, AppsCommand::Migrate) {
        return migrate(&config);
    }
    let request = match request_of(&args.command) {
        Ok(request) => request,
        Err(e) => return fail(&e, 2),
    };
    let Some(token) = args.token.clone().or(config.admin.token.clone()) else {
        return fail(
            "no admin token: pass --token, set HERALD_ADMIN_TOKEN, or name the config (-c) whose [admin] token the server uses",
            2,
        );
    };
    let base = match base_url(&args.url) {
        Ok(base) => base,
        Err(e) => return fail(&format!("--url {e}"), 2),
    };
    let (method, path, body) = request;
    let url = format!("{base}/admin/apps{path}");
    let ca = args.ca.clone();
    let result = actix_web::rt::System::new().block_on(async move {
        let client = crate::tls::cli_client(ca.as_deref(), Duration::from_secs(10))?;
        let request = client
            .request(method, url)
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Content-Type", "application/json"));
        let mut response = request
            .send_body(body.map(|b| b.to_string()).unwrap_or_default())
            .await
            .map_err(|e| format!("cannot reach {base}: {e}"))?;
        let text = response
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((response.status(), text))
    });
    match result {
        Ok((status, text)) => {
            let shown = serde_json::from_slice::<Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
            if status.is_success() {
                println!("{shown}");
                ExitCode::SUCCESS
            } else {
                fail(&format!("{status}: {shown}"), 1)
            }
        }
        Err(e) => fail(&e, 1),
    }
}

type Request = (actix_web::http::Method, String, Option<Value>);

fn request_of(command: &AppsCommand) -> Result<Request, String> {
    use actix_web::http::Method;
    let escaped = |id: &str| {
        id.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    Ok(match command {
        AppsCommand::List => (Method::GET, String::new(), None),
        AppsCommand::Show { id } => (Method::GET, format!("/{}", escaped(id)), None),
        AppsCommand::Create {
            id,
            key,
            secret,
            set,
        } => {
            let mut body = settings(set)?;
            for (name, value) in [("id", id), ("key", key), ("secret", secret)] {
                if let Some(value) = value {
                    body.insert(name.to_owned(), Value::String(value.clone()));
                }
            }
            (Method::POST, String::new(), Some(Value::Object(body)))
        }
        AppsCommand::Update { id, set } => (
            Method::PATCH,
            format!("/{}", escaped(id)),
            Some(Value::Object(settings(set)?)),
        ),
        AppsCommand::Delete { id } => (Method::DELETE, format!("/{}", escaped(id)), None),
        AppsCommand::RotateSecret { id, grace_seconds } => (
            Method::POST,
            format!("/{}/rotate-secret", escaped(id)),
            Some(serde_json::json!({ "grace_seconds": grace_seconds })),
        ),
        AppsCommand::Migrate => (Method::GET, String::new(), None),
    })
}

fn migrate(config: &Config) -> ExitCode {
    if config.app_store.url.is_none() {
        return fail(
            "no app store: set [app_store] url in the config (-c) or HERALD_APP_STORE__URL",
            2,
        );
    }
    let result = actix_web::rt::System::new().block_on(async {
        let store = AppStore::open(&config.app_store)?;
        store.reachable().await?;
        store.migrate().await
    });
    match result {
        Ok(found) => {
            println!(
                "the app table {:?} is at schema version {} (it was at {found})",
                config.app_store.table,
                crate::app_store::schema::VERSION
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), 1),
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("herald apps: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_json_where_they_parse() {
        let map = settings(&[
            "enabled=false".into(),
            "max_connections=5".into(),
            "key=abc".into(),
            "allowed_origins=[\"https://a.test\"]".into(),
        ])
        .expect("pairs");
        assert_eq!(map["enabled"], Value::Bool(false));
        assert_eq!(map["max_connections"], Value::from(5));
        assert_eq!(map["key"], Value::String("abc".into()));
        assert!(map["allowed_origins"].is_array());
        assert!(settings(&["nope".into()]).is_err());
    }
}
