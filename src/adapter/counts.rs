//! When `pusher_internal:subscription_count` goes out: on every change up to
//! [`THROTTLE_ABOVE`] subscribers, and above that at most once per
//! [`INTERVAL`] (as Pusher does), so a crowd joining does not cost a
//! message to everyone per arrival. One rule for one node and a cluster.

use std::time::{Duration, Instant};

pub const THROTTLE_ABOVE: usize = 100;
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Whether a count of `subscribers` is announced now; updates `last_sent`.
pub fn throttle_count(subscribers: usize, last_sent: &mut Option<Instant>, now: Instant) -> bool {
    let recent = last_sent.is_some_and(|at| now.duration_since(at) < INTERVAL);
    if subscribers > THROTTLE_ABOVE && recent {
        return false;
    }
    *last_sent = Some(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_below_the_threshold_then_one_per_interval() {
        let start = Instant::now();
        let mut last = None;
        assert!((1..=THROTTLE_ABOVE).all(|n| throttle_count(n, &mut last, start)));
        assert!(!throttle_count(THROTTLE_ABOVE + 1, &mut last, start));
        assert!(!throttle_count(
            THROTTLE_ABOVE + 2,
            &mut last,
            start + INTERVAL / 2
        ));
        assert!(throttle_count(
            THROTTLE_ABOVE + 2,
            &mut last,
            start + INTERVAL
        ));
        // Shrinking below the threshold is announced at once.
        assert!(throttle_count(THROTTLE_ABOVE, &mut last, start + INTERVAL));
    }
}
