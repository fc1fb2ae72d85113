//! A token bucket: a burst, then a sustained rate. Used for each
//! connection's inbound frames and for new HTTP sessions per address.

use std::time::Instant;

/// A token bucket: `burst` tokens, refilled at `rate` per second; a rate
/// of 0 allows everything.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            refilled: Instant::now(),
        }
    }

    /// Takes one token; false when none is left.
    pub fn take(&mut self) -> bool {
        self.take_n_at(1, Instant::now())
    }

    /// Takes `n` tokens at once, or none (false) when fewer are left.
    pub fn take_n(&mut self, n: u32) -> bool {
        self.take_n_at(n, Instant::now())
    }

    #[cfg(test)]
    fn take_at(&mut self, now: Instant) -> bool {
        self.take_n_at(1, now)
    }

    fn take_n_at(&mut self, n: u32, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        let wanted = f64::from(n);
        if self.tokens >= wanted {
            self.tokens -= wanted;
            true
        } else {
            false
        }
    }

    /// The sustained rate it was made with (per second).
    pub fn rate(&self) -> u32 {
        self.rate as u32
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
