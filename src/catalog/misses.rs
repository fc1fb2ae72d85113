//! Lookups of keys and ids the node does not hold, made once: concurrent
//! askers for one key share one query, an unknown key is remembered as
//! unknown for a while, and the node makes at most `QUERIES_PER_SECOND`
//! such queries, so neither a flood of one bad key nor of many different
//! ones reaches the database beyond that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Lookups of unknown keys or ids the node sends the database per second
/// at most; beyond it an unknown key is refused without asking.
pub const QUERIES_PER_SECOND: u32 = 100;

/// Keys and ids remembered at most (those pending and those unknown).
const MAX_ENTRIES: usize = 10_000;

enum Entry {
    /// A query is under way; its sender says `true` when it is done.
    Pending(watch::Receiver<bool>),
    /// Not in the store as of this instant.
    Absent(Instant),
}

/// What the caller of [`Misses::begin`] should do.
pub enum Begin {
    /// Ask the database, then call [`Misses::finish`] with the sender.
    Query(watch::Sender<bool>),
    /// Another caller is asking: wait for it.
    Wait(watch::Receiver<bool>),
    /// Known to be unknown, or over the budget: give up.
    Unknown,
}

pub struct Misses {
    entries: Mutex<HashMap<String, Entry>>,
    remember: Duration,
    /// The second the budget counts in, and the queries made in it.
    budget: Mutex<(Instant, u32)>,
}

impl Misses {
    pub fn new(remember: Duration) -> Misses {
        Misses {
            entries: Mutex::new(HashMap::new()),
            remember,
            budget: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Starts a lookup of `name` (`k:<key>` or `i:<id>`).
    pub fn begin(&self, name: &str) -> Begin {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(name) {
            Some(Entry::Pending(done)) => return Begin::Wait(done.clone()),
            Some(Entry::Absent(at)) if at.elapsed() < self.remember => return Begin::Unknown,
            _ => {}
        }
        if entries.len() >= MAX_ENTRIES {
            let remember = self.remember;
            entries.retain(|_, e| match e {
                Entry::Pending(_) => true,
                Entry::Absent(at) => at.elapsed() < remember,
            });
            if entries.len() >= MAX_ENTRIES {
                return Begin::Unknown;
            }
        }
        if !self.take_budget() {
            crate::metrics::refused("app_store_lookups");
            return Begin::Unknown;
        }
        let (sender, receiver) = watch::channel(false);
        entries.insert(name.to_owned(), Entry::Pending(receiver));
        Begin::Query(sender)
    }

    /// Ends a lookup: `found` forgets the name, otherwise it is remembered
    /// as unknown; the waiters are woken.
    pub fn finish(&self, name: &str, found: bool, done: watch::Sender<bool>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if found {
            entries.remove(name);
        } else {
            entries.insert(name.to_owned(), Entry::Absent(Instant::now()));
        }
        drop(entries);
        let _ = done.send(true);
    }

    /// Forgets that `name` was unknown (it was just created).
    pub fn forget(&self, name: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(entries.get(name), Some(Entry::Absent(_))) {
            entries.remove(name);
        }
    }

    fn take_budget(&self) -> bool {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        if budget.0.elapsed() >= Duration::from_secs(1) {
            *budget = (Instant::now(), 0);
        }
        if budget.1 >= QUERIES_PER_SECOND {
            return false;
        }
        budget.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_per_unknown_name_while_it_is_remembered() {
        let misses = Misses::new(Duration::from_secs(60));
        let Begin::Query(done) = misses.begin("k:a") else {
            panic!("first asks");
        };
        assert!(
            matches!(misses.begin("k:a"), Begin::Wait(_)),
            "second waits"
        );
        misses.finish("k:a", false, done);
        assert!(matches!(misses.begin("k:a"), Begin::Unknown), "remembered");
        misses.forget("k:a");
        assert!(matches!(misses.begin("k:a"), Begin::Query(_)), "forgotten");
    }

    #[test]
    fn the_budget_caps_queries_of_different_names() {
        let misses = Misses::new(Duration::from_secs(60));
        let asked = (0..QUERIES_PER_SECOND * 2)
            .filter(|i| matches!(misses.begin(&format!("k:{i}")), Begin::Query(_)))
            .count();
        assert_eq!(asked, QUERIES_PER_SECOND as usize);
    }
}
