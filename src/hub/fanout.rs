//! Delivering one frame to many connections on several threads without
//! changing the order any single connection sees.
//!
//! The cluster relay applies every other node's publications on one task;
//! left there, a node's cross-node fan-out would be bounded by one core.
//! The relay therefore only decides *who* gets a frame (under the
//! channel's lock, where the ordering rules live) and hands the sending
//! to a fixed set of threads. A connection always goes to the same thread,
//! which works through its jobs in order, so each connection still sees
//! frames in relay order. Small fan-outs are sent on the spot, but only
//! when no job is waiting anywhere, which keeps that guarantee too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;

use bytestring::ByteString;
use tokio::sync::Notify;

use super::connection::Connection;
use crate::support::wait;

/// Fan-outs this small are sent on the caller's thread (when nothing is
/// waiting): a job costs more than a few sends.
const INLINE: usize = 16;

/// Jobs waiting, over all threads, before the relay waits for room (its
/// own bounded inbox then takes the pressure). The relay waits in
/// [`Fanout::room`], never by blocking a thread: the heartbeat and the
/// state writer share its runtime thread.
const QUEUE: usize = 1024;

struct Job {
    connections: Vec<Arc<Connection>>,
    frame: ByteString,
}

/// The sending threads (none: everything is sent on the caller's thread).
pub struct Fanout {
    shards: Vec<Sender<Job>>,
    /// Jobs handed out and not finished.
    pending: Arc<AtomicUsize>,
    /// Raised when `pending` drops below [`QUEUE`].
    drained: Arc<Notify>,
}

impl Fanout {
    /// `threads` sending threads (0: send on the caller's thread).
    pub fn new(threads: usize) -> std::io::Result<Fanout> {
        let pending = Arc::new(AtomicUsize::new(0));
        let drained = Arc::new(Notify::new());
        let mut shards = Vec::new();
        for n in 0..threads {
            let (sender, jobs) = channel::<Job>();
            let (done, drained) = (pending.clone(), drained.clone());
            std::thread::Builder::new()
                .name(format!("herald-fanout-{n}"))
                .spawn(move || {
                    for job in jobs {
                        for conn in &job.connections {
                            conn.send(job.frame.clone());
                        }
                        if done.fetch_sub(1, Ordering::AcqRel) == QUEUE {
                            drained.notify_waiters();
                        }
                    }
                })?;
            shards.push(sender);
        }
        Ok(Fanout {
            shards,
            pending,
            drained,
        })
    }

    /// Resolves once fewer than [`QUEUE`] jobs wait: call before handing
    /// out more (the relay does, per message).
    pub async fn room(&self) {
        if self.pending.load(Ordering::Acquire) < QUEUE {
            return;
        }
        wait::until(&self.drained, || {
            (self.pending.load(Ordering::Acquire) < QUEUE).then_some(())
        })
        .await
    }

    /// Sends `frame` to the connections `recipients` visits, after
    /// everything handed out before; returns how many there were. Without
    /// threads they are sent to as they are visited, with no copy.
    pub fn deliver(
        &self,
        frame: ByteString,
        recipients: impl FnOnce(&mut dyn FnMut(&Arc<Connection>)),
    ) -> usize {
        let mut count = 0;
        if self.shards.is_empty() {
            recipients(&mut |conn| {
                conn.send(frame.clone());
                count += 1;
            });
            return count;
        }
        let shards = self.shards.len();
        let mut parts: Vec<Vec<Arc<Connection>>> = vec![Vec::new(); shards];
        recipients(&mut |conn| {
            parts[conn.socket_id.shard(shards)].push(conn.clone());
            count += 1;
        });
        if count <= INLINE && self.idle() {
            for conn in parts.iter().flatten() {
                conn.send(frame.clone());
            }
            return count;
        }
        for (shard, connections) in parts.into_iter().enumerate() {
            if connections.is_empty() {
                continue;
            }
            self.pending.fetch_add(1, Ordering::AcqRel);
            let job = Job {
                connections,
                frame: frame.clone(),
            };
            if self.shards[shard].send(job).is_err() {
                // The thread is gone (it cannot panic on a send; this is
                // the process ending): nothing to deliver to any more.
                self.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
        count
    }

    /// No job is waiting or running.
    fn idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SocketId;
    use std::time::{Duration, Instant};

    #[test]
    fn every_connection_sees_frames_in_order() {
        let fanout = Fanout::new(3).expect("threads");
        let connections: Vec<Arc<Connection>> = (0..40)
            .map(|n| Arc::new(Connection::new(SocketId::new(n, n * 7 + 1), 10_000)))
            .collect();
        // Large fan-outs (threads) and small ones (inline when idle) mixed.
        for round in 0..300u32 {
            let to: Vec<Arc<Connection>> = if round % 3 == 0 {
                connections.iter().take(5).cloned().collect()
            } else {
                connections.clone()
            };
            fanout.deliver(ByteString::from(round.to_string()), |visit| {
                to.iter().for_each(visit)
            });
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !fanout.idle() {
            assert!(Instant::now() < deadline, "jobs never finished");
            std::thread::yield_now();
        }
        for (n, conn) in connections.iter().enumerate() {
            let mut frames = Vec::new();
            conn.drain_into(&mut frames);
            let seen: Vec<u32> = frames.iter().map(|f| f.parse().expect("number")).collect();
            // The first five get every round, the others two rounds in three.
            let expected: Vec<u32> = (0..300).filter(|r| n < 5 || r % 3 != 0).collect();
            assert_eq!(seen, expected, "connection {n}");
        }
    }
}
