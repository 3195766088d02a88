//! Shutdown as data: a signal every long-lived task watches, and a count of live
//! connection tasks that [`crate::ServerHandle::shutdown`] waits on (docs/protocol.md O3).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// Tells tasks that the server is stopping. Cloned into each task that must react.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// A signal and the sender that fires it.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, ShutdownSignal(rx))
    }

    /// Completes once shutdown has begun (immediately if it already has, or if the
    /// sender is gone).
    pub async fn fired(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// Counts live connection tasks so shutdown can wait for the last one.
#[derive(Debug, Clone, Default)]
pub struct TaskCount(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by a task for as long as it runs; dropping it uncounts the task.
#[derive(Debug)]
pub struct TaskGuard(Arc<Inner>);

impl TaskCount {
    /// Counts the calling task until the guard is dropped.
    pub fn track(&self) -> TaskGuard {
        self.0.live.fetch_add(1, SeqCst);
        TaskGuard(self.0.clone())
    }

    /// How many tracked tasks are running.
    pub fn live(&self) -> usize {
        self.0.live.load(SeqCst)
    }

    /// Completes when no tracked task is running.
    pub async fn all_done(&self) {
        loop {
            let idle = self.0.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn all_done_waits_for_the_last_guard() {
        let count = TaskCount::default();
        let a = count.track();
        let b = count.track();
        let waiter = tokio::spawn({
            let count = count.clone();
            async move { count.all_done().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
