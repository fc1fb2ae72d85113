//! `[server]`, `[metrics]` and `[console]`: the node's own settings.

use serde::{Deserialize, Serialize};

/// Settings of the node itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port for WebSocket and HTTP API alike.
    pub port: u16,
    /// Seconds of silence before the server pings a client; also what
    /// `connection_established` advertises.
    pub activity_timeout: u64,
    /// Seconds to wait for any frame after a server ping before closing 4201.
    pub pong_timeout: u64,
    /// Frames queued for one connection before it is dropped as too slow.
    pub connection_queue: usize,
    /// Largest accepted HTTP request body, in bytes.
    pub max_request_bytes: usize,
    /// Allowed clock skew of `auth_timestamp` on HTTP API requests, seconds.
    pub http_timestamp_window: u64,
    /// Seconds a request body (HTTP API, `xhr_send`) may take to arrive.
    pub request_body_timeout: u64,
    /// Take the client address for per-address limits from the last entry
    /// of `X-Forwarded-For` (set when Herald runs behind a reverse proxy).
    pub trust_forwarded_for: bool,
    /// HTTP fallback sessions one client address may hold (0 = unlimited).
    pub max_http_sessions_per_address: usize,
    /// New HTTP fallback sessions per second per client address (burst
    /// twice that; 0 = unlimited).
    pub new_http_sessions_per_second: u32,
    /// Long-polls (`wait` > 0) one client address may hold (0 = unlimited).
    pub max_long_polls_per_address: usize,
    /// WebSocket plus HTTP-fallback connections on this node (0 =
    /// unlimited); beyond, new ones are closed with 4100.
    pub max_connections: usize,
    /// Connections one client address may hold at once (0 = unlimited).
    pub max_connections_per_address: usize,
    /// New connections per second per client address, burst twice that
    /// (0 = unlimited).
    pub new_connections_per_address_per_second: u32,
    /// Share (percent) of the memory available to the process (its cgroup
    /// limit, else the machine's) beyond which new connections are refused
    /// (4100) and `/ready` answers 503; 0 turns it off. Applied again on
    /// reload.
    pub accept_traffic_memory_percent: f64,
    /// Refuse connections that send no `protocol` query parameter (4008).
    pub require_protocol_param: bool,
    /// Agree to permessage-deflate with WebSocket clients that offer it
    /// (every browser does): each broadcast is compressed once and the
    /// compressed bytes sent to every subscriber that agreed.
    pub compression: bool,
    /// Text frames smaller than this go uncompressed.
    pub compression_min_bytes: usize,
    /// Seconds given to open connections to leave on shutdown.
    pub shutdown_timeout: u64,
    /// Seconds an HTTP fallback session (xhr_streaming / xhr_polling)
    /// survives with no receive request open before it counts as gone.
    pub http_session_timeout: u64,
    /// PEM certificate chain: with `tls_key`, the port serves `wss://` and
    /// `https://` (read again on SIGHUP).
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<String>,
    /// Log level or filter (`info`, `debug`, `herald=debug,info`), applied
    /// again on reload; `HERALD_LOG` / `RUST_LOG` win over it.
    pub log_level: String,
    /// A file Herald writes its process id into once it listens (and
    /// removes when it exits), for `kill -HUP "$(cat ...)"` outside systemd.
    pub pid_file: Option<String>,
    /// Pending connections the kernel holds for the listener (0: the
    /// kernel's `net.core.somaxconn`, which also caps any value).
    pub backlog: u32,
    /// A path prefix every route is served under (`"/ws"`: `/ws/app/{key}`,
    /// `/ws/apps/{id}/events`, `/ws/up`, ...), for a reverse proxy that
    /// forwards a path as it is; empty: the root. Also `REVERB_SERVER_PATH`.
    pub path: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "0.0.0.0".into(),
            port: 6001,
            activity_timeout: 30,
            pong_timeout: 30,
            connection_queue: 1024,
            max_request_bytes: 1024 * 1024,
            http_timestamp_window: 600,
            request_body_timeout: 10,
            trust_forwarded_for: false,
            max_http_sessions_per_address: 1000,
            new_http_sessions_per_second: 50,
            max_long_polls_per_address: 100,
            max_connections: 0,
            max_connections_per_address: 10_000,
            new_connections_per_address_per_second: 200,
            accept_traffic_memory_percent: 90.0,
            require_protocol_param: false,
            compression: true,
            compression_min_bytes: 256,
            shutdown_timeout: 10,
            http_session_timeout: 10,
            tls_cert: None,
            tls_key: None,
            log_level: "info".into(),
            path: String::new(),
            backlog: 0,
            pid_file: None,
        }
    }
}

/// The live debug console at `/console`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Turns the console on; the page asks for it.
    pub token: Option<String>,
}

/// The Prometheus listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to listen on; empty: the server's own host (so
    /// `--host 127.0.0.1` keeps the metrics private too).
    pub host: String,
    /// 0 turns the listener off.
    pub port: u16,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            host: String::new(),
            port: 9601,
        }
    }
}

impl MetricsConfig {
    /// Where the listener binds, given the server's host.
    pub fn bind_host<'a>(&'a self, server_host: &'a str) -> &'a str {
        if self.host.trim().is_empty() {
            server_host
        } else {
            &self.host
        }
    }
}

/// A path prefix as Herald uses it: empty, or `/` and segments with no
/// trailing slash (`ws`, `/ws/` and `/ws` are all `/ws`).
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes_are_normalized() {
        for (given, expected) in [
            ("", ""),
            ("/", ""),
            ("ws", "/ws"),
            ("/ws/", "/ws"),
            ("/a/b", "/a/b"),
        ] {
            assert_eq!(normalize_path(given), expected, "{given:?}");
        }
    }
}
