//! This node's counts in Redis (subscribers per channel, connections per
//! app), kept apart from the relay: a count change only marks an entry
//! dirty, and one task writes the current absolute values of every dirty
//! entry as soon as it can. A flood of (un)subscribes therefore costs at
//! most one entry per channel, never queue space the relay needs, and a
//! failed write marks the node unhealthy so that its heartbeat rewrites its
//! whole share (`node::rebuild`) instead of leaving a count wrong.
//!
//! When an app sends `subscription_count`, a second pipeline then tells the
//! nodes serving each changed channel (on the channel's topic); each
//! recomputes the cluster-wide total and tells its own subscribers, so no
//! node ever relays a count that a later subscriber could receive out of
//! date.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::connection::Batch;
use super::relay::Command;
use super::Inner;
use crate::metrics::METRICS;
use crate::protocol::ChannelType;

/// A count of this node that changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dirty {
    Subscriptions { app: String, channel: String },
    Connections { app: String },
}

/// The dirty entries, and a wake-up for the writer.
#[derive(Default)]
pub struct DirtyCounts {
    entries: Mutex<HashSet<Dirty>>,
    wake: Notify,
}

impl DirtyCounts {
    pub fn mark(&self, dirty: Dirty) {
        let first = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries.insert(dirty) && entries.len() == 1
        };
        if first {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> HashSet<Dirty> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Writes dirty counts until the process ends: whatever changed while one
/// write was on its way goes out in the next.
pub async fn writer(inner: Arc<Inner>) {
    loop {
        inner.dirty.wake.notified().await;
        let dirty = inner.dirty.take();
        if dirty.is_empty() {
            continue;
        }
        // Counts are set by a script that also keeps the cluster-wide
        // totals, which decide the occupancy webhooks. (One pipeline per
        // app's slot on a Redis Cluster, see `connection`.)
        let mut pipe = Batch::new(&inner.redis).loading(&inner.scripts.count);
        // Channels whose counts other nodes announce, per app.
        let mut announced: Vec<(&str, &str)> = Vec::new();
        for entry in &dirty {
            match entry {
                Dirty::Subscriptions { app, channel } => {
                    let hub = inner.hub.by_id(app);
                    let count = hub.as_ref().map_or(0, |a| a.local_subscribers(channel));
                    if hub.is_some_and(|a| a.app().subscription_count)
                        && !ChannelType::of(channel).is_presence()
                    {
                        announced.push((app, channel));
                    }
                    let node_counts = inner.keys.subscriptions(app, &inner.keys.node);
                    inner.scripts.set_count(
                        pipe.on(&node_counts),
                        &node_counts,
                        &inner.keys.occupancy(app),
                        channel,
                        count,
                        &inner.hooks(app, channel),
                    );
                }
                Dirty::Connections { app } => {
                    let count = inner.hub.by_id(app).map_or(0, |a| a.connection_count());
                    let key = inner.keys.connections(app);
                    pipe.on(&key).hset(&key, &inner.keys.node, count).ignore();
                }
            }
        }
        if let Err(e) = pipe.send(&inner.redis).await {
            // The heartbeat rewrites the whole share once Redis answers.
            inner.mark_unhealthy(&e);
            continue;
        }
        // Only once the counts are written: the other nodes read them when
        // they hear this.
        let mut changes = Batch::new(&inner.redis);
        for (app, channel) in announced {
            let message = Command::CountChanged { channel }.encode(&inner.keys.node, app);
            METRICS.relay_out_channel.messages.inc();
            METRICS.relay_out_channel.bytes.inc_by(message.len() as u64);
            changes.publish(&inner.keys.topic(app, channel), &message);
        }
        if let Err(e) = changes.send(&inner.redis).await {
            inner.mark_unhealthy(&e);
        }
    }
}
