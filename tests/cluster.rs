//! Cluster mode against a real `redis-server` started by the test: two or
//! three Herald nodes must look like one server, including when a node is
//! killed or Redis restarts.
//!
//! The suite of what a cluster must do (delivery, exclusion, presence,
//! queries, counts, node death) runs twice: on one `redis-server` and on a
//! Redis Cluster of three masters (`on_redis` and `on_redis_cluster` of
//! each test's module); what only one Redis can do (restart it, kill its
//! clients) runs on one.

#[macro_use]
mod common;

use common::redis_server::{cluster_node as node, Backend, RedisServer};
use common::{api, trigger, Client, Server};
use serde_json::json;

async fn user_ids(server: &Server, channel: &str) -> Vec<String> {
    let r = common::get(
        server,
        &format!("/apps/app-id/channels/{channel}/users"),
        "",
    )
    .await;
    let mut ids: Vec<String> = r.body["users"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .filter_map(|u| u["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn events_cross_nodes_exactly_once_with_exclusion(redis: &impl Backend) {
    let a = node(redis).await;
    let b = node(redis).await;
    let mut on_a = Client::connect(&a).await;
    let mut on_b = Client::connect(&b).await;
    let mut excluded = Client::connect(&b).await;
    for client in [&mut on_a, &mut on_b, &mut excluded] {
        client.subscribe("news").await;
    }
    for i in 0..5 {
        let r = trigger(
            &a,
            json!({"name": "n", "channel": "news", "data": i.to_string(), "socket_id": excluded.socket_id}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    for client in [&mut on_a, &mut on_b] {
        for i in 0..5 {
            assert_eq!(
                client.expect("n").await["raw_data"],
                i.to_string(),
                "in order, once"
            );
        }
        client.expect_nothing_pending().await;
    }
    excluded.expect_nothing_pending().await;

    // Client events relay too, never back to the sender.
    on_a.subscribe_private("private-talk").await;
    on_b.subscribe_private("private-talk").await;
    on_b.send(json!({"event": "client-hi", "channel": "private-talk", "data": {"x": 1}}))
        .await;
    assert_eq!(on_a.expect("client-hi").await["data"], json!({"x": 1}));
    on_b.expect_nothing_pending().await;
}

async fn presence_is_cluster_wide_with_exact_member_events(redis: &impl Backend) {
    let a = node(redis).await;
    let b = node(redis).await;

    let mut ada = Client::connect(&a).await;
    ada.join("presence-room", "1", json!({"name": "Ada"})).await;
    let mut bob = Client::connect(&b).await;
    let ok = bob.join("presence-room", "2", json!({"name": "Bob"})).await;
    assert_eq!(ok["data"]["presence"]["count"], 2);
    assert_eq!(ok["data"]["presence"]["hash"]["1"], json!({"name": "Ada"}));
    let added = ada.expect("pusher_internal:member_added").await;
    assert_eq!(
        added["data"],
        json!({"user_id": "2", "user_info": {"name": "Bob"}})
    );

    // Ada's second socket, on the other node: not a new member anywhere.
    let mut ada2 = Client::connect(&b).await;
    let ok = ada2
        .join("presence-room", "1", json!({"name": "Ada"}))
        .await;
    assert_eq!(ok["data"]["presence"]["count"], 2);
    // Leaving with one of her two sockets: not a departure.
    ada.send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}))
        .await;
    ada.expect_nothing_pending().await;
    bob.expect_nothing_pending().await;
    assert_eq!(user_ids(&a, "presence-room").await, ["1", "2"]);

    drop(ada2);
    let removed = bob.expect("pusher_internal:member_removed").await;
    assert_eq!(removed["data"], json!({"user_id": "1"}));
    bob.expect_nothing_pending().await;
    assert_eq!(user_ids(&a, "presence-room").await, ["2"]);
}

async fn presence_member_limit_counts_every_node(redis: &impl Backend) {
    let config = |url: String| {
        format!(
            "[cluster]\ndriver = \"redis\"\nurl = \"{url}\"\nnode_timeout = 3\n\
             [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_presence_members = 1\n"
        )
    };
    let a = Server::launch(Some(&config(redis.url())), &[]);
    let b = Server::launch(Some(&config(redis.url())), &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    let mut first = Client::connect(&a).await;
    first.join("presence-one", "1", json!(null)).await;
    let mut second = Client::connect(&b).await;
    let err = second.join("presence-one", "2", json!(null)).await;
    assert_eq!(err["event"], "pusher:subscription_error");
    assert_eq!(err["data"]["type"], "LimitReached");
}

async fn channel_queries_count_every_node(redis: &impl Backend) {
    let a = node(redis).await;
    let b = node(redis).await;
    let mut c1 = Client::connect(&a).await;
    let mut c2 = Client::connect(&b).await;
    let mut c3 = Client::connect(&b).await;
    c1.join("presence-q", "1", json!(null)).await;
    c2.join("presence-q", "2", json!(null)).await;
    c3.join("presence-q", "2", json!(null)).await;
    c1.subscribe("public-q").await;
    c2.subscribe("public-q").await;
    common::eventually("counts reach Redis", || async {
        let r = api(
            &a,
            "GET",
            "/apps/app-id/channels/presence-q",
            "info=user_count,subscription_count",
            None,
        )
        .await;
        r.body == json!({"occupied": true, "user_count": 2, "subscription_count": 3})
    })
    .await;
    let r = common::get(&b, "/apps/app-id/channels", "info=subscription_count").await;
    assert_eq!(
        r.body,
        json!({"channels": {"presence-q": {"subscription_count": 3}, "public-q": {"subscription_count": 2}}})
    );
    let r = common::get(
        &a,
        "/apps/app-id/channels",
        "filter_by_prefix=presence-&info=user_count",
    )
    .await;
    assert_eq!(
        r.body,
        json!({"channels": {"presence-q": {"user_count": 2}}})
    );
    let r = trigger(
        &b,
        json!({"name": "e", "channel": "public-q", "data": "1", "info": "subscription_count"}),
    )
    .await;
    assert_eq!(
        r.body,
        json!({"channels": {"public-q": {"subscription_count": 2}}})
    );
    assert_eq!(user_ids(&b, "presence-q").await, ["1", "2"]);
}

async fn users_cache_and_termination_work_across_nodes(redis: &impl Backend) {
    let a = node(redis).await;
    let b = node(redis).await;
    let mut signed = Client::connect(&b).await;
    signed.signin(json!({"id": "42"})).await;
    let r = trigger(
        &a,
        json!({"name": "notice", "channel": "#server-to-user-42", "data": "hi"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(signed.expect("notice").await["raw_data"], "hi");

    trigger(
        &a,
        json!({"name": "price", "channel": "cache-p", "data": "7"}),
    )
    .await;
    // The relay is asynchronous: wait until node B holds the cached event.
    common::eventually("node B caches the event", || async {
        let mut late = Client::connect(&b).await;
        late.subscribe("cache-p").await;
        late.recv().await["event"] == "price"
    })
    .await;

    let r = common::post(&a, "/apps/app-id/users/42/terminate_connections", "{}").await;
    assert_eq!(r.status, 200);
    assert_eq!(signed.expect_close().await.0, 4009);
}

async fn a_killed_nodes_members_are_removed_by_the_survivors(redis: &impl Backend) {
    let a = node(redis).await;
    let mut b = node(redis).await;
    let mut stays = Client::connect(&a).await;
    stays.join("presence-k", "1", json!(null)).await;
    let mut doomed = Client::connect(&b).await;
    doomed.join("presence-k", "2", json!(null)).await;
    stays.expect("pusher_internal:member_added").await;
    doomed.subscribe("public-k").await;

    b.kill();
    // Within node_timeout (3 s) plus a heartbeat; Client waits up to 5 s.
    let removed = stays.expect("pusher_internal:member_removed").await;
    assert_eq!(removed["data"], json!({"user_id": "2"}));
    assert_eq!(user_ids(&a, "presence-k").await, ["1"]);
    let r = common::get(&a, "/apps/app-id/channels", "").await;
    assert_eq!(r.body, json!({"channels": {"presence-k": {}}}));
    stays.expect_nothing_pending().await;
}

async fn graceful_shutdown_removes_the_nodes_state_at_once(redis: &impl Backend) {
    let a = node(redis).await;
    let mut b = node(redis).await;
    let mut stays = Client::connect(&a).await;
    stays.join("presence-g", "1", json!(null)).await;
    let mut leaving = Client::connect(&b).await;
    leaving.join("presence-g", "2", json!(null)).await;
    stays.expect("pusher_internal:member_added").await;

    b.terminate();
    assert_eq!(leaving.expect_close().await.0, 4200);
    let removed = stays.expect("pusher_internal:member_removed").await;
    assert_eq!(removed["data"]["user_id"], "2");
    assert_eq!(b.wait_exit(), Some(0));
    assert_eq!(user_ids(&a, "presence-g").await, ["1"]);
    // Leaving was final: the departed node is not registered again.
    assert_eq!(redis.cli(&["SCARD", "{herald}:nodes"]), "1");
}

#[actix_rt::test]
async fn service_resumes_and_state_is_rebuilt_after_a_redis_restart() {
    let mut redis = RedisServer::start();
    let a = node(&redis).await;
    let b = node(&redis).await;
    let mut on_a = Client::connect(&a).await;
    let mut on_b = Client::connect(&b).await;
    on_a.join("presence-r", "1", json!(null)).await;
    // Some churn, so that this Redis has numbered many member events.
    for round in 0..5 {
        let mut visitor = Client::connect(&b).await;
        visitor
            .join("presence-r", &format!("v{round}"), json!(null))
            .await;
        on_a.expect("pusher_internal:member_added").await;
        drop(visitor);
        on_a.expect("pusher_internal:member_removed").await;
    }
    on_b.join("presence-r", "2", json!(null)).await;
    on_a.expect("pusher_internal:member_added").await;
    on_a.subscribe("news").await;
    on_b.subscribe("news").await;

    redis.restart();
    // Redis came back empty; each node rewrites its own share.
    common::eventually("both nodes' members are back in Redis", || async {
        user_ids(&a, "presence-r").await == ["1", "2"]
    })
    .await;
    a.wait_ready().await;
    b.wait_ready().await;
    // Each node's presence subscribers are shown the cluster's roster again
    // (the new Redis numbered the rebuilt members); no member event is sent.
    for client in [&mut on_a, &mut on_b] {
        loop {
            let frame = client.recv().await;
            let event = frame["event"].as_str().unwrap_or_default().to_owned();
            assert!(
                !event.starts_with("pusher_internal:member"),
                "spurious {frame}"
            );
            if event == "pusher_internal:subscription_succeeded" && frame["channel"] == "presence-r"
            {
                let mut ids: Vec<String> = frame["data"]["presence"]["ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect();
                ids.sort();
                // A node may show it before the other rebuilt; then again.
                if ids == ["1", "2"] {
                    break;
                }
            }
        }
    }
    // Local clients were served all along; relay works again.
    trigger(&b, json!({"name": "after", "channel": "news", "data": "1"})).await;
    assert_eq!(on_a.expect("after").await["channel"], "news");
    assert_eq!(on_b.expect("after").await["channel"], "news");
    let r = common::get(&a, "/apps/app-id/channels/news", "info=subscription_count").await;
    assert_eq!(r.body, json!({"occupied": true, "subscription_count": 2}));
    on_a.expect_nothing_pending().await;
    on_b.expect_nothing_pending().await;
    // The new Redis numbers member events from the start again; they still
    // reach every node.
    let mut late = Client::connect(&b).await;
    late.join("presence-r", "3", json!(null)).await;
    let added = on_a.expect("pusher_internal:member_added").await;
    assert_eq!(added["data"]["user_id"], "3");
}

async fn subscription_counts_span_the_cluster(redis: &impl Backend) {
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nsubscription_count = true\n",
        redis.url()
    );
    let a = Server::launch(Some(&config), &[]);
    let b = Server::launch(Some(&config), &[]);
    a.wait_ready().await;
    b.wait_ready().await;
    let count = |frame: serde_json::Value| frame["data"]["subscription_count"].clone();
    let mut on_a = Client::connect(&a).await;
    on_a.subscribe("counted").await;
    assert_eq!(
        count(on_a.expect("pusher_internal:subscription_count").await),
        1
    );
    let mut on_b = Client::connect(&b).await;
    on_b.subscribe("counted").await;
    assert_eq!(
        count(on_b.expect("pusher_internal:subscription_count").await),
        2
    );
    assert_eq!(
        count(on_a.expect("pusher_internal:subscription_count").await),
        2
    );
    // Subscribing again to a channel changes no count: nothing is announced.
    for _ in 0..50 {
        let ok = on_b.subscribe("counted").await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
    }
    // Barrier: an event published through b after the repeats, and a
    // count change; a must see no count before them but the new one.
    let r = trigger(
        &b,
        json!({"name": "after", "channel": "counted", "data": "1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(on_a.recv().await["event"], "after");
    drop(on_b);
    assert_eq!(
        count(on_a.expect("pusher_internal:subscription_count").await),
        1
    );
    on_a.expect_nothing_pending().await;
}

async fn watchlists_see_users_on_every_node(redis: &impl Backend) {
    let a = node(redis).await;
    let b = node(redis).await;
    let mut seven = Client::connect(&b).await;
    seven.signin(json!({"id": "7"})).await;
    let mut watcher = Client::connect(&a).await;
    watcher
        .signin(json!({"id": "1", "watchlist": ["7", "8"]}))
        .await;
    let status = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        status["data"]["events"],
        json!([{"name": "online", "user_ids": ["7"]}, {"name": "offline", "user_ids": ["8"]}])
    );
    let mut eight = Client::connect(&b).await;
    eight.signin(json!({"id": "8"})).await;
    let online = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        online["data"]["events"],
        json!([{"name": "online", "user_ids": ["8"]}])
    );
    // A second socket of 8, on the watcher's node: no new event.
    let mut eight_again = Client::connect(&a).await;
    eight_again.signin(json!({"id": "8"})).await;
    drop(eight);
    drop(seven);
    let offline = watcher.expect("pusher_internal:watchlist_events").await;
    assert_eq!(
        offline["data"]["events"],
        json!([{"name": "offline", "user_ids": ["7"]}])
    );
    watcher.expect_nothing_pending().await;
}

async fn a_node_started_later_serves_cached_events(redis: &impl Backend) {
    let a = node(redis).await;
    trigger(
        &a,
        json!({"name": "price", "channel": "cache-late", "data": "42"}),
    )
    .await;
    let b = node(redis).await;
    common::eventually("the late node replays the cached event", || async {
        let mut client = Client::connect(&b).await;
        client.subscribe("cache-late").await;
        let frame = client.recv().await;
        frame["event"] == "price" && frame["raw_data"] == "42"
    })
    .await;
}

/// Every channel query of a scenario, as one server answers it (arrays of
/// users sorted, since their order is not part of the contract).
async fn query_answers(server: &impl common::Endpoint) -> Vec<(String, u16, serde_json::Value)> {
    let queries = [
        ("/apps/app-id/channels", ""),
        ("/apps/app-id/channels", "filter_by_prefix=private-"),
        (
            "/apps/app-id/channels",
            "filter_by_prefix=presence-&info=user_count",
        ),
        ("/apps/app-id/channels", "info=subscription_count"),
        ("/apps/app-id/channels/news", "info=subscription_count"),
        (
            "/apps/app-id/channels/presence-p",
            "info=user_count,subscription_count",
        ),
        ("/apps/app-id/channels/presence-p/users", ""),
        (
            "/apps/app-id/channels/nobody-here",
            "info=subscription_count",
        ),
    ];
    let mut answers = Vec::new();
    for (path, query) in queries {
        let r = common::get(server, path, query).await;
        let mut body = r.body;
        if let Some(users) = body["users"].as_array_mut() {
            users.sort_by_key(|u| u["id"].as_str().unwrap_or_default().to_owned());
        }
        answers.push((format!("{path}?{query}"), r.status, body));
    }
    answers
}

/// Runs the same clients against `servers` (spread over them) and returns
/// the query answers before and after they subscribe.
async fn scenario(
    servers: &[&Server],
) -> (
    Vec<(String, u16, serde_json::Value)>,
    Vec<(String, u16, serde_json::Value)>,
) {
    let empty = query_answers(servers[0]).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = Client::connect(servers[i % servers.len()]).await;
        assert_eq!(
            c.subscribe("news").await["event"],
            "pusher_internal:subscription_succeeded"
        );
        if i % 2 == 0 {
            assert_eq!(
                c.subscribe_private("private-a").await["event"],
                "pusher_internal:subscription_succeeded"
            );
        }
        let mut reply = c
            .join("presence-p", &format!("user-{}", i % 3), json!(null))
            .await;
        while reply["event"] != "pusher_internal:subscription_succeeded" {
            reply = c.recv().await;
        }
        // Everything the server does for this client is done.
        c.send(json!({"event": "pusher:ping", "data": {}})).await;
        while c.recv().await["event"] != "pusher:pong" {}
        clients.push(c);
    }
    let mut answers = Vec::new();
    for server in servers {
        let these = query_answers(*server).await;
        if !answers.is_empty() {
            assert_eq!(these, answers, "the nodes answer differently");
        }
        answers = these;
    }
    drop(clients);
    (empty, answers)
}

async fn a_cluster_answers_every_query_as_one_node_would(redis: &impl Backend) {
    let single = Server::start();
    let one_node = scenario(&[&single]).await;
    let (a, b) = (node(redis).await, node(redis).await);
    let cluster = scenario(&[&a, &b]).await;
    assert_eq!(
        cluster.0, one_node.0,
        "answers with nothing occupied differ"
    );
    assert_eq!(cluster.1, one_node.1, "answers differ");
    assert!(one_node
        .0
        .iter()
        .all(|(_, status, _)| [200, 400].contains(status)));
    // And what one node answers is right, so equal answers mean right ones.
    let answer = |query: &str| {
        one_node
            .1
            .iter()
            .find(|(q, _, _)| q == query)
            .unwrap_or_else(|| panic!("no answer to {query}"))
            .clone()
    };
    let (_, status, body) = answer("/apps/app-id/channels?");
    assert_eq!(status, 200);
    let mut names: Vec<&String> = body["channels"]
        .as_object()
        .expect("channels")
        .keys()
        .collect();
    names.sort();
    assert_eq!(names, ["news", "presence-p", "private-a"]);
    let (_, status, body) = answer("/apps/app-id/channels/news?info=subscription_count");
    assert_eq!(
        (status, &body["occupied"], &body["subscription_count"]),
        (200, &json!(true), &json!(6))
    );
    let (_, status, body) =
        answer("/apps/app-id/channels/presence-p?info=user_count,subscription_count");
    assert_eq!(
        (status, &body["user_count"], &body["subscription_count"]),
        (200, &json!(3), &json!(6))
    );
    let (_, status, body) = answer("/apps/app-id/channels/presence-p/users?");
    assert_eq!(status, 200);
    assert_eq!(
        body["users"],
        json!([{"id": "user-0"}, {"id": "user-1"}, {"id": "user-2"}])
    );
}

async fn a_subscribe_flood_loses_no_cross_node_event(redis: &impl Backend) {
    let a = node(redis).await;
    let b = node(redis).await;
    let mut receiver = Client::connect(&b).await;
    receiver.subscribe("steady").await;

    // Clients on a flood (un)subscribes: 20 000 count changes, each client
    // within its own inbound budget and channel cap.
    let port = a.port;
    let floods: Vec<_> = (0..20)
        .map(|f| {
            actix_rt::spawn(async move {
                let mut flooder = Client::connect(&Server::attach(port)).await;
                for i in 0..1000 {
                    let channel = format!("flood-{f}-{}", i / 2);
                    let event = if i % 2 == 0 {
                        "pusher:subscribe"
                    } else {
                        "pusher:unsubscribe"
                    };
                    flooder
                        .send(json!({"event": event, "data": {"channel": channel}}))
                        .await;
                }
                flooder
            })
        })
        .collect();
    // Meanwhile, events published on a for a subscriber on b.
    for i in 0..300 {
        let r = trigger(
            &a,
            json!({"name": "tick", "channel": "steady", "data": i.to_string()}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let mut flooders = Vec::new();
    for flood in floods {
        flooders.push(flood.await.expect("flooder"));
    }
    for i in 0..300 {
        let frame = receiver.expect("tick").await;
        assert_eq!(
            frame["raw_data"],
            i.to_string(),
            "event {i} lost or out of order"
        );
    }
}

#[actix_rt::test]
async fn the_relay_comes_back_after_its_connection_is_killed() {
    let redis = RedisServer::start();
    let a = node(&redis).await;
    let b = node(&redis).await;
    let mut on_b = Client::connect(&b).await;
    on_b.subscribe("relayed").await;

    let killed = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "CLIENT",
            "KILL",
            "TYPE",
            "pubsub",
        ])
        .output()
        .expect("redis-cli");
    assert!(
        String::from_utf8_lossy(&killed.stdout)
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            >= 2,
        "expected both nodes' relay connections to be killed"
    );
    // Both nodes resubscribe and say so on /up; then delivery works again.
    a.wait_ready().await;
    b.wait_ready().await;
    let r = trigger(
        &a,
        json!({"name": "after", "channel": "relayed", "data": "2"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(on_b.recv().await["event"], "after");
}

/// A TCP proxy in front of Redis that makes the first relay subscription
/// through it half-open: the connection stays up, but nothing Redis sends
/// on it after its answer to the `SUBSCRIBE` gets through. Every other connection is
/// passed as is. Returns the proxy's port.
async fn half_opening_proxy(redis_port: u16) -> u16 {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silenced_one = Arc::new(AtomicBool::new(false));
    actix_rt::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                continue;
            };
            let (armed, silent) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
            );
            let (mut client_read, mut client_write) = client.into_split();
            let (mut upstream_read, mut upstream_write) = upstream.into_split();
            let (to_arm, first) = (armed.clone(), silenced_one.clone());
            actix_rt::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                    if text.contains("SUBSCRIBE") && !first.swap(true, Ordering::AcqRel) {
                        to_arm.store(true, Ordering::Release);
                    }
                    if upstream_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            actix_rt::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = upstream_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if silent.load(Ordering::Acquire) {
                        continue;
                    }
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    // This was the answer to the subscription: from now on,
                    // silence.
                    if armed.load(Ordering::Acquire) {
                        silent.store(true, Ordering::Release);
                    }
                }
            });
        }
    });
    port
}

async fn up_status(server: &Server) -> String {
    common::raw_request(server, "GET", "/up", "").await.body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[actix_rt::test]
async fn a_half_open_relay_is_noticed_and_replaced() {
    let redis = RedisServer::start();
    let proxy = half_opening_proxy(redis.port).await;
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"redis://127.0.0.1:{proxy}\"\nnode_timeout = 3\nheartbeat_interval = 1\n"
    );
    let a = Server::launch(Some(&config), &[]);
    let b = node(&redis).await;
    // a's relay subscription hears nothing: its echoes stop coming back,
    // /up says so within three heartbeats, and it subscribes again.
    // The node first looks fine (a fresh subscription counts as hearing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut phases = ["ok", "degraded", "ok"].into_iter().peekable();
    while let Some(expected) = phases.peek() {
        if up_status(&a).await == *expected {
            phases.next();
            continue;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the half-open relay was not noticed and replaced (waiting for {expected:?})"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut on_a = Client::connect(&a).await;
    on_a.subscribe("relayed").await;
    let r = trigger(
        &b,
        json!({"name": "heard", "channel": "relayed", "data": "1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(on_a.recv().await["event"], "heard");
}

/// A presence client that keeps its own member list from the frames it
/// gets, as pusher-js does.
struct Tracked {
    client: Client,
    members: std::collections::BTreeSet<String>,
}

impl Tracked {
    async fn join(server: &Server, channel: &str, user: &str) -> Tracked {
        let mut client = Client::connect(server).await;
        let mut reply = client.join(channel, user, json!(null)).await;
        while reply["event"] != "pusher_internal:subscription_succeeded" {
            reply = client.recv().await;
        }
        let mut tracked = Tracked {
            client,
            members: Default::default(),
        };
        tracked.apply(&reply);
        tracked
    }

    fn apply(&mut self, frame: &serde_json::Value) {
        let user = frame["data"]["user_id"].as_str().map(str::to_owned);
        match frame["event"].as_str() {
            Some("pusher_internal:subscription_succeeded") => {
                self.members = frame["data"]["presence"]["ids"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
            }
            Some("pusher_internal:member_added") => {
                self.members.extend(user);
            }
            Some("pusher_internal:member_removed") => {
                if let Some(user) = user {
                    self.members.remove(&user);
                }
            }
            _ => {}
        }
    }

    /// Reads frames until its member list is `expected`.
    async fn until_members(&mut self, expected: &[&str]) {
        while self.members.iter().map(String::as_str).collect::<Vec<_>>() != expected {
            let frame = self.client.recv().await;
            self.apply(&frame);
        }
    }
}

#[actix_rt::test]
async fn after_a_redis_outage_every_roster_converges_to_the_truth() {
    let mut redis = RedisServer::start();
    let a = node(&redis).await;
    let b = node(&redis).await;
    let mut on_a = Tracked::join(&a, "presence-o", "1").await;
    let mut on_b = Tracked::join(&b, "presence-o", "2").await;
    let leaver = Tracked::join(&a, "presence-o", "gone").await;
    on_a.until_members(&["1", "2", "gone"]).await;
    on_b.until_members(&["1", "2", "gone"]).await;

    // Redis goes away; meanwhile a user leaves on a and one joins on b.
    // Each node's own clients hear of it; the other node's cannot.
    redis.stop();
    drop(leaver);
    on_a.until_members(&["1", "2"]).await;
    let joiner = Tracked::join(&b, "presence-o", "new").await;
    on_b.until_members(&["1", "2", "gone", "new"]).await;
    redis.start_again();

    // Once the nodes have rebuilt, every client's list is the truth.
    a.wait_ready().await;
    b.wait_ready().await;
    on_a.until_members(&["1", "2", "new"]).await;
    on_b.until_members(&["1", "2", "new"]).await;
    assert_eq!(user_ids(&a, "presence-o").await, ["1", "2", "new"]);
    drop(joiner);
}

/// Cross-node fan-out runs on several threads; a client must still see
/// another node's publications in the order they were made, across
/// channels with many subscribers (sent by the fan-out threads) and with
/// one (sent on the spot when nothing is waiting).
#[actix_rt::test]
async fn relayed_events_keep_their_order_across_wide_and_narrow_channels() {
    let redis = RedisServer::start();
    let a = node(&redis).await;
    // Three fan-out threads on the receiving node, whatever the cores.
    let b = Server::launch(
        Some(&format!(
            "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\nfanout_threads = 3\n",
            redis.url()
        )),
        &[],
    );
    b.wait_ready().await;
    let mut crowd = Vec::new();
    for _ in 0..40 {
        let mut client = Client::connect(&b).await;
        client.subscribe("wide").await;
        crowd.push(client);
    }
    let watcher = &mut crowd[0];
    watcher.subscribe("narrow").await;
    let rounds = 150;
    for i in 0..rounds {
        let batch = json!({"batch": [
            {"name": "w", "channel": "wide", "data": i.to_string()},
            {"name": "n", "channel": "narrow", "data": i.to_string()},
        ]});
        let r = api(
            &a,
            "POST",
            "/apps/app-id/batch_events",
            "",
            Some(&batch.to_string()),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    for i in 0..rounds {
        let wide = watcher.recv().await;
        assert_eq!(
            (wide["event"].as_str(), wide["raw_data"].as_str()),
            (Some("w"), Some(i.to_string().as_str())),
            "round {i}"
        );
        let narrow = watcher.recv().await;
        assert_eq!(
            (narrow["event"].as_str(), narrow["raw_data"].as_str()),
            (Some("n"), Some(i.to_string().as_str())),
            "round {i}"
        );
    }
    for client in crowd.iter_mut().skip(1) {
        for i in 0..rounds {
            assert_eq!(client.expect("w").await["raw_data"], i.to_string());
        }
    }
}

async fn a_members_second_socket_on_a_new_node_is_not_shown_the_roster_again(redis: &impl Backend) {
    let a = node(redis).await;
    // Debug logs say when B's heartbeat compared its presence versions.
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n",
        redis.url()
    );
    let b = Server::launch(Some(&config), &[("HERALD_LOG", "info,herald=debug")]);
    b.wait_ready().await;
    let mut first = Client::connect(&a).await;
    first.join("presence-twice", "1", json!(null)).await;
    // The same user on B, where the channel is new: no member event, so
    // nothing was ever delivered on B, yet its roster is current.
    let mut second = Client::connect(&b).await;
    let ok = second.join("presence-twice", "1", json!(null)).await;
    assert_eq!(ok["data"]["presence"]["count"], 1);
    // Convergence acts at the second check that finds Redis ahead; wait
    // for three, then nothing may have been sent.
    b.logged("presence versions checked", 3).await;
    second.expect_nothing_pending().await;
}

/// Redis over TLS (`rediss://`), its certificate signed by a CA the nodes
/// are told of (`tls_ca`): the cluster works as on plain Redis.
#[actix_rt::test]
async fn nodes_share_a_redis_over_tls() {
    let redis = RedisServer::start_tls();
    events_cross_nodes_exactly_once_with_exclusion(&redis).await;
}

/// The same on a Redis Cluster over TLS (`rediss+cluster://`).
#[actix_rt::test]
async fn nodes_share_a_redis_cluster_over_tls() {
    let redis = common::redis_cluster::RedisCluster::start_tls();
    events_cross_nodes_exactly_once_with_exclusion(&redis).await;
    presence_is_cluster_wide_with_exact_member_events(&redis).await;
}

/// A node that does not trust Redis's certificate does not talk to it.
#[actix_rt::test]
async fn a_redis_certificate_nobody_vouches_for_is_refused() {
    let redis = RedisServer::start_tls();
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n",
        redis.url()
    );
    let server = Server::launch(Some(&config), &[]);
    server.logged("UnknownIssuer", 1).await;
    let up = common::get(&server, "/up", "").await;
    assert_eq!(up.body["status"], "degraded", "{:?}", up.body);
}

on_redis_and_redis_cluster!(
    events_cross_nodes_exactly_once_with_exclusion,
    presence_is_cluster_wide_with_exact_member_events,
    presence_member_limit_counts_every_node,
    channel_queries_count_every_node,
    users_cache_and_termination_work_across_nodes,
    a_killed_nodes_members_are_removed_by_the_survivors,
    graceful_shutdown_removes_the_nodes_state_at_once,
    subscription_counts_span_the_cluster,
    watchlists_see_users_on_every_node,
    a_node_started_later_serves_cached_events,
    a_cluster_answers_every_query_as_one_node_would,
    a_subscribe_flood_loses_no_cross_node_event,
    a_members_second_socket_on_a_new_node_is_not_shown_the_roster_again,
);
