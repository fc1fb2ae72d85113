//! One task that performs the node's fire-and-forget Redis writes in order:
//! relay publications, polling history and cache entries. Callers never
//! wait on Redis; the queue is bounded, and when it is full or Redis is down
//! the write is dropped. This node's counts do not go through here (see
//! `state`), so no volume of (un)subscribes can crowd the relay out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::connection::{Batch, Redis};
use super::keys::Keys;
use super::tasks::Tasks;
use crate::metrics::METRICS;
use tokio::sync::mpsc;
use tracing::warn;

/// How many writes may wait for Redis.
pub const QUEUE: usize = 16 * 1024;
/// How many queued writes are sent as one pipeline.
const BATCH: usize = 256;

/// One write.
#[derive(Debug)]
pub enum Write {
    /// A relay message, to a channel's topic or (`control`) to the
    /// shared control channel.
    Publish {
        channel: String,
        payload: Vec<u8>,
        control: bool,
    },
    /// Append to a history stream, trimmed to about `max_len` entries and
    /// expiring `ttl` seconds after the last append.
    History {
        key: String,
        event: String,
        data: String,
        max_len: usize,
        ttl: u64,
    },
    /// A cache channel's last event, expiring after `ttl` seconds.
    Cache {
        key: String,
        frame: String,
        ttl: u64,
    },
    /// Answered once every write queued before it was sent.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending side, shared by every caller.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Write>,
    overflowing: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer task, owned by the node's `tasks`.
    pub(super) fn spawn(redis: Redis, tasks: &Tasks) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tasks.spawn(run(redis, rx));
        Writer {
            tx,
            overflowing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues a write without waiting.
    pub fn send(&self, write: Write) {
        match self.tx.try_send(write) {
            Ok(()) => {
                self.overflowing.store(false, Ordering::Relaxed);
            }
            Err(_) => {
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    warn!("Redis write queue is full; dropping cluster writes until it drains");
                }
            }
        }
    }
}

impl Writer {
    /// Waits until every write queued so far has been sent (or failed).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Write::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(redis: Redis, mut rx: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // One pipeline (per slot, on a Redis Cluster: see `connection`).
        let mut pipe = Batch::new(&redis);
        let mut flushed = Vec::new();
        for write in batch.drain(..) {
            match write {
                Write::Flush(done) => flushed.push(done),
                Write::Publish {
                    channel,
                    payload,
                    control,
                } => {
                    let route = if control {
                        &METRICS.relay_out_control
                    } else {
                        &METRICS.relay_out_channel
                    };
                    route.messages.inc();
                    route.bytes.inc_by(payload.len() as u64);
                    pipe.publish(&channel, &payload);
                }
                Write::Cache { key, frame, ttl } => {
                    pipe.on(&key).set_ex(&key, frame, ttl).ignore();
                }
                Write::History {
                    key,
                    event,
                    data,
                    max_len,
                    ttl,
                } => {
                    // A new epoch only when the stream starts (NX); both
                    // keys expire together.
                    let epoch_key = Keys::history_epoch(&key);
                    let pipe = pipe.on(&key);
                    pipe.cmd("SET")
                        .arg(&epoch_key)
                        .arg(format!("{:08x}", rand::random::<u32>()))
                        .arg("NX")
                        .ignore();
                    pipe.expire(&epoch_key, ttl as i64).ignore();
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(max_len)
                        .arg("*")
                        .arg("event")
                        .arg(event)
                        .arg("data")
                        .arg(data)
                        .ignore();
                    pipe.expire(key, ttl as i64).ignore();
                }
            }
        }
        match pipe.send(&redis).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    warn!(
                        "Redis write failed ({e}); cluster writes are dropped until Redis is back"
                    );
                }
                failing = true;
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}
