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
//! A message is a small text header and the frame bytes exactly as clients
//! get them, so the receiving node sends a slice of what Redis gave it and
//! never parses or re-encodes the frame:
//!
//! ```text
//! <kind>\n<origin node>\n<app id>\n<channel>\n<except socket>\n<number>\n<body>
//! ```
//!
//! | kind | number | body |
//! |------|--------|------|
//! | `P` publish, `C` publish to a cache channel | when it was sent (Unix ms) | the frame |
//! | `M` member event, `R` one re-sent after a rebuild (the origin's own sockets had it) | its version | the frame |
//! | `T` terminate a user | | the user id |
//! | `W` watchlist | 1 online, 0 offline | the user id |
//! | `N` the channel's subscriber count changed | | |
//! | `E` echo (a node checking that its subscription hears) | | |
//!
//! Member events are written by the Lua scripts (`scripts::ANNOUNCE`) in
//! the same format. Empty fields stay empty; no field but the body may hold
//! a newline (app ids and channel names cannot, see `config` and
//! `protocol::channel`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use bytestring::ByteString;

use super::connection::Target;
use super::interest::{Interest, Offer, CHUNK};
use crate::hub::fanout::Fanout;
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::protocol::SocketId;

/// What a message sent by a node asks the other nodes to do. (Member events
/// are only ever sent by the scripts.)
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Deliver `frame` to the channel's local subscribers except `except`;
    /// with `cached`, keep it as the cache channel's last event first.
    Publish {
        channel: &'a str,
        frame: &'a str,
        except: Option<SocketId>,
        cached: bool,
    },
    /// Close the user's signed-in sockets.
    TerminateUser { user_id: &'a str },
    /// A user came online (first signed-in socket anywhere) or went offline.
    Watchlist { user_id: &'a str, online: bool },
    /// A node's message to itself: proves its relay subscription still
    /// hears (see [`RelayHealth`]).
    Echo,
    /// The origin's subscriber count of the channel changed (and is
    /// written in Redis already): each node serving the channel recomputes
    /// the total and tells its own subscribers.
    CountChanged { channel: &'a str },
}

impl Command<'_> {
    /// The message from `origin` about `app`: one allocation, sized for it.
    pub fn encode(&self, origin: &str, app: &str) -> Vec<u8> {
        let (kind, channel, except, number, body): (
            u8,
            &str,
            Option<SocketId>,
            Option<u64>,
            &[u8],
        ) = match self {
            Command::Publish {
                channel,
                frame,
                except,
                cached,
            } => (
                if *cached { b'C' } else { b'P' },
                channel,
                *except,
                Some(crate::support::clock::unix_millis()),
                frame.as_bytes(),
            ),
            Command::TerminateUser { user_id } => (b'T', "", None, None, user_id.as_bytes()),
            Command::Watchlist { user_id, online } => {
                (b'W', "", None, Some(u64::from(*online)), user_id.as_bytes())
            }
            Command::Echo => (b'E', "", None, None, b""),
            Command::CountChanged { channel } => (b'N', channel, None, None, b""),
        };
        use std::io::Write;
        // Two numbers of at most 20 digits each and six separators.
        let mut message =
            Vec::with_capacity(48 + origin.len() + app.len() + channel.len() + body.len());
        message.push(kind);
        for field in [origin, app, channel] {
            message.push(b'\n');
            message.extend_from_slice(field.as_bytes());
        }
        message.push(b'\n');
        // Writing to a Vec cannot fail.
        if let Some(socket) = except {
            let _ = write!(message, "{socket}");
        }
        message.push(b'\n');
        if let Some(number) = number {
            let _ = write!(message, "{number}");
        }
        message.push(b'\n');
        message.extend_from_slice(body);
        message
    }
}

/// A received message: its header fields borrowed from, and its body a
/// slice of, the bytes Redis delivered (nothing is copied per message).
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u8,
    pub origin: &'a str,
    pub app: &'a str,
    pub channel: &'a str,
    pub except: Option<SocketId>,
    pub number: Option<u64>,
    pub body: Bytes,
}

impl<'a> Message<'a> {
    /// Reads a message; `None` when it is not one.
    pub fn decode(payload: &'a Bytes) -> Option<Message<'a>> {
        let mut fields: [&[u8]; 6] = [b""; 6];
        let mut rest: &'a [u8] = payload;
        for field in &mut fields {
            let end = rest.iter().position(|b| *b == b'\n')?;
            *field = &rest[..end];
            rest = &rest[end + 1..];
        }
        let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).ok();
        let [kind, origin, app, channel, except, number] = fields;
        let &[kind] = kind else { return None };
        let body_at = payload.len() - rest.len();
        Some(Message {
            kind,
            origin: text(origin)?,
            app: text(app)?,
            channel: text(channel)?,
            except: std::str::from_utf8(except).ok()?.parse().ok(),
            number: std::str::from_utf8(number).ok()?.parse().ok(),
            body: payload.slice(body_at..),
        })
    }

    fn body_text(&self) -> Option<ByteString> {
        ByteString::try_from(self.body.clone()).ok()
    }
}

/// What a relayed message asks of the adapter beyond the hub.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// This node's own echo came back.
    OwnEcho,
    /// Another node's count of a channel served here changed: the
    /// `app\nchannel` key to recompute.
    CountChanged(String),
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

/// Applies a message from another node to the local hub, and says what
/// else it asks for.
/// Frames go out through `fanout`: this task decides who gets what, in
/// relay order, and the fan-out threads send.
pub fn apply(hub: &Hub, fanout: &Fanout, node: &str, payload: Bytes) -> Applied {
    let Some(message) = Message::decode(&payload) else {
        warn!("ignoring malformed relay message");
        return Applied::Done;
    };
    let ours = message.origin == node;
    match message.kind {
        b'E' if ours => return Applied::OwnEcho,
        b'E' => return Applied::Done,
        b'N' if ours => return Applied::Done,
        b'N' => {
            // Only while subscribers here would hear the count.
            let served = hub
                .by_id(message.app)
                .is_some_and(|app| app.local_subscribers(message.channel) > 0);
            return match served {
                true => Applied::CountChanged(format!("{}\n{}", message.app, message.channel)),
                false => Applied::Done,
            };
        }
        _ => {}
    }
    let Some(app) = hub.by_id(message.app) else {
        return Applied::Done;
    };
    let channel = message.channel;
    match message.kind {
        b'M' | b'R' => {
            // Member events come through here on every node, the deciding
            // one included: that is what keeps them in decision order.
            let Some(frame) = message.body_text() else {
                return Applied::Done;
            };
            let deliver = !(message.kind == b'R' && ours);
            let version = message.number.unwrap_or_default();
            fanout.deliver(frame.clone(), |visit| {
                app.member_event_recipients(
                    channel,
                    version,
                    &frame,
                    message.except,
                    deliver,
                    visit,
                )
            });
        }
        b'P' | b'C' => {
            // A publication may have added to a polling history, which
            // Redis holds by now: wake long-polls, our own included.
            app.notify_pollers(channel);
            if ours {
                return Applied::Done;
            }
            if let Some(sent) = message.number {
                let now = crate::support::clock::unix_millis();
                METRICS
                    .relay_latency
                    .observe(now.saturating_sub(sent) as f64 / 1000.0);
            }
            let Some(frame) = message.body_text() else {
                return Applied::Done;
            };
            if message.kind == b'C' {
                app.store_cached(channel, frame.clone());
            }
            let delivered = fanout.deliver(frame, |visit| {
                app.recipients(channel, message.except, visit)
            });
            app.metrics.deliveries.inc_by(delivered as u64);
        }
        b'T' if !ours => {
            app.terminate_user(&String::from_utf8_lossy(&message.body));
        }
        b'W' if !ours => {
            let online = message.number == Some(1);
            app.notify_watchers(&String::from_utf8_lossy(&message.body), online);
        }
        _ => {}
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
    loop {
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
        let echo = |origin: &str| Bytes::from(Command::Echo.encode(origin, ""));
        let fanout = Fanout::new(1).expect("thread");
        assert_eq!(apply(&hub, &fanout, "me", echo("me")), Applied::OwnEcho);
        assert_eq!(apply(&hub, &fanout, "me", echo("other")), Applied::Done);
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
    fn a_publication_carries_the_frame_bytes_as_they_are() {
        let frame = "{\"event\":\"e\",\"channel\":\"c\",\"data\":\"a\\nb\"}";
        let encoded = Command::Publish {
            channel: "c",
            frame,
            except: Some(SocketId::new(1, 2)),
            cached: true,
        }
        .encode("n1", "app");
        let frame_at = encoded.len() - frame.len();
        assert_eq!(&encoded[frame_at..], frame.as_bytes());
        let encoded = Bytes::from(encoded);
        let message = Message::decode(&encoded).expect("decodes");
        assert_eq!(message.kind, b'C');
        assert_eq!(message.origin, "n1");
        assert_eq!(message.app, "app");
        assert_eq!(message.channel, "c");
        assert_eq!(message.except, Some(SocketId::new(1, 2)));
        assert!(message.number.is_some_and(|ms| ms > 1_700_000_000_000));
        assert_eq!(&message.body[..], frame.as_bytes());
    }

    #[test]
    fn control_messages_round_trip_and_garbage_is_refused() {
        let counts = Command::CountChanged { channel: "a" }.encode("n1", "app");
        let counts = Bytes::from(counts);
        let message = Message::decode(&counts).expect("decodes");
        assert_eq!((message.kind, message.channel), (b'N', "a"));
        assert!(message.body.is_empty());
        assert_eq!(message.except, None);
        assert_eq!(message.number, None);
        let online = Command::Watchlist {
            user_id: "u\n1",
            online: true,
        }
        .encode("n1", "app");
        let online = Bytes::from(online);
        let message = Message::decode(&online).expect("decodes");
        assert_eq!((message.number, &message.body[..]), (Some(1), &b"u\n1"[..]));
        for garbage in [&b""[..], b"P\nn1\napp", b"PP\na\nb\nc\n\n\nbody"] {
            assert_eq!(Message::decode(&Bytes::from_static(garbage)), None);
        }
    }
}
