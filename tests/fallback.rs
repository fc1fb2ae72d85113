//! HTTP fallbacks over real sockets: pusher-js's xhr_streaming / xhr_polling
//! transports (framing, sessions, close frames, cleanup), and the JSON
//! polling endpoint (ordering, cursors, too-old cursors, long-poll wake-up,
//! auth, history bounds, a history shared by two nodes through Redis).

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::{raw_request, trigger, Client, Server, TIMEOUT};
use futures_util::StreamExt;
use serde_json::{json, Value};

// ----- pusher-js HTTP transports -------------------------------------------

fn session_url(server: &Server, session: &str, kind: &str) -> String {
    format!(
        "http://127.0.0.1:{}/pusher/app/app-key/{session}/{kind}",
        server.port
    )
}

async fn post(url: &str, body: &str) -> (u16, String) {
    let mut response = awc::Client::builder()
        .timeout(Duration::from_secs(40))
        .finish()
        .post(url)
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.to_owned())
        .await
        .expect("request");
    let bytes = response.body().await.expect("body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn send(server: &Server, session: &str, frames: &[Value]) {
    let texts: Vec<String> = frames.iter().map(Value::to_string).collect();
    let (status, _) = post(
        &session_url(server, session, "xhr_send"),
        &serde_json::to_string(&texts).expect("json"),
    )
    .await;
    assert_eq!(status, 204);
}

/// Decodes the `a[...]` lines of a response into protocol frames.
fn frames(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix('a'))
        .flat_map(|array| serde_json::from_str::<Vec<String>>(array).expect("a[] of strings"))
        .map(|text| serde_json::from_str(&text).expect("frame JSON"))
        .collect()
}

/// A streaming response read line by line.
struct Stream {
    body: awc::ClientResponse,
    buffer: String,
}

impl Stream {
    async fn open(server: &Server, session: &str) -> Stream {
        let body = awc::Client::builder()
            .disable_timeout()
            .finish()
            .post(format!(
                "{}?protocol=7&client=js&version=8.6.0",
                session_url(server, session, "xhr_streaming")
            ))
            .insert_header(("Content-Type", "application/json"))
            .send()
            .await
            .expect("stream");
        assert_eq!(body.status().as_u16(), 200);
        Stream {
            body,
            buffer: String::new(),
        }
    }

    /// The next complete line, or `None` when the response ended.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buffer.find('\n') {
                let line = self.buffer[..at].to_owned();
                self.buffer.drain(..=at);
                return Some(line);
            }
            let chunk = actix_rt::time::timeout(TIMEOUT, self.body.next())
                .await
                .expect("timed out waiting for a line")?;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    }

    /// The next protocol frame, skipping heartbeats.
    async fn frame(&mut self) -> Value {
        loop {
            let line = self.line().await.expect("stream ended");
            if let Some(frame) = frames(&[line]).into_iter().next() {
                return frame;
            }
        }
    }
}

#[actix_rt::test]
async fn xhr_streaming_carries_a_whole_session() {
    let server = Server::start();
    let mut stream = Stream::open(&server, "101/stream01").await;
    let prelude = stream.line().await.expect("prelude");
    assert!(prelude.starts_with('h') && prelude.len() >= 2048);
    assert_eq!(stream.line().await.as_deref(), Some("o"));
    let hello = stream.frame().await;
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: Value =
        serde_json::from_str(hello["data"].as_str().expect("string data")).expect("json");
    let socket_id = data["socket_id"].as_str().expect("socket id").to_owned();

    send(
        &server,
        "101/stream01",
        &[json!({"event": "pusher:subscribe", "data": {"channel": "news"}})],
    )
    .await;
    assert_eq!(
        stream.frame().await["event"],
        "pusher_internal:subscription_succeeded"
    );
    trigger(
        &server,
        json!({"name": "hello", "channel": "news", "data": "{\"x\":1}"}),
    )
    .await;
    let event = stream.frame().await;
    assert_eq!(
        (event["event"].as_str(), event["data"].as_str()),
        (Some("hello"), Some("{\"x\":1}"))
    );

    // It is a connection like any other: it signs in and can be terminated.
    let user_data = r#"{"id":"42"}"#;
    let auth = herald::auth::make_auth(
        "app-key",
        "app-secret",
        &herald::auth::user_string_to_sign(&socket_id, user_data),
    );
    send(
        &server,
        "101/stream01",
        &[json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})],
    )
    .await;
    assert_eq!(stream.frame().await["event"], "pusher:signin_success");
    common::post(&server, "/apps/app-id/users/42/terminate_connections", "{}").await;
    let error = stream.frame().await;
    assert_eq!(error["event"], "pusher:error");
    let close = stream.line().await.expect("close line");
    assert!(close.starts_with("c[4009,"), "{close}");
    assert_eq!(stream.line().await, None, "the response ends after c[...]");
}

#[actix_rt::test]
async fn xhr_polling_delivers_with_held_polls() {
    let server = Server::start();
    let poll = |session: &'static str| {
        let url = format!("{}?protocol=7", session_url(&server, session, "xhr"));
        async move { post(&url, "").await }
    };
    assert_eq!(poll("7/poll0001").await, (200, "o\n".to_owned()));
    let (_, body) = poll("7/poll0001").await;
    let lines: Vec<String> = body.lines().map(str::to_owned).collect();
    assert_eq!(frames(&lines)[0]["event"], "pusher:connection_established");

    send(
        &server,
        "7/poll0001",
        &[json!({"event": "pusher:subscribe", "data": {"channel": "news"}})],
    )
    .await;
    let (_, body) = poll("7/poll0001").await;
    assert_eq!(
        frames(&[body.trim_end().to_owned()])[0]["event"],
        "pusher_internal:subscription_succeeded"
    );

    // A held poll answers as soon as an event arrives.
    let held = actix_rt::spawn(poll("7/poll0001"));
    let mut watcher = Client::connect(&server).await;
    watcher.subscribe("news").await;
    trigger(
        &server,
        json!({"name": "late", "channel": "news", "data": "1"}),
    )
    .await;
    let (status, body) = held.await.expect("poll task");
    assert_eq!(status, 200);
    assert_eq!(frames(&[body.trim_end().to_owned()])[0]["event"], "late");
}

#[actix_rt::test]
async fn xhr_refusals_and_cors() {
    let server = Server::start();
    let (status, body) = post(
        &format!("http://127.0.0.1:{}/pusher/app/nope/1/abc/xhr", server.port),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let lines: Vec<String> = body.lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "o");
    assert_eq!(
        frames(&lines)[0]["data"],
        "{\"code\":4001,\"message\":\"Application does not exist\"}"
    );
    assert!(lines.last().is_some_and(|l| l.starts_with("c[4001,")));

    let (status, _) = post(&session_url(&server, "1/unknown", "xhr_send"), "[]").await;
    assert_eq!(status, 404);

    let response = awc::Client::new()
        .request(
            actix_web::http::Method::OPTIONS,
            session_url(&server, "1/abc", "xhr_streaming"),
        )
        .insert_header(("Origin", "http://app.test"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .insert_header(("Access-Control-Request-Headers", "content-type"))
        .send()
        .await
        .expect("preflight");
    assert_eq!(response.status().as_u16(), 204);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("http://app.test")
    );
    assert!(header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("content-type")
    );
}

#[actix_rt::test]
async fn an_oversized_xhr_message_closes_the_session_with_1009() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_message_bytes = 1000\n",
    );
    let mut stream = Stream::open(&server, "5/big00001").await;
    assert_eq!(
        stream.frame().await["event"],
        "pusher:connection_established"
    );
    let big = json!({"event": "client-x", "channel": "private-a", "data": "x".repeat(2000)});
    send(&server, "5/big00001", &[big]).await;
    loop {
        let line = stream.line().await.expect("a close frame before the end");
        if line.starts_with('c') {
            assert!(line.starts_with("c[1009,"), "{line}");
            break;
        }
    }
}

#[actix_rt::test]
async fn an_abandoned_http_session_leaves_its_channels() {
    let server = Server::with_config("[server]\nhttp_session_timeout = 1\n");
    let mut watcher = Client::connect(&server).await;
    watcher.join("presence-h", "1", json!(null)).await;

    let url = format!("{}?protocol=7", session_url(&server, "9/gone0001", "xhr"));
    post(&url, "").await;
    let (_, body) = post(&url, "").await;
    let hello = frames(&body.lines().map(str::to_owned).collect::<Vec<_>>())[0].clone();
    let data: Value = serde_json::from_str(hello["data"].as_str().expect("data")).expect("json");
    let socket_id = data["socket_id"].as_str().expect("socket id");
    let channel_data = r#"{"user_id":"2"}"#;
    let auth = herald::auth::make_auth(
        "app-key",
        "app-secret",
        &herald::auth::channel_string_to_sign(socket_id, "presence-h", Some(channel_data)),
    );
    send(&server, "9/gone0001", &[json!({"event": "pusher:subscribe", "data": {"channel": "presence-h", "auth": auth, "channel_data": channel_data}})]).await;
    assert_eq!(
        watcher.expect("pusher_internal:member_added").await["data"]["user_id"],
        "2"
    );
    // The client stops polling and never says goodbye.
    let removed = watcher.expect("pusher_internal:member_removed").await;
    assert_eq!(removed["data"]["user_id"], "2");
}

// ----- JSON polling endpoint ----------------------------------------------

async fn signed_poll(server: &Server, query: &str) -> common::Response {
    common::get(server, "/apps/app-id/poll/v1", query).await
}

fn event_data(response: &common::Response) -> Vec<String> {
    response.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"].as_str().expect("data").to_owned())
        .collect()
}

/// A signed long-poll (`wait=20`) running in the background.
fn spawn_long_poll(
    port: u16,
    channel: &'static str,
    cursor: String,
) -> actix_rt::task::JoinHandle<common::Response> {
    actix_rt::spawn(async move {
        let server = common::Server::attach(port);
        let query = format!("channels={channel}&wait=20&cursor={cursor}");
        common::get(&server, "/apps/app-id/poll/v1", &query).await
    })
}

#[actix_rt::test]
async fn polling_returns_events_in_order_after_the_cursor() {
    let server = Server::start();
    for i in 1..=3 {
        trigger(
            &server,
            json!({"name": "e", "channels": ["news", "sports"], "data": i.to_string()}),
        )
        .await;
    }
    let first = signed_poll(&server, "channels=news").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["version"], 1);
    assert_eq!(event_data(&first), ["1", "2", "3"]);
    assert_eq!(first.body["events"][0]["channel"], "news");
    assert_eq!(first.body["events"][0]["event"], "e");
    let cursor = first.body["cursor"].as_str().expect("cursor").to_owned();

    let nothing = signed_poll(&server, &format!("channels=news&cursor={cursor}")).await;
    assert_eq!(event_data(&nothing), Vec::<String>::new());
    assert_eq!(nothing.body["cursor"], cursor.as_str());

    trigger(
        &server,
        json!({"name": "e", "channel": "news", "data": "4"}),
    )
    .await;
    let next = signed_poll(&server, &format!("channels=news&cursor={cursor}")).await;
    assert_eq!(event_data(&next), ["4"]);

    // Several channels at once, one cursor for all of them.
    let both = signed_poll(&server, "channel=news&channel=sports&limit=2").await;
    assert_eq!(event_data(&both), ["1", "2", "1", "2"]);
    let cursor = both.body["cursor"].as_str().expect("cursor");
    let rest = signed_poll(&server, &format!("channels=news,sports&cursor={cursor}")).await;
    assert_eq!(event_data(&rest), ["3", "4", "3"]);
}

#[actix_rt::test]
async fn a_cursor_from_before_the_history_says_so() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nhistory_size = 3\n",
    );
    for i in 1..=3 {
        trigger(
            &server,
            json!({"name": "e", "channel": "news", "data": i.to_string()}),
        )
        .await;
    }
    let first = signed_poll(&server, "channels=news").await;
    let cursor = first.body["cursor"].as_str().expect("cursor").to_owned();
    for i in 4..=8 {
        trigger(
            &server,
            json!({"name": "e", "channel": "news", "data": i.to_string()}),
        )
        .await;
    }
    // History keeps the last 3: bounded.
    assert_eq!(
        event_data(&signed_poll(&server, "channels=news").await),
        ["6", "7", "8"]
    );
    let stale = signed_poll(&server, &format!("channels=news&cursor={cursor}")).await;
    assert_eq!(stale.status, 410);
    assert_eq!(stale.body["expired"], json!(["news"]));
    let fresh = stale.body["cursor"].as_str().expect("fresh cursor");
    trigger(
        &server,
        json!({"name": "e", "channel": "news", "data": "9"}),
    )
    .await;
    assert_eq!(
        event_data(&signed_poll(&server, &format!("channels=news&cursor={fresh}")).await),
        ["9"]
    );
    // A cursor that was never ours is too old as well, never silently reset.
    assert_eq!(
        signed_poll(&server, "channels=news&cursor=news:999")
            .await
            .status,
        410
    );
    assert_eq!(
        signed_poll(&server, "channels=news&cursor=garbage")
            .await
            .status,
        400
    );
}

#[actix_rt::test]
async fn long_polls_wake_up_when_an_event_arrives() {
    let server = Server::start();
    let first = signed_poll(&server, "channels=news").await;
    let cursor = first.body["cursor"].as_str().expect("cursor").to_owned();
    let started = Instant::now();
    let held = spawn_long_poll(server.port, "news", cursor);
    // Connecting a client gives the poll time to start waiting; the answer
    // must then come from the wake-up, not from the 20 s deadline.
    let mut c = Client::connect(&server).await;
    c.subscribe("news").await;
    trigger(
        &server,
        json!({"name": "e", "channel": "news", "data": "woke"}),
    )
    .await;
    let response = held.await.expect("poll");
    assert_eq!(event_data(&response), ["woke"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered at the deadline, not on the event"
    );

    let empty = signed_poll(&server, "channels=quiet&wait=1").await;
    assert_eq!(empty.status, 200);
    assert_eq!(event_data(&empty), Vec::<String>::new());
}

#[actix_rt::test]
async fn private_channels_need_a_signature_to_be_polled() {
    let server = Server::start();
    trigger(
        &server,
        json!({"name": "e", "channel": "private-orders", "data": "secret"}),
    )
    .await;
    trigger(
        &server,
        json!({"name": "e", "channel": "public", "data": "open"}),
    )
    .await;
    let browser = |query: String| {
        let server = &server;
        async move { raw_request(server, "GET", &format!("/app/app-key/poll/v1?{query}"), "").await }
    };
    // Public channels need nothing.
    assert_eq!(
        event_data(&browser("channels=public".into()).await),
        ["open"]
    );

    let session = raw_request(&server, "GET", "/app/app-key/poll/v1/session", "").await;
    let socket_id = session.body["socket_id"]
        .as_str()
        .expect("socket_id")
        .to_owned();
    let auth = herald::auth::make_auth(
        "app-key",
        "app-secret",
        &format!("{socket_id}:private-orders"),
    );

    let no_auth = browser(format!("channels=private-orders&socket_id={socket_id}")).await;
    assert_eq!(no_auth.status, 401);
    assert!(no_auth.body["error"].is_string());
    let wrong = browser(format!(
        "channels=private-orders&socket_id={socket_id}&auth[private-orders]=app-key:00"
    ))
    .await;
    assert_eq!(wrong.status, 401);
    let invented = herald::auth::make_auth("app-key", "app-secret", "1.2:private-orders");
    let made_up = browser(format!(
        "channels=private-orders&socket_id=1.2&auth[private-orders]={invented}"
    ))
    .await;
    assert_eq!(made_up.status, 401);
    let ok = browser(format!(
        "channels=private-orders&socket_id={socket_id}&auth[private-orders]={auth}"
    ))
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(event_data(&ok), ["secret"]);

    // The signed endpoint refuses unsigned requests.
    let unsigned = raw_request(
        &server,
        "GET",
        "/apps/app-id/poll/v1?channels=private-orders",
        "",
    )
    .await;
    assert_eq!(unsigned.status, 401);
}

#[actix_rt::test]
async fn two_nodes_serve_one_history() {
    let redis = RedisServer::start();
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\n",
        redis.url()
    );
    let a = Server::launch(Some(&config), &[]);
    let b = Server::launch(Some(&config), &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    for i in 1..=3 {
        trigger(
            &a,
            json!({"name": "e", "channel": "news", "data": i.to_string()}),
        )
        .await;
    }
    common::eventually("node B sees node A's events", || async {
        event_data(&signed_poll(&b, "channels=news").await).len() == 3
    })
    .await;
    let from_b = signed_poll(&b, "channels=news").await;
    assert_eq!(event_data(&from_b), ["1", "2", "3"]);
    let cursor = from_b.body["cursor"].as_str().expect("cursor").to_owned();
    trigger(&b, json!({"name": "e", "channel": "news", "data": "4"})).await;
    // The cursor from node B means the same on node A; and A's long-poll
    // wakes for an event published on B.
    let port = a.port;
    let held = spawn_long_poll(port, "news", cursor);
    let got = held.await.expect("poll");
    assert_eq!(event_data(&got), ["4"]);
    let cursor = got.body["cursor"].as_str().expect("cursor").to_owned();
    let started = Instant::now();
    let held = spawn_long_poll(port, "news", cursor);
    // No event can show that the poll is waiting; give it a moment so the
    // trigger below lands during the wait (which the elapsed time checks).
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    trigger(&b, json!({"name": "e", "channel": "news", "data": "5"})).await;
    assert_eq!(event_data(&held.await.expect("poll")), ["5"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "node A's long-poll was not woken"
    );
}

#[actix_rt::test]
async fn only_the_channels_named_in_history_channels_keep_a_history() {
    let redis = RedisServer::start();
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\n",
        redis.url()
    );
    let kept = [("HERALD_APP__HISTORY_CHANNELS", r#"["kept-"]"#)];
    let single = Server::launch(None, &kept);
    let node = Server::launch(Some(&config), &kept);
    for server in [&single, &node] {
        server.wait_ready().await;
        let r = trigger(
            server,
            json!({"name": "e", "channels": ["kept-1", "other"], "data": "x"}),
        )
        .await;
        assert_eq!(r.status, 200);
        common::eventually("the kept channel's event can be polled", || async {
            event_data(&signed_poll(server, "channels=kept-1").await) == ["x"]
        })
        .await;
        let other = signed_poll(server, "channels=other").await;
        assert_eq!(other.status, 404);
        let error = other.body["error"].as_str().expect("error");
        assert!(error.contains("history_channels"), "{error}");
    }
    // In Redis, only the kept channel has a stream.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let exists: (bool, bool) = redis::pipe()
        .exists("{herald:app:app-id:kept-1}:history")
        .exists("{herald:app:app-id:other}:history")
        .query_async(&mut connection)
        .await
        .expect("exists");
    assert_eq!(exists, (true, false));
}
