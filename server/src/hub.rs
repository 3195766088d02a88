//! This node's sessions and what reaching them needs: who is online (the registry), the
//! counters, every receiver's queue bound, the server's millisecond clock, and the
//! deliberate defect, if any. Sessions, the idle sweeper and the cluster bus all deliver
//! through it; it knows nothing of how connections are accepted or logins checked.

use std::time::Instant;

use crate::fault::Fault;
use crate::metrics::Metrics;
use crate::outbox::QueueLimit;
use crate::registry::SessionRegistry;

/// The sessions of one node and the means to reach them.
#[derive(Debug)]
pub(crate) struct Hub {
    /// Who is online, by name.
    pub registry: SessionRegistry,
    /// The counters behind `/metrics`.
    pub metrics: Metrics,
    /// How much one receiver may have queued before it is a slow consumer (M6).
    pub queue_limit: QueueLimit,
    /// Zero of the server's millisecond clock.
    pub epoch: Instant,
    /// The deliberate defect of [`crate::Config::fault`]; `None` in any real use.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub fault: Option<Fault>,
}

impl Hub {
    /// Milliseconds since the server started.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}
