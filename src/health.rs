//! `herald health`: asks a running Herald's `GET /up` (or `/ready`) and
//! exits 0 when it answers 200. Made for container health checks: the
//! image has no curl or wget, and `/bin/sh` there is dash (no `/dev/tcp`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Herald's base URL [default: http://127.0.0.1:$HERALD_PORT, or port 6001].
    #[arg(long)]
    pub url: Option<String>,
    /// The endpoint to ask.
    #[arg(long, default_value = "/up")]
    pub path: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

/// Runs the command: exit 0 on 200, 1 otherwise (2 for a bad argument).
pub fn run(args: HealthArgs) -> ExitCode {
    let base = args.url.clone().unwrap_or_else(|| {
        let port = std::env::var("HERALD_PORT")
            .ok()
            .filter(|p| p.parse::<u16>().is_ok())
            .unwrap_or_else(|| "6001".to_owned());
        format!("http://127.0.0.1:{port}")
    });
    let base = match crate::trigger::base_url(&base) {
        Ok(base) => base,
        Err(e) => {
            eprintln!("herald health: --url {e}");
            return ExitCode::from(2);
        }
    };
    let url = format!("{base}/{}", args.path.trim_start_matches('/'));
    let timeout = Duration::from_secs(args.timeout.max(1));
    let answer = actix_web::rt::System::new().block_on(async move {
        let client = crate::tls::cli_client(None, timeout)?;
        let mut response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| crate::trigger::request_failed(&url, &e.to_string()))?;
        let body = response.body().limit(4096).await.unwrap_or_default();
        Ok::<_, String>((
            response.status(),
            String::from_utf8_lossy(&body).into_owned(),
        ))
    });
    match answer {
        Ok((status, body)) if status.is_success() => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("herald health: {status}: {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("herald health: {e}");
            ExitCode::FAILURE
        }
    }
}
