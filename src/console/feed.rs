//! What a live console sees of one app: a broadcast of small JSON events
//! (connections, subscriptions, published and client events, webhooks).
//! Reporting costs one atomic read while no console is open: nothing is
//! built unless somebody listens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::support::clock::unix_millis;

/// Events kept for a console that reads slowly; beyond, it is told how
/// many it missed.
const BACKLOG: usize = 1024;

/// One app's console feed.
#[derive(Debug)]
pub struct Feed {
    sender: broadcast::Sender<Arc<str>>,
    /// Open consoles: an atomic, because the hot paths read it (the
    /// channel's own receiver count takes a lock).
    listeners: Arc<AtomicUsize>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            sender: broadcast::channel(BACKLOG).0,
            listeners: Arc::default(),
        }
    }
}

/// One open console's view of the feed.
pub struct Listener {
    pub events: broadcast::Receiver<Arc<str>>,
    listeners: Arc<AtomicUsize>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Feed {
    /// Whether a console is open on this app.
    pub fn watched(&self) -> bool {
        self.listeners.load(Ordering::Acquire) > 0
    }

    /// Reports an event line (stamped with the time), if a console
    /// watches.
    pub fn report(&self, mut event: Value) {
        if !self.watched() {
            return;
        }
        event["time_ms"] = Value::from(unix_millis());
        let _ = self.sender.send(event.to_string().into());
    }

    pub fn listen(&self) -> Listener {
        self.listeners.fetch_add(1, Ordering::AcqRel);
        Listener {
            events: self.sender.subscribe(),
            listeners: self.listeners.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_and_a_closed_console_stops_the_feed() {
        let feed = Feed::default();
        let mut console = feed.listen();
        feed.report(serde_json::json!({"type": "x"}));
        let got = console.events.try_recv().expect("an event");
        assert!(
            got.contains(r#""type":"x""#) && got.contains("time_ms"),
            "{got}"
        );
        drop(console);
        assert!(!feed.watched(), "a closed console stops the reporting");
    }
}
