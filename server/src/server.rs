//! The machinery behind [`crate::Server`]: bind the listener, build the server's shared
//! state, join the cluster bus, then accept connections until shutdown — each one handed
//! to [`crate::http`] (after the TLS handshake, for `wss://`) — while the idle sweeper
//! ([`crate::keepalive`]) and the heap trim ([`crate::heap_trim`]) run beside it.
//!
//! `accept` errors back off and retry (out of file descriptors, every pending connection
//! fails at once: the warning says so once a second, with a count); only shutdown ends
//! the loop.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use either_io::EitherIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::auth::Verifier;
use crate::config::{self, Config};
use crate::error::Error;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::origin::AllowedOrigins;
use crate::outbox::QueueLimit;
use crate::registry::SessionRegistry;
use crate::shared::Shared;
use crate::shutdown::{ShutdownSignal, TaskCount};
use crate::transport::ClientStream;
use crate::{bus, heap_trim, http, keepalive};

/// A server that is serving: where, its state, the switch that stops it, and the accept
/// loop (which owns the listener).
pub(crate) struct Running {
    pub local_addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub stop: watch::Sender<bool>,
    pub accept: JoinHandle<()>,
}

/// Serves on `listener` with `config` (checked first) on the current tokio runtime.
pub(crate) async fn serve(listener: TcpListener, config: Config) -> Result<Running, Error> {
    config::validate(&config)?;
    let local_addr = listener.local_addr().map_err(Error::Listener)?;
    let verifier = match &config.auth {
        Some(auth) => Some(Verifier::new(auth, config.fault).map_err(Error::Config)?),
        None => None,
    };
    let origins =
        AllowedOrigins::new(&config.allowed_origins).map_err(|e| Error::Config(e.to_string()))?;
    let (stop, signal) = ShutdownSignal::new();
    let (bus, outbound) = match &config.bus {
        Some(url) => {
            let (bus, outbound) = bus::Bus::new(url, bus::Keys::default(), config.fault)?;
            (Some(bus), Some(outbound))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared {
        hub: Arc::new(Hub {
            registry: registry_for(&config),
            metrics: Metrics::default(),
            queue_limit: QueueLimit {
                frames: config.queue,
                bytes: config.queue_bytes,
            },
            epoch: Instant::now(),
            fault: config.fault,
        }),
        next_id: AtomicU64::new(1),
        tasks: TaskCount::default(),
        max_sessions: resolve_max_sessions(config.max_sessions),
        bus,
        verifier,
        origins,
        #[cfg(feature = "fault-injection")]
        upgrades: AtomicU64::new(0),
        #[cfg(feature = "fault-injection")]
        fault_deliveries: AtomicU64::new(0),
        config,
    });
    if let (Some(bus), Some(outbound)) = (&shared.bus, outbound) {
        let id = shared.config.server_id.clone();
        bus::link::start(
            shared.hub.clone(),
            id,
            bus.clone(),
            outbound,
            signal.clone(),
        )
        .await
        .map_err(|why| bus::BusError::Unreachable {
            url: bus.url().into(),
            why,
        })?;
        info!(id = %shared.config.server_id, bus = bus.url(), "joined the cluster bus");
    }
    info!(listen = %local_addr, id = %shared.config.server_id, "chat server started");
    match &shared.config.auth {
        Some(auth) => info!(
            algorithm = %auth.key.algorithm(),
            leeway_s = auth.leeway.as_secs(),
            "logins need a signed token (JWT) whose sub is the name"
        ),
        None if !local_addr.ip().is_loopback() => warn!(
            listen = %local_addr,
            "no authentication: anyone who reaches this address can log in as any name \
             and evict its owner (give --jwt-secret-file or --jwt-public-key)"
        ),
        None => {}
    }
    if !shared.origins.is_empty() {
        info!(origins = %shared.origins, "browser origins allowed to log in");
    }
    let accept = tokio::spawn(accept_loop(listener, shared.clone(), signal.clone()));
    tokio::spawn(heap_trim::run(signal.clone()));
    tokio::spawn(keepalive::run(shared.clone(), signal));
    Ok(Running {
        local_addr,
        shared,
        stop,
        accept,
    })
}

/// The session registry `config` asks for: the correct one, or with the fault-injection
/// feature and [`crate::Fault::DeleteByName`], the demo's bug.
#[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))]
fn registry_for(config: &Config) -> SessionRegistry {
    #[cfg(feature = "fault-injection")]
    if config.fault == Some(crate::fault::Fault::DeleteByName) {
        return SessionRegistry::deleting_by_name();
    }
    SessionRegistry::default()
}

/// A listening socket on `addr`, with `SO_REUSEPORT` when asked (several nodes on one
/// address).
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// File descriptors kept for everything that is not a session when the session limit
/// comes from the open-file limit: the listener, logs, `/metrics` scrapes, logins on their
/// way in.
pub const FILE_RESERVE: usize = 64;

/// The session limit: as configured, or what the open-file limit allows once raised to its
/// hard limit (docs/protocol.md R5), minus [`FILE_RESERVE`].
fn resolve_max_sessions(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| {
        let files = usize::try_from(procstat::raise_open_file_limit()).unwrap_or(usize::MAX);
        files.saturating_sub(FILE_RESERVE).max(1)
    })
}

/// Accepts connections until shutdown. Errors (such as running out of file descriptors)
/// back off and retry rather than ending the server.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let acceptor = shared
        .config
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    let mut backoff = Duration::from_millis(5);
    // Out of file descriptors, accept fails for every pending connection: say so once a
    // second with a count, not once per attempt (R5).
    let mut warnings = WarnThrottle::new(Duration::from_secs(1));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.fired() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                match &acceptor {
                    Some(acceptor) => {
                        let handshake = tls_handshake(acceptor.clone(), stream, shared.clone());
                        let shutdown = shutdown.clone();
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            if let Some(tls) = handshake.await {
                                http::serve(EitherIo::Tls(Box::new(tls)), shared, shutdown).await;
                            }
                        });
                    }
                    None => {
                        let stream: ClientStream = EitherIo::Plain(stream);
                        tokio::spawn(http::serve(stream, shared.clone(), shutdown.clone()));
                    }
                }
            }
            Err(error) => {
                if let Some(suppressed) = warnings.admit(Instant::now()) {
                    warn!(%error, ?backoff, suppressed, "accept failed; retrying");
                }
                tokio::select! {
                    _ = shutdown.fired() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The TLS handshake of an accepted connection, within the header timeout (a client that
/// never finishes its handshake holds a socket no longer than one that never sends its
/// request head); `None` when it failed, counted in `/metrics`.
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let _task = shared.tasks.track();
    match tokio::time::timeout(shared.config.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            Metrics::inc(&shared.hub.metrics.tls_handshakes);
            if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                Metrics::inc(&shared.hub.metrics.tls_resumed);
            }
            Some(tls)
        }
        Ok(Err(error)) => {
            Metrics::inc(&shared.hub.metrics.tls_handshake_failures);
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            Metrics::inc(&shared.hub.metrics.tls_handshake_failures);
            None
        }
    }
}

/// Lets a repeated warning through at most once per period, counting what it held back.
#[derive(Debug)]
struct WarnThrottle {
    period: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl WarnThrottle {
    fn new(period: Duration) -> Self {
        WarnThrottle {
            period,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(n)` when a warning at `now` may be logged, `n` being how many were held back
    /// since the last one; `None` (and counted) otherwise.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The self dev-dependency in Cargo.toml builds the tests with the faults compiled in;
    // a test build without them stops here rather than failing (or skipping) later.
    const _: () = assert!(
        cfg!(feature = "fault-injection"),
        "chat-server's tests need the fault-injection feature (see its dev-dependencies)"
    );

    #[test]
    fn a_repeated_warning_is_logged_once_a_second_with_a_count() {
        let start = Instant::now();
        let mut throttle = WarnThrottle::new(Duration::from_secs(1));
        assert_eq!(throttle.admit(start), Some(0));
        let held = (1..200).filter_map(|ms| throttle.admit(start + Duration::from_millis(ms * 5)));
        assert_eq!(held.count(), 0, "nothing more within the second");
        assert_eq!(throttle.admit(start + Duration::from_secs(1)), Some(199));
        assert_eq!(throttle.admit(start + Duration::from_millis(1500)), None);
    }

    #[test]
    fn the_session_limit_comes_from_the_open_file_limit_unless_set() {
        assert_eq!(resolve_max_sessions(Some(7)), 7);
        let files = procstat::raise_open_file_limit() as usize;
        assert_eq!(resolve_max_sessions(None), files - FILE_RESERVE);
    }
}
