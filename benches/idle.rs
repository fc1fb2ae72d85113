//! Memory per idle connection (not a test): the release `herald` binary's
//! resident memory before and after opening N idle WebSocket connections
//! that each subscribed to one channel, and again after each connection
//! received one 9 KiB event (what a burst leaves behind once it is flushed).
//!
//! `cargo bench --bench idle` (env: BENCH_CONNECTIONS, default 5000;
//! BENCH_DEFLATE=1: every connection agrees to permessage-deflate, and the
//! burst is left out, since this client cannot read compressed frames).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{burst_9kib, env_or, rss_kib, Client, Endpoint, Server};

/// A connection, offering permessage-deflate when asked to.
async fn connect(server: &Server, deflate: bool) -> Client {
    if !deflate {
        return Client::connect(server).await;
    }
    let url = server.ws_url("app-key", "protocol=7");
    let offer = (
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits",
    );
    let mut client = Client::open_with_headers(&url, &[offer]).await;
    client.expect("pusher:connection_established").await;
    client
}

#[actix_rt::main]
async fn main() {
    let n = env_or("BENCH_CONNECTIONS", 5000);
    let deflate = std::env::var_os("BENCH_DEFLATE").is_some();
    let server = Server::start();
    // Warm up: one connection, so one-time allocations are not counted.
    let mut warm = connect(&server, deflate).await;
    warm.subscribe("idle-0").await;
    let before = rss_kib(server.pid());
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = connect(&server, deflate).await;
        c.subscribe(&format!("idle-{}", i % 100)).await;
        clients.push(c);
    }
    let after = rss_kib(server.pid());
    println!(
        "{n} idle connections{}: RSS {before} KiB -> {after} KiB = {:.1} KiB per connection",
        if deflate { " (permessage-deflate)" } else { "" },
        (after.saturating_sub(before)) as f64 / n as f64
    );
    if deflate {
        return;
    }

    // One 9 KiB event to every connection, then idle again.
    burst_9kib(&server, &mut clients).await;
    let settled = rss_kib(server.pid());
    println!(
        "after one 9 KiB event each: RSS {settled} KiB = {:.1} KiB per connection",
        (settled.saturating_sub(before)) as f64 / n as f64
    );
}
