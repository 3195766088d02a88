//! The relogin eviction check (PROTOCOL.md S4–S6), one relogin at a time.
//!
//! A relogin of user U opens `relogin_concurrency` new connections for U while the old one
//! is still online. Once every new handshake has completed (time `t1`):
//! - the old connection, and all new ones but one, must end (Close, any code, or a TCP
//!   drop) within `eviction_deadline` of `t1` — otherwise *late* (ended before the check
//!   finished) or *missing* (never ended);
//! - the one survivor must receive a probe broadcast sent after that — otherwise *zombie*:
//!   the user is online but deaf, the Go demo's bug (S5);
//! - the old connection must not receive the probe, nor any chat message whose intended
//!   send time is later than `t1 + ghost_grace` — otherwise *ghost*.
//!
//! Each relogin gets one outcome; when several apply the worst wins:
//! zombie, ghost, missing, late, ok.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::record::Counters;
use crate::run::Ctx;
use crate::user::{self, Conn, NEVER};

/// The verdict on one relogin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Late,
    Missing,
    Zombie,
    Ghost,
}

impl Outcome {
    /// Adds this outcome to the counters.
    pub fn count(self, c: &mut Counters) {
        match self {
            Outcome::Ok => c.evictions_ok += 1,
            Outcome::Late => c.evictions_late += 1,
            Outcome::Missing => c.evictions_missing += 1,
            Outcome::Zombie => c.evictions_zombie += 1,
            Outcome::Ghost => c.evictions_ghost += 1,
        }
    }
}

/// What was observed, in the terms of the module doc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// Connections that should have ended and all did by the deadline.
    pub ended_in_time: bool,
    /// Connections that should have ended and all did by the end of the check.
    pub ended_eventually: bool,
    /// Exactly one new connection survived and it received the probe.
    pub survivor_got_probe: bool,
    /// The old connection (or a non-survivor) received the probe or a message sent after
    /// the new login.
    pub ghost: bool,
}

/// Classifies an observation (worst first).
pub fn classify(seen: Observed) -> Outcome {
    if !seen.survivor_got_probe {
        Outcome::Zombie
    } else if seen.ghost {
        Outcome::Ghost
    } else if !seen.ended_eventually {
        Outcome::Missing
    } else if !seen.ended_in_time {
        Outcome::Late
    } else {
        Outcome::Ok
    }
}

/// Relogs `user` in and records the outcome. Returns without an outcome when no new
/// login succeeded (those are connect errors) or the user had no session.
pub async fn relogin(ctx: Arc<Ctx>, user: u32) {
    let Some(old) = ctx.current(user) else { return };
    let started = ctx.now_ns();
    old.end_expected.store(true, Relaxed);
    old.mark_unstable(started);
    ctx.recorder.count(user as usize, |c| c.relogins += 1);

    let concurrency = ctx.plan_at(started).map_or(1, |p| p.relogin_concurrency);
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let ctx = ctx.clone();
        logins.spawn(async move { user::open(&ctx, user, false).await });
    }
    let mut fresh: Vec<Arc<Conn>> = Vec::new();
    while let Some(result) = logins.join_next().await {
        match result {
            Ok(Ok(conn)) => {
                conn.end_expected.store(true, Relaxed);
                fresh.push(conn);
            }
            _ => ctx.recorder.count(user as usize, |c| c.connect_errors += 1),
        }
    }
    if fresh.is_empty() {
        return;
    }
    let t1 = ctx.now_ns();
    let eviction_deadline = t1 + ctx.scenario.verify.eviction_deadline.0.as_nanos() as u64;

    // Wait for the old connection and all but one new one to end.
    let must_end = fresh.len(); // old + (fresh - 1)
    let ended_count = |fresh: &[Arc<Conn>]| {
        usize::from(!old.is_open()) + fresh.iter().filter(|c| !c.is_open()).count()
    };
    while ended_count(&fresh) < must_end && ctx.now_ns() < eviction_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ended_in_time = ended_count(&fresh) >= must_end && !old.is_open();

    // Declare the survivor the user's session and probe it.
    let survivors: Vec<Arc<Conn>> = fresh.iter().filter(|c| c.is_open()).cloned().collect();
    let survivor = match survivors.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    let probe_sent = ctx.now_ns();
    if let Some(s) = &survivor {
        s.end_expected.store(false, Relaxed);
        s.stable_from_ns.store(probe_sent, Relaxed);
    }
    ctx.set_current(
        user,
        survivors
            .last()
            .cloned()
            .or_else(|| Some(old.clone()).filter(|o| o.is_open())),
    );
    let probe = ctx.send_probe().await;
    let probe_deadline = ctx.now_ns() + ctx.scenario.verify.probe_deadline.0.as_nanos() as u64;
    let survivor_got_probe = match (&survivor, probe) {
        (Some(s), Some(id)) => wait_probe(&ctx, s, id, probe_deadline).await,
        _ => false,
    };
    // Give a late eviction until the end of the probe wait.
    let _ = old.wait_ended(&ctx, probe_deadline).await;
    let ended_eventually = ended_count(&fresh) >= must_end && !old.is_open();

    let grace = ctx.scenario.verify.ghost_grace.0.as_nanos() as u64;
    let got_late_chat = |c: &Conn| {
        let newest = c.newest_chat_ns.load(Relaxed);
        newest != 0 && newest > t1 + grace
    };
    let non_survivors = fresh
        .iter()
        .filter(|c| survivor.as_ref().is_none_or(|s| s.id != c.id));
    let ghost = std::iter::once(&old)
        .chain(non_survivors)
        .any(|c| probe.is_some_and(|id| c.got_probe(id)) || (c.id == old.id && got_late_chat(c)));

    let outcome = classify(Observed {
        ended_in_time,
        ended_eventually,
        survivor_got_probe,
        ghost,
    });
    ctx.recorder.count(user as usize, |c| outcome.count(c));
    tracing::debug!(user, ?outcome, "relogin checked");

    // Clean up what the server left open, so the run goes on with one session per user.
    let now = ctx.now_ns();
    for conn in std::iter::once(&old).chain(fresh.iter()) {
        let keep = survivor.as_ref().is_some_and(|s| s.id == conn.id);
        if !keep && conn.is_open() {
            conn.close(now, Duration::from_secs(1)).await;
        }
    }
    if survivor.is_none() {
        // Without a single survivor the user has no trustworthy session.
        for conn in &fresh {
            conn.mark_unstable(now);
        }
        if let Some(current) = ctx.current(user) {
            if current.stable_from_ns.load(Relaxed) == NEVER {
                ctx.set_current(user, None);
            }
        }
    }
}

async fn wait_probe(ctx: &Ctx, conn: &Conn, id: u64, deadline_ns: u64) -> bool {
    loop {
        let arrived = conn.probe_arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if conn.got_probe(id) {
            return true;
        }
        let left = deadline_ns.saturating_sub(ctx.now_ns());
        if left == 0
            || tokio::time::timeout(Duration::from_nanos(left), arrived)
                .await
                .is_err()
        {
            return conn.got_probe(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_outcome_wins() {
        let good = Observed {
            ended_in_time: true,
            ended_eventually: true,
            survivor_got_probe: true,
            ghost: false,
        };
        assert_eq!(classify(good), Outcome::Ok);
        assert_eq!(
            classify(Observed {
                ended_in_time: false,
                ..good
            }),
            Outcome::Late
        );
        assert_eq!(
            classify(Observed {
                ended_in_time: false,
                ended_eventually: false,
                ..good
            }),
            Outcome::Missing
        );
        assert_eq!(
            classify(Observed {
                ghost: true,
                ended_eventually: false,
                ..good
            }),
            Outcome::Ghost
        );
        assert_eq!(
            classify(Observed {
                survivor_got_probe: false,
                ghost: true,
                ..good
            }),
            Outcome::Zombie
        );
    }
}
