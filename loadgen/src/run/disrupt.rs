//! Plays the relogins and churn of every phase at the times the plan fixes, each on a
//! random idle user that does not send (chosen with the scenario's `seed`).
//!
//! In a split run ([`crate::segment`]) the plan's k-th disruption belongs to segment
//! `k % N`, which picks among its own users with a seed of its own: together the segments
//! play every disruption of the plan, each exactly once.

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
    let segment = run.segment;
    // This segment's users that may be disrupted: first_eligible.. that it owns.
    let eligible: Vec<u32> = segment
        .users(run.users())
        .filter(|&u| u >= first_eligible)
        .collect();
    if eligible.is_empty() {
        return;
    }
    let span = eligible.len() as u64;
    let mut random = SplitMix::new(if segment.is_split() {
        run.scenario.seed ^ (u64::from(segment.index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    } else {
        run.scenario.seed
    });
    let mut tasks = JoinSet::new();
    let mut due = 0u64;
    let mut stopping = false;
    for phase in run.plan().to_vec() {
        for (at, disruption) in phase.disruptions() {
            due += 1;
            if (due - 1) % u64::from(segment.count.max(1)) != u64::from(segment.index) {
                continue;
            }
            let stopped = stopping
                || tokio::select! {
                    _ = run.stopped() => true,
                    _ = tokio::time::sleep_until(run.clock.instant_at(at)) => false,
                };
            if stopped {
                // Due in the phases, but loadgen reached it only after they ended (it ran
                // late): not started, and said so.
                stopping = true;
                if at <= run.now_ns() {
                    run.recorder.count(0, |c| c.disruptions_skipped += 1);
                }
                continue;
            }
            let chosen = (0..PICK_TRIES)
                .map(|_| eligible[(random.next_u64() % span) as usize])
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
