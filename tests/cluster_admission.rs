//! Admission in a cluster: what each node decides for itself (origins,
//! authorized connections, the API's rate per node) is decided alike on
//! every node, and `/ready` follows the node's link to Redis while `/up`
//! stays 200.

mod common;

use common::redis_server::{Backend, RedisServer};
use common::{api_as, Client, Endpoint, Server, KEY};
use herald::config::AppConfig;
use serde_json::json;

const APP: &str = r#"
[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"
allowed_origins = ["https://app.example.com"]
require_authorization = true
signin_timeout = 1
max_backend_events_per_second = 1
"#;

async fn node(redis: &RedisServer) -> Server {
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n{}{APP}",
        redis.url(),
        redis.cluster_keys()
    );
    let server = Server::launch(Some(&config), &[]);
    server.wait_ready().await;
    server
}

/// The first frame of a WebSocket opened with `origin`.
async fn first_frame(server: &Server, origin: &str) -> (Client, serde_json::Value) {
    let url = server.ws_url(KEY, "protocol=7");
    let mut client = Client::open_with_headers(&url, &[("Origin", origin)]).await;
    let frame = client.recv().await;
    (client, frame)
}

async fn ready(server: &Server) -> (u16, String) {
    let mut response = awc::Client::new()
        .get(format!("http://127.0.0.1:{}/ready", server.port))
        .send()
        .await
        .expect("ready");
    let body = response.body().await.expect("body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_rt::test]
async fn every_node_admits_alike_and_ready_follows_redis() {
    let mut redis = RedisServer::start();
    let a = node(&redis).await;
    let b = node(&redis).await;
    for server in [&a, &b] {
        let (_, refused) = first_frame(server, "https://evil.test").await;
        assert_eq!(refused["event"], "pusher:error");
        assert_eq!(refused["data"]["code"], 4009);
        let (mut allowed, hello) = first_frame(server, "https://app.example.com").await;
        assert_eq!(hello["event"], "pusher:connection_established");
        // Unauthorized: closed at the deadline on either node.
        let (code, _) = allowed.expect_close().await;
        assert_eq!(code, 4009);
        assert_eq!(
            ready(server).await,
            (200, r#"{"status":"ready"}"#.to_owned())
        );
    }

    // The API's rate is each node's own: one event per second on each.
    let app = AppConfig::new("app-id", "app-key", "app-secret");
    let event = json!({"name": "e", "channel": "news", "data": "{}"}).to_string();
    for server in [&a, &b] {
        let r = api_as(
            server,
            &app,
            "POST",
            "/apps/app-id/events",
            "",
            Some(&event),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = api_as(&a, &app, "POST", "/apps/app-id/events", "", Some(&event)).await;
    assert_eq!(r.status, 429);

    // Redis away: not ready (still alive); back: ready again.
    redis.stop();
    common::eventually("node a is not ready without Redis", || async {
        ready(&a).await == (503, r#"{"status":"degraded"}"#.to_owned())
    })
    .await;
    let up = awc::Client::new()
        .get(format!("http://127.0.0.1:{}/up", a.port))
        .send()
        .await
        .expect("up");
    assert_eq!(up.status().as_u16(), 200);
    redis.start_again();
    common::eventually("node a is ready again", || async {
        ready(&a).await.0 == 200
    })
    .await;
}
