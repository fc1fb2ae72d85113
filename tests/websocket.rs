//! The WebSocket protocol over real sockets: handshake, heartbeat, admission
//! errors, subscriptions to public, private and presence channels.

mod common;

use common::{Client, Endpoint, Server, KEY};
use serde_json::json;

#[actix_rt::test]
async fn handshake_gives_a_socket_id_and_activity_timeout() {
    let server = Server::start();
    let mut client = Client::open(&server.ws_url(KEY, "protocol=7&client=js")).await;
    let hello = client.expect("pusher:connection_established").await;
    let socket_id = hello["data"]["socket_id"]
        .as_str()
        .expect("string socket_id");
    let (a, b) = socket_id.split_once('.').expect("dotted");
    assert!(
        !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()),
        "{socket_id}"
    );
    assert!(
        !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()),
        "{socket_id}"
    );
    assert_eq!(hello["data"]["activity_timeout"], 30);
    // data is sent double-encoded, as Pusher does.
    assert!(hello["raw_data"].is_string());

    let other = Client::connect(&server).await;
    assert_ne!(other.socket_id, socket_id);
}

#[actix_rt::test]
async fn ping_gets_pong() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    let pong = client.expect("pusher:pong").await;
    assert_eq!(pong["raw_data"], "{}");
    // A string-encoded data member is accepted too.
    client
        .send(json!({"event": "pusher:ping", "data": "{}"}))
        .await;
    client.expect("pusher:pong").await;
}

#[actix_rt::test]
async fn unknown_key_is_refused_with_4001() {
    let server = Server::start();
    let mut client = Client::open(&server.ws_url("nope", "protocol=7")).await;
    let (code, frames) = client.expect_close().await;
    assert_eq!(code, 4001);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["event"], "pusher:error");
    assert_eq!(frames[0]["data"]["code"], 4001);
}

#[actix_rt::test]
async fn unsupported_protocol_versions_are_refused_with_4007() {
    let server = Server::start();
    for query in ["protocol=3", "protocol=8", "protocol=seven"] {
        let mut client = Client::open(&server.ws_url(KEY, query)).await;
        let (code, frames) = client.expect_close().await;
        assert_eq!(code, 4007, "{query}");
        assert_eq!(frames[0]["data"]["code"], 4007, "{query}");
    }
    // Java sends 5; a missing parameter is taken as 7.
    for query in ["protocol=5", ""] {
        let mut client = Client::open(&server.ws_url(KEY, query)).await;
        client.expect("pusher:connection_established").await;
    }
}

#[actix_rt::test]
async fn strict_mode_refuses_a_missing_protocol_with_4008() {
    let server = Server::with_config("[server]\nrequire_protocol_param = true\n");
    let mut client = Client::open(&server.ws_url(KEY, "")).await;
    assert_eq!(client.expect_close().await.0, 4008);
    let mut ok = Client::open(&server.ws_url(KEY, "protocol=7")).await;
    ok.expect("pusher:connection_established").await;
}

#[actix_rt::test]
async fn disabled_app_is_refused_with_4003() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nenabled = false\n",
    );
    let mut client = Client::open(&server.ws_url(KEY, "protocol=7")).await;
    let (code, frames) = client.expect_close().await;
    assert_eq!(code, 4003);
    assert_eq!(frames[0]["data"]["code"], 4003);
}

#[actix_rt::test]
async fn connection_quota_is_enforced_with_4004() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_connections = 1\n",
    );
    let first = Client::connect(&server).await;
    let mut second = Client::open(&server.ws_url(KEY, "protocol=7")).await;
    let (code, frames) = second.expect_close().await;
    assert_eq!(code, 4004);
    assert_eq!(frames[0]["data"]["code"], 4004);
    // Once the first leaves, its slot is free again.
    drop(first);
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let mut again = Client::open(&server.ws_url(KEY, "protocol=7")).await;
        match again.next().await {
            Ok(frame) if frame["event"] == "pusher:connection_established" => break,
            _ if std::time::Instant::now() < deadline => continue,
            other => panic!("slot never freed: {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn idle_connections_are_pinged_then_closed_with_4201() {
    let server = Server::with_config("[server]\nactivity_timeout = 1\npong_timeout = 1\n");
    let mut client = Client::connect(&server).await;
    client.expect("pusher:ping").await;
    let (code, frames) = client.expect_close().await;
    assert_eq!(code, 4201);
    assert_eq!(
        frames.last().map(|f| f["data"]["code"].clone()),
        Some(json!(4201))
    );
}

#[actix_rt::test]
async fn answering_pings_keeps_the_connection_open() {
    let server = Server::with_config("[server]\nactivity_timeout = 1\npong_timeout = 1\n");
    let mut client = Client::connect(&server).await;
    for _ in 0..3 {
        client.expect("pusher:ping").await;
        client
            .send(json!({"event": "pusher:pong", "data": {}}))
            .await;
    }
    client.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn malformed_frames_get_an_error_and_the_connection_survives() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    for bad in ["not json", "[1,2]", "{\"data\":{}}", "{\"event\":5}"] {
        client.send_text(bad).await;
        let error = client.expect("pusher:error").await;
        assert!(error["data"]["code"].is_null(), "{bad}: {error}");
    }
    client
        .send(json!({"event": "pusher:subscribe", "data": {"nochannel": 1}}))
        .await;
    client.expect("pusher:error").await;
    client.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn oversized_messages_close_with_1009() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_message_bytes = 1000\n",
    );
    let mut client = Client::connect(&server).await;
    let big = json!({"event": "client-x", "channel": "private-a", "data": "x".repeat(2000)});
    client.send(big).await;
    assert_eq!(client.expect_close().await.0, 1009);
}

#[actix_rt::test]
async fn public_subscribe_and_unsubscribe() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    let ok = client.subscribe("orders").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(ok["channel"], "orders");
    assert_eq!(ok["raw_data"], "{}");

    common::trigger(
        &server,
        json!({"name": "e", "channel": "orders", "data": "1"}),
    )
    .await;
    client.expect("e").await;

    client
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "orders"}}))
        .await;
    // Unsubscribe has no reply; the pong proves it was processed.
    client.expect_nothing_pending().await;
    let r = common::trigger(
        &server,
        json!({"name": "e", "channel": "orders", "data": "2"}),
    )
    .await;
    assert_eq!(r.status, 200);
    client.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn invalid_channel_names_are_refused() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    for name in ["has space", "#other", &"a".repeat(201)] {
        let err = client.subscribe(name).await;
        assert_eq!(err["event"], "pusher:subscription_error", "{name}");
        assert_eq!(err["channel"], name);
        assert_eq!(err["data"]["status"], 400);
    }
}

#[actix_rt::test]
async fn private_channels_check_the_signature() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    let ok = client.subscribe_private("private-orders").await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");

    let cases = [
        json!({"channel": "private-x"}),
        json!({"channel": "private-x", "auth": "app-key:deadbeef"}),
        json!({"channel": "private-x", "auth": "no-colon"}),
        // A signature for another socket.
        json!({"channel": "private-x", "auth": herald::auth::make_auth(KEY, common::SECRET, "1.2:private-x")}),
        // The right signature under another key.
        json!({"channel": "private-x", "auth": herald::auth::make_auth("other", common::SECRET,
            &format!("{}:private-x", client.socket_id))}),
    ];
    for data in cases {
        client
            .send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        let err = client.expect("pusher:subscription_error").await;
        assert_eq!(err["channel"], "private-x");
        assert_eq!(err["data"]["type"], "AuthError");
        assert_eq!(err["data"]["status"], 401);
    }
    // Refused subscriptions receive nothing.
    common::trigger(
        &server,
        json!({"name": "e", "channel": "private-x", "data": "1"}),
    )
    .await;
    client.expect_nothing_pending().await;
}

#[actix_rt::test]
async fn presence_members_are_users_not_sockets() {
    let server = Server::start();
    let mut ada = Client::connect(&server).await;
    let ok = ada
        .join("presence-room", "42", json!({"name": "Ada"}))
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(
        ok["data"],
        json!({"presence": {"ids": ["42"], "hash": {"42": {"name": "Ada"}}, "count": 1}})
    );

    let mut bob = Client::connect(&server).await;
    let ok = bob.join("presence-room", "7", json!({"name": "Bob"})).await;
    assert_eq!(ok["data"]["presence"]["count"], 2);
    assert_eq!(ok["data"]["presence"]["hash"]["42"], json!({"name": "Ada"}));
    let added = ada.expect("pusher_internal:member_added").await;
    assert_eq!(
        added["data"],
        json!({"user_id": "7", "user_info": {"name": "Bob"}})
    );

    // Bob's second socket is not a new member.
    let mut bob2 = Client::connect(&server).await;
    let ok = bob2
        .join("presence-room", "7", json!({"name": "Bob"}))
        .await;
    assert_eq!(ok["data"]["presence"]["count"], 2);
    ada.expect_nothing_pending().await;

    drop(bob2);
    bob.expect_nothing_pending().await;
    ada.expect_nothing_pending().await;
    bob.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}))
        .await;
    let removed = ada.expect("pusher_internal:member_removed").await;
    assert_eq!(removed["data"], json!({"user_id": "7"}));
}

#[actix_rt::test]
async fn presence_accepts_numeric_user_ids_and_checks_channel_data() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    let channel_data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
    let auth = herald::auth::make_auth(
        KEY,
        common::SECRET,
        &herald::auth::channel_string_to_sign(&client.socket_id, "presence-a", Some(channel_data)),
    );
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "presence-a", "auth": auth, "channel_data": channel_data}}))
        .await;
    let ok = client
        .expect("pusher_internal:subscription_succeeded")
        .await;
    assert_eq!(ok["data"]["presence"]["ids"], json!(["10"]));

    // channel_data altered after signing.
    let tampered = r#"{"user_id":11,"user_info":{"name":"Mr. Pusher"}}"#;
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "presence-a", "auth": auth, "channel_data": tampered}}))
        .await;
    let err = client.expect("pusher:subscription_error").await;
    assert_eq!(err["data"]["status"], 401);

    // No channel_data and not signed in.
    let auth = herald::auth::make_auth(
        KEY,
        common::SECRET,
        &herald::auth::channel_string_to_sign(&client.socket_id, "presence-b", None),
    );
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "presence-b", "auth": auth}}))
        .await;
    client.expect("pusher:subscription_error").await;
}

#[actix_rt::test]
async fn presence_member_limit() {
    let server = Server::with_config(
        "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_presence_members = 2\n",
    );
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    let mut c = Client::connect(&server).await;
    a.join("presence-full", "1", json!(null)).await;
    b.join("presence-full", "2", json!(null)).await;
    let err = c.join("presence-full", "3", json!(null)).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["type"], "LimitReached");
    // Another socket of an existing member is still welcome.
    let ok = c.join("presence-full", "2", json!(null)).await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}

#[actix_rt::test]
async fn presence_limits_on_user_info_and_user_id() {
    let server = Server::start();
    let mut client = Client::connect(&server).await;
    let err = client
        .join("presence-x", "1", json!({"bio": "x".repeat(1100)}))
        .await;
    assert_eq!(err["event"], "pusher:subscription_error");
    let err = client
        .join("presence-x", &"u".repeat(129), json!(null))
        .await;
    assert_eq!(err["event"], "pusher:subscription_error");
    let ok = client
        .join("presence-x", "1", json!({"bio": "short"}))
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
}

#[actix_rt::test]
async fn resubscribing_is_idempotent() {
    let server = Server::start();
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.join("presence-r", "1", json!(null)).await;
    b.join("presence-r", "2", json!(null)).await;
    a.expect("pusher_internal:member_added").await;
    let again = b.join("presence-r", "2", json!(null)).await;
    assert_eq!(again["event"], "pusher_internal:subscription_succeeded");
    assert_eq!(again["data"]["presence"]["count"], 2);
    a.expect_nothing_pending().await;
    // One unsubscribe is enough to leave.
    b.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-r"}}))
        .await;
    a.expect("pusher_internal:member_removed").await;
}

#[actix_rt::test]
async fn disconnect_leaves_every_channel() {
    let server = Server::start();
    let mut watcher = Client::connect(&server).await;
    watcher.join("presence-d", "1", json!(null)).await;
    let mut leaver = Client::connect(&server).await;
    leaver.join("presence-d", "2", json!(null)).await;
    leaver.subscribe("public-d").await;
    watcher.expect("pusher_internal:member_added").await;
    drop(leaver);
    let removed = watcher.expect("pusher_internal:member_removed").await;
    assert_eq!(removed["data"]["user_id"], "2");
    common::eventually("the leaver's channels are gone", || async {
        let r = common::get(&server, "/apps/app-id/channels", "").await;
        r.body == json!({"channels": {"presence-d": {}}})
    })
    .await;
}

#[actix_rt::test]
async fn graceful_shutdown_tells_clients_to_reconnect() {
    let mut server = Server::start();
    let mut client = Client::connect(&server).await;
    server.terminate();
    let (code, frames) = client.expect_close().await;
    assert_eq!(code, 4200);
    assert_eq!(
        frames.last().map(|f| f["data"]["code"].clone()),
        Some(json!(4200))
    );
    assert_eq!(server.wait_exit(), Some(0));
}

#[actix_rt::test]
async fn a_client_that_stops_reading_is_disconnected_without_hurting_others() {
    let server = Server::with_config("[server]\nconnection_queue = 32\n");
    let mut stalled = Client::connect(&server).await;
    stalled.subscribe("firehose").await;
    let mut healthy = Client::connect(&server).await;
    healthy.subscribe("firehose").await;
    let stalled_id = stalled.socket_id.clone();

    // 10 KiB events until the stalled client's socket buffers and queue are
    // full and the server lets it go; the healthy client keeps reading.
    let data = "x".repeat(10 * 1024);
    let batch: Vec<_> = (0..10)
        .map(|_| json!({"name": "e", "channel": "firehose", "data": data}))
        .collect();
    let body = json!({ "batch": batch }).to_string();
    let mut dropped = false;
    for _ in 0..400 {
        let r = common::post(&server, "/apps/app-id/batch_events", &body).await;
        assert_eq!(r.status, 200);
        for _ in 0..10 {
            healthy.expect("e").await;
        }
        let r = common::get(
            &server,
            "/apps/app-id/channels/firehose",
            "info=subscription_count",
        )
        .await;
        if r.body["subscription_count"] == 1 {
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "the stalled client {stalled_id} was never disconnected"
    );
    healthy.expect_nothing_pending().await;
    drop(stalled);
}

/// One raw HTTP/1.1 exchange: the response's status line and body.
fn raw_exchange(server: &Server, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[actix_rt::test]
async fn requests_that_are_no_websocket_handshake_get_a_json_error() {
    let server = Server::start();
    // Another kind of upgrade (curl --http2 asks for h2c): served as the
    // plain HTTP/1.1 request it also is.
    let (status, body) = raw_exchange(
        &server,
        "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
    );
    assert!(status.contains(" 200"), "{status}");
    assert!(body.contains("status"), "{body}");
    // A WebSocket handshake to another path: a reason, not a hang.
    let (status, body) = raw_exchange(
        &server,
        "GET /apps/app-id HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(status.contains(" 404"), "{status}");
    assert!(body.contains("/app/{key} only"), "{body}");
    // The WebSocket path without a handshake.
    let (status, body) = raw_exchange(
        &server,
        "GET /app/app-key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status.contains(" 400"), "{status}");
    assert!(body.contains("WebSocket handshake"), "{body}");
    // An upgrade to the WebSocket path that is not a valid handshake.
    let (status, body) = raw_exchange(
        &server,
        "GET /app/app-key HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert!(status.contains(" 400"), "{status}");
    assert!(body.contains("WebSocket handshake"), "{body}");
}
