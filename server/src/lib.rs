//! `chat-server`: the WebSocket chat protocol of `docs/protocol.md`, on tokio, hyper and
//! fastwebsockets, done right where the Go demo it came from is wrong.
//!
//! This is the API an embedder needs and nothing more: a [`Config`], [`Server::start`]
//! (bind and serve) or [`Server::serve`] (serve a listener the caller made), and the
//! [`ServerHandle`] they return, which tells the bound address, reads the counters as a
//! [`MetricsSnapshot`] and shuts the server down. The server runs on the caller's tokio
//! runtime until [`ServerHandle::shutdown`] (or until the handle is dropped). [`Fault`]
//! exists for test harnesses that must prove their checks fail on a broken server.
//!
//! The data path, one private module each: `http` (accept a login, `login` checks the
//! name) → `session` (read loop, writer) → `registry` (who is online) → `outbox` (one
//! receiver's bounded queue) → `frame` (bytes on the wire); beside it `keepalive` (the
//! idle sweeper), `metrics` (the counters behind `/metrics`) and `shutdown` (the signal
//! every task watches). With a cluster bus (`Config::bus`), `bus` joins nodes into one
//! server over Redis (docs/protocol.md C1–C6); without one the server is a complete
//! single node. With `Config::tls` ([`tls::server_config`]) connections are TLS
//! (`wss://`), through `transport`, which gives plain and TLS connections one type.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chat_server::Error> {
//! let config = chat_server::Config { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
//! let server = chat_server::Server::start(config).await?;
//! println!("ws://{}/?user=ann", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod auth;
mod budget;
mod bus;
mod frame;
mod http;
mod keepalive;
mod login;
mod metrics;
mod origin;
mod outbox;
mod registry;
mod session;
mod shutdown;
pub mod tls;
mod transport;
mod unread;

pub use auth::{Authentication, DEFAULT_LEEWAY, MAX_LEEWAY};
pub use budget::InboundBudget;
pub use bus::BusError;
/// The key types of [`Authentication`] (and what loadgen signs with).
pub use jwt_keys;
/// How the server decodes a login's query values (`?user=`, `?token=`): `%XX` escapes and
/// `+` for a space, anything else as it is — for a client that must name a user exactly
/// as the server will read it.
pub use login::percent_decode;
pub use metrics::MetricsSnapshot;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::outbox::QueueLimit;
use crate::registry::SessionRegistry;
use crate::shutdown::{ShutdownSignal, TaskCount};
use crate::transport::ClientStream;
use either_io::EitherIo;

/// Everything the server can be told. [`Config::default`] matches the demo where it has a
/// default (docs/protocol.md O4) and the protocol's limits elsewhere.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (see [`ServerHandle::local_addr`]).
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
    /// [`FILE_RESERVE`] for the listener, logs and `/metrics` requests.
    pub max_sessions: Option<usize>,
    /// The cluster bus to join, as `redis://HOST:PORT` (docs/protocol.md C1–C6). `None`: a
    /// complete single node (C6). [`Server::start`] fails when Redis cannot be reached
    /// at start; later outages are survived (C4).
    pub bus: Option<String>,
    /// Bind the listen address with `SO_REUSEPORT`, so several nodes on one machine share
    /// one address and the kernel spreads connections over them ([`Server::start`] only).
    pub reuse_port: bool,
    /// Terminate TLS with this configuration ([`tls::server_config`]): `wss://` logins and
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
    /// with [`Error::FaultInjectionNotBuilt`].
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

/// Deliberate defects, each reproducing a bug of the Go demo, so tests can show that a
/// check catches it. The type always exists, so code that names faults compiles either
/// way; the defects themselves are compiled in only with the `fault-injection` feature
/// (see [`Config::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A session that ends removes its user's entry by name, even when that entry is
    /// already its successor's: after a relogin the new session silently stops receiving.
    DeleteByName,
    /// Every Nth message received by the server is broadcast to nobody (message loss).
    DropEvery(u64),
    /// Every `every`-th chat delivery to a receiver whose name ends with the byte
    /// `name_suffix` is not sent: loss that only some users see (e.g. one segment of a
    /// split loadgen run, whose users are every other index).
    DropEveryTo { every: u64, name_suffix: u8 },
    /// Each sender's messages are broadcast in swapped pairs: 2, 1, 4, 3, … (the demo's
    /// goroutine per message loses order the same way, only less predictably).
    SwapPairs,
    /// The demo's order of a login: the `101` goes out first and the session registers
    /// afterwards, so a login the client sent after seeing another's `101` can register
    /// first and then be evicted by it (docs/protocol.md R6). To make the race certain,
    /// every second login (the 2nd, 4th, …) registers 100 ms after its `101`, the others
    /// at once.
    RegisterAfter101,
    /// A cluster node that ignores login notices from other nodes: eviction by name only
    /// among its own sessions, so the same name can be online on two nodes at once
    /// (docs/protocol.md C3).
    LocalEvictionOnly,
    /// A cluster node that publishes each sender's messages to the bus in swapped pairs
    /// (its own users get them in order): per-sender order breaks only across nodes
    /// (docs/protocol.md C2).
    BusSwapPairs,
    /// A relogin's new session is closed with `1013` as soon as it has replaced the old
    /// one, as a server shedding load would: the user is left without a session, by the
    /// server's explicit choice (for proving that loadgen names that cause, not "zombie").
    CloseReplacementWith1013,
    /// With authentication: a token with `alg: none` and no signature is accepted (A2).
    JwtAcceptAlgNone,
    /// With authentication: `exp` is ignored, at login and during the session (A3, A6).
    JwtIgnoreExpiry,
    /// With authentication: any signature is accepted, by any key or none (A2).
    JwtIgnoreSignature,
    /// With authentication: the session's name comes from `?user=` when one is given,
    /// whatever the token's `sub` (A4): any valid token takes any name.
    JwtNameFromUser,
}

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
    /// The listener handed to [`Server::serve`] has no local address.
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

/// State shared by every task of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Config,
    queue_limit: QueueLimit,
    registry: SessionRegistry,
    metrics: Metrics,
    /// Source of unique connection ids.
    next_id: AtomicU64,
    /// Zero of the server's millisecond clock.
    epoch: Instant,
    /// Live connection tasks, for shutdown to wait on.
    tasks: TaskCount,
    /// Most sessions held at once (R5), resolved from [`Config::max_sessions`].
    max_sessions: usize,
    /// The cluster bus, when the server is a node of a cluster.
    bus: Option<Arc<bus::Bus>>,
    /// Checks login tokens, when authentication is on ([`Config::auth`]).
    verifier: Option<auth::Verifier>,
    /// Browser origins allowed to log in ([`Config::allowed_origins`]).
    origins: origin::AllowedOrigins,
    /// Logins accepted so far, for the deliberate `Fault::RegisterAfter101`.
    #[cfg(feature = "fault-injection")]
    upgrades: AtomicU64,
    /// Deliveries to matching receivers so far, for the deliberate `Fault::DropEveryTo`.
    #[cfg(feature = "fault-injection")]
    fault_deliveries: AtomicU64,
}

impl Shared {
    /// Milliseconds since the server started.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// The server type; see [`Server::start`] and [`Server::serve`].
pub struct Server;

impl Server {
    /// Binds `config.listen` and starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> Result<ServerHandle, Error> {
        validate(&config)?;
        let listener = bind(config.listen, config.reuse_port).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        Server::serve(listener, config).await
    }

    /// Serves on `listener`, which the caller has bound (for instance to hold the port
    /// from before the server is configured, or to set socket options), on the current
    /// tokio runtime. `config.listen` is not used.
    pub async fn serve(listener: TcpListener, config: Config) -> Result<ServerHandle, Error> {
        validate(&config)?;
        let local_addr = listener.local_addr().map_err(Error::Listener)?;
        let verifier = match &config.auth {
            Some(auth) => Some(auth::Verifier::new(auth, config.fault).map_err(Error::Config)?),
            None => None,
        };
        let origins = origin::AllowedOrigins::new(&config.allowed_origins)
            .map_err(|e| Error::Config(e.to_string()))?;
        let (stop, signal) = ShutdownSignal::new();
        let (bus, outbound) = match &config.bus {
            Some(url) => {
                let (bus, outbound) = bus::Bus::new(url, bus::Keys::default(), config.fault)?;
                (Some(bus), Some(outbound))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            queue_limit: QueueLimit {
                frames: config.queue,
                bytes: config.queue_bytes,
            },
            registry: registry_for(&config),
            metrics: Metrics::default(),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
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
            bus::link::start(shared.clone(), bus.clone(), outbound, signal.clone())
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
        tokio::spawn(keepalive::run(shared.clone(), signal));
        Ok(ServerHandle {
            local_addr,
            shared,
            stop,
            accept: Some(accept),
        })
    }
}

/// The session registry `config` asks for: the correct one, or with the fault-injection
/// feature and [`Fault::DeleteByName`], the demo's bug.
#[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))]
fn registry_for(config: &Config) -> SessionRegistry {
    #[cfg(feature = "fault-injection")]
    if config.fault == Some(Fault::DeleteByName) {
        return SessionRegistry::deleting_by_name();
    }
    SessionRegistry::default()
}

fn validate(config: &Config) -> Result<(), Error> {
    faults_built_in(config.fault, cfg!(feature = "fault-injection"))?;
    if let Some(auth) = &config.auth {
        auth.check().map_err(Error::Config)?;
    }
    origin::AllowedOrigins::new(&config.allowed_origins)
        .map_err(|e| Error::Config(e.to_string()))?;
    let positive = [
        ("max message", config.max_message),
        ("max name", config.max_name),
        ("queue", config.queue),
        ("queue bytes", config.queue_bytes),
        ("max sessions", config.max_sessions.unwrap_or(1)),
    ];
    for (what, value) in positive {
        if value == 0 {
            return Err(Error::Config(format!("{what} must be at least 1")));
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
            return Err(Error::Config(format!(
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
            return Err(Error::Config(format!(
                "{what} must be at least {least:?} and at most {} hours (got {value:?})",
                MAX_DURATION.as_secs() / 3600
            )));
        }
    }
    Ok(())
}

/// A listening socket on `addr`, with `SO_REUSEPORT` when asked (several nodes on one
/// address).
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
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

/// The shortest ping interval accepted.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(10);
/// The longest duration any setting accepts (a day).
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Refuses a `fault` when the code that implements faults is not `built_in`: a server that
/// silently ran without the defect it was asked for would let a test expecting a check to
/// fail pass or fail for the wrong reason.
fn faults_built_in(fault: Option<Fault>, built_in: bool) -> Result<(), Error> {
    match fault {
        Some(fault) if !built_in => Err(Error::FaultInjectionNotBuilt(fault)),
        _ => Ok(()),
    }
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
            Metrics::inc(&shared.metrics.tls_handshakes);
            if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                Metrics::inc(&shared.metrics.tls_resumed);
            }
            Some(tls)
        }
        Ok(Err(error)) => {
            Metrics::inc(&shared.metrics.tls_handshake_failures);
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            Metrics::inc(&shared.metrics.tls_handshake_failures);
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

/// A running server.
///
/// Dropping the handle shuts the server down without waiting: it fires the shutdown
/// signal, so the listener closes (new connections are refused) and idle sweeping stops,
/// and sends every session Close 1001; the sessions then end on their own, and nothing
/// waits for their queues to drain. [`ServerHandle::shutdown`] does the same and waits.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Fires the shutdown signal every task of the server watches.
    stop: watch::Sender<bool>,
    /// The accept loop, which owns the listener; `None` once shutdown has waited for it.
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address (the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's counters now, as `/metrics` shows them.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// How many users are online.
    pub fn online(&self) -> usize {
        self.shared.registry.len()
    }

    /// Graceful shutdown (O3): stop accepting, send every session Close 1001, and wait up
    /// to `drain_timeout` for the queues to drain and the connections to end. Returns
    /// whether everything ended in time.
    pub async fn shutdown(mut self) -> bool {
        self.stop.send_replace(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await; // drops the listener
        }
        self.close_sessions();
        let drained = tokio::time::timeout(
            self.shared.config.drain_timeout,
            self.shared.tasks.all_done(),
        )
        .await
        .is_ok();
        info!(
            drained,
            left = self.shared.tasks.live(),
            "chat server stopped"
        );
        drained
    }

    /// Refuses further logins and sends every online session Close 1001. Sessions
    /// already closing are left as they are, so calling this twice is harmless.
    fn close_sessions(&self) {
        for session in self.shared.registry.close_all() {
            session.close(
                Some(frame::close(
                    frame::close_code::GOING_AWAY,
                    "server shutting down",
                )),
                false,
            );
        }
    }
}

impl Drop for ServerHandle {
    /// The start of [`ServerHandle::shutdown`], without the waiting (see [`ServerHandle`]).
    /// After `shutdown` it finds nothing left to do.
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.close_sessions();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_fault_injection_refuses_a_fault_and_says_why() {
        let refused = faults_built_in(Some(Fault::SwapPairs), false)
            .expect_err("a fault without the code for it");
        assert!(matches!(
            refused,
            Error::FaultInjectionNotBuilt(Fault::SwapPairs)
        ));
        assert!(
            refused
                .to_string()
                .contains("this chat-server was built without the fault-injection feature"),
            "{refused}"
        );
        assert!(faults_built_in(None, false).is_ok());
        assert!(faults_built_in(Some(Fault::DropEvery(3)), true).is_ok());
    }

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
