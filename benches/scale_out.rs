//! Scale-out benchmark (not a test): several nodes on one Redis, each
//! serving a disjoint share of the channels, under a fixed total publish
//! rate. Reports the relay messages each node received (with interest-based
//! routing a node hears only its share), the servers' CPU per delivery and
//! the latency of cross-node deliveries.
//!
//! `cargo bench --bench scale_out` (env: BENCH_NODES 4, BENCH_CHANNELS 1000,
//! BENCH_RATE events/s 2000, BENCH_SECONDS 10; BENCH_REDIS=cluster runs the
//! nodes on a Redis Cluster of three masters and reports each master's
//! CPU; HERALD_BENCH_BIN runs another build of herald, e.g. an older one,
//! for comparison).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::redis_cluster::RedisCluster;
use common::redis_server::{Backend, RedisServer};
use common::{cpu_time, env_or, free_port, scrape, Client, Server};
use serde_json::json;

/// Relay messages a node has received, whatever their route.
async fn relay_in(metrics: u16) -> f64 {
    scrape(metrics)
        .await
        .iter()
        .filter(|(name, _)| name.starts_with(r#"herald_relay_messages_total{direction="in""#))
        .map(|(_, n)| n)
        .sum()
}

#[actix_rt::main]
async fn main() {
    if std::env::var("BENCH_REDIS").as_deref() == Ok("cluster") {
        run(&RedisCluster::start(), "a 3-master Redis Cluster").await
    } else {
        run(&RedisServer::start(), "one Redis").await
    }
}

async fn run(redis: &impl Backend, redis_name: &str) {
    let nodes = env_or("BENCH_NODES", 4);
    let channels = env_or("BENCH_CHANNELS", 1000);
    let rate = env_or("BENCH_RATE", 2000);
    let seconds = env_or("BENCH_SECONDS", 10);
    let batch = 10; // events per batch_events request (the app's limit)
    let total = rate * seconds / batch * batch;
    println!(
        "{nodes} nodes on {redis_name}, {channels} channels (node i serves channel c when c % {nodes} == i, one subscriber each), {rate} events/s for {seconds} s"
    );

    let config = format!("[cluster]\ndriver = \"redis\"\nurl = \"{}\"\n", redis.url());
    let mut servers = Vec::new();
    for _ in 0..nodes {
        let metrics = free_port();
        let server = Server::launch(
            Some(&config),
            &[("HERALD_METRICS_PORT", &metrics.to_string())],
        );
        server.wait_ready().await;
        servers.push((server, metrics));
    }

    // One subscriber per channel, on the node that serves it.
    let per_channel = total / channels;
    let mut collectors = Vec::new();
    for c in 0..channels {
        let node = c % nodes;
        let mut client = Client::connect(&servers[node].0).await;
        client.subscribe(&format!("share-{c}")).await;
        collectors.push(actix_rt::spawn(async move {
            let mut cross = Vec::with_capacity(per_channel);
            let mut got = 0;
            while got < per_channel {
                let frame = client.recv().await;
                if frame["event"] != "tick" {
                    continue;
                }
                got += 1;
                // The client parsed the JSON data already.
                let data = &frame["data"];
                if data["n"].as_u64() != Some(node as u64) {
                    let sent = data["t"].as_u64().unwrap_or_default();
                    cross.push(common::unix_micros().saturating_sub(sent));
                }
            }
            cross
        }));
    }

    let mut before = Vec::new();
    for (_, metrics) in &servers {
        before.push(relay_in(*metrics).await);
    }
    let cpu = |servers: &[(Server, u16)]| -> Duration {
        servers.iter().map(|(s, _)| cpu_time(s.pid())).sum()
    };
    let cpu_before = cpu(&servers);
    let redis_before: Vec<Duration> = redis.pids().into_iter().map(cpu_time).collect();
    let start = Instant::now();
    let mut tick =
        actix_rt::time::interval(Duration::from_micros((1_000_000 * batch / rate) as u64));
    for b in 0..total / batch {
        tick.tick().await;
        // Publishers take turns; channels go round.
        let origin = b % nodes;
        let events: Vec<_> = (0..batch)
            .map(|i| {
                let c = (b * batch + i) % channels;
                let data = json!({"t": common::unix_micros(), "n": origin}).to_string();
                json!({"name": "tick", "channel": format!("share-{c}"), "data": data})
            })
            .collect();
        let r = common::api(
            &servers[origin].0,
            "POST",
            "/apps/app-id/batch_events",
            "",
            Some(&json!({ "batch": events }).to_string()),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let mut latencies = Vec::new();
    for c in collectors {
        latencies.extend(c.await.expect("collector"));
    }
    let elapsed = start.elapsed();
    let server_cpu = cpu(&servers) - cpu_before;
    let redis_cpu: Vec<Duration> = redis
        .pids()
        .into_iter()
        .zip(redis_before)
        .map(|(pid, before)| cpu_time(pid).saturating_sub(before))
        .collect();
    let deliveries = total;

    println!(
        "{total} events in {:.2} s; server CPU {:.2} µs/delivery (all nodes)",
        elapsed.as_secs_f64(),
        server_cpu.as_secs_f64() * 1e6 / deliveries as f64,
    );
    common::percentiles("cross-node deliveries", latencies);
    for (i, cpu) in redis_cpu.iter().enumerate() {
        println!(
            "redis {i}: {:.2} s CPU ({:.1}% of one core)",
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64()
        );
    }
    for (i, ((_, metrics), before)) in servers.iter().zip(before).enumerate() {
        let received = relay_in(*metrics).await - before;
        println!(
            "node {i}: {received:>7.0} relay messages received ({:.0}% of the {total} events)",
            100.0 * received / total as f64
        );
    }
}
