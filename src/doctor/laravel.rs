//! What a Laravel project's PHP side will do with its broadcasting config:
//! resolved by Laravel itself when `php` and `artisan` are there, otherwise
//! read from `config/broadcasting.php` (or Laravel 11+'s built-in default
//! when the project has none).

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// How the pusher connection reaches its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PusherTarget {
    /// Laravel resolved the config: where the SDK will really send.
    Resolved {
        host: Option<String>,
        port: Option<String>,
        scheme: Option<String>,
        use_tls: Option<bool>,
    },
    /// The config's pusher options read `PUSHER_HOST` (Laravel 9+ stock
    /// config, or Laravel 11+'s built-in default).
    ReadsHost { use_tls_forced: bool },
    /// The config has no `host` option: the SDK goes to Pusher's cloud
    /// (Laravel 8's stock config).
    Cloud,
    /// No pusher connection in the config.
    Missing,
}

/// The PHP side, as far as the doctor can tell.
#[derive(Debug, Clone)]
pub struct PhpSide {
    /// Where the answer comes from, for the report.
    pub source: String,
    /// The variable that selects the default connection
    /// (`BROADCAST_CONNECTION` or `BROADCAST_DRIVER`), when known.
    pub selector: Option<String>,
    /// The default connection as Laravel resolved it.
    pub default: Option<String>,
    pub target: PusherTarget,
}

/// Looks at the project in `root`.
pub fn inspect(root: &Path) -> PhpSide {
    if let Some(resolved) = resolve_with_php(root) {
        return resolved;
    }
    let path = root.join("config").join("broadcasting.php");
    match std::fs::read_to_string(&path) {
        Ok(text) => read_config(&text),
        // Laravel 11+ keeps the default config in the framework; it reads
        // PUSHER_HOST / PUSHER_PORT / PUSHER_SCHEME.
        Err(_) => PhpSide {
            source: "Laravel's built-in broadcasting config (no config/broadcasting.php)".into(),
            selector: Some("BROADCAST_CONNECTION".into()),
            default: None,
            target: PusherTarget::ReadsHost {
                use_tls_forced: false,
            },
        },
    }
}

/// Reads `config/broadcasting.php` without running PHP.
pub fn read_config(text: &str) -> PhpSide {
    let selector = ["BROADCAST_CONNECTION", "BROADCAST_DRIVER"]
        .into_iter()
        .find(|var| {
            text.contains(&format!("env('{var}'")) || text.contains(&format!("env(\"{var}\""))
        })
        .map(str::to_owned);
    let target = match pusher_block(text) {
        None => PusherTarget::Missing,
        Some(block) if has_key(block, "host") => PusherTarget::ReadsHost {
            use_tls_forced: block
                .split(['\n', ','])
                .any(|l| l.contains("'useTLS'") && l.contains("=> true")),
        },
        Some(_) => PusherTarget::Cloud,
    };
    PhpSide {
        source: "config/broadcasting.php (read without PHP)".into(),
        selector,
        default: None,
        target,
    }
}

/// The text of `'pusher' => [ ... ]` (brackets matched).
fn pusher_block(text: &str) -> Option<&str> {
    let start = ["'pusher' => [", "\"pusher\" => ["]
        .iter()
        .find_map(|pattern| text.find(pattern).map(|at| at + pattern.len()))?;
    let mut depth = 1;
    for (offset, c) in text[start..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&text[start..start + offset]);
                }
            }
            _ => {}
        }
    }
    None
}

fn has_key(block: &str, key: &str) -> bool {
    block
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default().trim())
        .any(|l| l.starts_with(&format!("'{key}'")) || l.starts_with(&format!("\"{key}\"")))
}

#[derive(Deserialize)]
struct Resolved {
    default: Option<String>,
    pusher: Option<ResolvedPusher>,
}

#[derive(Deserialize)]
struct ResolvedPusher {
    #[serde(default)]
    options: serde_json::Map<String, serde_json::Value>,
}

/// Asks Laravel itself, when `php` and `artisan` are there.
fn resolve_with_php(root: &Path) -> Option<PhpSide> {
    if !root.join("artisan").exists() || !root.join("vendor").join("autoload.php").exists() {
        return None;
    }
    let script = "require 'vendor/autoload.php'; $app = require 'bootstrap/app.php'; \
        $app->make(Illuminate\\Contracts\\Console\\Kernel::class)->bootstrap(); \
        echo json_encode(['default' => config('broadcasting.default'), \
        'pusher' => config('broadcasting.connections.pusher')]);";
    let output = Command::new("php")
        .arg("-r")
        .arg(script)
        .current_dir(root)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let resolved: Resolved = serde_json::from_slice(&output.stdout).ok()?;
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let target = match resolved.pusher {
        Some(pusher) => PusherTarget::Resolved {
            host: text(pusher.options.get("host")),
            port: text(pusher.options.get("port")),
            scheme: text(pusher.options.get("scheme")),
            use_tls: pusher.options.get("useTLS").and_then(|v| v.as_bool()),
        },
        None => PusherTarget::Missing,
    };
    Some(PhpSide {
        source: "Laravel's resolved config (php artisan)".into(),
        selector: None,
        default: resolved.default,
        target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LARAVEL_8: &str = "<?php return ['default' => env('BROADCAST_DRIVER', 'null'), 'connections' => [\n\
        'pusher' => [\n 'driver' => 'pusher',\n 'options' => [\n 'cluster' => env('PUSHER_APP_CLUSTER'),\n 'useTLS' => true,\n ],\n ],\n 'redis' => [],\n]];";
    const LARAVEL_10: &str = "<?php return ['default' => env('BROADCAST_DRIVER', 'null'), 'connections' => [\n\
        'pusher' => [\n 'driver' => 'pusher',\n 'options' => [\n 'cluster' => env('PUSHER_APP_CLUSTER'),\n\
         'host' => env('PUSHER_HOST') ?: 'api-'.env('PUSHER_APP_CLUSTER', 'mt1').'.pusher.com',\n\
         'port' => env('PUSHER_PORT', 443),\n 'useTLS' => env('PUSHER_SCHEME', 'https') === 'https',\n ],\n ],\n]];";

    #[test]
    fn laravel_8_goes_to_the_cloud_and_10_reads_the_host() {
        let eight = read_config(LARAVEL_8);
        assert_eq!(eight.target, PusherTarget::Cloud);
        assert_eq!(eight.selector.as_deref(), Some("BROADCAST_DRIVER"));
        let ten = read_config(LARAVEL_10);
        assert_eq!(
            ten.target,
            PusherTarget::ReadsHost {
                use_tls_forced: false
            }
        );
        assert_eq!(
            read_config("<?php return [];").target,
            PusherTarget::Missing
        );
    }
}
