//! Connect/disconnect churn: a user leaves (Close 1000), stays away for `churn_offline`,
//! and logs in again. Its sessions are unstable from the moment it leaves until the new
//! login is confirmed, so messages in between are neither expected nor lost.

use std::sync::Arc;
use std::time::Duration;

use crate::run::Ctx;
use crate::user;

/// One leave-and-rejoin of `user`.
pub async fn churn(ctx: Arc<Ctx>, user: u32, offline: Duration) {
    let Some(conn) = ctx.current(user) else {
        return;
    };
    ctx.set_current(user, None);
    ctx.recorder.count(user as usize, |c| c.churn_leaves += 1);
    conn.close(ctx.now_ns(), Duration::from_secs(1)).await;
    let mut stop = ctx.stop.subscribe();
    tokio::select! {
        _ = stop.wait_for(|s| *s) => return,
        _ = tokio::time::sleep(offline) => {}
    }
    match user::open(&ctx, user, true).await {
        Ok(conn) => ctx.set_current(user, Some(conn)),
        Err(_) => ctx.recorder.count(user as usize, |c| c.connect_errors += 1),
    }
}
