//! Herald on a Redis Cluster through topology changes: a slot moving to
//! another master (a resharding) and a master restarting. The nodes must
//! keep serving without a restart of their own: relay, presence and
//! queries work again once Redis has settled. (The rest of the cluster
//! suite runs on a Redis Cluster too: see `cluster.rs`.)

mod common;

use std::time::Duration;

use common::redis_cluster::RedisCluster;
use common::redis_server::cluster_node;
use common::{trigger, Client, Server};
use serde_json::json;

/// The relay topic of a channel and the slot of the app's shared state
/// (see `src/adapter/redis/keys.rs`).
const NEWS_TOPIC: &str = "{herald:app:app-id:news}:events";
const APP_STATE: &str = "{herald:app:app-id}:occupancy";

/// Waits until `to` hears what `from` publishes on `channel` again (events
/// published while Redis reroutes may be lost), then drains the probes up
/// to a barrier event, so that `to` has nothing pending.
async fn heard_again(from: &Server, to: &mut Client, channel: &str) {
    let mut heard = false;
    for i in 0..100 {
        let r = trigger(
            from,
            json!({"name": "probe", "channel": channel, "data": i.to_string()}),
        )
        .await;
        assert!(r.status == 200 || r.status == 503, "{}", r.status);
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), to.recv()).await {
            assert_eq!(frame["event"], "probe", "{frame}");
            heard = true;
            break;
        }
    }
    assert!(heard, "{channel} is not relayed again");
    let r = trigger(
        from,
        json!({"name": "barrier", "channel": channel, "data": "b"}),
    )
    .await;
    assert_eq!(r.status, 200);
    loop {
        let frame = to.recv().await;
        if frame["event"] == "barrier" {
            break;
        }
        assert_eq!(frame["event"], "probe", "{frame}");
    }
}

/// Two nodes with a subscriber of `news` on B and a presence channel
/// member on each.
struct Scene {
    a: Server,
    b: Server,
    news: Client,
    ada: Client,
    bob: Client,
}

impl Scene {
    async fn start(redis: &RedisCluster) -> Scene {
        let a = cluster_node(redis).await;
        let b = cluster_node(redis).await;
        let mut news = Client::connect(&b).await;
        news.subscribe("news").await;
        let mut ada = Client::connect(&a).await;
        ada.join("presence-room", "1", json!(null)).await;
        let mut bob = Client::connect(&b).await;
        bob.join("presence-room", "2", json!(null)).await;
        ada.expect("pusher_internal:member_added").await;
        Scene {
            a,
            b,
            news,
            ada,
            bob,
        }
    }

    /// After the topology changed: events in order and once, a new member
    /// announced on both nodes, and the queries count everyone.
    async fn still_one_server(mut self) {
        let (a, b) = (&self.a, &self.b);
        heard_again(a, &mut self.news, "news").await;
        heard_again(a, &mut self.bob, "presence-room").await;
        for i in 0..5 {
            let r = trigger(
                a,
                json!({"name": "n", "channel": "news", "data": i.to_string()}),
            )
            .await;
            assert_eq!(r.status, 200);
        }
        for i in 0..5 {
            assert_eq!(self.news.expect("n").await["raw_data"], i.to_string());
        }
        self.news.expect_nothing_pending().await;
        let mut carol = Client::connect(a).await;
        carol.join("presence-room", "3", json!(null)).await;
        let added = self.bob.expect("pusher_internal:member_added").await;
        assert_eq!(added["data"]["user_id"], "3");
        // Ada, on the publishing node, heard the probes too.
        loop {
            let frame = self.ada.recv().await;
            if frame["event"] == "pusher_internal:member_added" {
                assert_eq!(frame["data"]["user_id"], "3");
                break;
            }
            assert!(
                ["probe", "barrier"].contains(&frame["event"].as_str().unwrap_or_default()),
                "{frame}"
            );
        }
        common::eventually("the queries count every node", || async {
            let r = common::get(
                b,
                "/apps/app-id/channels/presence-room",
                "info=user_count,subscription_count",
            )
            .await;
            r.body == json!({"occupied": true, "user_count": 3, "subscription_count": 3})
        })
        .await;
        self.bob.expect_nothing_pending().await;
        self.ada.expect_nothing_pending().await;
    }
}

#[actix_rt::test]
async fn a_resharding_is_followed_without_a_restart() {
    let redis = RedisCluster::start();
    let scene = Scene::start(&redis).await;
    // The channel's topic, then the app's state (presence, counts and the
    // presence channels' topics), each to another master.
    for key in [NEWS_TOPIC, APP_STATE] {
        let to = (redis.owner_of(key) + 1) % 3;
        redis.move_slot_of(key, to);
        assert_eq!(redis.owner_of(key), to);
    }
    scene.still_one_server().await;
}

#[actix_rt::test]
async fn a_master_restart_is_survived() {
    let mut redis = RedisCluster::start();
    let scene = Scene::start(&redis).await;
    // The masters holding the channel's topic and the app's state.
    let mut restarted = vec![redis.owner_of(NEWS_TOPIC), redis.owner_of(APP_STATE)];
    restarted.dedup();
    for master in restarted {
        redis.restart_master(master);
    }
    scene.a.wait_ready().await;
    scene.b.wait_ready().await;
    scene.still_one_server().await;
}
