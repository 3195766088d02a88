//! One connection's bounded outbound queue (docs/protocol.md M6).
//!
//! Broadcasters push encoded frames and never wait: a push takes a mutex for a few
//! instructions and returns [`Pushed::Overflow`] when the queue is at its bound, so a
//! stalled receiver costs its senders nothing. The connection's single writer task takes
//! *everything* queued at once ([`Outbox::next_batch`]) and writes it with as few
//! vectored writes as it can. Closing the outbox is final: it appends the last frame
//! (a Close, usually), refuses further pushes, and tells the writer to finish.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// How much one outbox may hold before its receiver counts as a slow consumer.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimit {
    /// Frames queued and not yet taken by the writer.
    pub frames: usize,
    /// Bytes queued and not yet taken by the writer (one frame is always admitted).
    pub bytes: usize,
}

/// A frame waiting to be written.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The encoded frame, shared with every other receiver of the same broadcast.
    pub bytes: Bytes,
    /// A chat message (counted as a delivery once written), as opposed to a control frame.
    pub chat: bool,
}

/// The result of a push.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; the writer has been woken if it was idle.
    Queued,
    /// The queue is at its bound; nothing was queued.
    Overflow,
    /// The outbox is closed; nothing was queued.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    closed: bool,
}

/// A bounded queue with one consumer, the connection's writer.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer. `notify_one` keeps a permit, so a wake-up sent while the writer
    /// is busy writing is not lost.
    wake: Notify,
}

impl Outbox {
    /// Queues a frame unless the outbox is closed or full. Never waits.
    pub fn push(&self, item: Outgoing, limit: QueueLimit) -> Pushed {
        let mut state = self.lock();
        if state.closed {
            return Pushed::Closed;
        }
        let len = item.bytes.len();
        if state.queue.len() >= limit.frames
            || (!state.queue.is_empty() && state.queued_bytes + len > limit.bytes)
        {
            return Pushed::Overflow;
        }
        let was_empty = state.queue.is_empty();
        state.queue.push_back(item);
        state.queued_bytes += len;
        drop(state);
        if was_empty {
            self.wake.notify_one();
        }
        Pushed::Queued
    }

    /// Closes the outbox: optionally drops what is queued (a slow consumer's backlog),
    /// appends `last` if given, and wakes the writer to finish. Returns `false` if it was
    /// already closed, in which case nothing changes.
    pub fn close(&self, last: Option<Bytes>, discard_queued: bool) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.closed = true;
        if discard_queued {
            state.queue = VecDeque::new();
            state.queued_bytes = 0;
        }
        if let Some(bytes) = last {
            state.queued_bytes += bytes.len();
            state.queue.push_back(Outgoing { bytes, chat: false });
        }
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Frames queued and not yet taken by the writer (for the deliberate
    /// `Fault::BroadcastHeldByBackedUpReceiver`).
    #[cfg(feature = "fault-injection")]
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether [`Outbox::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until something is queued or the outbox is closed, then moves everything
    /// queued into `batch` (which the caller has emptied). Returns `true` when the outbox
    /// is closed, i.e. this is the last batch.
    pub async fn next_batch(&self, batch: &mut VecDeque<Outgoing>) -> bool {
        loop {
            {
                let mut state = self.lock();
                if !state.queue.is_empty() || state.closed {
                    std::mem::swap(&mut state.queue, batch);
                    state.queued_bytes = 0;
                    return state.closed;
                }
            }
            self.wake.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it, which is a bug; the state
        // itself (a queue and two scalars) is still consistent, so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(n: usize) -> Outgoing {
        Outgoing {
            bytes: Bytes::from(vec![0u8; n]),
            chat: true,
        }
    }

    #[test]
    fn overflows_at_the_frame_bound_and_the_byte_bound() {
        let outbox = Outbox::default();
        let limit = QueueLimit {
            frames: 2,
            bytes: 100,
        };
        assert_eq!(outbox.push(chat(10), limit), Pushed::Queued);
        assert_eq!(outbox.push(chat(10), limit), Pushed::Queued);
        assert_eq!(outbox.push(chat(10), limit), Pushed::Overflow);

        let outbox = Outbox::default();
        assert_eq!(
            outbox.push(chat(150), limit),
            Pushed::Queued,
            "one frame is always admitted"
        );
        assert_eq!(outbox.push(chat(1), limit), Pushed::Overflow);
    }

    #[tokio::test]
    async fn close_discards_backlog_appends_last_and_refuses_more() {
        let outbox = Outbox::default();
        let limit = QueueLimit {
            frames: 10,
            bytes: 1000,
        };
        outbox.push(chat(5), limit);
        assert!(outbox.close(Some(Bytes::from_static(b"bye")), true));
        assert!(!outbox.close(None, false), "second close is a no-op");
        assert_eq!(outbox.push(chat(5), limit), Pushed::Closed);
        let mut batch = VecDeque::new();
        assert!(outbox.next_batch(&mut batch).await);
        assert_eq!(batch.len(), 1);
        assert_eq!(&batch[0].bytes[..], b"bye");
    }

    #[tokio::test]
    async fn writer_takes_everything_queued_at_once() {
        let outbox = Outbox::default();
        let limit = QueueLimit {
            frames: 10,
            bytes: 1000,
        };
        for _ in 0..3 {
            outbox.push(chat(5), limit);
        }
        let mut batch = VecDeque::new();
        assert!(!outbox.next_batch(&mut batch).await);
        assert_eq!(batch.len(), 3);
    }
}
