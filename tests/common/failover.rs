//! What every Redis topology change must leave behind: two Herald nodes
//! that serve as one again (relay, presence and queries), checked the same
//! way after a Redis Cluster failover, a resharding or a restart
//! (`redis_cluster.rs`) and a Sentinel failover (`redis_sentinel.rs`).

use std::time::Duration;

use serde_json::json;

use super::{trigger, Client, Server};

/// Waits until `to` hears what `from` publishes on `channel` again (events
/// published while Redis reroutes may be lost), then drains the probes up
/// to a barrier event, so that `to` has nothing pending.
pub async fn heard_again(from: &Server, to: &mut Client, channel: &str) {
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
pub struct Scene {
    pub a: Server,
    pub b: Server,
    pub channel: String,
    pub news: Client,
    pub ada: Client,
    pub bob: Client,
}

impl Scene {
    pub async fn start(a: Server, b: Server, channel: &str) -> Scene {
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
    pub async fn still_one_server(&mut self) {
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
        super::eventually("the queries count every node", || async {
            let r = super::get(
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
