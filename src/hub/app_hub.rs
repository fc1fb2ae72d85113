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

use bytestring::ByteString;
use dashmap::DashMap;

use super::connection::{CloseRequest, Connection};
use super::history::History;
use super::presence::{MemberInfo, Roster};
use crate::config::AppConfig;
use crate::protocol::channel::server_to_user_id;
use crate::protocol::{messages, ChannelType, SocketId};

/// Above this many subscribers, `subscription_count` is sent at most once
/// per [`COUNT_INTERVAL`] (as Pusher does), so a crowd joining does not cost
/// a message to everyone per arrival.
pub const COUNT_THROTTLE_ABOVE: usize = 100;
pub const COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// One channel's subscribers, and its roster when it is a presence channel.
#[derive(Debug)]
struct Channel {
    subscribers: HashMap<SocketId, Arc<Connection>>,
    roster: Option<Roster>,
    /// When `subscription_count` was last sent.
    count_sent: Option<Instant>,
}

impl Channel {
    /// Sends `pusher_internal:subscription_count` to every subscriber.
    fn announce_count(&mut self, name: &str) {
        let now = Instant::now();
        let recent = self
            .count_sent
            .is_some_and(|at| now.duration_since(at) < COUNT_INTERVAL);
        if self.subscribers.len() > COUNT_THROTTLE_ABOVE && recent {
            return;
        }
        self.count_sent = Some(now);
        let frame = messages::subscription_count(name, self.subscribers.len());
        self.deliver(&frame, None);
    }

    fn deliver(&self, frame: &ByteString, except: Option<SocketId>) -> usize {
        let mut delivered = 0;
        for (id, conn) in &self.subscribers {
            if Some(*id) != except && conn.send(frame.clone()) {
                delivered += 1;
            }
        }
        delivered
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

/// Who decides presence membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// This node alone: the hub checks the member limit and announces
    /// `member_added` / `member_removed` itself.
    Local,
    /// The cluster decided (and announces); `roster` is the cluster-wide
    /// `subscription_succeeded` data for the joining socket.
    Cluster { roster: String },
}

/// Why a subscribe was refused by the hub.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("Presence channel is full: at most {0} members")]
    MemberLimit(usize),
}

/// Live state of one app on this node.
#[derive(Debug)]
pub struct AppHub {
    pub app: Arc<AppConfig>,
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
    /// Long-polls waiting for a new event, and how to wake them.
    pollers: AtomicUsize,
    /// Whether the cluster adapter, not this hub, sends subscription counts.
    cluster_counts: std::sync::atomic::AtomicBool,
    poll_epoch: std::sync::atomic::AtomicU64,
    poll_signal: tokio::sync::Notify,
}

impl AppHub {
    pub fn new(app: Arc<AppConfig>) -> Self {
        let history = History::new(app.history_size, Duration::from_secs(app.history_ttl));
        AppHub {
            history,
            pollers: AtomicUsize::new(0),
            cluster_counts: std::sync::atomic::AtomicBool::new(false),
            poll_epoch: std::sync::atomic::AtomicU64::new(0),
            poll_signal: tokio::sync::Notify::new(),
            app,
            channels: DashMap::new(),
            cache: DashMap::new(),
            connections: DashMap::new(),
            connection_count: AtomicUsize::new(0),
            users: DashMap::new(),
            watchers: DashMap::new(),
        }
    }

    /// Leaves `subscription_count` announcements to the cluster adapter,
    /// which knows the count on every node.
    pub fn count_subscriptions_in_cluster(&self) {
        self.cluster_counts.store(true, Ordering::Release);
    }

    /// Whether this hub announces `subscription_count` itself.
    fn counts_here(&self) -> bool {
        self.app.subscription_count && !self.cluster_counts.load(Ordering::Acquire)
    }

    // ----- connections -------------------------------------------------

    /// Registers a connection unless the app is at its connection quota,
    /// counting `elsewhere` connections on other nodes.
    pub fn admit(&self, conn: &Arc<Connection>, elsewhere: usize) -> bool {
        let max = self.app.max_connections;
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
        if self.connections.remove(&socket).is_some() {
            self.connection_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connection_count.load(Ordering::Acquire)
    }

    /// Asks every connection of the app to close (shutdown).
    pub fn close_all(&self, request: &CloseRequest) {
        for conn in self.connections.iter() {
            conn.request_close(request.clone());
        }
    }

    // ----- channels ----------------------------------------------------

    /// Adds `conn` to a channel and queues, in this order: the
    /// `subscription_succeeded` frame, then `member_added` to the others,
    /// then the subscription count, then the cached event or cache miss.
    /// Queuing while the channel is locked guarantees the subscriber sees
    /// `subscription_succeeded` before any event of the channel.
    ///
    /// A repeated subscribe is idempotent: `subscription_succeeded` is sent
    /// again and nothing else changes.
    pub fn subscribe(
        &self,
        conn: &Arc<Connection>,
        name: &str,
        member: Option<&MemberInfo>,
        presence: Presence,
    ) -> Result<(), SubscribeError> {
        let kind = ChannelType::of(name);
        let mut entry = self.channels.entry(name.into()).or_insert_with(|| Channel {
            subscribers: HashMap::new(),
            roster: kind.is_presence().then(Roster::default),
            count_sent: None,
        });
        let channel = entry.value_mut();
        let socket = conn.socket_id;
        let already = channel.subscribers.contains_key(&socket);

        let mut member_added = false;
        if let (Some(roster), Some(member), false) = (channel.roster.as_mut(), member, already) {
            let max = self.app.max_presence_members;
            if presence == Presence::Local
                && !roster.is_member(&member.user_id)
                && roster.member_count() >= max
            {
                return Err(SubscribeError::MemberLimit(max));
            }
            member_added = roster.join(socket, member);
        }
        channel.subscribers.insert(socket, conn.clone());

        let data = match (&presence, &channel.roster) {
            (Presence::Cluster { roster }, Some(_)) => roster.clone(),
            (_, Some(roster)) => roster.subscription_data(),
            (_, None) => "{}".to_owned(),
        };
        conn.send(messages::subscription_succeeded(name, &data));
        if let (true, Some(member), Presence::Local) = (member_added, member, &presence) {
            let frame = messages::member_added(name, &member.user_id, &member.user_info);
            channel.deliver(&frame, Some(socket));
        }
        if !already && self.counts_here() && channel.roster.is_none() {
            channel.announce_count(name);
        }
        if kind.cached {
            match self.cached(name) {
                Some(frame) => conn.send(frame),
                None => conn.send(messages::cache_miss(name)),
            };
        }
        Ok(())
    }

    /// Removes a socket from a channel. Returns the presence member that
    /// left with it (their last socket on this node's channel), to whom
    /// `member_removed` is announced here when `announce` (the cluster
    /// adapter announces cluster-wide departures itself). Unknown channels or
    /// sockets are ignored.
    pub fn unsubscribe(&self, socket: SocketId, name: &str, announce: bool) -> Option<Arc<str>> {
        let (left, vacated) = {
            let mut channel = self.channels.get_mut(name)?;
            channel.subscribers.remove(&socket)?;
            let left = channel.roster.as_mut().and_then(|r| r.leave(socket));
            if let (Some(user_id), true) = (&left, announce) {
                channel.deliver(&messages::member_removed(name, user_id), None);
            }
            if self.counts_here() && channel.roster.is_none() {
                channel.announce_count(name);
            }
            (left, channel.subscribers.is_empty())
        };
        if vacated {
            self.channels
                .remove_if(name, |_, c| c.subscribers.is_empty());
        }
        left
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

    /// The presence user id a socket joined a channel as.
    pub fn member_of(&self, socket: SocketId, name: &str) -> Option<Arc<str>> {
        let channel = self.channels.get(name)?;
        channel.roster.as_ref()?.user_of(socket).cloned()
    }

    /// Delivers a frame to a channel's local subscribers (or, for
    /// `#server-to-user-{id}`, to that user's signed-in sockets), except one
    /// socket. Returns how many connections it was queued for.
    pub fn publish(&self, name: &str, frame: &ByteString, except: Option<SocketId>) -> usize {
        if let Some(user_id) = server_to_user_id(name) {
            return self.send_to_user(user_id, frame, except);
        }
        match self.channels.get(name) {
            Some(channel) => channel.deliver(frame, except),
            None => 0,
        }
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

    /// Counts recorded events and wakes long-polls (cheap when none wait).
    pub fn notify_pollers(&self) {
        self.poll_epoch.fetch_add(1, Ordering::AcqRel);
        if self.pollers.load(Ordering::Acquire) > 0 {
            self.poll_signal.notify_waiters();
        }
    }

    /// A counter of recorded events: read it before reading the history,
    /// then [`AppHub::wait_for_event`] returns at once if it moved since.
    pub fn poll_epoch(&self) -> u64 {
        self.poll_epoch.load(Ordering::Acquire)
    }

    /// Waits until an event is recorded after `seen` was read, or until
    /// `deadline`; true when an event came.
    pub async fn wait_for_event(&self, seen: u64, deadline: tokio::time::Instant) -> bool {
        self.pollers.fetch_add(1, Ordering::AcqRel);
        let came = loop {
            let notified = self.poll_signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.poll_epoch() != seen {
                break true;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => break false,
            }
        };
        self.pollers.fetch_sub(1, Ordering::AcqRel);
        came
    }

    // ----- cache channels ----------------------------------------------

    /// Keeps `frame` as the channel's last event for `cache_ttl`.
    pub fn store_cached(&self, name: &str, frame: ByteString) {
        self.store_cached_for(name, frame, Duration::from_secs(self.app.cache_ttl));
    }

    /// Keeps `frame` as the channel's last event for `ttl`.
    pub fn store_cached_for(&self, name: &str, frame: ByteString, ttl: Duration) {
        let expires = Instant::now() + ttl;
        self.cache
            .insert(name.into(), CachedEvent { frame, expires });
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
    }

    // ----- queries -----------------------------------------------------

    /// Occupied channels, optionally filtered by prefix; never the
    /// `#server-to-user-` channels.
    pub fn channels(&self, prefix: Option<&str>) -> Vec<(String, ChannelStats)> {
        self.channels
            .iter()
            .filter(|c| prefix.is_none_or(|p| c.key().starts_with(p)))
            .map(|c| (c.key().to_string(), stats(&c)))
            .collect()
    }

    /// Counts for one channel; `None` when nobody is subscribed.
    pub fn channel(&self, name: &str) -> Option<ChannelStats> {
        self.channels.get(name).map(|c| stats(&c))
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

    fn send_to_user(&self, user_id: &str, frame: &ByteString, except: Option<SocketId>) -> usize {
        let Some(sockets) = self.users.get(user_id) else {
            return 0;
        };
        sockets
            .iter()
            .filter(|c| Some(c.socket_id) != except && c.send(frame.clone()))
            .count()
    }

    /// Closes every socket signed in as `user_id`; returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        let Some(sockets) = self.users.get(user_id) else {
            return 0;
        };
        for conn in sockets.iter() {
            conn.request_close(CloseRequest {
                code: crate::protocol::codes::UNAUTHORIZED,
                reason: "You got disconnected by the app.",
                send_error: true,
            });
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
        if !self.app.watchlist_events {
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

    fn app(configure: impl FnOnce(&mut AppConfig)) -> AppHub {
        let mut config = AppConfig::new("1", "k", "s");
        configure(&mut config);
        AppHub::new(Arc::new(config))
    }

    fn connection(n: u32) -> (Arc<Connection>, tokio::sync::mpsc::Receiver<ByteString>) {
        let (conn, rx) = Connection::new(SocketId::new(n, n), 4096);
        (Arc::new(conn), rx)
    }

    fn drain(rx: &mut tokio::sync::mpsc::Receiver<ByteString>) -> Vec<String> {
        let mut frames = Vec::new();
        while let Ok(f) = rx.try_recv() {
            frames.push(f.to_string());
        }
        frames
    }

    #[test]
    fn subscription_counts_are_throttled_for_crowds() {
        let hub = app(|a| a.subscription_count = true);
        let (first, mut rx) = connection(0);
        hub.subscribe(&first, "crowd", None, Presence::Local)
            .expect("subscribed");
        let mut others = Vec::new();
        for n in 1..150 {
            let (conn, rx) = connection(n);
            hub.subscribe(&conn, "crowd", None, Presence::Local)
                .expect("subscribed");
            others.push((conn, rx));
        }
        let counts = drain(&mut rx)
            .into_iter()
            .filter(|f| f.contains("subscription_count"))
            .count();
        // One per arrival up to 100 subscribers; beyond, at most one per 5 s
        // (and the 100th was just sent).
        assert_eq!(counts, 100);
    }

    #[test]
    fn publish_skips_the_excluded_socket_and_shares_one_buffer() {
        let hub = app(|_| {});
        let (a, mut rx_a) = connection(1);
        let (b, mut rx_b) = connection(2);
        hub.subscribe(&a, "c", None, Presence::Local)
            .expect("subscribed");
        hub.subscribe(&b, "c", None, Presence::Local)
            .expect("subscribed");
        drain(&mut rx_a);
        drain(&mut rx_b);
        let frame: ByteString = "{\"event\":\"e\"}".into();
        assert_eq!(hub.publish("c", &frame, Some(a.socket_id)), 1);
        assert!(drain(&mut rx_a).is_empty());
        let got = rx_b.try_recv().expect("delivered");
        // The subscriber's frame is the publisher's buffer, not a copy.
        assert_eq!(got.as_bytes().as_ptr(), frame.as_bytes().as_ptr());
    }

    #[test]
    fn a_full_queue_asks_the_session_to_close() {
        let hub = app(|_| {});
        let (conn, _rx) = Connection::new(SocketId::new(1, 1), 2);
        let conn = Arc::new(conn);
        hub.subscribe(&conn, "c", None, Presence::Local)
            .expect("subscribed");
        let frame: ByteString = "x".into();
        hub.publish("c", &frame, None);
        hub.publish("c", &frame, None);
        let request = conn.close_request().expect("close requested");
        assert_eq!(request.code, crate::protocol::codes::OVER_CAPACITY);
    }
}
