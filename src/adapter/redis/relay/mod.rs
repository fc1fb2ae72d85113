//! The cross-node relay: how nodes hear each other's publications.
//!
//! Routing follows interest: a channel's events go to a Redis pub/sub topic
//! of its own (`Keys::topic`), which a node subscribes to only while it
//! serves the channel (see `interest`), so a node's relay work grows with
//! what it serves, not with the cluster. What concerns the whole app
//! (terminating a user, `#server-to-user-*` events, watchlists, a node's
//! echo) goes through one shared control channel
//! (`Keys::control`). On a Redis Cluster both are sharded pub/sub
//! channels (see `connection`).
//!
//! The parts: the wire format (`wire`, pure), applying a message to the
//! local hub (`apply`), the echo check (`health`), the byte budget of what
//! waits (`inbox`); this file is the subscriber loop (connect, subscribe,
//! reconnect with back-off).

mod apply;
mod health;
mod inbox;
mod wire;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

pub use self::apply::{apply, Applied};
pub use self::health::RelayHealth;
use self::inbox::{Inbox, INBOX_BYTES};
pub use self::wire::{Command, Message};
use super::connection::Target;
use super::interest::{Interest, Offer, CHUNK};
use crate::hub::fanout::Fanout;
use crate::hub::Hub;
use crate::metrics::METRICS;

/// The channel and payload of a pub/sub message push
/// (`[channel, payload]`).
fn message_of(push: &PushInfo) -> Option<(&[u8], &[u8])> {
    match push.data.as_slice() {
        [redis::Value::BulkString(channel), redis::Value::BulkString(payload), ..] => {
            Some((channel, payload))
        }
        _ => None,
    }
}

/// The payload of a message push, taken out of it without copying.
fn into_payload(push: PushInfo) -> Option<Bytes> {
    match push.data.into_iter().nth(1) {
        Some(redis::Value::BulkString(payload)) => Some(Bytes::from(payload)),
        _ => None,
    }
}

/// Connects on RESP3 with pushes going into a channel bounded by
/// [`INBOX_BYTES`] (redis-rs's own pub/sub type buffers without bound) and
/// subscribes to every wanted topic, the control channel included.
async fn subscribe(
    target: &Target,
    interest: &Interest,
) -> redis::RedisResult<(Offer, mpsc::UnboundedReceiver<PushInfo>, Arc<Inbox>)> {
    let inbox = Arc::new(Inbox::default());
    let (sender, receiver) = mpsc::unbounded_channel();
    let counted = inbox.clone();
    let push_sender = move |push: PushInfo| -> Result<(), ()> {
        let size = message_of(&push).map_or(0, |(_, payload)| payload.len());
        if is_message(&push) && !counted.admit(size, INBOX_BYTES) {
            return Err(());
        }
        sender.send(push).map_err(|_| ())
    };
    let mut connection = target.subscriber(push_sender).await?;
    let topics = interest.wanted();
    for chunk in topics.chunks(CHUNK) {
        connection.subscribe(chunk).await?;
    }
    let offer = Offer {
        connection,
        subscribed: Arc::new(topics.into_iter().collect()),
    };
    Ok((offer, receiver, inbox))
}

/// A pub/sub message (sharded ones come from a Redis Cluster).
fn is_message(push: &PushInfo) -> bool {
    matches!(push.kind, PushKind::Message | PushKind::SMessage)
}

/// What the relay task needs.
pub struct Relay {
    pub target: Target,
    /// The shared control channel.
    pub control: String,
    pub hub: Arc<Hub>,
    pub fanout: Arc<Fanout>,
    pub node: String,
    pub health: Arc<RelayHealth>,
    /// The topics to subscribe a new connection to.
    pub interest: Arc<Interest>,
    /// Where the current connection is offered to `interest`, which keeps
    /// its topics following what this node serves.
    pub offers: watch::Sender<Option<Offer>>,
    pub counts_changed: Arc<dyn Fn(String) + Send + Sync>,
}

/// Subscribes and applies messages until the process ends, reconnecting
/// with back-off whenever the subscription drops.
pub async fn run(relay: Arc<Relay>) {
    let Relay {
        target,
        control,
        hub,
        fanout,
        node,
        health,
        interest,
        offers,
        counts_changed,
    } = &*relay;
    let mut backoff = Duration::from_millis(100);
    let mut switches = target.switch_watch();
    loop {
        switches.seen();
        match subscribe(target, interest).await {
            Ok((offer, mut pushes, inbox)) => {
                info!(
                    topics = offer.subscribed.len(),
                    "cluster relay subscribed to {control} and the channels served here"
                );
                let connection = offer.connection.clone();
                offers.send_replace(Some(offer));
                health.subscribed.store(true, Ordering::Release);
                // A fresh subscription counts as hearing until its first
                // echo is due.
                health.echoed();
                backoff = Duration::from_millis(100);
                loop {
                    tokio::select! {
                        push = pushes.recv() => match push {
                            Some(push) if is_message(&push) => {
                                let Some((channel, bytes)) = message_of(&push) else { continue };
                                let size = bytes.len();
                                let route = if channel == control.as_bytes() {
                                    &METRICS.relay_in_control
                                } else {
                                    &METRICS.relay_in_channel
                                };
                                route.messages.inc();
                                route.bytes.inc_by(size as u64);
                                fanout.room().await;
                                inbox.taken(size);
                                let Some(payload) = into_payload(push) else { continue };
                                match apply(hub, fanout, node, payload) {
                                    Applied::OwnEcho => health.echoed(),
                                    Applied::CountChanged(key) => counts_changed(key),
                                    Applied::Done => {}
                                }
                            }
                            // One Redis's connection is made anew. A Redis
                            // Cluster's reconnects to the node that dropped
                            // and subscribes its topics again; but when that
                            // node is gone for good (its replica took over),
                            // only a command for one of its slots makes the
                            // connection learn the new topology. So every
                            // topic is subscribed again: a no-op where
                            // nothing changed, the new owner where it did.
                            Some(push) if push.kind == PushKind::Disconnection => {
                                if !target.is_cluster() {
                                    break;
                                }
                                info!("a Redis Cluster node dropped the relay; subscribing every channel again");
                                interest.lost_all();
                            }
                            // A sharded topic whose slot moved to another
                            // shard is dropped by Redis (or this is the
                            // confirmation of our own SUNSUBSCRIBE): the
                            // interest task subscribes it again, where its
                            // slot is now, if it is still wanted.
                            Some(push) if push.kind == PushKind::SUnsubscribe => {
                                if let Some(redis::Value::BulkString(topic)) = push.data.first() {
                                    interest.lost(&String::from_utf8_lossy(topic));
                                }
                            }
                            Some(_) => {}
                            None => break,
                        },
                        // Under Sentinel: the master moved, and the
                        // old one may still hold this subscription.
                        () = switches.next() => {
                            info!("the Redis master switched; subscribing on the new one");
                            break;
                        }
                        () = health.reconnect.notified() => {
                            warn!("cluster relay hears nothing (its echoes stopped); reconnecting");
                            break;
                        }
                    }
                }
                offers.send_replace(None);
                drop(connection);
                health.subscribed.store(false, Ordering::Release);
                warn!("cluster relay subscription lost; reconnecting");
            }
            Err(e) => warn!("cluster relay cannot subscribe: {e}; retrying in {backoff:?}"),
        }
        // A master switch ends the wait: the new master is there now.
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = switches.next() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
