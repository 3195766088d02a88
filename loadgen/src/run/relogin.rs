//! Doing one relogin: log a user in again while its session is online, wait for the
//! evictions, declare the survivor the user's session, probe it, and hand what was seen to
//! the eviction check ([`crate::checks::eviction`]), which judges it.

use std::sync::Arc;
use std::time::Duration;

use super::conn::Conn;
use super::state::RunState;
use super::user;
use crate::checks::eviction::{self, NewSession, ReloginObservation};

/// The least a relogin waits past its probe deadline for a late probe before it judges
/// the probe missing.
const LATE_GRACE: Duration = Duration::from_secs(1);

/// How often the relogin looks whether the evictions have happened.
const POLL: Duration = Duration::from_millis(5);

/// Relogs `user` in and records the outcome. Returns without an outcome when no new
/// login succeeded (those are connect errors) or the user had no session.
pub async fn relogin(run: Arc<RunState>, user: u32) {
    let Some(old) = run.current(user) else { return };
    let started = run.now_ns();
    old.expect_end();
    old.mark_unstable(started);
    run.recorder.count(user as usize, |c| c.relogins += 1);

    let concurrency = run.plan_at(started).map_or(1, |p| p.relogin_concurrency);
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let run = run.clone();
        logins.spawn(async move { user::open(&run, user, false).await });
    }
    let mut fresh: Vec<Arc<Conn>> = Vec::new();
    while let Some(result) = logins.join_next().await {
        match result {
            Ok(Ok(conn)) => {
                conn.expect_end();
                fresh.push(conn);
            }
            _ => run.recorder.count(user as usize, |c| c.connect_errors += 1),
        }
    }
    if fresh.is_empty() {
        return;
    }
    if !run.scenario.checks_eviction() {
        return replace_unchecked(&run, user, &old, fresh).await;
    }
    let t1 = run.now_ns();
    let verify = &run.scenario.verify;
    let eviction_deadline = t1 + verify.eviction_deadline.0.as_nanos() as u64;

    // Wait for the old connection and all but one new one to end.
    // Under a protocol whose eviction is a Close with a given code or a frame, an end of
    // another kind is not the eviction: the old session counts as still there.
    let old_there = || !old.evicted(&run.protocol);
    let still_open = |fresh: &[Arc<Conn>]| {
        usize::from(old_there()) + fresh.iter().filter(|c| c.is_open()).count()
    };
    while still_open(&fresh) > 1 && run.now_ns() < eviction_deadline {
        tokio::time::sleep(POLL).await;
    }
    let old_open_at_deadline = old_there();
    let open_at_deadline: Vec<bool> = fresh.iter().map(|c| c.is_open()).collect();

    // Declare the survivor the user's session and probe it.
    let survivor = eviction::single_survivor(&open_at_deadline).map(|i| fresh[i].clone());
    if let Some(s) = &survivor {
        s.declare_stable(run.now_ns());
    }
    let newest_open = fresh
        .iter()
        .zip(&open_at_deadline)
        .rev()
        .find(|(_, open)| **open)
        .map(|(c, _)| c.clone());
    run.set_current(
        user,
        newest_open.or_else(|| Some(old.clone()).filter(|o| o.is_open())),
    );
    // A probe sent after the survivor registered (it had: its handshake completed),
    // shared with every other relogin waiting for one.
    let probe_wait = verify.probe_deadline.0;
    let probe = run.probes.after(run.now_ns(), probe_wait).await;
    let probe_deadline = tokio::time::Instant::now() + probe_wait;
    let mut probe_late_ms = None;
    if let (Some(s), Some(id)) = (&survivor, probe) {
        if !s.wait_probe(id, probe_wait).await && s.is_open() {
            // Missed: wait as long again (at least LATE_GRACE), to tell a late probe from
            // one that never came.
            let deadline = tokio::time::Instant::now();
            if s.wait_probe(id, probe_wait.max(LATE_GRACE)).await {
                probe_late_ms = Some(deadline.elapsed().as_millis() as u64);
            }
        }
    }
    // Give a late eviction until the end of the probe wait.
    let left = probe_deadline.saturating_duration_since(tokio::time::Instant::now());
    let _ = old.wait_ended(left).await;

    let got_probe = |c: &Conn| probe.is_some_and(|id| c.got_probe(id));
    let ours = std::iter::once(&old)
        .chain(fresh.iter())
        .filter(|c| got_probe(c))
        .count() as u64;
    let probe_receipts_elsewhere =
        probe.map_or(0, |id| run.probes.receipts(id).saturating_sub(ours));
    let in_time = |c: &Conn| got_probe(c) && probe_late_ms.is_none();
    let seen = ReloginObservation {
        logged_in_ns: t1,
        ghost_grace_ns: verify.ghost_grace.0.as_nanos() as u64,
        old_open_at_deadline,
        old_open_at_end: old_there(),
        old_got_probe: got_probe(&old),
        old_newest_chat_ns: old.newest_chat(),
        new_sessions: fresh
            .iter()
            .zip(&open_at_deadline)
            .map(|(c, &open_at_deadline)| NewSession {
                open_at_deadline,
                open_at_end: c.is_open(),
                got_probe: in_time(c),
                closed_with: c.ended_how().map(Option::flatten),
            })
            .collect(),
        probe_sent: probe.is_some(),
        probe_receipts_elsewhere,
        probe_late_ms,
    };
    let outcome = eviction::judge(&seen);
    run.recorder.count(user as usize, |c| outcome.count(c));
    tracing::debug!(user, ?outcome, "relogin checked");

    // Clean up what the server left open, so the run goes on with one session per user.
    let now = run.now_ns();
    let kept = |conn: &Conn| survivor.as_ref().is_some_and(|s| s.id == conn.id);
    for conn in std::iter::once(&old).chain(fresh.iter()) {
        if !kept(conn) && conn.is_open() {
            conn.close(now, Duration::from_secs(1)).await;
        }
    }
    if survivor.is_none() {
        // Without a single survivor the user has no trustworthy session.
        for conn in &fresh {
            conn.mark_unstable(now);
        }
        if run.current(user).is_some_and(|c| c.stable_from().is_none()) {
            run.set_current(user, None);
        }
    }
}

/// A relogin under a protocol that does not evict (`eviction = "none"`): the new login is
/// timed, loadgen closes the old session and any extra new one itself, and the newest
/// becomes the user's session. Nothing is judged.
async fn replace_unchecked(run: &Arc<RunState>, user: u32, old: &Arc<Conn>, fresh: Vec<Arc<Conn>>) {
    let now = run.now_ns();
    let Some((newest, extra)) = fresh.split_last() else {
        return;
    };
    for conn in std::iter::once(old).chain(extra) {
        conn.close(now, Duration::from_secs(1)).await;
    }
    newest.declare_stable(run.now_ns());
    run.set_current(user, Some(newest.clone()));
}
