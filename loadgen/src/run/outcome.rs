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

/// How an incomplete run's reason starts when Ctrl-C stopped it (SIGTERM's says so
/// instead: [`crate::interrupt::Reason`]).
pub const INTERRUPTED: &str = "interrupted (Ctrl-C)";

impl Completion {
    /// Stopped by Ctrl-C or SIGTERM (the run says nothing about the load).
    pub fn interrupted(&self) -> bool {
        matches!(self, Completion::Incomplete(why) if why.starts_with("interrupted ("))
    }

    /// Marks a run that was complete so far as stopped by `reason` `when`
    /// (`"during the wind-down"`); an incomplete run keeps its first reason.
    pub fn stop(&mut self, reason: &str, when: &str) {
        if *self == Completion::Complete {
            *self = Completion::Incomplete(format!("{reason} {when}"));
        }
    }

    /// Says which signal stopped the run, when it was not Ctrl-C.
    pub fn name_the_signal(&mut self, reason: Option<&str>) {
        if let (Completion::Incomplete(why), Some(reason)) = (&mut *self, reason) {
            if let Some(rest) = why.strip_prefix(INTERRUPTED) {
                *why = format!("{reason}{rest}");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_marks_a_complete_run_and_names_its_signal() {
        let mut run = Completion::Complete;
        run.stop(INTERRUPTED, "during the wind-down");
        assert_eq!(
            run,
            Completion::Incomplete("interrupted (Ctrl-C) during the wind-down".into())
        );
        assert!(run.interrupted());
        run.name_the_signal(Some("interrupted (SIGTERM)"));
        assert_eq!(
            run,
            Completion::Incomplete("interrupted (SIGTERM) during the wind-down".into())
        );
        assert!(run.interrupted());
        // An earlier reason stays.
        let mut died = Completion::Incomplete("the server died".into());
        died.stop(INTERRUPTED, "during the wind-down");
        died.name_the_signal(Some("interrupted (SIGTERM)"));
        assert_eq!(died, Completion::Incomplete("the server died".into()));
        assert!(!died.interrupted());
    }
}
