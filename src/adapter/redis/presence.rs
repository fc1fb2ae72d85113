//! Presence channels in a cluster: a join or a departure is decided by a
//! Lua script in Redis (the member limit, `member_added` /
//! `member_removed` once cluster-wide, published by the script itself so
//! every node delivers member events in decision order); the local hub
//! only records which socket is which user. While Redis is away the node
//! decides as a single node would ([`ClusterRules`]).

use std::sync::Arc;

use bytestring::ByteString;
use redis::AsyncCommands;
use serde_json::value::RawValue;

use super::scripts::{Announce, Joined};
use super::{Inner, ONLINE};
use crate::adapter::LocalRules;
use crate::hub::presence::subscription_data;
use crate::hub::{
    AppHub, ChannelRules, Connection, JoinOutcome, MemberInfo, Roster, SubscribeError,
};
use crate::protocol::{messages, SocketId};

impl Inner {
    pub(super) async fn join(
        &self,
        app: &Arc<AppHub>,
        conn: &Arc<Connection>,
        channel: &str,
        member: MemberInfo,
    ) -> Result<(), SubscribeError> {
        let keys = self.keys.presence(app.id(), channel, &self.keys.node);
        let mut redis = self.redis.clone();
        if app.is_subscribed(conn.socket_id, channel) {
            // A repeated subscribe changes nothing; answer with the roster.
            let roster = match redis.hgetall::<_, Vec<(String, String)>>(&keys.info).await {
                Ok(members) => roster(&members),
                Err(e) => {
                    self.mark_unhealthy(&e);
                    return app
                        .subscribe(conn, channel, Some(&member), &ClusterRules::here(app))
                        .map(|_| ());
                }
            };
            let rules = ClusterRules::redis(app, &roster, None);
            return app
                .subscribe(conn, channel, Some(&member), &rules)
                .map(|_| ());
        }
        // Member events that arrive while Redis decides are kept for us.
        app.join_pending(channel);
        let topic = self.keys.topic(app.id(), channel);
        let socket = conn.socket_id.to_string();
        let joined = self
            .scripts
            .join(
                &mut redis,
                &keys,
                &self.keys.node_presence(app.id(), &self.keys.node),
                channel,
                &member.user_id,
                member.user_info.get(),
                app.app().max_presence_members,
                &self.announce(app, channel, &topic),
                &socket,
            )
            .await;
        let subscribed = match joined {
            Ok(Joined::Full) => Err(SubscribeError::MemberLimit(app.app().max_presence_members)),
            Ok(Joined::Ok {
                members, version, ..
            }) => {
                // Our own member_added comes back through the relay, in
                // its place among everyone's.
                let roster = roster(&members);
                let rules = ClusterRules::redis(app, &roster, Some(version));
                app.subscribe(conn, channel, Some(&member), &rules)
                    .map(|_| ())
            }
            Err(e) => {
                self.mark_unhealthy(&e);
                app.subscribe(conn, channel, Some(&member), &ClusterRules::here(app))
                    .map(|_| ())
            }
        };
        app.join_settled(channel);
        subscribed
    }

    /// Where the scripts publish the member events of `channel` they decide
    /// (nowhere for the online pseudo-channel, whose transitions are
    /// relayed as watchlist events).
    pub(super) fn announce<'a>(
        &'a self,
        app: &'a AppHub,
        channel: &'a str,
        topic: &'a str,
    ) -> Announce<'a> {
        Announce {
            topic: if channel == ONLINE { "" } else { topic },
            origin: &self.keys.node,
            app: app.id(),
            channel,
            hooks: self.hooks(app.id(), channel),
        }
    }

    pub(super) async fn leave(&self, app: &Arc<AppHub>, socket: SocketId, channel: &str) {
        let user = app.member_of(socket, channel);
        let clustered = user.is_some() && self.healthy();
        let left = app.unsubscribe(socket, channel, &ClusterRules::leaving(app, clustered));
        self.write_subscriptions(app, channel);
        let (Some(user), true) = (user, clustered) else {
            return;
        };
        let keys = self.keys.presence(app.id(), channel, &self.keys.node);
        let topic = self.keys.topic(app.id(), channel);
        let announce = self.announce(app, channel, &topic);
        // A departure is published by the script itself (see join).
        match self
            .scripts
            .leave(&mut self.redis.clone(), &keys, &user, &announce)
            .await
        {
            Ok(_) => {}
            Err(e) => {
                self.mark_unhealthy(&e);
                if let Some(user) = left {
                    app.publish(channel, &messages::member_removed(channel, &user), None);
                }
            }
        }
    }
}

/// The presence data of `subscription_succeeded` from Redis's info hash.
pub(super) fn roster(members: &[(String, String)]) -> String {
    let parsed: Vec<(&str, Box<RawValue>)> = members
        .iter()
        .map(|(id, info)| {
            let raw = RawValue::from_string(info.clone())
                .or_else(|_| RawValue::from_string("null".to_owned()))
                .unwrap_or_default();
            (id.as_str(), raw)
        })
        .collect();
    subscription_data(parsed.iter().map(|(id, raw)| (*id, &**raw)))
}

/// A cluster node's decisions. Counts are announced cluster-wide by
/// [`Inner::announce_count`], never from local counts. Membership is decided
/// in Redis, which announces it through the relay, so the local roster only
/// records which socket is which user; while Redis is unreachable it is
/// decided here, as on a single node.
pub(super) struct ClusterRules<'a> {
    local: LocalRules<'a>,
    decided: Decided<'a>,
}

/// Who decided the membership change the hub is applying.
enum Decided<'a> {
    /// Redis: for a join, the cluster-wide roster it answered (as of
    /// membership `version` when the join itself was decided now); a
    /// departure is announced by Redis too.
    Redis {
        roster: &'a str,
        version: Option<u64>,
    },
    /// This node, as a single node would (Redis is unreachable).
    Here,
}

impl<'a> ClusterRules<'a> {
    fn redis(app: &'a AppHub, roster: &'a str, version: Option<u64>) -> Self {
        ClusterRules {
            local: LocalRules::silent(app),
            decided: Decided::Redis { roster, version },
        }
    }

    pub(super) fn here(app: &'a AppHub) -> Self {
        ClusterRules {
            local: LocalRules::silent(app),
            decided: Decided::Here,
        }
    }

    /// A departure: Redis announces it when `in_redis`.
    fn leaving(app: &'a AppHub, in_redis: bool) -> Self {
        if in_redis {
            ClusterRules::redis(app, "", None)
        } else {
            ClusterRules::here(app)
        }
    }
}

impl ChannelRules for ClusterRules<'_> {
    fn join(
        &self,
        channel: &str,
        roster: &mut Roster,
        socket: SocketId,
        member: &MemberInfo,
    ) -> Result<JoinOutcome, SubscribeError> {
        match self.decided {
            Decided::Redis {
                roster: cluster_roster,
                version,
            } => {
                roster.join(socket, member);
                Ok(JoinOutcome {
                    roster: cluster_roster.to_owned(),
                    announce: None,
                    snapshot: version,
                })
            }
            Decided::Here => self.local.join(channel, roster, socket, member),
        }
    }

    fn leave(&self, channel: &str, user_id: &str) -> Option<ByteString> {
        match self.decided {
            Decided::Redis { .. } => None,
            Decided::Here => self.local.leave(channel, user_id),
        }
    }

    /// Occupancy webhooks follow the cluster-wide count (`state`).
    fn occupancy(&self, _: &str, _: bool) {}

    fn count(&self, _: &str, _: usize, _: &mut Option<std::time::Instant>) -> Option<ByteString> {
        None
    }
}
