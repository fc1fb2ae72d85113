//! A fixed one-second window for client events on one connection
//! (Pusher's rule). The budget for every inbound frame is a
//! [`TokenBucket`](crate::support::rate::TokenBucket).

use std::time::{Duration, Instant};

/// Allows `limit` events per second; a limit of 0 allows everything.
#[derive(Debug)]
pub(super) struct RateLimit {
    limit: u32,
    window_start: Instant,
    used: u32,
}

impl RateLimit {
    pub(super) fn per_second(limit: u32) -> Self {
        RateLimit {
            limit,
            window_start: Instant::now(),
            used: 0,
        }
    }

    /// Counts one event; false when the window's budget is spent.
    pub(super) fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.used = 0;
        }
        if self.used < self.limit {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_limit_per_window() {
        let start = Instant::now();
        let mut r = RateLimit::per_second(2);
        r.window_start = start;
        assert!(r.allow_at(start));
        assert!(r.allow_at(start));
        assert!(!r.allow_at(start + Duration::from_millis(500)));
        assert!(r.allow_at(start + Duration::from_millis(1000)));
        let mut unlimited = RateLimit::per_second(0);
        assert!((0..1000).all(|_| unlimited.allow_at(start)));
    }
}
