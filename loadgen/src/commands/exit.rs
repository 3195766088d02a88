//! The exit codes of every `loadgen` subcommand, in one place.
//!
//! A CI job reads loadgen's verdict from its exit code, so every subcommand uses the same
//! numbers for the same kind of result: 0 it passed, 1 the thing under test failed a
//! check, 2 loadgen was used wrongly, 3 the check could not be carried out. `client`
//! adds three codes of its own for how a session ended. Subcommand bodies return an
//! [`Exit`]; only `main.rs` turns it into a process exit code.

use std::process::ExitCode;

/// What a subcommand concluded, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: every threshold or MUST check passed, the gate found no regression, the
    /// capacity search ran to its end; for `client`, we closed the session ourselves.
    Passed = 0,
    /// 1: the server under test failed: a threshold, a MUST check, a regression or a
    /// correctness failure in the gate, a capacity below `--expect-at-least`.
    Failed = 1,
    /// 2: bad usage: a flag, a scenario or capacity file (file, field and reason are
    /// printed), or a load that cannot fit this process's open-file limit.
    Usage = 2,
    /// 3: could not run: the server could not be started or reached, it died mid-run,
    /// Ctrl-C, or a report could not be written. Reports written so far are marked
    /// incomplete.
    CouldNotRun = 3,
    /// 4 (`client`): evicted — another login of the same name replaced the session
    /// (Close 4001).
    Evicted = 4,
    /// 5 (`client`): the server ended the session otherwise (another Close code, or the
    /// connection dropped, which is also how the Go demo evicts).
    EndedByServer = 5,
    /// 6 (`client`): the session's token expired — the server closed it with 4003
    /// (docs/protocol.md A6); log in again with a fresh token.
    TokenExpired = 6,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_numbers() {
        let all = [
            (Exit::Passed, 0),
            (Exit::Failed, 1),
            (Exit::Usage, 2),
            (Exit::CouldNotRun, 3),
            (Exit::Evicted, 4),
            (Exit::EndedByServer, 5),
            (Exit::TokenExpired, 6),
        ];
        for (exit, code) in all {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }
}
