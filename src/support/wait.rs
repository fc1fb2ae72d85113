//! Waiting for a condition that another task announces with
//! `Notify::notify_waiters`, without missing an announcement made between
//! the check and the wait, and a generation counter built on it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Waits until `check` yields a value, re-checking after every
/// notification. The waiter registers *before* each check, so a
/// notification sent in between still wakes it.
pub async fn until<T>(notify: &Notify, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(value) = check() {
            return value;
        }
        notified.await;
    }
}

/// A counter that waiters can watch for a change: "something happened
/// since I last looked". Advancing it costs an atomic add, plus a wake-up
/// only while someone waits.
#[derive(Debug, Default)]
pub struct Generation {
    value: AtomicU64,
    waiters: AtomicUsize,
    changed: Notify,
}

impl Generation {
    /// The current value; read it before looking at the guarded state.
    pub fn current(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Moves to the next value and wakes the waiters; returns the new value.
    pub fn advance(&self) -> u64 {
        let next = self.value.fetch_add(1, Ordering::AcqRel) + 1;
        if self.waiters.load(Ordering::Acquire) > 0 {
            self.changed.notify_waiters();
        }
        next
    }

    /// Resolves once the value differs from `seen`.
    pub async fn changed_from(&self, seen: u64) {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let _done = Decrement(&self.waiters);
        until(&self.changed, || (self.current() != seen).then_some(())).await;
    }

    /// Like [`Generation::changed_from`], giving up at `deadline`; true
    /// when the value changed.
    pub async fn changed_before(&self, seen: u64, deadline: Instant) -> bool {
        tokio::time::timeout_at(deadline, self.changed_from(seen))
            .await
            .is_ok()
    }
}

/// Undoes a waiter count however the wait ends (completed or dropped).
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_change_wakes_a_waiter_and_no_change_times_out() {
        let generation = Arc::new(Generation::default());
        let seen = generation.current();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(!generation.changed_before(seen, deadline).await);
        let waiter = {
            let generation = generation.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                generation.changed_before(seen, deadline).await
            })
        };
        tokio::task::yield_now().await;
        generation.advance();
        assert!(waiter.await.expect("joined"));
        // A change made before the wait began is seen at once.
        assert!(generation.changed_before(seen, Instant::now()).await);
    }
}
