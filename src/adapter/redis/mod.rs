//! The Redis cluster adapter: several Herald nodes behind a load balancer
//! look like one server.
//!
//! * Relay: every publication is delivered locally at once and sent to the
//!   other nodes through the channel's own Redis pub/sub topic, which only
//!   the nodes serving the channel listen to (see `relay` and `interest`).
//! * Presence: membership transitions are decided by Lua scripts in Redis
//!   (see `scripts`), so `member_added`/`member_removed` are announced once
//!   cluster-wide; the local hub only keeps which local socket is which user.
//! * Counts: each node writes its own subscription and connection counts
//!   under keys that name it; queries sum over the live nodes.
//! * Liveness: nodes heartbeat; survivors remove a dead node's share; a node
//!   that lost Redis serves its local clients alone and rewrites its share
//!   when Redis is back (see `node`).

pub mod connection;
mod counts;
mod interest;
mod keys;
mod node;
mod online;
mod outbox;
mod presence;
mod queries;
pub mod relay;
mod scripts;
mod sentinel;
mod state;
mod tasks;
mod writer;

pub use outbox::Outbox;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytestring::ByteString;
use dashmap::DashMap;
use tracing::warn;

use self::connection::{Redis, Target};
use self::interest::Interest;
use self::keys::Keys;
use self::presence::ClusterRules;
use self::relay::Command;
use self::scripts::{no_hooks, Hooks, Scripts};
use self::writer::{Write, Writer};
use super::{AdapterError, AdapterResult};
use crate::config::ClusterConfig;
use crate::hub::fanout::Fanout;
use crate::hub::history::Read;
use crate::hub::{AppHub, Connection, Hub, MemberInfo, SubscribeError};
use crate::protocol::{ChannelKind, ChannelType, SocketId};
use crate::support::clock::unix_millis;

/// The pseudo presence channel whose "members" are the signed-in users, so
/// that online/offline transitions reuse the presence scripts (and their
/// dead-node purge and rebuild). `#` keeps it apart from client channels.
pub(super) const ONLINE: &str = "#online";

/// How long one Redis round trip may take before the node treats Redis as
/// unavailable for that operation.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The adapter handle; cheap to share.
pub struct RedisAdapter {
    inner: Arc<Inner>,
    /// For the webhook outbox's own connections.
    target: Arc<Target>,
}

struct Inner {
    keys: Keys,
    hub: Arc<Hub>,
    redis: Redis,
    writer: Writer,
    scripts: Scripts,
    config: ClusterConfig,
    /// Whether this node's share of the cluster state is in Redis.
    healthy: AtomicBool,
    /// Whether the relay subscription is up and hearing its echoes.
    relay: Arc<relay::RelayHealth>,
    /// The channel topics this node listens to.
    interest: Arc<Interest>,
    /// Per app id: connections on other live nodes (refreshed by heartbeat).
    elsewhere: DashMap<String, usize>,
    /// The Redis epoch seen by the last heartbeat.
    epoch: std::sync::Mutex<Option<String>>,
    /// This node's counts waiting to be written (see `state`).
    dirty: state::DirtyCounts,
    /// Channels (`app\nchannel`) whose subscription count may have
    /// changed since the last flush (see `counts::counts_flusher`), and whether
    /// the change happened on this node (which then reports the
    /// `subscription_count` webhook).
    counts_dirty: std::sync::Mutex<HashMap<String, bool>>,
    /// Where the scripts put each app's webhooks (apps without any have
    /// none here).
    /// (Replaced when a reload changes the apps.)
    hooks: ArcSwap<HashMap<String, Arc<Hooks>>>,
    /// The count last announced per channel, and when.
    count_sent: DashMap<String, (usize, std::time::Instant)>,
    /// Sends what the relay applies, on threads of its own (see
    /// `hub::fanout`).
    fanout: Arc<Fanout>,
    /// The heartbeat task, stopped before the node leaves the cluster so
    /// that it cannot register the node again.
    heartbeat: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// Every background task of the node (stopped when it leaves).
    tasks: tasks::Tasks,
    /// The Sentinels, when Redis runs under them, and the failovers this
    /// node's share was last written after.
    sentinel: Option<Arc<sentinel::Sentinel>>,
    failovers_seen: std::sync::atomic::AtomicU64,
}

fn unavailable(e: redis::RedisError) -> AdapterError {
    AdapterError::Unavailable(e.to_string())
}

impl RedisAdapter {
    /// Connects lazily (the node starts even while Redis is down) and starts
    /// the relay subscriber, the writer and the heartbeat.
    pub fn start(config: &ClusterConfig, hub: Arc<Hub>) -> Result<RedisAdapter, String> {
        let tls_ca = match &config.tls_ca {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read cluster.tls_ca {path:?}: {e}"))?,
            ),
            None => None,
        };
        let target = Target::parse(&config.url, tls_ca, config.sentinel_password.as_deref())?;
        let redis = target.connect(REDIS_TIMEOUT)?;
        let node = format!("{:016x}", rand::random::<u64>());
        let keys = Keys::new(&config.prefix, &node);
        let tasks = tasks::Tasks::default();
        let inner = Arc::new(Inner {
            writer: Writer::spawn(redis.clone(), &tasks),
            tasks,
            keys: keys.clone(),
            hub: hub.clone(),
            redis,
            scripts: Scripts::new(target.is_cluster()),
            config: config.clone(),
            healthy: AtomicBool::new(false),
            relay: Arc::default(),
            interest: Interest::new(
                Duration::from_millis(config.interest_linger_ms),
                &keys.control(),
            ),
            elsewhere: DashMap::new(),
            epoch: std::sync::Mutex::new(None),
            dirty: state::DirtyCounts::default(),
            counts_dirty: std::sync::Mutex::default(),
            hooks: ArcSwap::from_pointee(hooks_of(&hub, &keys)),
            count_sent: DashMap::new(),
            heartbeat: std::sync::OnceLock::new(),
            sentinel: target.sentinel().cloned(),
            failovers_seen: std::sync::atomic::AtomicU64::new(0),
            fanout: Arc::new(
                Fanout::new(config.fanout_threads)
                    .map_err(|e| format!("cannot start the relay threads: {e}"))?,
            ),
        });
        let weak = Arc::downgrade(&inner);
        let counts_changed: Arc<dyn Fn(String) + Send + Sync> = Arc::new(move |key| {
            if let Some(inner) = weak.upgrade() {
                inner.mark_counts_dirty([key], false);
            }
        });
        let (offers, offered) = tokio::sync::watch::channel(None);
        let relay = Arc::new(relay::Relay {
            target: target.clone(),
            control: inner.keys.control(),
            hub: hub.clone(),
            fanout: inner.fanout.clone(),
            node,
            health: inner.relay.clone(),
            interest: inner.interest.clone(),
            offers,
            counts_changed,
        });
        inner
            .tasks
            .supervise("relay", move || relay::run(relay.clone()));
        let (interest, health) = (inner.interest.clone(), inner.relay.clone());
        inner.tasks.supervise("relay interest", move || {
            interest::run(
                interest.clone(),
                offered.clone(),
                hub.clone(),
                health.clone(),
            )
        });
        let flusher = inner.clone();
        inner.tasks.supervise("count flusher", move || {
            counts::counts_flusher(flusher.clone())
        });
        let writer = inner.clone();
        inner
            .tasks
            .supervise("state writer", move || state::writer(writer.clone()));
        let beating = inner.clone();
        let heartbeat = inner
            .tasks
            .supervise("heartbeat", move || node::heartbeat(beating.clone()));
        let _ = inner.heartbeat.set(heartbeat);
        if let Some(sentinel) = target.sentinel().cloned() {
            inner
                .tasks
                .supervise("sentinel watch", move || sentinel.clone().watch());
        }
        Ok(RedisAdapter {
            inner,
            target: Arc::new(target),
        })
    }

    /// The apps changed (reload): the scripts' webhook settings follow.
    pub fn apps_changed(&self) {
        let inner = &self.inner;
        inner
            .hooks
            .store(Arc::new(hooks_of(&inner.hub, &inner.keys)));
    }

    /// App `id` changed in the app store: the other nodes read it again.
    pub fn app_changed(&self, id: &str) {
        let inner = &self.inner;
        inner.writer.send(Write::Publish {
            channel: inner.keys.control(),
            payload: Command::AppChanged.encode(&inner.keys.node, id),
            control: true,
        });
    }

    /// How many channel topics this node listens to.
    pub fn topics(&self) -> usize {
        self.inner.interest.len()
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.inner.keys.node
    }

    /// The address of the Redis master in use (one Redis's, or the one
    /// the Sentinels named last); none on a Redis Cluster.
    pub fn master(&self) -> Option<String> {
        match &*self.target {
            Target::Single(client) => Some(client.get_connection_info().addr().to_string()),
            Target::Sentinel(sentinel) => sentinel.master(),
            Target::Cluster { .. } => None,
        }
    }
}

impl Inner {
    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Whether the master moved (a Sentinel failover) since this node's
    /// share was last written: what the old master had not yet passed to
    /// its replica is lost, so the share is written again.
    fn master_moved(&self) -> bool {
        let Some(sentinel) = &self.sentinel else {
            return false;
        };
        let failovers = sentinel.failovers();
        self.failovers_seen.swap(failovers, Ordering::AcqRel) != failovers
    }

    fn mark_unhealthy(&self, error: &redis::RedisError) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            warn!("lost Redis ({error}); serving local clients only until it is back");
        }
    }

    /// How recent this node's last relay echo must be for the relay to
    /// count as alive: three heartbeats.
    fn echo_window(&self) -> Duration {
        Duration::from_secs(3 * self.config.heartbeat_interval.max(1))
    }

    /// Sends this node a message through the relay; its return proves the
    /// subscription still hears. When the last one is overdue, the
    /// subscription is dropped and made again.
    fn check_relay(&self) {
        if self.relay.subscribed() && !self.relay.alive(self.echo_window()) {
            self.relay.force_reconnect();
        }
        self.writer.send(Write::Publish {
            channel: self.keys.control(),
            payload: Command::Echo.encode(&self.keys.node, ""),
            control: true,
        });
    }

    /// Sends `command` to the other nodes: a publication on a channel to
    /// the channel's topic, anything else (a `#server-to-user-*` event
    /// included: its recipients are signed-in users, not subscribers) to
    /// the control channel.
    fn relay(&self, app: &AppHub, command: Command) {
        let topic = match command {
            Command::Publish { channel, .. }
                if ChannelType::of(channel).kind != ChannelKind::ServerToUser =>
            {
                Some(self.keys.topic(app.id(), channel))
            }
            _ => None,
        };
        let payload = command.encode(&self.keys.node, app.id());
        self.writer.send(match topic {
            Some(topic) => Write::Publish {
                channel: topic,
                payload,
                control: false,
            },
            None => Write::Publish {
                channel: self.keys.control(),
                payload,
                control: true,
            },
        });
    }

    /// Makes sure this node hears `channel` before a subscriber or poller
    /// relies on it (see `interest`).
    async fn listen(&self, app: &AppHub, channel: &str) -> interest::Using {
        self.interest
            .want(self.keys.topic(app.id(), channel), app.id(), channel)
            .await
    }

    /// Where the scripts put `app`'s webhooks about `channel`.
    fn hooks(&self, app: &str, channel: &str) -> Arc<Hooks> {
        match self.hooks.load().get(app) {
            Some(hooks) if channel != ONLINE => hooks.clone(),
            _ => no_hooks(),
        }
    }

    /// Copies a cache channel's last event from Redis, for a node that was
    /// not there when it was published.
    async fn fetch_cached(&self, app: &AppHub, channel: &str) {
        if !self.healthy() {
            return;
        }
        let key = self.keys.cached(app.id(), channel);
        let found: Result<(Option<String>, i64), _> = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut self.redis.clone())
            .await;
        match found {
            Ok((Some(frame), ttl_ms)) if ttl_ms > 0 => {
                app.store_cached_for(channel, frame.into(), Duration::from_millis(ttl_ms as u64));
            }
            Ok(_) => {}
            Err(e) => self.mark_unhealthy(&e),
        }
    }

    /// Runs a pipeline; an empty one (no node, no channel to ask about) is
    /// answered without asking Redis, which refuses empty commands.
    async fn query<T: redis::FromRedisValue + Default>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        if pipe.is_empty() {
            return Ok(T::default());
        }
        pipe.query_async(&mut self.redis.clone()).await
    }
}

/// Where the scripts put the webhooks of each app that has some.
fn hooks_of(hub: &Hub, keys: &Keys) -> HashMap<String, Arc<Hooks>> {
    hub.apps()
        .into_iter()
        .filter(|app| !app.app().webhooks.is_empty())
        .map(|app| (app.id().to_owned(), Arc::new(keys.hooks(&app.app()))))
        .collect()
}

impl RedisAdapter {
    /// Relays a publication already delivered locally to the other nodes
    /// (and, for a cache channel, keeps it in Redis for later nodes).
    pub(super) fn relay_publish(
        &self,
        app: &AppHub,
        channel: &str,
        frame: ByteString,
        except: Option<SocketId>,
        cached: bool,
    ) {
        if cached {
            self.inner.writer.send(Write::Cache {
                key: self.inner.keys.cached(app.id(), channel),
                frame: frame.to_string(),
                ttl: app.app().cache_ttl,
            });
        }
        self.inner.relay(
            app,
            Command::Publish {
                channel,
                frame: &frame,
                except,
                cached,
            },
        );
    }

    pub(super) fn record(&self, app: &AppHub, channel: &str, event: &str, data: &str) {
        // Local long-polls wake when this node's own relay message comes
        // back, i.e. after Redis has the entry (see relay::apply).
        self.inner.writer.send(Write::History {
            key: self.inner.keys.history(app.id(), channel),
            event: event.to_owned(),
            data: data.to_owned(),
            max_len: app.app().history_size,
            ttl: app.app().history_ttl + 60,
        });
    }

    pub(super) async fn history(
        &self,
        app: &AppHub,
        channel: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> AdapterResult<Read> {
        let inner = &self.inner;
        // Hear the channel before reading it: an event recorded after the
        // read then wakes the poll.
        let _listening = inner.listen(app, channel).await;
        let key = inner.keys.history(app.id(), channel);
        let now_ms = unix_millis();
        let min_id = format!("{}-0", now_ms.saturating_sub(app.app().history_ttl * 1000));
        inner
            .scripts
            .history(
                &mut inner.redis.clone(),
                &key,
                channel,
                &min_id,
                cursor,
                limit,
            )
            .await
            .map_err(unavailable)
    }

    pub(super) fn terminate_user(&self, app: &AppHub, user_id: &str) {
        self.inner.relay(app, Command::TerminateUser { user_id });
    }

    pub(super) async fn subscribe(
        &self,
        app: &Arc<AppHub>,
        conn: &Arc<Connection>,
        channel: &str,
        member: Option<MemberInfo>,
    ) -> Result<(), SubscribeError> {
        let inner = &self.inner;
        // Heard before subscription_succeeded is sent: the subscriber gets
        // everything published after it.
        let listening = if ChannelType::of(channel).kind == ChannelKind::ServerToUser {
            None
        } else {
            Some(inner.listen(app, channel).await)
        };
        if ChannelType::of(channel).cached {
            // A node that was not hearing the channel may hold a stale copy.
            if listening.as_ref().is_some_and(|l| l.fresh) {
                app.forget_cached(channel);
            }
            if app.cached(channel).is_none() {
                inner.fetch_cached(app, channel).await;
            }
        }
        let result = match member {
            Some(member) if inner.healthy() && ChannelType::of(channel).is_presence() => {
                inner.join(app, conn, channel, member).await
            }
            member => app
                .subscribe(conn, channel, member.as_ref(), &ClusterRules::here(app))
                .map(|_| ()),
        };
        inner.write_subscriptions(app, channel);
        inner.announce_count(app, channel);
        result
    }

    pub(super) async fn unsubscribe(&self, app: &Arc<AppHub>, socket: SocketId, channel: &str) {
        self.inner.leave(app, socket, channel).await;
        self.inner.announce_count(app, channel);
    }

    pub(super) async fn user_signed_in(
        &self,
        app: &Arc<AppHub>,
        user_id: &Arc<str>,
        conn: &Arc<Connection>,
    ) {
        self.inner.sign_in(app, user_id, conn).await
    }

    pub(super) async fn user_signed_out(&self, app: &Arc<AppHub>, user_id: &str, socket: SocketId) {
        self.inner.sign_out(app, user_id, socket).await
    }

    pub(super) fn connections_elsewhere(&self, app: &AppHub) -> usize {
        self.inner.elsewhere.get(app.id()).map_or(0, |n| *n)
    }

    pub(super) fn connections_changed(&self, app: &AppHub) {
        self.inner.dirty.mark(state::Dirty::Connections {
            app: app.id().to_owned(),
        });
    }

    /// In the cluster: its state written, its relay hearing its echoes,
    /// and every channel it serves heard.
    pub(super) fn ready(&self) -> bool {
        let inner = &self.inner;
        inner.healthy() && inner.relay.alive(inner.echo_window()) && !inner.interest.failing()
    }

    /// Leaves the cluster (this node's share removed, the last writes
    /// sent), then stops every task of the node.
    pub(super) async fn shutdown(&self) {
        node::leave_cluster(&self.inner).await;
        self.inner.tasks.stop(Duration::from_secs(2)).await;
    }
}
