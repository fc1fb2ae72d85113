//! The in-node state of one app: its channels and their subscribers, presence
//! rosters, cached events, signed-in users and watchlists, plus local fan-out.
//!
//! Every method is synchronous and holds at most one map shard at a time, so
//! no lock is ever held across an `.await`. Frames are built once by the
//! caller and cloned (a refcount) per subscriber.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use bytestring::ByteString;
use dashmap::DashMap;

use super::connection::Connection;
use super::history::History;
use super::member_order::MemberOrder;
use super::presence::{MemberInfo, Roster};
use super::rules::{ChannelRules, SubscribeError};
use crate::config::AppConfig;
use crate::console::Feed;
use crate::metrics::AppMetrics;
use crate::protocol::channel::server_to_user_id;
use crate::protocol::{messages, ChannelType, Close, SocketId};
use crate::support::wait::{self, Generation};
use crate::webhooks::{Event, Kind, Sink};

/// One channel's subscribers, and its roster when it is a presence channel.
#[derive(Debug)]
struct Channel {
    subscribers: HashMap<SocketId, Arc<Connection>>,
    roster: Option<Roster>,
    /// When `subscription_count` was last sent (the rules' throttle state).
    count_sent: Option<Instant>,
    /// Cluster member events in decision order (presence channels).
    order: MemberOrder,
}

impl Channel {
    fn new(name: &str) -> Self {
        Channel {
            subscribers: HashMap::new(),
            roster: ChannelType::of(name).is_presence().then(Roster::default),
            count_sent: None,
            order: MemberOrder::default(),
        }
    }

    /// Nobody is on it and no join is on its way.
    fn is_unused(&self) -> bool {
        self.subscribers.is_empty() && self.order.pending == 0
    }
}

impl Channel {
    fn deliver(&self, frame: &ByteString, except: Option<SocketId>) -> usize {
        let mut delivered = 0;
        for (id, conn) in &self.subscribers {
            if Some(*id) != except && conn.send(frame.clone()) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Asks the rules whether the new subscriber count is announced.
    fn count_changed(&mut self, name: &str, rules: &dyn ChannelRules) {
        if self.roster.is_some() {
            return;
        }
        if let Some(frame) = rules.count(name, self.subscribers.len(), &mut self.count_sent) {
            self.deliver(&frame, None);
        }
    }
}

/// The last event of a cache channel.
#[derive(Debug)]
struct CachedEvent {
    frame: ByteString,
    expires: Instant,
}

/// A presence member on this node: user id, local socket count, user_info.
pub type LocalMember = (Arc<str>, u32, Arc<serde_json::value::RawValue>);

/// Counts reported by channel queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    pub subscription_count: usize,
    /// Distinct members; `None` for non-presence channels.
    pub user_count: Option<usize>,
}

/// Live state of one app on this node.
#[derive(Debug)]
pub struct AppHub {
    /// The app's settings; replaced as a whole on reload (never its id or
    /// key).
    config: ArcSwap<AppConfig>,
    id: Box<str>,
    channels: DashMap<Box<str>, Channel>,
    cache: DashMap<Box<str>, CachedEvent>,
    connections: DashMap<SocketId, Arc<Connection>>,
    connection_count: AtomicUsize,
    /// Signed-in sockets per user id.
    users: DashMap<Arc<str>, Vec<Arc<Connection>>>,
    /// Sockets watching a user id (watchlist events).
    watchers: DashMap<Arc<str>, Vec<Arc<Connection>>>,
    /// Recent events per channel, for pollers.
    pub history: History,
    /// Per channel that has long-polls waiting: advanced when an event is
    /// recorded there, so only that channel's pollers wake.
    recorded: DashMap<Box<str>, Arc<Generation>>,
    /// Woken when the last connection is released (shutdown waits on it).
    emptied: tokio::sync::Notify,
    /// Where this app's webhook events are reported.
    pub webhooks: Sink,
    /// This app's hot-path counters.
    pub metrics: AppMetrics,
    /// What a live console of this app sees.
    pub console: Arc<Feed>,
}

impl AppHub {
    pub fn new(app: Arc<AppConfig>) -> Self {
        let history = History::new(app.history_size, Duration::from_secs(app.history_ttl));
        AppHub {
            history,
            recorded: DashMap::new(),
            emptied: tokio::sync::Notify::new(),
            webhooks: Sink::default(),
            metrics: AppMetrics::new(&app.id),
            console: Arc::default(),
            id: app.id.as_str().into(),
            config: ArcSwap::new(app),
            channels: DashMap::new(),
            cache: DashMap::new(),
            connections: DashMap::new(),
            connection_count: AtomicUsize::new(0),
            users: DashMap::new(),
            watchers: DashMap::new(),
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
                    self.webhooks
                        .emit(Kind::CacheMiss, || Event::cache_miss(name));
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

    /// A join whose roster the cluster is deciding: keeps the channel, and
    /// the member events that arrive meanwhile, until [`AppHub::join_settled`].
    pub fn join_pending(&self, name: &str) {
        self.channels
            .entry(name.into())
            .or_insert_with(|| Channel::new(name))
            .order
            .pending += 1;
    }

    /// The join announced by [`AppHub::join_pending`] is done (subscribed
    /// or refused).
    pub fn join_settled(&self, name: &str) {
        let unused = match self.channels.get_mut(name) {
            Some(mut channel) => {
                channel.order.settled();
                channel.is_unused()
            }
            None => false,
        };
        if unused {
            self.channels.remove_if(name, |_, c| c.is_unused());
        }
    }

    /// Presence channels with local subscribers (for the cluster's
    /// convergence check).
    pub fn presence_channels(&self) -> Vec<String> {
        self.channels
            .iter()
            .filter(|c| c.roster.is_some() && !c.subscribers.is_empty())
            .map(|c| c.key().to_string())
            .collect()
    }

    /// Whether the local subscribers of `name` missed member events that
    /// Redis has numbered up to `redis_version` (see `MemberOrder`).
    pub fn missed_member_events(&self, name: &str, redis_version: u64) -> bool {
        self.channels
            .get_mut(name)
            .is_some_and(|mut c| c.order.missed_events(redis_version))
    }

    /// Shows every local subscriber of `name` the cluster's roster as of
    /// `version` again (`subscription_succeeded`, which pusher-js applies
    /// as the new member list and Echo reports through `here`), unless
    /// events newer than it were delivered meanwhile.
    /// `visit` gets each subscriber to send the roster frame to (through
    /// the same path as the member events it supersedes, so it comes after
    /// them).
    pub fn resync_roster(&self, name: &str, version: u64, visit: &mut dyn FnMut(&Arc<Connection>)) {
        let Some(mut channel) = self.channels.get_mut(name) else {
            return;
        };
        let channel = &mut *channel;
        if channel.order.applied_version() >= version {
            return;
        }
        channel.subscribers.values().for_each(visit);
        channel
            .order
            .resynced(version, channel.subscribers.keys().copied());
    }

    /// The cluster's member event numbering started again (Redis was
    /// replaced): forget the versions seen so far.
    pub fn restart_member_order(&self) {
        for mut channel in self.channels.iter_mut() {
            channel.order.restart();
        }
    }

    /// Takes note of a cluster member event numbered `version` and visits
    /// the channel's local subscribers whose roster does not have it yet,
    /// who must get it (none when `deliver` is false). Deciding under the
    /// channel's lock keeps the ordering rules; `visit` sends or hands on.
    pub fn member_event_recipients(
        &self,
        name: &str,
        version: u64,
        frame: &ByteString,
        except: Option<SocketId>,
        deliver: bool,
        visit: &mut dyn FnMut(&Arc<Connection>),
    ) {
        let Some(mut channel) = self.channels.get_mut(name) else {
            return;
        };
        let channel = &mut *channel;
        channel.order.accept(version, frame, except);
        if !deliver {
            return;
        }
        for (id, conn) in &channel.subscribers {
            if Some(*id) != except && channel.order.wants(*id, version) {
                visit(conn);
            }
        }
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
            if let Some(sockets) = self.users.get(user_id) {
                sockets.iter().filter(others).for_each(visit);
            }
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
        self.channels.contains_key(name)
            || self
                .recorded
                .get(name)
                .is_some_and(|generation| Arc::strong_count(&generation) > 1)
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

    /// Presence channels with this node's members: channel, and per user
    /// their local socket count and user_info (cluster rebuild).
    pub fn local_presence(&self) -> Vec<(String, Vec<LocalMember>)> {
        self.channels
            .iter()
            .filter_map(|c| {
                let roster = c.roster.as_ref()?;
                Some((c.key().to_string(), roster.members()))
            })
            .collect()
    }

    // ----- polling -------------------------------------------------------

    /// An event was recorded on `channel`: wakes its long-polls (a map
    /// lookup when none wait).
    pub fn notify_pollers(&self, channel: &str) {
        if let Some(generation) = self.recorded.get(channel) {
            generation.advance();
        }
    }

    /// What a long-poll watches: each channel's generation, read before
    /// the histories are, so an event recorded in between is not missed.
    pub fn watch_for_events(&self, channels: &[String]) -> Vec<(Arc<Generation>, u64)> {
        channels
            .iter()
            .map(|channel| {
                let generation = self
                    .recorded
                    .entry(channel.as_str().into())
                    .or_default()
                    .clone();
                let seen = generation.current();
                (generation, seen)
            })
            .collect()
    }

    /// Waits until an event is recorded on a watched channel, or until
    /// `deadline`; true when an event came.
    pub async fn wait_for_event(
        &self,
        watched: &[(Arc<Generation>, u64)],
        deadline: tokio::time::Instant,
    ) -> bool {
        let changes = watched
            .iter()
            .map(|(generation, seen)| Box::pin(generation.changed_from(*seen)));
        tokio::time::timeout_at(deadline, futures_util::future::select_all(changes))
            .await
            .is_ok()
    }

    /// Forgets the wake-up state of channels nobody polls (run periodically).
    fn sweep_pollers(&self) {
        self.recorded
            .retain(|_, generation| Arc::strong_count(generation) > 1);
    }

    // ----- cache channels ----------------------------------------------

    /// Keeps `frame` as the channel's last event for `cache_ttl`.
    pub fn store_cached(&self, name: &str, frame: ByteString) {
        self.store_cached_for(name, frame, Duration::from_secs(self.app().cache_ttl));
    }

    /// Keeps `frame` as the channel's last event for `ttl`.
    pub fn store_cached_for(&self, name: &str, frame: ByteString, ttl: Duration) {
        let expires = Instant::now() + ttl;
        self.cache
            .insert(name.into(), CachedEvent { frame, expires });
    }

    /// Forgets a cache channel's event (this node stopped hearing the
    /// channel, so its copy may be stale).
    pub fn forget_cached(&self, name: &str) {
        self.cache.remove(name);
    }

    /// The channel's cached event, if it has not expired.
    pub fn cached(&self, name: &str) -> Option<ByteString> {
        let entry = self.cache.get(name)?;
        (entry.expires > Instant::now()).then(|| entry.frame.clone())
    }

    /// Drops expired cache entries and history (run periodically).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.cache.retain(|_, e| e.expires > now);
        self.history.sweep();
        self.sweep_pollers();
    }

    // ----- queries -----------------------------------------------------

    /// Occupied channels, optionally filtered by prefix; never the
    /// `#server-to-user-` channels.
    pub fn channels(&self, prefix: Option<&str>) -> Vec<(String, ChannelStats)> {
        self.channels
            .iter()
            .filter(|c| !c.subscribers.is_empty())
            .filter(|c| prefix.is_none_or(|p| c.key().starts_with(p)))
            .map(|c| (c.key().to_string(), stats(&c)))
            .collect()
    }

    /// Counts for one channel; `None` when nobody is subscribed.
    pub fn channel(&self, name: &str) -> Option<ChannelStats> {
        self.channels
            .get(name)
            .filter(|c| !c.subscribers.is_empty())
            .map(|c| stats(&c))
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
        let came_online = {
            let mut sockets = self.users.entry(user_id.clone()).or_default();
            sockets.push(conn.clone());
            sockets.len() == 1
        };
        came_online
    }

    /// Forgets a signed-in socket; returns true when the user went offline.
    pub fn remove_user(&self, user_id: &str, socket: SocketId) -> bool {
        let went_offline = match self.users.get_mut(user_id) {
            Some(mut sockets) => {
                sockets.retain(|c| c.socket_id != socket);
                sockets.is_empty()
            }
            None => false,
        };
        if went_offline {
            self.users.remove_if(user_id, |_, s| s.is_empty());
        }
        went_offline
    }

    /// Signed-in users on this node with their socket counts (cluster rebuild).
    pub fn local_users(&self) -> Vec<(Arc<str>, u32)> {
        self.users
            .iter()
            .map(|u| (u.key().clone(), u.len() as u32))
            .collect()
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// Closes every socket signed in as `user_id`; returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        let Some(sockets) = self.users.get(user_id) else {
            return 0;
        };
        for conn in sockets.iter() {
            conn.request_close(Close::TERMINATED);
        }
        sockets.len()
    }

    /// Subscribes `conn` to online/offline events of `watched` user ids.
    pub fn watch(&self, watched: &[Arc<str>], conn: &Arc<Connection>) {
        for id in watched {
            self.watchers
                .entry(id.clone())
                .or_default()
                .push(conn.clone());
        }
    }

    pub fn unwatch(&self, watched: &[Arc<str>], socket: SocketId) {
        for id in watched {
            if let Some(mut list) = self.watchers.get_mut(id) {
                list.retain(|c| c.socket_id != socket);
            }
            self.watchers.remove_if(id, |_, l| l.is_empty());
        }
    }

    /// Sends a watchlist online/offline event for `user_id` to the local
    /// sockets watching it (the adapter decides when, cluster-wide).
    pub fn notify_watchers(&self, user_id: &str, online: bool) {
        if !self.app().watchlist_events {
            return;
        }
        let Some(list) = self.watchers.get(user_id) else {
            return;
        };
        let ids = [user_id];
        let frame = if online {
            messages::watchlist_events(&ids, &[])
        } else {
            messages::watchlist_events(&[], &ids)
        };
        for conn in list.iter() {
            conn.send(frame.clone());
        }
    }
}

fn stats(channel: &Channel) -> ChannelStats {
    ChannelStats {
        subscription_count: channel.subscribers.len(),
        user_count: channel.roster.as_ref().map(Roster::member_count),
    }
}

#[cfg(test)]
mod tests {
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
