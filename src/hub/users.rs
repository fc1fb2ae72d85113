//! Signed-in users on this node (their sockets, for `#server-to-user-*`
//! delivery and termination) and the sockets watching them (watchlist
//! events).

use std::sync::Arc;

use dashmap::DashMap;

use super::connection::Connection;
use crate::protocol::{messages, Close, SocketId};

/// One app's signed-in users and watchers.
#[derive(Debug, Default)]
pub(super) struct Users {
    /// Signed-in sockets per user id.
    signed_in: DashMap<Arc<str>, Vec<Arc<Connection>>>,
    /// Sockets watching a user id.
    watchers: DashMap<Arc<str>, Vec<Arc<Connection>>>,
}

impl Users {
    /// Records a signed-in socket; returns true when the user came online.
    pub(super) fn add(&self, user_id: &Arc<str>, conn: &Arc<Connection>) -> bool {
        let mut sockets = self.signed_in.entry(user_id.clone()).or_default();
        sockets.push(conn.clone());
        sockets.len() == 1
    }

    /// Forgets a signed-in socket; returns true when the user went offline.
    pub(super) fn remove(&self, user_id: &str, socket: SocketId) -> bool {
        let went_offline = match self.signed_in.get_mut(user_id) {
            Some(mut sockets) => {
                sockets.retain(|c| c.socket_id != socket);
                sockets.is_empty()
            }
            None => false,
        };
        if went_offline {
            self.signed_in.remove_if(user_id, |_, s| s.is_empty());
        }
        went_offline
    }

    /// Visits a user's signed-in sockets.
    pub(super) fn sockets_of(&self, user_id: &str, visit: &mut dyn FnMut(&Arc<Connection>)) {
        if let Some(sockets) = self.signed_in.get(user_id) {
            sockets.iter().for_each(visit);
        }
    }

    /// Signed-in users with their socket counts.
    pub(super) fn counts(&self) -> Vec<(Arc<str>, u32)> {
        self.signed_in
            .iter()
            .map(|u| (u.key().clone(), u.len() as u32))
            .collect()
    }

    pub(super) fn is_online(&self, user_id: &str) -> bool {
        self.signed_in.contains_key(user_id)
    }

    /// Closes every socket signed in as `user_id`; returns how many.
    pub(super) fn terminate(&self, user_id: &str) -> usize {
        let Some(sockets) = self.signed_in.get(user_id) else {
            return 0;
        };
        for conn in sockets.iter() {
            conn.request_close(Close::TERMINATED);
        }
        sockets.len()
    }

    pub(super) fn watch(&self, watched: &[Arc<str>], conn: &Arc<Connection>) {
        for id in watched {
            self.watchers
                .entry(id.clone())
                .or_default()
                .push(conn.clone());
        }
    }

    pub(super) fn unwatch(&self, watched: &[Arc<str>], socket: SocketId) {
        for id in watched {
            if let Some(mut list) = self.watchers.get_mut(id) {
                list.retain(|c| c.socket_id != socket);
            }
            self.watchers.remove_if(id, |_, l| l.is_empty());
        }
    }

    /// Sends a watchlist online/offline event for `user_id` to the local
    /// sockets watching it.
    pub(super) fn notify_watchers(&self, user_id: &str, online: bool) {
        let Some(list) = self.watchers.get(user_id) else {
            return;
        };
        let ids = [user_id];
        let frame = if online {
            messages::watchlist_events(&ids, &[])
        } else {
            messages::watchlist_events(&[], &ids)
        };
        for conn in list.iter() {
            conn.send(frame.clone());
        }
    }
}
