//! One channel on this node: its local subscribers, its presence roster,
//! the order of cluster member events, and local delivery to them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use super::connection::Connection;
use super::member_order::MemberOrder;
use super::presence::Roster;
use super::rules::ChannelRules;
use crate::protocol::{ChannelType, SocketId};

/// Counts reported by channel queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    pub subscription_count: usize,
    /// Distinct members; `None` for non-presence channels.
    pub user_count: Option<usize>,
}

/// One channel's subscribers, and its roster when it is a presence channel.
#[derive(Debug)]
pub(super) struct Channel {
    pub(super) subscribers: HashMap<SocketId, Arc<Connection>>,
    pub(super) roster: Option<Roster>,
    /// When `subscription_count` was last sent (the rules' throttle state).
    count_sent: Option<Instant>,
    /// Cluster member events in decision order (presence channels).
    pub(super) order: MemberOrder,
}

impl Channel {
    pub(super) fn new(name: &str) -> Self {
        Channel {
            subscribers: HashMap::new(),
            roster: ChannelType::of(name).is_presence().then(Roster::default),
            count_sent: None,
            order: MemberOrder::default(),
        }
    }

    /// Nobody is on it and no join is on its way.
    pub(super) fn is_unused(&self) -> bool {
        self.subscribers.is_empty() && self.order.pending == 0
    }

    /// Queues `frame` for every subscriber but `except`; returns how many
    /// took it.
    pub(super) fn deliver(&self, frame: &ByteString, except: Option<SocketId>) -> usize {
        let mut delivered = 0;
        for (id, conn) in &self.subscribers {
            if Some(*id) != except && conn.send(frame.clone()) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Asks the rules whether the new subscriber count is announced.
    pub(super) fn count_changed(&mut self, name: &str, rules: &dyn ChannelRules) {
        if self.roster.is_some() {
            return;
        }
        if let Some(frame) = rules.count(name, self.subscribers.len(), &mut self.count_sent) {
            self.deliver(&frame, None);
        }
    }

    pub(super) fn stats(&self) -> ChannelStats {
        ChannelStats {
            subscription_count: self.subscribers.len(),
            user_count: self.roster.as_ref().map(Roster::member_count),
        }
    }
}
