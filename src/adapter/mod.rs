//! The seam between a node's hub and the rest of the cluster.
//!
//! Everything that must look the same from every node goes through an
//! [`Adapter`]: publishing (local fan-out plus relay to other nodes),
//! joining and leaving channels (presence membership is decided
//! cluster-wide), cache channel payloads, terminating a user's sockets,
//! connection counts and the counting queries of the HTTP API. The
//! [`LocalAdapter`] is the single-node default, where the local hub is the
//! whole truth; the [`RedisAdapter`] shares state through Redis.

mod local;
pub mod redis;

use std::sync::Arc;

use bytestring::ByteString;
use futures_util::future::BoxFuture;

pub use self::redis::RedisAdapter;
pub use local::LocalAdapter;

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
pub trait Adapter: Send + Sync + 'static {
    /// Delivers `frame` to every subscriber of `channel`, on every node,
    /// except the socket `except`.
    fn publish(&self, app: &AppHub, channel: &str, frame: ByteString, except: Option<SocketId>);

    /// Like [`Adapter::publish`], and every node keeps `frame` as the cache
    /// channel's last event for later subscribers.
    fn publish_cached(
        &self,
        app: &AppHub,
        channel: &str,
        frame: ByteString,
        except: Option<SocketId>,
    );

    /// Adds an API event to the channel's polling history (one history for
    /// the whole cluster) and wakes long-polls. Call before publishing it.
    fn record(&self, app: &AppHub, channel: &str, event: &str, data: &str);

    /// A channel's polling history after `cursor` (see [`Read`]).
    fn history(
        &self,
        app: Arc<AppHub>,
        channel: String,
        cursor: Option<String>,
        limit: usize,
    ) -> BoxFuture<'static, AdapterResult<Read>>;

    /// Closes every socket signed in as `user_id`, on every node.
    fn terminate_user(&self, app: &AppHub, user_id: &str);

    /// Adds a local connection to a channel. For presence channels the
    /// member limit and `member_added` are decided cluster-wide.
    fn subscribe(
        &self,
        app: Arc<AppHub>,
        conn: Arc<Connection>,
        channel: String,
        member: Option<MemberInfo>,
    ) -> BoxFuture<'static, Result<(), SubscribeError>>;

    /// Removes a local connection from a channel (announcing
    /// `member_removed` when its user left the channel cluster-wide).
    fn unsubscribe(
        &self,
        app: Arc<AppHub>,
        socket: SocketId,
        channel: String,
    ) -> BoxFuture<'static, ()>;

    /// A local socket signed in as `user_id`; watchers hear `online` when it
    /// is the user's first signed-in socket anywhere.
    fn user_signed_in(
        &self,
        app: Arc<AppHub>,
        user_id: Arc<str>,
        conn: Arc<Connection>,
    ) -> BoxFuture<'static, ()>;

    /// A signed-in local socket left; watchers hear `offline` when it was
    /// the user's last one anywhere.
    fn user_signed_out(
        &self,
        app: Arc<AppHub>,
        user_id: Arc<str>,
        socket: SocketId,
    ) -> BoxFuture<'static, ()>;

    /// Which of `user_ids` have a signed-in socket anywhere.
    fn online(&self, app: Arc<AppHub>, user_ids: Vec<Arc<str>>) -> BoxFuture<'static, Vec<bool>>;

    /// Connections of the app on other nodes (for the connection quota).
    fn connections_elsewhere(&self, app: &AppHub) -> usize;

    /// The app's local connection count changed.
    fn connections_changed(&self, app: &AppHub);

    /// Occupied channels (optionally by prefix) with their counts, cluster-wide.
    fn channels(
        &self,
        app: Arc<AppHub>,
        prefix: Option<String>,
    ) -> BoxFuture<'static, AdapterResult<Vec<(String, ChannelStats)>>>;

    /// One channel's counts, cluster-wide; `None` when unoccupied.
    fn channel(
        &self,
        app: Arc<AppHub>,
        name: String,
    ) -> BoxFuture<'static, AdapterResult<Option<ChannelStats>>>;

    /// Distinct members of a presence channel, cluster-wide.
    fn channel_users(
        &self,
        app: Arc<AppHub>,
        name: String,
    ) -> BoxFuture<'static, AdapterResult<Vec<String>>>;

    /// Whether the node is fully connected to the cluster (always true for
    /// a single node). Reported by the health endpoint.
    fn ready(&self) -> bool;

    /// Removes this node's share of the cluster state (graceful shutdown).
    fn shutdown(&self) -> BoxFuture<'static, ()>;
}
