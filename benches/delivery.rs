//! Delivery benchmark (not a test): publish through the HTTP API and measure
//! how fast and how soon events reach WebSocket subscribers, on one node and
//! across two nodes sharing a private redis-server.
//!
//! `cargo bench --bench delivery` (env: BENCH_SUBSCRIBERS, BENCH_MESSAGES).
//! Latency is from just before the HTTP request is sent to the moment a
//! subscriber has parsed the frame; every subscriber's every message counts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{cpu_split, cpu_time, env_or, Client, Server};
use serde_json::json;

struct Report {
    deliveries: usize,
    elapsed: Duration,
    latencies: Vec<u64>,
    /// CPU time (user + system) the server processes spent during the run.
    server_cpu: Duration,
    /// The user-space part of it (Herald's own work; the rest is the
    /// kernel's, mostly the send path).
    server_user: Duration,
}

impl Report {
    fn print(&mut self, label: &str) {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        println!(
            "{label:<28} {:>8} deliveries in {:>6.2} s = {:>9.0} msg/s   latency ms p50 {:>6.2}  p95 {:>6.2}  p99 {:>6.2}  max {:>6.2}   server CPU {:>5.2} µs/delivery (user {:>5.2} µs)",
            self.deliveries,
            self.elapsed.as_secs_f64(),
            self.deliveries as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.95),
            pct(0.99),
            pct(1.0),
            self.server_cpu.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64,
            self.server_user.as_secs_f64() * 1e6 / self.deliveries.max(1) as f64,
        );
    }
}

/// One task per client that reads `count` `tick` events and returns their
/// latencies (each tick carries its send time).
fn collect_ticks(clients: Vec<Client>, count: usize) -> Vec<actix_rt::task::JoinHandle<Vec<u64>>> {
    clients
        .into_iter()
        .map(|mut c| {
            actix_rt::spawn(async move {
                let mut latencies = Vec::with_capacity(count);
                while latencies.len() < count {
                    let frame = c.recv().await;
                    if frame["event"] == "tick" {
                        let sent = frame["data"]["t"].as_u64().unwrap_or_default();
                        latencies.push(common::unix_micros().saturating_sub(sent));
                    }
                }
                latencies
            })
        })
        .collect()
}

/// Subscribes `n` clients on `receiver`, publishes `messages` events through
/// `publisher` (8 requests in flight), and collects every delivery.
async fn run(receiver: &Server, publisher: &Server, n: usize, messages: usize) -> Report {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Client::connect(receiver).await;
        c.subscribe("bench").await;
        clients.push(c);
    }
    let collectors = collect_ticks(clients, messages);

    let pids = [receiver.pid(), publisher.pid()];
    let distinct = if pids[0] == pids[1] {
        &pids[..1]
    } else {
        &pids[..]
    };
    let cpu_before: Duration = distinct.iter().map(|p| cpu_time(*p)).sum();
    let user_before: Duration = distinct.iter().map(|p| cpu_split(*p).0).sum();
    let start = Instant::now();
    let in_flight = 8;
    let per_task = messages.div_ceil(in_flight);
    let publishers: Vec<_> = (0..in_flight)
        .map(|task| {
            let port = publisher.port;
            actix_rt::spawn(async move {
                let server = common::Server::attach(port);
                for i in (task * per_task)..((task + 1) * per_task).min(messages) {
                    let data = json!({"t": common::unix_micros(), "i": i}).to_string();
                    let r = common::trigger(
                        &server,
                        json!({"name": "tick", "channel": "bench", "data": data}),
                    )
                    .await;
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    let mut latencies = Vec::with_capacity(n * messages);
    for c in collectors {
        latencies.extend(c.await.expect("collector"));
    }
    let server_cpu = distinct.iter().map(|p| cpu_time(*p)).sum::<Duration>() - cpu_before;
    let server_user = distinct.iter().map(|p| cpu_split(*p).0).sum::<Duration>() - user_before;
    Report {
        deliveries: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
        server_cpu,
        server_user,
    }
}

/// The ordinary-rate fan-out: `subscribers` sockets over `channels`
/// channels, `rate` events per second for `seconds` (one event per channel
/// per batch request), so each socket gets one frame at a time.
async fn paced(
    server: &Server,
    subscribers: usize,
    channels: usize,
    rate: usize,
    seconds: usize,
) -> Report {
    let total_events = rate * seconds;
    let per_channel = total_events / channels;
    let mut clients = Vec::with_capacity(subscribers);
    for i in 0..subscribers {
        let mut c = Client::connect(server).await;
        c.subscribe(&format!("paced-{}", i % channels)).await;
        clients.push(c);
    }
    let collectors = collect_ticks(clients, per_channel);
    let cpu_before = cpu_time(server.pid());
    let user_before = cpu_split(server.pid()).0;
    let start = Instant::now();
    let batches = total_events / channels;
    let mut tick =
        actix_rt::time::interval(Duration::from_micros((1_000_000 * channels / rate) as u64));
    for _ in 0..batches {
        tick.tick().await;
        let t = common::unix_micros();
        let data = json!({"t": t}).to_string();
        common::publish_paced_batch(server, channels, "tick", &data).await;
    }
    let mut latencies = Vec::new();
    for c in collectors {
        latencies.extend(c.await.expect("collector"));
    }
    let server_cpu = cpu_time(server.pid()) - cpu_before;
    let server_user = cpu_split(server.pid()).0 - user_before;
    Report {
        deliveries: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
        server_cpu,
        server_user,
    }
}

#[actix_rt::main]
async fn main() {
    if std::env::var_os("BENCH_PACED").is_some() {
        let subscribers = env_or("BENCH_SUBSCRIBERS", 1000);
        let seconds = env_or("BENCH_SECONDS", 10);
        println!("{subscribers} subscribers over 10 channels, 1000 events/s for {seconds} s");
        // Up to 10 events per batch: the app allows 10.
        let server = Server::start();
        paced(&server, subscribers, 10, 1000, seconds)
            .await
            .print("single node, paced");
        return;
    }
    let n = env_or("BENCH_SUBSCRIBERS", 100);
    let messages = env_or("BENCH_MESSAGES", 2000);
    println!("{n} subscribers, {messages} events published over HTTP (8 in flight)");

    let single = Server::start();
    run(&single, &single, n, messages)
        .await
        .print("single node");

    let redis = RedisServer::start();
    let config = format!("[cluster]\ndriver = \"redis\"\nurl = \"{}\"\n", redis.url());
    let a = Server::launch(Some(&config), &[]);
    let b = Server::launch(Some(&config), &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    run(&a, &a, n, messages).await.print("cluster, same node");
    run(&a, &b, n, messages)
        .await
        .print("cluster, across nodes");
}
