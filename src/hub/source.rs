//! Where the hub finds an app it does not hold: with an app store, a key
//! or id not in memory may be an app created since the last refresh. The
//! store's side (`catalog`) registers itself here, so that the transports
//! and the HTTP API, which stand below it, can ask.

use std::sync::{Arc, OnceLock, Weak};

use futures_util::future::BoxFuture;

/// Finds apps the hub does not hold yet, and hears of changes.
pub trait AppSource: Send + Sync {
    /// Looks for the app with this key and, if it exists, adds it to the
    /// hub before the future resolves.
    fn find_key<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;
    /// The same by app id.
    fn find_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
    /// Another node changed app `id` in the store: read it again.
    fn changed(&self, id: &str);
    /// Whether the store answers (`/ready` says `degraded` otherwise).
    fn healthy(&self) -> bool;
}

/// The registered source, if any (weak: the source holds the hub).
#[derive(Default)]
pub struct Source(OnceLock<Weak<dyn AppSource>>);

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Source(store)"
        } else {
            "Source(none)"
        })
    }
}

impl Source {
    pub fn set(&self, source: &Arc<dyn AppSource>) {
        let _ = self.0.set(Arc::downgrade(source));
    }

    pub fn get(&self) -> Option<Arc<dyn AppSource>> {
        self.0.get().and_then(Weak::upgrade)
    }
}
