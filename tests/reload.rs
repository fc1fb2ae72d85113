//! Reload on SIGHUP: apps added, changed and removed without dropping the
//! connections of the others; a bad file keeps the running configuration.

mod common;

use std::process::Command;

use common::webhook_receiver::Receiver;
use common::{api_as, Client, Endpoint, Server};
use herald::config::AppConfig;
use serde_json::json;

fn app(id: &str, key: &str, secret: &str, extra: &str) -> String {
    format!("[[apps]]\nid = \"{id}\"\nkey = \"{key}\"\nsecret = \"{secret}\"\n{extra}\n")
}

fn hangup(server: &Server) {
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill -HUP");
}

async fn connect_to(server: &Server, key: &str) -> Client {
    let mut client = Client::open(&server.ws_url(key, "protocol=7")).await;
    let hello = client.recv().await;
    assert_eq!(hello["event"], "pusher:connection_established", "{hello}");
    client
}

#[actix_rt::test]
async fn sighup_applies_apps_without_dropping_anyone() {
    let a = app("a", "a-key", "a-secret", "");
    let b = app("b", "b-key", "b-secret", "");
    let server = Server::with_config(&format!("{a}{b}"));
    let path = server.config_path().expect("config file").to_owned();
    let mut on_a = connect_to(&server, "a-key").await;
    let mut on_b = connect_to(&server, "b-key").await;
    on_b.subscribe("lobby").await;
    let mut unknown = Client::open(&server.ws_url("c-key", "protocol=7")).await;
    assert_eq!(
        unknown.recv().await["event"],
        "pusher:error",
        "c does not exist yet"
    );

    // b gets a new secret, c is added with a webhook.
    let mut hooks = Receiver::for_app("c-key", "c-secret").await;
    let b2 = app("b", "b-key", "b-secret-2", "");
    let c = app(
        "c",
        "c-key",
        "c-secret",
        &format!(
            "webhook_debounce = 0\n[[apps.webhooks]]\nurl = \"{}\"",
            hooks.url()
        ),
    );
    // Also a key that cannot change live, and the log level (which the
    // test harness fixes with HERALD_LOG).
    let server_section = "[server]\nactivity_timeout = 60\nlog_level = \"debug\"\n";
    std::fs::write(&path, format!("{server_section}{a}{b2}{c}")).expect("rewrite config");
    hangup(&server);
    server.logged("reload: done", 1).await;
    server
        .logged("server.activity_timeout changed; that takes a restart", 1)
        .await;
    server.logged("log_level ignored", 1).await;

    let mut on_c = connect_to(&server, "c-key").await;
    on_c.subscribe("news").await;
    assert_eq!(
        hooks.next().await.events,
        vec![json!({"name": "channel_occupied", "channel": "news"})]
    );
    let old = AppConfig::new("b", "b-key", "b-secret");
    let new = AppConfig::new("b", "b-key", "b-secret-2");
    assert_eq!(
        api_as(&server, &old, "GET", "/apps/b/channels", "", None)
            .await
            .status,
        401
    );
    let r = api_as(&server, &new, "GET", "/apps/b/channels", "", None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["channels"]["lobby"].is_object(),
        "b kept its subscriber: {}",
        r.body
    );
    // Nobody was dropped.
    on_a.expect_nothing_pending().await;
    on_b.expect_nothing_pending().await;

    // a is removed: its connections are closed with 4003.
    std::fs::write(&path, format!("{server_section}{b2}{c}")).expect("rewrite config");
    hangup(&server);
    let (code, _) = on_a.expect_close().await;
    assert_eq!(code, 4003);
    on_b.expect_nothing_pending().await;

    // A file that does not load changes nothing.
    std::fs::write(&path, "[[apps]]\nid = \"broken\"\nkey = 5\n").expect("rewrite config");
    hangup(&server);
    server.logged("reload refused", 1).await;
    connect_to(&server, "c-key").await;
    assert_eq!(
        api_as(&server, &new, "GET", "/apps/b/channels", "", None)
            .await
            .status,
        200
    );
    on_c.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn a_new_key_closes_the_old_keys_connections() {
    let server = Server::with_config(&app("x", "x-key-1", "x-secret", ""));
    let path = server.config_path().expect("config file").to_owned();
    let mut old = connect_to(&server, "x-key-1").await;
    std::fs::write(&path, app("x", "x-key-2", "x-secret", "")).expect("rewrite config");
    hangup(&server);
    let (code, _) = old.expect_close().await;
    assert_eq!(code, 4003);
    connect_to(&server, "x-key-2").await;
}
