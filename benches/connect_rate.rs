//! Connect rate with apps in an app store against apps in the file (not a
//! test): two release `herald` binaries, one serving its app from the
//! config file and one from a private PostgreSQL (a cache hit: the app is
//! in memory, as every app is after the first read), each asked to open
//! N connections, C at a time (open, `connection_established`, close).
//! Rounds alternate between the two so that the machine's drift hits both.
//!
//! `cargo bench --bench connect_rate` (env: BENCH_CONNECTIONS, default
//! 3000; BENCH_CONCURRENCY, default 50; BENCH_ROUNDS, default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::database::{Database, Kind};
use common::{env_or, Client, Server};

/// The per-address rate and cap are the node's defence, not the subject.
const SERVER: &str =
    "[server]\nnew_connections_per_address_per_second = 0\nmax_connections_per_address = 0\n";

async fn connections_per_second(server: &Server, n: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(concurrency);
        let clients =
            futures_util::future::join_all((0..batch).map(|_| Client::connect(server))).await;
        drop(clients);
        left -= batch;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[actix_rt::main]
async fn main() {
    let n = env_or("BENCH_CONNECTIONS", 3000);
    let concurrency = env_or("BENCH_CONCURRENCY", 50);
    let rounds = env_or("BENCH_ROUNDS", 3);

    let file = Server::with_config(&format!(
        "{SERVER}[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n"
    ));
    let db = Database::start(Kind::Postgres);
    let migrated = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["apps", "migrate"])
        .env("HERALD_APP_STORE__URL", db.url())
        .status()
        .expect("herald apps migrate");
    assert!(migrated.success());
    db.sql(
        "INSERT INTO herald_apps (id, \"key\", secret) VALUES ('app-id', 'app-key', 'app-secret')",
    );
    let store = Server::with_config(&format!("{SERVER}[app_store]\nurl = \"{}\"\n", db.url()));

    // Warm both (first connections, the store's pool).
    connections_per_second(&file, concurrency, concurrency).await;
    connections_per_second(&store, concurrency, concurrency).await;
    let (mut from_file, mut from_store) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        from_file.push(connections_per_second(&file, n, concurrency).await);
        from_store.push(connections_per_second(&store, n, concurrency).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rounds_of = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("{n} connections, {concurrency} at a time, {rounds} rounds each");
    println!(
        "apps in the file:      {} connections/s (rounds: {})",
        median(&mut from_file.clone()) as u64,
        rounds_of(&from_file)
    );
    println!(
        "apps in PostgreSQL:    {} connections/s (rounds: {})",
        median(&mut from_store.clone()) as u64,
        rounds_of(&from_store)
    );
}
