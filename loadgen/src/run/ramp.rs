//! The ramp: every user this process plays logs in at the scenario's rate before the
//! measured phases; a run stops here when nothing answers, or when every login is refused
//! its proof (401/403), rather than run a scenario of failures.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::outcome::{Completion, INTERRUPTED};
use super::state::RunState;
use super::{plan, user};
use crate::connection::ConnectError;
use crate::progress::Progress;

/// Logs every user in at the ramp's rate. `Err` with the reason when no login succeeded.
pub async fn ramp(
    run: &Arc<RunState>,
    progress: &Progress,
    interrupt: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Result<Completion, String> {
    let count = run.segment.user_count(run.users());
    let rate = plan::ramp_rate(&run.scenario);
    let ramp_start = run.now_ns();
    // A login is spawned when its time comes, not all at once and left to sleep: only the
    // logins in flight hold a handshake's state (a few KiB each), not every user's.
    let mut due = run.segment.users(run.users()).peekable();
    let mut logins = JoinSet::new();
    let mut completion = Completion::Complete;
    let mut interrupted = false;
    let (mut connected, mut failed, mut unreachable) = (0u64, 0u64, None);
    // Logins refused for their proof (401/403): the first refusal's words, and how many.
    let (mut refused, mut first_refusal) = (0u64, None);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while !logins.is_empty() || due.peek().is_some() {
        let next_at = due
            .peek()
            .map(|&index| ramp_start + plan::login_offset_ns(index, rate));
        tokio::select! {
            () = tokio::time::sleep_until(run.clock.instant_at(next_at.unwrap_or(0))), if next_at.is_some() => {
                // Compared as instants, as the sleep was: before a split run's common start
                // the run clock stands at zero while its workers log in.
                let now = tokio::time::Instant::now();
                let login_at = |i: u32| run.clock.instant_at(ramp_start + plan::login_offset_ns(i, rate));
                while let Some(index) = due.next_if(|&i| login_at(i) <= now) {
                    let run = run.clone();
                    logins.spawn(async move { (index, user::open(&run, index, true).await) });
                }
            }
            // Guarded: an empty set answers at once, and the loop would spin between logins.
            joined = logins.join_next(), if !logins.is_empty() => match joined {
                Some(Ok((index, Ok(conn)))) => {
                    run.set_current(index, Some(conn));
                    connected += 1;
                }
                Some(Ok((index, Err(error)))) => {
                    failed += 1;
                    run.recorder.count(index as usize, |c| c.connect_errors += 1);
                    if error.unreachable() && unreachable.is_none() {
                        unreachable = Some(error.to_string());
                    }
                    if let ConnectError::Refused { status: status @ (401 | 403), body } = &error {
                        refused += 1;
                        first_refusal.get_or_insert_with(|| crate::connection::refusal_said(*status, body));
                    }
                    // Nothing answers, or every login is refused its proof: stop trying
                    // rather than run a scenario of failures.
                    let enough = connected == 0 && failed >= 10.min(u64::from(count));
                    if enough && (unreachable.is_some() || refused == failed) {
                        logins.abort_all();
                        due.by_ref().for_each(drop);
                    }
                }
                _ => {}
            },
            _ = ticker.tick() => progress.ramp(connected, failed),
            _ = &mut *interrupt, if !interrupted => {
                interrupted = true;
                logins.abort_all();
                due.by_ref().for_each(drop);
                completion = Completion::Incomplete(format!("{INTERRUPTED} during the ramp"));
            }
        }
    }
    if connected == 0 {
        if let Some(refusal) = first_refusal.filter(|_| refused == failed) {
            return Err(format!("every login refused: {refusal}"));
        }
        return Err(unreachable.unwrap_or_else(|| "every login failed".into()));
    }
    Ok(completion)
}
