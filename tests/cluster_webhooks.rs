//! Webhooks of a cluster against a real `redis-server` and a local
//! receiver: occupancy and membership follow the cluster-wide state, so
//! they are reported once however many nodes see them; a dead node's
//! departures are reported by a survivor; a webhook its node could not
//! deliver before dying is delivered by another. On one Redis and on a
//! Redis Cluster.

#[macro_use]
mod common;

use std::collections::BTreeMap;

use common::redis_server::{Backend, RedisServer};
use common::webhook_receiver::{tally, Answer, Receiver};
use common::{Client, Server};
use serde_json::{json, Value};

/// A node on `redis` whose app sends webhooks to `url`.
async fn node(redis: &impl Backend, url: &str, debounce: u64) -> Server {
    let server = Server::with_config(&format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nwebhook_debounce = {debounce}\n\
         [[apps.webhooks]]\nurl = \"{url}\"\n",
        redis.url()
    ));
    server.wait_ready().await;
    server
}

fn is_barrier(name: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["name"] == "channel_occupied" && e["channel"] == name
}

/// Delivered events until each of `keys` (as in [`tally`]) was seen; the
/// order of events decided by different scripts is not fixed.
async fn delivered_all(hooks: &mut Receiver, keys: &[&str]) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    while !keys.iter().all(|k| tally(&events).contains_key(*k)) {
        let (more, _) = hooks.delivered_until(|_| true).await;
        events.extend(more);
    }
    events
}

/// Waits until no webhook of the outbox is read but unacknowledged.
async fn all_acknowledged(redis: &impl Backend, url: &str) {
    let group = herald::config::WebhookConfig::all_events(url).group_name();
    common::eventually("every webhook is acknowledged", || async {
        // The summary's first line is the number of pending entries.
        let summary = redis.cli(&["XPENDING", "{herald:app:app-id}:webhooks", &group]);
        summary.lines().next() == Some("0")
    })
    .await;
}

fn once(keys: &[&str]) -> BTreeMap<String, usize> {
    keys.iter().map(|k| (k.to_string(), 1)).collect()
}

async fn occupancy_and_membership_are_reported_once_per_cluster(redis: &impl Backend) {
    let mut hooks = Receiver::start().await;
    let a = node(redis, &hooks.url(), 0).await;
    let b = node(redis, &hooks.url(), 0).await;
    let mut on_a = Client::connect(&a).await;
    let mut on_b = Client::connect(&b).await;
    on_a.subscribe("shared").await;
    on_b.subscribe("shared").await;
    on_a.join("presence-both", "u1", json!(null)).await;
    on_b.join("presence-both", "u1", json!(null)).await;
    for channel in ["shared", "presence-both"] {
        for client in [&mut on_a, &mut on_b] {
            client
                .send(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
                .await;
            client.expect_nothing_pending().await;
        }
    }
    let reported = [
        "channel_occupied shared ",
        "channel_vacated shared ",
        "channel_occupied presence-both ",
        "channel_vacated presence-both ",
        "member_added presence-both u1",
        "member_removed presence-both u1",
    ];
    let mut events = delivered_all(&mut hooks, &reported).await;
    // Nothing more: a barrier, then the counts.
    let mut barrier = Client::connect(&b).await;
    barrier.subscribe("barrier").await;
    let (more, _) = hooks.delivered_until(is_barrier("barrier")).await;
    events.extend(more);
    let mut expected = once(&reported);
    expected.insert("channel_occupied barrier ".into(), 1);
    assert_eq!(tally(&events), expected, "{events:?}");
}

async fn a_reconnect_to_another_node_reports_nothing(redis: &impl Backend) {
    let mut hooks = Receiver::start().await;
    let a = node(redis, &hooks.url(), 2).await;
    let b = node(redis, &hooks.url(), 2).await;
    let mut on_a = Client::connect(&a).await;
    on_a.join("presence-page", "7", json!(null)).await;
    let arrived = [
        "channel_occupied presence-page ",
        "member_added presence-page 7",
    ];
    let events = delivered_all(&mut hooks, &arrived).await;
    assert_eq!(tally(&events), once(&arrived), "{events:?}");

    // The page reloads and lands on the other node.
    drop(on_a);
    let mut on_b = Client::connect(&b).await;
    on_b.join("presence-page", "7", json!(null)).await;
    let left_at = std::time::Instant::now();
    on_b.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-page"}}))
        .await;
    on_b.expect_nothing_pending().await;
    // Gone for good: only the final departure is reported, after the delay
    // (an uncancelled departure of the reload would come earlier).
    let left = [
        "channel_vacated presence-page ",
        "member_removed presence-page 7",
    ];
    let mut events = delivered_all(&mut hooks, &left).await;
    let waited = left_at.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1900),
        "{waited:?}"
    );
    // And nothing else: a barrier, then the whole tally.
    let mut barrier = Client::connect(&b).await;
    barrier.subscribe("barrier").await;
    let (more, _) = hooks.delivered_until(is_barrier("barrier")).await;
    events.extend(more);
    let mut expected = once(&left);
    expected.insert("channel_occupied barrier ".into(), 1);
    assert_eq!(tally(&events), expected, "{events:?}");
}

async fn a_killed_nodes_departures_are_reported_once(redis: &impl Backend) {
    let mut hooks = Receiver::start().await;
    let mut a = node(redis, &hooks.url(), 0).await;
    let b = node(redis, &hooks.url(), 0).await;
    let mut on_a = Client::connect(&a).await;
    let mut on_b = Client::connect(&b).await;
    on_a.join("presence-x", "u1", json!(null)).await;
    on_a.subscribe("only-a").await;
    on_b.join("presence-x", "u2", json!(null)).await;
    let arrived = [
        "channel_occupied presence-x ",
        "member_added presence-x u1",
        "channel_occupied only-a ",
        "member_added presence-x u2",
    ];
    let events = delivered_all(&mut hooks, &arrived).await;
    assert_eq!(tally(&events), once(&arrived), "{events:?}");
    // Delivery is at least once: a node killed between the receiver's
    // answer and its acknowledgement leaves the webhook to be sent again.
    // This test is about the departures, so it waits for the acks.
    all_acknowledged(redis, &hooks.url()).await;

    a.kill();
    // The survivor notices after node_timeout and reports what it implies.
    on_b.expect("pusher_internal:member_removed").await;
    let gone = ["member_removed presence-x u1", "channel_vacated only-a "];
    let mut events = delivered_all(&mut hooks, &gone).await;
    let mut barrier = Client::connect(&b).await;
    barrier.subscribe("barrier").await;
    let (more, _) = hooks.delivered_until(is_barrier("barrier")).await;
    events.extend(more);
    let mut expected = once(&gone);
    expected.insert("channel_occupied barrier ".into(), 1);
    assert_eq!(tally(&events), expected, "{events:?}");
}

async fn a_webhook_outlives_the_node_that_could_not_deliver_it(redis: &impl Backend) {
    let mut hooks = Receiver::start().await;
    hooks.answer(&[], Answer::Status(503));
    let mut a = node(redis, &hooks.url(), 0).await;
    let mut on_a = Client::connect(&a).await;
    on_a.subscribe("survivor").await;
    // Node a has read it and is retrying.
    let attempt = hooks.next().await;
    assert_eq!(attempt.answered, Some(503));
    assert_eq!(
        attempt.events,
        vec![json!({"name": "channel_occupied", "channel": "survivor"})]
    );

    let b = node(redis, &hooks.url(), 0).await;
    a.kill();
    hooks.answer(&[], Answer::Status(200));
    // Node b takes it over once a stops beating, and delivers it once.
    let (events, _) = hooks
        .delivered_until(|e| e["name"] == "channel_occupied" && e["channel"] == "survivor")
        .await;
    let mut barrier = Client::connect(&b).await;
    barrier.subscribe("barrier").await;
    let (more, _) = hooks.delivered_until(is_barrier("barrier")).await;
    let all: Vec<Value> = events.into_iter().chain(more).collect();
    let occupied = all
        .iter()
        .filter(|e| e["name"] == "channel_occupied" && e["channel"] == "survivor")
        .count();
    assert_eq!(occupied, 1, "{all:?}");
}

#[actix_rt::test]
async fn the_outbox_holds_only_what_some_url_takes() {
    let redis = RedisServer::start();
    let mut hooks = Receiver::start().await;
    let server = Server::with_config(&format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nwebhook_debounce = 0\n\
         [[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"client_event\"]\n",
        redis.url(),
        hooks.url()
    ));
    server.wait_ready().await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.join("presence-room", "1", json!(null)).await;
    b.join("presence-room", "2", json!(null)).await;
    a.expect("pusher_internal:member_added").await;
    b.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}))
        .await;
    a.expect("pusher_internal:member_removed").await;
    a.send(json!({"event": "client-hi", "channel": "presence-room", "data": {}}))
        .await;
    let hook = hooks.next().await;
    assert_eq!(hook.names(), ["client_event"]);
    // Occupancy and membership changes were decided, but none was written
    // to the outbox: the one URL takes client events only.
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let length: usize = redis::cmd("XLEN")
        .arg("{herald:app:app-id}:webhooks")
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert_eq!(length, 1);
}

/// `subscription_count` is reported by the node where the count changed,
/// with the cluster-wide total, once per change.
async fn subscription_counts_are_reported_with_the_cluster_total(redis: &impl Backend) {
    let mut hooks = Receiver::start().await;
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\
         [[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"subscription_count\"]\n",
        redis.url(),
        hooks.url()
    );
    let (a, b) = (Server::with_config(&config), Server::with_config(&config));
    a.wait_ready().await;
    b.wait_ready().await;
    let count = |n: usize| json!([{"name": "subscription_count", "channel": "counted", "subscription_count": n}]);
    let mut on_a = Client::connect(&a).await;
    on_a.subscribe("counted").await;
    assert_eq!(json!(hooks.next().await.events), count(1));
    let mut on_b = Client::connect(&b).await;
    on_b.subscribe("counted").await;
    assert_eq!(json!(hooks.next().await.events), count(2));
    drop(on_b);
    assert_eq!(json!(hooks.next().await.events), count(1));
    // Nothing more about it: a change on another channel is next.
    on_a.subscribe("barrier").await;
    assert_eq!(
        json!(hooks.next().await.events),
        json!([{"name": "subscription_count", "channel": "barrier", "subscription_count": 1}])
    );
}

on_redis_and_redis_cluster!(
    occupancy_and_membership_are_reported_once_per_cluster,
    a_reconnect_to_another_node_reports_nothing,
    a_killed_nodes_departures_are_reported_once,
    a_webhook_outlives_the_node_that_could_not_deliver_it,
    subscription_counts_are_reported_with_the_cluster_total,
);
