//! The recent events of each channel, for the JSON polling endpoint.
//!
//! Each channel keeps at most `max_events` events no older than `max_age`.
//! Ids grow by one per channel; the channel remembers the highest id it has
//! evicted, so a cursor from before that point is answered "too old" instead
//! of silently skipping events.
//!
//! Ids are `{epoch}.{n}`: the epoch is drawn at random when a channel's
//! history starts (after a restart, or after an idle channel's history was
//! swept), so a cursor from an earlier life of the channel is recognised and
//! answered "too old" rather than resumed at the wrong place.

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

#[derive(Debug)]
struct ChannelHistory {
    /// Names this life of the channel's history.
    epoch: u32,
    next_id: u64,
    /// Highest id dropped by a limit (0: none yet).
    evicted_through: u64,
    entries: VecDeque<(Instant, u64, StoredEvent)>,
}

impl ChannelHistory {
    fn new() -> Self {
        ChannelHistory {
            epoch: rand::random(),
            next_id: 0,
            evicted_through: 0,
            entries: VecDeque::new(),
        }
    }

    fn id(&self, n: u64) -> String {
        format!("{:08x}.{n}", self.epoch)
    }

    /// The position a cursor names in this life of the history; `None` for
    /// a cursor of another life (or not one of ours).
    fn position(&self, cursor: &str) -> Option<u64> {
        if cursor == "0" {
            return Some(0);
        }
        let (epoch, n) = cursor.split_once('.')?;
        (u32::from_str_radix(epoch, 16).ok()? == self.epoch)
            .then(|| n.parse().ok())
            .flatten()
    }

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
        let mut history = self
            .channels
            .entry(channel.into())
            .or_insert_with(ChannelHistory::new);
        history.next_id += 1;
        let id = history.next_id;
        let text_id = history.id(id);
        history.entries.push_back((
            now,
            id,
            StoredEvent {
                id: text_id,
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
        // No cursor: a first poll. "0": from the very beginning, of whatever
        // life the history is in (what an empty channel's cursor says).
        let after = after.filter(|c| !c.is_empty());
        let Some(mut history) = self.channels.get_mut(channel) else {
            return match after {
                // A cursor from an earlier life of the channel (before a
                // restart or after its history expired) cannot be resumed.
                Some(cursor) if cursor != "0" => Read::TooOld {
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
        let last_id = history.id(last);
        let after = match after.map(|cursor| history.position(cursor)) {
            None => 0,
            Some(Some(n)) if n <= last && n >= history.evicted_through => n,
            Some(_) => return Read::TooOld { last_id },
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

    /// The positions of the events read (ids without their epoch).
    fn ids(read: Read) -> Vec<String> {
        match read {
            Read::Events { events, .. } => events.into_iter().map(|e| position(&e.id)).collect(),
            Read::TooOld { .. } => panic!("too old"),
        }
    }

    fn position(id: &str) -> String {
        id.split_once('.').map_or(id, |(_, n)| n).to_owned()
    }

    /// A cursor at position `n` of the channel's current life.
    fn cursor(h: &History, channel: &str, n: u64) -> String {
        h.channels.get(channel).expect("channel").id(n)
    }

    /// Too old, with the channel's last position.
    fn too_old(read: Read) -> String {
        match read {
            Read::TooOld { last_id } => position(&last_id),
            Read::Events { .. } => panic!("not too old"),
        }
    }

    #[test]
    fn reads_after_a_cursor_in_order() {
        let h = History::new(10, Duration::from_secs(60));
        for i in 0..3 {
            h.append("c", "e", &i.to_string());
        }
        assert_eq!(ids(h.read("c", None, 100)), ["1", "2", "3"]);
        assert_eq!(ids(h.read("c", Some(&cursor(&h, "c", 1)), 100)), ["2", "3"]);
        assert!(ids(h.read("c", Some(&cursor(&h, "c", 3)), 100)).is_empty());
        assert_eq!(ids(h.read("c", Some("0"), 2)), ["1", "2"]);
    }

    #[test]
    fn evicted_cursors_are_too_old() {
        let h = History::new(2, Duration::from_secs(60));
        for i in 0..5 {
            h.append("c", "e", &i.to_string());
        }
        assert_eq!(ids(h.read("c", Some(&cursor(&h, "c", 3)), 100)), ["4", "5"]);
        assert_eq!(too_old(h.read("c", Some(&cursor(&h, "c", 2)), 100)), "5");
        assert_eq!(too_old(h.read("c", Some(&cursor(&h, "c", 9)), 100)), "5");
        assert_eq!(too_old(h.read("c", Some("x"), 100)), "5");
        assert_eq!(too_old(h.read("c", Some("0"), 100)), "5");
        assert_eq!(too_old(h.read("other", Some("1234abcd.4"), 100)), "0");
    }

    #[test]
    fn a_cursor_from_an_earlier_life_of_the_channel_is_too_old() {
        let h = History::new(10, Duration::from_secs(60));
        for i in 0..5 {
            h.append("c", "e", &i.to_string());
        }
        let old = cursor(&h, "c", 3);
        // The channel's history is swept (or the server restarts), and new
        // events start again at 1: the old cursor must not resume there.
        h.channels.clear();
        for i in 0..7 {
            h.append("c", "e", &i.to_string());
        }
        assert_eq!(too_old(h.read("c", Some(&old), 100)), "7");
    }

    #[test]
    fn old_events_expire() {
        let h = History::new(10, Duration::ZERO);
        h.append("c", "e", "1");
        assert_eq!(too_old(h.read("c", Some("0"), 100)), "1");
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
