//! An app's HTTP API budget on this node: events triggered and read
//! requests per second (`max_backend_events_per_second`,
//! `max_read_requests_per_second`). Token buckets holding one second's
//! worth; a rate changed by a reload starts a fresh bucket.

use std::sync::Mutex;

use crate::support::rate::TokenBucket;

/// The two budgets of one app.
#[derive(Debug, Default)]
pub struct ApiBudget {
    events: Mutex<Option<TokenBucket>>,
    reads: Mutex<Option<TokenBucket>>,
}

impl ApiBudget {
    /// Takes `n` events at `rate` per second (0: unlimited).
    pub fn take_events(&self, n: u32, rate: u32) -> bool {
        take(&self.events, n, rate)
    }

    /// Takes one read request at `rate` per second (0: unlimited).
    pub fn take_read(&self, rate: u32) -> bool {
        take(&self.reads, 1, rate)
    }
}

fn take(slot: &Mutex<Option<TokenBucket>>, n: u32, rate: u32) -> bool {
    if rate == 0 {
        return true;
    }
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    let bucket = match slot.as_mut() {
        Some(bucket) if bucket.rate() == rate => bucket,
        _ => slot.insert(TokenBucket::new(rate, rate)),
    };
    bucket.take_n(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_worth_then_nothing_and_a_new_rate_starts_afresh() {
        let budget = ApiBudget::default();
        assert!(budget.take_events(3, 5));
        assert!(budget.take_events(2, 5));
        assert!(!budget.take_events(1, 5), "spent");
        assert!(budget.take_events(1, 10), "a reload's new rate");
        assert!(budget.take_events(1000, 0), "unlimited");
        assert!(
            !budget.take_events(11, 10),
            "more than a second's worth at once"
        );
        assert!(budget.take_read(1));
        assert!(!budget.take_read(1));
    }
}
