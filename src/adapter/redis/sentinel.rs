//! Redis under Sentinel: one master with replicas, watched by Sentinels
//! that promote a replica when the master fails
//! (`redis+sentinel://host:port,host:port/MASTER_NAME`).
//!
//! A node never keeps an address: it asks the Sentinels which server is
//! the master, connects there and checks with `ROLE` that the server agrees
//! (a demoted master that came back may still believe it is one; it must
//! never be written to). A connection is made anew:
//! * when a command on it fails as a lost or demoted master does (an I/O
//!   error, a timeout, `READONLY`, `MASTERDOWN`);
//! * when a Sentinel announces `+switch-master` for our master (heard by
//!   [`Sentinel::watch`]), which a switch bumps the [`Sentinel::switches`]
//!   count for, so that even connections that were not in use move.
//!
//! The relay subscriber and the webhook outbox's connections follow the same
//! count (see `connection::SwitchWatch`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, PushInfo, PushKind,
    RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};
use tokio::sync::{watch, OnceCell};
use tracing::{info, warn};

use crate::metrics::METRICS;

/// The URL schemes of a master watched by Sentinels, and the scheme its
/// servers (Sentinels and data nodes alike) are reached with.
const SCHEMES: [(&str, &str); 2] = [
    ("redis+sentinel://", "redis://"),
    ("rediss+sentinel://", "rediss://"),
];

/// The port a Sentinel listens on unless told otherwise.
const SENTINEL_PORT: u16 = 26379;

/// How long one Sentinel or master may take to connect or answer while a
/// master is being found.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// After a failed attempt to reach the master, commands fail at once for
/// this long instead of each asking the Sentinels again.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// The Sentinels of one master, what they last named as master, and how
/// often that changed.
pub struct Sentinel {
    /// One client per Sentinel, in the order the URL names them.
    sentinels: Vec<redis::Client>,
    master_name: String,
    /// `redis://` or `rediss://`.
    scheme: &'static str,
    /// `user:password@` for the master (and its replicas), or empty.
    credentials: String,
    db: i64,
    tls_ca: Option<Vec<u8>>,
    /// Bumped on every master switch a Sentinel announces; connections
    /// made before it are made anew.
    switches: watch::Sender<u64>,
    /// The master this node last connected to (`host:port`).
    master: Mutex<Option<String>>,
    /// Times the master this node connects to changed.
    failovers: AtomicU64,
}

/// Whether `url` names a master watched by Sentinels.
pub fn is_sentinel_url(url: &str) -> bool {
    SCHEMES.iter().any(|(scheme, _)| url.starts_with(scheme))
}

/// Turns `client`'s TLS on with `ca` as the trust store, or plain.
fn client(info: redis::ConnectionInfo, tls_ca: &Option<Vec<u8>>) -> RedisResult<redis::Client> {
    match tls_ca {
        Some(ca) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// `host:port` with an IPv6 host bracketed, as a URL needs it.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Sentinel {
    /// Reads `redis+sentinel://[user:password@]host:port,host:port/MASTER[?db=N]`.
    /// The credentials are the master's; `sentinel_password` is the
    /// Sentinels' own (`requirepass` in their configuration).
    pub fn parse(
        url: &str,
        sentinel_password: Option<&str>,
        tls_ca: Option<Vec<u8>>,
    ) -> Result<Sentinel, String> {
        let invalid = |e: &dyn std::fmt::Display| format!("invalid cluster.url: {e}");
        let Some((rest, scheme)) = SCHEMES
            .iter()
            .find_map(|(prefix, scheme)| url.strip_prefix(prefix).map(|rest| (rest, *scheme)))
        else {
            return Err(invalid(&"not a redis+sentinel:// URL"));
        };
        // Credentials (which may hold '@' or ','; a '/' is written %2F) end at
        // the last '@'.
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let Some((hosts, master_name)) = rest.split_once('/') else {
            return Err(invalid(
                &"a Sentinel URL ends with the master's name: redis+sentinel://host:26379/mymaster",
            ));
        };
        let master_name = master_name.trim_end_matches('/');
        if master_name.is_empty() || master_name.contains('/') {
            return Err(invalid(&"a Sentinel URL names one master after the hosts"));
        }
        let mut db = 0;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("db", n)) => {
                    db = n
                        .parse()
                        .map_err(|_| invalid(&format!("db must be a number, not {n:?}")))?;
                }
                _ => return Err(invalid(&format!("unknown parameter {pair:?} (only db=N)"))),
            }
        }
        let sentinels = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(|host| {
                let host = match host.rsplit_once(':') {
                    Some((_, port)) if port.parse::<u16>().is_ok() && !host.ends_with(']') => {
                        host.to_owned()
                    }
                    _ => format!("{host}:{SENTINEL_PORT}"),
                };
                let info = format!("{scheme}{host}")
                    .into_connection_info()
                    .map_err(|e| invalid(&e))?;
                let settings = info.redis_settings().clone();
                let settings = match sentinel_password {
                    Some(password) => settings.set_password(password),
                    None => settings,
                };
                client(info.set_redis_settings(settings), &tls_ca)
                    .map_err(|e| format!("invalid cluster.url or cluster.tls_ca: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(invalid(&"no Sentinel named"));
        }
        let sentinel = Sentinel {
            sentinels,
            master_name: master_name.to_owned(),
            scheme,
            credentials,
            db,
            tls_ca,
            switches: watch::Sender::new(0),
            master: Mutex::new(None),
            failovers: AtomicU64::new(0),
        };
        // The master's URL must be valid too (its credentials), before a
        // Sentinel is ever asked.
        sentinel.master_client("127.0.0.1", 6379, false)?;
        Ok(sentinel)
    }

    /// The address of the master this node last connected to.
    pub fn master(&self) -> Option<String> {
        self.master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How often the master this node connects to changed.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// The count of switches announced so far, to wait for the next.
    pub fn switches(&self) -> watch::Receiver<u64> {
        self.switches.subscribe()
    }

    fn switch_count(&self) -> u64 {
        *self.switches.borrow()
    }

    /// A client of the server at `host:port`, with the master's
    /// credentials and database.
    fn master_client(&self, host: &str, port: u16, resp3: bool) -> Result<redis::Client, String> {
        let url = format!(
            "{}{}{}/{}",
            self.scheme,
            self.credentials,
            authority(host, port),
            self.db
        );
        let info = url
            .into_connection_info()
            .map_err(|e| format!("invalid cluster.url: {e}"))?;
        let info = if resp3 {
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            info.set_redis_settings(settings)
        } else {
            info
        };
        client(info, &self.tls_ca).map_err(|e| format!("invalid cluster.url: {e}"))
    }

    /// Asks the Sentinels, in order, where the master is; the first answer
    /// counts.
    async fn ask(&self) -> RedisResult<(String, u16)> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ASK_TIMEOUT))
            .set_response_timeout(Some(ASK_TIMEOUT));
        let mut last = None;
        for sentinel in &self.sentinels {
            let answer = async {
                let mut connection = sentinel
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master_name)
                    .query_async::<Option<(String, u16)>>(&mut connection)
                    .await
            };
            match answer.await {
                Ok(Some(address)) => return Ok(address),
                Ok(None) => {
                    last = Some(RedisError::from((
                        ErrorKind::MasterNameNotFoundBySentinel,
                        "a Sentinel does not know the master",
                        self.master_name.clone(),
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((ErrorKind::EmptySentinelList, "no Sentinel named"))
        }))
    }

    /// Connects to the master the Sentinels name, once it says it is one.
    /// With `pushes`, the connection speaks RESP3 and its pub/sub messages
    /// go there.
    async fn connect(
        &self,
        response_timeout: Duration,
        pushes: Option<AsyncConnectionConfig>,
    ) -> RedisResult<MultiplexedConnection> {
        let (host, port) = self.ask().await?;
        let client = self
            .master_client(&host, port, pushes.is_some())
            .map_err(|e| RedisError::from((ErrorKind::InvalidClientConfig, "bad URL", e)))?;
        let config = pushes
            .unwrap_or_default()
            .set_connection_timeout(Some(ASK_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
        let role = role.first().and_then(|role| match role {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
            Value::SimpleString(text) => Some(text.clone()),
            _ => None,
        });
        if role.as_deref() != Some("master") {
            return Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::ReadOnly),
                "the server the Sentinels name as master is not one (yet)",
                format!("{} is {}", authority(&host, port), role.unwrap_or_default()),
            )));
        }
        self.connected_to(authority(&host, port));
        Ok(connection)
    }

    /// Notes the master connected to; a change is a failover (logged and
    /// counted once per node, whichever connection sees it first).
    fn connected_to(&self, address: String) {
        let mut master = self.master.lock().unwrap_or_else(|p| p.into_inner());
        match master.as_deref() {
            Some(previous) if previous != address => {
                warn!(
                    master = %self.master_name,
                    "the Redis master moved from {previous} to {address}; following it"
                );
                self.failovers.fetch_add(1, Ordering::Relaxed);
                METRICS.redis_failovers.inc();
            }
            Some(_) => {}
            None => {
                info!(master = %self.master_name, "the Sentinels name {address} as the Redis master")
            }
        }
        *master = Some(address);
    }

    /// A RESP3 connection to the master whose pushes go to `config`'s
    /// sender (the relay's subscriber).
    pub async fn subscriber(
        &self,
        config: AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        self.connect(ASK_TIMEOUT, Some(config)).await
    }

    /// Listens to the Sentinels' `+switch-master` announcements until the
    /// node stops, one Sentinel at a time (the next when one goes away),
    /// and bumps the switch count on each for our master. On every
    /// (re)subscription it compares the master with the one in use, so a
    /// switch announced while nobody listened is not missed.
    pub async fn watch(self: Arc<Self>) {
        let mut next = 0;
        loop {
            let sentinel = &self.sentinels[next % self.sentinels.len()];
            next += 1;
            let lost = Arc::new(tokio::sync::Notify::new());
            let heard = {
                let this = self.clone();
                let lost = lost.clone();
                move |push: PushInfo| -> Result<(), ()> {
                    match push.kind {
                        PushKind::Message => this.heard(&push),
                        PushKind::Disconnection => lost.notify_one(),
                        _ => {}
                    }
                    Ok(())
                }
            };
            let subscribed = async {
                let info = sentinel.get_connection_info().clone();
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(redis::ProtocolVersion::RESP3);
                let client = client(info.set_redis_settings(settings), &self.tls_ca)?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(ASK_TIMEOUT))
                    .set_response_timeout(Some(ASK_TIMEOUT))
                    .set_push_sender(heard);
                let mut connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                connection.subscribe("+switch-master").await?;
                RedisResult::Ok(connection)
            };
            match subscribed.await {
                Ok(connection) => {
                    if let (Ok((host, port)), Some(master)) = (self.ask().await, self.master()) {
                        if authority(&host, port) != master {
                            self.switches.send_modify(|n| *n += 1);
                        }
                    }
                    lost.notified().await;
                    drop(connection);
                }
                Err(e) => {
                    warn!("cannot hear the Redis Sentinels' master switches: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// A `+switch-master` message: `<name> <old ip> <old port> <new ip>
    /// <new port>`.
    fn heard(&self, push: &PushInfo) {
        let Some(Value::BulkString(text)) = push.data.get(1) else {
            return;
        };
        let text = String::from_utf8_lossy(text);
        let mut words = text.split(' ');
        if words.next() == Some(self.master_name.as_str()) {
            info!(master = %self.master_name, "the Sentinels switched the Redis master: {text}");
            self.switches.send_modify(|n| *n += 1);
        }
    }
}

/// Whether a command's error means the connection is to a master that is
/// gone or no longer master.
fn lost_master(e: &RedisError) -> bool {
    e.is_unrecoverable_error()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// A command connection to the current master; cheap to clone (clones
/// share the connection), made on first use and made anew after a switch.
#[derive(Clone)]
pub struct SentinelConnection {
    sentinel: Arc<Sentinel>,
    response_timeout: Duration,
    current: Arc<ArcSwap<Generation>>,
}

/// One connection to one master, made once by whichever command needs it
/// first.
struct Generation {
    /// The switch count when it was begun.
    switches: u64,
    connection: OnceCell<MultiplexedConnection>,
    /// When the last attempt to connect failed.
    failed_at: Mutex<Option<Instant>>,
}

impl Generation {
    fn new(switches: u64) -> Arc<Generation> {
        Arc::new(Generation {
            switches,
            connection: OnceCell::new(),
            failed_at: Mutex::new(None),
        })
    }
}

impl SentinelConnection {
    pub fn new(sentinel: Arc<Sentinel>, response_timeout: Duration) -> SentinelConnection {
        let switches = sentinel.switch_count();
        SentinelConnection {
            sentinel,
            response_timeout,
            current: Arc::new(ArcSwap::new(Generation::new(switches))),
        }
    }

    /// Replaces `stale` (if nobody did yet) with a generation not yet
    /// connected.
    fn replace(&self, stale: &Arc<Generation>) {
        let fresh = Generation::new(self.sentinel.switch_count());
        self.current.compare_and_swap(stale, fresh);
    }

    /// The connection of the current generation, and the generation.
    async fn get(&self) -> RedisResult<(MultiplexedConnection, Arc<Generation>)> {
        let mut generation = self.current.load_full();
        if generation.switches != self.sentinel.switch_count() {
            self.replace(&generation);
            generation = self.current.load_full();
        }
        if let Some(connection) = generation.connection.get() {
            return Ok((connection.clone(), generation));
        }
        let failed_at = *generation
            .failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(RedisError::from((
                ErrorKind::Io,
                "the Redis master was not reachable a moment ago",
            )));
        }
        let connected = generation
            .connection
            .get_or_try_init(|| self.sentinel.connect(self.response_timeout, None))
            .await;
        match connected {
            Ok(connection) => Ok((connection.clone(), generation)),
            Err(e) => {
                *generation
                    .failed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Passes `result` on, dropping the connection first if it failed as
    /// a lost master does.
    fn check<T>(&self, generation: &Arc<Generation>, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            if lost_master(e) {
                self.replace(generation);
            }
        }
        result
    }
}

impl ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (mut connection, generation) = self.get().await?;
            let result = connection.req_packed_command(cmd).await;
            self.check(&generation, result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (mut connection, generation) = self.get().await?;
            let result = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.check(&generation, result)
        })
    }

    fn get_db(&self) -> i64 {
        self.sentinel.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_its_sentinels_and_master() {
        let parsed = Sentinel::parse(
            "redis+sentinel://:p@ss,w%2Frd@10.0.0.1:26380,10.0.0.2/mymaster?db=3",
            Some("sentinel-secret"),
            None,
        );
        let Ok(sentinel) = parsed else {
            panic!("valid: {:?}", parsed.err());
        };
        assert_eq!(sentinel.master_name, "mymaster");
        assert_eq!(sentinel.db, 3);
        assert_eq!(sentinel.sentinels.len(), 2);
        let second = sentinel.sentinels[1].get_connection_info();
        assert_eq!(second.addr().to_string(), "10.0.0.2:26379", "default port");
        assert_eq!(second.redis_settings().password(), Some("sentinel-secret"));
        let Ok(master) = sentinel.master_client("10.0.0.9", 6380, false) else {
            panic!("a master client");
        };
        let master = master.get_connection_info();
        assert_eq!(master.redis_settings().password(), Some("p@ss,w/rd"));
        assert_eq!(master.redis_settings().db(), 3);
        assert_eq!(master.addr().to_string(), "10.0.0.9:6380");
        for bad in [
            "redis+sentinel://h:26379",
            "redis+sentinel://h:26379/",
            "redis+sentinel:///mymaster",
            "redis+sentinel://h/m?db=x",
            "redis+sentinel://h/m?timeout=1",
            "redis://h/m",
        ] {
            assert!(Sentinel::parse(bad, None, None).is_err(), "{bad}");
        }
        let Ok(tls) = Sentinel::parse("rediss+sentinel://h/m", None, None) else {
            panic!("TLS");
        };
        assert!(matches!(
            tls.sentinels[0].get_connection_info().addr(),
            redis::ConnectionAddr::TcpTls { .. }
        ));
    }

    #[test]
    fn only_a_lost_or_demoted_master_drops_the_connection() {
        let readonly = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
        assert!(lost_master(&readonly));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(lost_master(&io));
        let script = RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT"));
        assert!(!lost_master(&script));
    }
}
