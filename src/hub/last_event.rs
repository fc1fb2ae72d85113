//! The last event of each cache channel on this node, kept for its TTL and
//! sent to each new subscriber.

use std::time::{Duration, Instant};

use bytestring::ByteString;
use dashmap::DashMap;

/// The last event of a cache channel.
#[derive(Debug)]
struct CachedEvent {
    frame: ByteString,
    expires: Instant,
}

/// One app's cached events.
#[derive(Debug, Default)]
pub(super) struct LastEvents {
    events: DashMap<Box<str>, CachedEvent>,
}

impl LastEvents {
    /// Keeps `frame` as the channel's last event for `ttl`.
    pub(super) fn store(&self, name: &str, frame: ByteString, ttl: Duration) {
        let expires = Instant::now() + ttl;
        self.events
            .insert(name.into(), CachedEvent { frame, expires });
    }

    pub(super) fn forget(&self, name: &str) {
        self.events.remove(name);
    }

    /// The channel's cached event, if it has not expired.
    pub(super) fn get(&self, name: &str) -> Option<ByteString> {
        let entry = self.events.get(name)?;
        (entry.expires > Instant::now()).then(|| entry.frame.clone())
    }

    /// Drops expired events.
    pub(super) fn sweep(&self) {
        let now = Instant::now();
        self.events.retain(|_, e| e.expires > now);
    }
}
