//! Apps in a database: each scenario runs on a private PostgreSQL and a
//! private MariaDB, with the real binary: apps created, changed, disabled,
//! deleted and rotated over the admin API reach connections and the HTTP
//! API at once; unknown keys cost one query each; the database going away
//! (at start and later) leaves the clients served.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::database::{Database, Kind};
use common::redis_server::RedisServer;
use common::{api_as, eventually, raw_request, Client, Endpoint, Server, TIMEOUT};
use herald::config::AppConfig;
use serde_json::{json, Value};

const TOKEN: &str = "admin-token-0123456789abcdef-0123456789";

macro_rules! on_postgres_and_mariadb {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_rt::test]
            async fn on_postgres() {
                super::$name(crate::Kind::Postgres).await
            }

            #[actix_rt::test]
            async fn on_mariadb() {
                super::$name(crate::Kind::MariaDb).await
            }
        }
    )*};
}

on_postgres_and_mariadb!(
    apps_made_over_the_admin_api_are_served_at_once,
    a_rotated_secret_is_accepted_during_its_grace_only,
    unknown_keys_cost_one_query_each_while_remembered,
    clients_are_served_while_the_database_is_away,
    a_database_away_at_start_stops_herald_or_serves_the_fallback,
    a_change_on_one_node_reaches_the_other_within_two_seconds,
    the_cli_manages_apps,
);

/// `herald apps …` against `server`; its exit code and output (JSON when
/// it printed JSON).
fn cli(server: &impl Endpoint, args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("apps")
        .args(args)
        .env("HERALD_URL", format!("http://127.0.0.1:{}", server.port()))
        .env("HERALD_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("herald apps");
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&text).unwrap_or_else(|_| {
        Value::String(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    });
    (out.status.code().unwrap_or(-1), value)
}

/// A database with the app table made by `herald apps migrate`.
fn migrated(kind: Kind) -> Database {
    let db = Database::start(kind);
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["apps", "migrate"])
        .env("HERALD_APP_STORE__URL", db.url())
        .output()
        .expect("herald apps migrate");
    assert!(
        out.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

fn store_config(db: &Database, extra: &str) -> String {
    format!(
        "[app_store]\nurl = \"{}\"\nrefresh_seconds = 1\n{extra}\n[admin]\ntoken = \"{TOKEN}\"\n",
        db.url()
    )
}

/// An admin API request: status and JSON body.
async fn admin(
    server: &impl Endpoint,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://127.0.0.1:{}/admin/apps{path}", server.port());
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let request = awc::Client::new()
        .request(method, url)
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .timeout(TIMEOUT);
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .expect("admin request");
    let bytes = response.body().await.expect("admin body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (response.status().as_u16(), body)
}

async fn create(server: &impl Endpoint, body: Value) -> AppConfig {
    let (status, app) = admin(server, "POST", "", Some(body)).await;
    assert_eq!(status, 201, "{app}");
    credentials(&app)
}

fn credentials(app: &Value) -> AppConfig {
    let text = |f: &str| app[f].as_str().unwrap_or_default().to_owned();
    AppConfig::new(text("id"), text("key"), text("secret"))
}

/// Connects with `key`; the close code when refused.
async fn connect(server: &impl Endpoint, key: &str) -> Result<Client, u16> {
    let mut client = Client::open(&server.ws_url(key, "protocol=7")).await;
    match client.next().await {
        Ok(hello) if hello["event"] == "pusher:connection_established" => {
            client.socket_id = hello["data"]["socket_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok(client)
        }
        Ok(error) => {
            assert_eq!(error["event"], "pusher:error", "{error}");
            Err(client.expect_close().await.0)
        }
        Err(closed) => Err(closed.code),
    }
}

async fn trigger(server: &impl Endpoint, app: &AppConfig, channel: &str) -> u16 {
    let body = json!({"name": "e", "channels": [channel], "data": "{}"}).to_string();
    let path = format!("/apps/{}/events", app.id);
    api_as(server, app, "POST", &path, "", Some(&body))
        .await
        .status
}

/// `herald_app_store_queries_total{query}` on the metrics port.
async fn store_queries(metrics: u16, query: &str) -> f64 {
    let name = format!("herald_app_store_queries_total{{query=\"{query}\"}}");
    common::scrape(metrics)
        .await
        .get(&name)
        .copied()
        .unwrap_or(0.0)
}

async fn ready(server: &impl Endpoint) -> u16 {
    raw_request(server, "GET", "/ready", "").await.status
}

async fn apps_made_over_the_admin_api_are_served_at_once(kind: Kind) {
    let db = migrated(kind);
    let server = Server::with_config(&store_config(&db, ""));
    let app = create(
        &server,
        json!({"id": "shop", "key": "shop-key", "secret": "shop-secret", "max_connections": 50}),
    )
    .await;
    let made_up = create(&server, json!({"max_event_bytes": 2048})).await;
    assert!(
        made_up.id.parse::<u32>().is_ok(),
        "a made-up id is a number: {}",
        made_up.id
    );
    assert_eq!(made_up.key.len(), 20);

    let mut client = connect(&server, "shop-key").await.expect("served at once");
    client.subscribe("orders").await;
    assert_eq!(trigger(&server, &app, "orders").await, 200);
    assert_eq!(client.expect("e").await["channel"], "orders");

    // The listing shows the live connection; the row has every setting.
    let (status, listed) = admin(&server, "GET", "", None).await;
    assert_eq!(status, 200);
    let shop = listed["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["id"] == "shop"))
        .cloned()
        .expect("listed");
    assert_eq!(shop["connections"], 1, "{shop}");
    assert_eq!(shop["max_connections"], 50);

    // Bad input: the field is named, nothing changes.
    let (status, error) = admin(
        &server,
        "PATCH",
        "/shop",
        Some(json!({"max_event_bytes": 0})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("max_event_bytes")),
        "{error}"
    );
    let (status, error) = admin(&server, "PATCH", "/shop", Some(json!({"colour": "red"}))).await;
    assert_eq!(status, 400);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("colour")),
        "{error}"
    );
    let (status, _) = admin(
        &server,
        "POST",
        "",
        Some(json!({"id": "other", "key": "shop-key"})),
    )
    .await;
    assert_eq!(status, 409, "a key is one app's");

    // Disabled: its sockets close with 4003, its API answers 403.
    let (status, _) = admin(&server, "PATCH", "/shop", Some(json!({"enabled": false}))).await;
    assert_eq!(status, 200);
    assert_eq!(client.expect_close().await.0, 4003);
    assert_eq!(connect(&server, "shop-key").await.err(), Some(4003));
    assert_eq!(trigger(&server, &app, "orders").await, 403);

    // Enabled again, then deleted: closed with 4003, unknown after.
    admin(&server, "PATCH", "/shop", Some(json!({"enabled": true}))).await;
    let mut client = connect(&server, "shop-key").await.expect("enabled again");
    let (status, _) = admin(&server, "DELETE", "/shop", None).await;
    assert_eq!(status, 200);
    assert_eq!(client.expect_close().await.0, 4003);
    assert_eq!(connect(&server, "shop-key").await.err(), Some(4001));
    assert_eq!(trigger(&server, &app, "orders").await, 404);
    assert_eq!(admin(&server, "GET", "/shop", None).await.0, 404);

    // A row written by hand is served too (looked up on first use).
    db.sql("INSERT INTO herald_apps (id, secret, max_connections, `key`) VALUES ('hand', 'hand-secret', 5, 'hand-key')"
        .replace('`', if kind == Kind::Postgres { "\"" } else { "`" })
        .as_str());
    connect(&server, "hand-key")
        .await
        .expect("a row written by hand");
}

async fn a_rotated_secret_is_accepted_during_its_grace_only(kind: Kind) {
    let db = migrated(kind);
    let server = Server::with_config(&store_config(&db, ""));
    let first = create(
        &server,
        json!({"id": "r", "key": "r-key", "secret": "first-secret"}),
    )
    .await;
    let (status, rotated) = admin(
        &server,
        "POST",
        "/r/rotate-secret",
        Some(json!({"grace_seconds": 60})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let second = credentials(&rotated);
    assert_ne!(second.secret, first.secret);
    assert!(
        rotated["previous_secret_until"].as_u64().is_some(),
        "{rotated}"
    );
    assert_eq!(trigger(&server, &second, "c").await, 200, "the new secret");
    assert_eq!(
        trigger(&server, &first, "c").await,
        200,
        "the old one during its grace"
    );

    // A channel signature made with the old secret, during the grace.
    let mut client = connect(&server, "r-key").await.expect("connects");
    let auth = herald::auth::make_auth(
        "r-key",
        &first.secret,
        &herald::auth::channel_string_to_sign(&client.socket_id, "private-a", None),
    );
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": auth}}))
        .await;
    client
        .expect("pusher_internal:subscription_succeeded")
        .await;

    // Rotated again without grace: only the newest secret signs.
    let (_, rotated) = admin(
        &server,
        "POST",
        "/r/rotate-secret",
        Some(json!({"grace_seconds": 0})),
    )
    .await;
    let third = credentials(&rotated);
    assert_eq!(trigger(&server, &third, "c").await, 200);
    assert_eq!(
        trigger(&server, &second, "c").await,
        401,
        "the previous secret is refused"
    );
    assert_eq!(trigger(&server, &first, "c").await, 401);
    assert!(rotated.get("previous_secret_until").is_none(), "{rotated}");
}

async fn unknown_keys_cost_one_query_each_while_remembered(kind: Kind) {
    let db = migrated(kind);
    let metrics = common::free_port();
    let server = Server::launch(
        Some(&store_config(&db, "miss_seconds = 60")),
        &[("HERALD_METRICS_PORT", &metrics.to_string())],
    );
    // A flood of one bad key, at once and after: one query.
    let attempts = (0..20).map(|_| connect(&server, "bad-key"));
    for refused in futures_util::future::join_all(attempts).await {
        assert_eq!(refused.err(), Some(4001));
    }
    for _ in 0..10 {
        assert_eq!(connect(&server, "bad-key").await.err(), Some(4001));
    }
    assert_eq!(
        store_queries(metrics, "key").await,
        1.0,
        "one query for one unknown key"
    );
    // Another key: one more.
    for _ in 0..5 {
        assert_eq!(connect(&server, "other-bad-key").await.err(), Some(4001));
    }
    assert_eq!(store_queries(metrics, "key").await, 2.0);
    // Created over the API, a remembered key is served at once.
    create(&server, json!({"id": "late", "key": "bad-key"})).await;
    connect(&server, "bad-key").await.expect("created since");
    // The API's unknown ids are remembered the same way. (On PostgreSQL
    // the creation above was notified and read by id: counted from here.)
    let before = store_queries(metrics, "id").await;
    let ghost = AppConfig::new("ghost", "ghost-key", "ghost-secret");
    for _ in 0..5 {
        assert_eq!(trigger(&server, &ghost, "c").await, 404);
    }
    assert_eq!(store_queries(metrics, "id").await - before, 1.0);
}

async fn clients_are_served_while_the_database_is_away(kind: Kind) {
    let mut db = migrated(kind);
    let server = Server::with_config(&store_config(&db, ""));
    let app = create(&server, json!({"id": "kept", "key": "kept-key"})).await;
    let mut client = connect(&server, "kept-key").await.expect("connects");
    client.subscribe("news").await;
    assert_eq!(ready(&server).await, 200);

    db.stop();
    eventually("/ready says degraded", || async {
        ready(&server).await == 503
    })
    .await;
    assert_eq!(
        raw_request(&server, "GET", "/ready", "").await.body["status"],
        "degraded"
    );
    // Cached apps keep working: their clients, their API, new connections.
    assert_eq!(trigger(&server, &app, "news").await, 200);
    assert_eq!(client.expect("e").await["channel"], "news");
    connect(&server, "kept-key")
        .await
        .expect("a cached key connects");
    assert_eq!(connect(&server, "never-seen-key").await.err(), Some(4001));
    let (status, error) = admin(&server, "POST", "", Some(json!({"id": "x"}))).await;
    assert_eq!(status, 503, "{error}");

    db.start_again();
    eventually("/ready says ready", || async {
        ready(&server).await == 200
    })
    .await;
    create(&server, json!({"id": "after", "key": "after-key"})).await;
    connect(&server, "after-key")
        .await
        .expect("served after recovery");
    client.expect_nothing_pending().await;
}

async fn a_database_away_at_start_stops_herald_or_serves_the_fallback(kind: Kind) {
    let mut db = migrated(kind);
    let quote = if kind == Kind::Postgres { '"' } else { '`' };
    db.sql(&format!(
        "INSERT INTO herald_apps (id, {quote}key{quote}, secret) VALUES ('db-app', 'db-key', 'db-secret')"
    ));
    db.stop();
    let config = common::tempfile::TempPath::write(&store_config(&db, ""));
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(config.path())
        .env("HERALD_METRICS_PORT", "0")
        .output()
        .expect("herald");
    assert_eq!(out.status.code(), Some(2), "a config error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("app store is unavailable"), "{stderr}");
    assert!(
        stderr.contains("cannot connect"),
        "the database's own reason: {stderr}"
    );
    assert!(
        !stderr.contains("herald-pw"),
        "no password in the log: {stderr}"
    );

    let fallback = common::tempfile::TempPath::write(
        "[[apps]]\nid = \"fb\"\nkey = \"fb-key\"\nsecret = \"fb-secret\"\n",
    );
    let extra = format!("fallback_file = \"{}\"", fallback.path().display());
    let server = Server::with_config(&store_config(&db, &extra));
    let mut fb = connect(&server, "fb-key")
        .await
        .expect("the fallback's app");
    assert_eq!(ready(&server).await, 503);
    db.start_again();
    // The store's apps replace the fallback's once it answers.
    eventually("the store's app is served", || async {
        connect(&server, "db-key").await.is_ok()
    })
    .await;
    assert_eq!(fb.expect_close().await.0, 4003);
    assert_eq!(ready(&server).await, 200);
}

async fn a_change_on_one_node_reaches_the_other_within_two_seconds(kind: Kind) {
    let db = migrated(kind);
    let redis = RedisServer::start();
    // A long refresh: only notifications can be this quick.
    let config = format!(
        "[app_store]\nurl = \"{}\"\nrefresh_seconds = 600\n[admin]\ntoken = \"{TOKEN}\"\n[cluster]\ndriver = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n",
        db.url(),
        redis.port
    );
    let a = Server::with_config(&config);
    let b = Server::with_config(&config);
    a.wait_ready().await;
    b.wait_ready().await;
    create(&a, json!({"id": "both", "key": "both-key"})).await;
    let mut on_a = connect(&a, "both-key").await.expect("on a");
    let mut on_b = connect(&b, "both-key").await.expect("on b");
    // A change made on a: b's socket is closed within 2 s.
    let changed = Instant::now();
    let (status, _) = admin(&a, "PATCH", "/both", Some(json!({"enabled": false}))).await;
    assert_eq!(status, 200);
    assert_eq!(on_b.expect_close().await.0, 4003);
    assert_eq!(on_a.expect_close().await.0, 4003);
    assert!(
        changed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        changed.elapsed()
    );
    // And back, through b this time.
    admin(&b, "PATCH", "/both", Some(json!({"enabled": true}))).await;
    eventually("a serves the app again", || async {
        connect(&a, "both-key").await.is_ok()
    })
    .await;
    // Both nodes list the same apps.
    let (_, on_a) = admin(&a, "GET", "", None).await;
    let (_, on_b) = admin(&b, "GET", "", None).await;
    let ids = |v: &Value| {
        v["apps"]
            .as_array()
            .map(|a| a.iter().map(|x| x["id"].clone()).collect::<Vec<_>>())
    };
    assert_eq!(ids(&on_a), ids(&on_b));
}

async fn the_cli_manages_apps(kind: Kind) {
    let db = migrated(kind);
    let server = Server::with_config(&store_config(&db, ""));
    let (code, made) = cli(
        &server,
        &[
            "create",
            "--id",
            "cli",
            "--set",
            "max_connections=3",
            "--set",
            "allowed_origins=[\"https://a.test\"]",
        ],
    );
    assert_eq!(code, 0, "{made}");
    assert_eq!(
        (made["id"].clone(), made["max_connections"].clone()),
        (json!("cli"), json!(3))
    );
    assert_eq!(made["allowed_origins"], json!(["https://a.test"]));
    let key = made["key"].as_str().expect("a made-up key").to_owned();
    let client = connect(&server, &key).await.expect("served");
    let (code, listed) = cli(&server, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(listed["apps"][0]["connections"], 1, "{listed}");
    let (code, updated) = cli(&server, &["update", "cli", "--set", "max_connections=0"]);
    assert_eq!((code, updated["max_connections"].clone()), (0, json!(0)));
    let (code, error) = cli(&server, &["update", "cli", "--set", "max_event_bytes=0"]);
    assert_eq!(code, 1);
    assert!(error.to_string().contains("max_event_bytes"), "{error}");
    let (code, rotated) = cli(&server, &["rotate-secret", "cli", "--grace-seconds", "30"]);
    assert_eq!(code, 0);
    assert_ne!(rotated["secret"], made["secret"]);
    let (code, _) = cli(&server, &["delete", "cli"]);
    assert_eq!(code, 0);
    let (code, gone) = cli(&server, &["show", "cli"]);
    assert_eq!(code, 1, "{gone}");
    drop(client);
    // Without the token the API refuses.
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "apps",
            "list",
            "--token",
            "wrong-token-wrong-token-wrong-token",
        ])
        .env("HERALD_URL", format!("http://127.0.0.1:{}", server.port()))
        .output()
        .expect("herald apps");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// PostgreSQL tells the nodes of a row changed by hand at once.
#[actix_rt::test]
async fn postgres_notifies_a_change_made_in_sql() {
    let db = migrated(Kind::Postgres);
    let server = Server::with_config(
        &store_config(&db, "").replace("refresh_seconds = 1", "refresh_seconds = 600"),
    );
    create(&server, json!({"id": "sql", "key": "sql-key"})).await;
    let mut client = connect(&server, "sql-key").await.expect("served");
    let changed = Instant::now();
    db.sql("UPDATE herald_apps SET enabled = false WHERE id = 'sql'");
    assert_eq!(client.expect_close().await.0, 4003);
    assert!(
        changed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        changed.elapsed()
    );
    // A bulk change: one full read rather than a query per row.
    let values: Vec<String> = (0..200)
        .map(|i| format!("('bulk{i}', 'bulk-key-{i}', 's')"))
        .collect();
    db.sql(&format!(
        "INSERT INTO herald_apps (id, \"key\", secret) VALUES {}",
        values.join(", ")
    ));
    eventually("the bulk insert is served", || async {
        connect(&server, "bulk-key-199").await.is_ok()
    })
    .await;
    connect(&server, "bulk-key-0").await.expect("every row");
}
