//! Single-node delivery: everything pending is in this process. Per app,
//! one task takes the sink's events in order, holds departures back
//! (`debounce`) and puts each event on the bounded queue of every URL that
//! takes it; per URL, one task sends its queue in order. A URL that is
//! slow or down only fills its own queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::warn;

use super::debounce::Debouncer;
use super::request::{batch_len, Request, MAX_EVENTS};
use super::target::Target;
use super::{AppQueue, Message};
use crate::config::AppConfig;
use crate::metrics::METRICS;
use crate::protocol::webhook::Event;
use crate::support::clock::unix_millis;
use crate::support::wait;

/// Events queued or being sent, over every URL: shutdown waits for none.
#[derive(Debug, Default)]
pub struct Idle {
    outstanding: AtomicUsize,
    changed: Notify,
}

impl Idle {
    fn add(&self, n: usize) {
        METRICS.webhooks_pending.add(n as i64);
        self.outstanding.fetch_add(n, Ordering::AcqRel);
    }

    fn done(&self, n: usize) {
        METRICS.webhooks_pending.sub(n as i64);
        if self.outstanding.fetch_sub(n, Ordering::AcqRel) == n {
            self.changed.notify_waiters();
        }
    }

    pub async fn wait(&self) {
        wait::until(&self.changed, || {
            (self.outstanding.load(Ordering::Acquire) == 0).then_some(())
        })
        .await
    }
}

/// Starts one app's delivery (on the delivery thread): a task per URL
/// and the dispatcher. They end when the app's sink is replaced (reload)
/// and what was queued is sent.
pub(super) fn start_app(queue: AppQueue, http: awc::Client, idle: Arc<Idle>) {
    let (app, targets, events) = queue;
    let mut queues = Vec::new();
    for target in targets {
        let (queue, receiver) = mpsc::channel(app.webhook_max_pending);
        actix_web::rt::spawn(send_queue(
            app.clone(),
            target.clone(),
            receiver,
            http.clone(),
            idle.clone(),
        ));
        queues.push(Queue {
            target,
            sender: queue,
            dropped: 0,
        });
    }
    actix_web::rt::spawn(dispatch(app, events, queues, idle));
}

/// One URL's queue, as the dispatcher sees it.
struct Queue {
    target: Arc<Target>,
    sender: mpsc::Sender<Event>,
    dropped: u64,
}

/// Takes the app's events in order, debounces departures and queues each
/// for the URLs that take it.
async fn dispatch(
    app: Arc<AppConfig>,
    mut events: mpsc::Receiver<Message>,
    mut queues: Vec<Queue>,
    idle: Arc<Idle>,
) {
    let mut debouncer = Debouncer::new(
        Duration::from_secs(app.webhook_debounce),
        app.webhook_max_pending,
    );
    let mut enqueue = |event: Event| {
        for queue in queues.iter_mut().filter(|q| q.target.accepts(&event)) {
            idle.add(1);
            if queue.sender.try_send(event.clone()).is_err() {
                idle.done(1);
                METRICS
                    .webhooks_dropped
                    .with_label_values(&[app.id.as_str(), "queue_full"])
                    .inc();
                queue.dropped += 1;
                if queue.dropped.is_power_of_two() {
                    warn!(
                        app = %app.id,
                        url = queue.target.shown(),
                        dropped = queue.dropped,
                        "webhook queue is full (webhook_max_pending); dropping webhook events"
                    );
                }
            }
        }
    };
    loop {
        let next_due = debouncer.next_due();
        tokio::select! {
            message = events.recv() => match message {
                Some(Message::Event(event)) => {
                    if let Some(event) = debouncer.offer(event, Instant::now().into_std()) {
                        enqueue(event);
                    }
                }
                Some(Message::Flush(done)) => {
                    debouncer.release_all().into_iter().for_each(&mut enqueue);
                    let _ = done.send(());
                }
                // Replaced by a reload: what is held goes out now.
                None => {
                    debouncer.release_all().into_iter().for_each(&mut enqueue);
                    return;
                }
            },
            _ = sleep_until(next_due), if next_due.is_some() => {
                debouncer.due(Instant::now().into_std()).into_iter().for_each(&mut enqueue);
            }
        }
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Sends one URL's events in order, batched when the app says so.
async fn send_queue(
    app: Arc<AppConfig>,
    target: Arc<Target>,
    mut receiver: mpsc::Receiver<Event>,
    http: awc::Client,
    idle: Arc<Idle>,
) {
    let mut waiting: VecDeque<Event> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(event) => waiting.push_back(event),
                None => return,
            }
        }
        // Enough for one request; the rest stays in the bounded channel
        // (so webhook_max_pending is the bound, not that plus a batch).
        let room = if app.webhook_batching { MAX_EVENTS } else { 1 };
        while waiting.len() < room {
            match receiver.try_recv() {
                Ok(event) => waiting.push_back(event),
                Err(_) => break,
            }
        }
        let n = batch_len(&waiting, app.webhook_batching);
        let request = Request::new(&app.secret, unix_millis(), waiting.range(..n));
        target.deliver(&http, &app, &request).await;
        waiting.drain(..n);
        idle.done(n);
    }
}
