//! One remote-write request: `POST` a compressed `WriteRequest` to the receiver's URL over
//! HTTP/1.1 (hyper's client on a fresh TCP connection), with the headers remote write 1.0
//! requires, and the receiver's answer as a [`PostError`] that says whether to try again.
//!
//! Plain `http://` only: loadgen's TLS client is for WebSocket targets, and a receiver on
//! `https://` is better reached through a local Prometheus agent or proxy than through a
//! second TLS path here. A fresh connection per push costs nothing at one push every few
//! seconds.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// The receiver's URL, checked: `http://HOST[:PORT]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given.
    url: String,
    /// `host:port` to connect to (an IPv6 literal in brackets).
    authority: String,
    /// The `Host` header: the URL's authority as written.
    host_header: String,
    /// Path and query of the request line.
    path: String,
}

/// Why a URL cannot be a remote-write receiver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{0:?} is not a URL")]
    NotAUrl(String),
    #[error(
        "{0:?}: https:// is not supported; loadgen pushes over plain http:// (use a \
         Prometheus agent or a TLS proxy on this machine to reach an https:// receiver)"
    )]
    Https(String),
    #[error("{0:?}: not an http:// URL (remote write is an HTTP POST, e.g. http://127.0.0.1:9090/api/v1/write)")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    /// `user:password@` in the URL (not echoed: it may hold a secret).
    #[error(
        "a user or password in the remote-write URL is not supported: loadgen sends no credentials"
    )]
    Credentials,
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(url: &str) -> Result<Endpoint, EndpointError> {
        if url.starts_with("https://") {
            return Err(EndpointError::Https(url.to_string()));
        }
        if !url.starts_with("http://") {
            return Err(EndpointError::Scheme(url.to_string()));
        }
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| EndpointError::NotAUrl(url.to_string()))?;
        let Some(authority) = uri.authority() else {
            return Err(EndpointError::NoHost(url.to_string()));
        };
        if authority.as_str().contains('@') {
            return Err(EndpointError::Credentials);
        }
        if authority.host().is_empty() {
            return Err(EndpointError::NoHost(url.to_string()));
        }
        let port = authority.port_u16().unwrap_or(80);
        Ok(Endpoint {
            url: url.to_string(),
            authority: format!("{}:{port}", authority.host()),
            host_header: authority.as_str().to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Why a push did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No connection (nobody listens, the host is unknown, ...).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The connection broke, or what came back was not HTTP.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The receiver answered, but not with 2xx.
    #[error("the receiver answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { status: StatusCode, body: String },
    /// No answer within the time an attempt may take.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
}

impl PostError {
    /// Whether the same request may succeed later: a receiver that is down, overloaded
    /// (5xx) or asks to slow down (429). Any other answer means the request itself was
    /// refused, and remote write 1.0 forbids sending it again.
    pub fn worth_retrying(&self) -> bool {
        match self {
            PostError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            PostError::Connect(_) | PostError::Http(_) | PostError::Timeout(_) => true,
        }
    }
}

/// Sends `body` (a snappy-compressed `WriteRequest`) to `endpoint`; `Ok` on any 2xx.
pub async fn post(endpoint: &Endpoint, body: Bytes) -> Result<(), PostError> {
    let stream = tokio::net::TcpStream::connect(&endpoint.authority)
        .await
        .map_err(PostError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let answer = async {
        let request = Request::post(endpoint.path.as_str())
            .header(HOST, endpoint.host_header.as_str())
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(USER_AGENT, concat!("loadgen/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|error| PostError::Status {
                status: StatusCode::BAD_REQUEST,
                body: format!("loadgen could not form the request: {error}"),
            })?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The first line of what the receiver says, for the error: Prometheus names the
        // problem there ("out of order sample", ...).
        let said = Limited::new(response.into_body(), 4096)
            .collect()
            .await
            .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
            .unwrap_or_default();
        let first_line = said.lines().next().unwrap_or("").trim();
        Err(PostError::Status {
            status,
            body: first_line.chars().take(200).collect(),
        })
    }
    .await;
    connection.abort();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_url_is_an_endpoint_and_others_say_why_not() {
        let endpoint: Endpoint = "http://127.0.0.1:9090/api/v1/write".parse().unwrap();
        assert_eq!(endpoint.authority, "127.0.0.1:9090");
        assert_eq!(endpoint.host_header, "127.0.0.1:9090");
        assert_eq!(endpoint.path, "/api/v1/write");
        assert_eq!(endpoint.to_string(), "http://127.0.0.1:9090/api/v1/write");
        let endpoint: Endpoint = "http://metrics.example/push?tenant=a".parse().unwrap();
        assert_eq!(endpoint.authority, "metrics.example:80");
        assert_eq!(endpoint.path, "/push?tenant=a");
        let endpoint: Endpoint = "http://[::1]:9090".parse().unwrap();
        assert_eq!(endpoint.authority, "[::1]:9090");
        assert_eq!(endpoint.path, "/");

        for (url, says) in [
            (
                "https://prometheus.example/api/v1/write",
                "https:// is not supported",
            ),
            ("ws://127.0.0.1:9090/", "not an http:// URL"),
            ("127.0.0.1:9090/api/v1/write", "not an http:// URL"),
            ("http://user:secret@127.0.0.1:9090/", "no credentials"),
            ("http:// bad", "not a URL"),
            ("", "not an http:// URL"),
        ] {
            let error = url.parse::<Endpoint>().unwrap_err();
            assert!(error.to_string().contains(says), "{url:?}: {error}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn only_a_receiver_that_may_recover_is_tried_again() {
        let answered = |code: u16| PostError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
        };
        for code in [500, 502, 503, 429] {
            assert!(answered(code).worth_retrying(), "{code}");
        }
        for code in [400, 401, 404, 413, 301] {
            assert!(!answered(code).worth_retrying(), "{code}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(PostError::Connect(refused).worth_retrying());
        assert!(PostError::Timeout(std::time::Duration::from_secs(1)).worth_retrying());
    }
}
