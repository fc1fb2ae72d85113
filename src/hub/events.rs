//! What happens in an app, as typed events, and the observers that report
//! it: the one seam through which the console and the webhooks learn of
//! connections, subscriptions, events and membership.
//!
//! The hub and the layers above it say *what* happened ([`AppEvent`]);
//! each observer decides what to build of it (a console line, a webhook
//! event) and when. Events only borrow, and an observer that does not want
//! a kind is asked with one atomic read ([`Observer::wants`]), so reporting
//! costs nothing while nobody observes. Per-frame counters are not events:
//! they stay direct atomic adds (`crate::metrics::AppMetrics`).
//!
//! Why observers and not one channel: the two consumers want different
//! things. Webhooks need a bounded queue whose losses are counted per app;
//! the console wants a lossy broadcast. Each policy stays with its owner.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::Transport;
use crate::protocol::{Close, SocketId};

/// One thing that happened in an app.
#[derive(Debug, Clone, Copy)]
pub enum AppEvent<'a> {
    ConnectionOpened {
        socket: SocketId,
        transport: Transport,
    },
    /// A connection to the app was refused before it opened (`reason`:
    /// the `herald_refused_total` label, `code`: the close code).
    ConnectionRefused {
        transport: Transport,
        reason: &'a str,
        code: u16,
    },
    /// `close`: what Herald closed it with (`None`: the client left).
    ConnectionClosed {
        socket: SocketId,
        transport: Transport,
        close: Option<Close>,
    },
    Subscribed {
        socket: SocketId,
        channel: &'a str,
        user_id: Option<&'a str>,
    },
    SubscriptionRefused {
        socket: SocketId,
        channel: &'a str,
        reason: &'a str,
    },
    /// `reason`: why, when the client did not ask for it.
    Unsubscribed {
        socket: SocketId,
        channel: &'a str,
        user_id: Option<&'a str>,
        reason: Option<&'a str>,
    },
    ClientEvent {
        socket: SocketId,
        channel: &'a str,
        event: &'a str,
        data: &'a str,
        user_id: Option<&'a str>,
    },
    ApiEvent {
        channels: &'a [String],
        event: &'a str,
        data: &'a str,
    },
    /// A subscriber of a cache channel found no cached event.
    CacheMiss {
        channel: &'a str,
    },
    /// The channel's first subscriber came (cluster-wide where decided so).
    Occupied {
        channel: &'a str,
    },
    /// The channel's last subscriber left.
    Vacated {
        channel: &'a str,
    },
    MemberAdded {
        channel: &'a str,
        user_id: &'a str,
    },
    MemberRemoved {
        channel: &'a str,
        user_id: &'a str,
    },
    SubscriptionCount {
        channel: &'a str,
        count: usize,
    },
    /// A webhook request ended: `outcome` is `delivered` or `dropped`.
    WebhookOutcome {
        url: &'a str,
        events: &'a [&'a str],
        outcome: &'a str,
        attempts: u32,
    },
}

/// The kinds of [`AppEvent`], for [`Observer::wants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ConnectionOpened,
    ConnectionRefused,
    ConnectionClosed,
    Subscribed,
    SubscriptionRefused,
    Unsubscribed,
    ClientEvent,
    ApiEvent,
    CacheMiss,
    Occupied,
    Vacated,
    MemberAdded,
    MemberRemoved,
    SubscriptionCount,
    WebhookOutcome,
}

impl AppEvent<'_> {
    pub fn kind(&self) -> EventKind {
        match self {
            AppEvent::ConnectionOpened { .. } => EventKind::ConnectionOpened,
            AppEvent::ConnectionRefused { .. } => EventKind::ConnectionRefused,
            AppEvent::ConnectionClosed { .. } => EventKind::ConnectionClosed,
            AppEvent::Subscribed { .. } => EventKind::Subscribed,
            AppEvent::SubscriptionRefused { .. } => EventKind::SubscriptionRefused,
            AppEvent::Unsubscribed { .. } => EventKind::Unsubscribed,
            AppEvent::ClientEvent { .. } => EventKind::ClientEvent,
            AppEvent::ApiEvent { .. } => EventKind::ApiEvent,
            AppEvent::CacheMiss { .. } => EventKind::CacheMiss,
            AppEvent::Occupied { .. } => EventKind::Occupied,
            AppEvent::Vacated { .. } => EventKind::Vacated,
            AppEvent::MemberAdded { .. } => EventKind::MemberAdded,
            AppEvent::MemberRemoved { .. } => EventKind::MemberRemoved,
            AppEvent::SubscriptionCount { .. } => EventKind::SubscriptionCount,
            AppEvent::WebhookOutcome { .. } => EventKind::WebhookOutcome,
        }
    }
}

/// Something that reports an app's events (the console, the webhooks).
/// Both methods are called on the thread where the event happened, often
/// with a channel's lock held: they must not block.
pub trait Observer: Send + Sync {
    /// Whether events of `kind` are wanted now; cheap (one atomic read).
    fn wants(&self, kind: EventKind) -> bool;
    /// Reports one wanted event.
    fn observe(&self, event: &AppEvent<'_>);
}

/// Which observer an attachment is: one of each per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObserverSlot {
    Console,
    Webhooks,
}

/// An app's observers, replaced as a whole when one is attached or
/// detached (start-up and reload), read lock-free on every emit.
#[derive(Default)]
pub struct Observers {
    list: ArcSwap<Vec<(ObserverSlot, Arc<dyn Observer>)>>,
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots: Vec<ObserverSlot> = self.list.load().iter().map(|(s, _)| *s).collect();
        f.debug_struct("Observers").field("slots", &slots).finish()
    }
}

impl Observers {
    /// Puts `observer` in `slot`, replacing what was there.
    pub fn attach(&self, slot: ObserverSlot, observer: Arc<dyn Observer>) {
        self.list.rcu(|list| {
            let mut next: Vec<_> = list.iter().filter(|(s, _)| *s != slot).cloned().collect();
            next.push((slot, observer.clone()));
            next
        });
    }

    /// Empties `slot`.
    pub fn detach(&self, slot: ObserverSlot) {
        self.list.rcu(|list| {
            list.iter()
                .filter(|(s, _)| *s != slot)
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Whether any observer wants events of `kind` now.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.list.load().iter().any(|(_, o)| o.wants(kind))
    }

    /// Reports `event` to every observer that wants it.
    pub fn emit(&self, event: AppEvent<'_>) {
        let list = self.list.load();
        if list.is_empty() {
            return;
        }
        let kind = event.kind();
        for (_, observer) in list.iter() {
            if observer.wants(kind) {
                observer.observe(&event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting {
        on: AtomicBool,
        seen: AtomicUsize,
    }

    impl Observer for Counting {
        fn wants(&self, kind: EventKind) -> bool {
            self.on.load(Ordering::Relaxed) && kind == EventKind::CacheMiss
        }
        fn observe(&self, _: &AppEvent<'_>) {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn only_wanted_events_reach_an_observer_and_slots_replace() {
        let observers = Observers::default();
        let first = Arc::new(Counting::default());
        observers.attach(ObserverSlot::Console, first.clone());
        observers.emit(AppEvent::CacheMiss { channel: "c" });
        assert_eq!(first.seen.load(Ordering::Relaxed), 0, "not wanted yet");
        first.on.store(true, Ordering::Relaxed);
        observers.emit(AppEvent::Occupied { channel: "c" });
        observers.emit(AppEvent::CacheMiss { channel: "c" });
        assert_eq!(first.seen.load(Ordering::Relaxed), 1);
        assert!(observers.wants(EventKind::CacheMiss));

        let second = Arc::new(Counting::default());
        second.on.store(true, Ordering::Relaxed);
        observers.attach(ObserverSlot::Console, second.clone());
        observers.emit(AppEvent::CacheMiss { channel: "c" });
        assert_eq!(first.seen.load(Ordering::Relaxed), 1, "replaced");
        assert_eq!(second.seen.load(Ordering::Relaxed), 1);
        observers.detach(ObserverSlot::Console);
        assert!(!observers.wants(EventKind::CacheMiss));
    }
}
