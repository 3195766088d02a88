//! What each sender has sent so far, shared by the run: the send times, the connections
//! they went out on, and the loss of the sessions already tallied.
//!
//! Loss is judged against what was sent, so a session's ledger is only worth keeping until
//! every message it could have expected has been judged. Kept to the end of the run, the
//! ledgers of finished sessions grew a run's memory by about a kilobyte per relogin or
//! churn (36 MB an hour at 10 a second). Instead, once a finished session's last expected
//! message is older than the delivery deadline (and anything the server cut within it has
//! been seen), the run tallies it against the senders' times so far ([`SendBook::fold`])
//! and lets it go. The result is the same tally the end of the run would have made: the
//! tally is a sum over sessions.
//!
//! Each send takes the book's lock for a push; a fold holds it while it tallies a few
//! sessions. Neither is held across an `.await`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::conn::Conn;
use crate::checks::delivery::{self, LossTally, SentLog, SentView, SessionLedger};

/// Every sender's sends, and the loss tallied so far.
#[derive(Default)]
pub struct SendBook {
    senders: Mutex<Vec<Sends>>,
    folded: Mutex<LossTally>,
    /// Sessions tallied by [`SendBook::fold`].
    folded_sessions: AtomicU64,
}

/// How long after a sender's connection ended its handle is kept before only its cut is:
/// time for whoever closed it to have said whether the end was expected.
const SETTLED_NS: u64 = 10_000_000_000;

/// One sender's sends.
#[derive(Default)]
struct Sends {
    /// `times[k]`: when sequence `k + 1` was sent (run clock, ns).
    times: Vec<u64>,
    /// Each connection the sender used, with the sequence of its first message there.
    conns: Vec<(Used, u64)>,
}

/// A connection a sender used: the handle while it may still change, then only when the
/// server cut it (if it did), so that a sender's old connections (their buffers) are not
/// kept for the whole run.
enum Used {
    Live(Arc<Conn>),
    Ended { cut_ns: Option<u64> },
}

impl Used {
    fn cut_at(&self) -> Option<u64> {
        match self {
            Used::Live(conn) => conn.cut_at(),
            Used::Ended { cut_ns } => *cut_ns,
        }
    }

    fn id(&self) -> Option<u64> {
        match self {
            Used::Live(conn) => Some(conn.id),
            Used::Ended { .. } => None,
        }
    }
}

impl Sends {
    /// Lets go of the connections that ended more than [`SETTLED_NS`] before `now_ns`,
    /// keeping when the server cut them.
    fn settle(&mut self, now_ns: u64) {
        for (used, _) in &mut self.conns {
            if let Used::Live(conn) = used {
                if conn
                    .ended_at()
                    .is_some_and(|at| at.saturating_add(SETTLED_NS) < now_ns)
                {
                    *used = Used::Ended {
                        cut_ns: conn.cut_at(),
                    };
                }
            }
        }
    }

    /// The messages in flight on a connection the server cut: unjudged
    /// ([`delivery`]'s module doc).
    fn unjudged(&self, deadline_ns: u64) -> Vec<(u64, u64)> {
        let ends = self
            .conns
            .iter()
            .skip(1)
            .map(|(_, first)| first - 1)
            .chain([self.times.len() as u64]);
        self.conns
            .iter()
            .zip(ends)
            .filter_map(|((used, first), last)| {
                let cut_ns = used.cut_at()?;
                (*first <= last)
                    .then(|| delivery::cut_range(&self.times, *first, last, cut_ns, deadline_ns))
                    .flatten()
            })
            .collect()
    }
}

impl SendBook {
    /// A book for `senders` senders.
    pub fn new(senders: usize) -> SendBook {
        SendBook {
            senders: Mutex::new((0..senders).map(|_| Sends::default()).collect()),
            folded: Mutex::default(),
            folded_sessions: AtomicU64::new(0),
        }
    }

    /// Sender `user` sends its next message on `conn` at `at_ns`: returns its sequence
    /// number (1, 2, …); `None` for a user that is not a sender.
    pub fn record(&self, user: u32, conn: &Arc<Conn>, at_ns: u64) -> Option<u64> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let sends = senders.get_mut(user as usize)?;
        let seq = sends.times.len() as u64 + 1;
        if sends
            .conns
            .last()
            .is_none_or(|(last, _)| last.id() != Some(conn.id))
        {
            sends.settle(at_ns);
            sends.conns.push((Used::Live(conn.clone()), seq));
        }
        sends.times.push(at_ns);
        Some(seq)
    }

    /// Sender `user`'s whole log, for the end of the run: its times are taken out.
    pub fn take_log(&self, user: u32, deadline_ns: u64) -> SentLog {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sends) = senders.get_mut(user as usize) else {
            return SentLog::default();
        };
        let unjudged = sends.unjudged(deadline_ns);
        let sends = std::mem::take(sends);
        SentLog {
            times: sends.times,
            unjudged,
        }
    }

    /// Tallies `ledgers` (finished sessions whose window closed long enough ago) against
    /// the sends so far, and keeps the result for [`SendBook::take_folded`].
    pub fn fold(
        &self,
        ledgers: &[SessionLedger],
        deadline_ns: u64,
        self_delivery: bool,
        interval_of: impl Fn(u64) -> usize,
    ) {
        if ledgers.is_empty() {
            return;
        }
        let tally = {
            let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
            let unjudged: Vec<Vec<(u64, u64)>> =
                senders.iter().map(|s| s.unjudged(deadline_ns)).collect();
            let views: Vec<SentView<'_>> = senders
                .iter()
                .zip(&unjudged)
                .map(|(s, u)| SentView {
                    times: &s.times,
                    unjudged: u,
                })
                .collect();
            delivery::tally_loss_of(ledgers, &views, deadline_ns, self_delivery, interval_of)
        };
        self.folded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&tally, usize::MAX);
        self.folded_sessions
            .fetch_add(ledgers.len() as u64, Ordering::Relaxed);
    }

    /// How many finished sessions were tallied while the run went on.
    pub fn folded_sessions(&self) -> u64 {
        self.folded_sessions.load(Ordering::Relaxed)
    }

    /// The loss of every session folded so far, taken out.
    pub fn take_folded(&self) -> LossTally {
        std::mem::take(&mut *self.folded.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
