//! Webhooks: Pusher's seven events, POSTed signed to each app's URLs.
//!
//! Events are reported where they happen (the rules for occupancy and
//! membership on a single node, the adapter for client events, the hub for
//! cache misses, Redis scripts for occupancy and membership in a cluster)
//! to the app's observers; the app's [`Sink`] is the webhook observer,
//! which never waits. Delivery runs on its own
//! thread, so a slow or dead endpoint cannot slow client traffic:
//!
//! * single node (`local`): one task per app holds departures back
//!   (`debounce`) and hands events to one bounded queue per URL, whose task
//!   sends them (batched when the app says so) and retries failures with
//!   backoff (`target`, `request`);
//! * cluster (`cluster`): every event goes into the app's Redis stream,
//!   read by one consumer group per URL, so each event is delivered by one
//!   node, and pending ones are taken over when their node dies.

mod cluster;
mod debounce;
mod local;
mod request;
mod target;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

pub use self::target::Target;
use crate::adapter::redis::Outbox;
use crate::hub::{AppEvent, AppHub, EventKind, Hub, Observer, ObserverSlot};
use crate::metrics::METRICS;
use crate::protocol::webhook::{Event, Kind, KindSet};

/// What a sink carries to the delivery side.
enum Message {
    Event(Event),
    /// Deliver everything held back now and answer (shutdown).
    Flush(oneshot::Sender<()>),
}

/// An app, its URLs, and the receiving end of its sink.
type AppQueue = (
    Arc<crate::config::AppConfig>,
    Vec<Arc<Target>>,
    mpsc::Receiver<Message>,
);

/// Where an app's webhook events are reported: the app's webhook
/// observer. Reporting never waits: beyond the app's pending limit events
/// are dropped, counted and logged.
#[derive(Debug)]
struct Sink {
    wants: KindSet,
    sender: mpsc::Sender<Message>,
    dropped: AtomicU64,
    app: String,
}

impl Sink {
    fn new(app: &str, wants: KindSet, capacity: usize) -> (Sink, mpsc::Receiver<Message>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let sink = Sink {
            wants,
            sender,
            dropped: AtomicU64::new(0),
            app: app.to_owned(),
        };
        (sink, receiver)
    }

    async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

/// The webhook kind an application event is reported as, if any.
fn kind_of(kind: EventKind) -> Option<Kind> {
    Some(match kind {
        EventKind::Occupied => Kind::ChannelOccupied,
        EventKind::Vacated => Kind::ChannelVacated,
        EventKind::MemberAdded => Kind::MemberAdded,
        EventKind::MemberRemoved => Kind::MemberRemoved,
        EventKind::ClientEvent => Kind::ClientEvent,
        EventKind::CacheMiss => Kind::CacheMiss,
        EventKind::SubscriptionCount => Kind::SubscriptionCount,
        _ => return None,
    })
}

/// The webhook event of an application event, if it is one.
fn webhook_event(event: &AppEvent<'_>) -> Option<Event> {
    Some(match *event {
        AppEvent::Occupied { channel } => Event::channel_occupied(channel),
        AppEvent::Vacated { channel } => Event::channel_vacated(channel),
        AppEvent::MemberAdded { channel, user_id } => Event::member_added(channel, user_id),
        AppEvent::MemberRemoved { channel, user_id } => Event::member_removed(channel, user_id),
        AppEvent::ClientEvent {
            socket,
            channel,
            event,
            data,
            user_id,
        } => Event::client_event(channel, event, data, &socket.to_string(), user_id),
        AppEvent::CacheMiss { channel } => Event::cache_miss(channel),
        AppEvent::SubscriptionCount { channel, count } => Event::subscription_count(channel, count),
        _ => return None,
    })
}

impl Observer for Sink {
    fn wants(&self, kind: EventKind) -> bool {
        kind_of(kind).is_some_and(|kind| self.wants.contains(kind))
    }

    fn observe(&self, event: &AppEvent<'_>) {
        let Some(event) = webhook_event(event) else {
            return;
        };
        if self.sender.try_send(Message::Event(event)).is_err() {
            METRICS
                .webhooks_dropped
                .with_label_values(&[self.app.as_str(), "queue_full"])
                .inc();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(app = %self.app, dropped, "webhook queue is full; dropping webhook events");
            }
        }
    }
}

/// The running webhook service.
pub struct Webhooks {
    hub: Arc<Hub>,
    /// Each app's sink, by app id (shutdown flushes them).
    sinks: DashMap<String, Arc<Sink>>,
    /// Events queued or being sent (single node; shutdown waits for none).
    idle: Arc<local::Idle>,
    outbox: Option<Arc<Outbox>>,
    /// The delivery thread: awc's client is not `Send`, and webhook I/O
    /// must not share a worker with clients.
    thread: actix_rt::ArbiterHandle,
}

impl Webhooks {
    /// Starts the delivery thread and every app's delivery; `outbox`
    /// selects cluster mode.
    pub fn start(hub: Arc<Hub>, outbox: Option<Outbox>) -> Webhooks {
        let arbiter = actix_rt::Arbiter::new();
        let webhooks = Webhooks {
            thread: arbiter.handle(),
            hub,
            sinks: DashMap::new(),
            idle: Arc::default(),
            outbox: outbox.map(Arc::new),
        };
        for app in webhooks.hub.apps() {
            webhooks.attach(&app);
        }
        webhooks
    }

    /// Starts delivering `app`'s webhooks with its current settings; after
    /// a reload, the previous delivery ends once what it had is sent.
    pub fn attach(&self, app: &Arc<AppHub>) {
        let config = app.app().clone();
        if config.webhooks.is_empty() {
            app.observers().detach(ObserverSlot::Webhooks);
            self.sinks.remove(app.id());
            return;
        }
        let targets: Vec<Arc<Target>> = config
            .webhooks
            .iter()
            .map(|w| Arc::new(Target::new(w, &config, app.observers().clone())))
            .collect();
        let wants = targets
            .iter()
            .fold(KindSet::default(), |s, t| s.union(t.kinds));
        let (sink, receiver) = Sink::new(app.id(), wants, config.webhook_max_pending);
        let sink = Arc::new(sink);
        self.sinks.insert(app.id().to_owned(), sink.clone());
        app.observers().attach(ObserverSlot::Webhooks, sink);
        let queue = (config, targets, receiver);
        let (idle, outbox) = (self.idle.clone(), self.outbox.clone());
        self.thread.spawn_fn(move || {
            let http = target::client();
            match outbox {
                Some(outbox) => cluster::start_app(outbox, queue, http),
                None => local::start_app(queue, http, idle),
            }
        });
    }

    /// Shutdown: single node, delivers what is pending (departures held
    /// back included) for at most `timeout`; cluster, hands the last
    /// events to the outbox, where the other nodes deliver them. Then the
    /// delivery thread stops.
    pub async fn drain(&self, timeout: Duration) {
        let drained = async {
            let sinks: Vec<Arc<Sink>> = self.sinks.iter().map(|s| s.value().clone()).collect();
            for sink in sinks {
                sink.flush().await;
            }
            if self.outbox.is_none() {
                self.idle.wait().await;
            }
        };
        if tokio::time::timeout(timeout, drained).await.is_err() {
            warn!("shutdown: webhooks still pending after {timeout:?} were not delivered");
        }
        // Nothing is reported any more: the delivery thread ends.
        self.thread.stop();
    }
}
