//! Webhooks: Pusher's seven events, POSTed signed to each app's URLs.
//!
//! Events are reported where they happen (the hub's rules for occupancy and
//! membership on a single node, the session for client events, the hub for
//! cache misses, Redis scripts for occupancy and membership in a cluster)
//! into the app's [`Sink`], which never waits. Delivery runs on its own
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
mod event;
mod local;
mod request;
mod target;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

pub use self::cluster::Outbox;
pub use self::event::{Event, Kind, KindSet};
pub use self::target::{group_name, Target};
use crate::hub::{AppHub, Hub};
use crate::metrics::METRICS;

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

/// Where an app's events are reported; a no-op until webhooks are started
/// for an app that has some. Reporting never waits: beyond the app's
/// pending limit events are dropped, counted and logged.
#[derive(Debug, Default)]
pub struct Sink {
    inner: ArcSwapOption<SinkInner>,
}

#[derive(Debug)]
struct SinkInner {
    wants: KindSet,
    sender: mpsc::Sender<Message>,
    dropped: AtomicU64,
    app: String,
}

impl Sink {
    /// Whether any URL of the app takes `kind` (so callers build nothing
    /// for events nobody wants).
    pub fn wants(&self, kind: Kind) -> bool {
        self.inner
            .load()
            .as_ref()
            .is_some_and(|s| s.wants.contains(kind))
    }

    /// Reports an event of `kind`, built by `make` only when wanted.
    pub fn emit(&self, kind: Kind, make: impl FnOnce() -> Event) {
        let sink = self.inner.load();
        let Some(sink) = sink.as_ref().filter(|s| s.wants.contains(kind)) else {
            return;
        };
        if sink.sender.try_send(Message::Event(make())).is_err() {
            METRICS
                .webhooks_dropped
                .with_label_values(&[sink.app.as_str(), "queue_full"])
                .inc();
            let dropped = sink.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(app = %sink.app, dropped, "webhook queue is full; dropping webhook events");
            }
        }
    }

    fn attach(&self, app: &str, wants: KindSet, capacity: usize) -> mpsc::Receiver<Message> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        self.inner.store(Some(Arc::new(SinkInner {
            wants,
            sender,
            dropped: AtomicU64::new(0),
            app: app.to_owned(),
        })));
        receiver
    }

    /// No webhooks any more (reload).
    fn detach(&self) {
        self.inner.store(None);
    }

    async fn flush(&self) {
        let Some(sink) = self.inner.load_full() else {
            return;
        };
        let (done, flushed) = oneshot::channel();
        if sink.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

/// The running webhook service.
pub struct Webhooks {
    hub: Arc<Hub>,
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
            app.webhooks.detach();
            return;
        }
        let targets: Vec<Arc<Target>> = config
            .webhooks
            .iter()
            .map(|w| Arc::new(Target::new(w, &config, app.console.clone())))
            .collect();
        let wants = targets
            .iter()
            .fold(KindSet::default(), |s, t| s.union(t.kinds));
        let receiver = app
            .webhooks
            .attach(app.id(), wants, config.webhook_max_pending);
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
    /// events to the outbox, where the other nodes deliver them.
    pub async fn drain(&self, timeout: Duration) {
        let drained = async {
            for app in self.hub.apps() {
                app.webhooks.flush().await;
            }
            if self.outbox.is_none() {
                self.idle.wait().await;
            }
        };
        if tokio::time::timeout(timeout, drained).await.is_err() {
            warn!("shutdown: webhooks still pending after {timeout:?} were not delivered");
        }
    }
}
