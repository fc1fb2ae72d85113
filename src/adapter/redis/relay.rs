//! The cross-node relay: one Redis pub/sub channel per cluster, one
//! subscription per node. Each message names its origin node so that a node
//! never delivers its own publications twice.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::{PushInfo, PushKind};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use bytestring::ByteString;

use crate::hub::fanout::Fanout;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::protocol::SocketId;

/// What a relayed message asks the other nodes to do.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Deliver `frame` to the channel's local subscribers except `except`.
    Publish {
        channel: String,
        frame: String,
        except: Option<String>,
    },
    /// Keep `frame` as the cache channel's last event, then deliver it.
    PublishCached {
        channel: String,
        frame: String,
        except: Option<String>,
    },
    /// Close the user's signed-in sockets.
    TerminateUser { user_id: String },
    /// A user came online (first signed-in socket anywhere) or went offline.
    Watchlist { user_id: String, online: bool },
    /// A presence member event as Redis decided it, numbered: published by
    /// the scripts themselves (`scripts::ANNOUNCE`), so every node, the
    /// deciding one included, delivers them in this order.
    Member {
        channel: String,
        frame: String,
        version: u64,
        except: Option<String>,
        /// The origin's own sockets already saw it (a rebuild after an
        /// outage): the origin only takes note of the version.
        #[serde(default)]
        skip_origin: bool,
    },
    /// A node's message to itself: proves its relay subscription still
    /// hears the channel (see [`RelayHealth`]).
    Echo,
    /// The origin's subscriber counts of these channels changed (and are
    /// written in Redis already): each node recomputes the totals and
    /// tells its own subscribers.
    CountsChanged { channels: Vec<String> },
}

/// What a relayed message asks of the adapter beyond the hub.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// This node's own echo came back.
    OwnEcho,
    /// Another node's counts changed: `app\nchannel` keys to recompute.
    CountsChanged(Vec<String>),
}

/// Whether this node's relay subscription is up and still hearing: a
/// subscription can look open while nothing arrives (a half-open
/// connection), so the node sends itself an echo every heartbeat and
/// counts the relay as alive only while echoes come back.
#[derive(Debug)]
pub struct RelayHealth {
    subscribed: AtomicBool,
    /// When the last echo came back.
    last_echo: std::sync::Mutex<Option<std::time::Instant>>,
    /// Asks the subscriber to drop its connection and subscribe again.
    reconnect: tokio::sync::Notify,
}

impl Default for RelayHealth {
    fn default() -> Self {
        RelayHealth {
            subscribed: AtomicBool::new(false),
            last_echo: std::sync::Mutex::new(None),
            reconnect: tokio::sync::Notify::new(),
        }
    }
}

impl RelayHealth {
    fn echoed(&self) {
        *self.last_echo.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// Subscribed, and an echo came back within `within`.
    pub fn alive(&self, within: Duration) -> bool {
        self.subscribed.load(Ordering::Acquire)
            && self
                .last_echo
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|at| at.elapsed() <= within)
    }

    /// Whether the subscription is up (whatever it hears).
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Makes the subscriber reconnect (its echoes stopped coming back).
    pub fn force_reconnect(&self) {
        self.reconnect.notify_one();
    }
}

/// One relayed message.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    pub origin: String,
    pub app: String,
    /// When the origin published it (Unix ms), for the relay latency
    /// metric; absent in what the Lua scripts publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
    #[serde(flatten)]
    pub command: Command,
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Applies a message from another node to the local hub, and says what
/// else it asks for.
/// Frames go out through `fanout`: this task decides who gets what, in
/// relay order, and the fan-out threads send.
pub fn apply(hub: &Hub, fanout: &Fanout, node: &str, payload: &[u8]) -> Applied {
    let envelope: Envelope = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            warn!("ignoring malformed relay message: {e}");
            return Applied::Done;
        }
    };
    match &envelope.command {
        Command::Echo if envelope.origin == node => return Applied::OwnEcho,
        Command::Echo => return Applied::Done,
        Command::CountsChanged { channels } if envelope.origin != node => {
            let app = &envelope.app;
            return Applied::CountsChanged(
                channels.iter().map(|c| format!("{app}\n{c}")).collect(),
            );
        }
        Command::CountsChanged { .. } => return Applied::Done,
        _ => {}
    }
    let Some(app) = hub.by_id(&envelope.app) else {
        return Applied::Done;
    };
    // A publication may have added to a polling history, which Redis holds
    // by now: wake long-polls, including for our own publications.
    if let Command::Publish { channel, .. } | Command::PublishCached { channel, .. } =
        &envelope.command
    {
        app.notify_pollers(channel);
    }
    let except = |e: &Option<String>| e.as_deref().and_then(|s| s.parse::<SocketId>().ok());
    if let Command::Member {
        channel,
        frame,
        version,
        except: ex,
        skip_origin,
    } = &envelope.command
    {
        // Member events come through here on every node, the deciding one
        // included: that is what keeps them in decision order.
        let deliver = !(*skip_origin && envelope.origin == node);
        let frame: ByteString = frame.as_str().into();
        fanout.deliver(frame.clone(), |visit| {
            app.member_event_recipients(channel, *version, &frame, except(ex), deliver, visit)
        });
        return Applied::Done;
    }
    if envelope.origin == node {
        return Applied::Done;
    }
    if let Some(sent) = envelope.sent_ms {
        let now = crate::support::clock::unix_millis();
        METRICS
            .relay_latency
            .observe(now.saturating_sub(sent) as f64 / 1000.0);
    }
    match envelope.command {
        Command::Publish {
            channel,
            frame,
            except: ex,
        } => {
            let delivered = fanout.deliver(frame.into(), |visit| {
                app.recipients(&channel, except(&ex), visit)
            });
            app.metrics.deliveries.inc_by(delivered as u64);
        }
        Command::PublishCached {
            channel,
            frame,
            except: ex,
        } => {
            let frame: ByteString = frame.into();
            app.store_cached(&channel, frame.clone());
            let delivered =
                fanout.deliver(frame, |visit| app.recipients(&channel, except(&ex), visit));
            app.metrics.deliveries.inc_by(delivered as u64);
        }
        Command::TerminateUser { user_id } => {
            app.terminate_user(&user_id);
        }
        Command::Watchlist { user_id, online } => {
            app.notify_watchers(&user_id, online);
        }
        Command::Member { .. } | Command::Echo | Command::CountsChanged { .. } => {}
    }
    Applied::Done
}

/// Most bytes of relay messages received and not yet applied. Beyond it,
/// messages are dropped (counted and logged): a node that cannot keep up
/// loses publications rather than memory, and presence rosters converge
/// again within two heartbeats (`node::converge`).
const INBOX_BYTES: usize = 64 << 20;

/// The bytes waiting between the Redis connection and the relay task.
#[derive(Debug, Default)]
struct Inbox {
    queued: AtomicUsize,
    dropped: AtomicU64,
}

impl Inbox {
    /// Takes `size` more bytes if they fit.
    fn admit(&self, size: usize, limit: usize) -> bool {
        let mut queued = self.queued.load(Ordering::Acquire);
        loop {
            if queued + size > limit {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                METRICS.relay_dropped.inc();
                if dropped.is_power_of_two() {
                    warn!(
                        dropped,
                        "cluster relay is behind: {limit} bytes waiting; dropping relay messages"
                    );
                }
                return false;
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + size,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => queued = now,
            }
        }
    }

    fn taken(&self, size: usize) {
        self.queued.fetch_sub(size, Ordering::AcqRel);
    }
}

/// The payload of a pub/sub message push (`[channel, payload]`).
fn payload(push: &PushInfo) -> Option<&[u8]> {
    match push.data.get(1) {
        Some(redis::Value::BulkString(bytes)) => Some(bytes),
        _ => None,
    }
}

/// Subscribes on a RESP3 connection whose pushes go into a channel bounded
/// by [`INBOX_BYTES`] (redis-rs's own pub/sub type buffers without bound).
async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<(
    redis::aio::MultiplexedConnection,
    mpsc::UnboundedReceiver<PushInfo>,
    Arc<Inbox>,
)> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let inbox = Arc::new(Inbox::default());
    let (sender, receiver) = mpsc::unbounded_channel();
    let counted = inbox.clone();
    let push_sender = move |push: PushInfo| -> Result<(), ()> {
        let size = payload(&push).map_or(0, <[u8]>::len);
        if push.kind == PushKind::Message && !counted.admit(size, INBOX_BYTES) {
            return Err(());
        }
        sender.send(push).map_err(|_| ())
    };
    let config = redis::AsyncConnectionConfig::new().set_push_sender(push_sender);
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    connection.subscribe(channel).await?;
    Ok((connection, receiver, inbox))
}

/// Subscribes to the relay channel and applies messages until the process
/// ends, reconnecting with back-off whenever the subscription drops.
pub async fn run(
    client: redis::Client,
    channel: String,
    hub: Arc<Hub>,
    fanout: Arc<Fanout>,
    node: String,
    health: Arc<RelayHealth>,
    counts_changed: Arc<dyn Fn(Vec<String>) + Send + Sync>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match subscribe(&client, &channel).await {
            Ok((connection, mut pushes, inbox)) => {
                info!("cluster relay subscribed to {channel}");
                health.subscribed.store(true, Ordering::Release);
                // A fresh subscription counts as hearing until its first
                // echo is due.
                health.echoed();
                backoff = Duration::from_millis(100);
                loop {
                    tokio::select! {
                        push = pushes.recv() => match push {
                            Some(push) if push.kind == PushKind::Message => {
                                let Some(bytes) = payload(&push) else { continue };
                                fanout.room().await;
                                inbox.taken(bytes.len());
                                METRICS.relay_in.inc();
                                METRICS.relay_in_bytes.inc_by(bytes.len() as u64);
                                match apply(&hub, &fanout, &node, bytes) {
                                    Applied::OwnEcho => health.echoed(),
                                    Applied::CountsChanged(keys) => counts_changed(keys),
                                    Applied::Done => {}
                                }
                            }
                            Some(push) if push.kind == PushKind::Disconnection => break,
                            Some(_) => {}
                            None => break,
                        },
                        () = health.reconnect.notified() => {
                            warn!("cluster relay hears nothing (its echoes stopped); reconnecting");
                            break;
                        }
                    }
                }
                drop(connection);
                health.subscribed.store(false, Ordering::Release);
                warn!("cluster relay subscription lost; reconnecting");
            }
            Err(e) => warn!("cluster relay cannot subscribe: {e}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_is_alive_only_while_its_echoes_come_back() {
        let health = RelayHealth::default();
        assert!(!health.alive(Duration::from_secs(3)), "not subscribed yet");
        health.subscribed.store(true, Ordering::Release);
        health.echoed();
        assert!(health.alive(Duration::from_secs(3)));
        *health.last_echo.lock().expect("lock") =
            std::time::Instant::now().checked_sub(Duration::from_secs(10));
        assert!(!health.alive(Duration::from_secs(3)));
        // Our own echo is recognised; another node's is not ours.
        let hub = Hub::new([]);
        let echo = |origin: &str| {
            Envelope {
                origin: origin.into(),
                app: String::new(),
                sent_ms: None,
                command: Command::Echo,
            }
            .encode()
        };
        let fanout = Fanout::new(1).expect("thread");
        assert_eq!(apply(&hub, &fanout, "me", &echo("me")), Applied::OwnEcho);
        assert_eq!(apply(&hub, &fanout, "me", &echo("other")), Applied::Done);
    }

    #[test]
    fn the_inbox_holds_a_bounded_number_of_bytes() {
        let inbox = Inbox::default();
        assert!(inbox.admit(600, 1000));
        assert!(inbox.admit(400, 1000));
        assert!(!inbox.admit(1, 1000), "full");
        assert_eq!(inbox.dropped.load(Ordering::Relaxed), 1);
        inbox.taken(600);
        assert!(inbox.admit(500, 1000));
    }

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope {
            origin: "n1".into(),
            app: "app".into(),
            sent_ms: Some(1_700_000_000_000),
            command: Command::Publish {
                channel: "c".into(),
                frame: "{\"event\":\"e\"}".into(),
                except: Some("1.2".into()),
            },
        };
        let decoded: Envelope = serde_json::from_slice(&e.encode()).expect("decodes");
        assert_eq!(decoded, e);
    }
}
