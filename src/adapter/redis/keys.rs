//! Names of every Redis key and pub/sub channel Herald uses, in one place.
//!
//! Per-node data lives under keys that name the node, so that a node can
//! rewrite its own share after an outage and survivors can delete a dead
//! node's share without touching anyone else's.
//!
//! Every name starts with a hash tag (`{...}`), which is what a Redis
//! Cluster places by (on one Redis it is only part of the name):
//! * `{prefix}`: the node registry and the shared control channel;
//! * `{prefix:app:ID}`: an app's counts, presence, webhook outbox, and the
//!   topics of its presence channels. The scripts that decide occupancy
//!   and membership touch all of these at once, and publish member events
//!   from inside, so they must share a slot;
//! * `{prefix:app:ID:CHANNEL}`: the topic, polling history and cached
//!   event of every other channel, so the relay and history load, which
//!   grows with events rather than with joins and leaves, spreads over the
//!   shards channel by channel.

use super::scripts::Hooks;
use crate::config::AppConfig;
use crate::protocol::webhook::KindSet;
use crate::protocol::ChannelType;

/// Key builder for one cluster (one prefix) and one node.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    pub node: String,
}

impl Keys {
    pub fn new(prefix: &str, node: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            node: node.to_owned(),
        }
    }

    /// The names of an app's shared state begin with this.
    fn app(&self, app: &str) -> String {
        format!("{{{}:app:{app}}}", self.prefix)
    }

    /// The names of one channel's events begin with this.
    fn channel(&self, app: &str, channel: &str) -> String {
        format!("{{{}:app:{app}:{channel}}}", self.prefix)
    }

    /// The pub/sub channel every node subscribes to: what concerns a
    /// whole app rather than one channel (see `relay`).
    pub fn control(&self) -> String {
        format!("{{{}}}:relay", self.prefix)
    }

    /// The pub/sub topic of one channel's events, heard only by the nodes
    /// that serve the channel (see `interest`). A presence channel's is
    /// in its app's slot: the scripts publish its member events.
    pub fn topic(&self, app: &str, channel: &str) -> String {
        if ChannelType::of(channel).is_presence() {
            format!("{}:events:{channel}", self.app(app))
        } else {
            format!("{}:events", self.channel(app, channel))
        }
    }

    /// A random value set once per Redis lifetime (tells restarts apart).
    pub fn epoch(&self) -> String {
        format!("{{{}}}:epoch", self.prefix)
    }

    /// Set of node ids that have announced themselves.
    pub fn nodes(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }

    /// A node's heartbeat key (expires when the node stops beating).
    pub fn alive(&self, node: &str) -> String {
        format!("{{{}}}:node:{node}:alive", self.prefix)
    }

    /// Lock taken by the survivor that cleans up a dead node.
    pub fn purge_lock(&self, node: &str) -> String {
        format!("{{{}}}:node:{node}:purge", self.prefix)
    }

    /// Set of an app's presence channels a node has members in.
    pub fn node_presence(&self, app: &str, node: &str) -> String {
        format!("{}:node:{node}:presence", self.app(app))
    }

    /// Hash channel -> subscriber count of one node.
    pub fn subscriptions(&self, app: &str, node: &str) -> String {
        format!("{}:subs:{node}", self.app(app))
    }

    /// A cache channel's last event (for nodes that did not see it published).
    pub fn cached(&self, app: &str, channel: &str) -> String {
        format!("{}:cache", self.channel(app, channel))
    }

    /// The stream of a channel's recent events (polling history).
    pub fn history(&self, app: &str, channel: &str) -> String {
        format!("{}:history", self.channel(app, channel))
    }

    /// The epoch of a history stream's current life (see `scripts::HISTORY`).
    pub fn history_epoch(history: &str) -> String {
        format!("{history}:epoch")
    }

    /// Hash channel -> subscribers on every node, kept by the count
    /// scripts so that occupancy changes are decided once, cluster-wide.
    pub fn occupancy(&self, app: &str) -> String {
        format!("{}:occupancy", self.app(app))
    }

    /// The app's webhook outbox (a stream; one consumer group per URL).
    pub fn webhooks(&self, app: &str) -> String {
        format!("{}:webhooks", self.app(app))
    }

    /// Departure webhooks held back for the debounce delay (sorted set
    /// event JSON -> due time in ms).
    pub fn webhooks_held(&self, app: &str) -> String {
        format!("{}:webhooks:held", self.app(app))
    }

    /// Where the scripts put `app`'s webhooks.
    pub fn hooks(&self, app: &AppConfig) -> Hooks {
        Hooks {
            stream: self.webhooks(&app.id),
            held: self.webhooks_held(&app.id),
            debounce_ms: app.webhook_debounce * 1000,
            max_len: app.webhook_max_pending,
            kinds: app
                .webhooks
                .iter()
                .fold(KindSet::default(), |kinds, w| {
                    kinds.union(KindSet::named(&w.event_types))
                })
                .bits(),
        }
    }

    /// Hash node -> connection count.
    pub fn connections(&self, app: &str) -> String {
        format!("{}:conns", self.app(app))
    }

    /// The keys of one presence channel: user -> total sockets, user ->
    /// user_info, and user -> sockets on `node`.
    pub fn presence(&self, app: &str, channel: &str, node: &str) -> PresenceKeys {
        let base = format!("{}:presence:{channel}", self.app(app));
        PresenceKeys {
            users: format!("{base}:users"),
            info: format!("{base}:info"),
            node: format!("{base}:node:{node}"),
            version: format!("{base}:version"),
        }
    }
}

/// The keys of one presence channel, for one node.
#[derive(Debug, Clone)]
pub struct PresenceKeys {
    pub users: String,
    pub info: String,
    pub node: String,
    /// Counts membership changes: the order every node delivers them in.
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn what_a_script_touches_shares_a_slot() {
        let keys = Keys::new("herald", "n1");
        let slot = |key: &str| Slot::for_key(key);
        // Presence and occupancy scripts: the app's slot, topic included.
        let app = slot(&keys.occupancy("a"));
        let presence = keys.presence("a", "presence-room", "n1");
        for key in [
            &presence.users,
            &presence.info,
            &presence.node,
            &presence.version,
            &keys.node_presence("a", "n1"),
            &keys.subscriptions("a", "n2"),
            &keys.webhooks("a"),
            &keys.webhooks_held("a"),
            &keys.connections("a"),
            &keys.topic("a", "presence-room"),
        ] {
            assert_eq!(slot(key), app, "{key}");
        }
        // A channel's events: its own slot, history and cache with it.
        let history = keys.history("a", "orders");
        let events = slot(&keys.topic("a", "orders"));
        for key in [
            &history,
            &Keys::history_epoch(&history),
            &keys.cached("a", "orders"),
        ] {
            assert_eq!(slot(key), events, "{key}");
        }
        assert_ne!(events, app, "spread apart from the app's state");
        // The node registry shares one slot.
        assert_eq!(slot(&keys.nodes()), slot(&keys.alive("n2")));
        assert_eq!(slot(&keys.nodes()), slot(&keys.epoch()));
    }
}
