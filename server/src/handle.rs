//! A session's handle ([`Session`]): the part of a connection that others hold — the
//! registry, broadcasters, the cluster bus, the idle sweeper and shutdown. Everything here
//! is safe to use from any task without awaiting; the connection's own tasks (its read
//! loop and writer, [`crate::session`]) hold it too.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tracing::debug;

use crate::frame::{self, close_code};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing, Pushed, QueueLimit};

/// The part of a connection that others hold: the registry, broadcasters, the idle sweeper
/// and shutdown. Everything here is safe to use from any task without awaiting.
#[derive(Debug)]
pub struct Session {
    /// Unique per connection, so a session can tell its own registry entry from a
    /// successor's with the same name.
    pub id: u64,
    /// The user's name, as logged in.
    pub name: Arc<str>,
    /// The login's number from the cluster's counter (docs/protocol.md C3); 0 on a single
    /// node.
    pub seq: u64,
    /// Frames waiting for this connection's writer.
    pub outbox: Outbox,
    /// Wakes the read loop when someone else ends the session.
    closing: Notify,
    /// Server clock (ms) when the peer last sent a frame, for the idle sweeper (O2).
    last_heard_ms: AtomicU64,
    /// Server clock (ms) of the last Ping the idle sweeper queued.
    pinged_ms: AtomicU64,
}

impl Session {
    /// A session that has not yet heard anything.
    pub fn new(id: u64, name: Arc<str>, seq: u64) -> Self {
        Session {
            id,
            name,
            seq,
            outbox: Outbox::default(),
            closing: Notify::new(),
            last_heard_ms: AtomicU64::new(0),
            pinged_ms: AtomicU64::new(0),
        }
    }

    /// Ends the session: `last` is the final frame, `discard_queued` drops the backlog.
    /// Returns `false` if the session was already ending (then nothing changes).
    pub fn close(&self, last: Option<Bytes>, discard_queued: bool) -> bool {
        let first = self.outbox.close(last, discard_queued);
        if first {
            self.closing.notify_one();
        }
        first
    }

    /// Queues a frame for this receiver without waiting. A full queue makes this receiver
    /// a slow consumer: it is closed with 1013, its backlog freed. Returns whether queued.
    pub(crate) fn send(&self, item: Outgoing, limit: QueueLimit, metrics: &Metrics) -> bool {
        match self.outbox.push(item, limit) {
            Pushed::Queued => true,
            Pushed::Closed => false,
            Pushed::Overflow => {
                let bye = frame::close(close_code::TRY_AGAIN_LATER, "outbound queue full");
                if self.close(Some(bye), true) {
                    Metrics::inc(&metrics.slow_consumer_disconnects);
                    debug!(user = %self.name, id = self.id, "slow consumer disconnected");
                }
                false
            }
        }
    }

    /// Server clock (ms) when the peer last sent anything.
    pub fn last_heard_ms(&self) -> u64 {
        self.last_heard_ms.load(Relaxed)
    }

    /// Queues a Ping unless one was queued since the peer was last heard. Returns whether
    /// it did.
    pub(crate) fn ping_if_unanswered(
        &self,
        now_ms: u64,
        limit: QueueLimit,
        metrics: &Metrics,
    ) -> bool {
        if self.pinged_ms.load(Relaxed) > self.last_heard_ms() {
            return false;
        }
        self.pinged_ms.store(now_ms.max(1), Relaxed);
        self.send(
            Outgoing {
                bytes: frame::ping(),
                chat: false,
            },
            limit,
            metrics,
        )
    }

    /// The peer sent something at `now_ms` (server clock).
    pub fn heard(&self, now_ms: u64) {
        self.last_heard_ms.store(now_ms, Relaxed);
    }

    /// Resolves when someone else ends the session ([`Session::close`]).
    pub fn closing(&self) -> Notified<'_> {
        self.closing.notified()
    }
}
