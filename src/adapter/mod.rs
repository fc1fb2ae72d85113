//! The seam between a node's hub and the rest of the cluster.
//!
//! Everything that must look the same from every node goes through an
//! [`Adapter`]: publishing (local fan-out plus relay to other nodes), cache
//! channel payloads, terminating a user's sockets, and the counting queries
//! of the HTTP API. The [`LocalAdapter`] is the single-node default, where
//! the local hub is the whole truth.

mod local;

use std::sync::Arc;

use bytestring::ByteString;
use futures_util::future::BoxFuture;

pub use local::LocalAdapter;

use crate::hub::{AppHub, ChannelStats};
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

    /// Keeps `frame` as the cache channel's last event, readable by every node.
    fn store_cached(&self, app: &AppHub, channel: &str, frame: ByteString);

    /// Closes every socket signed in as `user_id`, on every node.
    fn terminate_user(&self, app: &AppHub, user_id: &str);

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
}
