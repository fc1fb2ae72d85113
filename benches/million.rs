//! Many connections across a local cluster (not a test), up to a million:
//! K release Herald nodes on one `redis-server`, each under the per-process
//! open-file limit, and client processes (this same program, re-run as a
//! client) that each hold up to `BENCH_PER_CLIENT` lean connections
//! (`tests/common/lean.rs`) from a loopback address of their own
//! (127.0.0.2, 127.0.0.3, …), spread over the nodes. Every connection
//! subscribes to one of `BENCH_CHANNELS` channels and to `everyone`, and
//! answers pings.
//!
//! It reports the connect rate, each node's RSS per connection, each
//! node's CPU while idle (pings included) over `BENCH_IDLE_SECONDS`, the
//! connections dropped meanwhile, and for one event published to
//! `everyone` the time until every client has it (p50 / p99 / max, the
//! clients' percentiles merged) and what it cost Redis.
//!
//! `cargo bench --bench million` (env: BENCH_CONNECTIONS, default
//! 100000; BENCH_PER_NODE and BENCH_PER_CLIENT, default 18000;
//! BENCH_CHANNELS, default 100; BENCH_IDLE_SECONDS, default 60). A million
//! on one machine needs ~56 nodes and ~56 client processes here; see
//! docs/benchmarks.md for what stopped it first.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lean::Lean;
use common::redis_server::{Backend, RedisServer};
use common::{cpu_time, env_or, raise_file_limit, rss_kib, Server};

fn main() {
    raise_file_limit();
    if std::env::var_os("MILLION_CLIENT").is_some() {
        client();
    } else {
        actix_rt::System::new().block_on(controller());
    }
}

// ----- the client processes --------------------------------------------

/// One client process: its connections, then (on `go` from stdin) the
/// wait for the event; answers on stdout.
fn client() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let ports: Vec<u16> = var("MILLION_PORTS")
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    let count: usize = var("MILLION_COUNT").parse().unwrap_or(0);
    let offset: usize = var("MILLION_OFFSET").parse().unwrap_or(0);
    let channels: usize = var("MILLION_CHANNELS").parse().unwrap_or(100);
    let source: Ipv4Addr = var("MILLION_SOURCE").parse().unwrap_or(Ipv4Addr::LOCALHOST);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let started = Instant::now();
        let dropped = Arc::new(AtomicUsize::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let gate = Arc::new(tokio::sync::Semaphore::new(500));
        for i in 0..count {
            let global = offset + i;
            let port = ports[global % ports.len()];
            let (dropped, latencies, ready, gate) = (
                dropped.clone(),
                latencies.clone(),
                ready_tx.clone(),
                gate.clone(),
            );
            tokio::task::spawn_local(async move {
                let permit = gate.acquire_owned().await;
                let connected = async {
                    let mut lean = Lean::connect_from(source, port, "app-key").await?;
                    lean.subscribe(&format!("c{}", global % channels)).await?;
                    lean.subscribe("everyone").await?;
                    Ok::<_, std::io::Error>(lean)
                }
                .await;
                drop(permit);
                let mut lean = match connected {
                    Ok(lean) => lean,
                    Err(_) => {
                        let _ = ready.send(false);
                        return;
                    }
                };
                let _ = ready.send(true);
                lean.be_patient();
                match lean.expect("\"big-news\"").await {
                    Ok(text) => {
                        let sent = text
                            .split("\\\"t\\\":")
                            .nth(1)
                            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                            .and_then(|t| t.parse::<u64>().ok())
                            .unwrap_or(0);
                        let took = common::unix_micros().saturating_sub(sent);
                        latencies.lock().expect("latencies").push(took);
                    }
                    Err(_) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Held (answering nothing more) until the process ends.
                let _held = lean;
                std::future::pending::<()>().await;
            });
        }
        drop(ready_tx);
        let (mut up, mut failed) = (0, 0);
        while up + failed < count {
            match ready_rx.recv().await {
                Some(true) => up += 1,
                Some(false) => failed += 1,
                None => break,
            }
        }
        println!("connected {up} {failed} {}", started.elapsed().as_millis());
        // Wait for the controller's word that the event was sent, then for
        // every connection's copy (or its end).
        let stdin = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        });
        let _ = stdin.await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let have = latencies.lock().expect("latencies").len() + dropped.load(Ordering::Relaxed);
            if have >= up || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut got = latencies.lock().expect("latencies").clone();
        got.sort_unstable();
        let at = |q: f64| {
            got.get(((got.len().max(1) - 1) as f64 * q) as usize)
                .copied()
                .unwrap_or(0)
        };
        println!(
            "event {} {} {} {} {}",
            got.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            dropped.load(Ordering::Relaxed)
        );
        let _ = std::io::stdout().flush();
        // Stay until the controller ends us.
        std::future::pending::<()>().await;
    });
}

// ----- the controller ----------------------------------------------------

async fn controller() {
    let n = env_or("BENCH_CONNECTIONS", 100_000);
    let per_node = env_or("BENCH_PER_NODE", 18_000);
    let per_client = env_or("BENCH_PER_CLIENT", 18_000);
    let channels = env_or("BENCH_CHANNELS", 100);
    let idle = env_or("BENCH_IDLE_SECONDS", 60);
    let nodes = n.div_ceil(per_node);
    let clients = n.div_ceil(per_client);
    println!("{n} connections: {nodes} nodes, {clients} client processes, {channels} channels");

    let redis = RedisServer::start();
    let config = format!(
        "[server]\nnew_connections_per_address_per_second = 0\nmax_connections_per_address = 0\n\
         [cluster]\ndriver = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
        redis.port
    );
    let servers: Vec<Server> = (0..nodes)
        .map(|_| Server::launch(Some(&config), &[("HERALD_LOG", "warn,herald::server=info")]))
        .collect();
    for server in &servers {
        server.wait_ready().await;
    }
    let rss_before: Vec<u64> = servers.iter().map(|s| rss_kib(s.pid())).collect();
    let ports = servers
        .iter()
        .map(|s| s.port.to_string())
        .collect::<Vec<_>>()
        .join(",");

    let started = Instant::now();
    let mut children = Vec::new();
    for c in 0..clients {
        let count = per_client.min(n - c * per_client);
        // (Up to 250 client processes, one loopback address each.)
        let source = Ipv4Addr::new(127, 0, 0, (2 + c % 250) as u8);
        let child = Command::new(std::env::current_exe().expect("this program"))
            .env("MILLION_CLIENT", "1")
            .env("MILLION_PORTS", &ports)
            .env("MILLION_COUNT", count.to_string())
            .env("MILLION_OFFSET", (c * per_client).to_string())
            .env("MILLION_CHANNELS", channels.to_string())
            .env("MILLION_SOURCE", source.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client process");
        children.push(child);
    }
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("stdout")).lines())
        .collect();
    let (mut up, mut failed) = (0usize, 0usize);
    for lines in &mut readers {
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let fields: Vec<usize> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        up += fields.first().copied().unwrap_or(0);
        failed += fields.get(1).copied().unwrap_or(0);
    }
    let connect_time = started.elapsed();
    println!(
        "connected {up} ({failed} failed) in {:.1} s: {:.0} connections/s",
        connect_time.as_secs_f64(),
        up as f64 / connect_time.as_secs_f64()
    );
    for (i, server) in servers.iter().enumerate() {
        let after = rss_kib(server.pid());
        let share = up / nodes;
        println!(
            "node {i}: RSS {} -> {after} KiB, {:.2} KiB per connection",
            rss_before[i],
            (after.saturating_sub(rss_before[i])) as f64 / share.max(1) as f64
        );
    }

    // Idle, pings and all.
    let cpu_before: Vec<Duration> = servers.iter().map(|s| cpu_time(s.pid())).collect();
    actix_rt::time::sleep(Duration::from_secs(idle as u64)).await;
    let idle_cpu: Vec<f64> = servers
        .iter()
        .zip(&cpu_before)
        .map(|(s, before)| (cpu_time(s.pid()) - *before).as_secs_f64() * 100.0 / idle as f64)
        .collect();
    println!(
        "idle {idle} s: CPU per node {:.2}% on average, {:.2}% at most",
        idle_cpu.iter().sum::<f64>() / nodes as f64,
        idle_cpu.iter().cloned().fold(0.0, f64::max)
    );

    // One event to everyone.
    let redis_before = redis.pids().into_iter().map(cpu_time).sum::<Duration>();
    let body = serde_json::json!({
        "name": "big-news",
        "channel": "everyone",
        "data": serde_json::json!({"t": common::unix_micros()}).to_string(),
    });
    let r = common::trigger(&servers[0], body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for child in &mut children {
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = writeln!(stdin, "go");
        }
    }
    let (mut got, mut dropped, mut p50s, mut p99, mut max) =
        (0usize, 0usize, Vec::new(), 0u64, 0u64);
    for lines in &mut readers {
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [count, p50, client_p99, client_max, lost] = f[..] {
            got += count as usize;
            dropped += lost as usize;
            p50s.push(p50);
            p99 = p99.max(client_p99);
            max = max.max(client_max);
        }
    }
    p50s.sort_unstable();
    let redis_cpu = redis.pids().into_iter().map(cpu_time).sum::<Duration>() - redis_before;
    println!(
        "one event to everyone: {got} of {up} got it ({dropped} connections dropped); p50 {:.1} ms (median of the clients'), p99 {:.1} ms, max {:.1} ms (the clients' highest); Redis CPU {:?}",
        p50s.get(p50s.len() / 2).copied().unwrap_or(0) as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
        redis_cpu
    );
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}
