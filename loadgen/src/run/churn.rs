//! Connect/disconnect churn: a user leaves (Close 1000), stays away for `churn_offline`,
//! and logs in again. Its sessions are unstable from the moment it leaves until the new
//! login is confirmed, so messages in between are neither expected nor lost.

use std::sync::Arc;
use std::time::Duration;

use super::state::RunState;
use super::user;

/// One leave-and-rejoin of `user`.
pub async fn churn(run: Arc<RunState>, user: u32, offline: Duration) {
    let Some(conn) = run.current(user) else {
        return;
    };
    run.set_current(user, None);
    run.recorder.count(user as usize, |c| c.churn_leaves += 1);
    conn.close(run.now_ns(), Duration::from_secs(1)).await;
    tokio::select! {
        _ = run.stopped() => return,
        _ = tokio::time::sleep(offline) => {}
    }
    match user::open(&run, user, true).await {
        Ok(conn) => run.set_current(user, Some(conn)),
        Err(_) => run.recorder.count(user as usize, |c| c.connect_errors += 1),
    }
}
