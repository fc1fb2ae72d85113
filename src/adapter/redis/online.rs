//! Signed-in users across the cluster: the online pseudo presence channel
//! (`ONLINE`) decides when a user comes online or goes offline anywhere,
//! and watchers on every node hear it. While Redis is away the node decides
//! from its own users, as a single node would.

use std::sync::Arc;

use super::relay::Command;
use super::scripts::Joined;
use super::{Inner, RedisAdapter, ONLINE};
use crate::hub::{AppHub, Connection};
use crate::protocol::SocketId;

impl Inner {
    /// Tells watchers on every node that `user_id` came online or went offline.
    pub(super) fn announce_online(&self, app: &AppHub, user_id: &str, online: bool) {
        app.notify_watchers(user_id, online);
        self.relay(app, Command::Watchlist { user_id, online });
    }

    pub(super) async fn sign_in(&self, app: &Arc<AppHub>, user_id: &str, conn: &Arc<Connection>) {
        let came_online = app.add_user(&user_id.into(), conn);
        if !self.healthy() {
            if came_online {
                app.notify_watchers(user_id, true);
            }
            return;
        }
        let keys = self.keys.presence(app.id(), ONLINE, &self.keys.node);
        let joined = self
            .scripts
            .join(
                &mut self.redis.clone(),
                &keys,
                &self.keys.node_presence(app.id(), &self.keys.node),
                ONLINE,
                user_id,
                "null",
                usize::MAX,
                &self.announce(app, ONLINE, ""),
                "",
            )
            .await;
        match joined {
            Ok(Joined::Ok { added: true, .. }) => self.announce_online(app, user_id, true),
            Ok(_) => {}
            Err(e) => {
                self.mark_unhealthy(&e);
                if came_online {
                    app.notify_watchers(user_id, true);
                }
            }
        }
    }

    pub(super) async fn sign_out(&self, app: &Arc<AppHub>, user_id: &str, socket: SocketId) {
        let went_offline = app.remove_user(user_id, socket);
        if !self.healthy() {
            if went_offline {
                app.notify_watchers(user_id, false);
            }
            return;
        }
        let keys = self.keys.presence(app.id(), ONLINE, &self.keys.node);
        match self
            .scripts
            .leave(
                &mut self.redis.clone(),
                &keys,
                user_id,
                &self.announce(app, ONLINE, ""),
            )
            .await
        {
            Ok(true) => self.announce_online(app, user_id, false),
            Ok(false) => {}
            Err(e) => {
                self.mark_unhealthy(&e);
                if went_offline {
                    app.notify_watchers(user_id, false);
                }
            }
        }
    }
}

impl RedisAdapter {
    pub(in crate::adapter) async fn online(
        &self,
        app: &AppHub,
        user_ids: &[Arc<str>],
    ) -> Vec<bool> {
        let inner = &self.inner;
        let local: Vec<bool> = user_ids.iter().map(|id| app.is_online(id)).collect();
        if user_ids.is_empty() || !inner.healthy() {
            return local;
        }
        let keys = inner.keys.presence(app.id(), ONLINE, &inner.keys.node);
        let mut pipe = redis::pipe();
        for id in user_ids {
            pipe.hexists(&keys.users, &**id);
        }
        match pipe
            .query_async::<Vec<bool>>(&mut inner.redis.clone())
            .await
        {
            Ok(remote) => remote.into_iter().zip(local).map(|(r, l)| r || l).collect(),
            Err(e) => {
                inner.mark_unhealthy(&e);
                local
            }
        }
    }
}
