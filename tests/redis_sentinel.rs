//! Herald on a Redis master with a replica under three Sentinels
//! (`redis+sentinel://`), through a failover: the master crashes, the
//! Sentinels promote the replica, and the nodes follow without a restart of
//! their own. Afterwards relay, presence and queries work as on one node,
//! webhooks are still delivered once each, the metrics name the new master,
//! and the old master, back and still believing it is the master, is never
//! written to. (The same checks follow a Redis Cluster's failover:
//! `redis_cluster.rs`.)

mod common;

use std::collections::BTreeMap;

use common::failover::{heard_again, Scene};
use common::redis_sentinel::RedisSentinel;
use common::redis_server::Backend;
use common::webhook_receiver::{tally, Receiver};
use common::{free_port, scrape, Client, Server};
use serde_json::{json, Value};

/// A node on the Sentinels' master whose app sends webhooks to `hooks`,
/// with metrics on `metrics`. Nodes are presumed dead 10 s after their
/// last heartbeat: longer than the failover, as in production.
async fn node(redis: &RedisSentinel, hooks: &str, metrics: u16) -> Server {
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 10\nheartbeat_interval = 1\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\
         [[apps.webhooks]]\nurl = \"{hooks}\"\nevent_types = [\"channel_occupied\", \"member_added\"]\n",
        redis.url()
    );
    let server = Server::launch(
        Some(&config),
        &[("HERALD_METRICS_PORT", &metrics.to_string())],
    );
    server.wait_ready().await;
    server
}

/// Every webhook event delivered until `barrier` is occupied, which a new
/// client on `server` occupies now.
async fn delivered_until_barrier(
    hooks: &mut Receiver,
    server: &Server,
    barrier: &str,
) -> Vec<Value> {
    let mut client = Client::connect(server).await;
    client.subscribe(barrier).await;
    let (events, _) = hooks
        .delivered_until(|e| e["name"] == "channel_occupied" && e["channel"] == barrier)
        .await;
    events
}

#[actix_rt::test]
async fn a_sentinel_failover_is_survived() {
    let mut redis = RedisSentinel::start();
    let mut hooks = Receiver::start().await;
    let metrics = [free_port(), free_port()];
    let a = node(&redis, &hooks.url(), metrics[0]).await;
    let b = node(&redis, &hooks.url(), metrics[1]).await;
    let mut scene = Scene::start(a, b, "news").await;
    let before = delivered_until_barrier(&mut hooks, &scene.b, "barrier-1").await;
    let once = |keys: &[&str]| -> BTreeMap<String, usize> {
        keys.iter().map(|k| (k.to_string(), 1)).collect()
    };
    assert_eq!(
        tally(&before),
        once(&[
            "channel_occupied news ",
            "channel_occupied presence-room ",
            "member_added presence-room 1",
            "member_added presence-room 2",
            "channel_occupied barrier-1 ",
        ]),
        "{before:?}"
    );

    let old = redis.fail_master();
    let new_master = format!("127.0.0.1:{}", redis.server_port(1 - old));
    scene.still_one_server().await;
    // Carol joined after the failover: her arrival is reported once, and
    // nothing from before is reported again.
    let after = delivered_until_barrier(&mut hooks, &scene.a, "barrier-2").await;
    assert_eq!(
        tally(&after),
        once(&[
            "member_added presence-room 3",
            "channel_occupied barrier-2 ",
        ]),
        "{after:?}"
    );
    for port in metrics {
        common::eventually("the metrics name the new master", || async {
            let samples = scrape(port).await;
            samples.get("herald_redis_failovers_total") == Some(&1.0)
                && samples.get(&format!("herald_redis_master{{address=\"{new_master}\"}}"))
                    == Some(&1.0)
        })
        .await;
    }
    assert_eq!(
        scene
            .a
            .log_lines()
            .iter()
            .filter(|l| l.contains("the Redis master moved"))
            .count(),
        1
    );

    // The old master comes back empty, believing it is the master (the
    // Sentinels cannot demote it here). Every Herald connection to the
    // real master is cut, so each must find the master again: through the
    // Sentinels, never at an address it used before.
    redis.start_stale_master(old);
    for kind in ["normal", "pubsub"] {
        redis.cli_server(1 - old, &["CLIENT", "KILL", "TYPE", kind]);
    }
    // Carol left at the end of the check above.
    for member in [&mut scene.ada, &mut scene.bob] {
        let removed = member.expect("pusher_internal:member_removed").await;
        assert_eq!(removed["data"]["user_id"], "3");
    }
    // Both relays hear again (each node lost its subscription).
    heard_again(&scene.a, &mut scene.news, "news").await;
    let mut watcher = Client::connect(&scene.a).await;
    watcher.subscribe("news").await;
    heard_again(&scene.b, &mut watcher, "news").await;
    let mut dave = Client::connect(&scene.b).await;
    dave.join("presence-room", "4", json!(null)).await;
    for member in [&mut scene.ada, &mut scene.bob] {
        let added = member.expect("pusher_internal:member_added").await;
        assert_eq!(added["data"]["user_id"], "4");
    }
    common::eventually("the queries count every node", || async {
        let r = common::get(
            &scene.a,
            "/apps/app-id/channels/presence-room",
            "info=user_count",
        )
        .await;
        r.body == json!({"occupied": true, "user_count": 3})
    })
    .await;
    let last = delivered_until_barrier(&mut hooks, &scene.a, "barrier-3").await;
    assert_eq!(
        tally(&last),
        once(&[
            "member_added presence-room 4",
            "channel_occupied barrier-3 ",
        ]),
        "{last:?}"
    );
    assert_eq!(
        redis.cli_server(old, &["DBSIZE"]),
        "0",
        "the stale master holds keys"
    );
    // (The Sentinels publish their hellos there: PUBLISH is theirs.)
    let commands = redis.cli_server(old, &["INFO", "COMMANDSTATS"]);
    for write in ["evalsha", "eval", "set", "sadd", "hset", "xadd", "spublish"] {
        assert!(
            !commands.contains(&format!("cmdstat_{write}:")),
            "the stale master was sent {write}: {commands}"
        );
    }
    let clients = redis.cli_server(old, &["CLIENT", "LIST"]);
    for client in clients.lines() {
        assert!(
            client.contains(" name=sentinel-") || client.contains(" cmd=client|list"),
            "a client of the stale master other than the Sentinels: {client}"
        );
    }
}
