//! State shared by every task of one server: its configuration, this node's sessions
//! ([`Hub`]), the connection tasks shutdown waits for, the session limit, the cluster bus,
//! and the login checks. Built once by [`crate::server`], then only read (its counters and
//! registry change through their own methods).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::auth::Verifier;
use crate::bus::Bus;
use crate::config::Config;
use crate::hub::Hub;
use crate::origin::AllowedOrigins;
use crate::shutdown::TaskCount;

/// State shared by every task of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    /// This node's sessions and the means to reach them (the cluster bus holds it too).
    pub hub: Arc<Hub>,
    /// Source of unique connection ids.
    pub next_id: AtomicU64,
    /// Live connection tasks, for shutdown to wait on.
    pub tasks: TaskCount,
    /// Most sessions held at once (R5), resolved from [`Config::max_sessions`].
    pub max_sessions: usize,
    /// The cluster bus, when the server is a node of a cluster.
    pub bus: Option<Arc<Bus>>,
    /// Checks login tokens, when authentication is on ([`Config::auth`]).
    pub verifier: Option<Verifier>,
    /// Browser origins allowed to log in ([`Config::allowed_origins`]).
    pub origins: AllowedOrigins,
    /// Logins accepted so far, for the deliberate `Fault::RegisterAfter101`.
    #[cfg(feature = "fault-injection")]
    pub upgrades: AtomicU64,
    /// Deliveries to matching receivers so far, for the deliberate `Fault::DropEveryTo`.
    #[cfg(feature = "fault-injection")]
    pub fault_deliveries: AtomicU64,
}

impl Shared {
    /// Milliseconds since the server started.
    pub fn now_ms(&self) -> u64 {
        self.hub.now_ms()
    }
}
