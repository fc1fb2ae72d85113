//! Many connections on one node: 15,000 WebSocket connections (lean
//! clients, `common::lean`) on one Herald, all subscribed to one channel.
//! Each costs at most 4.5 KiB of the server's memory (the previous main:
//! 5.6 KiB), one event reaches every one of them, and a subscription made
//! while that fan-out runs is answered.
//!
//! One test in this file: it raises this process's open-file limit to its
//! hard limit (15,000 sockets on each side), which the server inherits.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lean::Lean;
use common::{raise_file_limit, rss_kib, trigger, Server};
use serde_json::json;

fn connections() -> usize {
    common::env_or("HERALD_MANY_CONNECTIONS", 15_000)
}

#[actix_rt::test]
async fn fifteen_thousand_connections_on_one_node() {
    let n = connections();
    let limit = raise_file_limit();
    assert!(
        limit as usize > n + 1000,
        "the open-file limit ({limit}) leaves no room for {n} connections"
    );
    let server = Server::with_config(
        "[server]\nnew_connections_per_address_per_second = 0\nmax_connections_per_address = 0\n",
    );
    let port = server.port;
    let warm = Lean::connect(port, "app-key")
        .await
        .expect("first connection");
    let before = rss_kib(server.pid());

    // Connected and subscribed, 200 at a time.
    let started = Instant::now();
    let mut clients = Vec::with_capacity(n);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        pending.spawn_local(async move {
            let mut client = Lean::connect(port, "app-key").await.expect("connects");
            client.subscribe("everyone").await.expect("subscribes");
            client
        });
        if pending.len() >= 200 || i + 1 == n {
            while let Some(client) = pending.join_next().await {
                clients.push(client.expect("client task"));
            }
        }
    }
    let connect_time = started.elapsed();
    let after = rss_kib(server.pid());
    let per_connection = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{n} connections in {connect_time:?} ({:.0}/s): {per_connection:.2} KiB of RSS each",
        n as f64 / connect_time.as_secs_f64()
    );
    assert!(
        per_connection <= 4.5,
        "{per_connection:.2} KiB of RSS per idle subscribed connection"
    );

    // One event to all; meanwhile another connection subscribes elsewhere.
    let times = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let mut readers = tokio::task::JoinSet::new();
    let sent = Instant::now();
    for mut client in clients {
        let times = times.clone();
        readers.spawn_local(async move {
            client.expect("\"big-news\"").await.expect("the event");
            times.lock().expect("times").push(sent.elapsed());
            client
        });
    }
    let mut late = warm;
    let r = trigger(
        &server,
        json!({"name": "big-news", "channel": "everyone", "data": "{}"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let asked = Instant::now();
    late.subscribe("elsewhere")
        .await
        .expect("answered during the fan-out");
    let subscribe_time = asked.elapsed();
    let mut clients = Vec::with_capacity(n);
    while let Some(client) = readers.join_next().await {
        clients.push(client.expect("every client got the event"));
    }
    let mut times = times.lock().expect("times").clone();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "one event to {n}: p50 {:?}, p99 {:?}, last {:?}; a subscribe during it answered in {subscribe_time:?}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert_eq!(times.len(), n);
    assert!(
        at(1.0) < Duration::from_secs(20),
        "the last got it after {:?}",
        at(1.0)
    );
    assert!(
        subscribe_time < Duration::from_secs(2),
        "a subscribe during the fan-out took {subscribe_time:?}"
    );
    drop(clients);
}
