//! Whether the relay subscription hears: echoes a node sends itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether this node's relay subscription is up and still hearing: a
/// subscription can look open while nothing arrives (a half-open
/// connection), so the node sends itself an echo every heartbeat and
/// counts the relay as alive only while echoes come back.
#[derive(Debug)]
pub struct RelayHealth {
    pub(super) subscribed: AtomicBool,
    /// When the last echo came back.
    last_echo: std::sync::Mutex<Option<std::time::Instant>>,
    /// Asks the subscriber to drop its connection and subscribe again.
    pub(super) reconnect: tokio::sync::Notify,
}

impl Default for RelayHealth {
    fn default() -> Self {
        RelayHealth {
            subscribed: AtomicBool::new(false),
            last_echo: std::sync::Mutex::new(None),
            reconnect: tokio::sync::Notify::new(),
        }
    }
}

impl RelayHealth {
    pub(super) fn echoed(&self) {
        *self.last_echo.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// Subscribed, and an echo came back within `within`.
    pub fn alive(&self, within: Duration) -> bool {
        self.subscribed.load(Ordering::Acquire)
            && self
                .last_echo
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|at| at.elapsed() <= within)
    }

    /// Whether the subscription is up (whatever it hears).
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Makes the subscriber reconnect (its echoes stopped coming back).
    pub fn force_reconnect(&self) {
        self.reconnect.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_is_alive_only_while_its_echoes_come_back() {
        let health = RelayHealth::default();
        assert!(!health.alive(Duration::from_secs(3)), "not subscribed yet");
        health.subscribed.store(true, Ordering::Release);
        health.echoed();
        assert!(health.alive(Duration::from_secs(3)));
        *health.last_echo.lock().expect("lock") =
            std::time::Instant::now().checked_sub(Duration::from_secs(10));
        assert!(!health.alive(Duration::from_secs(3)));
    }
}
