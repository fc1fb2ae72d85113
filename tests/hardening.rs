//! Hostile and broken clients against the real binary over raw sockets:
//! every input has a bounded cost, and every connection that ends ends its
//! TCP socket too. Memory and time bounds here are generous ceilings, not
//! benchmarks.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw_socket::{find, RawSocket};
use common::{cpu_time, rss_kib, Server};

/// A masked client frame header announcing `length` bytes.
fn frame_header(opcode: u8, length: u64) -> Vec<u8> {
    let mut h = vec![0x80 | opcode, 0x80 | 127];
    h.extend_from_slice(&length.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

#[test]
fn an_oversized_frame_is_refused_at_its_header_and_never_buffered() {
    let server = Server::start();
    let mut socket = RawSocket::open(&server, "/app/app-key?protocol=7");
    socket.read_until(|r| find(r, b"connection_established").is_some());
    let before = rss_kib(server.pid());

    // Announce 2^40 bytes, then keep sending payload: 64 MiB at most.
    socket
        .stream
        .write_all(&frame_header(0x1, 1 << 40))
        .expect("header");
    let chunk = vec![b'x'; 64 * 1024];
    socket
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    for _ in 0..1024 {
        if socket.stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "server grew by {grown} KiB");
    assert!(
        socket.closed_within(Duration::from_secs(5)),
        "socket still open"
    );
    assert_eq!(socket.close_code(), Some(1009));
}

/// Whether the server still has an ESTABLISHED TCP connection from our
/// socket's port.
fn server_holds(server: &Server, socket: &RawSocket) -> bool {
    let ours = socket.stream.local_addr().expect("local addr").port();
    let port = server.port;
    ["tcp", "tcp6"].iter().any(|table| {
        std::fs::read_to_string(format!("/proc/{}/net/{table}", server.pid()))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port_of = |addr: &str| {
                    addr.rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                };
                fields.len() > 3
                    && fields[3] == "01"
                    && port_of(fields[1]) == Some(port)
                    && port_of(fields[2]) == Some(ours)
            })
    })
}

/// Waits until the server has let go of our socket's TCP connection.
async fn released_within(server: &Server, socket: &RawSocket, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !server_holds(server, socket) {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn subscribe_frame(channel: &str) -> Vec<u8> {
    let text = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// A raw WebSocket subscribed to `channel`, which then stops reading.
fn subscribed_socket(server: &Server, channel: &str) -> RawSocket {
    let mut socket = RawSocket::open(server, "/app/app-key?protocol=7");
    socket.read_until(|r| find(r, b"connection_established").is_some());
    socket
        .stream
        .write_all(&subscribe_frame(channel))
        .expect("subscribe");
    socket.read_until(|r| find(r, b"subscription_succeeded").is_some());
    socket
}

/// Publishes 90 KiB to `channel` (ten 9 KiB events in one batch request).
async fn publish_90_kib(server: &Server, channel: &str) {
    let data = "x".repeat(9 * 1024);
    let batch: Vec<serde_json::Value> = (0..10)
        .map(|_| serde_json::json!({"name": "big", "channel": channel, "data": data}))
        .collect();
    let body = serde_json::json!({ "batch": batch }).to_string();
    let r = common::api(server, "POST", "/apps/app-id/batch_events", "", Some(&body)).await;
    assert_eq!(r.status, 200);
}

#[actix_rt::test]
async fn a_slow_consumer_is_closed_and_its_tcp_connection_released() {
    let server = Server::start();
    let socket = subscribed_socket(&server, "flood");
    // Publish until the server gives up on the client.
    for _ in 0..400 {
        publish_90_kib(&server, "flood").await;
        if !server_holds(&server, &socket) {
            break;
        }
    }
    assert!(
        released_within(&server, &socket, Duration::from_secs(10)).await,
        "the server still holds the slow consumer's TCP connection"
    );
}

#[actix_rt::test]
async fn a_client_that_stopped_reading_is_released_even_when_nothing_more_comes() {
    // A queue that never overflows: only the stalled write can tell.
    let server = Server::launch(
        None,
        &[
            // A write may stall 3 + 3 s: longer than the publishing below.
            ("HERALD_SERVER__ACTIVITY_TIMEOUT", "3"),
            ("HERALD_SERVER__PONG_TIMEOUT", "3"),
            ("HERALD_SERVER__CONNECTION_QUEUE", "100000"),
        ],
    );
    let socket = subscribed_socket(&server, "stalled");
    // More than the kernel's buffers hold, then nothing.
    for _ in 0..200 {
        publish_90_kib(&server, "stalled").await;
    }
    assert!(server_holds(&server, &socket), "released too early to tell");
    assert!(
        released_within(&server, &socket, Duration::from_secs(15)).await,
        "the server still holds a client that stopped reading"
    );
}

#[actix_rt::test]
async fn subscriptions_per_connection_are_capped() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_channels_per_connection = 10\n",
    );
    let mut client = common::Client::connect(&server).await;
    for i in 0..10 {
        let ok = client.subscribe(&format!("c-{i}")).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    }
    let refused = client.subscribe("c-10").await;
    assert_eq!(refused["event"], "pusher:subscription_error", "{refused}");
    assert_eq!(refused["data"]["type"], "LimitReached");
    // Subscribing again to a channel it is on is no new channel.
    let again = client.subscribe("c-3").await;
    assert_eq!(again["event"], "pusher_internal:subscription_succeeded");
    // After leaving one, there is room again.
    client
        .send(serde_json::json!({"event": "pusher:unsubscribe", "data": {"channel": "c-0"}}))
        .await;
    let ok = client.subscribe("c-10").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}

/// A masked client ping frame.
fn ping_frame() -> Vec<u8> {
    let mut frame = vec![0x89, 0x80 | 4, 0, 0, 0, 0];
    frame.extend_from_slice(b"ping");
    frame
}

#[actix_rt::test]
async fn a_client_flooding_frames_is_closed_and_released() {
    let server = Server::start();
    let mut socket = RawSocket::open(&server, "/app/app-key?protocol=7");
    socket.read_until(|r| find(r, b"connection_established").is_some());
    let before = rss_kib(server.pid());
    // Pings, never reading the pongs: 20 000 frames, far past the default
    // burst of 1000.
    let flood: Vec<u8> = (0..20_000).flat_map(|_| ping_frame()).collect();
    socket
        .stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let started = Instant::now();
    let _ = socket.stream.write_all(&flood);
    assert!(
        released_within(&server, &socket, Duration::from_secs(10)).await,
        "the server still holds the flooding client's TCP connection"
    );
    eprintln!("ping flood: released after {:?}", started.elapsed());
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "server grew by {grown} KiB");
    socket.closed_within(Duration::from_secs(2));
    assert_eq!(socket.close_code(), Some(4301));
}

/// `path?query` signed for `body` as the SDKs sign it.
fn signed_target(method: &str, path: &str, body: &[u8]) -> String {
    let params = vec![
        ("auth_key".to_owned(), common::KEY.to_owned()),
        ("auth_timestamp".to_owned(), common::unix_now().to_string()),
        ("auth_version".to_owned(), "1.0".to_owned()),
        ("body_md5".to_owned(), herald::auth::md5_hex(body)),
    ];
    let to_sign = herald::auth::http_string_to_sign(method, path, &params);
    let signature = herald::auth::sign(common::SECRET, to_sign.as_bytes());
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{path}?{}&auth_signature={signature}", query.join("&"))
}

/// Sends a request head announcing `length` body bytes, then `sent` of them.
fn start_upload(server: &Server, target: &str, length: usize, sent: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    write!(
        stream,
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("head");
    stream.write_all(sent).expect("body");
    stream
}

/// The status of the response on `stream`, waiting at most `limit`.
fn status_within(stream: &mut TcpStream, limit: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn api_bodies_are_read_only_after_the_signature_and_within_a_deadline() {
    let server = Server::with_config("[server]\nrequest_body_timeout = 1\n");
    let before = rss_kib(server.pid());
    // Unsigned uploads that stall: refused from the request line, at once,
    // without reading (or holding) their bodies.
    let mut stalled: Vec<TcpStream> = (0..100)
        .map(|_| {
            start_upload(
                &server,
                "/apps/app-id/events?auth_key=app-key&auth_timestamp=1&auth_version=1.0&auth_signature=00",
                1 << 20,
                &vec![b' '; 64 * 1024],
            )
        })
        .collect();
    for stream in &mut stalled {
        assert_eq!(status_within(stream, Duration::from_secs(3)), Some(401));
    }
    let grown = rss_kib(server.pid()).saturating_sub(before);
    eprintln!("100 unsigned stalled uploads: refused, server grew by {grown} KiB");
    assert!(grown < 32 * 1024, "server grew by {grown} KiB");

    // A signed upload that stops one byte short: 408 after the deadline.
    let body = br#"{"name":"e","channel":"c","data":"{}"}"#;
    let target = signed_target("POST", "/apps/app-id/events", body);
    let started = Instant::now();
    let mut upload = start_upload(&server, &target, body.len(), &body[..body.len() - 1]);
    assert_eq!(
        status_within(&mut upload, Duration::from_secs(5)),
        Some(408)
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    // The same request sent whole is accepted.
    let mut whole = start_upload(&server, &target, body.len(), body);
    assert_eq!(status_within(&mut whole, Duration::from_secs(5)), Some(200));

    // A body above max_request_bytes is refused from its Content-Length.
    let mut huge = start_upload(&server, &target, 64 << 20, b"");
    assert_eq!(status_within(&mut huge, Duration::from_secs(3)), Some(413));
}

#[actix_rt::test]
async fn xhr_send_bodies_are_bounded_in_size_and_time() {
    let server = Server::with_config("[server]\nrequest_body_timeout = 1\n");
    // Open a pusher-js HTTP session (its first receive request admits it).
    let base = "/pusher/app/app-key/123/abcdef";
    let mut open = start_upload(&server, &format!("{base}/xhr?protocol=7"), 0, b"");
    assert_eq!(status_within(&mut open, Duration::from_secs(5)), Some(200));

    let started = Instant::now();
    let mut slow = start_upload(&server, &format!("{base}/xhr_send"), 100, b"[\"");
    assert_eq!(status_within(&mut slow, Duration::from_secs(5)), Some(408));
    assert!(started.elapsed() < Duration::from_secs(4));

    let mut huge = start_upload(&server, &format!("{base}/xhr_send"), 64 << 20, b"");
    assert_eq!(status_within(&mut huge, Duration::from_secs(3)), Some(413));
}

#[test]
fn a_query_string_with_too_many_parameters_is_refused() {
    let server = Server::start();
    // Small enough for the HTTP layer, far above the 256-parameter cap.
    let query: Vec<String> = (0..1000).map(|i| format!("p{i}=v")).collect();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    write!(
        stream,
        "GET /apps/app-id/channels?{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        query.join("&")
    )
    .expect("request");
    let answer = response_within(&mut stream, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Too many query parameters"), "{answer}");
}

#[actix_rt::test]
async fn a_polling_cursor_from_before_a_restart_gets_410() {
    let publish = |server: &Server, n: usize| {
        let port = server.port;
        async move {
            let server = Server::attach(port);
            for i in 0..n {
                let r = common::trigger(
                    &server,
                    serde_json::json!({"name": "e", "channel": "news", "data": i.to_string()}),
                )
                .await;
                assert_eq!(r.status, 200);
            }
        }
    };
    let first = Server::start();
    publish(&first, 2).await;
    let read = common::get(&first, "/apps/app-id/poll/v1", "channels=news").await;
    assert_eq!(read.status, 200);
    let cursor = read.body["cursor"].as_str().expect("cursor").to_owned();
    drop(first);

    // A new life: its ids start again, and more events than the old cursor
    // had seen arrive. The old cursor must not resume in the middle.
    let second = Server::start();
    publish(&second, 5).await;
    let stale = common::get(
        &second,
        "/apps/app-id/poll/v1",
        &format!("channels=news&cursor={cursor}"),
    )
    .await;
    assert_eq!(stale.status, 410, "{:?}", stale.body);
    let fresh = stale.body["cursor"].as_str().expect("fresh cursor");
    let next = common::get(
        &second,
        "/apps/app-id/poll/v1",
        &format!("channels=news&cursor={fresh}"),
    )
    .await;
    assert_eq!(next.status, 200);
    assert_eq!(next.body["events"], serde_json::json!([]));
}

/// Reads one whole HTTP response (head and body) that ends when the
/// server closes or after `limit`.
fn response_within(stream: &mut TcpStream, limit: Duration) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // A complete Content-Length response.
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|n| n.trim().parse::<usize>().ok());
                    if length.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens (or polls) pusher-js HTTP session `id` with one `xhr` request.
fn xhr_poll(server: &Server, id: &str) -> String {
    let target = format!("/pusher/app/app-key/{id}/xhr?protocol=7");
    let mut stream = start_upload(server, &target, 0, b"");
    response_within(&mut stream, Duration::from_secs(5))
}

#[actix_rt::test]
async fn http_sessions_per_address_are_capped() {
    let server = Server::with_config(
        "[server]\nmax_http_sessions_per_address = 5\nnew_http_sessions_per_second = 0\n",
    );
    for i in 0..5 {
        let opened = xhr_poll(&server, &format!("1/cap{i}"));
        assert!(opened.ends_with("o\n"), "{opened}");
    }
    let refused = xhr_poll(&server, "1/cap5");
    assert!(refused.contains("c[4100,"), "{refused}");
    // An existing session is still served; WebSockets are not starved.
    let again = xhr_poll(&server, "1/cap0");
    assert!(again.contains("connection_established"), "{again}");
    let mut ws = common::Client::connect(&server).await;
    let ok = ws.subscribe("still-open").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}

#[test]
fn new_http_sessions_per_address_are_rate_limited() {
    let server = Server::with_config(
        "[server]\nmax_http_sessions_per_address = 0\nnew_http_sessions_per_second = 2\n",
    );
    // A burst of twice the rate, then refusals.
    for i in 0..4 {
        let opened = xhr_poll(&server, &format!("1/rate{i}"));
        assert!(opened.ends_with("o\n"), "{opened}");
    }
    let refused = xhr_poll(&server, "1/rate4");
    assert!(refused.contains("c[4100,"), "{refused}");
}

#[actix_rt::test]
async fn a_closed_tab_leaves_within_the_session_timeout() {
    let server = Server::with_config("[server]\nhttp_session_timeout = 3\n");
    let mut watcher = common::Client::connect(&server).await;
    watcher
        .join("presence-tab", "1", serde_json::json!(null))
        .await;

    // The tab's stream, opened by hand so that the test can close it.
    let base = "/pusher/app/app-key/7/tab00001";
    let mut stream = start_upload(&server, &format!("{base}/xhr_streaming?protocol=7"), 0, b"");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&seen).contains("connection_established") {
        let n = stream.read(&mut buf).expect("stream");
        assert!(n > 0, "stream ended");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let socket_id = text
        .split("socket_id")
        .nth(1)
        .and_then(|rest| {
            rest.split('"')
                .find(|s| s.contains('.') && s.chars().next().is_some_and(|c| c.is_ascii_digit()))
        })
        .map(|s| s.trim_end_matches('\\').to_owned())
        .expect("socket id");
    let channel_data = r#"{"user_id":"2"}"#;
    let auth = herald::auth::make_auth(
        "app-key",
        "app-secret",
        &herald::auth::channel_string_to_sign(&socket_id, "presence-tab", Some(channel_data)),
    );
    let subscribe = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": "presence-tab", "auth": auth, "channel_data": channel_data}});
    let body = serde_json::to_string(&[subscribe.to_string()]).expect("json");
    let mut send = start_upload(
        &server,
        &format!("{base}/xhr_send"),
        body.len(),
        body.as_bytes(),
    );
    assert_eq!(status_within(&mut send, Duration::from_secs(5)), Some(204));
    assert_eq!(
        watcher.expect("pusher_internal:member_added").await["data"]["user_id"],
        "2"
    );

    // The tab closes: its TCP connection ends, nothing is said over HTTP.
    drop(stream);
    let closed = Instant::now();
    let removed = watcher.expect("pusher_internal:member_removed").await;
    assert_eq!(removed["data"]["user_id"], "2");
    let took = closed.elapsed();
    eprintln!("closed tab: member_removed {took:?} after the TCP close (timeout 3 s)");
    // Within the session timeout of the close (the previous main took
    // 4 s here; scheduling slack on top of 3 s).
    assert!(took < Duration::from_millis(3500), "noticed after {took:?}");
}

#[test]
fn long_polls_per_address_are_capped() {
    let server = Server::with_config("[server]\nmax_long_polls_per_address = 3\n");
    let poll = |channel: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        write!(
            stream,
            "GET /app/app-key/poll/v1?channel={channel}&wait=20 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .expect("request");
        stream
    };
    let held: Vec<TcpStream> = (0..3).map(|i| poll(&format!("held-{i}"))).collect();
    // Let the server take them.
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = poll("one-too-many");
    assert_eq!(
        status_within(&mut refused, Duration::from_secs(3)),
        Some(429)
    );
    drop(held);
}

#[actix_rt::test]
async fn quiet_long_polls_do_not_wake_for_other_channels() {
    let server = Server::with_config("[server]\nmax_long_polls_per_address = 0\n");
    let polls: Vec<TcpStream> = (0..500)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
            write!(
                stream,
                "GET /app/app-key/poll/v1?channel=quiet-{i}&wait=25 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            )
            .expect("request");
            stream
        })
        .collect();
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(server.pid());
    for i in 0..300 {
        let r = common::trigger(
            &server,
            serde_json::json!({"name": "e", "channel": "busy", "data": i.to_string()}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let spent = cpu_time(server.pid()) - before;
    eprintln!("long-poll herd: 500 quiet polls, 300 events elsewhere: server CPU {spent:?}");
    // 300 API requests cost a fraction of this; waking 500 polls for each
    // of them cost seconds.
    assert!(
        spent < Duration::from_millis(1500),
        "server spent {spent:?}"
    );
    // The quiet polls are still held, and wake for their own channel.
    let r = common::trigger(
        &server,
        serde_json::json!({"name": "e", "channel": "quiet-7", "data": "now"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let mut woken = polls.into_iter().nth(7).expect("poll 7");
    let answer = response_within(&mut woken, Duration::from_secs(5));
    assert!(answer.contains("\"now\""), "{answer}");
}
