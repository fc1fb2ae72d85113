//! Herald on a Redis Cluster through topology changes: a slot moving to
//! another master (a resharding), a master restarting, and a master
//! crashing with its replica taking over. The nodes must
//! keep serving without a restart of their own: relay, presence and
//! queries work again once Redis has settled. (The rest of the cluster
//! suite runs on a Redis Cluster too: see `cluster.rs`.)

mod common;

use std::time::Duration;

use common::redis_cluster::RedisCluster;
use common::redis_server::{cluster_node, Backend};
use common::{trigger, Client, Server};
use serde_json::json;

/// The relay topic of a public channel and a key in the slot of the app's
/// shared state (see `src/adapter/redis/keys.rs`).
fn topic(channel: &str) -> String {
    format!("{{herald:app:app-id:{channel}}}:events")
}
const APP_STATE: &str = "{herald:app:app-id}:occupancy";
/// The control channel, with the node registry.
const CONTROL: &str = "{herald}:relay";

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

/// Two nodes with a subscriber of a public channel on B and a presence
/// channel member on each.
struct Scene {
    a: Server,
    b: Server,
    channel: String,
    news: Client,
    ada: Client,
    bob: Client,
}

impl Scene {
    async fn start(a: Server, b: Server, channel: &str) -> Scene {
        let mut news = Client::connect(&b).await;
        news.subscribe(channel).await;
        let mut ada = Client::connect(&a).await;
        ada.join("presence-room", "1", json!(null)).await;
        let mut bob = Client::connect(&b).await;
        bob.join("presence-room", "2", json!(null)).await;
        ada.expect("pusher_internal:member_added").await;
        Scene {
            a,
            b,
            channel: channel.to_owned(),
            news,
            ada,
            bob,
        }
    }

    /// After the topology changed: events in order and once, a new member
    /// announced on both nodes, and the queries count everyone.
    async fn still_one_server(&mut self) {
        let (a, b) = (&self.a, &self.b);
        let channel = self.channel.as_str();
        heard_again(a, &mut self.news, channel).await;
        heard_again(a, &mut self.bob, "presence-room").await;
        for i in 0..5 {
            let r = trigger(
                a,
                json!({"name": "n", "channel": channel, "data": i.to_string()}),
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
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    // A signed-in user on B hears server-to-user events through the
    // control channel.
    let mut user = Client::connect(&b).await;
    user.signin(json!({"id": "42"})).await;
    let mut scene = Scene::start(a, b, "news").await;
    // The channel's topic, then the app's state (presence, counts and the
    // presence channels' topics), each to another master.
    for key in [topic("news"), APP_STATE.to_owned()] {
        let to = (redis.owner_of(&key) + 1) % 3;
        redis.move_slot_of(&key, to);
        assert_eq!(redis.owner_of(&key), to);
    }
    scene.still_one_server().await;
    // Last (its loss would make the nodes reconnect everything, which
    // would hide a topic not followed above): the node registry and the
    // control channel.
    let to = (redis.owner_of(CONTROL) + 1) % 3;
    redis.move_slot_of(CONTROL, to);
    heard_again(&scene.a, &mut user, "#server-to-user-42").await;
}

#[actix_rt::test]
async fn a_master_restart_is_survived() {
    let mut redis = RedisCluster::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    let mut scene = Scene::start(a, b, "news").await;
    // The masters holding the channel's topic and the app's state.
    let mut restarted = vec![redis.owner_of(&topic("news")), redis.owner_of(APP_STATE)];
    restarted.dedup();
    for master in restarted {
        redis.restart_master(master);
    }
    scene.a.wait_ready().await;
    scene.b.wait_ready().await;
    scene.still_one_server().await;
}

#[actix_rt::test]
async fn a_failover_to_a_replica_is_survived() {
    let mut redis = RedisCluster::start_with_replicas();
    // Nodes are presumed dead 10 s after their last heartbeat: longer than
    // the failover, as in production (30 s, and Redis's 15 s node timeout).
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 10\nheartbeat_interval = 1\n",
        redis.url()
    );
    let (a, b) = (
        Server::launch(Some(&config), &[]),
        Server::launch(Some(&config), &[]),
    );
    a.wait_ready().await;
    b.wait_ready().await;
    // A public channel whose topic lives on the master of the app's state,
    // so that one failover moves both.
    let app_master = redis.owner_of(APP_STATE);
    let channel = (0..)
        .map(|n| format!("news-{n}"))
        .find(|c| redis.owner_of(&topic(c)) == app_master)
        .expect("a channel on that master");
    let mut scene = Scene::start(a, b, &channel).await;
    redis.fail_master_of(APP_STATE);
    scene.a.wait_ready().await;
    scene.b.wait_ready().await;
    scene.still_one_server().await;
}

/// A node that serves a channel whose shard is away says so on `/up`
/// ("degraded": some of what it serves is not heard), while its state and
/// relay shards are fine, and is "ok" and hears the channel again once
/// the shard is back.
#[actix_rt::test]
async fn a_shard_away_shows_on_up_of_the_nodes_that_need_it() {
    let mut redis = RedisCluster::start();
    let (a, b) = (cluster_node(&redis).await, cluster_node(&redis).await);
    // A channel on the master that holds neither the app's state nor the
    // node registry and control channel.
    let busy = [redis.owner_of(APP_STATE), redis.owner_of("{herald}:nodes")];
    let channel = (0..)
        .map(|n| format!("news-{n}"))
        .find(|c| !busy.contains(&redis.owner_of(&topic(c))))
        .expect("a channel on the third master");
    let master = redis.owner_of(&topic(&channel));
    let mut news = Client::connect(&b).await;
    news.subscribe(&channel).await;

    redis.stop_master(master);
    common::eventually("B says it is degraded", || async {
        common::get(&b, "/up", "").await.body["status"] == "degraded"
    })
    .await;
    // A serves nothing there: still ok.
    assert_eq!(common::get(&a, "/up", "").await.body["status"], "ok");

    redis.start_master(master);
    b.wait_ready().await;
    heard_again(&a, &mut news, &channel).await;
}
