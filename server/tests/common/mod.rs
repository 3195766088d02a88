//! A small real WebSocket client and HTTP helpers for black-box tests over loopback.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chat_server::{Config, Server, ServerHandle};
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::header::{CONNECTION, UPGRADE};
use hyper::Request;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any single expected event may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a server on 127.0.0.1:0 with `config` (listen is overridden).
pub async fn start(config: Config) -> ServerHandle {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    Server::start(config).await.expect("server starts")
}

/// Starts a server with the default configuration.
pub async fn start_default() -> ServerHandle {
    start(Config::default()).await
}

pub struct SpawnExecutor;
impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// What a client saw next.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    Text(String),
    Close(Option<u16>, String),
    Pong(Vec<u8>),
    Ping,
    Binary,
    /// The TCP connection ended without a Close frame.
    Dropped,
}

/// Any byte stream a [`Client`] can run over (hyper's upgraded connection or a raw socket).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One logged-in WebSocket client. A client the test never reads from is a stalled
/// receiver: it holds its socket, answers no Ping and no Close.
pub struct Client {
    pub ws: WebSocket<Box<dyn Stream>>,
}

impl Client {
    pub fn over(stream: Box<dyn Stream>) -> Client {
        let mut ws = WebSocket::after_handshake(stream, Role::Client);
        ws.set_auto_close(false);
        ws.set_auto_pong(true);
        Client { ws }
    }
}

/// Logs in as `user` given as the raw (already encoded) query value.
pub async fn login_raw(addr: SocketAddr, user_query: &str) -> Result<Client, WebSocketError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = Request::builder()
        .method("GET")
        .uri(format!("http://{addr}/?user={user_query}"))
        .header("Host", addr.to_string())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await?;
    Ok(Client::over(Box::new(ws.into_inner())))
}

/// Sends a WebSocket upgrade for the raw request-target `target` (any bytes, e.g. raw
/// UTF-8) over `stream`. `Ok` is a logged-in client (101); `Err` is the refusal's status
/// and body.
pub async fn upgrade_raw(stream: TcpStream, target: &[u8]) -> Result<Client, (u16, String)> {
    upgrade_with(stream, target, &[])
        .await
        .map_err(|(status, _, body)| (status, body))
}

/// [`upgrade_raw`] with extra request headers; a refusal is its status, response head and
/// body.
pub async fn upgrade_with(
    mut stream: TcpStream,
    target: &[u8],
    headers: &[(&str, &str)],
) -> Result<Client, (u16, String, String)> {
    stream.set_nodelay(true).unwrap();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        b" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await.unwrap();
    // Byte by byte, so no frame that follows the 101 is read into a buffer and lost.
    let mut head = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout_at(deadline, stream.read_u8())
            .await
            .expect("handshake response in time")
            .expect("connection open until the end of the response head");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head[9..12].parse().unwrap();
    if status == 101 {
        return Ok(Client::over(Box::new(stream)));
    }
    let length = content_length(&head);
    let mut body = vec![0u8; length];
    tokio::time::timeout_at(deadline, stream.read_exact(&mut body))
        .await
        .expect("response body in time")
        .expect("whole response body");
    Err((status, head, String::from_utf8_lossy(&body).into_owned()))
}

/// Logs in with a raw request-target such as `b"/?user=\xE5\xBC\xA0"`; fails unless 101.
pub async fn login_target(addr: SocketAddr, target: &[u8]) -> Client {
    let stream = TcpStream::connect(addr).await.unwrap();
    match upgrade_raw(stream, target).await {
        Ok(client) => client,
        Err(refusal) => panic!("login refused: {refusal:?}"),
    }
}

/// Logs in as `user` over a socket with a tiny receive buffer, for a receiver the test
/// never reads: the kernel then absorbs only a few KiB before the server's writes block,
/// so the server's own queue bound is what is tested.
pub async fn login_stalled(addr: SocketAddr, user: &str) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let target = format!("/?user={}", encode(user));
    match upgrade_raw(stream, target.as_bytes()).await {
        Ok(client) => client,
        Err(refusal) => panic!("login refused: {refusal:?}"),
    }
}

/// Logs in as `user` (percent-encoding everything but unreserved ASCII).
pub async fn login(addr: SocketAddr, user: &str) -> Client {
    login_raw(addr, &encode(user))
        .await
        .expect("login succeeds")
}

/// Percent-encodes a name for the query.
pub fn encode(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Sends one Text frame.
    pub async fn send(&mut self, text: &str) {
        self.ws
            .write_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec())))
            .await
            .expect("send");
    }

    /// Sends many Text messages with a single write, so they reach the server together.
    /// Only for a client that has not read yet: frames it had buffered would be lost.
    pub async fn send_burst(&mut self, texts: &[String]) {
        let mut burst = Vec::new();
        let mut scratch = Vec::new();
        for text in texts {
            let mut frame = Frame::text(Payload::Borrowed(text.as_bytes()));
            frame.mask();
            burst.extend_from_slice(frame.write(&mut scratch));
        }
        let placeholder: Box<dyn Stream> = Box::new(tokio::io::duplex(1).0);
        let ws = std::mem::replace(
            &mut self.ws,
            WebSocket::after_handshake(placeholder, Role::Client),
        );
        let mut stream = ws.into_inner();
        stream.write_all(&burst).await.expect("send burst");
        *self = Client::over(stream);
    }

    /// Sends an arbitrary frame.
    pub async fn send_frame(&mut self, frame: Frame<'_>) {
        self.ws.write_frame(frame).await.expect("send frame");
    }

    /// The next thing the server sent, or `None` if nothing came within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Seen> {
        match tokio::time::timeout(within, self.ws.read_frame()).await {
            Err(_) => None,
            Ok(Err(_)) => Some(Seen::Dropped),
            Ok(Ok(frame)) => Some(match frame.opcode {
                OpCode::Text => Seen::Text(String::from_utf8(frame.payload.to_vec()).unwrap()),
                OpCode::Close => {
                    let p = frame.payload.to_vec();
                    if p.len() >= 2 {
                        Seen::Close(
                            Some(u16::from_be_bytes([p[0], p[1]])),
                            String::from_utf8_lossy(&p[2..]).into_owned(),
                        )
                    } else {
                        Seen::Close(None, String::new())
                    }
                }
                OpCode::Pong => Seen::Pong(frame.payload.to_vec()),
                OpCode::Ping => Seen::Ping,
                OpCode::Binary => Seen::Binary,
                OpCode::Continuation => panic!("server sent a continuation frame"),
            }),
        }
    }

    /// The next thing the server sent; fails the test after [`WAIT`].
    pub async fn next(&mut self) -> Seen {
        self.next_within(WAIT)
            .await
            .expect("server sent something in time")
    }

    /// The next Text message; fails on anything else.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Seen::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Some(seen) = self.next_within(quiet).await {
            panic!("expected silence, got {seen:?}");
        }
    }

    /// Asserts that the next thing the server sends is a Close with `code` and `reason`.
    pub async fn expect_close(&mut self, code: u16, reason: &str) {
        match self.next().await {
            Seen::Close(Some(c), r) if c == code && r == reason => {}
            other => panic!("expected Close {code} {reason:?}, got {other:?}"),
        }
    }

    /// Reads until the connection ends; returns how it ended (a Close or `Dropped`) and
    /// the Text messages seen before. Fails after [`WAIT`] without an end.
    pub async fn until_end(&mut self) -> (Seen, Vec<String>) {
        let mut texts = Vec::new();
        loop {
            match self.next().await {
                Seen::Text(t) => texts.push(t),
                end @ (Seen::Close(..) | Seen::Dropped) => return (end, texts),
                _ => continue,
            }
        }
    }

    /// Sends Close 1000 and waits for the server's Close.
    pub async fn close(mut self) {
        self.ws
            .write_frame(Frame::close(1000, b"bye"))
            .await
            .expect("send close");
        loop {
            match self.next().await {
                Seen::Close(..) | Seen::Dropped => return,
                _ => continue,
            }
        }
    }
}

/// A plain HTTP/1.1 GET over a fresh connection; returns (status, body). With `upgrade`,
/// sends WebSocket upgrade headers.
pub async fn http_get(addr: SocketAddr, target: &[u8], upgrade: bool) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\n");
    if upgrade {
        request.extend_from_slice(
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        );
    } else {
        request.extend_from_slice(b"Connection: close\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream.write_all(&request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("http response in time")
            .unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let status: u16 = head[9..12].parse().unwrap();
            let length = content_length(head);
            if buf.len() >= end + 4 + length || n == 0 {
                let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                return (status, body);
            }
        } else if n == 0 {
            panic!("connection closed before a response: {text:?}");
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0)
}

/// Reads one sample of `name` from `/metrics` whose labels contain `label` (such as
/// `reason="empty_user"`); fails if there is none.
pub async fn metric_labeled(addr: SocketAddr, name: &str, label: &str) -> u64 {
    let (status, body) = http_get(addr, b"/metrics", false).await;
    assert_eq!(status, 200);
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .unwrap_or_else(|| panic!("no sample of {name} with {label} in /metrics"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Reads a counter (summed over label sets) from `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (status, body) = http_get(addr, b"/metrics", false).await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Polls `/metrics` until `name` equals `want` (counters are updated just after the bytes
/// leave, so a client can see a message a moment before the server has counted it).
pub async fn wait_metric(addr: SocketAddr, name: &str, want: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = metric(addr, name).await;
        if got == want || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the server has `n` users online.
pub async fn wait_online(server: &ServerHandle, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.online() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} online, have {}",
            server.online()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Builds a frame for [`Client::send_frame`] (the client masks it on the way out).
pub fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Frame<'static> {
    Frame::new(fin, opcode, None, Payload::Owned(payload.to_vec()))
}

/// This process's resident set size, in KiB (Linux `/proc/self/status`).
pub fn vm_rss_kib() -> u64 {
    proc_status_kib("VmRSS:")
}

/// This process's peak resident set size so far, in KiB.
pub fn vm_hwm_kib() -> u64 {
    proc_status_kib("VmHWM:")
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}
