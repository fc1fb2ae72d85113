//! The recent events of each channel, for the JSON polling endpoint.
//!
//! Each channel keeps at most `max_events` events no older than `max_age`.
//! Ids grow by one per channel; the channel remembers the highest id it has
//! evicted, so a cursor from before that point is answered "too old" instead
//! of silently skipping events.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;

/// One stored event, as pollers receive it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the channel's history (opaque to clients).
    pub id: String,
    pub channel: String,
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
struct ChannelHistory {
    next_id: u64,
    /// Highest id dropped by a limit (0: none yet).
    evicted_through: u64,
    entries: VecDeque<(Instant, u64, StoredEvent)>,
}

impl ChannelHistory {
    fn trim(&mut self, max_events: usize, oldest: Instant) {
        while self.entries.len() > max_events
            || self.entries.front().is_some_and(|(at, _, _)| *at < oldest)
        {
            if let Some((_, id, _)) = self.entries.pop_front() {
                self.evicted_through = id;
            }
        }
    }
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Events after the cursor, oldest first, and the channel's latest id.
    Events {
        events: Vec<StoredEvent>,
        last_id: String,
    },
    /// Events after the cursor were already dropped; the client must resync
    /// from `last_id`.
    TooOld { last_id: String },
}

/// Per-channel histories of one app.
#[derive(Debug)]
pub struct History {
    channels: DashMap<Box<str>, ChannelHistory>,
    max_events: usize,
    max_age: Duration,
}

impl History {
    /// `max_events` 0 disables history.
    pub fn new(max_events: usize, max_age: Duration) -> Self {
        History {
            channels: DashMap::new(),
            max_events,
            max_age,
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_events > 0
    }

    /// Appends an event; returns its id.
    pub fn append(&self, channel: &str, event: &str, data: &str) -> u64 {
        if !self.enabled() {
            return 0;
        }
        let now = Instant::now();
        let mut history = self.channels.entry(channel.into()).or_default();
        history.next_id += 1;
        let id = history.next_id;
        history.entries.push_back((
            now,
            id,
            StoredEvent {
                id: id.to_string(),
                channel: channel.to_owned(),
                event: event.to_owned(),
                data: data.to_owned(),
            },
        ));
        history.trim(
            self.max_events,
            now.checked_sub(self.max_age).unwrap_or(now),
        );
        id
    }

    /// Events of `channel` after the cursor `after` (all retained ones when
    /// `None`, i.e. a first poll), up to `limit`. A cursor that is not one
    /// of ours is too old.
    pub fn read(&self, channel: &str, after: Option<&str>, limit: usize) -> Read {
        let after = match after.map(str::parse::<u64>) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => Some(u64::MAX),
        };
        let Some(mut history) = self.channels.get_mut(channel) else {
            return match after {
                // A cursor from an earlier life of the channel (before a
                // restart or after its history expired) cannot be resumed.
                Some(cursor) if cursor > 0 => Read::TooOld {
                    last_id: "0".into(),
                },
                _ => Read::Events {
                    events: Vec::new(),
                    last_id: "0".into(),
                },
            };
        };
        let now = Instant::now();
        history.trim(
            self.max_events,
            now.checked_sub(self.max_age).unwrap_or(now),
        );
        let last = history.next_id;
        let last_id = last.to_string();
        let after = match after {
            Some(cursor) if cursor > last || cursor < history.evicted_through => {
                return Read::TooOld { last_id };
            }
            Some(cursor) => cursor,
            None => 0,
        };
        let events = history
            .entries
            .iter()
            .filter(|(_, id, _)| *id > after)
            .take(limit)
            .map(|(_, _, e)| e.clone())
            .collect();
        Read::Events { events, last_id }
    }

    /// Drops expired events and empty channels (run periodically).
    pub fn sweep(&self) {
        let now = Instant::now();
        let oldest = now.checked_sub(self.max_age).unwrap_or(now);
        self.channels.retain(|_, h| {
            h.trim(self.max_events, oldest);
            !h.entries.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(read: Read) -> Vec<String> {
        match read {
            Read::Events { events, .. } => events.into_iter().map(|e| e.id).collect(),
            Read::TooOld { .. } => panic!("too old"),
        }
    }

    fn too_old(last: &str) -> Read {
        Read::TooOld {
            last_id: last.into(),
        }
    }

    #[test]
    fn reads_after_a_cursor_in_order() {
        let h = History::new(10, Duration::from_secs(60));
        for i in 0..3 {
            h.append("c", "e", &i.to_string());
        }
        assert_eq!(ids(h.read("c", None, 100)), ["1", "2", "3"]);
        assert_eq!(ids(h.read("c", Some("1"), 100)), ["2", "3"]);
        assert!(ids(h.read("c", Some("3"), 100)).is_empty());
        assert_eq!(ids(h.read("c", Some("0"), 2)), ["1", "2"]);
    }

    #[test]
    fn evicted_cursors_are_too_old() {
        let h = History::new(2, Duration::from_secs(60));
        for i in 0..5 {
            h.append("c", "e", &i.to_string());
        }
        assert_eq!(ids(h.read("c", Some("3"), 100)), ["4", "5"]);
        assert_eq!(h.read("c", Some("2"), 100), too_old("5"));
        assert_eq!(h.read("c", Some("9"), 100), too_old("5"));
        assert_eq!(h.read("c", Some("x"), 100), too_old("5"));
        assert_eq!(h.read("other", Some("4"), 100), too_old("0"));
    }

    #[test]
    fn old_events_expire() {
        let h = History::new(10, Duration::ZERO);
        h.append("c", "e", "1");
        assert_eq!(h.read("c", Some("0"), 100), too_old("1"));
        h.sweep();
        assert!(h.channels.is_empty());
    }

    #[test]
    fn disabled_history_stores_nothing() {
        let h = History::new(0, Duration::from_secs(60));
        h.append("c", "e", "1");
        assert!(h.channels.is_empty());
    }
}
