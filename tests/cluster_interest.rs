//! Interest-based routing: a node hears a channel's events only while it
//! serves the channel, and never misses one it should hear, through first
//! subscribes, churn and a Redis restart. Nodes run on a private
//! `redis-server`; relay traffic is read from each node's metrics.

#[macro_use]
mod common;

use common::redis_cluster::RedisCluster;
use common::redis_server::{Backend, RedisServer};
use common::{eventually, free_port, scrape, trigger, Client, Server};
use serde_json::json;
use std::time::Duration;

/// A cluster node with a metrics listener (returned with its port).
async fn node(redis_url: &str, env: &[(&str, &str)]) -> (Server, u16) {
    let metrics = free_port();
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{redis_url}\"\nnode_timeout = 3\nheartbeat_interval = 1\n"
    );
    let port = metrics.to_string();
    let mut vars = vec![("HERALD_METRICS_PORT", port.as_str())];
    vars.extend_from_slice(env);
    let server = Server::launch(Some(&config), &vars);
    server.wait_ready().await;
    (server, metrics)
}

/// Relay messages a node received on channel topics.
async fn heard_on_topics(metrics: u16) -> f64 {
    scrape(metrics)
        .await
        .get(r#"herald_relay_messages_total{direction="in",route="channel"}"#)
        .copied()
        .unwrap_or(0.0)
}

/// How many channel topics a node listens to.
async fn topics(metrics: u16) -> f64 {
    scrape(metrics)
        .await
        .get("herald_relay_topics")
        .copied()
        .unwrap_or(-1.0)
}

async fn send(server: &Server, channel: &str, data: &str) {
    let r = trigger(
        server,
        json!({"name": "e", "channel": channel, "data": data}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The relay topic of a public channel (see `src/adapter/redis/keys.rs`).
fn topic(channel: &str) -> String {
    format!("{{herald:app:app-id:{channel}}}:events")
}

async fn a_node_hears_only_the_channels_it_serves(redis: &impl Backend) {
    let (a, _) = node(&redis.url(), &[]).await;
    let (b, _) = node(&redis.url(), &[]).await;
    let (c, c_metrics) = node(&redis.url(), &[]).await;
    let mut on_b = Client::connect(&b).await;
    on_b.subscribe("stream").await;
    // On a Redis Cluster, a channel whose topic is on the same shard as
    // the stream's, so that the sentinel below is a barrier: one shard
    // sends in order.
    let shard = redis.shard_of(&topic("stream"));
    let elsewhere = (0..)
        .map(|n| format!("elsewhere-{n}"))
        .find(|c| redis.shard_of(&topic(c)) == shard)
        .expect("a channel on that shard");
    let mut on_c = Client::connect(&c).await;
    on_c.subscribe(&elsewhere).await;
    let before = heard_on_topics(c_metrics).await;

    for i in 0..200 {
        send(&a, "stream", &i.to_string()).await;
    }
    for i in 0..200 {
        assert_eq!(on_b.expect("e").await["raw_data"], i.to_string());
    }
    // The barrier: A publishes it after the stream, and C hears it on the
    // same subscription, so C has seen whatever it was going to see.
    send(&a, &elsewhere, "sentinel").await;
    assert_eq!(on_c.expect("e").await["raw_data"], "sentinel");
    assert_eq!(
        heard_on_topics(c_metrics).await - before,
        1.0,
        "C heard the stream it does not serve"
    );
    assert_eq!(topics(c_metrics).await, 1.0);
}

#[actix_rt::test]
async fn the_first_subscriber_gets_everything_published_after_its_success() {
    let redis = RedisServer::start();
    // B talks to Redis through 50 ms of latency each way: were B to confirm
    // a subscription before Redis has its topic subscribed, the event
    // published right after the confirmation would reach Redis first and
    // be lost.
    let slow = common::slow_proxy::start(redis.port, Duration::from_millis(50)).await;
    first_subscribers_miss_nothing(&redis.url(), &format!("redis://127.0.0.1:{slow}")).await;
}

/// The same on a Redis Cluster (without the latency: its nodes tell
/// clients their own addresses, which a proxy would have to rewrite).
#[actix_rt::test]
async fn the_first_subscriber_gets_everything_on_a_redis_cluster_too() {
    let redis = RedisCluster::start();
    first_subscribers_miss_nothing(&redis.url(), &redis.url()).await;
}

/// Node A publishes through `a_url`, node B subscribes through `b_url`.
async fn first_subscribers_miss_nothing(a_url: &str, b_url: &str) {
    let (a, _) = node(a_url, &[]).await;
    let (b, _) = node(b_url, &[]).await;
    let mut on_b = Client::connect(&b).await;
    for round in 0..30 {
        // A channel new to B: the subscribe makes B listen to it.
        let channel = format!("fresh-{round}");
        on_b.subscribe(&channel).await;
        send(&a, &channel, &round.to_string()).await;
        let got = on_b.expect("e").await;
        assert_eq!(got["channel"], channel);
        assert_eq!(got["raw_data"], round.to_string());
    }
    // Presence: the joiner's node listens before Redis decides the join,
    // so an event right after the success is heard too.
    let mut member = Client::connect(&b).await;
    for round in 0..10 {
        let channel = format!("presence-fresh-{round}");
        member.join(&channel, "u", json!(null)).await;
        send(&a, &channel, "after").await;
        assert_eq!(member.expect("e").await["raw_data"], "after");
    }
}

async fn unsubscribe_and_resubscribe_churn_loses_nothing(redis: &impl Backend) {
    // No linger: every unsubscribe really leaves the topic.
    let fast = [("HERALD_CLUSTER__INTEREST_LINGER_MS", "0")];
    let (a, _) = node(&redis.url(), &fast).await;
    let (b, b_metrics) = node(&redis.url(), &fast).await;
    let mut on_b = Client::connect(&b).await;
    for round in 0..60 {
        on_b.subscribe("churn").await;
        send(&a, "churn", &round.to_string()).await;
        assert_eq!(on_b.expect("e").await["raw_data"], round.to_string());
        on_b.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "churn"}}))
            .await;
        if round % 3 == 0 {
            // Every third round, come back only once B has left the topic.
            eventually("B stops listening to the channel", || async {
                topics(b_metrics).await == 0.0
            })
            .await;
        }
    }
}

#[actix_rt::test]
async fn a_redis_restart_brings_every_interest_back() {
    let mut redis = RedisServer::start();
    let (a, _) = node(&redis.url(), &[]).await;
    let (b, b_metrics) = node(&redis.url(), &[]).await;
    let mut on_b = Client::connect(&b).await;
    let channels: Vec<String> = (0..50).map(|i| format!("kept-{i}")).collect();
    for channel in &channels {
        on_b.subscribe(channel).await;
    }
    redis.restart();
    for server in [&a, &b] {
        eventually("the node is back in the cluster", || async {
            common::get(server, "/up", "").await.status == 200
        })
        .await;
    }
    // B subscribes its whole set on the new connection before it reads
    // from it: once it hears a probe on one channel, it hears them all.
    // (Probes sent before that are lost to B; later ones are skipped.)
    let before = heard_on_topics(b_metrics).await;
    eventually("B hears its channels again", || async {
        send(&a, &channels[0], "probe").await;
        heard_on_topics(b_metrics).await > before
    })
    .await;
    for (i, channel) in channels.iter().enumerate() {
        send(&a, channel, &i.to_string()).await;
        let got = loop {
            let got = on_b.expect("e").await;
            if got["raw_data"] != "probe" {
                break got;
            }
        };
        assert_eq!(got["channel"], json!(channel));
        assert_eq!(got["raw_data"], json!(i.to_string()));
    }
}

on_redis_and_redis_cluster!(
    a_node_hears_only_the_channels_it_serves,
    unsubscribe_and_resubscribe_churn_loses_nothing,
);
