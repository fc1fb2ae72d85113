//! What a Laravel project's PHP side will do with its broadcasting config:
//! resolved by Laravel itself when `php` and `artisan` are there, otherwise
//! read from `config/broadcasting.php` (or Laravel 11+'s built-in default
//! when the project has none); for the `reverb` connection also what
//! `config/reverb.php` says (its app and `allowed_origins`).

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
    /// config, or Laravel 11+'s built-in default); `use_tls_forced`: they
    /// say `useTLS => true` with neither a scheme nor a port, which makes
    /// the SDK speak https on 443.
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
    /// Where the `pusher` connection sends.
    pub target: PusherTarget,
    /// Where the `reverb` connection sends (it is the same SDK).
    pub reverb_target: PusherTarget,
    /// `config/reverb.php`, when the project has one.
    pub reverb: Option<ReverbConfig>,
}

/// What `config/reverb.php` says of its (first) app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReverbConfig {
    /// The app's key, when Laravel resolved it.
    pub key: Option<String>,
    pub allowed_origins: Vec<String>,
}

/// Looks at the project in `root`.
pub fn inspect(root: &Path) -> PhpSide {
    if let Some(resolved) = resolve_with_php(root) {
        return resolved;
    }
    let path = root.join("config").join("broadcasting.php");
    let reverb = std::fs::read_to_string(root.join("config").join("reverb.php"))
        .ok()
        .map(|text| read_reverb_config(&text));
    match std::fs::read_to_string(&path) {
        Ok(text) => PhpSide {
            reverb,
            ..read_config(&text)
        },
        // Laravel 11+ keeps the default config in the framework; it reads
        // PUSHER_HOST / PUSHER_PORT / PUSHER_SCHEME, and REVERB_* for reverb.
        Err(_) => PhpSide {
            source: "Laravel's built-in broadcasting config (no config/broadcasting.php)".into(),
            selector: Some("BROADCAST_CONNECTION".into()),
            default: None,
            target: PusherTarget::ReadsHost {
                use_tls_forced: false,
            },
            reverb_target: PusherTarget::ReadsHost {
                use_tls_forced: false,
            },
            reverb,
        },
    }
}

/// Reads `config/reverb.php` without running PHP: the origins of
/// `allowed_origins` (the first app's).
pub fn read_reverb_config(text: &str) -> ReverbConfig {
    let origins = text
        .find("'allowed_origins'")
        .or_else(|| text.find("\"allowed_origins\""))
        .and_then(|at| {
            let rest = &text[at..];
            let open = rest.find('[')?;
            let close = rest[open..].find(']')? + open;
            Some(&rest[open + 1..close])
        })
        .map(|list| {
            list.split(',')
                .map(|item| item.trim().trim_matches(['\'', '"']).to_owned())
                .filter(|item| !item.is_empty())
                .collect()
        })
        .unwrap_or_default();
    ReverbConfig {
        key: None,
        allowed_origins: origins,
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
    let target_of = |name: &str| match connection_block(text, name) {
        None => PusherTarget::Missing,
        // The SDK (7.x) turns `useTLS => true` into https:443 only when the
        // options name neither a scheme nor a port: an explicit scheme wins.
        Some(block) if has_key(block, "host") => PusherTarget::ReadsHost {
            use_tls_forced: block
                .split(['\n', ','])
                .any(|l| l.contains("'useTLS'") && l.contains("=> true"))
                && !has_key(block, "scheme")
                && !has_key(block, "port"),
        },
        Some(_) => PusherTarget::Cloud,
    };
    PhpSide {
        source: "config/broadcasting.php (read without PHP)".into(),
        selector,
        default: None,
        target: target_of("pusher"),
        reverb_target: target_of("reverb"),
        reverb: None,
    }
}

/// The text of `'{name}' => [ ... ]` (brackets matched).
fn connection_block<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = [format!("'{name}' => ["), format!("\"{name}\" => [")]
        .iter()
        .find_map(|pattern| text.find(pattern.as_str()).map(|at| at + pattern.len()))?;
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
    reverb: Option<ResolvedPusher>,
    /// `config('reverb.apps.apps.0')`, when the project has Reverb.
    reverb_app: Option<ResolvedReverbApp>,
}

#[derive(Deserialize)]
struct ResolvedReverbApp {
    key: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
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
        'pusher' => config('broadcasting.connections.pusher'), \
        'reverb' => config('broadcasting.connections.reverb'), \
        'reverb_app' => config('reverb.apps.apps.0')]);";
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
    let target = |connection: Option<&ResolvedPusher>| match connection {
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
        target: target(resolved.pusher.as_ref()),
        reverb_target: target(resolved.reverb.as_ref()),
        reverb: resolved.reverb_app.map(|app| ReverbConfig {
            key: app.key,
            allowed_origins: app.allowed_origins,
        }),
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

    #[test]
    fn laravel_11s_reverb_config_is_read() {
        let broadcasting = "<?php return ['default' => env('BROADCAST_CONNECTION', 'null'), 'connections' => [\n\
            'reverb' => [\n 'driver' => 'reverb',\n 'options' => [\n 'host' => env('REVERB_HOST'),\n\
             'port' => env('REVERB_PORT', 443),\n 'scheme' => env('REVERB_SCHEME', 'https'),\n\
             'useTLS' => env('REVERB_SCHEME', 'https') === 'https',\n ],\n ],\n]];";
        let side = read_config(broadcasting);
        assert_eq!(side.target, PusherTarget::Missing);
        assert_eq!(
            side.reverb_target,
            PusherTarget::ReadsHost {
                use_tls_forced: false
            }
        );
        let reverb = read_reverb_config(
            "'apps' => ['apps' => [['key' => env('REVERB_APP_KEY'),\n\
             'allowed_origins' => ['https://shop.example.com', \"https://admin.example.com\"],\n]]],",
        );
        assert_eq!(
            reverb.allowed_origins,
            ["https://shop.example.com", "https://admin.example.com"]
        );
        assert_eq!(
            read_reverb_config("'allowed_origins' => ['*'],").allowed_origins,
            ["*"]
        );
    }
}
