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
    let mut logins = JoinSet::new();
    for index in run.segment.users(run.users()) {
        let run = run.clone();
        let at = ramp_start + plan::login_offset_ns(index, rate);
        logins.spawn(async move {
            tokio::time::sleep_until(run.clock.instant_at(at)).await;
            (index, user::open(&run, index, true).await)
        });
    }
    let mut completion = Completion::Complete;
    let mut interrupted = false;
    let (mut connected, mut failed, mut unreachable) = (0u64, 0u64, None);
    // Logins refused for their proof (401/403): the first refusal's words, and how many.
    let (mut refused, mut first_refusal) = (0u64, None);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while !logins.is_empty() {
        tokio::select! {
            joined = logins.join_next() => match joined {
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
                    }
                }
                _ => {}
            },
            _ = ticker.tick() => progress.ramp(connected, failed),
            _ = &mut *interrupt, if !interrupted => {
                interrupted = true;
                logins.abort_all();
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
