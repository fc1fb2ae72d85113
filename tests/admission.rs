//! Who may connect, and how many: origins, authorized connections, the
//! HTTP API's per-app rates, the node's and each address's caps, memory
//! pressure and `/ready`. Every refusal is checked for its code, for what
//! it leaves alone (the other apps, the other addresses, the connected
//! clients), and for its count in `herald_refused_total`.

mod common;

use common::{api_as, free_port, scrape, trigger, Client, Endpoint, Server, KEY};
use herald::config::AppConfig;
use serde_json::{json, Value};

const PROTOCOL: &str = "protocol=7&client=js&version=8.4.0";

/// A WebSocket to app `key` with these request headers; returns the
/// client and its first frame (or the close code when it was closed
/// without one).
async fn open(
    server: &Server,
    key: &str,
    headers: &[(&str, &str)],
) -> (Client, Result<Value, u16>) {
    let url = server.ws_url(key, PROTOCOL);
    let mut client = Client::open_with_headers(&url, headers).await;
    let first = client.next().await.map_err(|closed| closed.code);
    (client, first)
}

/// Asserts the connection was refused with `pusher:error` `code` and the
/// close frame with the same code.
async fn refused(server: &Server, key: &str, headers: &[(&str, &str)], code: u16) {
    let (mut client, first) = open(server, key, headers).await;
    let error = first.unwrap_or_else(|c| panic!("closed with {c} before pusher:error"));
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], code, "{error}");
    let (closed, _) = client.expect_close().await;
    assert_eq!(closed, code);
}

/// Asserts the connection was admitted; returns it.
async fn admitted(server: &Server, key: &str, headers: &[(&str, &str)]) -> Client {
    let (mut client, first) = open(server, key, headers).await;
    let hello = first.unwrap_or_else(|c| panic!("refused with {c} ({headers:?})"));
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    client.socket_id = hello["data"]["socket_id"].as_str().expect("id").to_owned();
    client
}

/// A plain HTTP request with headers; returns the status and the body.
async fn http(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let client = awc::Client::new();
    let url = format!("http://127.0.0.1:{}{path}", server.port);
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send().await.expect("request");
    let body = actix_rt::time::timeout(common::TIMEOUT, response.body())
        .await
        .expect("the answer ends")
        .expect("body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn refusals(samples: &std::collections::HashMap<String, f64>, reason: &str) -> f64 {
    samples
        .get(&format!("herald_refused_total{{reason=\"{reason}\"}}"))
        .copied()
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn browsers_from_other_origins_are_refused_and_the_api_ignores_origins() {
    let metrics = free_port();
    let server = Server::launch(
        Some(
            r#"
            [[apps]]
            id = "app-id"
            key = "app-key"
            secret = "app-secret"
            allowed_origins = ["https://app.example.com", "https://*.example.org"]
            [[apps]]
            id = "strict"
            key = "strict-key"
            secret = "strict-secret"
            allowed_origins = ["https://app.example.com"]
            allow_missing_origin = false
            "#,
        ),
        &[("HERALD_METRICS_PORT", &metrics.to_string())],
    );
    admitted(&server, KEY, &[("Origin", "https://app.example.com")]).await;
    admitted(&server, KEY, &[("Origin", "https://shop.example.org")]).await;
    admitted(&server, KEY, &[]).await; // a server-side client: no Origin
    refused(&server, KEY, &[("Origin", "https://evil.test")], 4009).await;
    refused(&server, KEY, &[("Origin", "https://example.org")], 4009).await;
    refused(&server, "strict-key", &[], 4009).await;
    admitted(
        &server,
        "strict-key",
        &[("Origin", "https://app.example.com")],
    )
    .await;

    // pusher-js's HTTP fallback and the polling endpoint: 403 with a JSON error.
    let evil = [("Origin", "https://evil.test")];
    let (status, body) = http(&server, "POST", "/pusher/app/app-key/123/abcdef/xhr", &evil).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin not allowed"), "{body}");
    let (status, body) = http(&server, "GET", "/app/app-key/poll/v1?channels=news", &evil).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = http(
        &server,
        "GET",
        "/app/app-key/poll/v1?channels=news",
        &[("Origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(status, 200);

    // The signed API does not look at origins.
    let app = AppConfig::new("app-id", "app-key", "app-secret");
    let body = json!({"name": "e", "channel": "news", "data": "{}"}).to_string();
    let r = api_as(
        &server,
        &app,
        "POST",
        "/apps/app-id/events",
        "",
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 200);

    assert_eq!(refusals(&scrape(metrics).await, "origin"), 5.0);
}

#[actix_rt::test]
async fn authorized_connections_close_at_the_timeout_unless_they_subscribe_privately_or_sign_in() {
    let server = Server::with_config(
        r#"
        [[apps]]
        id = "app-id"
        key = "app-key"
        secret = "app-secret"
        require_authorization = true
        signin_timeout = 1
        "#,
    );
    // Opened first, so their deadlines pass before the control's.
    let mut private = admitted(&server, KEY, &[]).await;
    let reply = private.subscribe_private("private-orders").await;
    assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    let mut signed_in = admitted(&server, KEY, &[]).await;
    let user = r#"{"id":"7"}"#;
    let auth = herald::auth::make_auth(
        KEY,
        common::SECRET,
        &herald::auth::user_string_to_sign(&signed_in.socket_id, user),
    );
    signed_in
        .send(json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user}}))
        .await;
    signed_in.expect("pusher:signin_success").await;
    // A public subscription is no authorization.
    let mut public = admitted(&server, KEY, &[]).await;
    public.subscribe("news").await;
    let mut idle = admitted(&server, KEY, &[]).await;

    // The control connections are closed at their deadline (the barrier:
    // the others' deadlines are past by then)...
    for client in [&mut public, &mut idle] {
        let (code, frames) = client.expect_close().await;
        assert_eq!(code, 4009, "{frames:?}");
        assert!(
            frames.iter().any(|f| f["data"]["code"] == 4009),
            "{frames:?}"
        );
    }
    // ...while the authorized ones are still served.
    private.expect_nothing_pending().await;
    signed_in.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn one_address_is_capped_and_rated_across_websockets_and_http_sessions() {
    let metrics = free_port();
    let server = Server::launch(
        Some("[server]\ntrust_forwarded_for = true\n"),
        &[
            ("HERALD_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "2"),
            ("HERALD_METRICS_PORT", &metrics.to_string()),
        ],
    );
    let client_a = [("X-Forwarded-For", "203.0.113.5")];
    let _ws = admitted(&server, KEY, &client_a).await;
    // An HTTP fallback session of the same address takes the second place.
    let (status, body) = http(
        &server,
        "POST",
        "/pusher/app/app-key/1/aaaaaaaa/xhr?protocol=7",
        &client_a,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "o\n"), "an open session");
    refused(&server, KEY, &client_a, 4100).await;
    let (_, body) = http(
        &server,
        "POST",
        "/pusher/app/app-key/1/bbbbbbbb/xhr?protocol=7",
        &client_a,
    )
    .await;
    assert!(body.contains("4100"), "{body}");
    // Another address is not affected.
    admitted(&server, KEY, &[("X-Forwarded-For", "203.0.113.6")]).await;

    // The rate of new connections: 1/s, burst 2.
    let rated = Server::launch(
        Some("[server]\ntrust_forwarded_for = true\n"),
        &[("HERALD_SERVER__NEW_CONNECTIONS_PER_ADDRESS_PER_SECOND", "1")],
    );
    let client_b = [("X-Forwarded-For", "198.51.100.9")];
    drop(admitted(&rated, KEY, &client_b).await);
    drop(admitted(&rated, KEY, &client_b).await);
    refused(&rated, KEY, &client_b, 4100).await;
    admitted(&rated, KEY, &[("X-Forwarded-For", "198.51.100.10")]).await;

    let samples = scrape(metrics).await;
    assert_eq!(refusals(&samples, "max_connections_per_address"), 2.0);
}

#[actix_rt::test]
async fn the_node_cap_counts_websockets_and_http_sessions_together() {
    let server = Server::with_config("[server]\nmax_connections = 2\n");
    let mut ws = admitted(&server, KEY, &[]).await;
    let (status, body) = http(
        &server,
        "POST",
        "/pusher/app/app-key/1/cccccccc/xhr?protocol=7",
        &[],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "o\n"), "an open session");
    refused(&server, KEY, &[], 4100).await;
    let (_, body) = http(
        &server,
        "POST",
        "/pusher/app/app-key/1/dddddddd/xhr?protocol=7",
        &[],
    )
    .await;
    assert!(body.contains("4100"), "{body}");
    // A place comes back when a connection leaves.
    ws.send(json!({"event": "pusher:ping", "data": {}})).await;
    ws.expect("pusher:pong").await;
    drop(ws);
    common::eventually("the closed socket's place comes back", || async {
        let (_client, first) = open(&server, KEY, &[]).await;
        first.is_ok_and(|f| f["event"] == "pusher:connection_established")
    })
    .await;
}

#[actix_rt::test]
async fn the_http_api_is_rated_per_app_and_another_app_is_not_affected() {
    let server = Server::with_config(
        r#"
        [[apps]]
        id = "busy"
        key = "busy-key"
        secret = "busy-secret"
        max_backend_events_per_second = 3
        max_read_requests_per_second = 1
        [[apps]]
        id = "calm"
        key = "calm-key"
        secret = "calm-secret"
        "#,
    );
    let busy = AppConfig::new("busy", "busy-key", "busy-secret");
    let calm = AppConfig::new("calm", "calm-key", "calm-secret");
    let event = json!({"name": "e", "channel": "news", "data": "{}"}).to_string();
    let batch = json!({"batch": [
        {"name": "e", "channel": "a", "data": "1"},
        {"name": "e", "channel": "b", "data": "2"},
    ]})
    .to_string();
    // A batch counts its events: 2, then 1, then nothing is left.
    let r = api_as(
        &server,
        &busy,
        "POST",
        "/apps/busy/batch_events",
        "",
        Some(&batch),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = api_as(
        &server,
        &busy,
        "POST",
        "/apps/busy/events",
        "",
        Some(&event),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = api_as(
        &server,
        &busy,
        "POST",
        "/apps/busy/events",
        "",
        Some(&event),
    )
    .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.body["error"]
        .as_str()
        .is_some_and(|e| e.contains("3 events per second")));
    for _ in 0..5 {
        let r = api_as(
            &server,
            &calm,
            "POST",
            "/apps/calm/events",
            "",
            Some(&event),
        )
        .await;
        assert_eq!(r.status, 200, "another app has its own budget");
    }
    let r = api_as(&server, &busy, "GET", "/apps/busy/channels", "", None).await;
    assert_eq!(r.status, 200);
    let r = api_as(&server, &busy, "GET", "/apps/busy/channels/news", "", None).await;
    assert_eq!(r.status, 429);
    let r = api_as(&server, &calm, "GET", "/apps/calm/channels", "", None).await;
    assert_eq!(r.status, 200);
}

#[actix_rt::test]
async fn memory_pressure_flips_ready_and_refuses_newcomers_while_clients_are_served() {
    let server = Server::with_config("[server]\naccept_traffic_memory_percent = 90.0\n");
    let (status, body) = http(&server, "GET", "/ready", &[]).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let mut existing = Client::connect(&server).await;
    existing.subscribe("news").await;

    // A reload with a tiny share: this process is over it at once.
    let config = server.config_path().expect("config file");
    let reload_with = |toml: &str| {
        std::fs::write(config, toml).expect("write");
        std::process::Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .expect("kill -HUP");
    };
    reload_with("[server]\naccept_traffic_memory_percent = 0.0001\n");
    common::eventually("/ready says over capacity", || async {
        http(&server, "GET", "/ready", &[]).await
            == (503, r#"{"status":"over capacity"}"#.to_owned())
    })
    .await;
    let (status, _) = http(&server, "GET", "/up", &[]).await;
    assert_eq!(status, 200, "liveness is not readiness");
    refused(&server, KEY, &[], 4100).await;
    let r = trigger(
        &server,
        json!({"name": "still", "channel": "news", "data": "{}"}),
    )
    .await;
    assert_eq!(r.status, 200);
    existing.expect("still").await;

    // And back.
    reload_with("[server]\naccept_traffic_memory_percent = 90.0\n");
    common::eventually("/ready is ready again", || async {
        http(&server, "GET", "/ready", &[]).await.0 == 200
    })
    .await;
    admitted(&server, KEY, &[]).await;
}
