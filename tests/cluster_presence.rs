//! Presence under churn on a two-node cluster (on a real `redis-server`, and
//! on a three-master Redis Cluster): 100 sockets of 20 users, every user on
//! both nodes, joining and leaving concurrently for several rounds, watched
//! by observers on both nodes.
//! Every observer must see each user's joins and leaves alternate,
//! consistently with its roster, and end with the member list `/users`
//! gives.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::redis_server::Backend;
use common::{Client, Endpoint, Server};
use serde_json::{json, Value};

const CHANNEL: &str = "presence-churn";
const USERS: usize = 20;
const SOCKETS: usize = 100;
const ROUNDS: usize = 6;

async fn node(redis: &impl Backend) -> Server {
    let config = format!(
        "[cluster]\ndriver = \"redis\"\nurl = \"{}\"\nnode_timeout = 3\nheartbeat_interval = 1\n\n[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nmax_presence_members = 1000\n",
        redis.url()
    );
    let server = Server::launch(Some(&config), &[]);
    server.wait_ready().await;
    server
}

/// Joins and returns the roster; member events that come first are skipped.
async fn join(client: &mut Client, user: &str) -> Value {
    let mut reply = client.join(CHANNEL, user, json!({"u": user})).await;
    while reply["event"] != "pusher_internal:subscription_succeeded" {
        assert_ne!(reply["event"], "pusher:subscription_error", "{reply}");
        reply = client.recv().await;
    }
    reply
}

/// Waits until everything this client sent has been handled by the server.
async fn settle(client: &mut Client) {
    client
        .send(json!({"event": "pusher:ping", "data": {}}))
        .await;
    while client.recv().await["event"] != "pusher:pong" {}
}

/// An observer's view: the roster it was shown, then every member event.
struct Observer {
    client: Client,
    members: HashSet<String>,
    errors: Vec<String>,
    log: Vec<String>,
}

impl Observer {
    async fn start(server: &Server, name: &str, sentinel: &str) -> Observer {
        let mut client = Client::connect(server).await;
        let ok = client.subscribe(sentinel).await;
        assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
        let roster = join(&mut client, name).await;
        let members = roster["data"]["presence"]["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        Observer {
            client,
            members,
            errors: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Applies member events until the sentinel arrives.
    async fn follow_until_sentinel(&mut self) {
        loop {
            let frame = self.client.recv().await;
            let user = frame["data"]["user_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.log.push(format!("{} {user}", frame["event"]));
            match frame["event"].as_str() {
                Some("pusher_internal:member_added") if !self.members.insert(user.clone()) => {
                    self.errors.push(format!("member_added for present {user}"));
                }
                Some("pusher_internal:member_removed") if !self.members.remove(&user) => {
                    self.errors
                        .push(format!("member_removed for absent {user}"));
                }
                Some("sentinel") => return,
                _ => {}
            }
        }
    }
}

async fn users(server: &impl Endpoint) -> HashSet<String> {
    let r = common::get(
        server,
        &format!("/apps/app-id/channels/{CHANNEL}/users"),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_owned))
        .collect()
}

async fn presence_under_churn_is_exact_on_every_node(redis: &impl Backend) {
    let nodes = [node(redis).await, node(redis).await];
    // Observers on each node; each node's sentinel is published through the
    // other node, so it arrives through the relay after every member event.
    let mut observers = Vec::new();
    for (i, server) in nodes.iter().enumerate() {
        for k in 0..2 {
            observers.push((
                i,
                Observer::start(server, &format!("obs-{i}-{k}"), &format!("sentinel-{i}")).await,
            ));
        }
    }

    let ports = [nodes[0].port, nodes[1].port];
    let churners: Vec<_> = (0..SOCKETS)
        .map(|i| {
            // A user's sockets alternate between the nodes.
            let port = ports[(i / USERS) % 2];
            actix_rt::spawn(async move {
                let server = Server::attach(port);
                let user = format!("u{}", i % USERS);
                let mut client = Client::connect(&server).await;
                for round in 0..ROUNDS {
                    join(&mut client, &user).await;
                    actix_rt::time::sleep(Duration::from_millis(((i * 7 + round * 13) % 6) as u64)).await;
                    // Half the users keep their sockets at the end; the
                    // others leave on every socket and must be gone.
                    let stays = round == ROUNDS - 1 && i % USERS < USERS / 2;
                    if !stays {
                        client
                            .send(json!({"event": "pusher:unsubscribe", "data": {"channel": CHANNEL}}))
                            .await;
                    }
                    actix_rt::time::sleep(Duration::from_millis(((i * 11 + round * 5) % 4) as u64)).await;
                }
                settle(&mut client).await;
                client
            })
        })
        .collect();
    let mut clients = Vec::new();
    for churner in churners {
        clients.push(churner.await.expect("churner"));
    }

    for (i, _) in nodes.iter().enumerate() {
        let other = &nodes[1 - i];
        let r = common::trigger(
            other,
            json!({"name": "sentinel", "channel": format!("sentinel-{i}"), "data": "{}"}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let truth = users(&nodes[0]).await;
    assert_eq!(
        truth,
        users(&nodes[1]).await,
        "the nodes disagree on /users"
    );
    let mut expected: HashSet<String> = (0..USERS / 2).map(|u| format!("u{u}")).collect();
    for (i, _) in nodes.iter().enumerate() {
        for k in 0..2 {
            expected.insert(format!("obs-{i}-{k}"));
        }
    }
    assert_eq!(truth, expected, "/users after the churn");
    for (i, observer) in &mut observers {
        observer.follow_until_sentinel().await;
        if let Some(first) = observer.errors.first() {
            let user = first.rsplit(' ').next().unwrap_or_default().to_owned();
            let history: Vec<&String> = observer
                .log
                .iter()
                .filter(|l| l.ends_with(&format!(" {user}")))
                .collect();
            panic!(
                "observer on node {i}: {:?}\nhistory of {user}: {history:?}",
                observer.errors
            );
        }
        assert_eq!(
            observer.members, truth,
            "observer on node {i} ends with a wrong member list"
        );
    }
    drop(clients);
}

on_redis_and_redis_cluster!(presence_under_churn_is_exact_on_every_node);
