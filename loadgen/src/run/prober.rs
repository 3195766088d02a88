//! Coalesced relogin probes: one probe broadcast verifies every relogin waiting for one.
//!
//! A relogin is verified by a probe, a broadcast from the probe user that its surviving
//! session must receive (docs/protocol.md S5). Sending one probe per relogin costs a
//! broadcast to every user per relogin: at 1,000 relogins/s and 3,000 users, 3 million
//! deliveries/s of probes alone, which swamps the machine that is measuring. So relogins
//! share probes: a relogin asks for *a probe sent after time t* (its new session had
//! registered by then), and the [`ProbeLine`] sends one probe at most every
//! `probe_interval` for all who are waiting. The guarantee per relogin is unchanged: the
//! probe it relies on left after its login completed. The cost becomes users × probes/s.
//!
//! The line also counts, per probe, how many sessions received it, so that a relogin
//! whose survivor missed a probe can tell "the server delivered it, only not to this
//! session" (a zombie) from "nobody got it" (the probe was not delivered at all).
//!
//! **Across segments.** In a split run ([`crate::segment`]) every segment has its own probe
//! user, and every segment's users receive every probe. A probe is a probe whoever sent
//! it: its stamp carries its send time on the run's common clock, so a relogin waiting in
//! one segment is served by a probe another segment sent after its time, as soon as one of
//! this segment's users has received it ([`ProbeLine::heard`]). The probe users take turns
//! by staggering: a segment sends only if nobody's probe was heard within `interval` plus
//! its own offset (`interval × index / segments`), and only while someone still waits. So a
//! split run costs about as many probe broadcasts as one process would, not one per
//! segment.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Probes whose receipts are remembered (the newest ones; a relogin asks about its probe
/// within seconds of it).
const RECEIPT_SLOTS: usize = 4096;

/// A probe that was sent: its id and when (run clock, ns, taken before the write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentProbe {
    pub id: u64,
    pub sent_ns: u64,
}

/// The shared probe sender (see the module doc).
pub struct ProbeLine {
    /// At most one probe per this.
    interval: Duration,
    /// Someone waits for a probe.
    wanted: Notify,
    /// The newest probe sent; `None` until the first, or once sending failed.
    latest: watch::Sender<Option<SentProbe>>,
    /// Receipts per probe id: slot `id % RECEIPT_SLOTS` holds `id << 24 | count`.
    receipts: Box<[AtomicU64]>,
    /// Probes sent.
    sent: AtomicU64,
    /// Relogins waiting for a probe now.
    waiting: AtomicU64,
    /// When the newest probe (anyone's) was sent or first heard here.
    last_probe: Mutex<Option<tokio::time::Instant>>,
}

impl ProbeLine {
    pub fn new(interval: Duration) -> ProbeLine {
        ProbeLine {
            interval,
            wanted: Notify::new(),
            latest: watch::Sender::new(None),
            receipts: (0..RECEIPT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            last_probe: Mutex::new(None),
        }
    }

    /// At most one probe per this (this process's).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A user of this process received probe `probe` (sent by any segment's probe user):
    /// it serves every relogin waiting for a probe sent before it.
    pub fn heard(&self, probe: SentProbe) {
        let newer = self.latest.send_if_modified(|latest| {
            let newer = latest.is_none_or(|l| l.sent_ns < probe.sent_ns);
            if newer {
                *latest = Some(probe);
            }
            newer
        });
        if newer {
            *self.last_probe.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(tokio::time::Instant::now());
        }
    }

    /// The id of a probe sent after `after_ns`, waiting up to `wait` for the next one;
    /// `None` if none was sent in that time (no probe user, or its sends fail).
    pub async fn after(&self, after_ns: u64, wait: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut latest = self.latest.subscribe();
        self.waiting.fetch_add(1, Relaxed);
        let found = loop {
            if let Some(probe) = *latest.borrow_and_update() {
                if probe.sent_ns > after_ns {
                    break Some(probe.id);
                }
            }
            self.wanted.notify_one();
            match tokio::time::timeout_at(deadline, latest.changed()).await {
                Ok(Ok(())) => continue,
                _ => break None,
            }
        };
        self.waiting.fetch_sub(1, Relaxed);
        found
    }

    /// Notes that a session received probe `id`.
    pub fn received(&self, id: u64) {
        let slot = &self.receipts[(id as usize) % RECEIPT_SLOTS];
        let _ = slot.fetch_update(Relaxed, Relaxed, |packed| {
            Some(if packed >> 24 == id {
                packed + 1
            } else {
                id << 24 | 1
            })
        });
    }

    /// How many sessions received probe `id` (0 once it is too old to be remembered).
    pub fn receipts(&self, id: u64) -> u64 {
        let packed = self.receipts[(id as usize) % RECEIPT_SLOTS].load(Relaxed);
        if packed >> 24 == id {
            packed & 0xFF_FFFF
        } else {
            0
        }
    }

    /// Probes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Relaxed)
    }

    /// Sends probes with `send` until `stop` completes: whenever someone waits for one,
    /// but no sooner than `interval` plus `stagger` after the previous probe (this
    /// process's or, in a split run, another segment's: see the module doc), and not at all
    /// once nobody waits any more. `send` broadcasts one probe and says which and when, or
    /// `None` if it could not.
    pub async fn serve<F, P>(&self, mut send: F, stop: impl Future<Output = ()>, stagger: Duration)
    where
        F: FnMut() -> P,
        P: Future<Output = Option<SentProbe>>,
    {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wanted.notified() => {}
            }
            // Wait out the pace (before the first probe, the stagger alone); a probe heard
            // meanwhile restarts it.
            let mut first_turn = Some(tokio::time::Instant::now() + stagger);
            loop {
                let last = *self.last_probe.lock().unwrap_or_else(|p| p.into_inner());
                let due = match (last, first_turn.take()) {
                    (Some(last), _) => last + self.interval + stagger,
                    (None, Some(turn)) => turn,
                    (None, None) => break,
                };
                if tokio::time::Instant::now() >= due {
                    break;
                }
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            if self.waiting.load(Relaxed) == 0 {
                continue;
            }
            *self.last_probe.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(tokio::time::Instant::now());
            let sent = send().await;
            match sent {
                Some(probe) => {
                    self.sent.fetch_add(1, Relaxed);
                    self.heard(probe);
                }
                None => {
                    self.latest.send_replace(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_counted_per_probe_and_forgotten_when_the_slot_is_reused() {
        let line = ProbeLine::new(Duration::from_millis(10));
        for _ in 0..3 {
            line.received(7);
        }
        line.received(8);
        assert_eq!(line.receipts(7), 3);
        assert_eq!(line.receipts(8), 1);
        assert_eq!(line.receipts(9), 0);
        line.received(7 + RECEIPT_SLOTS as u64);
        assert_eq!(
            line.receipts(7),
            0,
            "an old probe's slot taken by a new one"
        );
        assert_eq!(line.receipts(7 + RECEIPT_SLOTS as u64), 1);
    }

    #[tokio::test]
    async fn one_probe_serves_every_waiter_and_probes_are_paced() {
        let line = ProbeLine::new(Duration::from_millis(30));
        let clock = std::time::Instant::now();
        let next = AtomicU64::new(1);
        let send = || async {
            let id = next.fetch_add(1, Relaxed);
            Some(SentProbe {
                id,
                sent_ns: clock.elapsed().as_nanos() as u64 + 1,
            })
        };
        let stop = tokio::time::sleep(Duration::from_millis(200));
        let waiters = async {
            let wait = Duration::from_secs(1);
            let (a, b, c) = tokio::join!(
                line.after(0, wait),
                line.after(0, wait),
                line.after(0, wait)
            );
            assert_eq!(
                (a, b, c),
                (Some(1), Some(1), Some(1)),
                "one probe for all three"
            );
            let later = clock.elapsed().as_nanos() as u64 + 1;
            let started = std::time::Instant::now();
            assert_eq!(line.after(later, wait).await, Some(2));
            assert!(started.elapsed() >= Duration::from_millis(20), "paced");
        };
        tokio::join!(line.serve(send, stop, Duration::ZERO), waiters);
        // A request left over from a waiter that was served meanwhile may cost one more
        // probe, never one per waiter.
        assert!((2..=3).contains(&line.sent()), "{} probes", line.sent());
    }

    #[tokio::test]
    async fn a_probe_another_segment_sent_serves_the_waiters_and_none_is_sent_here() {
        let line = ProbeLine::new(Duration::from_millis(50));
        let own = AtomicU64::new(0);
        let send = || async {
            own.fetch_add(1, Relaxed);
            Some(SentProbe {
                id: 100,
                sent_ns: 1_000,
            })
        };
        let stop = tokio::time::sleep(Duration::from_millis(300));
        let waiter = async {
            // Another segment's probe arrives before this segment's turn (its stagger).
            let heard = async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                line.heard(SentProbe {
                    id: 7,
                    sent_ns: 500,
                });
            };
            let (got, ()) = tokio::join!(line.after(400, Duration::from_secs(1)), heard);
            assert_eq!(got, Some(7), "served by the other segment's probe");
        };
        tokio::join!(line.serve(send, stop, Duration::from_millis(40)), waiter);
        assert_eq!(
            own.load(Relaxed),
            0,
            "nobody waited any more: no probe of ours"
        );
        assert_eq!(line.sent(), 0);
        // An older probe heard later does not replace a newer one.
        line.heard(SentProbe {
            id: 3,
            sent_ns: 200,
        });
        assert_eq!(line.latest.borrow().map(|p| p.id), Some(7));
    }

    #[tokio::test]
    async fn a_waiter_gets_only_a_probe_sent_after_its_time() {
        let line = ProbeLine::new(Duration::from_millis(10));
        line.latest.send_replace(Some(SentProbe {
            id: 1,
            sent_ns: 100,
        }));
        assert_eq!(line.after(99, Duration::from_millis(10)).await, Some(1));
        // Sent before (or at) the waiter's time: not good enough; nobody sends another.
        assert_eq!(line.after(100, Duration::from_millis(20)).await, None);
    }
}
