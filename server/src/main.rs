//! The `chat-server` binary: flags and environment into a [`Config`], then run until
//! SIGINT or SIGTERM and shut down gracefully (docs/protocol.md O3).
//!
//! Exit codes: 0 after a graceful shutdown; 1 when the server cannot start (address in use,
//! Redis unreachable, a certificate that cannot be used); 2 for bad usage (clap's own, a
//! value out of range, a JWT key or secret file that cannot be used).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// With feature `count-allocations`: the system allocator, each allocation counted
/// (`chat_server::allocations`, shown in `/metrics`).
#[cfg(feature = "count-allocations")]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};

    use chat_server::allocations::{
        note_allocation, note_deallocation, note_reallocation, note_resize,
    };

    pub struct CountingAllocator;

    // SAFETY: every call is passed to the system allocator unchanged; counting touches
    // only atomics and never allocates.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note_allocation(layout.size());
            // SAFETY: the caller's contract is the one `System.alloc` needs.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note_allocation(layout.size());
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note_deallocation(layout.size());
            // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note_reallocation(new_size.saturating_sub(layout.size()));
            note_resize(layout.size(), new_size);
            // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;
}

use anyhow::Context;
use chat_server::{Config, InboundBudget, Server};
use clap::Parser;

/// WebSocket chat server: log in with `GET /?user=NAME`; every text message goes to every
/// other user as `<message> -- FROM <NAME>`; a second login of a name evicts the first.
///
/// Also serves `GET /healthz` and `GET /metrics` (Prometheus text). Every flag can be set
/// from the environment variable shown. Exit codes: 0 graceful shutdown, 1 cannot start
/// (address in use, Redis unreachable, a TLS certificate or key that cannot be used), 2 bad
/// usage (a JWT key or secret file that cannot be used included).
///
/// TLS: `--tls-cert chain.pem --tls-key key.pem` serves wss:// (and https://) on the
/// listen address instead of ws://.
///
/// Authentication: WITHOUT A KEY ANYONE CAN LOG IN AS ANY NAME and evict its owner (fine
/// on loopback; the server warns when it listens elsewhere without one). With
/// `--jwt-secret-file` (HS256) or `--jwt-public-key` (RS256, ES256 or EdDSA, as the key
/// is), a login must carry a signed JWT — `Authorization: Bearer TOKEN` or `?token=TOKEN`
/// — whose `sub` is the name; `exp` and `nbf` are checked, and the session is closed with
/// 4003 when its token expires. Refusals are 401 (a token missing or bad: the body names
/// the claim) or 403 (`?user=` differing from `sub`, a browser Origin not allowed).
///
/// Cluster: nodes started with the same `--bus redis://HOST:PORT` act as one server
/// (a relogin on one node evicts the session on another; every message reaches every
/// node's users in its sender's order). `--reuse-port` lets several nodes on one machine
/// share one listen address.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version)]
struct Args {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "CHAT_LISTEN", default_value = "0.0.0.0:6789")]
    listen: SocketAddr,
    /// Server (node) id, shown in logs and as the server_id label in /metrics. Give each
    /// node of a cluster its own.
    #[arg(long, env = "CHAT_ID", default_value = "1")]
    id: String,
    /// Join a cluster over this Redis (redis://HOST:PORT[/DB]). Without it the server is a
    /// complete single node. While Redis is unreachable, local delivery goes on and logins
    /// get 503; the node reconnects (backoff up to 1 s) and resynchronises by itself.
    #[arg(long, env = "CHAT_BUS")]
    bus: Option<String>,
    /// Listen with SO_REUSEPORT, so several nodes on this machine can share one address
    /// (the kernel spreads new connections over them).
    #[arg(long, env = "CHAT_REUSE_PORT")]
    reuse_port: bool,
    /// Largest text message accepted, in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "CHAT_MAX_MESSAGE", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_message: u32,
    /// Longest user name accepted, in bytes; longer ones are refused with 400.
    #[arg(long, env = "CHAT_MAX_NAME", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_name: u32,
    /// Outbound queue bound per connection, in messages; a receiver that falls this far
    /// behind is disconnected with 1013.
    #[arg(long, env = "CHAT_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    queue: u32,
    /// Outbound queue bound per connection, in bytes.
    #[arg(long, env = "CHAT_QUEUE_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    queue_bytes: u32,
    /// Most sessions held at once; a login beyond it gets 503 before the upgrade.
    /// Default: what the open-file limit allows (the soft limit is raised to the hard one
    /// at start) minus 64 for everything else.
    #[arg(long, env = "CHAT_MAX_SESSIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions: Option<u32>,
    /// Ping connections silent this long; drop them after twice this. E.g. 30s, 500ms.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    ping_interval: Duration,
    /// How long shutdown waits for queues to drain.
    #[arg(long, env = "CHAT_DRAIN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Messages per second one connection may send; a faster sender is slowed down (its
    /// socket is not read until its budget refills), never dropped.
    #[arg(long, env = "CHAT_MAX_MESSAGES_PER_SEC", default_value_t = InboundBudget::default().messages_per_sec)]
    max_messages_per_sec: f64,
    /// Payload bytes per second one connection may send (slowed down the same way).
    #[arg(long, env = "CHAT_MAX_BYTES_PER_SEC", default_value_t = InboundBudget::default().bytes_per_sec)]
    max_bytes_per_sec: f64,
    /// How much of both budgets may be spent at once, as a duration of it.
    #[arg(long, env = "CHAT_BURST", default_value = "1s", value_parser = parse_duration)]
    burst: Duration,
    /// How long a client may take to send its request head.
    #[arg(long, env = "CHAT_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// How long a response may wait for a client that does not read it (before the
    /// upgrade) before the connection is ended.
    #[arg(long, env = "CHAT_UNREAD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    unread_timeout: Duration,
    /// Serve wss:// (and https:// for /healthz and /metrics) with this certificate chain
    /// (PEM, leaf first); needs --tls-key. Without both, plain ws:// and http://.
    #[arg(long, env = "CHAT_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CHAT_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require HS256 tokens signed with the shared secret in this file (at least 32 bytes;
    /// one line ending at its end is not part of it). Make one: openssl rand -base64 48 >
    /// secret. Without this or --jwt-public-key, anyone can log in as any name.
    #[arg(
        long,
        env = "CHAT_JWT_SECRET_FILE",
        value_name = "FILE",
        group = "jwt_key"
    )]
    jwt_secret_file: Option<PathBuf>,
    /// Require tokens signed by the private half of this public key (PEM, "BEGIN PUBLIC
    /// KEY"); the algorithm follows the key: RSA → RS256, P-256 → ES256, Ed25519 → EdDSA.
    /// Make a pair: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out
    /// key.pem; openssl pkey -in key.pem -pubout -out key.pub.pem
    #[arg(
        long,
        env = "CHAT_JWT_PUBLIC_KEY",
        value_name = "PEM",
        group = "jwt_key"
    )]
    jwt_public_key: Option<PathBuf>,
    /// Clock skew forgiven on a token's exp and nbf at login (at most 5m). The session
    /// still ends at exp itself.
    #[arg(long, env = "CHAT_JWT_LEEWAY", default_value = "30s", value_parser = parse_leeway, requires = "jwt_key")]
    jwt_leeway: Duration,
    /// Require this audience in every token's aud. Without it, a token that carries an aud
    /// is refused (it was meant for another service).
    #[arg(
        long,
        env = "CHAT_JWT_AUDIENCE",
        value_name = "AUD",
        requires = "jwt_key"
    )]
    jwt_audience: Option<String>,
    /// Require this issuer as every token's iss.
    #[arg(
        long,
        env = "CHAT_JWT_ISSUER",
        value_name = "ISS",
        requires = "jwt_key"
    )]
    jwt_issuer: Option<String>,
    /// A browser origin allowed to log in (repeat, or comma-separate in the environment),
    /// e.g. https://chat.example. With any given, a login whose Origin header is another
    /// gets 403 (cross-site WebSocket hijacking); logins without Origin (not browsers) pass.
    #[arg(
        long = "allowed-origin",
        env = "CHAT_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, env = "CHAT_LOG", default_value = "info")]
    log: String,
}

fn main() -> std::process::ExitCode {
    #[cfg(feature = "count-allocations")]
    chat_server::allocations::start_counting();
    let args = Args::parse();
    // A key that cannot be used is bad usage, said before anything starts.
    let auth = match authentication(&args) {
        Ok(auth) => auth,
        Err(error) => {
            eprintln!("chat-server: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args, auth) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat-server: {error:#}");
            // A value out of range is bad usage, like a flag clap refuses.
            let usage = matches!(
                error.downcast_ref::<chat_server::Error>(),
                Some(
                    chat_server::Error::Config(_)
                        | chat_server::Error::Bus(chat_server::BusError::Url { .. })
                )
            );
            std::process::ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The authentication the flags ask for; `None` without a key.
fn authentication(args: &Args) -> anyhow::Result<Option<chat_server::Authentication>> {
    use chat_server::jwt_keys::VerifyingKey;
    let key = match (&args.jwt_secret_file, &args.jwt_public_key) {
        (Some(path), _) => VerifyingKey::hs256_file(path)
            .with_context(|| format!("--jwt-secret-file {}", path.display()))?,
        (None, Some(path)) => VerifyingKey::public_pem_file(path)
            .with_context(|| format!("--jwt-public-key {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    Ok(Some(chat_server::Authentication {
        leeway: args.jwt_leeway,
        audience: args.jwt_audience.clone(),
        issuer: args.jwt_issuer.clone(),
        ..chat_server::Authentication::new(key)
    }))
}

fn run(args: Args, auth: Option<chat_server::Authentication>) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("bad --log filter {:?}", args.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(chat_server::tls::server_config(cert, key)?),
        _ => None,
    };
    let config = Config {
        listen: args.listen,
        server_id: args.id,
        max_message: args.max_message as usize,
        max_name: args.max_name as usize,
        queue: args.queue as usize,
        queue_bytes: args.queue_bytes as usize,
        ping_interval: args.ping_interval,
        drain_timeout: args.drain_timeout,
        max_sessions: args.max_sessions.map(|n| n as usize),
        inbound: InboundBudget {
            messages_per_sec: args.max_messages_per_sec,
            bytes_per_sec: args.max_bytes_per_sec,
            burst: args.burst,
        },
        header_timeout: args.header_timeout,
        unread_timeout: args.unread_timeout,
        bus: args.bus,
        reuse_port: args.reuse_port,
        tls,
        auth,
        allowed_origins: args.allowed_origins,
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        wait_for_signal().await?;
        tracing::info!("signal received; shutting down");
        server.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot watch SIGINT"),
        _ = term.recv() => Ok(()),
    }
}

/// Parses a flag's duration (`30s`, `500ms`, `2m`: the workspace's one duration syntax,
/// `duration-text`); every duration flag of the server must be above zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    match duration_text::parse(text) {
        Ok(duration) if duration.is_zero() => Err(format!("{text:?} must be above zero")),
        Ok(duration) => Ok(duration),
        Err(error) => Err(error.to_string()),
    }
}

/// Parses `--jwt-leeway`: a duration from zero to [`chat_server::MAX_LEEWAY`].
fn parse_leeway(text: &str) -> Result<Duration, String> {
    let leeway = duration_text::parse(text).map_err(|error| error.to_string())?;
    if leeway > chat_server::MAX_LEEWAY {
        return Err(format!(
            "{text:?} is more than {} s: a token would live that long past its exp",
            chat_server::MAX_LEEWAY.as_secs()
        ));
    }
    Ok(leeway)
}
