//! The seam between a node's hub and the rest of the cluster.
//!
//! Everything that must look the same from every node goes through the
//! [`Adapter`]: publishing (`publish`: local fan-out plus relay to other nodes),
//! joining and leaving channels (presence membership is decided
//! cluster-wide), cache channel payloads, terminating a user's sockets,
//! connection counts and the counting queries of the HTTP API. The
//! [`LocalAdapter`] is the single-node default, where the local hub is the
//! whole truth; the [`RedisAdapter`] shares state through Redis.
//!
//! There are exactly two kinds, so the adapter is an enum: calls are plain
//! `async fn`s (no boxed future per subscribe) and each method says in one
//! `match` what each kind does.

mod counts;
mod local;
mod publish;
pub mod redis;

use std::sync::Arc;

pub use self::counts::throttle_count;
pub use self::redis::RedisAdapter;
pub use local::{LocalAdapter, LocalRules};
pub use publish::{ApiEvent, ClientEvent};

use crate::hub::history::Read;
use crate::hub::{AppHub, ChannelStats, Connection, MemberInfo, SubscribeError};
use crate::protocol::SocketId;

/// A cluster operation that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("cluster state unavailable: {0}")]
    Unavailable(String),
}

pub type AdapterResult<T> = Result<T, AdapterError>;

/// How a node shares what other nodes must know.
pub enum Adapter {
    Local(LocalAdapter),
    Redis(RedisAdapter),
}

impl Adapter {
    /// A channel's polling history after `cursor` (see [`Read`]).
    pub async fn history(
        &self,
        app: &AppHub,
        channel: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> AdapterResult<Read> {
        match self {
            Adapter::Local(_) => Ok(app.history().read(channel, cursor, limit)),
            Adapter::Redis(redis) => redis.history(app, channel, cursor, limit).await,
        }
    }

    /// Closes every socket signed in as `user_id`, on every node.
    pub fn terminate_user(&self, app: &AppHub, user_id: &str) {
        app.terminate_user(user_id);
        if let Adapter::Redis(redis) = self {
            redis.terminate_user(app, user_id);
        }
    }

    /// Adds a local connection to a channel. For presence channels the
    /// member limit and `member_added` are decided cluster-wide.
    pub async fn subscribe(
        &self,
        app: &Arc<AppHub>,
        conn: &Arc<Connection>,
        channel: &str,
        member: Option<MemberInfo>,
    ) -> Result<(), SubscribeError> {
        match self {
            Adapter::Local(_) => app
                .subscribe(conn, channel, member.as_ref(), &LocalRules::of(app))
                .map(|_| ()),
            Adapter::Redis(redis) => redis.subscribe(app, conn, channel, member).await,
        }
    }

    /// Removes a local connection from a channel (announcing
    /// `member_removed` when its user left the channel cluster-wide).
    pub async fn unsubscribe(&self, app: &Arc<AppHub>, socket: SocketId, channel: &str) {
        match self {
            Adapter::Local(_) => {
                app.unsubscribe(socket, channel, &LocalRules::of(app));
            }
            Adapter::Redis(redis) => redis.unsubscribe(app, socket, channel).await,
        }
    }

    /// A local socket signed in as `user_id`; watchers hear `online` when it
    /// is the user's first signed-in socket anywhere.
    pub async fn user_signed_in(
        &self,
        app: &Arc<AppHub>,
        user_id: &Arc<str>,
        conn: &Arc<Connection>,
    ) {
        match self {
            Adapter::Local(_) => {
                if app.add_user(user_id, conn) {
                    app.notify_watchers(user_id, true);
                }
            }
            Adapter::Redis(redis) => redis.user_signed_in(app, user_id, conn).await,
        }
    }

    /// A signed-in local socket left; watchers hear `offline` when it was
    /// the user's last one anywhere.
    pub async fn user_signed_out(&self, app: &Arc<AppHub>, user_id: &str, socket: SocketId) {
        match self {
            Adapter::Local(_) => {
                if app.remove_user(user_id, socket) {
                    app.notify_watchers(user_id, false);
                }
            }
            Adapter::Redis(redis) => redis.user_signed_out(app, user_id, socket).await,
        }
    }

    /// Which of `user_ids` have a signed-in socket anywhere.
    pub async fn online(&self, app: &AppHub, user_ids: &[Arc<str>]) -> Vec<bool> {
        match self {
            Adapter::Local(_) => user_ids.iter().map(|id| app.is_online(id)).collect(),
            Adapter::Redis(redis) => redis.online(app, user_ids).await,
        }
    }

    /// Connections of the app on other nodes (for the connection quota).
    pub fn connections_elsewhere(&self, app: &AppHub) -> usize {
        match self {
            Adapter::Local(_) => 0,
            Adapter::Redis(redis) => redis.connections_elsewhere(app),
        }
    }

    /// The app's local connection count changed.
    pub fn connections_changed(&self, app: &AppHub) {
        if let Adapter::Redis(redis) = self {
            redis.connections_changed(app);
        }
    }

    /// Occupied channels (optionally by prefix) with their counts, cluster-wide.
    pub async fn channels(
        &self,
        app: &AppHub,
        prefix: Option<&str>,
    ) -> AdapterResult<Vec<(String, ChannelStats)>> {
        match self {
            Adapter::Local(_) => Ok(app.channels(prefix)),
            Adapter::Redis(redis) => redis.channels(app, prefix).await,
        }
    }

    /// One channel's counts, cluster-wide; `None` when unoccupied.
    pub async fn channel(&self, app: &AppHub, name: &str) -> AdapterResult<Option<ChannelStats>> {
        match self {
            Adapter::Local(_) => Ok(app.channel(name)),
            Adapter::Redis(redis) => redis.channel(app, name).await,
        }
    }

    /// Distinct members of a presence channel, cluster-wide.
    pub async fn channel_users(&self, app: &AppHub, name: &str) -> AdapterResult<Vec<String>> {
        match self {
            Adapter::Local(_) => Ok(app.channel_users(name)),
            Adapter::Redis(redis) => redis.channel_users(app, name).await,
        }
    }

    /// Whether the node is fully connected to the cluster (always true for
    /// a single node). Reported by the health endpoint.
    pub fn ready(&self) -> bool {
        match self {
            Adapter::Local(_) => true,
            Adapter::Redis(redis) => redis.ready(),
        }
    }

    /// The set of apps or their settings changed (reload).
    pub fn apps_changed(&self) {
        if let Adapter::Redis(redis) = self {
            redis.apps_changed();
        }
    }

    /// Tells the other nodes that app `id` changed in the app store.
    pub fn announce_app_change(&self, id: &str) {
        if let Adapter::Redis(redis) = self {
            redis.app_changed(id);
        }
    }

    /// Removes this node's share of the cluster state (graceful shutdown).
    pub async fn shutdown(&self) {
        if let Adapter::Redis(redis) = self {
            redis.shutdown().await;
        }
    }
}
