//! One client WebSocket connection: TCP (and TLS for `wss://`, [`crate::tls`]), the login
//! handshake, then a frame reader and a frame writer over the two halves of the stream
//! ([`crate::transport`]).
//!
//! The handshake is done with hyper's client directly (as fastwebsockets' helper does, but
//! without its stderr logging). Afterwards hyper's read buffer is copied out and freed, and
//! the frame reader ([`FrameReader`], over frame-buffer's `FrameBuffer`) holds a read
//! buffer only while bytes wait to be parsed: a simulated user that receives a broadcast a
//! second costs, between broadcasts, what an idle one does (no 8 KiB buffer each).
//!
//! A connection may leave from a given local address (`[users] source_addresses`): the
//! socket is bound to that address with port 0 and `IP_BIND_ADDRESS_NO_PORT`, so the
//! kernel still picks the ephemeral port at connect time, per destination, as it does for
//! an unbound socket (a plain bind would reserve a port across every destination).

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocketError, WebSocketWrite};
use frame_buffer::FrameBuffer;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::credentials::TokenPlacement;
use crate::protocol::{LoginStep, Profile, Who};
use crate::record::LoginTimes;
use crate::target::Target;
use crate::tls::TlsClient;
use crate::transport::{self, ClientStream, StreamRead, StreamWrite};
use either_io::EitherIo;

/// The bytes from the server: what hyper read past the handshake, then the stream.
pub type ReadStream = tokio::io::Chain<Cursor<Bytes>, StreamRead>;

/// The sending side of a connection.
pub type Writer = WebSocketWrite<StreamWrite>;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect from {local} to {addr}: {source}")]
    TcpFrom {
        local: IpAddr,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind source address {local}: {source}")]
    Bind {
        local: IpAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "source address {local} cannot reach {addr}: a connection leaves from an address of \
         its destination's IP family"
    )]
    Family { local: IpAddr, addr: SocketAddr },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    #[error("login refused with HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("login refused: {0}")]
    Rejected(String),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Token(String),
}

impl ConnectError {
    /// Whether the server could not be reached at all (as opposed to refusing a login),
    /// from the source address given, if any.
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            ConnectError::Tcp { .. }
                | ConnectError::TcpFrom { .. }
                | ConnectError::Bind { .. }
                | ConnectError::Family { .. }
                | ConnectError::Tls { .. }
        )
    }
}

/// A login refused with `status` (401 or 403) and `body`, in words, with what to check:
/// `401 bad_signature: the signature does not verify … — is the key right?`.
pub fn refusal_said(status: u16, body: &str) -> String {
    let line = body.lines().next().unwrap_or("").trim();
    let reason = line.split(':').next().unwrap_or("").trim();
    let hint = match reason {
        "missing_token" => "the server wants a token: give [users] jwt or tokens_file, or --jwt-secret-file / --jwt-private-key",
        "bad_signature" => "is the key right?",
        "wrong_algorithm" => "the server takes another algorithm: is it the right key?",
        "expired" | "not_yet_valid" => "are this machine's and the server's clocks in step (and the ttl long enough)?",
        "wrong_audience" => "set the aud claim the server wants ([users] jwt claims, --jwt-claim aud=…)",
        "wrong_issuer" => "set the iss claim the server wants ([users] jwt claims, --jwt-claim iss=…)",
        "malformed_token" => "the server cannot read the tokens",
        "name_mismatch" => "the token's sub is not the user's name",
        "origin" => "the server refuses this Origin header",
        _ if status == 401 => "the server wants proof of the name: a token ([users] jwt, tokens_file) or a header",
        _ => "the server forbids these logins",
    };
    if line.is_empty() {
        format!("{status} — {hint}")
    } else {
        format!("{status} {line} — {hint}")
    }
}

/// A logged-in connection, split.
pub struct Connected {
    /// Frames from the server; wrap in [`FrameReader`] when it is time to read.
    pub read: ReadStream,
    /// Frames to the server (masked, as a client must).
    pub write: Writer,
    /// How long the login's TCP connect, TLS handshake and upgrade took.
    pub times: LoginTimes,
}

/// Who logs in, and how.
pub struct Login<'a> {
    pub user: &'a str,
    /// Extra request headers, rendered for this user (`[users] headers`, `--header`).
    pub headers: &'a [(String, String)],
    /// Deadline of the whole handshake.
    pub timeout: Duration,
    /// Local address to leave from; the kernel chooses when `None`.
    pub source: Option<IpAddr>,
    /// How to make a `wss://` connection; the default settings when `None`.
    pub tls: Option<&'a TlsClient>,
    /// The token proving the name, if the server wants one ([`crate::credentials`]).
    pub token: Option<&'a str>,
    /// Where [`Login::token`] goes.
    pub token_in: TokenPlacement,
    /// The protocol the server speaks ([`crate::protocol`]).
    pub protocol: &'a Profile,
}

impl<'a> Login<'a> {
    /// A login as `user` with no extra headers, from an address the kernel chooses.
    pub fn plain(user: &'a str, timeout: Duration) -> Login<'a> {
        Login {
            user,
            headers: &[],
            timeout,
            source: None,
            tls: None,
            token: None,
            token_in: TokenPlacement::Header,
            protocol: &crate::protocol::CHAT,
        }
    }

    /// What the protocol's templates are filled with.
    fn who(&self) -> Who<'a> {
        Who {
            user: self.user,
            token: self.token,
            token_in: self.token_in,
        }
    }
}

/// Opens a TCP connection to `addr` (from the login's source address, or one the kernel
/// chooses) and logs in at `target`'s path.
pub async fn connect(
    target: &Target,
    addr: SocketAddr,
    login: &Login<'_>,
) -> Result<Connected, ConnectError> {
    tokio::time::timeout(login.timeout, handshake(target, addr, login))
        .await
        .map_err(|_| ConnectError::Timeout(login.timeout))?
}

/// A connection to `target` at `addr`: TCP from `source` (or an address the kernel
/// chooses), then TLS for `wss://` with `tls` (the default settings when `None`).
pub async fn open(
    target: &Target,
    addr: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&TlsClient>,
) -> Result<ClientStream, ConnectError> {
    open_timed(target, addr, source, tls)
        .await
        .map(|(stream, _, _)| stream)
}

/// [`open`], with how long the TCP connect and the TLS handshake (if any) took, in µs.
async fn open_timed(
    target: &Target,
    addr: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<&TlsClient>,
) -> Result<(ClientStream, u64, Option<u64>), ConnectError> {
    let started = Instant::now();
    let tcp = open_tcp(addr, source).await?;
    let tcp_us = micros(started.elapsed());
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok((EitherIo::Plain(tcp), tcp_us, None));
    }
    let tls = tls.unwrap_or_else(|| TlsClient::shared_default());
    let handshake = Instant::now();
    let stream = tls
        .connect(&target.host, tcp)
        .await
        .map_err(|reason| ConnectError::Tls { addr, reason })?;
    let tls_us = micros(handshake.elapsed());
    Ok((EitherIo::Tls(Box::new(stream)), tcp_us, Some(tls_us)))
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// A TCP connection to `addr`, leaving from `source` when one is given.
async fn open_tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ConnectError> {
    let Some(local) = source else {
        return TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Tcp { addr, source });
    };
    if local.is_ipv4() != addr.is_ipv4() {
        return Err(ConnectError::Family { local, addr });
    }
    let bind_failed = |source| ConnectError::Bind { local, source };
    let socket = match local {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(bind_failed)?;
    choose_port_at_connect(&socket);
    socket
        .bind(SocketAddr::new(local, 0))
        .map_err(bind_failed)?;
    socket
        .connect(addr)
        .await
        .map_err(|source| ConnectError::TcpFrom {
            local,
            addr,
            source,
        })
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: a bind to port 0 then leaves the port to `connect`,
/// which may reuse one port towards different destinations. Without it every bound socket
/// holds a port of the whole range, and one source address serves ~28,000 connections in
/// total rather than per destination. Best effort: without it connections still work.
#[cfg(target_os = "linux")]
fn choose_port_at_connect(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is the live socket's, and the value is a c_int of the
    // length passed, as the option expects.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn choose_port_at_connect(_socket: &TcpSocket) {}

async fn handshake(
    target: &Target,
    addr: SocketAddr,
    login: &Login<'_>,
) -> Result<Connected, ConnectError> {
    let (stream, tcp_us, tls_us) = open_timed(target, addr, login.source, login.tls).await?;
    let upgrade_started = Instant::now();
    let who = login.who();
    let mut request = Request::builder()
        .method("GET")
        .uri(login.protocol.request_target(&target.path, who))
        .header(HOST, target.authority())
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13");
    if let (Some(token), true) = (login.token, login.protocol.token_in_header(who)) {
        let value = hyper::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ConnectError::Token("the token cannot be sent in a header".into()))?;
        request = request.header(hyper::header::AUTHORIZATION, value);
    }
    for (name, value) in login.headers {
        // Any UTF-8 (a user's name) is sent as its bytes (obs-text); checked names only.
        let value = hyper::header::HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| ConnectError::Handshake(format!("header {name} cannot be sent")))?;
        request = request.header(name.as_str(), value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status().as_u16();
        let body = read_body(response.into_body()).await;
        return Err(ConnectError::Refused { status, body });
    }
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    let parts = upgraded
        .downcast::<TokioIo<ClientStream>>()
        .map_err(|_| ConnectError::Handshake("upgraded stream is not ours".into()))?;
    let (read, write) = transport::split(parts.io.into_inner());
    // Copying the leftover frees hyper's whole read buffer, which `read_buf` points into.
    let leftover = Bytes::copy_from_slice(&parts.read_buf);
    let mut read = AsyncReadExt::chain(Cursor::new(leftover), read);
    let mut write =
        fastwebsockets::after_handshake_split(tokio::io::empty(), write, Role::Client).1;
    for frame in login.protocol.opening_frames(who) {
        write
            .write_frame(Frame::text(Payload::Owned(frame)))
            .await
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    }
    if login.protocol.waits_for_ready() {
        read = login_exchange(read, &mut write, login.protocol, who).await?;
    }
    let times = LoginTimes {
        tcp_us,
        tls_us,
        upgrade_us: micros(upgrade_started.elapsed()),
        mint_us: None,
    };
    Ok(Connected { read, write, times })
}

/// The largest frame the login exchange reads (a greeting, a CONNECT answer).
const MAX_LOGIN_FRAME: usize = 1 << 20;

/// Reads frames until the protocol says the login is complete, answering what it says to
/// answer; returns the stream with whatever arrived after the last login frame still in
/// it, for the reader that follows. The frames are parsed here, by hand (a server's
/// frames are unmasked and short), so that no byte past the login is taken from the
/// reader that follows.
async fn login_exchange(
    read: ReadStream,
    write: &mut Writer,
    protocol: &Profile,
    who: Who<'_>,
) -> Result<ReadStream, ConnectError> {
    let mut read = read;
    let mut buffer: Vec<u8> = Vec::with_capacity(512);
    loop {
        while let Some(frame) = raw_frame(&buffer)? {
            let payload = buffer[frame.payload.clone()].to_vec();
            buffer.drain(..frame.len);
            let step = match frame.opcode {
                OpCode::Text => protocol.login_step(&payload, who),
                OpCode::Ping => {
                    let _ = write
                        .write_frame(Frame::pong(Payload::Owned(payload)))
                        .await;
                    LoginStep::Wait
                }
                OpCode::Close => {
                    let said = match payload.as_slice() {
                        [hi, lo, reason @ ..] => format!(
                            "the server closed the connection with {} {:?} before the login completed",
                            u16::from_be_bytes([*hi, *lo]),
                            String::from_utf8_lossy(reason)
                        ),
                        _ => "the server closed the connection before the login completed".into(),
                    };
                    return Err(ConnectError::Rejected(said));
                }
                _ => LoginStep::Wait,
            };
            match step {
                LoginStep::Wait => {}
                LoginStep::Send(answer) => write
                    .write_frame(Frame::text(Payload::Owned(answer)))
                    .await
                    .map_err(|e| ConnectError::Handshake(e.to_string()))?,
                LoginStep::Refused(reason) => return Err(ConnectError::Rejected(reason)),
                LoginStep::Ready => {
                    let (cursor, socket) = read.into_inner();
                    let unread = &cursor.get_ref()[cursor.position() as usize..];
                    buffer.extend_from_slice(unread);
                    let rest = Cursor::new(Bytes::from(buffer));
                    return Ok(AsyncReadExt::chain(rest, socket));
                }
            }
        }
        let got = read
            .read_buf(&mut buffer)
            .await
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        if got == 0 {
            return Err(ConnectError::Rejected(
                "the server dropped the connection before the login completed".into(),
            ));
        }
    }
}

/// One frame at the start of a buffer: its length in all and where its payload is.
struct RawFrame {
    len: usize,
    opcode: OpCode,
    payload: std::ops::Range<usize>,
}

/// The whole frame at the start of `bytes`, `None` until it has all arrived.
fn raw_frame(bytes: &[u8]) -> Result<Option<RawFrame>, ConnectError> {
    let bad = |why: &str| Err(ConnectError::Handshake(format!("login frame: {why}")));
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x80 == 0 {
        return bad("fragmented");
    }
    let opcode = match first & 0x0f {
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xa => OpCode::Pong,
        _ => return bad("unexpected opcode"),
    };
    if second & 0x80 != 0 {
        return bad("masked by the server");
    }
    let (len, header) = match second & 0x7f {
        126 if bytes.len() >= 4 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
        127 if bytes.len() >= 10 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(be), 10)
        }
        126 | 127 => return Ok(None),
        short => (u64::from(short), 2),
    };
    if len > MAX_LOGIN_FRAME as u64 {
        return bad("larger than 1 MiB");
    }
    let end = header + len as usize;
    Ok((bytes.len() >= end).then_some(RawFrame {
        len: end,
        opcode,
        payload: header..end,
    }))
}

async fn read_body(body: hyper::body::Incoming) -> String {
    use http_body_util::BodyExt;
    match tokio::time::timeout(Duration::from_secs(1), body.collect()).await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                .trim()
                .to_string()
        }
        _ => String::new(),
    }
}

/// A frame from the server, reduced to what the users care about.
#[derive(Debug)]
pub enum Incoming {
    /// A Text frame's payload (no copy: a slice of the read buffer).
    Text(bytes::BytesMut),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// Reads whole frames from a [`ReadStream`]; the server never fragments (it is checked
/// anyway: a fragment is reported as an error). Between frames it holds no read buffer
/// ([`FrameBuffer`]), so a simulated user that receives costs what an idle one does.
pub struct FrameReader<'s> {
    stream: &'s mut ReadStream,
    frames: FrameBuffer,
}

impl<'s> FrameReader<'s> {
    /// A reader over `stream`, allowing payloads up to `max_frame` bytes.
    pub fn new(stream: &'s mut ReadStream, max_frame: usize) -> Self {
        FrameReader {
            stream,
            frames: FrameBuffer::new(Role::Client, max_frame),
        }
    }

    /// The next frame.
    pub async fn next(&mut self) -> Result<Incoming, WebSocketError> {
        let frame = self.frames.next(self.stream).await?;
        if !frame.fin {
            return Err(WebSocketError::InvalidFragment);
        }
        Ok(match frame.opcode {
            OpCode::Text => Incoming::Text(frame.payload),
            OpCode::Binary => Incoming::Binary,
            OpCode::Ping => Incoming::Ping(frame.payload.to_vec()),
            OpCode::Pong => Incoming::Pong,
            OpCode::Close => {
                let p: &[u8] = &frame.payload;
                match p {
                    [hi, lo, reason @ ..] => Incoming::Close {
                        code: Some(u16::from_be_bytes([*hi, *lo])),
                        reason: String::from_utf8_lossy(reason).into_owned(),
                    },
                    _ => Incoming::Close {
                        code: None,
                        reason: String::new(),
                    },
                }
            }
            OpCode::Continuation => return Err(WebSocketError::InvalidContinuationFrame),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the option, a bind to port 0 takes no port: `connect` picks it later, per
    /// destination.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_bound_source_takes_its_port_only_at_connect() {
        let socket = TcpSocket::new_v4().expect("a socket");
        choose_port_at_connect(&socket);
        socket
            .bind("127.0.0.2:0".parse().expect("an address"))
            .expect("binds");
        assert_eq!(socket.local_addr().expect("bound").port(), 0);
    }

    #[tokio::test]
    async fn a_source_that_cannot_be_bound_or_reach_is_named() {
        let target: Target = "ws://127.0.0.1:1/".parse().expect("a URL");
        let addr = "127.0.0.1:1".parse().expect("an address");
        let timeout = Duration::from_secs(2);
        let target = &target;
        let connect = |source: &str| {
            let login = Login {
                source: source.parse().ok(),
                ..Login::plain("ann", timeout)
            };
            async move { connect(target, addr, &login).await }
        };
        let Err(error) = connect("192.0.2.1").await else {
            panic!("192.0.2.1 is not on this machine");
        };
        assert!(error.unreachable(), "{error}");
        assert!(error.to_string().contains("192.0.2.1"), "{error}");
        let Err(error) = connect("::1").await else {
            panic!("an IPv6 source for an IPv4 destination");
        };
        assert!(matches!(error, ConnectError::Family { .. }), "{error}");
        // Port 1 is closed: the refusal names the source as well as the destination.
        let Err(error) = connect("127.0.0.3").await else {
            panic!("nothing listens on port 1");
        };
        assert!(
            error.to_string().contains("from 127.0.0.3 to 127.0.0.1:1"),
            "{error}"
        );
    }
}
