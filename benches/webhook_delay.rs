//! Delay from an event to its webhook (not a test): client events sent one
//! at a time, each carrying its send time, timed when the receiver gets
//! the `client_event` webhook; on one node (in-memory queues) and on two
//! nodes sharing a private redis-server (the Redis stream outbox, events
//! sent on both nodes). Reports p50/p99.
//!
//! `cargo bench --bench webhook_delay` (env: BENCH_EVENTS, default 200).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::webhook_receiver::Receiver;
use common::{env_or, percentiles, Client, Server};
use serde_json::json;

fn config(cluster: &str, url: &str) -> String {
    format!(
        "{cluster}[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\
         client_event_rate = 0\n[[apps.webhooks]]\nurl = \"{url}\"\nevent_types = [\"client_event\"]\n"
    )
}

/// Sends client events from one client per node, alternating, and times
/// each one's webhook.
async fn measure(label: &str, nodes: &[&Server], hooks: &mut Receiver) {
    let events = env_or("BENCH_EVENTS", 200);
    let mut senders = Vec::new();
    for node in nodes {
        let mut client = Client::connect(*node).await;
        client.subscribe_private("private-timed").await;
        senders.push(client);
    }
    let started = Instant::now();
    let mut delays = Vec::with_capacity(events);
    for n in 0..events {
        let sender = &mut senders[n % nodes.len()];
        let sent_us = started.elapsed().as_micros() as u64;
        sender
            .send(json!({"event": "client-t", "channel": "private-timed", "data": {"n": n, "us": sent_us}}))
            .await;
        let hook = hooks.next_within(Duration::from_secs(10)).await;
        let now_us = started.elapsed().as_micros() as u64;
        for event in hook.events {
            let data: serde_json::Value =
                serde_json::from_str(event["data"].as_str().unwrap_or("{}")).unwrap_or_default();
            if let Some(us) = data["us"].as_u64() {
                delays.push(now_us - us);
            }
        }
    }
    percentiles(label, delays);
}

#[actix_rt::main]
async fn main() {
    let mut hooks = Receiver::start().await;
    {
        let node = Server::with_config(&config("", &hooks.url()));
        measure("client event -> webhook, one node", &[&node], &mut hooks).await;
    }
    let redis = RedisServer::start();
    let cluster = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n",
        redis.url()
    );
    let a = Server::with_config(&config(&cluster, &hooks.url()));
    let b = Server::with_config(&config(&cluster, &hooks.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    measure("client event -> webhook, two nodes", &[&a, &b], &mut hooks).await;
}
