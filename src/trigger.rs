//! `herald trigger`: publishes one event through a running Herald's HTTP
//! API, signed like the official SDKs sign, so a user can test a setup
//! without writing code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::auth;
use crate::config::{AppConfig, Config, ProcessEnv};
use crate::support::clock::unix_secs;

#[derive(Args, Debug)]
pub struct TriggerArgs {
    /// Base URL of the Herald server.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:6001")]
    pub url: String,
    /// App id [default: the only app of the config, or PUSHER_APP_ID].
    #[arg(long)]
    pub app_id: Option<String>,
    /// App key (otherwise taken from the config / environment).
    #[arg(long)]
    pub key: Option<String>,
    /// App secret (otherwise taken from the config / environment).
    #[arg(long)]
    pub secret: Option<String>,
    /// Config file to read the app's credentials from.
    #[arg(long, short = 'c', env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Channel to publish on (repeat for several).
    #[arg(long = "channel", required = true)]
    pub channels: Vec<String>,
    /// Event name.
    #[arg(long)]
    pub event: String,
    /// Event data (sent as the data string, usually JSON).
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// Socket id to exclude from delivery.
    #[arg(long)]
    pub socket_id: Option<String>,
    /// PEM file of a private CA that signed Herald's certificate (for an
    /// https:// URL) [default: SSL_CERT_FILE when set, else the public roots].
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// The base URL, checked: a scheme is needed (`127.0.0.1:6001` alone is
/// not a URL the HTTP client can use).
pub fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    match url.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(url.to_owned()),
        Some((scheme, _)) => Err(format!(
            "{url:?}: the scheme must be http:// or https://, not {scheme}://"
        )),
        None => Err(format!(
            "{url:?} has no scheme: use http://{url} (or https://{url} when Herald serves TLS)"
        )),
    }
}

/// What a failed request says, with a hint for the usual mistakes.
pub fn request_failed(url: &str, error: &str) -> String {
    let hint = if error.contains("UnknownIssuer") || error.contains("certificate") {
        " (a certificate from a private CA? pass --ca with its PEM file, or set SSL_CERT_FILE)"
    } else if url.starts_with("http://")
        && (error.contains("parse") || error.contains("invalid") || error.contains("closed"))
    {
        " (does that port serve TLS? then use https://)"
    } else {
        ""
    };
    format!("request to {url} failed: {error}{hint}")
}

/// Runs the command; exit 0 on a 200 answer.
pub fn run(args: TriggerArgs) -> ExitCode {
    let app = match credentials(&args) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("herald trigger: {e}");
            return ExitCode::from(2);
        }
    };
    let body = serde_json::json!({
        "name": args.event,
        "channels": args.channels,
        "data": args.data,
        "socket_id": args.socket_id,
    });
    let body = body.to_string();
    let base = match base_url(&args.url) {
        Ok(base) => base,
        Err(e) => {
            eprintln!("herald trigger: --url {e}");
            return ExitCode::from(2);
        }
    };
    let path = format!("/apps/{}/events", app.id);
    let query = signed_query(&app, "POST", &path, body.as_bytes(), unix_secs());
    let url = format!("{base}{path}?{query}");
    let ca = args.ca.clone();

    let result = actix_web::rt::System::new().block_on(async move {
        let client = crate::tls::cli_client(ca.as_deref(), std::time::Duration::from_secs(10))?;
        let mut response = client
            .post(url)
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await
            .map_err(|e| request_failed(&base, &e.to_string()))?;
        let text = response.body().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((
            response.status(),
            String::from_utf8_lossy(&text).into_owned(),
        ))
    });
    match result {
        Ok((status, text)) if status.is_success() => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            eprintln!("herald trigger: {status}: {text}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("herald trigger: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The app to sign as: flags win over the config file and environment.
fn credentials(args: &TriggerArgs) -> Result<AppConfig, String> {
    let config = Config::load(args.config.as_deref(), &ProcessEnv).map_err(|e| e.to_string())?;
    let mut app = match &args.app_id {
        Some(id) => config
            .apps
            .iter()
            .find(|a| &a.id == id)
            .cloned()
            .unwrap_or_else(|| AppConfig::new(id.clone(), "", "")),
        None if config.apps.len() == 1 => config.apps[0].clone(),
        None => return Err("several apps are configured: pass --app-id".into()),
    };
    if let Some(key) = &args.key {
        app.key = key.clone();
    }
    if let Some(secret) = &args.secret {
        app.secret = secret.clone();
    }
    if app.key.is_empty() || app.secret.is_empty() {
        return Err(format!(
            "no key/secret known for app {:?}: pass --key and --secret",
            app.id
        ));
    }
    Ok(app)
}

/// The signed query string of an HTTP API request, as the SDKs build it.
pub fn signed_query(
    app: &AppConfig,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> String {
    signed_query_with(app, method, path, body, timestamp, &[])
}

/// Like [`signed_query`], with more query parameters (signed too).
pub fn signed_query_with(
    app: &AppConfig,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
    extra: &[(&str, &str)],
) -> String {
    let mut params: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.extend([
        ("auth_key".to_owned(), app.key.clone()),
        ("auth_timestamp".to_owned(), timestamp.to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
    ]);
    if !body.is_empty() {
        params.push(("body_md5".to_owned(), auth::md5_hex(body)));
    }
    let to_sign = auth::http_string_to_sign(method, path, &params);
    params.push((
        "auth_signature".to_owned(),
        auth::sign(&app.secret, to_sign.as_bytes()),
    ));
    serde_urlencoded::to_string(&params).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_needs_its_scheme() {
        assert_eq!(
            base_url("http://127.0.0.1:6001/").as_deref(),
            Ok("http://127.0.0.1:6001")
        );
        let e = base_url("127.0.0.1:7000").expect_err("no scheme");
        assert!(e.contains("http://127.0.0.1:7000"), "{e}");
        assert!(base_url("ws://x").is_err());
    }
}
