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
//! The data path, one private module each: `server` (bind, accept, TLS) → `http` (the
//! login request; `login` checks the name, `auth` the token, `origin` the browser's
//! origin) → `session` (registration, read loop, writer) → `registry` (who is online) →
//! `handle` (what others hold of a session) → `outbox` (one receiver's bounded queue) →
//! `frame` (bytes on the wire). Around it: `config` (what the server can be told, checked),
//! `shared` (the state every task of one server shares) and `hub` (this node's sessions and
//! the means to reach them, which the cluster `bus` delivers through too), `keepalive`
//! (the idle sweeper), `metrics` (the counters behind `/metrics`) and `shutdown` (the signal
//! every task watches). Nothing below reaches back up to this file: its own code is the
//! API. With a cluster bus (`Config::bus`), `bus` joins nodes into one server over Redis
//! (docs/protocol.md C1–C6); without one the server is a complete single node. With
//! `Config::tls` ([`tls::server_config`]) connections are TLS (`wss://`), through
//! `transport`, which gives plain and TLS connections one type.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chat_server::Error> {
//! let config = chat_server::Config { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
//! let server = chat_server::Server::start(config).await?;
//! println!("ws://{}/?user=ann", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod allocations;
mod auth;
mod budget;
mod bus;
mod config;
mod error;
mod fault;
mod frame;
mod handle;
mod heap_trim;
mod http;
mod hub;
mod keepalive;
mod login;
mod metrics;
mod origin;
mod outbox;
mod registry;
mod server;
mod session;
mod shared;
mod shutdown;
pub mod tls;
mod transport;
mod unread;

pub use auth::{Authentication, DEFAULT_LEEWAY, MAX_LEEWAY};
pub use budget::InboundBudget;
pub use bus::BusError;
pub use config::Config;
pub use error::Error;
pub use fault::Fault;
/// The key types of [`Authentication`] (and what loadgen signs with).
pub use jwt_keys;
/// How the server decodes a login's query values (`?user=`, `?token=`): `%XX` escapes and
/// `+` for a space, anything else as it is — for a client that must name a user exactly
/// as the server will read it.
pub use login::percent_decode;
pub use metrics::MetricsSnapshot;
pub use server::FILE_RESERVE;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::shared::Shared;

/// The server type; see [`Server::start`] and [`Server::serve`].
pub struct Server;

impl Server {
    /// Binds `config.listen` and starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> Result<ServerHandle, Error> {
        config::validate(&config)?;
        let listener =
            server::bind(config.listen, config.reuse_port).map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        Server::serve(listener, config).await
    }

    /// Serves on `listener`, which the caller has bound (for instance to hold the port
    /// from before the server is configured, or to set socket options), on the current
    /// tokio runtime. `config.listen` is not used.
    pub async fn serve(listener: TcpListener, config: Config) -> Result<ServerHandle, Error> {
        let running = server::serve(listener, config).await?;
        Ok(ServerHandle {
            local_addr: running.local_addr,
            shared: running.shared,
            stop: running.stop,
            accept: Some(running.accept),
        })
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
        self.shared.hub.metrics.snapshot()
    }

    /// How many users are online.
    pub fn online(&self) -> usize {
        self.shared.hub.registry.len()
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
        for session in self.shared.hub.registry.close_all() {
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
