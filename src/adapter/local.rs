//! The single-node adapter: the local hub is the whole cluster, so this
//! node decides presence membership and subscription counts itself, from
//! its own roster and subscriber counts, under the channel's lock.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::counts::throttle_count;
use crate::config::AppConfig;
use crate::hub::{AppEvent, EventKind};
use crate::hub::{AppHub, ChannelRules, JoinOutcome, MemberInfo, Roster, SubscribeError};
use crate::protocol::{messages, SocketId};

/// Delivers and answers from this node's hub alone (see [`super::Adapter`]).
#[derive(Debug, Default)]
pub struct LocalAdapter;

/// A single node's decisions: the member limit against the local roster,
/// `member_added`/`member_removed` announced here, counts from the local
/// subscribers, and the application events they imply (occupancy,
/// membership, counts: the webhooks' source). Also the rules of a cluster
/// node cut off from Redis, reporting nothing (Redis reports those events
/// once the node's state is back there).
pub struct LocalRules<'a> {
    app: Arc<AppConfig>,
    /// Where decisions are reported; `None`: nowhere.
    reports: Option<&'a AppHub>,
}

impl<'a> LocalRules<'a> {
    pub fn of(app: &'a AppHub) -> Self {
        LocalRules {
            app: app.app().clone(),
            reports: Some(app),
        }
    }

    /// The same decisions, reporting nothing.
    pub fn silent(app: &'a AppHub) -> Self {
        LocalRules {
            app: app.app().clone(),
            reports: None,
        }
    }

    fn report(&self, event: AppEvent<'_>) {
        if let Some(app) = self.reports {
            app.emit(event);
        }
    }
}

impl ChannelRules for LocalRules<'_> {
    fn join(
        &self,
        channel: &str,
        roster: &mut Roster,
        socket: SocketId,
        member: &MemberInfo,
    ) -> Result<JoinOutcome, SubscribeError> {
        let max = self.app.max_presence_members;
        if roster.user_of(socket).is_none()
            && !roster.is_member(&member.user_id)
            && roster.member_count() >= max
        {
            return Err(SubscribeError::MemberLimit(max));
        }
        let added = roster.join(socket, member);
        if added {
            self.report(AppEvent::MemberAdded {
                channel,
                user_id: &member.user_id,
            });
        }
        Ok(JoinOutcome {
            roster: roster.subscription_data(),
            announce: added
                .then(|| messages::member_added(channel, &member.user_id, &member.user_info)),
            snapshot: None,
        })
    }

    fn leave(&self, channel: &str, user_id: &str) -> Option<ByteString> {
        self.report(AppEvent::MemberRemoved { channel, user_id });
        Some(messages::member_removed(channel, user_id))
    }

    fn occupancy(&self, channel: &str, occupied: bool) {
        if occupied {
            self.report(AppEvent::Occupied { channel });
        } else {
            self.report(AppEvent::Vacated { channel });
        }
    }

    fn count(
        &self,
        channel: &str,
        subscribers: usize,
        last_sent: &mut Option<Instant>,
    ) -> Option<ByteString> {
        let observed = self
            .reports
            .is_some_and(|app| app.observers().wants(EventKind::SubscriptionCount));
        if !(self.app.subscription_count || observed)
            || subscribers == 0
            || !throttle_count(subscribers, last_sent, Instant::now())
        {
            return None;
        }
        self.report(AppEvent::SubscriptionCount {
            channel,
            count: subscribers,
        });
        self.app
            .subscription_count
            .then(|| messages::subscription_count(channel, subscribers))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::Connection;

    #[test]
    fn subscription_counts_are_throttled_for_crowds() {
        let mut config = AppConfig::new("1", "k", "s");
        config.subscription_count = true;
        let hub = AppHub::new(Arc::new(config));
        let rules = LocalRules::of(&hub);
        let first = Arc::new(Connection::new(SocketId::new(0, 0), 4096));
        hub.subscribe(&first, "crowd", None, &rules)
            .expect("subscribed");
        let mut others = Vec::new();
        for n in 1..150 {
            let conn = Arc::new(Connection::new(SocketId::new(n, n), 4096));
            hub.subscribe(&conn, "crowd", None, &rules)
                .expect("subscribed");
            others.push(conn);
        }
        let mut frames = Vec::new();
        first.drain_into(&mut frames);
        let counts = frames
            .iter()
            .filter(|f| f.contains("subscription_count"))
            .count();
        // One per arrival up to 100 subscribers; beyond, at most one per 5 s
        // (and the 100th was just sent).
        assert_eq!(counts, 100);
    }

    #[test]
    fn presence_members_are_limited_and_announced_once() {
        let mut config = AppConfig::new("1", "k", "s");
        config.max_presence_members = 1;
        let hub = AppHub::new(Arc::new(config));
        let rules = LocalRules::of(&hub);
        let member = |id: &str| MemberInfo {
            user_id: id.into(),
            user_info: crate::hub::presence::null_info(),
        };
        let a = Arc::new(Connection::new(SocketId::new(1, 1), 64));
        let b = Arc::new(Connection::new(SocketId::new(2, 2), 64));
        let c = Arc::new(Connection::new(SocketId::new(3, 3), 64));
        hub.subscribe(&a, "presence-r", Some(&member("u1")), &rules)
            .expect("first member");
        // The same user again is no new member; another user is over the limit.
        hub.subscribe(&b, "presence-r", Some(&member("u1")), &rules)
            .expect("same member");
        assert_eq!(
            hub.subscribe(&c, "presence-r", Some(&member("u2")), &rules),
            Err(SubscribeError::MemberLimit(1))
        );
        let mut frames = Vec::new();
        a.drain_into(&mut frames);
        assert!(
            frames.iter().all(|f| !f.contains("member_added")),
            "{frames:?}"
        );
        hub.unsubscribe(b.socket_id, "presence-r", &rules);
        hub.unsubscribe(a.socket_id, "presence-r", &rules);
        assert_eq!(hub.channel("presence-r"), None);
    }
}
