//! The idle sweeper (docs/protocol.md O2): one task for the whole server, not a timer per
//! connection, so an idle session costs no timer memory.
//!
//! Four times per `ping_interval` it looks at when each session last heard from its peer:
//! silent for one interval gets a Ping (once — not again until the peer is heard); silent
//! for two is closed with 4002 `idle timeout`. Sweeping at a quarter interval means a Ping
//! goes out at most a quarter interval late, so a peer that answers is never dropped
//! because the sweep's ticks happened to fall just before its last frame.

use std::sync::Arc;

use crate::frame::{self, close_code};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::shutdown::ShutdownSignal;

/// Runs until shutdown.
pub(crate) async fn run(shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let interval = shared.config.ping_interval;
    let interval_ms = interval.as_millis() as u64;
    let mut ticks = tokio::time::interval(interval / 4);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = shutdown.fired() => return,
            _ = ticks.tick() => {}
        }
        let now = shared.now_ms();
        for session in shared.hub.registry.snapshot() {
            let silent = now.saturating_sub(session.last_heard_ms());
            if silent >= 2 * interval_ms {
                let bye = frame::close(close_code::IDLE, "idle timeout");
                if session.close(Some(bye), false) {
                    Metrics::inc(&shared.hub.metrics.idle_disconnects);
                }
            } else if silent >= interval_ms {
                session.ping_if_unanswered(now, shared.hub.queue_limit, &shared.hub.metrics);
            }
        }
    }
}
