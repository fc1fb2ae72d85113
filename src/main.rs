//! The `herald` command: run the server (the default), or `herald trigger`
//! to publish one event through a running server's HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use herald::config::{Config, ProcessEnv};

/// A self-hosted, Pusher-protocol-compatible broadcast server.
#[derive(Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (what `herald` with no command does).
    Serve(ServeArgs),
    /// Publish one event through a running Herald's HTTP API.
    Trigger(herald::trigger::TriggerArgs),
    /// Check a Laravel project (or the PUSHER_* environment) against a
    /// running Herald.
    Doctor(herald::doctor::DoctorArgs),
    /// Ask a running Herald's /up (exit 0 on 200): for container health
    /// checks.
    Health(herald::health::HealthArgs),
    /// Manage the apps of a running Herald's app store (its admin API), or
    /// create its table (`migrate`).
    Apps(herald::admin::cli::AppsArgs),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Config file (TOML); see config.toml.example.
    #[arg(long, short = 'c', env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// A dotenv file (a Laravel app's `.env`) read as if its variables
    /// were in the environment; the real environment wins over it.
    #[arg(long, env = "HERALD_ENV_FILE")]
    env_file: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0, or HERALD_HOST].
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on [default: 6001, or HERALD_PORT].
    #[arg(long)]
    port: Option<u16>,
}

/// Exit code for configuration errors.
const CONFIG_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Trigger(args)) => match init_tracing("info") {
            Ok(_) => herald::trigger::run(args),
            Err(e) => config_error(&e),
        },
        Some(Command::Doctor(args)) => herald::doctor::run(args),
        Some(Command::Health(args)) => herald::health::run(args),
        Some(Command::Apps(args)) => herald::admin::cli::run(args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn config_error(message: &str) -> ExitCode {
    eprintln!("herald: {message}");
    ExitCode::from(CONFIG_ERROR)
}

fn serve(args: ServeArgs) -> ExitCode {
    if let Some(path) = &args.env_file {
        if let Err(e) = load_env_file(path) {
            return config_error(&e);
        }
    }
    let mut config = match Config::load(args.config.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return config_error(&e.to_string()),
    };
    if let Some(host) = &args.host {
        config.server.host = host.clone();
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    let log_level = match init_tracing(&config.server.log_level) {
        Ok(handle) => handle,
        Err(e) => return config_error(&e),
    };
    let reload = herald::reload::Reload {
        path: args.config,
        log_level,
        host: args.host,
        port: args.port,
    };
    let result = actix_web::rt::System::new().block_on(herald::server::run(config, reload));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(herald::server::Failure::Config(e)) => config_error(&e),
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Puts the variables of a dotenv file into the process environment, below
/// the real environment (a variable that is already set keeps its value,
/// as Laravel does). Runs first thing in `main`, while the process has one
/// thread: setting variables is only sound then, and everything after it
/// (the config, reload, the log filter) reads one environment.
fn load_env_file(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --env-file {}: {e}", path.display()))?;
    let file = herald::config::EnvFile::parse_with(&text, &|name| std::env::var(name).ok());
    for (name, value) in file.vars() {
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if valid_name && !value.contains('\0') && std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

/// `level`, with redis-rs's own messages limited to errors unless `level`
/// names them: while a Redis Cluster node is away, redis-rs warns of every
/// reconnect attempt, many a second, and Herald says what matters itself.
fn quiet_redis(level: &str) -> String {
    if level.contains("redis") {
        level.to_owned()
    } else {
        format!("{level},redis=error")
    }
}

/// Logs to stderr at `level` (the config's `log_level`), unless
/// `HERALD_LOG` (or `RUST_LOG`) says otherwise; `HERALD_LOG_FORMAT=json`
/// writes one JSON object per line instead of text. Returns what changes
/// the level later (reload), or `None` while the environment decides it.
fn init_tracing(level: &str) -> Result<Option<herald::reload::SetLogLevel>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter, Layer};

    let from_env = EnvFilter::try_from_env("HERALD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .ok();
    let fixed = from_env.is_some();
    let filter = match from_env {
        Some(filter) => filter,
        None => EnvFilter::try_new(quiet_redis(level))
            .map_err(|e| format!("invalid log level {level:?}: {e}"))?,
    };
    let json = match std::env::var("HERALD_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Ok("") | Err(_) => false,
        Ok(other) => {
            return Err(format!(
                "invalid value for HERALD_LOG_FORMAT: {other:?} (text or json)"
            ))
        }
    };
    // A closed stderr (e.g. a parent that went away) must not turn a log
    // line into a panic, least of all during shutdown.
    let output = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
            .boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .log_internal_errors(false)
            .boxed()
    };
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .with(herald::metrics::AcceptStalls)
        .init();
    if fixed {
        return Ok(None);
    }
    Ok(Some(Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(quiet_redis(level)).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })))
}
