//! What the server can be told ([`Config`]), the deliberate defects a test may ask of it
//! ([`Fault`]), and the checks that refuse a configuration no server should run with (a
//! zero that would panic a timer, a fault this build cannot inject, a malformed origin).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authentication;
use crate::budget::InboundBudget;
use crate::fault::Fault;
use crate::origin::AllowedOrigins;

/// Everything the server can be told. [`Config::default`] matches the demo where it has a
/// default (docs/protocol.md O4) and the protocol's limits elsewhere.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (see [`crate::ServerHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Server id, shown in logs and as the `server_id` label in `/metrics`.
    pub server_id: String,
    /// Largest Text message accepted, in bytes, after reassembly (M5).
    pub max_message: usize,
    /// Longest user name accepted, in bytes (S3).
    pub max_name: usize,
    /// Frames a receiver may have queued before it is disconnected with 1013 (M6).
    pub queue: usize,
    /// Bytes a receiver may have queued before it is disconnected with 1013 (M6).
    pub queue_bytes: usize,
    /// How often idle connections are pinged; silence for two intervals drops one (O2).
    pub ping_interval: Duration,
    /// How long a closing connection may take to flush its last frames.
    pub close_timeout: Duration,
    /// How long shutdown waits for connections to drain before giving up (O3).
    pub drain_timeout: Duration,
    /// How long a client may take to send a request head (R4).
    pub header_timeout: Duration,
    /// How long an HTTP response may wait for a client that does not read it before the
    /// connection is ended (R4; before the upgrade only).
    pub unread_timeout: Duration,
    /// How fast one connection may send; a sender over it is slowed by not reading its
    /// socket, never by dropping its messages or its readers (R3).
    pub inbound: InboundBudget,
    /// Most sessions held at once; a login beyond it gets `503` before the upgrade (R5).
    /// `None`: what the open-file limit allows (raised to its hard limit at start) minus
    /// [`crate::FILE_RESERVE`] for the listener, logs and `/metrics` requests.
    pub max_sessions: Option<usize>,
    /// The cluster bus to join, as `redis://HOST:PORT` (docs/protocol.md C1–C6). `None`: a
    /// complete single node (C6). [`crate::Server::start`] fails when Redis cannot be reached
    /// at start; later outages are survived (C4).
    pub bus: Option<String>,
    /// Bind the listen address with `SO_REUSEPORT`, so several nodes on one machine share
    /// one address and the kernel spreads connections over them ([`crate::Server::start`] only).
    pub reuse_port: bool,
    /// Terminate TLS with this configuration ([`crate::tls::server_config`]): `wss://` logins and
    /// `https://` for `/healthz` and `/metrics`. `None`: plain `ws://` and `http://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Authenticated logins (docs/protocol.md A1–A6): a name is taken only with a signed
    /// token whose `sub` is the name. `None`: anyone may log in as any name and evict its
    /// owner (the demo's protocol; the server warns when it listens beyond loopback so).
    pub auth: Option<Authentication>,
    /// Browser origins allowed to log in (A7), as `scheme://host[:port]`; a login whose
    /// `Origin` is not among them gets `403`. Empty: every origin.
    pub allowed_origins: Vec<String>,
    /// A deliberate defect, for proving that checks fail on a broken server. `None` in
    /// any real use; the binary has no flag for it. Only a build with the cargo feature
    /// `fault-injection` accepts one: without it, starting refuses the configuration
    /// with [`crate::Error::FaultInjectionNotBuilt`].
    pub fault: Option<Fault>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 6789)),
            server_id: "1".into(),
            max_message: 64 * 1024,
            max_name: 64,
            queue: 1024,
            queue_bytes: 4 * 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            close_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            unread_timeout: Duration::from_secs(10),
            max_sessions: None,
            inbound: InboundBudget::default(),
            bus: None,
            reuse_port: false,
            tls: None,
            auth: None,
            allowed_origins: Vec::new(),
            fault: None,
        }
    }
}

/// Why a configuration cannot be used (the crate's [`crate::Error`] says it to callers).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Invalid {
    /// A value out of range, named with the reason.
    Value(String),
    /// A fault this build has no code for.
    FaultNotBuilt(Fault),
}

pub(crate) fn validate(config: &Config) -> Result<(), Invalid> {
    faults_built_in(config.fault, cfg!(feature = "fault-injection"))?;
    if let Some(auth) = &config.auth {
        auth.check().map_err(Invalid::Value)?;
    }
    AllowedOrigins::new(&config.allowed_origins).map_err(|e| Invalid::Value(e.to_string()))?;
    let positive = [
        ("max message", config.max_message),
        ("max name", config.max_name),
        ("queue", config.queue),
        ("queue bytes", config.queue_bytes),
        ("max sessions", config.max_sessions.unwrap_or(1)),
    ];
    for (what, value) in positive {
        if value == 0 {
            return Err(Invalid::Value(format!("{what} must be at least 1")));
        }
    }
    // Durations are bounded so that no configuration can panic a timer: the idle sweeper
    // ticks at a quarter of the ping interval (zero would panic, a huge one overflows the
    // clock), and a millisecond is the resolution of the last-heard times it compares.
    let bounded = [
        ("ping interval", config.ping_interval, MIN_PING_INTERVAL),
        (
            "close timeout",
            config.close_timeout,
            Duration::from_nanos(1),
        ),
        (
            "drain timeout",
            config.drain_timeout,
            Duration::from_nanos(1),
        ),
        (
            "header timeout",
            config.header_timeout,
            Duration::from_millis(1),
        ),
        (
            "unread timeout",
            config.unread_timeout,
            Duration::from_millis(1),
        ),
    ];
    let InboundBudget {
        messages_per_sec,
        bytes_per_sec,
        burst,
    } = config.inbound;
    for (what, rate) in [
        ("inbound messages per second", messages_per_sec),
        ("inbound bytes per second", bytes_per_sec),
    ] {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Invalid::Value(format!(
                "{what} must be above zero (got {rate})"
            )));
        }
    }
    for (what, value, least) in
        bounded
            .into_iter()
            .chain([("inbound burst", burst, Duration::from_millis(1))])
    {
        if value < least || value > MAX_DURATION {
            return Err(Invalid::Value(format!(
                "{what} must be at least {least:?} and at most {} hours (got {value:?})",
                MAX_DURATION.as_secs() / 3600
            )));
        }
    }
    Ok(())
}

/// The shortest ping interval accepted.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(10);
/// The longest duration any setting accepts (a day).
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Refuses a `fault` when the code that implements faults is not `built_in`: a server that
/// silently ran without the defect it was asked for would let a test expecting a check to
/// fail pass or fail for the wrong reason.
pub(crate) fn faults_built_in(fault: Option<Fault>, built_in: bool) -> Result<(), Invalid> {
    match fault {
        Some(fault) if !built_in => Err(Invalid::FaultNotBuilt(fault)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_fault_injection_refuses_a_fault() {
        assert_eq!(
            faults_built_in(Some(Fault::SwapPairs), false),
            Err(Invalid::FaultNotBuilt(Fault::SwapPairs))
        );
        assert!(faults_built_in(None, false).is_ok());
        assert!(faults_built_in(Some(Fault::DropEvery(3)), true).is_ok());
    }

    #[test]
    fn zero_and_huge_durations_and_bad_origins_are_refused() {
        let refused = |config: Config| validate(&config).is_err();
        assert!(refused(Config {
            ping_interval: Duration::ZERO,
            ..Config::default()
        }));
        assert!(refused(Config {
            drain_timeout: Duration::from_secs(25 * 3600),
            ..Config::default()
        }));
        assert!(refused(Config {
            queue: 0,
            ..Config::default()
        }));
        assert!(refused(Config {
            allowed_origins: vec!["chat.example".into()],
            ..Config::default()
        }));
        assert!(validate(&Config::default()).is_ok());
    }
}
