//! What a Laravel app puts in its `.env` to reach this Herald: the block
//! printed at start, the same the README shows (a test keeps them equal),
//! shaped for the `pusher` connection or, when the app came from
//! `REVERB_*`, for Laravel 11+'s `reverb` connection. Secrets other than
//! the built-in default are never printed.

use crate::config::{AppConfig, DEFAULT_APP_SECRET};

/// The `.env` lines for `app` on `port` (`scheme` http or https).
pub fn env_block(app: &AppConfig, port: u16, scheme: &str) -> String {
    let secret = if app.secret == DEFAULT_APP_SECRET {
        DEFAULT_APP_SECRET
    } else {
        "<the secret from your Herald config>"
    };
    format!(
        "BROADCAST_CONNECTION=pusher          # BROADCAST_DRIVER=pusher on Laravel <= 10\n\
         PUSHER_APP_ID={id}\n\
         PUSHER_APP_KEY={key}\n\
         PUSHER_APP_SECRET={secret}\n\
         PUSHER_HOST=127.0.0.1\n\
         PUSHER_PORT={port}\n\
         PUSHER_SCHEME={scheme}\n\
         PUSHER_APP_CLUSTER=mt1\n\
         VITE_PUSHER_APP_KEY=\"${{PUSHER_APP_KEY}}\"\n\
         VITE_PUSHER_HOST=\"${{PUSHER_HOST}}\"\n\
         VITE_PUSHER_PORT=\"${{PUSHER_PORT}}\"\n\
         VITE_PUSHER_SCHEME=\"${{PUSHER_SCHEME}}\"\n\
         VITE_PUSHER_APP_CLUSTER=\"${{PUSHER_APP_CLUSTER}}\"\n",
        id = app.id,
        key = app.key,
    )
}

/// The `.env` lines of a Laravel 11+ app on the `reverb` connection
/// (what `php artisan install:broadcasting` writes) for `app` on `port`.
pub fn reverb_env_block(app: &AppConfig, port: u16, scheme: &str) -> String {
    let secret = if app.secret == DEFAULT_APP_SECRET {
        DEFAULT_APP_SECRET
    } else {
        "<the secret from your Herald config>"
    };
    format!(
        "BROADCAST_CONNECTION=reverb\n\
         REVERB_APP_ID={id}\n\
         REVERB_APP_KEY={key}\n\
         REVERB_APP_SECRET={secret}\n\
         REVERB_HOST=127.0.0.1\n\
         REVERB_PORT={port}\n\
         REVERB_SCHEME={scheme}\n\
         VITE_REVERB_APP_KEY=\"${{REVERB_APP_KEY}}\"\n\
         VITE_REVERB_HOST=\"${{REVERB_HOST}}\"\n\
         VITE_REVERB_PORT=\"${{REVERB_PORT}}\"\n\
         VITE_REVERB_SCHEME=\"${{REVERB_SCHEME}}\"\n",
        id = app.id,
        key = app.key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_APP_ID, DEFAULT_APP_KEY};

    #[test]
    fn the_readme_shows_what_herald_prints() {
        let readme = include_str!("../README.md");
        let after = readme
            .split("On start Herald logs the `.env` lines to use. With the defaults:")
            .nth(1)
            .expect("the README's .env paragraph");
        let block = after
            .split("```")
            .nth(1)
            .expect("the README's .env block")
            .trim_start_matches('\n');
        let app = AppConfig::new(DEFAULT_APP_ID, DEFAULT_APP_KEY, DEFAULT_APP_SECRET);
        assert_eq!(block, env_block(&app, 6001, "http"));
    }

    #[test]
    fn a_configured_secret_is_never_printed() {
        let app = AppConfig::new("1", "k", "s3cr3t");
        assert!(!env_block(&app, 6001, "https").contains("s3cr3t"));
    }

    #[test]
    fn the_reverb_block_names_reverb_and_hides_the_secret() {
        let app = AppConfig::new("1", "k", "s3cr3t");
        let block = reverb_env_block(&app, 8080, "http");
        assert!(
            block.starts_with("BROADCAST_CONNECTION=reverb\n"),
            "{block}"
        );
        assert!(block.contains("REVERB_APP_KEY=k\n") && block.contains("REVERB_PORT=8080\n"));
        assert!(!block.contains("s3cr3t"));
    }
}
