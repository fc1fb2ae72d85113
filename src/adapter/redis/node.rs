//! A node's life in the cluster: heartbeats, noticing dead nodes and
//! removing their share of the state, rewriting its own share whenever Redis
//! (re)appears, and leaving cleanly on shutdown.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::streams::{StreamClaimOptions, StreamPendingCountReply, StreamPendingReply};
use redis::AsyncCommands;
use tracing::{debug, info, warn};

use super::scripts::{no_hooks, Announce, Hooks};
use super::{Inner, ONLINE};
use crate::hub::AppHub;
use crate::protocol::messages;

/// Beats every `heartbeat_interval` until the process ends.
pub(super) async fn heartbeat(inner: std::sync::Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(inner.config.heartbeat_interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        inner.check_relay();
        let (announced, epoch) = match beat(&inner).await {
            Ok(beat) => beat,
            Err(e) => {
                inner.mark_unhealthy(&e);
                continue;
            }
        };
        // Redis restarted (empty) when the epoch changed: the other nodes'
        // clients never heard our members leave, so re-adding them must be
        // silent. Otherwise we were presumed dead and purged, and our
        // members' return is announced.
        let (same_redis, restarted) = {
            let mut last = inner.epoch.lock().unwrap_or_else(|p| p.into_inner());
            let same = last.as_deref() == Some(epoch.as_str());
            let restarted = last.is_some() && !same;
            *last = Some(epoch);
            (same, restarted)
        };
        if restarted {
            // A new Redis numbers member events from 1 again.
            for app in inner.hub.apps() {
                app.restart_member_order();
            }
        }
        // A node missing from the node set means Redis lost our share (it
        // restarted empty, or we were presumed dead): write it again. So
        // does a failover: the promoted replica may lack our last writes.
        if announced || inner.master_moved() || !inner.healthy() {
            if inner.healthy.swap(false, Ordering::AcqRel) {
                warn!("Redis no longer holds this node's state; rewriting it");
            }
            match rebuild(&inner, same_redis).await {
                Ok(()) => {
                    inner.healthy.store(true, Ordering::Release);
                    info!(node = %inner.keys.node, "joined the Redis cluster; this node's state is written");
                }
                Err(e) => {
                    warn!("could not write this node's state to Redis: {e}");
                    continue;
                }
            }
        }
        if let Err(e) = watch_others(&inner).await {
            inner.mark_unhealthy(&e);
        }
        if inner.healthy() {
            if let Err(e) = converge(&inner).await {
                inner.mark_unhealthy(&e);
            }
        }
    }
}

/// Refreshes the heartbeat. Returns whether the node had to be added to the
/// node set again, and the Redis epoch (a random value set once per Redis
/// lifetime, so a restart shows as a new epoch).
async fn beat(inner: &Inner) -> redis::RedisResult<(bool, String)> {
    let mut redis = inner.redis.clone();
    let (added, epoch): (u32, String) = redis::pipe()
        .set_ex(
            inner.keys.alive(&inner.keys.node),
            1,
            inner.config.node_timeout,
        )
        .ignore()
        .sadd(inner.keys.nodes(), &inner.keys.node)
        .cmd("SET")
        .arg(inner.keys.epoch())
        .arg(format!("{:016x}", rand::random::<u64>()))
        .arg("NX")
        .ignore()
        .get(inner.keys.epoch())
        .query_async(&mut redis)
        .await?;
    Ok((added == 1, epoch))
}

/// Brings the local subscribers of each presence channel back to the truth
/// when they missed member events (the relay was down, Redis was away or
/// replaced): Redis's version of the channel is ahead of what was delivered
/// here, at two checks in a row. They are shown the roster again, read
/// together with its version, and get the events after it as usual.
async fn converge(inner: &Inner) -> redis::RedisResult<()> {
    let mut redis = inner.redis.clone();
    for app in inner.hub.apps() {
        let channels = app.presence_channels();
        if channels.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for channel in &channels {
            pipe.get(
                inner
                    .keys
                    .presence(app.id(), channel, &inner.keys.node)
                    .version,
            );
        }
        let versions: Vec<Option<u64>> = pipe.query_async(&mut redis).await?;
        for (channel, version) in channels.iter().zip(versions) {
            if !app.missed_member_events(channel, version.unwrap_or(0)) {
                continue;
            }
            let keys = inner.keys.presence(app.id(), channel, &inner.keys.node);
            let (version, members): (Option<u64>, Vec<(String, String)>) = redis::pipe()
                .atomic()
                .get(&keys.version)
                .hgetall(&keys.info)
                .query_async(&mut redis)
                .await?;
            // Through the fan-out: after the member events it supersedes.
            let frame =
                messages::subscription_succeeded(channel, &super::presence::roster(&members));
            inner.fanout.deliver(frame, |visit| {
                app.resync_roster(channel, version.unwrap_or(0), visit)
            });
            info!(channel = %channel, "presence roster shown again after missed member events");
        }
        debug!(
            app = app.id(),
            channels = channels.len(),
            "presence versions checked"
        );
    }
    Ok(())
}

/// Refreshes other nodes' connection counts and purges dead nodes.
async fn watch_others(inner: &Inner) -> redis::RedisResult<()> {
    let mut redis = inner.redis.clone();
    let nodes: Vec<String> = redis.smembers(inner.keys.nodes()).await?;
    let live = inner.live_nodes().await?;
    let live: HashSet<&String> = live.iter().collect();
    for node in nodes
        .iter()
        .filter(|n| !live.contains(n) && **n != inner.keys.node)
    {
        let lock: bool = redis::cmd("SET")
            .arg(inner.keys.purge_lock(node))
            .arg(&inner.keys.node)
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async::<Option<String>>(&mut redis)
            .await?
            .is_some();
        if lock {
            let removed = purge(inner, node).await?;
            info!(
                "node {node} stopped beating; removed its state ({removed} presence members left)"
            );
        }
    }
    tend_outbox(inner, &live).await?;
    for app in inner.hub.apps() {
        let counts: Vec<(String, usize)> = redis.hgetall(inner.keys.connections(app.id())).await?;
        let elsewhere = counts
            .iter()
            .filter(|(node, _)| *node != inner.keys.node && live.contains(node))
            .map(|(_, n)| n)
            .sum();
        inner.elsewhere.insert(app.id().to_owned(), elsewhere);
    }
    Ok(())
}

/// Webhook outbox upkeep, on every beat: departures whose debounce delay
/// is over go out (a script, so once however many nodes run it), and what
/// nodes no longer alive had read but not delivered is taken over.
async fn tend_outbox(inner: &Inner, live: &HashSet<&String>) -> redis::RedisResult<()> {
    let mut redis = inner.redis.clone();
    for app in inner.hub.apps() {
        let hooks = inner.hooks(app.id(), "");
        if hooks.stream.is_empty() {
            continue;
        }
        // A script call moves at most 100; a purged node's many departures
        // go out within this beat, up to a bound.
        for _ in 0..100 {
            if inner.scripts.promote(&mut redis, &hooks).await? < 100 {
                break;
            }
        }
        for webhook in &app.app().webhooks {
            let group = webhook.group_name();
            take_over(inner, &hooks.stream, &group, live).await?;
        }
    }
    Ok(())
}

/// Claims the entries of one URL's consumer group that departed nodes
/// had read and not acknowledged. Claiming needs them idle for a second,
/// so two survivors never both take the same entry.
async fn take_over(
    inner: &Inner,
    stream: &str,
    group: &str,
    live: &HashSet<&String>,
) -> redis::RedisResult<()> {
    let mut redis = inner.redis.clone();
    let summary: StreamPendingReply = match redis.xpending(stream, group).await {
        Ok(summary) => summary,
        // No group yet: the consumers create it.
        Err(e) if e.code() == Some("NOGROUP") => return Ok(()),
        Err(e) => return Err(e),
    };
    let StreamPendingReply::Data(data) = summary else {
        return Ok(());
    };
    for consumer in data.consumers {
        if consumer.name == inner.keys.node || live.contains(&consumer.name) {
            continue;
        }
        let pending: StreamPendingCountReply = redis
            .xpending_consumer_count(stream, group, "-", "+", 100, &consumer.name)
            .await?;
        let ids: Vec<&str> = pending.ids.iter().map(|p| p.id.as_str()).collect();
        if ids.is_empty() {
            redis
                .xgroup_delconsumer::<_, _, _, ()>(stream, group, &consumer.name)
                .await?;
            continue;
        }
        let claimed: Vec<String> = redis
            .xclaim_options(
                stream,
                group,
                &inner.keys.node,
                1000,
                &ids,
                StreamClaimOptions::default().with_justid(),
            )
            .await?;
        if !claimed.is_empty() {
            info!(
                "took over {} webhook(s) that node {} had not delivered",
                claimed.len(),
                consumer.name
            );
        }
    }
    Ok(())
}

/// Removes a node's whole share, announcing `member_removed` on every node
/// for users who were only there. Returns how many members left.
async fn purge(inner: &Inner, node: &str) -> redis::RedisResult<usize> {
    let mut redis = inner.redis.clone();
    let mut removed_total = 0;
    for app in inner.hub.apps() {
        let app_id = app.id();
        let channels: Vec<String> = redis
            .smembers(inner.keys.node_presence(app_id, node))
            .await?;
        for channel in &channels {
            let keys = inner.keys.presence(app_id, channel, node);
            // Departures on real channels are published by the script, in
            // order with every other member event of the channel.
            let topic = if channel == ONLINE {
                String::new()
            } else {
                inner.keys.topic(app_id, channel)
            };
            let announce = Announce {
                topic: &topic,
                origin: &inner.keys.node,
                app: app_id,
                channel,
                hooks: inner.hooks(app_id, channel),
            };
            let (_, removed) = inner
                .scripts
                .replace(&mut redis, &keys, &[], &announce, false)
                .await?;
            removed_total += removed.len();
            if channel == ONLINE {
                for user in removed {
                    inner.announce_online(&app, &user, false);
                }
            }
        }
        // Its subscribers leave the cluster-wide counts (occupancy webhooks).
        let hooks = inner.hooks(app_id, "");
        write_counts(inner, app_id, node, &[], &hooks).await?;
        // One slot per app (see `keys`): one pipeline each.
        redis::pipe()
            .hdel(inner.keys.connections(app_id), node)
            .ignore()
            .del(inner.keys.node_presence(app_id, node))
            .ignore()
            .query_async::<()>(&mut redis)
            .await?;
    }
    redis::pipe()
        .del(inner.keys.alive(node))
        .ignore()
        .srem(inner.keys.nodes(), node)
        .ignore()
        .query_async::<()>(&mut redis)
        .await?;
    Ok(removed_total)
}

/// Replaces `node`'s subscriber counts of an app, keeping the
/// cluster-wide totals (and the occupancy webhooks they decide) right.
async fn write_counts(
    inner: &Inner,
    app_id: &str,
    node: &str,
    counts: &[(String, usize)],
    hooks: &Hooks,
) -> redis::RedisResult<()> {
    inner
        .scripts
        .replace_counts(
            &mut inner.redis.clone(),
            &inner.keys.subscriptions(app_id, node),
            &inner.keys.occupancy(app_id),
            counts,
            hooks,
        )
        .await
}

/// Writes this node's whole share from the local hub: subscription and
/// connection counts, and its presence members. With `announce`, the other
/// nodes are told of the joins and leaves Redis missed meanwhile.
async fn rebuild(inner: &Inner, announce: bool) -> redis::RedisResult<()> {
    let mut redis = inner.redis.clone();
    let node = &inner.keys.node;
    for app in inner.hub.apps() {
        let app_id = app.id();
        let stored: Vec<String> = redis
            .smembers(inner.keys.node_presence(app_id, node))
            .await?;
        let counts: Vec<(String, usize)> = app
            .channels(None)
            .into_iter()
            .map(|(channel, stats)| (channel, stats.subscription_count))
            .collect();
        let hooks = if announce {
            inner.hooks(app_id, "")
        } else {
            no_hooks()
        };
        write_counts(inner, app_id, node, &counts, &hooks).await?;
        let mut pipe = redis::pipe();
        pipe.hset(
            inner.keys.connections(app.id()),
            node,
            app.connection_count(),
        )
        .ignore();
        pipe.query_async::<()>(&mut redis).await?;
        rebuild_presence(inner, &app, &stored, announce).await?;
    }
    Ok(())
}

async fn rebuild_presence(
    inner: &Inner,
    app: &AppHub,
    stored: &[String],
    announce: bool,
) -> redis::RedisResult<()> {
    let mut redis = inner.redis.clone();
    let node = &inner.keys.node;
    let mut local = app.local_presence();
    // Signed-in users are the members of the ONLINE pseudo channel.
    let null = crate::hub::presence::null_info();
    local.push((
        ONLINE.to_owned(),
        app.local_users()
            .into_iter()
            .map(|(id, n)| (id, n, null.clone()))
            .collect(),
    ));
    let mut channels: Vec<String> = local.iter().map(|(c, _)| c.clone()).collect();
    for channel in stored {
        if !channels.contains(channel) {
            channels.push(channel.clone());
        }
    }
    for channel in channels {
        let members: Vec<(String, u32, String)> = local
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, m)| {
                m.iter()
                    .map(|(id, n, info)| (id.to_string(), *n, info.get().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let keys = inner.keys.presence(app.id(), &channel, node);
        // Other nodes' sockets hear of the differences (in order with the
        // channel's other member events); ours already saw them while Redis
        // was away. After a Redis restart nothing is announced at all.
        let topic = if announce && channel != ONLINE {
            inner.keys.topic(app.id(), &channel)
        } else {
            String::new()
        };
        // Webhooks likewise: only for changes Redis missed, not for a
        // restarted Redis relearning what was reported before.
        let hooks = if announce {
            inner.hooks(app.id(), &channel)
        } else {
            no_hooks()
        };
        let announcement = Announce {
            topic: &topic,
            origin: &inner.keys.node,
            app: app.id(),
            channel: &channel,
            hooks,
        };
        let (added, removed) = inner
            .scripts
            .replace(&mut redis, &keys, &members, &announcement, true)
            .await?;
        let node_presence = inner.keys.node_presence(app.id(), node);
        if members.is_empty() {
            redis.srem::<_, _, ()>(node_presence, &channel).await?;
        } else {
            redis.sadd::<_, _, ()>(node_presence, &channel).await?;
        }
        if !announce {
            continue;
        }
        // Local sockets already heard of these changes while Redis was away.
        if channel == ONLINE {
            for (users, online) in [(added, true), (removed, false)] {
                for user in users {
                    inner.relay(
                        app,
                        super::relay::Command::Watchlist {
                            user_id: &user,
                            online,
                        },
                    );
                }
            }
        }
    }
    Ok(())
}

/// Graceful shutdown: remove this node's share at once.
pub(super) async fn leave_cluster(inner: &Inner) {
    // Leaving is final: no beat may register this node again. A beat
    // already sent still runs before the purge (same connection, in order).
    if let Some(heartbeat) = inner.heartbeat.get() {
        heartbeat.abort();
    }
    inner.healthy.store(false, Ordering::Release);
    match purge(inner, &inner.keys.node).await {
        Ok(n) => info!("left the cluster ({n} presence members removed)"),
        Err(e) => warn!("could not remove this node's state from Redis: {e}"),
    }
    // Deliver the last relayed announcements before the process exits.
    let _ = tokio::time::timeout(Duration::from_secs(2), inner.writer.flush()).await;
}
