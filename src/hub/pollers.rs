//! Long-poll wake-ups: per channel that has long-polls waiting, a
//! generation that is advanced when an event is recorded there, so only
//! that channel's pollers wake.

use std::sync::Arc;

use dashmap::DashMap;

use crate::support::wait::Generation;

/// The wake-up state of one app's polled channels.
#[derive(Debug, Default)]
pub(super) struct Pollers {
    recorded: DashMap<Box<str>, Arc<Generation>>,
}

impl Pollers {
    /// An event was recorded on `channel`: wakes its long-polls (a map
    /// lookup when none wait).
    pub(super) fn notify(&self, channel: &str) {
        if let Some(generation) = self.recorded.get(channel) {
            generation.advance();
        }
    }

    /// What a long-poll watches: each channel's generation, read before
    /// the histories are, so an event recorded in between is not missed.
    pub(super) fn watch(&self, channels: &[String]) -> Vec<(Arc<Generation>, u64)> {
        channels
            .iter()
            .map(|channel| {
                let generation = self
                    .recorded
                    .entry(channel.as_str().into())
                    .or_default()
                    .clone();
                let seen = generation.current();
                (generation, seen)
            })
            .collect()
    }

    /// Whether a long-poll waits on `channel` now. (Held generations are
    /// the waiting polls: the map's own reference is the one extra.)
    pub(super) fn is_polled(&self, channel: &str) -> bool {
        self.recorded
            .get(channel)
            .is_some_and(|generation| Arc::strong_count(&generation) > 1)
    }

    /// Forgets the wake-up state of channels nobody polls.
    pub(super) fn sweep(&self) {
        self.recorded
            .retain(|_, generation| Arc::strong_count(generation) > 1);
    }
}

/// Waits until an event is recorded on a watched channel, or until
/// `deadline`; true when an event came.
pub(super) async fn wait_for_event(
    watched: &[(Arc<Generation>, u64)],
    deadline: tokio::time::Instant,
) -> bool {
    let changes = watched
        .iter()
        .map(|(generation, seen)| Box::pin(generation.changed_from(*seen)));
    tokio::time::timeout_at(deadline, futures_util::future::select_all(changes))
        .await
        .is_ok()
}
