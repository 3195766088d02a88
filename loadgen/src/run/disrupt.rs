//! Plays the relogins and churn of every phase at the times the plan fixes, each on a
//! random idle user that does not send (chosen with the scenario's `seed`).

use std::sync::Arc;

use tokio::task::JoinSet;

use super::plan::Disruption;
use super::state::RunState;
use super::{churn, relogin};
use crate::random::SplitMix;

/// How many random users to try before a due disruption is skipped (all tried were busy).
const PICK_TRIES: usize = 8;

/// Schedules relogins and churn for every phase on users from `first_eligible` on (the
/// senders come first and are left alone). Returns when the phases are over or the run
/// stops, after the disruptions it started have finished.
pub async fn disrupt(run: Arc<RunState>, first_eligible: u32) {
    let count = run.users();
    if first_eligible >= count {
        return;
    }
    let span = u64::from(count - first_eligible);
    let mut random = SplitMix::new(run.scenario.seed);
    let mut tasks = JoinSet::new();
    for phase in run.plan().to_vec() {
        for (at, disruption) in phase.disruptions() {
            let stopped = tokio::select! {
                _ = run.stopped() => true,
                _ = tokio::time::sleep_until(run.clock.instant_at(at)) => false,
            };
            if stopped {
                drain(&mut tasks).await;
                return;
            }
            let chosen = (0..PICK_TRIES)
                .map(|_| first_eligible + (random.next_u64() % span) as u32)
                .find(|&candidate| run.claim(candidate));
            let Some(user) = chosen else {
                run.recorder.count(0, |c| c.disruptions_skipped += 1);
                continue;
            };
            let run = run.clone();
            let offline = phase.churn_offline;
            tasks.spawn(async move {
                match disruption {
                    Disruption::Relogin => relogin::relogin(run.clone(), user).await,
                    Disruption::Churn => churn::churn(run.clone(), user, offline).await,
                }
                run.release(user);
            });
            while tasks.try_join_next().is_some() {}
        }
    }
    drain(&mut tasks).await;
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}
