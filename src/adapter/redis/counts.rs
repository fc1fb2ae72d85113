//! Cluster-wide subscription counts: each node writes its own count per
//! channel (`state`); a changed channel is marked dirty and the flusher
//! announces the cluster total (`subscription_count` events to this node's
//! subscribers, and the webhook from the node where it changed), coalesced
//! and throttled for crowds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{state, Inner};
use crate::adapter::throttle_count;
use crate::hub::{AppEvent, AppHub, EventKind};
use crate::protocol::{messages, ChannelType};

impl Inner {
    /// This node's subscriber count of a channel changed.
    pub(super) fn write_subscriptions(&self, app: &AppHub, channel: &str) {
        self.dirty.mark(state::Dirty::Subscriptions {
            app: app.id().to_owned(),
            channel: channel.to_owned(),
        });
    }

    /// Notes that a channel's subscriber count may have changed; the
    /// flusher announces it (coalesced, and only when it really changed).
    /// Nothing per client message spawns work.
    pub(super) fn announce_count(&self, app: &AppHub, channel: &str) {
        let wanted =
            app.app().subscription_count || app.observers().wants(EventKind::SubscriptionCount);
        if !wanted || ChannelType::of(channel).is_presence() {
            return;
        }
        self.mark_counts_dirty([format!("{}\n{channel}", app.id())], true);
    }

    /// Channels (`app\nchannel`) whose cluster-wide count must be
    /// recomputed at the next flush.
    pub(super) fn mark_counts_dirty(&self, keys: impl IntoIterator<Item = String>, here: bool) {
        let mut dirty = self.counts_dirty.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            *dirty.entry(key).or_insert(false) |= here;
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
            app.emit(AppEvent::SubscriptionCount {
                channel,
                count: total,
            });
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
}

/// How often changed subscription counts are announced.
const COUNT_FLUSH: Duration = Duration::from_millis(100);

/// Announces changed subscription counts every [`COUNT_FLUSH`]: one pass
/// over the channels that changed, however many (un)subscribes there were,
/// with one Redis round trip for the live nodes and one per app.
pub(super) async fn counts_flusher(inner: Arc<Inner>) {
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
