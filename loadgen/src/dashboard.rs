//! `--dashboard ADDRESS`: the live view of a run, served over HTTP while it runs.
//!
//! `GET /` answers the run's page as it is now ([`LivePicture`]), the same page
//! `report.html` will be, reloading itself every couple of seconds; `GET /metrics` the
//! figures so far for Prometheus ([`prometheus`]). `--metrics ADDRESS` serves the same
//! on an address of its own. The address is
//! loopback unless the user asks for another explicitly (`--dashboard-public`): a run's
//! page names its targets and setup, which is not for every machine on the network.
//!
//! The server lives exactly as long as the run: [`Dashboard::stop`] is the explicit
//! shutdown signal; it stops accepting, ends the connections being served, and returns
//! once the port is closed.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::report::live::LivePicture;
use crate::report::prometheus;

/// Why the live view could not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A non-loopback address without `--dashboard-public`.
    #[error(
        "refusing to serve the run's page and figures on {0}, which other machines may \
         reach: use a loopback address such as 127.0.0.1:8080, or add --dashboard-public to \
         serve them there on purpose"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot serve the live view on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The live view's HTTP server.
pub struct Dashboard {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Binds `address` (loopback unless `public`) and serves `live` on it until
    /// [`Dashboard::stop`].
    pub async fn start(
        address: SocketAddr,
        public: bool,
        live: LivePicture,
    ) -> Result<Dashboard, DashboardError> {
        if !address.ip().is_loopback() && !public {
            return Err(DashboardError::NotLoopback(address));
        }
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| DashboardError::Bind { address, source })?;
        let bound = listener.local_addr().unwrap_or(address);
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, live, stopped));
        Ok(Dashboard {
            address: bound,
            stop,
            server,
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving; returns once the listening socket is closed.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.server.await;
    }
}

/// Accepts connections until `stopped`; then drops the listener and every connection.
async fn serve(listener: TcpListener, live: LivePicture, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let live = live.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let live = live.clone();
                        async move { Ok::<_, Infallible>(answer(&request, &live).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// The answer to one request: the page for `GET /`, the figures for `GET /metrics`, 404
/// or 405 otherwise.
async fn answer<B>(request: &Request<B>, live: &LivePicture) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/" && path != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the live view is at /, the figures for Prometheus at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    if path == "/metrics" {
        return Response::builder()
            .header("content-type", prometheus::CONTENT_TYPE)
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(live.metrics())))
            .unwrap_or_default();
    }
    // Drawing takes a few milliseconds of CPU: off the runtime's worker threads.
    let live = live.clone();
    let page = tokio::task::spawn_blocking(move || live.page()).await;
    match page {
        Ok(Ok(page)) => Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(page)))
            .unwrap_or_default(),
        Ok(Err(error)) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}\n")),
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be drawn\n",
        ),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text.to_string())))
        .unwrap_or_default()
}
