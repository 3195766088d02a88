//! The open-file limit, dealt with explicitly: every simulated connection is a socket, and
//! a process here may hold at most the hard `RLIMIT_NOFILE` (20,000 on our CI machines,
//! not raisable even by root). Raise the soft limit to the hard one, and refuse a scenario
//! that cannot fit with a message that says why and what to do.

/// File descriptors kept for everything that is not a user connection.
const RESERVE: u64 = 64;

/// The scenario needs more descriptors than the process may have.
#[derive(Debug, thiserror::Error)]
#[error(
    "this scenario holds up to {needed} connections at once, but this process may open only \
     {limit} files (ulimit -n; the hard limit cannot be raised from inside). Lower users.count \
     (or relogin_rate x relogin_concurrency), or split the users across several loadgen \
     processes, each with its own limit"
)]
pub struct TooManyConnections {
    pub needed: u64,
    pub limit: u64,
}

/// Raises the soft limit as far as allowed and checks `connections` fit.
pub fn ensure(connections: u64) -> Result<u64, TooManyConnections> {
    let limit = procstat::raise_open_file_limit();
    if connections + RESERVE > limit {
        return Err(TooManyConnections {
            needed: connections,
            limit: limit.saturating_sub(RESERVE),
        });
    }
    Ok(limit)
}

/// Connections this process may hold: the raised limit minus the reserve.
pub fn available() -> u64 {
    procstat::raise_open_file_limit().saturating_sub(RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_fit() {
        let limit = ensure(10).unwrap();
        let error = ensure(limit).unwrap_err();
        assert_eq!(error.needed, limit);
        assert!(error.to_string().contains("ulimit -n"));
    }
}
