//! The owner of the cluster's background tasks (relay, interest, count
//! flusher, state writer, write queue, heartbeat): each runs under one
//! cancellation token and one tracker, so a node that leaves the cluster
//! (shutdown, or a node started and stopped in a test) stops them all and
//! waits for them, instead of leaving tasks that hold the adapter alive.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The cluster tasks of one node.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// Runs a cluster task until the node stops, and runs it again if it
    /// panics: a node must not go on half-connected because one of its
    /// tasks died. Aborting the returned handle stops this one alone.
    pub(super) fn supervise<F, Fut>(&self, name: &'static str, make: F) -> tokio::task::AbortHandle
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker
            .spawn(async move {
                loop {
                    let run = std::panic::AssertUnwindSafe(make()).catch_unwind();
                    tokio::select! {
                        () = stop.cancelled() => return,
                        ended = run => if ended.is_ok() { return },
                    }
                    tracing::error!("cluster task {name} panicked; restarting it");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            })
            .abort_handle()
    }

    /// Runs `task` until it ends or the node stops (no restart).
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Stops every task and waits up to `grace` for them to end.
    pub(super) async fn stop(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("cluster tasks still running {grace:?} after the node left");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn stopping_ends_every_task_and_a_panic_restarts_one() {
        let tasks = Tasks::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        tasks.supervise("test", move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run fails");
                }
                std::future::pending::<()>().await
            }
        });
        tasks.spawn(std::future::pending());
        tokio::time::timeout(Duration::from_secs(5), async {
            while runs.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("restarted after the panic");
        tokio::time::timeout(Duration::from_secs(5), tasks.stop(Duration::from_secs(5)))
            .await
            .expect("stopped");
        assert!(tasks.tracker.is_empty(), "no task left running");
    }
}
