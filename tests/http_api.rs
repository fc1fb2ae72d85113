//! The signed HTTP API over real sockets: triggering, batches, channel
//! queries, and every error status.

mod common;

use common::{api, raw_request, trigger, Client, Server, APP_ID};
use serde_json::json;

#[actix_rt::test]
async fn trigger_delivers_the_data_string_unchanged() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    client.subscribe("orders").await;
    let data = r#"{"order":{"id":1},"url":"https:\/\/x.test"}"#;
    let r = trigger(
        &server,
        json!({"name": "App\\Events\\OrderShipped", "channel": "orders", "data": data}),
    )
    .await;
    assert_eq!((r.status, r.body), (200, json!({})));
    let event = client.expect("App\\Events\\OrderShipped").await;
    assert_eq!(event["channel"], "orders");
    assert_eq!(event["raw_data"], data);
}

#[actix_rt::test]
async fn trigger_to_several_channels_and_excluding_a_socket() {
    let server = Server::start();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe("c1").await;
    b.subscribe("c1").await;
    b.subscribe("c2").await;
    let r = trigger(
        &server,
        json!({"name": "e", "channels": ["c1", "c2"], "data": "x", "socket_id": a.socket_id}),
    )
    .await;
    assert_eq!(r.status, 200);
    let first = b.expect("e").await;
    let second = b.expect("e").await;
    let mut got = [first["channel"].clone(), second["channel"].clone()];
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, [json!("c1"), json!("c2")]);
    a.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn trigger_info_reports_counts() {
    let server = Server::start();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.join("presence-i", "1", json!(null)).await;
    b.join("presence-i", "1", json!(null)).await;
    a.subscribe("public-i").await;
    let r = trigger(
        &server,
        json!({"name": "e", "channels": ["presence-i", "public-i", "empty-i"], "data": "x",
               "info": "user_count,subscription_count"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"channels": {
            "presence-i": {"user_count": 1, "subscription_count": 2},
            "public-i": {"subscription_count": 1},
            "empty-i": {"subscription_count": 0}
        }})
    );
}

#[actix_rt::test]
async fn batch_events() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    client.subscribe("b1").await;
    client.subscribe("b2").await;
    let body = json!({"batch": [
        {"name": "one", "channel": "b1", "data": "1"},
        {"name": "two", "channel": "b2", "data": "2"}
    ]});
    let r = common::post(&server, "/apps/app-id/batch_events", &body.to_string()).await;
    assert_eq!((r.status, r.body), (200, json!({})));
    assert_eq!(client.expect("one").await["channel"], "b1");
    assert_eq!(client.expect("two").await["channel"], "b2");

    let body = json!({"batch": [
        {"name": "three", "channel": "b1", "data": "3", "info": "subscription_count"},
        {"name": "four", "channel": "b2", "data": "4"}
    ]});
    let r = common::post(&server, "/apps/app-id/batch_events", &body.to_string()).await;
    assert_eq!(r.body, json!({"batch": [{"subscription_count": 1}, {}]}));

    let eleven: Vec<_> = (0..11)
        .map(|i| json!({"name": "e", "channel": "b1", "data": i.to_string()}))
        .collect();
    let r = common::post(
        &server,
        "/apps/app-id/batch_events",
        &json!({ "batch": eleven }).to_string(),
    )
    .await;
    assert_eq!(r.status, 400);

    // One bad event fails the whole batch: nothing is published.
    let body = json!({"batch": [
        {"name": "ok", "channel": "b1", "data": "1"},
        {"name": "bad", "channel": "bad channel", "data": "1"}
    ]});
    let r = common::post(&server, "/apps/app-id/batch_events", &body.to_string()).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]
        .as_str()
        .is_some_and(|e| e.contains("batch[1]")));
    client.expect("three").await;
    client.expect("four").await;
    client.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn channel_queries() {
    let server = Server::start();
    let r = common::get(&server, "/apps/app-id/channels", "").await;
    assert_eq!((r.status, r.body), (200, json!({"channels": {}})));

    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.join("presence-q", "1", json!({"n": 1})).await;
    b.join("presence-q", "2", json!({"n": 2})).await;
    a.subscribe("public-q").await;
    b.subscribe("public-q").await;

    let r = common::get(&server, "/apps/app-id/channels", "").await;
    assert_eq!(
        r.body,
        json!({"channels": {"presence-q": {}, "public-q": {}}})
    );
    let r = common::get(
        &server,
        "/apps/app-id/channels",
        "filter_by_prefix=presence-&info=user_count",
    )
    .await;
    assert_eq!(
        r.body,
        json!({"channels": {"presence-q": {"user_count": 2}}})
    );
    let r = common::get(&server, "/apps/app-id/channels", "info=user_count").await;
    assert_eq!(r.status, 400);
    let r = common::get(
        &server,
        "/apps/app-id/channels",
        "info=subscription_count&filter_by_prefix=public-",
    )
    .await;
    assert_eq!(
        r.body,
        json!({"channels": {"public-q": {"subscription_count": 2}}})
    );

    let r = api(
        &server,
        "GET",
        "/apps/app-id/channels/presence-q",
        "info=user_count,subscription_count",
        None,
    )
    .await;
    assert_eq!(
        r.body,
        json!({"occupied": true, "user_count": 2, "subscription_count": 2})
    );
    // PHP sends the comma percent-encoded.
    let r = common::get(
        &server,
        "/apps/app-id/channels/presence-q",
        "info=user_count%2Csubscription_count",
    )
    .await;
    assert_eq!(r.body["user_count"], 2);
    let r = common::get(&server, "/apps/app-id/channels/public-q", "info=user_count").await;
    assert_eq!(r.status, 400);
    let r = common::get(
        &server,
        "/apps/app-id/channels/nobody",
        "info=subscription_count",
    )
    .await;
    assert_eq!(r.body, json!({"occupied": false, "subscription_count": 0}));
    let r = common::get(&server, "/apps/app-id/channels/nobody", "").await;
    assert_eq!(r.body, json!({"occupied": false}));

    let r = common::get(&server, "/apps/app-id/channels/presence-q/users", "").await;
    let mut ids: Vec<String> = r.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2"]);
    let r = common::get(&server, "/apps/app-id/channels/presence-none/users", "").await;
    assert_eq!(r.body, json!({"users": []}));
    let r = common::get(&server, "/apps/app-id/channels/public-q/users", "").await;
    assert_eq!(r.status, 400);
}

#[actix_rt::test]
async fn python_style_get_with_body_md5_is_accepted() {
    let server = Server::start();
    let r = common::get(
        &server,
        "/apps/app-id/channels",
        "body_md5=d41d8cd98f00b204e9800998ecf8427e",
    )
    .await;
    assert_eq!(r.status, 200);
}

#[actix_rt::test]
async fn signature_failures_are_401_with_a_json_error() {
    let server = Server::start();
    let body = r#"{"name":"e","channel":"c","data":"1"}"#;
    let r = raw_request(&server, "POST", "/apps/app-id/events", body).await;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]
        .as_str()
        .is_some_and(|e| e.contains("auth_key")));

    let wrong_secret = herald::config::AppConfig::new(APP_ID, common::KEY, "not-the-secret");
    let r = common::api_as(
        &server,
        &wrong_secret,
        "POST",
        "/apps/app-id/events",
        "",
        Some(body),
    )
    .await;
    assert_eq!(r.status, 401);
    let error = r.body["error"].as_str().expect("error string");
    assert!(error.contains("Invalid signature"), "{error}");
    assert!(!error.contains(common::SECRET), "secret leaked: {error}");

    let wrong_key = herald::config::AppConfig::new(APP_ID, "other-key", common::SECRET);
    let r = common::api_as(
        &server,
        &wrong_key,
        "POST",
        "/apps/app-id/events",
        "",
        Some(body),
    )
    .await;
    assert_eq!(r.status, 401);

    // A stale timestamp, correctly signed.
    let stale = common::unix_now() - 700;
    let query = herald::trigger::signed_query(
        &herald::config::AppConfig::new(APP_ID, common::KEY, common::SECRET),
        "POST",
        "/apps/app-id/events",
        body.as_bytes(),
        stale,
    );
    let r = raw_request(
        &server,
        "POST",
        &format!("/apps/app-id/events?{query}"),
        body,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]
        .as_str()
        .is_some_and(|e| e.contains("Timestamp")));

    // A body that does not match body_md5.
    let query = herald::trigger::signed_query(
        &herald::config::AppConfig::new(APP_ID, common::KEY, common::SECRET),
        "POST",
        "/apps/app-id/events",
        body.as_bytes(),
        common::unix_now(),
    );
    let other = r#"{"name":"e","channel":"c","data":"2"}"#;
    let r = raw_request(
        &server,
        "POST",
        &format!("/apps/app-id/events?{query}"),
        other,
    )
    .await;
    assert_eq!(r.status, 401);
}

#[actix_rt::test]
async fn unknown_app_and_route_are_404() {
    let server = Server::start();
    let r = common::post(&server, "/apps/nope/events", "{}").await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].is_string());
    let r = raw_request(&server, "GET", "/no/such/route", "").await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].is_string());
}

#[actix_rt::test]
async fn bad_bodies_are_400_and_oversize_is_413() {
    let server = Server::start();
    let post = |body: String| {
        let server = &server;
        async move { common::post(server, "/apps/app-id/events", &body).await }
    };
    let r = post("not json".into()).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].is_string());
    let r = post(r#"{"name":"e","data":"1"}"#.into()).await;
    assert_eq!(r.status, 400);
    let r = post(r#"{"name":"pusher:x","channel":"c","data":"1"}"#.into()).await;
    assert_eq!(r.status, 400);
    let channels: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let r = post(json!({"name": "e", "channels": channels, "data": "1"}).to_string()).await;
    assert_eq!(r.status, 400);
    let r =
        post(json!({"name": "e", "channel": "c", "data": "x".repeat(10 * 1024 + 1)}).to_string())
            .await;
    assert_eq!(r.status, 413);
    let r =
        post(json!({"name": "e", "channel": "c", "data": "x".repeat(10 * 1024)}).to_string()).await;
    assert_eq!(r.status, 200);
    let r =
        post(json!({"name": "e", "channel": "c", "data": "x".repeat(2 << 20)}).to_string()).await;
    assert_eq!(r.status, 413);
}

#[actix_rt::test]
async fn disabled_app_api_is_403() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nenabled = false\n",
    );
    let r = trigger(&server, json!({"name": "e", "channel": "c", "data": "1"})).await;
    assert_eq!(r.status, 403);
}

#[actix_rt::test]
async fn health_endpoint() {
    let server = Server::start();
    let r = raw_request(&server, "GET", "/up", "").await;
    assert_eq!(r.status, 200);
}
