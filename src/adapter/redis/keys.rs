//! Names of every Redis key and pub/sub channel Herald uses, in one place.
//!
//! Per-node data lives under keys that name the node, so that a node can
//! rewrite its own share after an outage and survivors can delete a dead
//! node's share without touching anyone else's.

use super::scripts::Hooks;
use crate::config::AppConfig;
use crate::webhooks::KindSet;

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

    /// The pub/sub channel every node subscribes to: what concerns a
    /// whole app rather than one channel (see `relay`).
    pub fn control(&self) -> String {
        format!("{}:relay", self.prefix)
    }

    /// The pub/sub topic of one channel's events, heard only by the nodes
    /// that serve the channel (see `interest`).
    pub fn topic(&self, app: &str, channel: &str) -> String {
        format!("{}:app:{app}:events:{channel}", self.prefix)
    }

    /// A random value set once per Redis lifetime (tells restarts apart).
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Set of node ids that have announced themselves.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// A node's heartbeat key (expires when the node stops beating).
    pub fn alive(&self, node: &str) -> String {
        format!("{}:node:{node}:alive", self.prefix)
    }

    /// Lock taken by the survivor that cleans up a dead node.
    pub fn purge_lock(&self, node: &str) -> String {
        format!("{}:node:{node}:purge", self.prefix)
    }

    /// Set of `app\nchannel` presence channels a node has members in.
    pub fn node_presence(&self, node: &str) -> String {
        format!("{}:node:{node}:presence", self.prefix)
    }

    /// Hash channel -> subscriber count of one node.
    pub fn subscriptions(&self, app: &str, node: &str) -> String {
        format!("{}:app:{app}:subs:{node}", self.prefix)
    }

    /// A cache channel's last event (for nodes that did not see it published).
    pub fn cached(&self, app: &str, channel: &str) -> String {
        format!("{}:app:{app}:cache:{channel}", self.prefix)
    }

    /// The stream of a channel's recent events (polling history).
    pub fn history(&self, app: &str, channel: &str) -> String {
        format!("{}:app:{app}:history:{channel}", self.prefix)
    }

    /// The epoch of a history stream's current life (see `scripts::HISTORY`).
    pub fn history_epoch(history: &str) -> String {
        format!("{history}:epoch")
    }

    /// Hash channel -> subscribers on every node, kept by the count
    /// scripts so that occupancy changes are decided once, cluster-wide.
    pub fn occupancy(&self, app: &str) -> String {
        format!("{}:app:{app}:occupancy", self.prefix)
    }

    /// The app's webhook outbox (a stream; one consumer group per URL).
    pub fn webhooks(&self, app: &str) -> String {
        format!("{}:app:{app}:webhooks", self.prefix)
    }

    /// Departure webhooks held back for the debounce delay (sorted set
    /// event JSON -> due time in ms).
    pub fn webhooks_held(&self, app: &str) -> String {
        format!("{}:app:{app}:webhooks:held", self.prefix)
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
        format!("{}:app:{app}:conns", self.prefix)
    }

    /// The keys of one presence channel: user -> total sockets, user ->
    /// user_info, and user -> sockets on `node`.
    pub fn presence(&self, app: &str, channel: &str, node: &str) -> PresenceKeys {
        let base = format!("{}:app:{app}:presence:{channel}", self.prefix);
        PresenceKeys {
            users: format!("{base}:users"),
            info: format!("{base}:info"),
            node: format!("{base}:node:{node}"),
            version: format!("{base}:version"),
        }
    }

    /// Member of a node's presence set.
    pub fn presence_member(app: &str, channel: &str) -> String {
        format!("{app}\n{channel}")
    }

    /// The inverse of [`Keys::presence_member`].
    pub fn split_presence_member(member: &str) -> Option<(&str, &str)> {
        member.split_once('\n')
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
