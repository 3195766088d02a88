//! Why the server could not start: the one error type of the crate's API.

use std::net::SocketAddr;

use crate::bus;
use crate::config::Invalid;
use crate::fault::Fault;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The listener handed to [`crate::Server::serve`] has no local address.
    #[error("cannot read the listener's local address")]
    Listener(#[source] std::io::Error),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configuration asks for a [`Fault`], but the `fault-injection` feature, which
    /// compiles the faults in, was off when this chat-server was built.
    #[error(
        "cannot inject fault {0:?}: this chat-server was built without the fault-injection feature"
    )]
    FaultInjectionNotBuilt(Fault),
    /// The cluster bus could not be joined at start (bad URL, or Redis unreachable).
    #[error(transparent)]
    Bus(#[from] bus::BusError),
}

impl From<Invalid> for Error {
    fn from(invalid: Invalid) -> Error {
        match invalid {
            Invalid::Value(why) => Error::Config(why),
            Invalid::FaultNotBuilt(fault) => Error::FaultInjectionNotBuilt(fault),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_that_is_not_built_in_says_why() {
        let refused = Error::from(Invalid::FaultNotBuilt(Fault::SwapPairs));
        assert!(
            refused
                .to_string()
                .contains("this chat-server was built without the fault-injection feature"),
            "{refused}"
        );
    }
}
