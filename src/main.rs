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
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Config file (TOML); see config.toml.example.
    #[arg(long, short = 'c', env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
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
    if let Err(e) = init_tracing() {
        eprintln!("herald: {e}");
        return ExitCode::from(CONFIG_ERROR);
    }
    match cli.command {
        Some(Command::Trigger(args)) => herald::trigger::run(args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    if let Some(host) = args.host {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    let result = actix_web::rt::System::new().block_on(herald::server::run(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `HERALD_LOG` (or `RUST_LOG`) sets the level, and
/// `HERALD_LOG_FORMAT=json` writes one JSON object per line instead of
/// text.
fn init_tracing() -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match std::env::var("HERALD_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") | Ok("") | Err(_) => false,
        Ok(other) => {
            return Err(format!(
                "invalid value for HERALD_LOG_FORMAT: {other:?} (text or json)"
            ))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr (e.g. a parent that went away) must not turn a
        // log line into a panic, least of all during shutdown.
        .log_internal_errors(false);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    Ok(())
}
