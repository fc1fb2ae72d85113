//! Pusher features beyond plain channels, over real sockets: cache and
//! encrypted channels, client events, user sign-in, server-to-user events,
//! terminating a user's connections, watchlists, subscription counts, and
//! the `herald trigger` command.

mod common;

use common::{trigger, Client, Server, KEY, SECRET};
use serde_json::json;

fn app_config(extra: &str) -> String {
    format!("[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n{extra}\n")
}

#[actix_rt::test]
async fn cache_channels_replay_the_last_event_or_say_miss() {
    let server = Server::start();
    for channel in [
        "cache-prices",
        "private-cache-p",
        "presence-cache-p",
        "private-encrypted-cache-p",
    ] {
        let mut client = Client::connect(&server).await;
        let ok = match channel {
            "cache-prices" => client.subscribe(channel).await,
            c if c.starts_with("presence-") => client.join(c, "1", json!(null)).await,
            c => client.subscribe_private(c).await,
        };
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{channel}"
        );
        let miss = client.expect("pusher:cache_miss").await;
        assert_eq!(miss["channel"], channel);

        trigger(
            &server,
            json!({"name": "first", "channel": channel, "data": "1"}),
        )
        .await;
        trigger(
            &server,
            json!({"name": "price", "channel": channel, "data": "{\"v\":2}"}),
        )
        .await;
        client.expect("first").await;
        client.expect("price").await;

        let mut late = Client::connect(&server).await;
        let ok = match channel {
            "cache-prices" => late.subscribe(channel).await,
            c if c.starts_with("presence-") => late.join(c, "2", json!(null)).await,
            c => late.subscribe_private(c).await,
        };
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        let cached = late.expect("price").await;
        assert_eq!(cached["channel"], channel);
        assert_eq!(cached["raw_data"], "{\"v\":2}");
    }
    // A non-cache channel never replays.
    let mut client = Client::connect(&server).await;
    trigger(
        &server,
        json!({"name": "e", "channel": "plain", "data": "1"}),
    )
    .await;
    client.subscribe("plain").await;
    client.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn cache_entries_expire() {
    let server = Server::with_config(&app_config("cache_ttl = 1"));
    trigger(
        &server,
        json!({"name": "e", "channel": "cache-x", "data": "1"}),
    )
    .await;
    let mut client = Client::connect(&server).await;
    client.subscribe("cache-x").await;
    client.expect("e").await;
    common::eventually("the cached event expires", || async {
        let mut c = Client::connect(&server).await;
        c.subscribe("cache-x").await;
        c.recv().await["event"] == "pusher:cache_miss"
    })
    .await;
}

#[actix_rt::test]
async fn encrypted_channels_relay_ciphertext_untouched() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    let ok = client.subscribe_private("private-encrypted-docs").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let payload = r#"{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX","ciphertext":"c2VjcmV0+/=="}"#;
    trigger(
        &server,
        json!({"name": "e", "channel": "private-encrypted-docs", "data": payload}),
    )
    .await;
    assert_eq!(client.expect("e").await["raw_data"], payload);
    // Several channels including an encrypted one are refused.
    let r = trigger(
        &server,
        json!({"name": "e", "channels": ["private-encrypted-docs", "other"], "data": "1"}),
    )
    .await;
    assert_eq!(r.status, 400);
    // Client events are refused on encrypted channels.
    client
        .send(json!({"event": "client-x", "channel": "private-encrypted-docs", "data": {}}))
        .await;
    assert!(client.expect("pusher:error").await["data"]["code"].is_null());
}

#[actix_rt::test]
async fn client_events_reach_the_others_but_not_the_sender() {
    let server = Server::start();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe_private("private-chat").await;
    b.subscribe_private("private-chat").await;
    a.send(json!({"event": "client-typing", "channel": "private-chat", "data": {"typing": true}}))
        .await;
    let got = b.expect("client-typing").await;
    assert_eq!(got["raw_data"], r#"{"typing":true}"#);
    assert!(got.get("user_id").is_none());
    a.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn presence_client_events_carry_the_senders_user_id() {
    let server = Server::start();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.join("presence-chat", "42", json!(null)).await;
    b.join("presence-chat", "7", json!(null)).await;
    a.expect("pusher_internal:member_added").await;
    // A forged user_id is overwritten.
    a.send(json!({"event": "client-hi", "channel": "presence-chat", "data": "yo", "user_id": "7"}))
        .await;
    let got = b.expect("client-hi").await;
    assert_eq!(got["user_id"], "42");
    assert_eq!(got["raw_data"], "yo");
}

#[actix_rt::test]
async fn client_events_are_refused_where_pusher_refuses_them() {
    let server = Server::start();
    let mut a = Client::connect(&server).await;
    a.subscribe("public").await;
    let refusals = [
        json!({"event": "client-x", "channel": "public", "data": {}}),
        json!({"event": "client-x", "channel": "private-not-mine", "data": {}}),
        json!({"event": "client-x", "data": {}}),
        json!({"event": "not-client", "channel": "public", "data": {}}),
    ];
    for frame in refusals {
        a.send(frame.clone()).await;
        let err = a.expect("pusher:error").await;
        assert!(err["data"]["code"].is_null(), "{frame}: {err}");
    }
    a.subscribe_private("private-big").await;
    a.send(
        json!({"event": "client-x", "channel": "private-big", "data": "x".repeat(10 * 1024 + 1)}),
    )
    .await;
    assert!(a.expect("pusher:error").await["data"]["code"].is_null());
    a.send(json!({"event": format!("client-{}", "x".repeat(200)), "channel": "private-big", "data": {}}))
        .await;
    assert!(a.expect("pusher:error").await["data"]["code"].is_null());
}

#[actix_rt::test]
async fn client_events_can_be_disabled() {
    let server = Server::with_config(&app_config("client_events = false"));
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe_private("private-x").await;
    b.subscribe_private("private-x").await;
    a.send(json!({"event": "client-x", "channel": "private-x", "data": {}}))
        .await;
    let err = a.expect("pusher:error").await;
    assert!(err["data"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("enable")));
    b.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn client_events_are_rate_limited_per_connection() {
    let server = Server::with_config(&app_config("client_event_rate = 3"));
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe_private("private-r").await;
    b.subscribe_private("private-r").await;
    for i in 0..4 {
        a.send(json!({"event": "client-n", "channel": "private-r", "data": i}))
            .await;
    }
    let err = a.expect("pusher:error").await;
    assert_eq!(err["data"]["code"], 4301);
    for i in 0..3 {
        assert_eq!(b.expect("client-n").await["raw_data"], i.to_string());
    }
    // The connection stays open.
    a.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn signin_succeeds_and_is_refused_with_4009_on_a_bad_signature() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    let user_data = json!({"id": "42", "user_info": {"name": "Ada"}});
    let ok = client.signin(user_data.clone()).await;
    assert_eq!(ok["event"], "pusher:signin_success");
    assert_eq!(ok["data"]["user_data"], user_data.to_string());

    let mut other = Client::connect(&server).await;
    other
        .send(json!({"event": "pusher:signin", "data": {"auth": "app-key:00", "user_data": "{\"id\":\"1\"}"}}))
        .await;
    let err = other.expect("pusher:error").await;
    assert_eq!(err["data"]["code"], 4009);
    other.expect_nothing_pending().await;
    // A valid signature over user_data without a string id is refused too.
    let err = other.signin(json!({"id": 5})).await;
    assert_eq!(err["data"]["code"], 4009);
    // Signing in again as someone else is refused; as the same user, fine.
    let err = client.signin(json!({"id": "43"})).await;
    assert_eq!(err["data"]["code"], 4009);
    let again = client.signin(user_data).await;
    assert_eq!(again["event"], "pusher:signin_success");
}

#[actix_rt::test]
async fn apps_requiring_signin_close_unauthenticated_connections() {
    let server = Server::with_config(&app_config("require_signin = true\nsignin_timeout = 1"));
    let mut bad = Client::connect(&server).await;
    bad.send(json!({"event": "pusher:signin", "data": {"auth": "app-key:00", "user_data": "{\"id\":\"1\"}"}}))
        .await;
    let (code, frames) = bad.expect_close().await;
    assert_eq!(code, 4009);
    assert_eq!(frames[0]["data"]["code"], 4009);

    let mut silent = Client::connect(&server).await;
    let (code, _) = silent.expect_close().await;
    assert_eq!(code, 4009);

    let mut good = Client::connect(&server).await;
    good.signin(json!({"id": "1"})).await;
    good.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn server_to_user_events_reach_every_signed_in_socket() {
    let server = Server::start();
    let mut first = Client::connect(&server).await;
    let mut second = Client::connect(&server).await;
    let mut stranger = Client::connect(&server).await;
    first.signin(json!({"id": "42"})).await;
    second.signin(json!({"id": "42"})).await;
    stranger.signin(json!({"id": "7"})).await;

    let ok = first.subscribe("#server-to-user-42").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let err = stranger.subscribe("#server-to-user-42").await;
    assert_eq!(err["event"], "pusher:subscription_error");

    // As pusher-http-php's sendToUser sends it.
    let r = trigger(
        &server,
        json!({"name": "notice", "channel": "#server-to-user-42", "data": "{\"msg\":\"hi\"}"}),
    )
    .await;
    assert_eq!(r.status, 200);
    for client in [&mut first, &mut second] {
        let got = client.expect("notice").await;
        assert_eq!(got["channel"], "#server-to-user-42");
        assert_eq!(got["data"], json!({"msg": "hi"}));
    }
    stranger.expect_nothing_pending().await;
    // Never listed as a channel.
    let r = common::get(&server, "/apps/app-id/channels", "").await;
    assert_eq!(r.body, json!({"channels": {}}));
}

#[actix_rt::test]
async fn terminate_connections_closes_the_users_sockets_with_4009() {
    let server = Server::start();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    let mut other = Client::connect(&server).await;
    a.signin(json!({"id": "42"})).await;
    b.signin(json!({"id": "42"})).await;
    other.signin(json!({"id": "7"})).await;
    // Joining a presence channel as 42 without signing in is not a target.
    let mut presence_only = Client::connect(&server).await;
    presence_only.join("presence-t", "42", json!(null)).await;

    let r = common::post(&server, "/apps/app-id/users/42/terminate_connections", "{}").await;
    assert_eq!((r.status, r.body), (200, json!({})));
    for client in [&mut a, &mut b] {
        let (code, frames) = client.expect_close().await;
        assert_eq!(code, 4009);
        assert_eq!(
            frames.last().map(|f| f["data"]["code"].clone()),
            Some(json!(4009))
        );
    }
    other.expect_nothing_pending().await;
    presence_only.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn watchlists_report_online_and_offline() {
    let server = Server::start();
    let mut seven = Client::connect(&server).await;
    seven.signin(json!({"id": "7"})).await;
    let mut watcher = Client::connect(&server).await;
    let ok = watcher
        .signin(json!({"id": "1", "watchlist": ["7", "8"]}))
        .await;
    assert_eq!(ok["event"], "pusher:signin_success");
    let status = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        status["data"]["events"],
        json!([{"name": "online", "user_ids": ["7"]}, {"name": "offline", "user_ids": ["8"]}])
    );
    let mut eight = Client::connect(&server).await;
    eight.signin(json!({"id": "8"})).await;
    let online = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        online["data"]["events"],
        json!([{"name": "online", "user_ids": ["8"]}])
    );
    drop(seven);
    let offline = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        offline["data"]["events"],
        json!([{"name": "offline", "user_ids": ["7"]}])
    );
}

#[actix_rt::test]
async fn presence_can_join_as_the_signed_in_user() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    client
        .signin(json!({"id": "42", "user_info": {"name": "Ada"}}))
        .await;
    let auth = herald::auth::make_auth(
        KEY,
        SECRET,
        &herald::auth::channel_string_to_sign(&client.socket_id, "presence-s", None),
    );
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "presence-s", "auth": auth}}))
        .await;
    let ok = client
        .expect("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(
        ok["data"]["presence"]["hash"],
        json!({"42": {"name": "Ada"}})
    );
}

#[actix_rt::test]
async fn subscription_counts_when_enabled() {
    let server = Server::with_config(&app_config("subscription_count = true"));
    let mut a = Client::connect(&server).await;
    a.subscribe("counted").await;
    assert_eq!(
        a.expect("pusher_internal:subscription_count").await["data"]["subscription_count"],
        1
    );
    let mut b = Client::connect(&server).await;
    b.subscribe("counted").await;
    assert_eq!(
        b.expect("pusher_internal:subscription_count").await["data"]["subscription_count"],
        2
    );
    assert_eq!(
        a.expect("pusher_internal:subscription_count").await["data"]["subscription_count"],
        2
    );
    drop(b);
    assert_eq!(
        a.expect("pusher_internal:subscription_count").await["data"]["subscription_count"],
        1
    );

    // Off by default.
    let plain = Server::start();
    let mut c = Client::connect(&plain).await;
    c.subscribe("counted").await;
    c.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn herald_trigger_command_publishes() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    client.subscribe("cli").await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "trigger",
            "--url",
            &format!("http://127.0.0.1:{}", server.port),
            "--channel",
            "cli",
            "--event",
            "hello",
            "--data",
            "{\"from\":\"cli\"}",
        ])
        .env_remove("PUSHER_APP_SECRET")
        .output()
        .expect("run herald trigger");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(client.expect("hello").await["data"], json!({"from": "cli"}));

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "trigger",
            "--url",
            &format!("http://127.0.0.1:{}", server.port),
        ])
        .args(["--channel", "cli", "--event", "x", "--secret", "wrong"])
        .output()
        .expect("run herald trigger");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("401"));
}

#[actix_rt::test]
async fn bad_config_exits_with_2_naming_the_key() {
    let path = common::tempfile::TempPath::write("[server]\nport = \"nope\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(path.path())
        .output()
        .expect("run herald");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("port"));

    let version = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--version")
        .output()
        .expect("run herald");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("herald "));
}
