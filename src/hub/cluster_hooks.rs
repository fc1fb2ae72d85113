//! What the Redis adapter needs of an app's channels to keep cluster
//! member events in decision order (see `MemberOrder`) and to rebuild this
//! node's share of the cluster state. The hub knows no cluster: these are
//! decisions that must be taken under a channel's lock, so they live here.

use std::sync::Arc;

use bytestring::ByteString;

use super::app_hub::{AppHub, LocalMember};
use super::channel::Channel;
use super::connection::Connection;
use crate::protocol::SocketId;

impl AppHub {
    /// A join whose roster the cluster is deciding: keeps the channel, and
    /// the member events that arrive meanwhile, until [`AppHub::join_settled`].
    pub fn join_pending(&self, name: &str) {
        self.channels
            .entry(name.into())
            .or_insert_with(|| Channel::new(name))
            .order
            .pending += 1;
    }

    /// The join announced by [`AppHub::join_pending`] is done (subscribed
    /// or refused).
    pub fn join_settled(&self, name: &str) {
        let unused = match self.channels.get_mut(name) {
            Some(mut channel) => {
                channel.order.settled();
                channel.is_unused()
            }
            None => false,
        };
        if unused {
            self.channels.remove_if(name, |_, c| c.is_unused());
        }
    }

    /// Presence channels with local subscribers (for the cluster's
    /// convergence check).
    pub fn presence_channels(&self) -> Vec<String> {
        self.channels
            .iter()
            .filter(|c| c.roster.is_some() && !c.subscribers.is_empty())
            .map(|c| c.key().to_string())
            .collect()
    }

    /// Whether the local subscribers of `name` missed member events that
    /// Redis has numbered up to `redis_version` (see `MemberOrder`).
    pub fn missed_member_events(&self, name: &str, redis_version: u64) -> bool {
        self.channels
            .get_mut(name)
            .is_some_and(|mut c| c.order.missed_events(redis_version))
    }

    /// Shows every local subscriber of `name` the cluster's roster as of
    /// `version` again (`subscription_succeeded`, which pusher-js applies
    /// as the new member list and Echo reports through `here`), unless
    /// events newer than it were delivered meanwhile.
    /// `visit` gets each subscriber to send the roster frame to (through
    /// the same path as the member events it supersedes, so it comes after
    /// them).
    pub fn resync_roster(&self, name: &str, version: u64, visit: &mut dyn FnMut(&Arc<Connection>)) {
        let Some(mut channel) = self.channels.get_mut(name) else {
            return;
        };
        let channel = &mut *channel;
        if channel.order.applied_version() >= version {
            return;
        }
        channel.subscribers.values().for_each(visit);
        channel
            .order
            .resynced(version, channel.subscribers.keys().copied());
    }

    /// The cluster's member event numbering started again (Redis was
    /// replaced): forget the versions seen so far.
    pub fn restart_member_order(&self) {
        for mut channel in self.channels.iter_mut() {
            channel.order.restart();
        }
    }

    /// Takes note of a cluster member event numbered `version` and visits
    /// the channel's local subscribers whose roster does not have it yet,
    /// who must get it (none when `deliver` is false). Deciding under the
    /// channel's lock keeps the ordering rules; `visit` sends or hands on.
    pub fn member_event_recipients(
        &self,
        name: &str,
        version: u64,
        frame: &ByteString,
        except: Option<SocketId>,
        deliver: bool,
        visit: &mut dyn FnMut(&Arc<Connection>),
    ) {
        let Some(mut channel) = self.channels.get_mut(name) else {
            return;
        };
        let channel = &mut *channel;
        channel.order.accept(version, frame, except);
        if !deliver {
            return;
        }
        for (id, conn) in &channel.subscribers {
            if Some(*id) != except && channel.order.wants(*id, version) {
                visit(conn);
            }
        }
    }

    /// Presence channels with this node's members: channel, and per user
    /// their local socket count and user_info (cluster rebuild).
    pub fn local_presence(&self) -> Vec<(String, Vec<LocalMember>)> {
        self.channels
            .iter()
            .filter_map(|c| {
                let roster = c.roster.as_ref()?;
                Some((c.key().to_string(), roster.members()))
            })
            .collect()
    }

    /// Signed-in users on this node with their socket counts (cluster rebuild).
    pub fn local_users(&self) -> Vec<(Arc<str>, u32)> {
        self.users.counts()
    }
}
