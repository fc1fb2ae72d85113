//! Presence member events in the order the cluster decided them.
//!
//! In cluster mode Redis numbers every membership change of a channel and
//! publishes it from the deciding script, so the relay brings them to every
//! node in that order. A node delivers each event once, and to a subscriber
//! only if it is newer than the roster that subscriber was shown
//! (`subscription_succeeded` already contains everything up to it). Events
//! that arrive while a join is waiting for Redis are kept briefly, so the
//! joiner still gets those newer than its roster.

use std::collections::{HashMap, VecDeque};

use bytestring::ByteString;

use crate::protocol::SocketId;

/// Events kept for joins still waiting for their roster.
const RECENT: usize = 64;

/// One channel's ordering state (empty and unallocated on a single node).
#[derive(Debug, Default)]
pub(super) struct MemberOrder {
    /// The newest version delivered here.
    applied: u64,
    recent: VecDeque<(u64, ByteString, Option<SocketId>)>,
    /// The roster version each subscriber was shown.
    snapshots: HashMap<SocketId, u64>,
    /// Joins waiting for Redis: the channel must be kept meanwhile.
    pub pending: usize,
    /// `applied` when a check last found Redis ahead of it.
    lagging_at: Option<u64>,
}

impl MemberOrder {
    /// Takes an event into the order. The relay brings each event once and
    /// in order, so a version at or below the last one means the numbering
    /// started again (a new Redis): what was seen before no longer counts.
    pub fn accept(&mut self, version: u64, frame: &ByteString, except: Option<SocketId>) {
        if version <= self.applied {
            self.restart();
        }
        self.applied = version;
        if self.pending > 0 {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back((version, frame.clone(), except));
        }
    }

    /// The newest version delivered here.
    pub fn applied_version(&self) -> u64 {
        self.applied
    }

    /// Whether `socket` should get the event numbered `version`.
    pub fn wants(&self, socket: SocketId, version: u64) -> bool {
        self.snapshots
            .get(&socket)
            .is_none_or(|seen| *seen < version)
    }

    /// `socket` was shown the roster as of `snapshot`: the events it must
    /// still get, in order.
    pub fn joined(&mut self, socket: SocketId, snapshot: u64) -> Vec<ByteString> {
        self.snapshots.insert(socket, snapshot);
        self.recent
            .iter()
            .filter(|(version, _, except)| *version > snapshot && *except != Some(socket))
            .map(|(_, frame, _)| frame.clone())
            .collect()
    }

    /// A pending join is done; with none left, nothing needs the recent
    /// events any more.
    pub fn settled(&mut self) {
        self.pending = self.pending.saturating_sub(1);
        if self.pending == 0 {
            self.recent.clear();
        }
    }

    pub fn left(&mut self, socket: SocketId) {
        self.snapshots.remove(&socket);
    }

    /// Whether this node missed member events: Redis's version is ahead of
    /// what every local subscriber has seen at two checks in a row with
    /// nothing arriving in between (one check could just race events in
    /// flight). A subscriber has seen the events up to its roster's version
    /// or the last one delivered here, whichever is newer: a user's second
    /// socket joining on a node where the channel is new changes nothing
    /// (no event), and is no sign of missed ones.
    pub fn missed_events(&mut self, redis_version: u64) -> bool {
        let oldest_roster = self.snapshots.values().min().copied().unwrap_or(0);
        if redis_version <= self.applied.max(oldest_roster) {
            self.lagging_at = None;
            return false;
        }
        if self.lagging_at == Some(self.applied) {
            return true;
        }
        self.lagging_at = Some(self.applied);
        false
    }

    /// Every local subscriber was shown the roster as of `version`.
    pub fn resynced(&mut self, version: u64, subscribers: impl Iterator<Item = SocketId>) {
        self.applied = version;
        self.lagging_at = None;
        self.recent.clear();
        for socket in subscribers {
            self.snapshots.insert(socket, version);
        }
    }

    /// The numbering started again: every subscriber takes every event.
    pub fn restart(&mut self) {
        self.applied = 0;
        self.recent.clear();
        self.snapshots.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_newer_than_a_snapshot_are_delivered() {
        let mut order = MemberOrder::default();
        let (a, b) = (SocketId::new(1, 1), SocketId::new(2, 2));
        order.accept(1, &"e1".into(), None);
        order.joined(a, 3);
        assert!(!order.wants(a, 3));
        assert!(order.wants(a, 4));
        assert!(order.wants(b, 1));
    }

    #[test]
    fn subscribers_whose_rosters_are_current_missed_nothing() {
        let mut order = MemberOrder::default();
        let (a, b) = (SocketId::new(1, 1), SocketId::new(2, 2));
        // Shown the roster as of 7; no event delivered here yet.
        order.joined(a, 7);
        assert!(!order.missed_events(7));
        assert!(!order.missed_events(7));
        // Another subscriber with an older roster, and Redis moved on.
        order.joined(b, 5);
        assert!(
            !order.missed_events(7),
            "one check may race events in flight"
        );
        assert!(order.missed_events(7), "b's events 6 and 7 never came");
    }

    #[test]
    fn a_numbering_that_starts_again_resets_the_snapshots() {
        let mut order = MemberOrder::default();
        let a = SocketId::new(1, 1);
        order.accept(40, &"e40".into(), None);
        order.joined(a, 40);
        // Redis was replaced: its events start again at 1.
        order.accept(1, &"e1".into(), None);
        assert!(order.wants(a, 1));
    }

    #[test]
    fn a_pending_join_gets_what_it_missed() {
        let mut order = MemberOrder {
            pending: 1,
            ..MemberOrder::default()
        };
        let joiner = SocketId::new(1, 1);
        order.accept(5, &"v5".into(), None);
        order.accept(6, &"v6".into(), None);
        order.accept(7, &"v7".into(), Some(joiner));
        // Its roster was as of version 5: it misses 6, not 7 (its own join).
        assert_eq!(order.joined(joiner, 5), ["v6"]);
        order.settled();
        assert!(order.recent.is_empty());
    }
}
