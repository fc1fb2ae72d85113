//! The HTTP API's counting queries in a cluster: occupied channels, one
//! channel's counts and a presence channel's users, summed over the live
//! nodes (one field per node and channel, never whole hashes where one
//! channel is asked about).

use std::collections::HashMap;

use redis::AsyncCommands;

use super::{unavailable, Inner, RedisAdapter};
use crate::adapter::AdapterResult;
use crate::hub::{AppHub, ChannelStats};
use crate::protocol::ChannelType;

impl Inner {
    /// The ids of nodes whose heartbeat is current.
    pub(super) async fn live_nodes(&self) -> Result<Vec<String>, redis::RedisError> {
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

impl RedisAdapter {
    pub(in crate::adapter) async fn channels(
        &self,
        app: &AppHub,
        prefix: Option<&str>,
    ) -> AdapterResult<Vec<(String, ChannelStats)>> {
        self.inner
            .cluster_channels(app, prefix)
            .await
            .map_err(unavailable)
    }

    pub(in crate::adapter) async fn channel(
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

    pub(in crate::adapter) async fn channel_users(
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
}
