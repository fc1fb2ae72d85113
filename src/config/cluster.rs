//! `[cluster]`: how a node shares state with others (one Redis, a Redis
//! master under Sentinel, or a Redis Cluster).

use serde::{Deserialize, Serialize};

/// Which adapter connects the node to others.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClusterDriver {
    /// One node, all state in memory.
    #[default]
    Local,
    /// Several nodes sharing one Redis.
    Redis,
}

/// Cluster mode settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub driver: ClusterDriver,
    /// Redis URL, e.g. `redis://127.0.0.1:6379/0`; a master watched by
    /// Sentinels: `redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster`;
    /// or the nodes of a Redis Cluster:
    /// `redis+cluster://10.0.0.1:7000,10.0.0.2:7000`. `rediss://`,
    /// `rediss+sentinel://` and `rediss+cluster://` connect over TLS.
    pub url: String,
    /// The Sentinels' own password (`requirepass` in sentinel.conf), for a
    /// `redis+sentinel://` URL; the URL's credentials are the master's.
    pub sentinel_password: Option<String>,
    /// PEM file of the certificate authorities that sign Redis's TLS
    /// certificate (`rediss://`); unset: the system's trusted roots.
    pub tls_ca: Option<String>,
    /// Prefix of every Redis key and pub/sub channel Herald uses.
    pub prefix: String,
    /// Seconds without a heartbeat after which a node is presumed dead and
    /// its members and counts are removed by the survivors.
    pub node_timeout: u64,
    /// Seconds between heartbeats (and dead-node checks).
    pub heartbeat_interval: u64,
    /// Threads that send what other nodes publish (0: the relay task sends
    /// itself). Default: one per core beyond two, at most eight; on two
    /// cores the hand-off costs more than it spreads.
    pub fanout_threads: usize,
    /// Milliseconds a node keeps hearing a channel after its last local
    /// subscriber or long-poll left (so clients that come back cost Redis
    /// nothing).
    pub interest_linger_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            driver: ClusterDriver::Local,
            url: "redis://127.0.0.1:6379".into(),
            sentinel_password: None,
            tls_ca: None,
            prefix: "herald".into(),
            node_timeout: 30,
            heartbeat_interval: 1,
            fanout_threads: std::thread::available_parallelism()
                .map_or(1, usize::from)
                .saturating_sub(2)
                .min(8),
            interest_linger_ms: 15_000,
        }
    }
}
