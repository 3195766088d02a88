//! Hand-written HTTP requests, for what a well-behaved client library will not send: a
//! login with no `user`, raw (unencoded) UTF-8 bytes in the query, plain `GET /healthz`.
//! The response head is read and parsed here, so a check can tell a `400` from a server
//! that upgrades and then drops the connection (docs/protocol.md S2 allows both).

use std::io::Cursor;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::peer::Endpoint;
use crate::connection::Connected;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// How a hand-written request was answered.
pub enum Answer {
    /// A non-101 HTTP response: status and the first line of the body.
    Http { status: u16, body: String },
    /// `101 Switching Protocols`: the connection is now a WebSocket.
    Upgraded(Connected),
    /// The connection closed (or the deadline passed) before a full response head.
    NoResponse(String),
}

/// Sends `GET <path_and_query>` as a WebSocket upgrade (raw bytes, not re-encoded).
pub async fn upgrade(endpoint: &Endpoint, path_and_query: &[u8]) -> Result<Answer, std::io::Error> {
    let mut request = Vec::with_capacity(256);
    request.extend_from_slice(b"GET ");
    request.extend_from_slice(path_and_query);
    request.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            endpoint.target.authority(),
            fastwebsockets::handshake::generate_key()
        )
        .as_bytes(),
    );
    exchange(endpoint, &request, true).await
}

/// Sends a plain `GET <path>` and reads the whole (short) response.
pub async fn get(endpoint: &Endpoint, path: &str) -> Result<Answer, std::io::Error> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        endpoint.target.authority()
    );
    exchange(endpoint, request.as_bytes(), false).await
}

async fn exchange(
    endpoint: &Endpoint,
    request: &[u8],
    upgrade: bool,
) -> Result<Answer, std::io::Error> {
    let deadline = Instant::now() + endpoint.connect_timeout;
    let mut stream = TcpStream::connect(endpoint.addr).await?;
    let _ = stream.set_nodelay(true);
    stream.write_all(request).await?;
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_HEAD {
            return Ok(Answer::NoResponse("response head too long".into()));
        }
        let mut chunk = [0u8; 2048];
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Err(_) => return Ok(Answer::NoResponse("no response before the deadline".into())),
            Ok(Ok(0)) => {
                return Ok(Answer::NoResponse(if buffer.is_empty() {
                    "connection closed without a response".into()
                } else {
                    "connection closed mid-response".into()
                }))
            }
            Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Ok(Err(error)) => return Ok(Answer::NoResponse(format!("connection failed: {error}"))),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or(0);
    if status == 101 && upgrade {
        let leftover = Bytes::copy_from_slice(&buffer[head_end..]);
        let (read, write) = stream.into_split();
        let read = AsyncReadExt::chain(Cursor::new(leftover), read);
        let write =
            fastwebsockets::after_handshake_split(tokio::io::empty(), write, Role::Client).1;
        return Ok(Answer::Upgraded(Connected { read, write }));
    }
    // Read a little of the body (Content-Length or until close, bounded).
    let mut body = buffer[head_end..].to_vec();
    let quick = Instant::now() + Duration::from_millis(500);
    while body.len() < 512 && !body.contains(&b'\n') {
        let mut chunk = [0u8; 512];
        let wait = quick
            .min(deadline)
            .saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let body = String::from_utf8_lossy(&body);
    let line = body
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(100)
        .collect();
    Ok(Answer::Http { status, body: line })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
