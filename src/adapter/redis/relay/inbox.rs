//! The byte budget between the Redis connection and the relay task:
//! redis-rs hands pushes over without a bound of its own, so the relay
//! counts what waits and drops beyond it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tracing::warn;

use crate::metrics::METRICS;

/// Most bytes of relay messages received and not yet applied. Beyond it,
/// messages are dropped (counted and logged): a node that cannot keep up
/// loses publications rather than memory, and presence rosters converge
/// again within two heartbeats (`node::converge`).
pub(super) const INBOX_BYTES: usize = 64 << 20;

/// The bytes waiting between the Redis connection and the relay task.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    queued: AtomicUsize,
    dropped: AtomicU64,
}

impl Inbox {
    /// Takes `size` more bytes if they fit.
    pub(super) fn admit(&self, size: usize, limit: usize) -> bool {
        let mut queued = self.queued.load(Ordering::Acquire);
        loop {
            if queued + size > limit {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                METRICS.relay_dropped.inc();
                if dropped.is_power_of_two() {
                    warn!(
                        dropped,
                        "cluster relay is behind: {limit} bytes waiting; dropping relay messages"
                    );
                }
                return false;
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + size,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => queued = now,
            }
        }
    }

    pub(super) fn taken(&self, size: usize) {
        self.queued.fetch_sub(size, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_holds_a_bounded_number_of_bytes() {
        let inbox = Inbox::default();
        assert!(inbox.admit(600, 1000));
        assert!(inbox.admit(400, 1000));
        assert!(!inbox.admit(1, 1000), "full");
        assert_eq!(inbox.dropped.load(Ordering::Relaxed), 1);
        inbox.taken(600);
        assert!(inbox.admit(500, 1000));
    }
}
