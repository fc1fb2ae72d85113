//! Unit tests of the protocol session, with no socket: a session is admitted
//! on a single-node hub, fed client frames, and its connection's queue is
//! read back.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{admit, Context, Session};
use crate::adapter::{Adapter, LocalAdapter};
use crate::auth;
use crate::config::{AppConfig, ServerConfig};
use crate::hub::Hub;
use crate::metrics::Transport;
use crate::protocol::Close;

const KEY: &str = "key";
const SECRET: &str = "secret";

fn hub(configure: impl FnOnce(&mut AppConfig)) -> (Hub, Context) {
    let mut app = AppConfig::new("1", KEY, SECRET);
    configure(&mut app);
    let ctx = Context {
        server: Arc::new(ServerConfig::default()),
        adapter: Arc::new(Adapter::Local(LocalAdapter)),
    };
    (Hub::new([app]), ctx)
}

fn connect(hub: &Hub, ctx: &Context) -> Session {
    let mut session =
        admit(hub, ctx, KEY, opening("protocol=7"), Transport::WebSocket).expect("admitted");
    let established = frames(&mut session);
    assert_eq!(established[0]["event"], "pusher:connection_established");
    session
}

/// Every frame queued for the session's client since the last call.
fn frames(session: &mut Session) -> Vec<Value> {
    let mut out = Vec::new();
    session.conn.drain_into(&mut out);
    out.iter()
        .map(|f| serde_json::from_str(f).expect("frames are JSON"))
        .collect()
}

fn events(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["event"].as_str().unwrap_or_default())
        .collect()
}

/// A frame's `data`, which the protocol carries as a JSON-encoded string.
fn data(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a string")).expect("data is JSON")
}

async fn send(session: &mut Session, message: Value) {
    session.handle_text(&message.to_string()).await;
}

fn channel_auth(session: &Session, channel: &str, channel_data: Option<&str>) -> String {
    let signed = auth::channel_string_to_sign(&session.socket_id, channel, channel_data);
    auth::make_auth(KEY, SECRET, &signed)
}

async fn join_presence(session: &mut Session, channel: &str, user_id: &str) {
    let data = json!({ "user_id": user_id, "user_info": { "name": user_id } }).to_string();
    let auth = channel_auth(session, channel, Some(&data));
    send(
        session,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}),
    )
    .await;
}

#[tokio::test]
async fn admission_refuses_unknown_apps_and_protocols() {
    let (hub, ctx) = hub(|_| {});
    assert_eq!(
        admit(&hub, &ctx, "nope", opening(""), Transport::WebSocket).err(),
        Some(Close::APP_NOT_FOUND)
    );
    assert_eq!(
        admit(&hub, &ctx, KEY, opening("protocol=3"), Transport::WebSocket).err(),
        Some(Close::UNSUPPORTED_PROTOCOL)
    );
    let (hub, ctx) = hub_with_limit();
    let _first = connect(&hub, &ctx);
    assert_eq!(
        admit(&hub, &ctx, KEY, opening(""), Transport::WebSocket).err(),
        Some(Close::OVER_QUOTA)
    );
}

fn hub_with_limit() -> (Hub, Context) {
    hub(|app| app.max_connections = 1)
}

#[tokio::test]
async fn private_channels_need_a_valid_signature() {
    let (hub, ctx) = hub(|_| {});
    let mut session = connect(&hub, &ctx);
    send(
        &mut session,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": format!("{KEY}:00")}}),
    )
    .await;
    let refused = frames(&mut session);
    assert_eq!(events(&refused), ["pusher:subscription_error"]);
    assert_eq!(data(&refused[0])["type"], "AuthError");
    assert_eq!(data(&refused[0])["status"], 401);

    let auth = channel_auth(&session, "private-a", None);
    send(
        &mut session,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": auth}}),
    )
    .await;
    assert_eq!(
        events(&frames(&mut session)),
        ["pusher_internal:subscription_succeeded"]
    );
    assert!(hub
        .by_key(KEY)
        .expect("app")
        .is_subscribed(session.conn.socket_id, "private-a"));
}

#[tokio::test]
async fn presence_members_are_who_their_signature_says() {
    let (hub, ctx) = hub(|_| {});
    let mut alice = connect(&hub, &ctx);
    let mut bob = connect(&hub, &ctx);
    join_presence(&mut alice, "presence-room", "alice").await;
    frames(&mut alice);
    join_presence(&mut bob, "presence-room", "bob").await;
    let joined = frames(&mut bob);
    assert_eq!(events(&joined), ["pusher_internal:subscription_succeeded"]);
    assert_eq!(data(&joined[0])["presence"]["count"], 2);

    let added = frames(&mut alice);
    assert_eq!(events(&added), ["pusher_internal:member_added"]);
    assert_eq!(
        added[0]["data"],
        r#"{"user_id":"bob","user_info":{"name":"bob"}}"#
    );

    // A client event carries the sender's member id, never what it claims,
    // and is not echoed back.
    send(
        &mut bob,
        json!({"event": "client-typing", "channel": "presence-room", "data": {"x": 1}, "user_id": "mallory"}),
    )
    .await;
    let typing = frames(&mut alice);
    assert_eq!(events(&typing), ["client-typing"]);
    assert_eq!(typing[0]["user_id"], "bob");
    assert!(frames(&mut bob).is_empty());

    bob.leave_everything(None).await;
    let removed = frames(&mut alice);
    assert_eq!(events(&removed), ["pusher_internal:member_removed"]);
    assert_eq!(removed[0]["data"], r#"{"user_id":"bob"}"#);
}

#[tokio::test]
async fn client_events_are_checked_and_rate_limited() {
    let (hub, ctx) = hub(|app| app.client_event_rate = 2);
    let mut session = connect(&hub, &ctx);
    send(
        &mut session,
        json!({"event": "client-x", "channel": "private-a", "data": "{}"}),
    )
    .await;
    let refused = frames(&mut session);
    assert_eq!(events(&refused), ["pusher:error"]);
    assert!(data(&refused[0])["message"]
        .as_str()
        .is_some_and(|m| m.contains("not subscribed")));

    let auth = channel_auth(&session, "private-a", None);
    send(
        &mut session,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": auth}}),
    )
    .await;
    frames(&mut session);
    for _ in 0..3 {
        send(
            &mut session,
            json!({"event": "client-x", "channel": "private-a", "data": "{}"}),
        )
        .await;
    }
    let limited = frames(&mut session);
    assert_eq!(events(&limited), ["pusher:error"]);
    assert_eq!(data(&limited[0])["code"], 4301);
}

#[tokio::test]
async fn sign_in_identifies_the_connection_for_presence() {
    let (hub, ctx) = hub(|_| {});
    let mut session = connect(&hub, &ctx);
    let user_data = json!({"id": "u1", "user_info": {"name": "One"}}).to_string();
    let bad = json!({"event": "pusher:signin", "data": {"user_data": user_data, "auth": format!("{KEY}:00")}});
    send(&mut session, bad).await;
    let refused = frames(&mut session);
    assert_eq!(events(&refused), ["pusher:error"]);
    assert_eq!(data(&refused[0])["code"], 4009);
    assert!(!session.is_signed_in());

    let signed = auth::user_string_to_sign(&session.socket_id, &user_data);
    let auth = auth::make_auth(KEY, SECRET, &signed);
    send(
        &mut session,
        json!({"event": "pusher:signin", "data": {"user_data": user_data, "auth": auth}}),
    )
    .await;
    assert_eq!(events(&frames(&mut session)), ["pusher:signin_success"]);
    assert!(session.is_signed_in());

    // pusher-js >= 7.4 may join a presence channel as the signed-in user.
    let auth = channel_auth(&session, "presence-p", None);
    send(
        &mut session,
        json!({"event": "pusher:subscribe", "data": {"channel": "presence-p", "auth": auth}}),
    )
    .await;
    assert_eq!(
        events(&frames(&mut session)),
        ["pusher_internal:subscription_succeeded"]
    );
    let app = hub.by_key(KEY).expect("app");
    assert_eq!(app.channel_users("presence-p"), ["u1"]);
}

#[tokio::test]
async fn a_failed_sign_in_closes_when_the_app_requires_sign_in() {
    let (hub, ctx) = hub(|app| app.require_signin = true);
    let mut session = connect(&hub, &ctx);
    assert!(session.signin_deadline().is_some());
    send(
        &mut session,
        json!({"event": "pusher:signin", "data": {"user_data": "{\"id\":\"u\"}", "auth": "x:y"}}),
    )
    .await;
    assert_eq!(session.conn.close_request(), Some(Close::SIGNIN_FAILED));
}

/// A connection opening with this query string and no Origin.
fn opening(query: &str) -> super::Opening<'_> {
    super::Opening {
        query,
        origin: None,
    }
}
