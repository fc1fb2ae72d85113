//! Per-connection budgets for what a client sends: a fixed one-second
//! window for client events (Pusher's rule), and a token bucket for every
//! inbound frame (a burst, then a sustained rate).

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

/// A token bucket: `burst` tokens, refilled at `rate` per second; a rate
/// of 0 allows everything.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            refilled: Instant::now(),
        }
    }

    /// Takes one token; false when none is left.
    pub(crate) fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10, 5);
        b.refilled = start;
        assert!((0..5).all(|_| b.take_at(start)));
        assert!(!b.take_at(start));
        // 100 ms refill one token at 10/s.
        assert!(b.take_at(start + Duration::from_millis(100)));
        assert!(!b.take_at(start + Duration::from_millis(100)));
        // Never more than the burst, however long it was quiet.
        let later = start + Duration::from_secs(60);
        assert!((0..5).all(|_| b.take_at(later)));
        assert!(!b.take_at(later));
        let mut unlimited = TokenBucket::new(0, 0);
        assert!((0..10_000).all(|_| unlimited.take_at(start)));
    }
}
