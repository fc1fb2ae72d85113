//! Cluster delivery: the outbox is a Redis stream per app, so a webhook is
//! delivered by exactly one node, even when the node that reported it dies
//! before it went out.
//!
//! Occupancy and membership events are written into the stream by the
//! Redis scripts that decide them (cluster-wide, once; departures wait in a
//! sorted set for the debounce delay, see `adapter::redis::scripts`); the
//! events a node reports itself (client events, cache misses, counts) are
//! added here. Each URL is a consumer group: every node reads new entries
//! as a consumer named after itself, delivers them and acknowledges them.
//! Entries a dead node had read and not acknowledged are claimed by a
//! survivor (`adapter::redis::node`) and show up here as this node's own.

use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::request::{batch_len, Request, MAX_EVENTS};
use super::target::Target;
use super::{AppQueue, Message};
use crate::adapter::redis::connection::Redis;
use crate::adapter::redis::Outbox;
use crate::config::AppConfig;
use crate::metrics::METRICS;
use crate::protocol::webhook::Event;

/// How long one read waits for new entries (on the consumer's own
/// connection, so that a blocked read holds up nobody else).
const BLOCK: Duration = Duration::from_secs(1);

/// Starts one app's writer and URL consumers (on the delivery thread).
/// They end when the app's sink is replaced (reload).
pub(super) fn start_app(outbox: Arc<Outbox>, queue: AppQueue, http: awc::Client) {
    let (app, targets, events) = queue;
    let stream = (outbox.stream_of)(&app.id);
    let stop = Arc::new(tokio::sync::Notify::new());
    for target in targets {
        let Some(own) = blocking_connection(&outbox) else {
            continue;
        };
        let consumer = Consumer {
            app: app.clone(),
            target,
            stream: stream.clone(),
            node: outbox.node.clone(),
            redis: own,
            http: http.clone(),
        };
        let stop = stop.clone();
        actix_web::rt::spawn(async move {
            tokio::select! {
                () = consumer.run() => {}
                () = stop.notified() => {}
            }
        });
    }
    let Some(redis) = blocking_connection(&outbox) else {
        return;
    };
    actix_web::rt::spawn(async move {
        write(app, stream, events, redis).await;
        // The sink was replaced: the consumers of the old settings stop
        // (what they had read and not delivered is read again by the new
        // ones, from this node's pending entries).
        stop.notify_waiters();
    });
}

/// A connection of its own for a consumer, whose reads block for up to
/// [`BLOCK`] (connected lazily: Redis may be down at start).
fn blocking_connection(outbox: &Outbox) -> Option<Redis> {
    match (outbox.connect)(BLOCK * 3) {
        Ok(redis) => Some(redis),
        Err(e) => {
            warn!("webhooks: cannot set up a Redis connection: {e}");
            None
        }
    }
}

/// Adds the events this node reports to the app's outbox, in order.
async fn write(
    app: Arc<AppConfig>,
    stream: String,
    mut events: mpsc::Receiver<Message>,
    mut redis: Redis,
) {
    let mut failures: u64 = 0;
    while let Some(first) = events.recv().await {
        let mut pipe = redis::pipe();
        let mut flushed = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event) => {
                    add(&mut pipe, &stream, app.webhook_max_pending, &event.json);
                }
                Message::Flush(done) => flushed.push(done),
            }
            if pipe.len() < 100 {
                next = events.try_recv().ok();
            }
        }
        if !pipe.is_empty() {
            if let Err(e) = pipe.query_async::<()>(&mut redis).await {
                failures += 1;
                if failures.is_power_of_two() {
                    warn!(app = %app.id, failures, "webhook events lost: Redis refused them ({e})");
                }
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Appends one event to an outbox stream, trimmed to about `max_len`.
fn add(pipe: &mut redis::Pipeline, stream: &str, max_len: usize, json: &str) {
    pipe.cmd("XADD")
        .arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(max_len)
        .arg("*")
        .arg("e")
        .arg(json)
        .ignore();
}

/// One node's reader of one URL's consumer group.
struct Consumer {
    app: Arc<AppConfig>,
    target: Arc<Target>,
    stream: String,
    node: String,
    redis: Redis,
    http: awc::Client,
}

/// An outbox entry: stream id and event (`None`: unreadable or trimmed).
type Entry = (String, Option<Event>);

impl Consumer {
    async fn run(mut self) {
        let mut group_ready = false;
        loop {
            if !group_ready {
                group_ready = self.create_group().await;
                if !group_ready {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            // Entries taken over from a dead node first, then new ones.
            let entries = match self.read("0", None).await {
                Ok(entries) if entries.is_empty() => self.read(">", Some(BLOCK)).await,
                other => other,
            };
            match entries {
                Ok(entries) if entries.is_empty() => {}
                Ok(entries) => self.deliver(entries).await,
                Err(e) => {
                    // The group is gone with a restarted Redis: make it again.
                    group_ready = !e.to_string().contains("NOGROUP");
                    if group_ready {
                        warn!(app = %self.app.id, "webhook outbox unreadable: {e}");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn create_group(&mut self) -> bool {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(&self.target.group)
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut self.redis)
            .await;
        match created {
            Ok(()) => {
                info!(app = %self.app.id, group = %self.target.group, "webhook consumer group created");
                true
            }
            Err(e) if e.to_string().contains("BUSYGROUP") => true,
            Err(_) => false,
        }
    }

    async fn read(
        &mut self,
        from: &str,
        block: Option<Duration>,
    ) -> redis::RedisResult<Vec<Entry>> {
        let mut options = StreamReadOptions::default()
            .group(&self.target.group, &self.node)
            .count(MAX_EVENTS);
        if let Some(block) = block {
            options = options.block(block.as_millis() as usize);
        }
        let reply: StreamReadReply = self
            .redis
            .xread_options(&[&self.stream], &[from], &options)
            .await?;
        Ok(reply
            .keys
            .into_iter()
            .flat_map(|key| key.ids)
            .map(|entry| {
                let event = entry
                    .get::<String>("e")
                    .and_then(|json| Event::from_json(&json));
                (entry.id, event)
            })
            .collect())
    }

    /// Sends the entries this URL takes (batched as the app says) and
    /// acknowledges each once delivered or given up.
    async fn deliver(&mut self, entries: Vec<Entry>) {
        let mut skipped = Vec::new();
        let mut wanted: Vec<(String, Event)> = Vec::new();
        let mut trimmed = 0;
        for (id, event) in entries {
            match event {
                Some(event) if self.target.accepts(&event) => wanted.push((id, event)),
                Some(_) => skipped.push(id),
                // Trimmed from the outbox (webhook_max_pending) before it
                // was delivered: a drop like a full queue's.
                None => {
                    trimmed += 1;
                    skipped.push(id);
                }
            }
        }
        if trimmed > 0 {
            METRICS
                .webhooks_dropped
                .with_label_values(&[self.app.id.as_str(), "trimmed"])
                .inc_by(trimmed);
            warn!(app = %self.app.id, trimmed, "webhook outbox was trimmed (webhook_max_pending) before these were delivered");
        }
        self.ack(&skipped).await;
        let mut rest = &wanted[..];
        while !rest.is_empty() {
            let n = batch_len(rest.iter().map(|(_, e)| e), self.app.webhook_batching);
            let (batch, after) = rest.split_at(n);
            let time_ms = batch
                .first()
                .and_then(|(id, _)| id.split('-').next()?.parse().ok())
                .unwrap_or_else(crate::support::clock::unix_millis);
            let request = Request::new(&self.app.secret, time_ms, batch.iter().map(|(_, e)| e));
            self.target.deliver(&self.http, &self.app, &request).await;
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            self.ack(&ids).await;
            rest = after;
        }
    }

    async fn ack(&mut self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let acked: redis::RedisResult<()> =
            self.redis.xack(&self.stream, &self.target.group, ids).await;
        if let Err(e) = acked {
            // Not acknowledged: another node may deliver it again later
            // (at least once).
            warn!(app = %self.app.id, "webhook outbox acknowledgement failed: {e}");
        }
    }
}
