//! Herald on a Redis Cluster through topology changes: a slot moving to
//! another master (a resharding), a master restarting, and a master
//! crashing with its replica taking over. The nodes must
//! keep serving without a restart of their own: relay, presence and
//! queries work again once Redis has settled. (The rest of the cluster
//! suite runs on a Redis Cluster too: see `cluster.rs`.)

mod common;

use common::failover::{heard_again, Scene};
use common::redis_cluster::RedisCluster;
use common::redis_server::{cluster_node, Backend};
use common::{Client, Server};
use serde_json::json;

/// The relay topic of a public channel and a key in the slot of the app's
/// shared state (see `src/adapter/redis/keys.rs`).
fn topic(channel: &str) -> String {
    format!("{{herald:app:app-id:{channel}}}:events")
}
const APP_STATE: &str = "{herald:app:app-id}:occupancy";
/// The control channel, with the node registry.
const CONTROL: &str = "{herald}:relay";

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
