//! The in-node state of one app: its channels and their subscribers (with
//! local fan-out), its connections, and the parts kept beside them: cached
//! events (`last_event`), signed-in users and watchers (`users`), long-poll
//! wake-ups (`pollers`), polling history (`history`), the cluster's
//! member-order hooks (`cluster_hooks`), and the observers that report
//! what happens (`events`).
//!
//! Every method is synchronous and holds at most one map shard at a time, so
//! no lock is ever held across an `.await`. Frames are built once by the
//! caller and cloned (a refcount) per subscriber.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use bytestring::ByteString;
use dashmap::DashMap;

use super::api_budget::ApiBudget;
use super::channel::{Channel, ChannelStats};
use super::connection::Connection;
use super::events::{AppEvent, Observers};
use super::history::History;
use super::last_event::LastEvents;
use super::pollers::{self, Pollers};
use super::presence::{MemberInfo, Roster};
use super::rules::{ChannelRules, SubscribeError};
use super::users::Users;
use crate::config::AppConfig;
use crate::metrics::AppMetrics;
use crate::protocol::channel::server_to_user_id;
use crate::protocol::{deflate, messages, ChannelType, Close, SocketId};
use crate::support::wait::{self, Generation};

/// A presence member on this node: user id, local socket count, user_info.
pub type LocalMember = (Arc<str>, u32, Arc<serde_json::value::RawValue>);

/// Live state of one app on this node.
#[derive(Debug)]
pub struct AppHub {
    /// The app's settings; replaced as a whole on reload (never its id or
    /// key).
    config: ArcSwap<AppConfig>,
    id: Box<str>,
    pub(super) channels: DashMap<Box<str>, Channel>,
    last_events: LastEvents,
    connections: DashMap<SocketId, Arc<Connection>>,
    connection_count: AtomicUsize,
    pub(super) users: Users,
    /// Recent events per channel, for pollers.
    history: History,
    pollers: Pollers,
    /// Woken when the last connection is released (shutdown waits on it).
    emptied: tokio::sync::Notify,
    /// This app's hot-path counters.
    metrics: AppMetrics,
    /// Who reports what happens (the console, the webhooks).
    observers: Arc<Observers>,
    /// The HTTP API's per-second budgets on this node.
    api_budget: ApiBudget,
}

impl AppHub {
    pub fn new(app: Arc<AppConfig>) -> Self {
        let history = History::new(app.history_size, Duration::from_secs(app.history_ttl));
        AppHub {
            history,
            pollers: Pollers::default(),
            emptied: tokio::sync::Notify::new(),
            metrics: AppMetrics::new(&app.id),
            observers: Arc::default(),
            api_budget: ApiBudget::default(),
            id: app.id.as_str().into(),
            config: ArcSwap::new(app),
            channels: DashMap::new(),
            last_events: LastEvents::default(),
            connections: DashMap::new(),
            connection_count: AtomicUsize::new(0),
            users: Users::default(),
        }
    }

    /// The app id (fixed for the life of the hub).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The app's current settings.
    pub fn app(&self) -> Guard<Arc<AppConfig>> {
        self.config.load()
    }

    /// Applies reloaded settings (same id and key); connections stay.
    pub fn set_config(&self, config: AppConfig) {
        self.config.store(Arc::new(config));
    }

    /// This app's hot-path counters.
    pub fn metrics(&self) -> &AppMetrics {
        &self.metrics
    }

    /// The app's recent events per channel (single node; a cluster keeps
    /// them in Redis).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Who observes this app (attached at start and on reload).
    pub fn observers(&self) -> &Arc<Observers> {
        &self.observers
    }

    /// The HTTP API's per-second budgets on this node.
    pub fn api_budget(&self) -> &ApiBudget {
        &self.api_budget
    }

    /// Reports `event` to the app's observers that want it.
    pub fn emit(&self, event: AppEvent<'_>) {
        self.observers.emit(event);
    }

    // ----- connections -------------------------------------------------

    /// Registers a connection unless the app is at its connection quota,
    /// counting `elsewhere` connections on other nodes.
    pub fn admit(&self, conn: &Arc<Connection>, elsewhere: usize) -> bool {
        let max = self.app().max_connections;
        let before = self.connection_count.fetch_add(1, Ordering::AcqRel);
        if max > 0 && before + elsewhere >= max {
            self.connection_count.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.connections.insert(conn.socket_id, conn.clone());
        true
    }

    /// Forgets a connection admitted earlier.
    pub fn release(&self, socket: SocketId) {
        if self.connections.remove(&socket).is_some()
            && self.connection_count.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.emptied.notify_waiters();
        }
    }

    /// Resolves once the app has no connection left.
    pub async fn all_released(&self) {
        wait::until(&self.emptied, || {
            (self.connection_count() == 0).then_some(())
        })
        .await
    }

    pub fn connection_count(&self) -> usize {
        self.connection_count.load(Ordering::Acquire)
    }

    /// Asks every connection of the app to close (shutdown).
    pub fn close_all(&self, request: Close) {
        for conn in self.connections.iter() {
            conn.request_close(request);
        }
    }

    // ----- channels ----------------------------------------------------

    /// Adds `conn` to a channel and queues, in this order: the
    /// `subscription_succeeded` frame, then what `rules` announce to the
    /// others (`member_added`, the subscription count), then the cached
    /// event or cache miss. Queuing while the channel is locked guarantees
    /// the subscriber sees `subscription_succeeded` before any event of the
    /// channel, and everyone sees announcements in decision order.
    ///
    /// A repeated subscribe is idempotent: `subscription_succeeded` is sent
    /// again and nothing else changes. Returns whether the socket is new on
    /// the channel.
    pub fn subscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        member: Option<&MemberInfo>,
        rules: &dyn ChannelRules,
    ) -> Result<bool, SubscribeError> {
        let kind = ChannelType::of(name);
        let mut entry = self
            .channels
            .entry(name.into())
            .or_insert_with(|| Channel::new(name));
        let channel = entry.value_mut();
        let socket = conn.socket_id;
        let added = !channel.subscribers.contains_key(&socket);

        // Occupied before the first member arrives. (A join into an empty
        // channel is never refused: the member limit is at least 1.)
        if channel.subscribers.is_empty() {
            rules.occupancy(name, true);
        }
        let joined = match (channel.roster.as_mut(), member) {
            (Some(roster), Some(member)) => Some(rules.join(name, roster, socket, member)?),
            _ => None,
        };
        channel.subscribers.insert(socket, conn.clone());
        match joined {
            Some(joined) => {
                conn.send(messages::subscription_succeeded(name, &joined.roster));
                if let Some(snapshot) = joined.snapshot {
                    for frame in channel.order.joined(socket, snapshot) {
                        conn.send(frame);
                    }
                }
                if let Some(frame) = joined.announce {
                    channel.deliver(&frame, Some(socket));
                }
            }
            None => {
                conn.send(messages::subscription_succeeded(name, "{}"));
            }
        }
        if added {
            channel.count_changed(name, rules);
        }
        if kind.cached {
            match self.cached(name) {
                Some(frame) => conn.send(frame),
                None => {
                    self.emit(AppEvent::CacheMiss { channel: name });
                    conn.send(messages::cache_miss(name))
                }
            };
        }
        Ok(added)
    }

    /// Removes a socket from a channel, queuing what `rules` announce.
    /// Returns the presence user whose last local socket left with it.
    /// Unknown channels or sockets are ignored.
    pub fn unsubscribe(
        &self,
        socket: SocketId,
        name: &str,
        rules: &dyn ChannelRules,
    ) -> Option<Arc<str>> {
        let (left, vacated) = {
            let mut channel = self.channels.get_mut(name)?;
            channel.subscribers.remove(&socket)?;
            channel.order.left(socket);
            let left = channel.roster.as_mut().and_then(|r| r.leave(socket));
            if let Some(frame) = left.as_deref().and_then(|user| rules.leave(name, user)) {
                channel.deliver(&frame, None);
            }
            channel.count_changed(name, rules);
            if channel.subscribers.is_empty() {
                rules.occupancy(name, false);
            }
            (left, channel.is_unused())
        };
        if vacated {
            self.channels.remove_if(name, |_, c| c.is_unused());
        }
        left
    }

    /// Visits who a publication on `name` goes to on this node (the
    /// channel's subscribers, or for `#server-to-user-{id}` that user's
    /// signed-in sockets), except one socket.
    pub fn recipients(
        &self,
        name: &str,
        except: Option<SocketId>,
        visit: &mut dyn FnMut(&Arc<Connection>),
    ) {
        let others = |conn: &&Arc<Connection>| Some(conn.socket_id) != except;
        if let Some(user_id) = server_to_user_id(name) {
            self.users.sockets_of(user_id, &mut |conn| {
                if others(&conn) {
                    visit(conn)
                }
            });
        } else if let Some(channel) = self.channels.get(name) {
            channel.subscribers.values().filter(others).for_each(visit);
        }
    }

    /// Occupied channels and presence members (summed over channels) on
    /// this node, for the metrics.
    pub fn occupancy(&self) -> (usize, usize) {
        let mut channels = 0;
        let mut members = 0;
        for channel in self.channels.iter() {
            if channel.subscribers.is_empty() {
                continue;
            }
            channels += 1;
            members += channel.roster.as_ref().map_or(0, Roster::member_count);
        }
        (channels, members)
    }

    pub fn is_subscribed(&self, socket: SocketId, name: &str) -> bool {
        self.channels
            .get(name)
            .is_some_and(|c| c.subscribers.contains_key(&socket))
    }

    /// The number of local subscribers of a channel.
    pub fn local_subscribers(&self, name: &str) -> usize {
        self.channels.get(name).map_or(0, |c| c.subscribers.len())
    }

    /// Whether this node serves a channel: it has subscribers (or a join
    /// on its way) or long-polls on it.
    pub fn serves(&self, name: &str) -> bool {
        self.channels.contains_key(name) || self.pollers.is_polled(name)
    }

    /// The presence user id a socket joined a channel as.
    pub fn member_of(&self, socket: SocketId, name: &str) -> Option<Arc<str>> {
        let channel = self.channels.get(name)?;
        channel.roster.as_ref()?.user_of(socket).cloned()
    }

    /// Delivers a frame to a channel's local subscribers (or, for
    /// `#server-to-user-{id}`, to that user's signed-in sockets), except one
    /// socket. Returns how many connections it was queued for.
    pub fn publish(&self, name: &str, frame: &ByteString, except: Option<SocketId>) -> usize {
        deflate::warm(frame, || self.local_subscribers(name) > 1);
        let mut delivered = 0;
        self.recipients(name, except, &mut |conn| {
            if conn.send(frame.clone()) {
                delivered += 1;
            }
        });
        delivered
    }

    /// Keeps `frame` as a cache channel's last event, then publishes it.
    pub fn publish_cached(
        &self,
        name: &str,
        frame: &ByteString,
        except: Option<SocketId>,
    ) -> usize {
        self.store_cached(name, frame.clone());
        self.publish(name, frame, except)
    }

    // ----- polling -------------------------------------------------------

    /// An event was recorded on `channel`: wakes its long-polls (a map
    /// lookup when none wait).
    pub fn notify_pollers(&self, channel: &str) {
        self.pollers.notify(channel);
    }

    /// What a long-poll watches: each channel's generation, read before
    /// the histories are, so an event recorded in between is not missed.
    pub fn watch_for_events(&self, channels: &[String]) -> Vec<(Arc<Generation>, u64)> {
        self.pollers.watch(channels)
    }

    /// Waits until an event is recorded on a watched channel, or until
    /// `deadline`; true when an event came.
    pub async fn wait_for_event(
        &self,
        watched: &[(Arc<Generation>, u64)],
        deadline: tokio::time::Instant,
    ) -> bool {
        pollers::wait_for_event(watched, deadline).await
    }

    // ----- cache channels ----------------------------------------------

    /// Keeps `frame` as the channel's last event for `cache_ttl`.
    pub fn store_cached(&self, name: &str, frame: ByteString) {
        self.store_cached_for(name, frame, Duration::from_secs(self.app().cache_ttl));
    }

    /// Keeps `frame` as the channel's last event for `ttl`.
    pub fn store_cached_for(&self, name: &str, frame: ByteString, ttl: Duration) {
        self.last_events.store(name, frame, ttl);
    }

    /// Forgets a cache channel's event (this node stopped hearing the
    /// channel, so its copy may be stale).
    pub fn forget_cached(&self, name: &str) {
        self.last_events.forget(name);
    }

    /// The channel's cached event, if it has not expired.
    pub fn cached(&self, name: &str) -> Option<ByteString> {
        self.last_events.get(name)
    }

    /// Drops expired cache entries and history (run periodically).
    pub fn sweep(&self) {
        self.last_events.sweep();
        self.history.sweep();
        self.pollers.sweep();
    }

    // ----- queries -----------------------------------------------------

    /// Occupied channels, optionally filtered by prefix; never the
    /// `#server-to-user-` channels.
    pub fn channels(&self, prefix: Option<&str>) -> Vec<(String, ChannelStats)> {
        self.channels
            .iter()
            .filter(|c| !c.subscribers.is_empty())
            .filter(|c| prefix.is_none_or(|p| c.key().starts_with(p)))
            .map(|c| (c.key().to_string(), c.stats()))
            .collect()
    }

    /// Counts for one channel; `None` when nobody is subscribed.
    pub fn channel(&self, name: &str) -> Option<ChannelStats> {
        self.channels
            .get(name)
            .filter(|c| !c.subscribers.is_empty())
            .map(|c| c.stats())
    }

    /// Distinct user ids on a presence channel.
    pub fn channel_users(&self, name: &str) -> Vec<String> {
        match self.channels.get(name) {
            Some(c) => match &c.roster {
                Some(r) => r.user_ids().map(|id| id.to_string()).collect(),
                None => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    // ----- signed-in users ---------------------------------------------

    /// Records a signed-in socket; returns true when the user came online.
    pub fn add_user(&self, user_id: &Arc<str>, conn: &Arc<Connection>) -> bool {
        self.users.add(user_id, conn)
    }

    /// Forgets a signed-in socket; returns true when the user went offline.
    pub fn remove_user(&self, user_id: &str, socket: SocketId) -> bool {
        self.users.remove(user_id, socket)
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.users.is_online(user_id)
    }

    /// Closes every socket signed in as `user_id`; returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        self.users.terminate(user_id)
    }

    /// Subscribes `conn` to online/offline events of `watched` user ids.
    pub fn watch(&self, watched: &[Arc<str>], conn: &Arc<Connection>) {
        self.users.watch(watched, conn);
    }

    pub fn unwatch(&self, watched: &[Arc<str>], socket: SocketId) {
        self.users.unwatch(watched, socket);
    }

    /// Sends a watchlist online/offline event for `user_id` to the local
    /// sockets watching it (the adapter decides when, cluster-wide).
    pub fn notify_watchers(&self, user_id: &str, online: bool) {
        if self.app().watchlist_events {
            self.users.notify_watchers(user_id, online);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::hub::rules::JoinOutcome;

    /// Rules that announce nothing and refuse nobody.
    struct Quiet;

    impl ChannelRules for Quiet {
        fn join(
            &self,
            _channel: &str,
            roster: &mut Roster,
            socket: SocketId,
            member: &MemberInfo,
        ) -> Result<JoinOutcome, SubscribeError> {
            roster.join(socket, member);
            Ok(JoinOutcome {
                roster: roster.subscription_data(),
                announce: None,
                snapshot: None,
            })
        }

        fn leave(&self, _channel: &str, _user_id: &str) -> Option<ByteString> {
            None
        }

        fn occupancy(&self, _: &str, _: bool) {}

        fn count(&self, _: &str, _: usize, _: &mut Option<Instant>) -> Option<ByteString> {
            None
        }
    }

    fn app() -> AppHub {
        AppHub::new(Arc::new(AppConfig::new("1", "k", "s")))
    }

    fn connection(n: u32, capacity: usize) -> Arc<Connection> {
        Arc::new(Connection::new(SocketId::new(n, n), capacity))
    }

    fn drain(conn: &Connection) -> Vec<ByteString> {
        let mut frames = Vec::new();
        conn.drain_into(&mut frames);
        frames
    }

    #[test]
    fn publish_skips_the_excluded_socket_and_shares_one_buffer() {
        let hub = app();
        let (a, b) = (connection(1, 64), connection(2, 64));
        assert_eq!(hub.subscribe(&a, "c", None, &Quiet), Ok(true));
        assert_eq!(hub.subscribe(&b, "c", None, &Quiet), Ok(true));
        assert_eq!(hub.subscribe(&b, "c", None, &Quiet), Ok(false));
        drain(&a);
        drain(&b);
        let frame: ByteString = "{\"event\":\"e\"}".into();
        assert_eq!(hub.publish("c", &frame, Some(a.socket_id)), 1);
        assert!(drain(&a).is_empty());
        let got = drain(&b);
        // The subscriber's frame is the publisher's buffer, not a copy.
        assert_eq!(got[0].as_bytes().as_ptr(), frame.as_bytes().as_ptr());
    }

    #[test]
    fn a_full_queue_asks_the_session_to_close() {
        let hub = app();
        let conn = connection(1, 2);
        hub.subscribe(&conn, "c", None, &Quiet).expect("subscribed");
        let frame: ByteString = "x".into();
        hub.publish("c", &frame, None);
        hub.publish("c", &frame, None);
        assert_eq!(conn.close_request(), Some(Close::TOO_SLOW));
    }

    #[test]
    fn the_last_subscriber_leaving_vacates_the_channel() {
        let hub = app();
        let conn = connection(1, 64);
        let member = MemberInfo {
            user_id: "u".into(),
            user_info: crate::hub::presence::null_info(),
        };
        hub.subscribe(&conn, "presence-r", Some(&member), &Quiet)
            .expect("subscribed");
        assert_eq!(
            hub.member_of(conn.socket_id, "presence-r").as_deref(),
            Some("u")
        );
        let left = hub.unsubscribe(conn.socket_id, "presence-r", &Quiet);
        assert_eq!(left.as_deref(), Some("u"));
        assert_eq!(hub.channel("presence-r"), None);
    }
}
