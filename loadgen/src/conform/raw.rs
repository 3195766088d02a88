//! Hand-written HTTP requests, for what a well-behaved client library will not send: a
//! login with no `user`, raw (unencoded) UTF-8 bytes in the query, plain `GET /healthz`,
//! and the handshakes R1 and R4 forbid (another method, HTTP/1.0, another WebSocket
//! version, an oversized or unfinished request head). The response head is read and
//! parsed here, so a check can tell a `400` from a server that upgrades and then drops
//! the connection (docs/protocol.md S2 allows both).

use std::io::Cursor;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::peer::Endpoint;
use super::raw_frame::RawSocket;
use crate::connection::{self, Connected, ReadStream};
use crate::transport::{self, ClientStream, StreamWrite};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// How a hand-written request was answered.
pub enum Answer {
    /// A non-101 HTTP response: status, the response head's header lines, and the first
    /// line of the body.
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// `101 Switching Protocols`: the connection is now a WebSocket.
    Upgraded(Switched),
    /// The connection closed (or the deadline passed) before a full response head.
    NoResponse(String),
}

/// A connection the server switched to WebSocket: what it sent past the `101`, then the
/// socket, and the bare sending side.
pub struct Switched {
    pub read: ReadStream,
    pub write: StreamWrite,
}

impl Switched {
    /// As a client connection whose writer frames and masks.
    pub fn into_connected(self) -> Connected {
        let write =
            fastwebsockets::after_handshake_split(tokio::io::empty(), self.write, Role::Client).1;
        Connected {
            read: self.read,
            write,
            // A hand-written login is not timed.
            times: Default::default(),
        }
    }

    /// As a connection written to byte by byte.
    pub fn into_raw(self) -> RawSocket {
        RawSocket::new(self.read, self.write)
    }
}

/// The value of response header `name` (case-insensitive), if present.
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// A hand-written WebSocket login, with the parts R1 and R4 vary.
#[derive(Debug, Clone)]
pub struct Upgrade<'a> {
    pub method: &'a str,
    /// Raw bytes, not re-encoded.
    pub path_and_query: &'a [u8],
    /// `HTTP/1.1` for a valid login.
    pub http_version: &'a str,
    /// `Sec-WebSocket-Version`: `13` for a valid login.
    pub ws_version: &'a str,
    /// Bytes of an extra `X-Padding` header, to make the head large (R4).
    pub padding: usize,
    /// The `Authorization` header: `None` proves the query's `user` the way every check
    /// logs in (a token minted for it, when conform was given a key); `Some("")` sends
    /// none; anything else is sent as it is.
    pub authorization: Option<String>,
    /// Further header lines (`Origin`, …).
    pub headers: Vec<(String, String)>,
}

impl<'a> Upgrade<'a> {
    /// A valid login request for `path_and_query`.
    pub fn login(path_and_query: &'a [u8]) -> Upgrade<'a> {
        Upgrade {
            method: "GET",
            path_and_query,
            http_version: "HTTP/1.1",
            ws_version: "13",
            padding: 0,
            authorization: None,
            headers: Vec::new(),
        }
    }

    /// The request head, up to the end of the header line before the blank line; with
    /// `finished` the blank line that ends the head too.
    pub fn head(&self, endpoint: &Endpoint, finished: bool) -> Vec<u8> {
        let mut request = Vec::with_capacity(256 + self.padding);
        request.extend_from_slice(self.method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(self.path_and_query);
        request.extend_from_slice(
            format!(
                " {}\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: {}\r\n",
                self.http_version,
                endpoint.target.authority(),
                fastwebsockets::handshake::generate_key(),
                self.ws_version,
            )
            .as_bytes(),
        );
        let authorization = match &self.authorization {
            Some(value) => Some(value.clone()).filter(|v| !v.is_empty()),
            None => query_user(self.path_and_query)
                .and_then(|user| endpoint.token_for(&user))
                .map(|token| format!("Bearer {token}")),
        };
        let extra = authorization
            .map(|value| ("Authorization".to_string(), value))
            .into_iter()
            .chain(self.headers.iter().cloned());
        for (name, value) in extra {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.padding > 0 {
            request.extend_from_slice(b"X-Padding: ");
            request.resize(request.len() + self.padding, b'p');
            request.extend_from_slice(b"\r\n");
        }
        if finished {
            request.extend_from_slice(b"\r\n");
        }
        request
    }
}

/// Sends `GET <path_and_query>` as a WebSocket upgrade (raw bytes, not re-encoded).
pub async fn upgrade(endpoint: &Endpoint, path_and_query: &[u8]) -> Result<Answer, std::io::Error> {
    send(endpoint, &Upgrade::login(path_and_query)).await
}

/// Sends a hand-written login and reads the answer.
pub async fn send(endpoint: &Endpoint, request: &Upgrade<'_>) -> Result<Answer, std::io::Error> {
    exchange(endpoint, &request.head(endpoint, true), true).await
}

/// How a connection that sent an unfinished request head ended.
pub enum Unfinished {
    /// The server ended it after `after`, with a response status if it sent one.
    Ended {
        after: Duration,
        status: Option<u16>,
    },
    /// Still open when the bound passed.
    StillOpen,
}

/// Sends `request`'s head without the blank line that ends it, then nothing, and waits up
/// to `bound` for the server to end the connection (R4).
pub async fn unfinished(
    endpoint: &Endpoint,
    request: &Upgrade<'_>,
    bound: Duration,
) -> Result<Unfinished, std::io::Error> {
    let started = Instant::now();
    let mut stream = open(endpoint).await?;
    stream.write_all(&request.head(endpoint, false)).await?;
    let mut received = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let wait = (started + bound).saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Err(_) => return Ok(Unfinished::StillOpen),
            Ok(Ok(n)) if n > 0 && received.len() < MAX_HEAD => {
                received.extend_from_slice(&chunk[..n])
            }
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => {
                return Ok(Unfinished::Ended {
                    after: started.elapsed(),
                    status: status_of(&received),
                })
            }
        }
    }
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
    let mut stream = open(endpoint).await?;
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
    let status = status_of(head.as_bytes()).unwrap_or(0);
    if status == 101 && upgrade {
        let leftover = Bytes::copy_from_slice(&buffer[head_end..]);
        let (read, write) = transport::split(stream);
        let read = AsyncReadExt::chain(Cursor::new(leftover), read);
        return Ok(Answer::Upgraded(Switched { read, write }));
    }
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
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
    Ok(Answer::Http {
        status,
        headers,
        body: line,
    })
}

/// A connection to the endpoint's first node (TLS for `wss://`).
async fn open(endpoint: &Endpoint) -> Result<ClientStream, std::io::Error> {
    connection::open(&endpoint.target, endpoint.addr, None, endpoint.tls.as_ref())
        .await
        .map_err(std::io::Error::other)
}

/// The status code of a response that starts with `received`, if it has a status line.
fn status_of(received: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(received);
    let line = text.lines().next()?;
    let mut words = line.split_whitespace();
    words
        .next()
        .filter(|w| w.starts_with("HTTP/"))
        .and_then(|_| words.next()?.parse().ok())
}

/// The first `user` parameter of a request target, percent-decoded (lossily: a token's
/// `sub` is a JSON string).
fn query_user(path_and_query: &[u8]) -> Option<String> {
    let at = path_and_query.iter().position(|&b| b == b'?')?;
    path_and_query[at + 1..]
        .split(|&b| b == b'&')
        .find_map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            (name == b"user").then(|| {
                let value = String::from_utf8_lossy(value);
                String::from_utf8_lossy(&chat_server::percent_decode(&value)).into_owned()
            })
        })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
