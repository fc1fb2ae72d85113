//! Where the cluster's Redis is, and how a node talks to it: one Redis
//! server (`redis://`), a master watched by Sentinels (`redis+sentinel://`,
//! see `sentinel`) or a Redis Cluster (`redis+cluster://`), over TLS with
//! `rediss`, behind one connection type so that the rest of the adapter
//! does not care which.
//!
//! On a Redis Cluster:
//! * every key a script or a multi-key command touches shares one hash tag
//!   (see `keys`), so it runs on one shard;
//! * relay topics are sharded pub/sub channels (`SPUBLISH`/`SSUBSCRIBE`),
//!   so the relay load spreads over the shards with the channels;
//! * fire-and-forget writes are grouped per slot ([`Batch`]) and the
//!   groups sent side by side, each keeping its own order (a channel's
//!   publications, history and cache share a slot).
//!
//! redis-rs's cluster connection follows MOVED/ASK redirections for
//! commands and subscribes the sharded topics again on a node it
//! reconnects to; `relay` and `interest` handle what it does not: Redis
//! dropping the topics of a slot that moved away, and a master gone for
//! good (its replica took over), which the subscriber connection only
//! learns of by sending a command there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Script, Value};
use tokio::sync::watch;

use super::sentinel::{is_sentinel_url, Sentinel, SentinelConnection};

/// The URL schemes of a Redis Cluster, `redis+cluster://host:port,host:port`
/// (any reachable nodes; the rest of the topology is discovered), and the
/// same over TLS.
const CLUSTER_SCHEMES: [(&str, &str); 2] = [
    ("redis+cluster://", "redis://"),
    ("rediss+cluster://", "rediss://"),
];

/// Where Redis is.
#[derive(Clone)]
pub enum Target {
    Single(redis::Client),
    /// A master and its replicas, found through their Sentinels.
    Sentinel(Arc<Sentinel>),
    /// The seed nodes of a Redis Cluster, and the authorities that sign
    /// its TLS certificates (if not the system's).
    Cluster {
        seeds: Vec<redis::ConnectionInfo>,
        tls_ca: Option<Vec<u8>>,
    },
}

/// A TLS trust store of `ca` (PEM) instead of the system's roots.
fn trusting(ca: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

/// Relay frames are small and latency-bound: no Nagle delay.
fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

impl Target {
    /// Reads `cluster.url`; `tls_ca` is the PEM of `cluster.tls_ca`,
    /// `sentinel_password` is `cluster.sentinel_password`.
    pub fn parse(
        url: &str,
        tls_ca: Option<Vec<u8>>,
        sentinel_password: Option<&str>,
    ) -> Result<Target, String> {
        let invalid = |e: &dyn std::fmt::Display| format!("invalid cluster.url: {e}");
        if is_sentinel_url(url) {
            return Sentinel::parse(url, sentinel_password, tls_ca)
                .map(|sentinel| Target::Sentinel(Arc::new(sentinel)));
        }
        let cluster = CLUSTER_SCHEMES
            .iter()
            .find_map(|(scheme, node)| url.strip_prefix(scheme).map(|rest| (rest, node)));
        let Some((rest, node_scheme)) = cluster else {
            let info = url
                .into_connection_info()
                .map_err(|e| invalid(&e))?
                .set_tcp_settings(tcp());
            return match &tls_ca {
                Some(ca) => redis::Client::build_with_tls(info, trusting(ca))
                    .map_err(|e| format!("invalid cluster.url or cluster.tls_ca: {e}")),
                None => redis::Client::open(info).map_err(|e| invalid(&e)),
            }
            .map(Target::Single);
        };
        // Credentials (which may hold '@' or ',') end at the last '@'.
        let (credentials, hosts) = match rest.rsplit_once('@') {
            Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        if hosts.contains('/') || hosts.contains('?') {
            return Err(invalid(
                &"a Redis Cluster URL names nodes only (a cluster has no database number)",
            ));
        }
        let seeds = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(|host| {
                format!("{node_scheme}{credentials}{host}")
                    .into_connection_info()
                    .map(|info| info.set_tcp_settings(tcp()))
                    .map_err(|e| invalid(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if seeds.is_empty() {
            return Err(invalid(&"no Redis Cluster node named"));
        }
        Ok(Target::Cluster { seeds, tls_ca })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// The Sentinels, when Redis runs under them.
    pub fn sentinel(&self) -> Option<&Arc<Sentinel>> {
        match self {
            Target::Sentinel(sentinel) => Some(sentinel),
            _ => None,
        }
    }

    /// What tells a connection that the master moved (never, but under
    /// Sentinel).
    pub fn switch_watch(&self) -> SwitchWatch {
        SwitchWatch(self.sentinel().map(|sentinel| sentinel.switches()))
    }

    fn cluster_client(
        seeds: &[redis::ConnectionInfo],
        tls_ca: &Option<Vec<u8>>,
        response_timeout: Duration,
    ) -> ClusterClientBuilder {
        let builder = ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(response_timeout)
            .retries(2)
            .tcp_settings(tcp());
        match tls_ca {
            Some(ca) => builder.certs(trusting(ca)),
            None => builder,
        }
    }

    /// A connection for commands, made on first use (a node starts while
    /// Redis is down) and remade after failures. A command waits at most
    /// `response_timeout` for its answer.
    pub fn connect(&self, response_timeout: Duration) -> Result<Redis, String> {
        match self {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(Redis::Single)
                    .map_err(|e| format!("cannot set up the Redis connection: {e}"))
            }
            Target::Sentinel(sentinel) => Ok(Redis::Sentinel(SentinelConnection::new(
                sentinel.clone(),
                response_timeout,
            ))),
            Target::Cluster { seeds, tls_ca } => {
                let client = Target::cluster_client(seeds, tls_ca, response_timeout)
                    .build()
                    .map_err(|e| format!("cannot set up the Redis Cluster connection: {e}"))?;
                Ok(Redis::Cluster(LazyCluster(Arc::new(ClusterState {
                    client,
                    connection: tokio::sync::OnceCell::new(),
                }))))
            }
        }
    }

    /// A RESP3 connection whose pub/sub messages (and, on a cluster, the
    /// topology's disconnections) go to `pushes`.
    pub async fn subscriber(&self, pushes: impl AsyncPushSender) -> RedisResult<Subscriber> {
        match self {
            Target::Single(client) => {
                let info = client.get_connection_info().clone();
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(redis::ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(settings))?;
                let config = redis::AsyncConnectionConfig::new().set_push_sender(pushes);
                let connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Subscriber::Single(connection))
            }
            Target::Sentinel(sentinel) => {
                let config = redis::AsyncConnectionConfig::new().set_push_sender(pushes);
                Ok(Subscriber::Single(sentinel.subscriber(config).await?))
            }
            Target::Cluster { seeds, tls_ca } => {
                let client = Target::cluster_client(seeds, tls_ca, Duration::from_secs(2))
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(pushes)
                    .build()?;
                Ok(Subscriber::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

/// Tells a connection made before a master switch that it is to a master
/// no longer (only ever under Sentinel).
pub struct SwitchWatch(Option<watch::Receiver<u64>>);

impl SwitchWatch {
    /// Marks the switches so far as seen.
    pub fn seen(&mut self) {
        if let Some(switches) = &mut self.0 {
            switches.mark_unchanged();
        }
    }

    /// Returns at the next switch; never without Sentinels.
    pub async fn next(&mut self) {
        match &mut self.0 {
            Some(switches) => {
                if switches.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// A cluster connection made on first use.
#[derive(Clone)]
pub struct LazyCluster(Arc<ClusterState>);

struct ClusterState {
    client: ClusterClient,
    connection: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        self.0
            .connection
            .get_or_try_init(|| async {
                match tokio::time::timeout(
                    Duration::from_secs(4),
                    self.0.client.get_async_connection(),
                )
                .await
                {
                    Ok(connection) => connection,
                    Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no Redis Cluster node answered",
                    ))),
                }
            })
            .await
            .cloned()
    }
}

/// A command connection to a Redis server or a Redis Cluster; cheap to
/// clone (clones share the connection).
#[derive(Clone)]
pub enum Redis {
    Single(ConnectionManager),
    Sentinel(SentinelConnection),
    Cluster(LazyCluster),
}

impl Redis {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Single(connection) => connection.req_packed_command(cmd),
            Redis::Sentinel(connection) => connection.req_packed_command(cmd),
            Redis::Cluster(cluster) => Box::pin(async move {
                let mut connection = cluster.get().await?;
                connection.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Redis::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Redis::Sentinel(connection) => connection.req_packed_commands(pipeline, offset, count),
            Redis::Cluster(cluster) => Box::pin(async move {
                let mut connection = cluster.get().await?;
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Single(connection) => connection.get_db(),
            Redis::Sentinel(connection) => connection.get_db(),
            Redis::Cluster(_) => 0,
        }
    }
}

/// The command that publishes to a relay topic: sharded on a cluster.
pub fn publish_command(cluster: bool) -> &'static str {
    if cluster {
        "SPUBLISH"
    } else {
        "PUBLISH"
    }
}

/// Writes whose answers nobody reads, sent as one pipeline to one Redis,
/// or as one pipeline per slot to a cluster (in the order they were added
/// within each slot).
pub struct Batch {
    cluster: bool,
    /// A script every group loads first (its calls in the batch use
    /// EVALSHA, which a pipeline cannot retry with the script's body).
    script: Option<Script>,
    groups: Vec<Pipeline>,
    by_slot: HashMap<Slot, usize>,
}

impl Batch {
    pub fn new(redis: &Redis) -> Batch {
        Batch {
            cluster: redis.is_cluster(),
            script: None,
            groups: Vec::new(),
            by_slot: HashMap::new(),
        }
    }

    /// Loads `script` before anything else in each pipeline.
    pub fn loading(mut self, script: &Script) -> Batch {
        self.script = Some(script.clone());
        self
    }

    /// The pipeline for commands on `key` (every key of a command shares
    /// its slot).
    pub fn on(&mut self, key: &str) -> &mut Pipeline {
        // One Redis: one pipeline, whatever the key (no slot to compute).
        let slot = self.cluster.then(|| Slot::for_key(key));
        let existing = match slot {
            None => (!self.groups.is_empty()).then_some(0),
            Some(slot) => self.by_slot.get(&slot).copied(),
        };
        let index = existing.unwrap_or_else(|| {
            let mut pipe = redis::pipe();
            if let Some(script) = &self.script {
                pipe.load_script(script).ignore();
            }
            self.groups.push(pipe);
            if let Some(slot) = slot {
                self.by_slot.insert(slot, self.groups.len() - 1);
            }
            self.groups.len() - 1
        });
        &mut self.groups[index]
    }

    /// Publishes `payload` to a relay topic.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) {
        let command = publish_command(self.cluster);
        self.on(topic).cmd(command).arg(topic).arg(payload).ignore();
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Sends every group, side by side; the first error, if any.
    pub async fn send(self, redis: &Redis) -> RedisResult<()> {
        let sent = join_all(self.groups.iter().map(|pipe| {
            let mut redis = redis.clone();
            async move { pipe.query_async::<()>(&mut redis).await }
        }))
        .await;
        sent.into_iter().collect()
    }
}

/// The connection a node hears the cluster on (see `relay`).
#[derive(Clone)]
pub enum Subscriber {
    Single(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Subscriber {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Subscriber::Cluster(_))
    }

    /// Subscribes `topics`; returns once Redis confirmed them all.
    pub async fn subscribe(&mut self, topics: &[String]) -> RedisResult<()> {
        match self {
            Subscriber::Single(connection) => connection.subscribe(topics).await,
            Subscriber::Cluster(connection) => {
                // One SSUBSCRIBE per slot: its channels must share one.
                let groups = by_slot(topics);
                let done = join_all(groups.into_iter().map(|group| {
                    let mut connection = connection.clone();
                    async move { connection.ssubscribe(group).await }
                }))
                .await;
                done.into_iter().collect()
            }
        }
    }

    pub async fn unsubscribe(&mut self, topics: &[String]) -> RedisResult<()> {
        match self {
            Subscriber::Single(connection) => connection.unsubscribe(topics).await,
            Subscriber::Cluster(connection) => {
                for group in by_slot(topics) {
                    connection.sunsubscribe(group).await?;
                }
                Ok(())
            }
        }
    }
}

/// `topics` grouped by their slot.
fn by_slot(topics: &[String]) -> Vec<Vec<&String>> {
    let mut groups: HashMap<Slot, Vec<&String>> = HashMap::new();
    for topic in topics {
        groups.entry(Slot::for_key(topic)).or_default().push(topic);
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_its_seed_nodes() {
        let Ok(Target::Cluster { seeds, .. }) = Target::parse(
            "redis+cluster://user:p@ss,w@10.0.0.1:7000,10.0.0.2:7001/",
            None,
            None,
        ) else {
            panic!("a cluster");
        };
        assert_eq!(seeds.len(), 2);
        assert_eq!(seeds[1].addr().to_string(), "10.0.0.2:7001");
        assert_eq!(seeds[0].redis_settings().password(), Some("p@ss,w"));
        assert!(
            Target::parse("redis+cluster://h:1/0", None, None).is_err(),
            "no db"
        );
        assert!(Target::parse("redis+cluster://", None, None).is_err());
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/0", None, None),
            Ok(Target::Single(_))
        ));
        let Ok(Target::Cluster { seeds, .. }) =
            Target::parse("rediss+cluster://h:1,h:2", None, None)
        else {
            panic!("a cluster over TLS");
        };
        assert!(seeds
            .iter()
            .all(|seed| matches!(seed.addr(), redis::ConnectionAddr::TcpTls { .. })));
    }

    #[tokio::test]
    async fn a_batch_groups_by_slot_only_on_a_cluster() {
        let single = Target::parse("redis://127.0.0.1:1", None, None)
            .and_then(|t| t.connect(Duration::from_secs(1)));
        let Ok(single) = single else { panic!("lazy") };
        let mut batch = Batch::new(&single);
        batch.publish("{a}:x", b"1");
        batch.publish("{b}:x", b"2");
        assert_eq!(batch.groups.len(), 1);
        assert_eq!(batch.groups[0].len(), 2);
        let mut batch = Batch {
            cluster: true,
            ..Batch::new(&single)
        }
        .loading(&Script::new("return 1"));
        batch.publish("{a}:x", b"1");
        batch.publish("{b}:x", b"2");
        batch.publish("{a}:y", b"3");
        assert_eq!(batch.groups.len(), 2);
        assert_eq!(batch.groups[0].len(), 3, "script load, then two");
    }
}
