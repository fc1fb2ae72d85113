//! The open-file limit, on a node started with a low one: it warns at
//! start, refuses the connections its limit has no room for with 4100
//! (counted), keeps serving the clients it holds, and when descriptors run
//! out anyway (connections that never send a request) its accept loop
//! backs off instead of spinning, and says so in the metrics.
//!
//! One test in this file: it lowers this process's own limit for a moment
//! (the child inherits it), which other tests running beside it would feel.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{cpu_time, free_port, trigger, Client, Server};
use serde_json::json;

/// Herald started with a soft open-file limit of `limit`.
fn launch_with_file_limit(limit: u64, env: &[(&str, &str)]) -> Server {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls with valid pointers to rlimit structs.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) };
    let low = libc::rlimit {
        rlim_cur: limit,
        rlim_max: old.rlim_max,
    };
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) };
    let server = Server::launch(None, env);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) };
    server
}

#[actix_rt::test]
async fn at_the_file_limit_newcomers_are_refused_and_the_connected_served() {
    let metrics = free_port();
    let server = launch_with_file_limit(256, &[("HERALD_METRICS_PORT", &metrics.to_string())]);
    server
        .logged("the open-file limit is 256: at most 192 connections", 1)
        .await;

    // Room for 192 (64 descriptors stay spare); loopback is not limited
    // per address.
    let mut held = Vec::new();
    for _ in 0..192 {
        let mut client = Client::connect(&server).await;
        client.subscribe("room").await;
        held.push(client);
    }
    for _ in 0..20 {
        let url = format!("ws://127.0.0.1:{}/app/app-key?protocol=7", server.port);
        let (code, frames) = Client::open(&url).await.expect_close().await;
        assert_eq!(code, 4100);
        assert_eq!(frames[0]["event"], "pusher:error", "{frames:?}");
    }
    let r = trigger(
        &server,
        json!({"name": "still", "channel": "room", "data": "here"}),
    )
    .await;
    assert_eq!(r.status, 200);
    for client in &mut held {
        assert_eq!(client.expect("still").await["data"], "here");
    }

    // Connections that never send a request hold a descriptor each until
    // the request timeout: past the limit the kernel refuses to accept.
    let before = cpu_time(server.pid());
    let silent: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(server.pid()) - before;
    assert!(
        spent < Duration::from_millis(500),
        "{spent:?} of CPU in 2 s at EMFILE"
    );
    // The connected are served meanwhile.
    held[0].expect_nothing_pending().await;
    drop(silent);

    common::eventually("the refusals are counted", || async {
        let Some(text) = metrics_text(metrics) else {
            return false; // (still accepting nothing)
        };
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        value(r#"herald_refused_total{reason="file_limit"} "#) == Some(20.0)
            && value(r#"herald_refused_total{reason="accept_file_limit"} "#)
                .is_some_and(|n| n >= 1.0)
    })
    .await;
}

/// The metrics' text, or `None` while the listener accepts nothing.
fn metrics_text(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}
