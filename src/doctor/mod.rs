//! `herald doctor`: checks a Laravel project against a running Herald and
//! says, one line per check, what is right and how to fix what is not.
//!
//! Static checks read the project's `.env` and what its PHP side will do
//! (`laravel`); the live checks make the round trip its clients would make
//! (`live`). The secret is used to sign, never printed. Exit 0 only when
//! every check passes.

mod app_side;
mod laravel;
mod live;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use self::laravel::{PhpSide, PusherTarget, ReverbConfig};
use crate::config::AppConfig;
use crate::config::EnvFile;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// A Laravel project's root: its .env and config/broadcasting.php are
    /// checked [default: the PUSHER_* (or REVERB_*) variables of this
    /// environment].
    #[arg(long)]
    pub laravel: Option<PathBuf>,
    /// Herald's URL [default: from PUSHER_SCHEME, PUSHER_HOST, PUSHER_PORT,
    /// or the REVERB_* ones on the reverb connection].
    #[arg(long)]
    pub url: Option<String>,
    /// PEM file of a private CA that signed Herald's certificate
    /// [default: SSL_CERT_FILE when set, else the public roots].
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The Laravel app's own URL, to call its /broadcasting/auth once
    /// [default: APP_URL of its .env].
    #[arg(long)]
    pub app_url: Option<String>,
}

/// Which of Laravel's broadcasting connections the project uses: `pusher`
/// (`PUSHER_*` variables) or, on Laravel 11+, `reverb` (`REVERB_*`), which
/// speaks the same protocol and reaches Herald the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavour {
    /// The connection's name (`BROADCAST_CONNECTION=...`).
    pub connection: &'static str,
    /// The prefix of its variables (`PUSHER` in `PUSHER_APP_KEY`).
    pub prefix: &'static str,
}

pub const PUSHER: Flavour = Flavour {
    connection: "pusher",
    prefix: "PUSHER",
};
pub const REVERB: Flavour = Flavour {
    connection: "reverb",
    prefix: "REVERB",
};

impl Flavour {
    /// The variable `{PREFIX}_{name}` (`APP_KEY` → `PUSHER_APP_KEY`).
    pub fn var(self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    /// The project's: `reverb` when its connection says so (or it has only
    /// `REVERB_*` credentials), else `pusher`.
    fn of(env: &EnvFile, php: Option<&PhpSide>) -> Flavour {
        let named = php.and_then(|p| p.default.clone()).or_else(|| {
            env.get("BROADCAST_CONNECTION")
                .or_else(|| env.get("BROADCAST_DRIVER"))
                .map(str::to_owned)
        });
        match named.as_deref() {
            Some("reverb") => REVERB,
            Some("pusher") => PUSHER,
            _ if env.get("REVERB_APP_KEY").is_some() && env.get("PUSHER_APP_KEY").is_none() => {
                REVERB
            }
            _ => PUSHER,
        }
    }
}

/// How a check came out: a warning is printed with `!` and does not fail
/// the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// One verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub verdict: Verdict,
    pub title: String,
    pub fix: Option<String>,
}

impl Check {
    fn new(ok: bool, title: String, fix: String) -> Check {
        Check {
            ok,
            verdict: if ok { Verdict::Pass } else { Verdict::Fail },
            title,
            fix: (!ok).then_some(fix),
        }
    }

    fn pass(title: String) -> Check {
        Check::new(true, title, String::new())
    }

    fn fail(title: &str, fix: String) -> Check {
        Check::new(false, title.to_owned(), fix)
    }

    /// Something to look at that does not break the setup.
    fn warn(title: String, fix: String) -> Check {
        Check {
            ok: true,
            verdict: Verdict::Warn,
            title,
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
    let flavour = Flavour::of(&env, php.as_ref());
    let mut checks = static_checks(&env, php.as_ref(), flavour);
    if let Some(root) = &args.laravel {
        checks.extend(project_checks(root, &env, flavour));
    }
    let app_url = args.app_url.clone().or_else(|| {
        args.laravel
            .as_ref()
            .and(env.get("APP_URL").map(str::to_owned))
    });
    let base = args.url.clone().or_else(|| server_url(&env, flavour));
    let app = AppConfig::new(
        env.get(&flavour.var("APP_ID")).unwrap_or_default(),
        env.get(&flavour.var("APP_KEY")).unwrap_or_default(),
        env.get(&flavour.var("APP_SECRET")).unwrap_or_default(),
    );
    let credentials = !app.id.is_empty() && !app.key.is_empty() && !app.secret.is_empty();
    match (&base, credentials) {
        (Some(base), true) => match (
            crate::trigger::base_url(base),
            crate::tls::cli_client(args.ca.as_deref(), live::STEP),
        ) {
            (Ok(base), Ok(http)) => {
                let live = actix_web::rt::System::new().block_on(async move {
                    let mut live = live::run(&http, &base, &app, flavour).await;
                    if let Some(app_url) = app_url {
                        live.push(app_side::auth_route(&http, &app_url).await);
                    }
                    live
                });
                checks.extend(live);
            }
            (Err(e), _) => checks.push(Check::fail("Herald's address is a URL", e)),
            (_, Err(e)) => checks.push(Check::fail("the CA file is readable", e)),
        },
        (None, _) => checks.push(Check::fail(
            "Herald's address is known",
            format!(
                "set {} and {} (or pass --url)",
                flavour.var("HOST"),
                flavour.var("PORT")
            ),
        )),
        (Some(_), false) => {}
    }
    for check in &checks {
        let mark = match check.verdict {
            Verdict::Pass => "✓",
            Verdict::Warn => "!",
            Verdict::Fail => "✗",
        };
        println!("{mark} {}", check.title);
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
fn server_url(env: &EnvFile, flavour: Flavour) -> Option<String> {
    let host = env.get(&flavour.var("HOST"))?;
    let scheme = env.get(&flavour.var("SCHEME")).unwrap_or("https");
    let port = env
        .get(&flavour.var("PORT"))
        .unwrap_or(if scheme == "https" { "443" } else { "80" });
    Some(format!("{scheme}://{host}:{port}"))
}

/// The checks that need no server: driver, credentials, address, what the
/// PHP side will do, the frontend's variables, and Reverb's own config.
fn static_checks(env: &EnvFile, php: Option<&PhpSide>, flavour: Flavour) -> Vec<Check> {
    let mut checks = Vec::new();

    // Which variable picks the connection: Laravel 11+ reads
    // BROADCAST_CONNECTION, Laravel 10 and older BROADCAST_DRIVER.
    // Without a project to tell, BROADCAST_CONNECTION (Laravel 11+, and
    // what Herald prints) unless only BROADCAST_DRIVER is set.
    let selector = php.and_then(|p| p.selector.clone()).unwrap_or_else(|| {
        if env.get("BROADCAST_DRIVER").is_some() && env.get("BROADCAST_CONNECTION").is_none() {
            "BROADCAST_DRIVER".into()
        } else {
            "BROADCAST_CONNECTION".into()
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
    let wanted = flavour.connection;
    let fix = match env.get(other) {
        Some(value) if value == wanted => {
            format!("this Laravel reads {selector}, not {other}: set {selector}={wanted}")
        }
        _ => format!("set {selector}={wanted} in .env"),
    };
    checks.push(Check::new(
        driver.as_deref() == Some(wanted),
        format!("{selector} is {wanted}"),
        fix,
    ));

    let credentials = ["APP_ID", "APP_KEY", "APP_SECRET"].map(|n| flavour.var(n));
    let missing: Vec<&str> = credentials
        .iter()
        .map(String::as_str)
        .filter(|name| env.get(name).is_none())
        .collect();
    checks.push(Check::new(
        missing.is_empty(),
        format!("{} are set", list(&credentials)),
        format!(
            "set {} to the values of an app of Herald",
            missing.join(", ")
        ),
    ));

    let address = ["HOST", "PORT", "SCHEME"].map(|n| flavour.var(n));
    let unset: Vec<&str> = address
        .iter()
        .map(String::as_str)
        .filter(|name| env.get(name).is_none())
        .collect();
    checks.push(Check::new(
        unset.is_empty(),
        format!("{} point at Herald", list(&address)),
        format!(
            "set {} (e.g. {}=127.0.0.1, {}=6001, {}=http)",
            unset.join(", "),
            address[0],
            address[1],
            address[2]
        ),
    ));

    if let Some(php) = php {
        checks.push(php_check(php, env, flavour));
        if let Some(reverb) = &php.reverb {
            checks.extend(reverb_checks(reverb, env));
        }
    }
    checks.push(frontend_check(env, flavour));
    checks
}

/// What the project's own files say beyond the broadcasting config: its
/// broadcast routes registered, the encryption master key usable.
fn project_checks(root: &std::path::Path, env: &EnvFile, flavour: Flavour) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(app_side::routes_registered(root));
    let broadcasting =
        std::fs::read_to_string(root.join("config").join("broadcasting.php")).unwrap_or_default();
    if let Some(option) = app_side::master_key_variable(&broadcasting) {
        checks.push(app_side::master_key(&option, env.get(&option.variable)));
    } else if flavour == PUSHER && env.get("PUSHER_ENCRYPTION_MASTER_KEY_BASE64").is_some() {
        checks.push(Check::warn(
            "PUSHER_ENCRYPTION_MASTER_KEY_BASE64 is set but not used".to_owned(),
            "config/broadcasting.php does not pass it as encryption_master_key_base64: \
             encrypted channels cannot be used until it does"
                .into(),
        ));
    }
    checks
}

/// `A, B and C`.
fn list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What `config/reverb.php` says that Herald takes from elsewhere: its
/// apps (Herald's come from the `REVERB_*` variables or its own config),
/// and `allowed_origins` (Herald's app has its own, empty by default).
fn reverb_checks(reverb: &ReverbConfig, env: &EnvFile) -> Vec<Check> {
    let mut checks = Vec::new();
    let restricted: Vec<&String> = reverb
        .allowed_origins
        .iter()
        .filter(|o| o.as_str() != "*")
        .collect();
    if !restricted.is_empty() {
        checks.push(Check::warn(
            "config/reverb.php restricts allowed_origins".to_owned(),
            format!(
                "Reverb accepted only {restricted:?}; Herald reads no config/reverb.php: give Herald's \
                 app the same allowed_origins ([[apps]] allowed_origins, or \
                 HERALD_APP__ALLOWED_ORIGINS='[...]'), or it accepts every origin"
            ),
        ));
    }
    if let Some(key) = &reverb.key {
        if env.get("REVERB_APP_KEY").is_some_and(|k| k != key) {
            checks.push(Check::fail(
                "config/reverb.php's app has REVERB_APP_KEY",
                "config/reverb.php names another key than REVERB_APP_KEY: Herald serves the app of the \
                 REVERB_* variables (or of its own config), so make them agree"
                    .into(),
            ));
        }
    }
    checks
}

/// Whether the PHP SDK will send to Herald, not to Pusher's cloud.
fn php_check(php: &PhpSide, env: &EnvFile, flavour: Flavour) -> Check {
    let host_var = flavour.var("HOST");
    let title = format!("the PHP side sends to {host_var} ({})", php.source);
    let scheme = env.get(&flavour.var("SCHEME")).unwrap_or("https");
    let target = if flavour == REVERB {
        &php.reverb_target
    } else {
        &php.target
    };
    let connection = flavour.connection;
    match target {
        PusherTarget::Resolved {
            host,
            port,
            scheme: resolved,
            use_tls,
        } => {
            // (An explicit scheme wins over useTLS in the SDK.)
            let expected = env.get(&host_var);
            let ok = host.is_some() && host.as_deref() == expected;
            let tls_clash = *use_tls == Some(true) && resolved.is_none() && port.is_none();
            Check::new(
                ok && !tls_clash,
                title,
                format!(
                    "Laravel resolves host {host:?}, port {port:?}, scheme {resolved:?}, useTLS {use_tls:?}; \
                     run php artisan config:clear if .env changed"
                ),
            )
        }
        // The stock config falls back to Pusher's cloud when the host is empty.
        PusherTarget::ReadsHost { .. } if env.get(&host_var).is_none() => Check::fail(
            &title,
            format!(
                "{host_var} is empty, so the stock config's `env('{host_var}') ?: 'api-...pusher.com'` \
                 sends every broadcast to Pusher's cloud: set {host_var} to Herald's host"
            ),
        ),
        PusherTarget::ReadsHost { use_tls_forced } => Check::new(
            !(*use_tls_forced && scheme == "http"),
            title,
            format!(
                "config/broadcasting.php sets 'useTLS' => true with no scheme or port, so the SDK \
                 speaks https on 443 while {0}=http: add 'scheme' => env('{0}', 'https') and \
                 'port' => env('{1}', 443)",
                flavour.var("SCHEME"),
                flavour.var("PORT")
            ),
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
            format!(
                "config/broadcasting.php has no {connection} connection: add the one of Laravel's stock config \
                 (php artisan install:broadcasting on Laravel 11+)"
            ),
        ),
    }
}

/// Whether the frontend build (Vite, or Mix on Laravel 8) gets the key
/// and Herald's address.
fn frontend_check(env: &EnvFile, flavour: Flavour) -> Check {
    let key_var = flavour.var("APP_KEY");
    let prefix = if env.get(&format!("VITE_{key_var}")).is_some()
        || env.get(&format!("MIX_{key_var}")).is_none()
    {
        "VITE"
    } else {
        "MIX"
    };
    let var = |name: &str| env.get(&format!("{prefix}_{name}"));
    let mut problems = Vec::new();
    match var(&key_var) {
        None => problems.push(format!("{prefix}_{key_var}=\"${{{key_var}}}\" is missing")),
        Some(key) if Some(key) != env.get(&key_var) => {
            problems.push(format!("{prefix}_{key_var} differs from {key_var}"))
        }
        Some(_) => {}
    }
    for name in ["HOST", "PORT", "SCHEME"].map(|n| flavour.var(n)) {
        let frontend = format!("{prefix}_{name}");
        if var(&name).is_some() {
            continue;
        }
        problems.push(if env.has(&frontend) {
            format!("{frontend} is empty ({name} is empty or unset): Echo gets no wsHost / wsPort / forceTLS")
        } else {
            format!("{frontend}=\"${{{name}}}\" is missing (Echo needs wsHost / wsPort / forceTLS)")
        });
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
        let checks = static_checks(&env, None, Flavour::of(&env, None));
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        assert_eq!(
            server_url(&env, PUSHER).as_deref(),
            Some("http://127.0.0.1:6001")
        );
    }

    #[test]
    fn a_laravel_10_skeleton_with_an_empty_host_is_caught_everywhere() {
        let env = EnvFile::parse(
            "BROADCAST_DRIVER=pusher\nPUSHER_APP_ID=1\nPUSHER_APP_KEY=k\nPUSHER_APP_SECRET=s\n\
             PUSHER_HOST=\nPUSHER_PORT=443\nPUSHER_SCHEME=https\n\
             VITE_PUSHER_APP_KEY=\"${PUSHER_APP_KEY}\"\nVITE_PUSHER_HOST=\"${PUSHER_HOST}\"\n\
             VITE_PUSHER_PORT=\"${PUSHER_PORT}\"\nVITE_PUSHER_SCHEME=\"${PUSHER_SCHEME}\"\n",
        );
        let php = laravel::read_config(
            "'default' => env('BROADCAST_DRIVER', 'null'), 'pusher' => [ 'options' => [\n 'host' => env('PUSHER_HOST') ?: 'api-mt1.pusher.com',\n 'scheme' => env('PUSHER_SCHEME', 'https'),\n ], ],",
        );
        let checks = static_checks(&env, Some(&php), PUSHER);
        let php_side = checks
            .iter()
            .find(|c| c.title.starts_with("the PHP side"))
            .expect("the PHP check");
        assert!(!php_side.ok && php_side.fix.as_deref().is_some_and(|f| f.contains("cloud")));
        let frontend = checks.last().expect("the frontend check");
        assert!(
            frontend
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("VITE_PUSHER_HOST is empty")),
            "{frontend:?}"
        );
        // With nothing set, the fix names what Herald prints.
        let nothing = static_checks(&EnvFile::parse(""), None, PUSHER);
        assert_eq!(nothing[0].title, "BROADCAST_CONNECTION is pusher");
    }

    #[test]
    fn a_driver_set_under_the_other_name_is_explained() {
        let env = EnvFile::parse("BROADCAST_DRIVER=pusher\n");
        let php = laravel::read_config("'default' => env('BROADCAST_CONNECTION', 'null'), 'pusher' => [ 'options' => [ 'host' => env('PUSHER_HOST'), ], ],");
        let checks = static_checks(&env, Some(&php), PUSHER);
        assert!(!checks[0].ok);
        assert!(checks[0]
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("reads BROADCAST_CONNECTION")));
    }
}
