//! The cluster's webhook outbox, as far as the adapter owns it: what
//! webhook delivery (`crate::webhooks`) needs to read and acknowledge each
//! app's Redis stream. The scripts write occupancy and membership events
//! into it (`scripts`), survivors claim a dead node's pending ones (`node`).

use std::time::Duration;

use super::connection::Redis;
use super::RedisAdapter;

/// What cluster delivery needs from the Redis adapter.
pub struct Outbox {
    /// Makes a connection of its own whose commands may take the given
    /// time to answer.
    #[allow(clippy::type_complexity)]
    pub connect: Box<dyn Fn(Duration) -> Result<Redis, String> + Send + Sync>,
    /// This node's id: its consumer name in every group.
    pub node: String,
    /// The outbox stream of an app id.
    pub stream_of: Box<dyn Fn(&str) -> String + Send + Sync>,
}

impl RedisAdapter {
    /// What the webhook service needs to deliver from this cluster's
    /// outbox.
    pub fn webhook_outbox(&self) -> Outbox {
        Outbox {
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
}
