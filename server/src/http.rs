//! The HTTP side of a connection: the hyper service that turns a login request into a
//! WebSocket session, and answers `/healthz` and `/metrics` (docs/protocol.md S1–S3, R1,
//! O1).
//!
//! The handshake (R1), the browser's origin (A7), the token when authentication is on
//! (A1–A4, [`crate::auth`]) and the name are checked *before* the upgrade, so a bad login
//! gets `400`, `401`, `403`, `405` or `426` with a one-line reason and never becomes a
//! session.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::debug;

use crate::login::{self, Refusal};
use crate::session;
use crate::shared::Shared;
use crate::shutdown::ShutdownSignal;
use crate::transport::ClientStream;
use crate::unread::UnreadLimit;

/// The largest request head accepted (R4): a larger one gets `431`. hyper's smallest
/// allowed read buffer is 8 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// Serves one accepted connection until it is upgraded, closed, or shutdown begins.
pub(crate) async fn serve(stream: ClientStream, shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let _task = shared.tasks.track();
    let (header_timeout, unread_timeout) =
        (shared.config.header_timeout, shared.config.unread_timeout);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(request, &shared).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(
            TokioIo::new(UnreadLimit::new(stream, unread_timeout)),
            service,
        )
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                debug!(%error, "http connection ended with an error");
            }
        }
        _ = shutdown.fired() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
        }
    }
}

async fn route(mut request: Request<Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    if fastwebsockets::upgrade::is_upgrade_request(&request) {
        return login(&mut request, shared).await;
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/metrics") => {
            let body = shared
                .hub
                .metrics
                .render(&shared.config.server_id, shared.bus.is_some());
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => {
            let mut response = text(
                StatusCode::UPGRADE_REQUIRED,
                "chat sessions are WebSocket connections: GET /?user=NAME with an upgrade\n".into(),
            );
            response.headers_mut().insert(
                header::UPGRADE,
                header::HeaderValue::from_static("websocket"),
            );
            response
        }
    }
}

/// Validates the login and answers `101`, handing the connection to a session task. In a
/// cluster the login first takes its number from the bus (C3); with the bus down it is
/// refused with `503` (C4).
async fn login(request: &mut Request<Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    if let Some(refusal) = handshake_refusal(request) {
        shared.hub.metrics.refuse(Refusal::BadHandshake);
        debug!(status = %refusal.status(), "handshake refused");
        return refusal;
    }
    let refuse = |reason: Refusal, detail: String| {
        shared.hub.metrics.refuse(reason);
        debug!(reason = reason.label(), "login refused");
        refusal(reason, detail)
    };
    let origin = request.headers().get(header::ORIGIN).map(|v| v.as_bytes());
    if !shared.origins.admits(origin) {
        return refuse(
            Refusal::Origin,
            "origin: this page's Origin may not open sessions here\n".into(),
        );
    }
    let (name, expires) = match &shared.verifier {
        None => match login::user_from_query(request.uri().query(), shared.config.max_name) {
            Ok(name) => (name, None),
            Err(reason) => return refuse(reason, format!("{reason}\n")),
        },
        Some(verifier) => match verifier.verify(
            request.headers(),
            request.uri().query(),
            shared.config.max_name,
        ) {
            Ok(proof) => (proof.name, proof.expires),
            Err((reason, detail)) => return refuse(reason, format!("{detail}\n")),
        },
    };
    if shared.hub.registry.len() >= shared.max_sessions {
        shared.hub.metrics.refuse(Refusal::ServerFull);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", Refusal::ServerFull),
        );
    }
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut *request) {
        Ok(pair) => pair,
        Err(error) => {
            return refuse(
                Refusal::BadHandshake,
                format!("bad WebSocket handshake: {error}\n"),
            )
        }
    };
    let seq = match &shared.bus {
        None => 0,
        Some(bus) => match bus.take_login(&name).await {
            Ok(seq) => seq,
            Err(down) => {
                shared.hub.metrics.refuse(Refusal::BusUnavailable);
                debug!(%down, "login refused: bus down");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}\n", Refusal::BusUnavailable),
                );
            }
        },
    };
    #[cfg(feature = "fault-injection")]
    if shared.config.fault == Some(crate::fault::Fault::RegisterAfter101) {
        let nth = shared
            .upgrades
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let late = Duration::from_millis(if nth.is_multiple_of(2) { 100 } else { 0 });
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(late).await;
            if let Some(session) = session::register(&shared, name, seq) {
                session::run(shared, session, upgrade, expires).await;
            }
        });
        return response.map(|_| Full::new(Bytes::new()));
    }
    // Registered before the 101 goes out (R6).
    let Some(session) = session::register(shared, name, seq) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "server shutting down\n".into(),
        );
    };
    tokio::spawn(session::run(shared.clone(), session, upgrade, expires));
    response.map(|_| Full::new(Bytes::new()))
}

/// The answer to an upgrade request that RFC 6455 section 4 does not allow
/// (docs/protocol.md R1), or `None` for a well-formed one: only `GET` upgrades (another
/// method: `405`), only over HTTP/1.1 (`400`), and only WebSocket version 13 (another:
/// `426` naming the version we speak).
fn handshake_refusal(request: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    if request.method() != Method::GET {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket login is a GET request\n".into(),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return Some(response);
    }
    if request.version() != Version::HTTP_11 {
        return Some(text(
            StatusCode::BAD_REQUEST,
            "a WebSocket login needs HTTP/1.1\n".into(),
        ));
    }
    let version = request.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.is_none_or(|v| v.as_bytes().trim_ascii() != b"13") {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "this server speaks WebSocket version 13\n".into(),
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            header::HeaderValue::from_static("13"),
        );
        return Some(response);
    }
    None
}

/// The answer to a refused login: its status, and for a token refused (`401`) the
/// `WWW-Authenticate` challenge of RFC 6750.
fn refusal(reason: Refusal, detail: String) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = text(status, detail);
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if reason == Refusal::MissingToken {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        };
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(challenge),
        );
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
