//! Token renewal (docs/protocol.md A6): a server that authenticates closes a session with
//! 4003 when its token expires, and a real client then logs in again with a fresh token.
//! So does a simulated user: the expired session's end is expected (counted as a token
//! renewal, not a disconnect), and messages between its end and the new login's
//! confirmation are neither expected nor lost, as for churn. The probe user renews the
//! same way, so relogin probes keep flowing through a long run.
//!
//! A session's reader reports its expiry to the run ([`RunState::token_expired`]); this
//! task logs the user in again, so the reader never starts a login itself.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::conn::Conn;
use super::state::RunState;
use super::user;

/// Renews every session reported on `expired` until the run stops.
pub async fn serve(run: Arc<RunState>, mut expired: mpsc::UnboundedReceiver<Arc<Conn>>) {
    loop {
        tokio::select! {
            _ = run.stopped() => return,
            conn = expired.recv() => match conn {
                Some(conn) => {
                    tokio::spawn(renew(run.clone(), conn));
                }
                None => return,
            },
        }
    }
}

/// Logs `conn`'s user in again after its token expired, unless the run is stopping, the
/// connection is no longer the user's session, or a relogin or churn is already replacing
/// it.
async fn renew(run: Arc<RunState>, conn: Arc<Conn>) {
    if run.is_stopping() {
        return;
    }
    let user = conn.user;
    if user == run.probe_user() {
        if let Ok(probe) = user::open(&run, user, true).await {
            run.set_prober(probe);
        }
        return;
    }
    let current = run.current(user).is_some_and(|c| c.id == conn.id);
    if !current || !run.claim(user) {
        return;
    }
    run.set_current(user, None);
    match user::open(&run, user, true).await {
        Ok(renewed) => run.set_current(user, Some(renewed)),
        Err(_) => run.recorder.count(user as usize, |c| c.connect_errors += 1),
    }
    run.release(user);
}
