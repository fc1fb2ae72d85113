//! Which channel topics this node listens to: those of the channels it
//! serves, so that a node hears a channel's events only while it has a
//! subscriber (or a long-poll) on it.
//!
//! * A subscribe that makes the channel new here waits, before
//!   `subscription_succeeded` is sent, until Redis has confirmed the topic's
//!   SUBSCRIBE: everything published after the client's success reaches it.
//! * A topic nobody here uses any more is dropped only after `linger`, so
//!   clients that leave and come back do not make Redis work each time.
//! * After a reconnect, the relay subscribes the whole set on the new
//!   connection before it reads a message or reports itself ready.
//! * The control channel is always wanted: it is subscribed, dropped by
//!   Redis and subscribed again like any topic.
//!
//! The set of wanted topics is the truth; one task makes the subscription
//! follow it, topic by topic, whatever order the changes come in. A change
//! only marks its topic for that task, so a topic dropped and wanted again
//! before the task looks ends up subscribed, never the other way round.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use super::connection::Subscriber;
use super::relay::RelayHealth;

/// A new relay connection, and the topics it was subscribed to when it
/// was made.
#[derive(Clone)]
pub struct Offer {
    pub connection: Subscriber,
    pub subscribed: Arc<HashSet<String>>,
}
use crate::hub::Hub;

/// How long a subscribe waits for Redis to confirm a new topic before it
/// goes on without (Redis is then failing, and the reconnect that follows
/// subscribes everything again).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a Redis Cluster subscription that failed waits before it is
/// tried again.
const RETRY: Duration = Duration::from_millis(500);

/// Topics per SUBSCRIBE or UNSUBSCRIBE command.
pub const CHUNK: usize = 512;

/// This node's wanted topics.
pub struct Interest {
    state: Mutex<State>,
    /// Whether the last update of the subscription failed: some channel
    /// served here is not heard (on a Redis Cluster, a shard is away).
    failing: AtomicBool,
    /// Wakes the task when `State::changed` has something.
    wake: Notify,
    linger: Duration,
}

#[derive(Default)]
struct State {
    wanted: HashMap<String, Entry>,
    /// Topics whose wanted-ness changed since the task last looked.
    changed: Vec<String>,
    /// Topics Redis stopped sending (see [`Interest::lost`]).
    lost: Vec<String>,
}

struct Entry {
    app: String,
    channel: String,
    /// True once the topic is subscribed (or there is no connection to
    /// subscribe it on, and the next one will).
    confirmed: watch::Sender<bool>,
    /// Subscribes and polls in progress that rely on the topic.
    users: usize,
    /// When it was last wanted by someone arriving or staying.
    touched: Instant,
}

/// Keeps a topic wanted while a subscribe or poll that needs it is on its
/// way into the hub (so the sweep cannot drop it in between).
pub struct Using {
    interest: Arc<Interest>,
    topic: String,
    /// Whether the topic was not wanted before: this node was not hearing
    /// the channel (its copy of a cache channel's event may be stale).
    pub fresh: bool,
}

impl Drop for Using {
    fn drop(&mut self) {
        let mut state = self.interest.lock();
        if let Some(entry) = state.wanted.get_mut(&self.topic) {
            entry.users = entry.users.saturating_sub(1);
            entry.touched = Instant::now();
        }
    }
}

impl Interest {
    /// An interest in `control` (for good) and, later, in the topics of
    /// the channels served here.
    pub fn new(linger: Duration, control: &str) -> Arc<Interest> {
        let mut state = State::default();
        state.wanted.insert(
            control.to_owned(),
            Entry {
                app: String::new(),
                channel: String::new(),
                confirmed: watch::channel(true).0,
                // No guard ever releases it: never swept.
                users: 1,
                touched: Instant::now(),
            },
        );
        Arc::new(Interest {
            state: Mutex::new(state),
            failing: AtomicBool::new(false),
            wake: Notify::new(),
            linger,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wants `topic` (the topic of `app`'s `channel`) and waits until it is
    /// heard. Keep the returned guard until the subscriber or poller is in
    /// the hub.
    pub async fn want(self: &Arc<Self>, topic: String, app: &str, channel: &str) -> Using {
        let (mut confirmed, fresh) = {
            let mut state = self.lock();
            let now = Instant::now();
            match state.wanted.get_mut(&topic) {
                Some(entry) => {
                    entry.users += 1;
                    entry.touched = now;
                    (entry.confirmed.subscribe(), false)
                }
                None => {
                    let (confirmed, receiver) = watch::channel(false);
                    state.wanted.insert(
                        topic.clone(),
                        Entry {
                            app: app.to_owned(),
                            channel: channel.to_owned(),
                            confirmed,
                            users: 1,
                            touched: now,
                        },
                    );
                    state.changed.push(topic.clone());
                    (receiver, true)
                }
            }
        };
        if fresh {
            self.wake.notify_one();
        }
        let using = Using {
            interest: self.clone(),
            topic,
            fresh,
        };
        if !*confirmed.borrow_and_update()
            && tokio::time::timeout(CONFIRM_TIMEOUT, confirmed.wait_for(|c| *c))
                .await
                .is_err()
        {
            warn!("Redis did not confirm a channel subscription in time; going on without");
        }
        using
    }

    /// Drops the topics nobody here has used for `linger`: `in_use` says
    /// whether the hub still has subscribers or pollers on a channel.
    pub fn sweep(&self, in_use: impl Fn(&str, &str) -> bool) -> usize {
        let mut state = self.lock();
        let now = Instant::now();
        let mut dropped = Vec::new();
        state.wanted.retain(|topic, entry| {
            if entry.users > 0 || in_use(&entry.app, &entry.channel) {
                entry.touched = now;
                return true;
            }
            if now.duration_since(entry.touched) < self.linger {
                return true;
            }
            dropped.push(topic.clone());
            false
        });
        let count = dropped.len();
        state.changed.append(&mut dropped);
        drop(state);
        if count > 0 {
            self.wake.notify_one();
        }
        count
    }

    /// Redis dropped `topic` from the subscription (on a Redis Cluster,
    /// when its slot moved to another shard): subscribe it again if it is
    /// still wanted.
    pub fn lost(&self, topic: &str) {
        let mut state = self.lock();
        state.lost.push(topic.to_owned());
        state.changed.push(topic.to_owned());
        drop(state);
        self.wake.notify_one();
    }

    /// Every wanted topic may have been dropped (a Redis Cluster node went
    /// away): subscribe them all again.
    pub fn lost_all(&self) {
        let mut state = self.lock();
        let topics: Vec<String> = state.wanted.keys().cloned().collect();
        state.lost.extend(topics.iter().cloned());
        state.changed.extend(topics);
        drop(state);
        self.wake.notify_one();
    }

    /// Makes the task look at `topics` again (an update that failed).
    fn recheck(&self, topics: impl IntoIterator<Item = String>) {
        self.lock().changed.extend(topics);
    }

    /// Takes the topics Redis dropped since the last look.
    fn take_lost(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().lost)
    }

    /// Whether some channel served here cannot be heard right now.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// How many channel topics this node wants.
    pub fn len(&self) -> usize {
        // The control channel is no channel's topic.
        self.lock().wanted.len() - 1
    }

    /// Every topic wanted now, the control channel included (what a new
    /// connection subscribes to).
    pub fn wanted(&self) -> Vec<String> {
        self.lock().wanted.keys().cloned().collect()
    }

    /// The topics to subscribe and unsubscribe so that Redis matches the
    /// wanted set, given what is `subscribed`.
    fn plan(&self, subscribed: &HashSet<String>) -> (Vec<String>, Vec<String>) {
        let mut state = self.lock();
        // A topic may have changed several times since the last look.
        let changed: HashSet<String> = std::mem::take(&mut state.changed).into_iter().collect();
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for topic in changed {
            let wanted = state.wanted.contains_key(&topic);
            let heard = subscribed.contains(&topic);
            if wanted && !heard {
                add.push(topic);
            } else if !wanted && heard {
                remove.push(topic);
            } else if wanted {
                // Wanted again before it was ever dropped: already heard.
                if let Some(entry) = state.wanted.get(&topic) {
                    entry.confirmed.send_replace(true);
                }
            }
        }
        (add, remove)
    }

    /// Tells those waiting for `topics` that they are heard.
    fn confirm(&self, topics: &[String]) {
        let state = self.lock();
        for topic in topics {
            if let Some(entry) = state.wanted.get(topic) {
                entry.confirmed.send_replace(true);
            }
        }
    }
}

/// Makes the subscriber connection's topics follow the wanted set, and
/// sweeps unused topics every so often.
pub async fn run(
    interest: Arc<Interest>,
    mut offers: watch::Receiver<Option<Offer>>,
    hub: Arc<Hub>,
    health: Arc<RelayHealth>,
) {
    let take = |offer: Option<Offer>| match offer {
        Some(Offer {
            connection,
            subscribed,
        }) => (Some(connection), (*subscribed).clone()),
        None => (None, HashSet::new()),
    };
    let (mut connection, mut subscribed) = take(offers.borrow_and_update().clone());
    let period = (interest.linger / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut sweep = tokio::time::interval(period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        for topic in interest.take_lost() {
            subscribed.remove(&topic);
        }
        let (add, remove) = interest.plan(&subscribed);
        match connection.as_mut() {
            Some(redis) => {
                let done = async {
                    for chunk in add.chunks(CHUNK) {
                        redis.subscribe(chunk).await?;
                        subscribed.extend(chunk.iter().cloned());
                        interest.confirm(chunk);
                    }
                    for chunk in remove.chunks(CHUNK) {
                        redis.unsubscribe(chunk).await?;
                        for topic in chunk {
                            subscribed.remove(topic);
                        }
                    }
                    redis::RedisResult::Ok(())
                }
                .await;
                match done {
                    Ok(()) if interest.failing() => {
                        info!("the cluster relay's channels follow this node's again");
                        interest.failing.store(false, Ordering::Release);
                    }
                    Ok(()) => {}
                    Err(e) if redis.is_cluster() => {
                        // A Redis Cluster connection heals itself (a
                        // failed command makes it learn the topology):
                        // what was not done is tried again soon (logged
                        // once, however long the shard is away).
                        interest.confirm(&add);
                        if !interest.failing.swap(true, Ordering::AcqRel) {
                            warn!("cannot update the cluster relay's channels: {e}; retrying");
                        }
                        interest.recheck(add.into_iter().chain(remove));
                        tokio::time::sleep(RETRY).await;
                    }
                    Err(e) => {
                        // The relay reconnects; the new connection gets
                        // the whole set.
                        interest.confirm(&add);
                        warn!("cannot update the cluster relay's channels: {e}; reconnecting");
                        health.force_reconnect();
                    }
                }
            }
            // Nothing to subscribe on: the next connection takes the lot.
            None => interest.confirm(&add),
        }
        tokio::select! {
            () = interest.wake.notified() => {}
            _ = sweep.tick() => {
                interest.sweep(|app, channel| {
                    hub.by_id(app).is_some_and(|app| app.serves(channel))
                });
            }
            changed = offers.changed() => {
                if changed.is_err() {
                    return;
                }
                (connection, subscribed) = take(offers.borrow_and_update().clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[tokio::test]
    async fn a_topic_is_subscribed_once_and_dropped_after_its_linger() {
        let interest = Interest::new(Duration::ZERO, "control");
        let mut subscribed = HashSet::new();
        // Nobody confirms yet: want() waits, so confirm from the plan.
        let waiting = {
            let interest = interest.clone();
            tokio::spawn(async move { interest.want("t1".into(), "app", "c1").await.fresh })
        };
        let mut add = Vec::new();
        for _ in 0..100 {
            (add, _) = interest.plan(&subscribed);
            if !add.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(add, topics(&["t1"]));
        subscribed.extend(add.iter().cloned());
        interest.confirm(&add);
        assert!(waiting.await.expect("task"), "the first want is fresh");

        // A second user of a heard topic does not wait and changes nothing.
        let again = interest.want("t1".into(), "app", "c1").await;
        assert!(!again.fresh);
        assert_eq!(interest.plan(&subscribed), (vec![], vec![]));
        // In use (a guard, or the hub says so): never dropped.
        assert_eq!(interest.sweep(|_, _| false), 0);
        drop(again);
        assert_eq!(interest.sweep(|_, _| true), 0);
        assert_eq!(interest.sweep(|_, _| false), 1);
        assert_eq!(interest.plan(&subscribed), (vec![], topics(&["t1"])));
    }

    #[tokio::test]
    async fn dropped_then_wanted_again_ends_subscribed() {
        let interest = Interest::new(Duration::ZERO, "control");
        let subscribed: HashSet<String> = topics(&["t1"]).into_iter().collect();
        // The task saw nothing yet: t1 is dropped, then wanted again.
        {
            let mut state = interest.lock();
            state.changed.push("t1".into());
        }
        interest.confirm(&[]);
        let wanting = {
            let interest = interest.clone();
            tokio::spawn(async move { interest.want("t1".into(), "app", "c1").await.fresh })
        };
        let mut plan = (vec![], vec![]);
        for _ in 0..100 {
            if interest.len() == 1 {
                plan = interest.plan(&subscribed);
                break;
            }
            tokio::task::yield_now().await;
        }
        // Still heard: nothing to do, and the waiter is released.
        assert_eq!(plan, (vec![], vec![]));
        assert!(wanting.await.expect("task"));
        // A new connection subscribes everything wanted.
        let mut wanted = interest.wanted();
        wanted.sort();
        assert_eq!(wanted, topics(&["control", "t1"]));
    }

    #[tokio::test]
    async fn lingering_topics_survive_a_sweep() {
        let interest = Interest::new(Duration::from_secs(60), "control");
        {
            let mut state = interest.lock();
            let (confirmed, _) = watch::channel(true);
            state.wanted.insert(
                "t".into(),
                Entry {
                    app: "a".into(),
                    channel: "c".into(),
                    confirmed,
                    users: 0,
                    touched: Instant::now(),
                },
            );
        }
        assert_eq!(interest.sweep(|_, _| false), 0, "within its linger");
        assert_eq!(interest.len(), 1);
    }
}
