//! Test doubles for `loadgen conform`: a minimal chat server (hyper + fastwebsockets) that
//! follows docs/protocol.md except for one deliberate defect, for the defects chat-server has
//! no `Fault` for. Each defect should make exactly the matching conformance check fail.
//!
//! With [`Defect::None`] the double is a correct (if minimal) server: one writer task and
//! an unbounded queue per connection, eviction with Close 4001, removal by connection id.
//! It also follows the robustness rules conform reports (R1 handshake refusals, R2 frame
//! checks, R3 — it reads and queues everything, so a reader never loses a message —, R4
//! with a [`HEADER_TIMEOUT`] and a 16 KiB head, R5 with [`MAX_SESSIONS`], S3's format
//! characters), except R6: it registers a login after its `101` (that defect is shown
//! with chat-server's `Fault::RegisterAfter101` instead).

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{header, Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

/// The one thing the double does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// None: a conforming server.
    None,
    /// S2: a login with an empty (or missing) name is accepted.
    AcceptEmptyName,
    /// S4: a relogin replaces the registry entry but never closes the old connection.
    NoEviction,
    /// S6: eviction looks up the old session, then registers the new one a few ms later
    /// without checking again, so of several concurrent logins some are never closed.
    RacyEviction,
    /// S7: a client's Close is ignored (never answered), like the Go demo.
    IgnoreClientClose,
    /// M1: deliveries are formatted `<message> - FROM <NAME>` (one dash).
    WrongFrom,
    /// M2: the sender also receives its own message.
    EchoToSender,
    /// M5: no size limit and no UTF-8 check: everything is broadcast.
    NoLimits,
    /// M6: broadcast writes to every receiver in turn under one lock, like the Go demo,
    /// so one receiver that does not read stalls everyone.
    SequentialWrites,
    /// S3: names holding Unicode format characters (U+202E, U+200B) are accepted.
    AcceptFormatChars,
    /// R1: any upgrade request is upgraded: another method, HTTP/1.0 (another WebSocket
    /// version is still refused, by fastwebsockets, with 400 rather than 426).
    LaxHandshake,
    /// R2: unmasked client frames are accepted (and broadcast) and a control frame over
    /// 125 bytes is not answered with 1002 (fastwebsockets drops the connection).
    AcceptUnmasked,
    /// R3: flood control by dropping: from [`FLOOD_LIMIT`] messages a second on, a
    /// sender's messages are silently discarded instead of read later.
    FloodDrops,
    /// R4: no request-head timeout: an unfinished head keeps its connection forever.
    NoHeaderTimeout,
    /// R5: no session limit: every login is upgraded.
    NoSessionLimit,
}

/// The double's request-head timeout (R4); tests pass it to conform as --header-timeout.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// Sessions the double holds at most (R5); a login beyond gets `503`.
pub const MAX_SESSIONS: usize = 64;

/// Messages a second the `FloodDrops` double reads from one sender before it drops.
pub const FLOOD_LIMIT: u32 = 2000;

type Writer = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;
type Reader = WebSocketRead<ReadHalf<TokioIo<Upgraded>>>;

struct Session {
    id: u64,
    name: String,
    writer: tokio::sync::Mutex<Writer>,
    queue: mpsc::UnboundedSender<Vec<u8>>,
    /// Ends the read loop (eviction).
    kick: Notify,
}

struct State {
    defect: Defect,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    next_id: AtomicU64,
    /// Held across a whole broadcast in `SequentialWrites`.
    broadcast_lock: tokio::sync::Mutex<()>,
    /// Logins upgraded and not yet ended (R5).
    open: AtomicU64,
}

/// Counts one login in `State::open` while it lives.
struct OpenSlot(Arc<State>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running double.
pub struct Double {
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Double {
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Starts a double with `defect` on 127.0.0.1, a free port.
pub async fn start(defect: Defect) -> Double {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let state = Arc::new(State {
        defect,
        sessions: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        broadcast_lock: tokio::sync::Mutex::new(()),
        open: AtomicU64::new(0),
    });
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service_state = state.clone();
                let service = service_fn(move |request| {
                    let state = service_state.clone();
                    async move { Ok::<_, Infallible>(route(request, state)) }
                });
                let head_timeout = if state.defect == Defect::NoHeaderTimeout {
                    None
                } else {
                    Some(HEADER_TIMEOUT)
                };
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(head_timeout)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Double { addr, accept }
}

fn route(mut request: Request<Incoming>, state: Arc<State>) -> Response<Empty<Bytes>> {
    let status = |code: StatusCode| {
        Response::builder()
            .status(code)
            .body(Empty::new())
            .expect("static response")
    };
    let bad = || status(StatusCode::BAD_REQUEST);
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return Response::builder()
            .status(StatusCode::OK)
            .body(Empty::new())
            .expect("static response");
    }
    if state.defect != Defect::LaxHandshake {
        if request.method() != Method::GET {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        if request.version() != Version::HTTP_11 {
            return bad();
        }
        if request
            .headers()
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            let mut response = status(StatusCode::UPGRADE_REQUIRED);
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                header::HeaderValue::from_static("13"),
            );
            return response;
        }
    }
    let name = match user_from_query(request.uri().query(), state.defect) {
        Some(name) => name,
        None if state.defect == Defect::AcceptEmptyName => String::new(),
        None => return bad(),
    };
    let open = state.open.fetch_add(1, Ordering::Relaxed);
    let slot = OpenSlot(state.clone());
    if state.defect != Defect::NoSessionLimit && open >= MAX_SESSIONS as u64 {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    }
    let Ok((response, upgrade)) = fastwebsockets::upgrade::upgrade(&mut request) else {
        return bad();
    };
    tokio::spawn(async move {
        let _slot = slot;
        if let Ok(ws) = upgrade.await {
            session(ws, name, state).await;
        }
    });
    response.map(|_| Empty::new())
}

/// The name of a login query (docs/protocol.md S1–S3): the first `user` parameter,
/// percent-decoded with `+` as a space; `None` (refused) when missing, empty, over 64
/// bytes, not UTF-8, or holding a control character or (but with `AcceptFormatChars`) a
/// format character. The double's own parser, so that it depends on nothing inside
/// chat-server.
fn user_from_query(query: Option<&str>, defect: Defect) -> Option<String> {
    let raw = query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == b"user").then_some(value)
    })?;
    let bytes = percent_decode(raw);
    if bytes.is_empty() || bytes.len() > 64 {
        return None;
    }
    let name = String::from_utf8(bytes).ok()?;
    if defect != Defect::AcceptFormatChars && name.chars().any(is_format) {
        return None;
    }
    (!name.chars().any(char::is_control)).then_some(name)
}

/// The common Unicode format characters (category Cf): soft hyphen, zero-width and
/// bidi controls, invisible operators, the byte-order mark. Enough for a test double.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}' | '\u{feff}')
}

/// Decodes `%XX` and `+`; anything else, a malformed escape included, stays as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|hex| bytes[i] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (escape, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    out
}

async fn session(
    ws: fastwebsockets::WebSocket<TokioIo<Upgraded>>,
    name: String,
    state: Arc<State>,
) {
    let (mut reader, writer): (Reader, Writer) = ws.split(tokio::io::split);
    reader.set_auto_close(false);
    reader.set_auto_pong(false);
    let limit = if state.defect == Defect::NoLimits {
        64 << 20
    } else {
        64 * 1024
    };
    reader.set_max_message_size(limit);
    let (queue, mut outbound) = mpsc::unbounded_channel::<Vec<u8>>();
    let me = Arc::new(Session {
        id: state.next_id.fetch_add(1, Ordering::Relaxed),
        name: name.clone(),
        writer: tokio::sync::Mutex::new(writer),
        queue,
        kick: Notify::new(),
    });
    // Writer task: the connection's queue, in order.
    let writer_me = Arc::downgrade(&me);
    tokio::spawn(async move {
        while let Some(text) = outbound.recv().await {
            let Some(me) = writer_me.upgrade() else {
                return;
            };
            let frame = Frame::text(Payload::Owned(text));
            if me.writer.lock().await.write_frame(frame).await.is_err() {
                return;
            }
        }
    });
    register(&state, &me).await;
    let mut no_obligations = |_: Frame<'_>| async { Ok::<(), std::io::Error>(()) };
    let mut window = (Instant::now(), 0u32);
    loop {
        let mut frame = tokio::select! {
            frame = reader.read_frame(&mut no_obligations) => frame,
            _ = me.kick.notified() => break,
        };
        if let Ok(frame) = &mut frame {
            if state.defect != Defect::AcceptUnmasked && !masked(frame) {
                close(&me, 1002, "client frames must be masked").await;
                break;
            }
        }
        match frame {
            Ok(frame) => match frame.opcode {
                OpCode::Text if state.defect == Defect::FloodDrops && flooding(&mut window) => {}
                OpCode::Text => {
                    let payload = frame.payload.to_vec();
                    if state.defect != Defect::NoLimits && std::str::from_utf8(&payload).is_err() {
                        close(&me, 1007, "invalid UTF-8").await;
                        break;
                    }
                    broadcast(&state, &me, payload).await;
                }
                OpCode::Close => {
                    if state.defect == Defect::IgnoreClientClose {
                        continue;
                    }
                    close(&me, 1000, "").await;
                    break;
                }
                OpCode::Ping => {
                    let pong = Frame::pong(Payload::Owned(frame.payload.to_vec()));
                    let _ = me.writer.lock().await.write_frame(pong).await;
                }
                _ => {}
            },
            Err(WebSocketError::InvalidUTF8) => {
                close(&me, 1007, "invalid UTF-8").await;
                break;
            }
            Err(WebSocketError::FrameTooLarge) => {
                close(&me, 1009, "message too big").await;
                break;
            }
            Err(WebSocketError::PingFrameTooLarge) if state.defect != Defect::AcceptUnmasked => {
                close(&me, 1002, "control frame over 125 bytes").await;
                break;
            }
            Err(_) => break,
        }
    }
    let mut sessions = state.sessions.lock().expect("lock");
    if sessions.get(&name).is_some_and(|s| s.id == me.id) {
        sessions.remove(&name);
    }
}

/// Whether a client frame was masked (fastwebsockets keeps the mask private, but writes it
/// into a formatted head).
fn masked(frame: &mut Frame<'_>) -> bool {
    let mut head = [0u8; 14];
    frame.fmt_head(&mut head);
    head[1] & 0x80 != 0
}

/// Counts a message into the current one-second `window`; whether it is over
/// [`FLOOD_LIMIT`] (and so dropped by `FloodDrops`).
fn flooding(window: &mut (Instant, u32)) -> bool {
    if window.0.elapsed() >= Duration::from_secs(1) {
        *window = (Instant::now(), 0);
    }
    window.1 += 1;
    window.1 > FLOOD_LIMIT
}

async fn register(state: &State, me: &Arc<Session>) {
    let old = match state.defect {
        Defect::RacyEviction => {
            let seen = state.sessions.lock().expect("lock").get(&me.name).cloned();
            tokio::time::sleep(Duration::from_millis(5)).await;
            state
                .sessions
                .lock()
                .expect("lock")
                .insert(me.name.clone(), me.clone());
            seen
        }
        _ => state
            .sessions
            .lock()
            .expect("lock")
            .insert(me.name.clone(), me.clone()),
    };
    if let Some(old) = old {
        if state.defect != Defect::NoEviction {
            close(&old, 4001, "replaced by a new login").await;
            old.kick.notify_one();
        }
    }
}

async fn close(session: &Session, code: u16, reason: &str) {
    let _ = session
        .writer
        .lock()
        .await
        .write_frame(Frame::close(code, reason.as_bytes()))
        .await;
}

async fn broadcast(state: &State, from: &Session, mut payload: Vec<u8>) {
    let separator: &[u8] = if state.defect == Defect::WrongFrom {
        b" - FROM "
    } else {
        b" -- FROM "
    };
    payload.extend_from_slice(separator);
    payload.extend_from_slice(from.name.as_bytes());
    let receivers: Vec<Arc<Session>> = state
        .sessions
        .lock()
        .expect("lock")
        .values()
        .filter(|s| s.name != from.name || state.defect == Defect::EchoToSender)
        .cloned()
        .collect();
    if state.defect == Defect::SequentialWrites {
        let _all = state.broadcast_lock.lock().await;
        for receiver in receivers {
            let frame = Frame::text(Payload::Owned(payload.clone()));
            let _ = receiver.writer.lock().await.write_frame(frame).await;
        }
    } else {
        for receiver in receivers {
            let _ = receiver.queue.send(payload.clone());
        }
    }
}
