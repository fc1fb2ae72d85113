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
mod interest;
mod keys;
mod node;
pub mod relay;
mod scripts;
mod state;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytestring::ByteString;
use dashmap::DashMap;
use redis::AsyncCommands;
use serde_json::value::RawValue;
use tracing::warn;

use self::connection::{Redis, Target};
use self::interest::Interest;
use self::keys::Keys;
use self::relay::Command;
use self::scripts::{no_hooks, Announce, Hooks, Joined, Scripts};
use self::writer::{Write, Writer};
use super::{throttle_count, AdapterError, AdapterResult, LocalRules};
use crate::config::ClusterConfig;
use crate::hub::fanout::Fanout;
use crate::hub::history::Read;
use crate::hub::presence::subscription_data;
use crate::hub::{
    AppHub, ChannelRules, ChannelStats, Connection, Hub, JoinOutcome, MemberInfo, Roster,
    SubscribeError,
};
use crate::protocol::{messages, ChannelKind, ChannelType, SocketId};
use crate::support::clock::unix_millis;
use crate::webhooks::{Event as WebhookEvent, Kind as WebhookKind};

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
    /// changed since the last flush (see [`counts_flusher`]), and whether
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
        let target = Target::parse(&config.url, tls_ca)?;
        let redis = target.connect(REDIS_TIMEOUT)?;
        let node = format!("{:016x}", rand::random::<u64>());
        let keys = Keys::new(&config.prefix, &node);
        let inner = Arc::new(Inner {
            writer: Writer::spawn(redis.clone()),
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
        supervise("relay", move || relay::run(relay.clone()));
        let (interest, health) = (inner.interest.clone(), inner.relay.clone());
        supervise("relay interest", move || {
            interest::run(
                interest.clone(),
                offered.clone(),
                hub.clone(),
                health.clone(),
            )
        });
        let flusher = inner.clone();
        supervise("count flusher", move || counts_flusher(flusher.clone()));
        let writer = inner.clone();
        supervise("state writer", move || state::writer(writer.clone()));
        let beating = inner.clone();
        let heartbeat = supervise("heartbeat", move || node::heartbeat(beating.clone()));
        let _ = inner.heartbeat.set(heartbeat);
        Ok(RedisAdapter {
            inner,
            target: Arc::new(target),
        })
    }

    /// What the webhook service needs to deliver from this cluster's
    /// outbox.
    pub fn webhook_outbox(&self) -> crate::webhooks::Outbox {
        crate::webhooks::Outbox {
            connect: {
                let target = self.target.clone();
                Box::new(move |timeout| target.connect(timeout))
            },
            node: self.inner.keys.node.clone(),
            stream_of: {
                let keys = self.inner.keys.clone();
                Box::new(move |app| keys.webhooks(app))
            },
        }
    }

    /// The apps changed (reload): the scripts' webhook settings follow.
    pub fn apps_changed(&self) {
        let inner = &self.inner;
        inner
            .hooks
            .store(Arc::new(hooks_of(&inner.hub, &inner.keys)));
    }

    /// How many channel topics this node listens to.
    pub fn topics(&self) -> usize {
        self.inner.interest.len()
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.inner.keys.node
    }
}

impl Inner {
    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
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

    /// This node's subscriber count of a channel changed.
    fn write_subscriptions(&self, app: &AppHub, channel: &str) {
        self.dirty.mark(state::Dirty::Subscriptions {
            app: app.id().to_owned(),
            channel: channel.to_owned(),
        });
    }

    /// Notes that a channel's subscriber count may have changed; the
    /// flusher announces it (coalesced, and only when it really changed).
    /// Nothing per client message spawns work.
    fn announce_count(&self, app: &AppHub, channel: &str) {
        let wanted =
            app.app().subscription_count || app.webhooks.wants(WebhookKind::SubscriptionCount);
        if !wanted || ChannelType::of(channel).is_presence() {
            return;
        }
        self.mark_counts_dirty([format!("{}\n{channel}", app.id())], true);
    }

    /// Channels (`app\nchannel`) whose cluster-wide count must be
    /// recomputed at the next flush.
    fn mark_counts_dirty(&self, keys: impl IntoIterator<Item = String>, here: bool) {
        let mut dirty = self.counts_dirty.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            *dirty.entry(key).or_insert(false) |= here;
        }
    }

    /// Where the scripts put `app`'s webhooks about `channel`.
    fn hooks(&self, app: &str, channel: &str) -> Arc<Hooks> {
        match self.hooks.load().get(app) {
            Some(hooks) if channel != ONLINE => hooks.clone(),
            _ => no_hooks(),
        }
    }

    /// Announces the cluster-wide count of one changed channel (`remote`
    /// subscribers on other nodes), unless it is the count last announced
    /// or the crowd throttle holds it back (then it stays dirty for a later
    /// flush).
    fn announce_total(&self, app: &AppHub, channel: &str, remote: usize, here: bool) {
        let key = format!("{}\n{channel}", app.id());
        let total = app.local_subscribers(channel) + remote;
        let previous = self.count_sent.get(&key).map(|entry| *entry);
        if total == 0 {
            self.count_sent.remove(&key);
            return;
        }
        if previous.is_some_and(|(count, _)| count == total) {
            return;
        }
        let mut last_sent = previous.map(|(_, at)| at);
        let now = std::time::Instant::now();
        if !throttle_count(total, &mut last_sent, now) {
            self.mark_counts_dirty([key], here);
            return;
        }
        self.count_sent.insert(key, (total, now));
        // To this node's subscribers only: every node recomputes the total
        // itself when any node's count changes (`state` tells them).
        if app.app().subscription_count {
            app.publish(channel, &messages::subscription_count(channel, total), None);
        }
        // The webhook comes from the node where the count changed.
        if here {
            app.webhooks.emit(WebhookKind::SubscriptionCount, || {
                WebhookEvent::subscription_count(channel, total)
            });
        }
    }

    /// Tells watchers on every node that `user_id` came online or went offline.
    fn announce_online(&self, app: &AppHub, user_id: &str, online: bool) {
        app.notify_watchers(user_id, online);
        self.relay(app, Command::Watchlist { user_id, online });
    }

    async fn sign_in(&self, app: &Arc<AppHub>, user_id: &str, conn: &Arc<Connection>) {
        let came_online = app.add_user(&user_id.into(), conn);
        if !self.healthy() {
            if came_online {
                app.notify_watchers(user_id, true);
            }
            return;
        }
        let keys = self.keys.presence(app.id(), ONLINE, &self.keys.node);
        let joined = self
            .scripts
            .join(
                &mut self.redis.clone(),
                &keys,
                &self.keys.node_presence(app.id(), &self.keys.node),
                ONLINE,
                user_id,
                "null",
                usize::MAX,
                &self.announce(app, ONLINE, ""),
                "",
            )
            .await;
        match joined {
            Ok(Joined::Ok { added: true, .. }) => self.announce_online(app, user_id, true),
            Ok(_) => {}
            Err(e) => {
                self.mark_unhealthy(&e);
                if came_online {
                    app.notify_watchers(user_id, true);
                }
            }
        }
    }

    async fn sign_out(&self, app: &Arc<AppHub>, user_id: &str, socket: SocketId) {
        let went_offline = app.remove_user(user_id, socket);
        if !self.healthy() {
            if went_offline {
                app.notify_watchers(user_id, false);
            }
            return;
        }
        let keys = self.keys.presence(app.id(), ONLINE, &self.keys.node);
        match self
            .scripts
            .leave(
                &mut self.redis.clone(),
                &keys,
                user_id,
                &self.announce(app, ONLINE, ""),
            )
            .await
        {
            Ok(true) => self.announce_online(app, user_id, false),
            Ok(false) => {}
            Err(e) => {
                self.mark_unhealthy(&e);
                if went_offline {
                    app.notify_watchers(user_id, false);
                }
            }
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

    /// Subscribers of each of `channels` on the `others` nodes: a pipeline
    /// (in the app's slot) per 512 channels, one field per node and channel.
    async fn remote_subscribers(
        &self,
        app: &str,
        channels: &[String],
        others: &[String],
    ) -> Result<Vec<usize>, redis::RedisError> {
        if others.is_empty() {
            return Ok(vec![0; channels.len()]);
        }
        let mut totals = Vec::with_capacity(channels.len());
        for chunk in channels.chunks(512) {
            let mut pipe = redis::pipe();
            for channel in chunk {
                for node in others {
                    pipe.hget(self.keys.subscriptions(app, node), channel);
                }
            }
            let counts: Vec<Option<usize>> = self.query(&pipe).await?;
            totals.extend(
                counts
                    .chunks(others.len())
                    .map(|per_node| per_node.iter().flatten().sum::<usize>()),
            );
        }
        Ok(totals)
    }

    async fn join(
        &self,
        app: &Arc<AppHub>,
        conn: &Arc<Connection>,
        channel: &str,
        member: MemberInfo,
    ) -> Result<(), SubscribeError> {
        let keys = self.keys.presence(app.id(), channel, &self.keys.node);
        let mut redis = self.redis.clone();
        if app.is_subscribed(conn.socket_id, channel) {
            // A repeated subscribe changes nothing; answer with the roster.
            let roster = match redis.hgetall::<_, Vec<(String, String)>>(&keys.info).await {
                Ok(members) => roster(&members),
                Err(e) => {
                    self.mark_unhealthy(&e);
                    return app
                        .subscribe(conn, channel, Some(&member), &ClusterRules::here(app))
                        .map(|_| ());
                }
            };
            let rules = ClusterRules::redis(app, &roster, None);
            return app
                .subscribe(conn, channel, Some(&member), &rules)
                .map(|_| ());
        }
        // Member events that arrive while Redis decides are kept for us.
        app.join_pending(channel);
        let topic = self.keys.topic(app.id(), channel);
        let socket = conn.socket_id.to_string();
        let joined = self
            .scripts
            .join(
                &mut redis,
                &keys,
                &self.keys.node_presence(app.id(), &self.keys.node),
                channel,
                &member.user_id,
                member.user_info.get(),
                app.app().max_presence_members,
                &self.announce(app, channel, &topic),
                &socket,
            )
            .await;
        let subscribed = match joined {
            Ok(Joined::Full) => Err(SubscribeError::MemberLimit(app.app().max_presence_members)),
            Ok(Joined::Ok {
                members, version, ..
            }) => {
                // Our own member_added comes back through the relay, in
                // its place among everyone's.
                let roster = roster(&members);
                let rules = ClusterRules::redis(app, &roster, Some(version));
                app.subscribe(conn, channel, Some(&member), &rules)
                    .map(|_| ())
            }
            Err(e) => {
                self.mark_unhealthy(&e);
                app.subscribe(conn, channel, Some(&member), &ClusterRules::here(app))
                    .map(|_| ())
            }
        };
        app.join_settled(channel);
        subscribed
    }

    /// Where the scripts publish the member events of `channel` they decide
    /// (nowhere for the online pseudo-channel, whose transitions are
    /// relayed as watchlist events).
    fn announce<'a>(&'a self, app: &'a AppHub, channel: &'a str, topic: &'a str) -> Announce<'a> {
        Announce {
            topic: if channel == ONLINE { "" } else { topic },
            origin: &self.keys.node,
            app: app.id(),
            channel,
            hooks: self.hooks(app.id(), channel),
        }
    }

    async fn leave(&self, app: &Arc<AppHub>, socket: SocketId, channel: &str) {
        let user = app.member_of(socket, channel);
        let clustered = user.is_some() && self.healthy();
        let left = app.unsubscribe(socket, channel, &ClusterRules::leaving(app, clustered));
        self.write_subscriptions(app, channel);
        let (Some(user), true) = (user, clustered) else {
            return;
        };
        let keys = self.keys.presence(app.id(), channel, &self.keys.node);
        let topic = self.keys.topic(app.id(), channel);
        let announce = self.announce(app, channel, &topic);
        // A departure is published by the script itself (see join).
        match self
            .scripts
            .leave(&mut self.redis.clone(), &keys, &user, &announce)
            .await
        {
            Ok(_) => {}
            Err(e) => {
                self.mark_unhealthy(&e);
                if let Some(user) = left {
                    app.publish(channel, &messages::member_removed(channel, &user), None);
                }
            }
        }
    }

    /// The ids of nodes whose heartbeat is current.
    async fn live_nodes(&self) -> Result<Vec<String>, redis::RedisError> {
        let mut redis = self.redis.clone();
        let nodes: Vec<String> = redis.smembers(self.keys.nodes()).await?;
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.exists(self.keys.alive(node));
        }
        let alive: Vec<bool> = self.query(&pipe).await?;
        Ok(nodes
            .into_iter()
            .zip(alive)
            .filter_map(|(n, a)| a.then_some(n))
            .collect())
    }

    /// Subscriber counts per channel summed over live nodes.
    async fn subscription_counts(
        &self,
        app: &str,
    ) -> Result<HashMap<String, usize>, redis::RedisError> {
        let nodes = self.live_nodes().await?;
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.hgetall(self.keys.subscriptions(app, node));
        }
        let per_node: Vec<HashMap<String, usize>> = self.query(&pipe).await?;
        let mut totals = HashMap::new();
        for counts in per_node {
            for (channel, n) in counts {
                *totals.entry(channel).or_insert(0) += n;
            }
        }
        totals.retain(|_, n| *n > 0);
        Ok(totals)
    }

    async fn user_counts(
        &self,
        app: &str,
        channels: &[&str],
    ) -> Result<Vec<usize>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for channel in channels {
            pipe.hlen(self.keys.presence(app, channel, &self.keys.node).users);
        }
        self.query(&pipe).await
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

    /// One channel's subscribers on every live node: one field per node,
    /// never whole hashes.
    async fn subscribers_everywhere(
        &self,
        app: &str,
        channel: &str,
    ) -> Result<usize, redis::RedisError> {
        let nodes = self.live_nodes().await?;
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.hget(self.keys.subscriptions(app, node), channel);
        }
        let counts: Vec<Option<usize>> = self.query(&pipe).await?;
        Ok(counts.into_iter().flatten().sum())
    }

    async fn cluster_channels(
        &self,
        app: &AppHub,
        prefix: Option<&str>,
    ) -> Result<Vec<(String, ChannelStats)>, redis::RedisError> {
        let mut counts = self.subscription_counts(app.id()).await?;
        counts.retain(|name, _| prefix.is_none_or(|p| name.starts_with(p)));
        let presence: Vec<&str> = counts
            .keys()
            .map(String::as_str)
            .filter(|c| ChannelType::of(c).is_presence())
            .collect();
        let users: HashMap<String, usize> = presence
            .iter()
            .map(|c| c.to_string())
            .zip(self.user_counts(app.id(), &presence).await?)
            .collect();
        Ok(counts
            .into_iter()
            .map(|(name, n)| {
                let user_count = users.get(&name).copied();
                (
                    name,
                    ChannelStats {
                        subscription_count: n,
                        user_count,
                    },
                )
            })
            .collect())
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

/// Runs a cluster task, and runs it again if it panics: a node must not go
/// on half-connected because one of its tasks died. The task runs inside
/// the supervising one, so aborting the returned handle stops it.
fn supervise<F, Fut>(name: &'static str, make: F) -> tokio::task::AbortHandle
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::FutureExt;
    tokio::spawn(async move {
        loop {
            if std::panic::AssertUnwindSafe(make())
                .catch_unwind()
                .await
                .is_ok()
            {
                return;
            }
            tracing::error!("cluster task {name} panicked; restarting it");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .abort_handle()
}

/// How often changed subscription counts are announced.
const COUNT_FLUSH: Duration = Duration::from_millis(100);

/// Announces changed subscription counts every [`COUNT_FLUSH`]: one pass
/// over the channels that changed, however many (un)subscribes there were,
/// with one Redis round trip for the live nodes and one per app.
async fn counts_flusher(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(COUNT_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let dirty =
            std::mem::take(&mut *inner.counts_dirty.lock().unwrap_or_else(|e| e.into_inner()));
        if dirty.is_empty() {
            continue;
        }
        let others: Vec<String> = match inner.live_nodes().await {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| *n != inner.keys.node)
                .collect(),
            Err(e) => {
                inner.mark_unhealthy(&e);
                continue;
            }
        };
        let mut by_app: HashMap<&str, (Vec<String>, Vec<bool>)> = HashMap::new();
        for (key, here) in &dirty {
            if let Some((app, channel)) = key.split_once('\n') {
                let (channels, heres) = by_app.entry(app).or_default();
                channels.push(channel.to_owned());
                heres.push(*here);
            }
        }
        for (app_id, (channels, heres)) in by_app {
            let Some(app) = inner.hub.by_id(app_id) else {
                continue;
            };
            let remote = match inner.remote_subscribers(app_id, &channels, &others).await {
                Ok(remote) => remote,
                Err(e) => {
                    inner.mark_unhealthy(&e);
                    continue;
                }
            };
            for ((channel, here), remote) in channels.iter().zip(heres).zip(remote) {
                inner.announce_total(&app, channel, remote, here);
            }
        }
    }
}

/// The presence data of `subscription_succeeded` from Redis's info hash.
fn roster(members: &[(String, String)]) -> String {
    let parsed: Vec<(&str, Box<RawValue>)> = members
        .iter()
        .map(|(id, info)| {
            let raw = RawValue::from_string(info.clone())
                .or_else(|_| RawValue::from_string("null".to_owned()))
                .unwrap_or_default();
            (id.as_str(), raw)
        })
        .collect();
    subscription_data(parsed.iter().map(|(id, raw)| (*id, &**raw)))
}

/// A cluster node's decisions. Counts are announced cluster-wide by
/// [`Inner::announce_count`], never from local counts. Membership is decided
/// in Redis, which announces it through the relay, so the local roster only
/// records which socket is which user; while Redis is unreachable it is
/// decided here, as on a single node.
struct ClusterRules<'a> {
    local: LocalRules<'a>,
    decided: Decided<'a>,
}

/// Who decided the membership change the hub is applying.
enum Decided<'a> {
    /// Redis: for a join, the cluster-wide roster it answered (as of
    /// membership `version` when the join itself was decided now); a
    /// departure is announced by Redis too.
    Redis {
        roster: &'a str,
        version: Option<u64>,
    },
    /// This node, as a single node would (Redis is unreachable).
    Here,
}

impl<'a> ClusterRules<'a> {
    fn redis(app: &'a AppHub, roster: &'a str, version: Option<u64>) -> Self {
        ClusterRules {
            local: LocalRules::without_webhooks(app),
            decided: Decided::Redis { roster, version },
        }
    }

    fn here(app: &'a AppHub) -> Self {
        ClusterRules {
            local: LocalRules::without_webhooks(app),
            decided: Decided::Here,
        }
    }

    /// A departure: Redis announces it when `in_redis`.
    fn leaving(app: &'a AppHub, in_redis: bool) -> Self {
        if in_redis {
            ClusterRules::redis(app, "", None)
        } else {
            ClusterRules::here(app)
        }
    }
}

impl ChannelRules for ClusterRules<'_> {
    fn join(
        &self,
        channel: &str,
        roster: &mut Roster,
        socket: SocketId,
        member: &MemberInfo,
    ) -> Result<JoinOutcome, SubscribeError> {
        match self.decided {
            Decided::Redis {
                roster: cluster_roster,
                version,
            } => {
                roster.join(socket, member);
                Ok(JoinOutcome {
                    roster: cluster_roster.to_owned(),
                    announce: None,
                    snapshot: version,
                })
            }
            Decided::Here => self.local.join(channel, roster, socket, member),
        }
    }

    fn leave(&self, channel: &str, user_id: &str) -> Option<ByteString> {
        match self.decided {
            Decided::Redis { .. } => None,
            Decided::Here => self.local.leave(channel, user_id),
        }
    }

    /// Occupancy webhooks follow the cluster-wide count (`state`).
    fn occupancy(&self, _: &str, _: bool) {}

    fn count(&self, _: &str, _: usize, _: &mut Option<std::time::Instant>) -> Option<ByteString> {
        None
    }
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

    pub(super) async fn online(&self, app: &AppHub, user_ids: &[Arc<str>]) -> Vec<bool> {
        let inner = &self.inner;
        let local: Vec<bool> = user_ids.iter().map(|id| app.is_online(id)).collect();
        if user_ids.is_empty() || !inner.healthy() {
            return local;
        }
        let keys = inner.keys.presence(app.id(), ONLINE, &inner.keys.node);
        let mut pipe = redis::pipe();
        for id in user_ids {
            pipe.hexists(&keys.users, &**id);
        }
        match pipe
            .query_async::<Vec<bool>>(&mut inner.redis.clone())
            .await
        {
            Ok(remote) => remote.into_iter().zip(local).map(|(r, l)| r || l).collect(),
            Err(e) => {
                inner.mark_unhealthy(&e);
                local
            }
        }
    }

    pub(super) fn connections_elsewhere(&self, app: &AppHub) -> usize {
        self.inner.elsewhere.get(app.id()).map_or(0, |n| *n)
    }

    pub(super) fn connections_changed(&self, app: &AppHub) {
        self.inner.dirty.mark(state::Dirty::Connections {
            app: app.id().to_owned(),
        });
    }

    pub(super) async fn channels(
        &self,
        app: &AppHub,
        prefix: Option<&str>,
    ) -> AdapterResult<Vec<(String, ChannelStats)>> {
        self.inner
            .cluster_channels(app, prefix)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn channel(
        &self,
        app: &AppHub,
        name: &str,
    ) -> AdapterResult<Option<ChannelStats>> {
        let inner = &self.inner;
        let subscription_count = inner
            .subscribers_everywhere(app.id(), name)
            .await
            .map_err(unavailable)?;
        if subscription_count == 0 {
            return Ok(None);
        }
        let user_count = if ChannelType::of(name).is_presence() {
            let users = inner
                .user_counts(app.id(), &[name])
                .await
                .map_err(unavailable)?;
            users.first().copied()
        } else {
            None
        };
        Ok(Some(ChannelStats {
            subscription_count,
            user_count,
        }))
    }

    pub(super) async fn channel_users(
        &self,
        app: &AppHub,
        name: &str,
    ) -> AdapterResult<Vec<String>> {
        let inner = &self.inner;
        let keys = inner.keys.presence(app.id(), name, &inner.keys.node);
        inner
            .redis
            .clone()
            .hkeys(keys.users)
            .await
            .map_err(unavailable)
    }

    /// In the cluster: its state written, its relay hearing its echoes,
    /// and every channel it serves heard.
    pub(super) fn ready(&self) -> bool {
        let inner = &self.inner;
        inner.healthy() && inner.relay.alive(inner.echo_window()) && !inner.interest.failing()
    }

    pub(super) async fn shutdown(&self) {
        node::leave_cluster(&self.inner).await
    }
}
