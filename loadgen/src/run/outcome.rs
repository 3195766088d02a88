//! How a run ended: [`Completion`] when it ran (to its end, or stopped early and why), and
//! [`RunError`] when it could not start measuring at all.

use crate::{nofile, ports};

/// How a run went, beyond its thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Every phase ran.
    Complete,
    /// Stopped early; the reports are partial. The string says why.
    Incomplete(String),
}

/// How an incomplete run's reason starts when Ctrl-C stopped it.
pub const INTERRUPTED: &str = "interrupted (Ctrl-C)";

impl Completion {
    /// Stopped by Ctrl-C (the run says nothing about the load).
    pub fn interrupted(&self) -> bool {
        matches!(self, Completion::Incomplete(why) if why.starts_with(INTERRUPTED))
    }
}

/// Errors that stop a run before it measures anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario cannot run on this machine (exit 2).
    #[error(transparent)]
    Limits(#[from] nofile::TooManyConnections),
    /// The connections would run out of ephemeral ports, or a source cannot reach its
    /// target (exit 2).
    #[error(transparent)]
    Ports(#[from] ports::PortsError),
    /// The target could not be reached or started, or refused every login (exit 3).
    #[error("{0}")]
    Unreachable(String),
    /// The login credentials cannot be used: the key or tokens file is unreadable, or
    /// the tokens file lacks a user of the run (exit 2).
    #[error("{0}")]
    Credentials(String),
    /// The scenario's protocol cannot be spoken to the server it names: another
    /// protocol than ours, and no target but the embedded chat-server (exit 2).
    #[error("[protocol] kind = \"{0}\", but without a target the run loads the embedded chat-server, which speaks our chat protocol: give your server's URL (target = \"ws://…\" or --target)")]
    ProtocolWithoutTarget(&'static str),
}
