//! Latency of bursty small frames (not a test): presence joins and leaves
//! under churn, and back-to-back client events, on one node and across two
//! nodes sharing a private redis-server. Reports p50/p99 of
//! `member_added`, `member_removed` and client-event delivery.
//!
//! `cargo bench --bench latency` (env: BENCH_CHURNERS, default 50;
//! BENCH_ROUNDS, default 40; BENCH_BURSTS, default 200).
//!
//! Each churner joins the presence channel as a fresh user and leaves again
//! at once, so two small frames leave the server close together: the case
//! where a socket without TCP_NODELAY holds the second one back until the
//! client's delayed ACK.

#[path = "../tests/common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{env_or, percentiles, Client, Server};
use serde_json::json;

/// Unlimited client events, for the burst test.
const APP: &str = "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nclient_event_rate = 0\n";

type Sent = Rc<RefCell<HashMap<(bool, String), Instant>>>;

/// Churners join and leave on `churn_on`; one observer on `observe_on`
/// times each `member_added` / `member_removed` from the moment it was asked for.
async fn presence_churn(churn_on: &Server, observe_on: &Server, label: &str) {
    let churners = env_or("BENCH_CHURNERS", 50);
    let rounds = env_or("BENCH_ROUNDS", 40);
    let channel = "presence-churn";
    let mut observer = Client::connect(observe_on).await;
    observer.join(channel, "observer", json!({})).await;
    let sent: Sent = Rc::default();

    let expected = churners * rounds;
    let watch = {
        let sent = sent.clone();
        actix_rt::spawn(async move {
            let (mut added, mut removed) = (Vec::new(), Vec::new());
            while added.len() < expected || removed.len() < expected {
                let frame = observer.recv().await;
                let now = Instant::now();
                let is_added = match frame["event"].as_str() {
                    Some("pusher_internal:member_added") => true,
                    Some("pusher_internal:member_removed") => false,
                    _ => continue,
                };
                let user = frame["data"]["user_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(at) = sent.borrow().get(&(is_added, user)) {
                    let micros = now.duration_since(*at).as_micros() as u64;
                    if is_added {
                        added.push(micros)
                    } else {
                        removed.push(micros)
                    }
                }
            }
            (added, removed)
        })
    };

    let tasks: Vec<_> = (0..churners)
        .map(|i| {
            let (sent, port) = (sent.clone(), churn_on.port);
            actix_rt::spawn(async move {
                let server = Server::attach(port);
                let mut client = Client::connect(&server).await;
                for round in 0..rounds {
                    let user = format!("c{i}-r{round}");
                    sent.borrow_mut()
                        .insert((true, user.clone()), Instant::now());
                    let mut reply = client.join(channel, &user, json!({"n": i})).await;
                    // Other churners' member events may come first.
                    while reply["event"] != "pusher_internal:subscription_succeeded" {
                        assert_ne!(reply["event"], "pusher:subscription_error", "{reply}");
                        reply = client.recv().await;
                    }
                    sent.borrow_mut().insert((false, user), Instant::now());
                    client
                        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
                        .await;
                    // The benchmark's client socket has Nagle on: a ping
                    // answered now gets the unsubscribe acknowledged, so the
                    // next join is not held back on the client side.
                    client
                        .send(json!({"event": "pusher:ping", "data": {}}))
                        .await;
                    while client.recv().await["event"] != "pusher:pong" {}
                    // A short, jittered think time so rounds interleave.
                    actix_rt::time::sleep(Duration::from_millis(
                        5 + (i as u64 * 7 + round as u64) % 20,
                    ))
                    .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("churner");
    }
    let (added, removed) = actix_rt::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("observer saw every member event")
        .expect("observer");
    percentiles(&format!("{label}: member_added"), added);
    percentiles(&format!("{label}: member_removed"), removed);
}

/// Bursts of back-to-back client events from one socket to another.
async fn client_event_bursts(from: &Server, to: &Server, label: &str) {
    let bursts = env_or("BENCH_BURSTS", 200);
    let per_burst = 5;
    let channel = "private-chat";
    let mut receiver = Client::connect(to).await;
    receiver.subscribe_private(channel).await;
    let mut sender = Client::connect(from).await;
    sender.subscribe_private(channel).await;
    let mut latencies = Vec::with_capacity(bursts * per_burst);
    let start = Instant::now();
    for _ in 0..bursts {
        for _ in 0..per_burst {
            let t = start.elapsed().as_micros() as u64;
            sender
                .send(json!({"event": "client-burst", "channel": channel, "data": {"t": t}}))
                .await;
        }
        for _ in 0..per_burst {
            let frame = receiver.expect("client-burst").await;
            let t = frame["data"]["t"].as_u64().unwrap_or_default();
            latencies.push((start.elapsed().as_micros() as u64).saturating_sub(t));
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    percentiles(&format!("{label}: client event"), latencies);
}

#[actix_rt::main]
async fn main() {
    let single = Server::with_config(APP);
    presence_churn(&single, &single, "single node").await;
    client_event_bursts(&single, &single, "single node").await;

    let redis = RedisServer::start();
    let config = format!(
        "{APP}[cluster]\ndriver = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    );
    let a = Server::launch(Some(&config), &[]);
    let b = Server::launch(Some(&config), &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    presence_churn(&a, &b, "two nodes").await;
    client_event_bursts(&a, &b, "two nodes").await;
}
