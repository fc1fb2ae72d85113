//! `herald doctor`: checks a Laravel project against a running Herald and
//! says, one line per check, what is right and how to fix what is not.
//!
//! Static checks read the project's `.env` and what its PHP side will do
//! (`laravel`); the live checks make the round trip its clients would make
//! (`live`). The secret is used to sign, never printed. Exit 0 only when
//! every check passes.

mod laravel;
mod live;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use self::laravel::{PhpSide, PusherTarget};
use crate::config::AppConfig;
use crate::config::EnvFile;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// A Laravel project's root: its .env and config/broadcasting.php are
    /// checked [default: the PUSHER_* variables of this environment].
    #[arg(long)]
    pub laravel: Option<PathBuf>,
    /// Herald's URL [default: from PUSHER_SCHEME, PUSHER_HOST, PUSHER_PORT].
    #[arg(long)]
    pub url: Option<String>,
}

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub title: String,
    pub fix: Option<String>,
}

impl Check {
    fn new(ok: bool, title: String, fix: String) -> Check {
        Check {
            ok,
            title,
            fix: (!ok).then_some(fix),
        }
    }

    fn pass(title: String) -> Check {
        Check {
            ok: true,
            title,
            fix: None,
        }
    }

    fn fail(title: &str, fix: String) -> Check {
        Check {
            ok: false,
            title: title.to_owned(),
            fix: Some(fix),
        }
    }
}

/// Runs the command.
pub fn run(args: DoctorArgs) -> ExitCode {
    let (env, php) = match &args.laravel {
        Some(root) => match std::fs::read_to_string(root.join(".env")) {
            Ok(text) => (EnvFile::parse(&text), Some(laravel::inspect(root))),
            Err(e) => {
                println!("✗ cannot read {}: {e}", root.join(".env").display());
                return ExitCode::FAILURE;
            }
        },
        None => (EnvFile::from_pairs(std::env::vars()), None),
    };
    let mut checks = static_checks(&env, php.as_ref());
    let base = args.url.clone().or_else(|| server_url(&env));
    let app = AppConfig::new(
        env.get("PUSHER_APP_ID").unwrap_or_default(),
        env.get("PUSHER_APP_KEY").unwrap_or_default(),
        env.get("PUSHER_APP_SECRET").unwrap_or_default(),
    );
    let credentials = !app.id.is_empty() && !app.key.is_empty() && !app.secret.is_empty();
    match (&base, credentials) {
        (Some(base), true) => {
            let base = base.trim_end_matches('/').to_owned();
            let live =
                actix_web::rt::System::new().block_on(async move { live::run(&base, &app).await });
            checks.extend(live);
        }
        (None, _) => checks.push(Check::fail(
            "Herald's address is known",
            "set PUSHER_HOST and PUSHER_PORT (or pass --url)".into(),
        )),
        (Some(_), false) => {}
    }
    for check in &checks {
        println!("{} {}", if check.ok { "✓" } else { "✗" }, check.title);
        if let Some(fix) = &check.fix {
            println!("    fix: {fix}");
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        println!("all {} checks passed", checks.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} checks failed", checks.len());
        ExitCode::FAILURE
    }
}

/// `scheme://host:port` from the project's variables.
fn server_url(env: &EnvFile) -> Option<String> {
    let host = env.get("PUSHER_HOST")?;
    let scheme = env.get("PUSHER_SCHEME").unwrap_or("https");
    let port = env
        .get("PUSHER_PORT")
        .unwrap_or(if scheme == "https" { "443" } else { "80" });
    Some(format!("{scheme}://{host}:{port}"))
}

/// The checks that need no server: driver, credentials, address, what the
/// PHP side will do, the frontend's variables.
fn static_checks(env: &EnvFile, php: Option<&PhpSide>) -> Vec<Check> {
    let mut checks = Vec::new();

    // Which variable picks the connection: Laravel 11+ reads
    // BROADCAST_CONNECTION, Laravel 10 and older BROADCAST_DRIVER.
    let selector = php.and_then(|p| p.selector.clone()).unwrap_or_else(|| {
        if env.get("BROADCAST_CONNECTION").is_some() {
            "BROADCAST_CONNECTION".into()
        } else {
            "BROADCAST_DRIVER".into()
        }
    });
    let driver = php
        .and_then(|p| p.default.clone())
        .or_else(|| env.get(&selector).map(str::to_owned));
    let other = if selector == "BROADCAST_CONNECTION" {
        "BROADCAST_DRIVER"
    } else {
        "BROADCAST_CONNECTION"
    };
    let fix = match env.get(other) {
        Some("pusher") => {
            format!("this Laravel reads {selector}, not {other}: set {selector}=pusher")
        }
        _ => format!("set {selector}=pusher in .env"),
    };
    checks.push(Check::new(
        driver.as_deref() == Some("pusher"),
        format!("{selector} is pusher"),
        fix,
    ));

    let missing: Vec<&str> = ["PUSHER_APP_ID", "PUSHER_APP_KEY", "PUSHER_APP_SECRET"]
        .into_iter()
        .filter(|name| env.get(name).is_none())
        .collect();
    checks.push(Check::new(
        missing.is_empty(),
        "PUSHER_APP_ID, PUSHER_APP_KEY and PUSHER_APP_SECRET are set".to_owned(),
        format!(
            "set {} to the values of an app of Herald",
            missing.join(", ")
        ),
    ));

    let unset: Vec<&str> = ["PUSHER_HOST", "PUSHER_PORT", "PUSHER_SCHEME"]
        .into_iter()
        .filter(|name| env.get(name).is_none())
        .collect();
    checks.push(Check::new(
        unset.is_empty(),
        "PUSHER_HOST, PUSHER_PORT and PUSHER_SCHEME point at Herald".to_owned(),
        format!(
            "set {} (e.g. PUSHER_HOST=127.0.0.1, PUSHER_PORT=6001, PUSHER_SCHEME=http)",
            unset.join(", ")
        ),
    ));

    if let Some(php) = php {
        checks.push(php_check(php, env));
    }
    checks.push(frontend_check(env));
    checks
}

/// Whether the PHP SDK will send to Herald, not to Pusher's cloud.
fn php_check(php: &PhpSide, env: &EnvFile) -> Check {
    let title = format!("the PHP side sends to PUSHER_HOST ({})", php.source);
    let scheme = env.get("PUSHER_SCHEME").unwrap_or("https");
    match &php.target {
        PusherTarget::Resolved { host, port, scheme: resolved, use_tls } => {
            let expected = env.get("PUSHER_HOST");
            let ok = host.is_some() && host.as_deref() == expected;
            let tls_clash = *use_tls == Some(true) && resolved.as_deref() == Some("http");
            Check::new(
                ok && !tls_clash,
                title,
                format!(
                    "Laravel resolves host {host:?}, port {port:?}, scheme {resolved:?}, useTLS {use_tls:?}; \
                     run php artisan config:clear if .env changed"
                ),
            )
        }
        PusherTarget::ReadsHost { use_tls_forced } => Check::new(
            !(*use_tls_forced && scheme == "http"),
            title,
            "config/broadcasting.php sets 'useTLS' => true while PUSHER_SCHEME=http: \
             use 'useTLS' => env('PUSHER_SCHEME', 'https') === 'https'"
                .into(),
        ),
        PusherTarget::Cloud => Check::fail(
            &title,
            "the pusher connection in config/broadcasting.php has no 'host' option (Laravel 8's stock \
             config), so the PHP SDK sends to Pusher's cloud (api-mt1.pusher.com:443) whatever \
             PUSHER_HOST says. Add to connections.pusher.options: 'host' => env('PUSHER_HOST'), \
             'port' => env('PUSHER_PORT', 6001), 'scheme' => env('PUSHER_SCHEME', 'http'), \
             'useTLS' => env('PUSHER_SCHEME', 'http') === 'https', and remove 'useTLS' => true"
                .into(),
        ),
        PusherTarget::Missing => Check::fail(
            &title,
            "config/broadcasting.php has no pusher connection: add the one of Laravel's stock config"
                .into(),
        ),
    }
}

/// Whether the frontend build (Vite, or Mix on Laravel 8) gets the key
/// and Herald's address.
fn frontend_check(env: &EnvFile) -> Check {
    let prefix =
        if env.get("VITE_PUSHER_APP_KEY").is_some() || env.get("MIX_PUSHER_APP_KEY").is_none() {
            "VITE"
        } else {
            "MIX"
        };
    let var = |name: &str| env.get(&format!("{prefix}_{name}"));
    let mut problems = Vec::new();
    match var("PUSHER_APP_KEY") {
        None => problems.push(format!(
            "{prefix}_PUSHER_APP_KEY=\"${{PUSHER_APP_KEY}}\" is missing"
        )),
        Some(key) if Some(key) != env.get("PUSHER_APP_KEY") => problems.push(format!(
            "{prefix}_PUSHER_APP_KEY differs from PUSHER_APP_KEY"
        )),
        Some(_) => {}
    }
    for name in ["PUSHER_HOST", "PUSHER_PORT", "PUSHER_SCHEME"] {
        if var(name).is_none() {
            problems.push(format!(
                "{prefix}_{name}=\"${{{name}}}\" is missing (Echo needs wsHost / wsPort / forceTLS)"
            ));
        }
    }
    Check::new(
        problems.is_empty(),
        format!("the frontend ({prefix}_*) gets the key and Herald's address"),
        problems.join("; "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_laravel_10_env_passes_the_static_checks() {
        let env = EnvFile::parse(
            "BROADCAST_DRIVER=pusher\nPUSHER_APP_ID=app-id\nPUSHER_APP_KEY=app-key\n\
             PUSHER_APP_SECRET=s\nPUSHER_HOST=127.0.0.1\nPUSHER_PORT=6001\nPUSHER_SCHEME=http\n\
             VITE_PUSHER_APP_KEY=\"${PUSHER_APP_KEY}\"\nVITE_PUSHER_HOST=\"${PUSHER_HOST}\"\n\
             VITE_PUSHER_PORT=\"${PUSHER_PORT}\"\nVITE_PUSHER_SCHEME=\"${PUSHER_SCHEME}\"\n",
        );
        let checks = static_checks(&env, None);
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        assert_eq!(server_url(&env).as_deref(), Some("http://127.0.0.1:6001"));
    }

    #[test]
    fn a_driver_set_under_the_other_name_is_explained() {
        let env = EnvFile::parse("BROADCAST_DRIVER=pusher\n");
        let php = laravel::read_config("'default' => env('BROADCAST_CONNECTION', 'null'), 'pusher' => [ 'options' => [ 'host' => env('PUSHER_HOST'), ], ],");
        let checks = static_checks(&env, Some(&php));
        assert!(!checks[0].ok);
        assert!(checks[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("reads BROADCAST_CONNECTION")));
    }
}
