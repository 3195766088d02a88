//! One WebSocket connection once logged in: its registration, its read loop and its
//! writer; the handle others hold is [`crate::handle::Session`].
//!
//! The connection's own task reads frames in order and handles each before reading the
//! next, so two messages from one sender are fanned out in the order they were sent (M3)
//! — no task per message. A second task, the writer, is the only thing that writes to the
//! socket: it drains the [`Outbox`] in batches, so broadcasters never touch a socket and
//! never wait (M6).
//!
//! Every way a session ends goes through [`Session::close`]: it closes the outbox with a
//! last frame (a Close with the reason's code) and wakes the read loop, which then
//! unregisters the session (by id, S5), gives the writer a bounded time to flush, and
//! lingers briefly for the peer's end of the TCP connection.

use std::collections::VecDeque;
use std::io::{self, Cursor, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes};
use fastwebsockets::{upgrade::UpgradeFut, CloseCode};
use frame_buffer::{FrameBuffer, OpCode, Role, WebSocketError};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::budget::Spending;
use crate::frame::{self, close_code};
use crate::handle::Session;
use crate::metrics::Metrics;
use crate::outbox::Outgoing;
use crate::registry::Registered;
use crate::shared::Shared;
use crate::transport::{self, SessionRead, SessionWrite};
use crate::unread::UnreadLimit;

/// How long a closing session waits for the peer to close its side of the TCP connection
/// after our Close frame, so the peer reads the Close instead of a reset.
const LINGER: Duration = Duration::from_millis(500);

/// Most frames handed to one vectored write.
const MAX_SLICES: usize = 64;

/// The bytes of a connection after the upgrade: whatever hyper had already read past the
/// handshake, then the socket.
type ReadStream = tokio::io::Chain<Cursor<Bytes>, SessionRead>;

/// Registers a login as `name`'s session, evicting its predecessor (S4), before the
/// `101` is sent (docs/protocol.md R6): a client that saw this login's `101` before it
/// sent another login of the same name finds this one evicted by that one, never the
/// other way round. Until the upgrade completes, messages for it wait in its outbox.
/// `seq` is the login's number from the cluster bus (0 on a single node); a login that a
/// newer one already superseded (C3) gets its `101` and, at once, the Close 4001 it would
/// have got a moment later. `None` when the server is shutting down (the login is then
/// refused).
pub(crate) fn register(shared: &Shared, name: String, seq: u64) -> Option<Arc<Session>> {
    let session = Arc::new(Session::new(
        shared.next_id.fetch_add(1, Relaxed),
        name.into(),
        seq,
    ));
    session.heard(shared.now_ms());
    let registered = shared
        .hub
        .registry
        .register(session.clone(), &shared.hub.metrics)
        .ok()?;
    Metrics::inc(&shared.hub.metrics.logins);
    debug!(user = %session.name, id = session.id, seq, "login");
    let evicted = match registered {
        Registered::Online { replaced } => replaced,
        Registered::Superseded => Some(session.clone()),
    };
    #[cfg(feature = "fault-injection")]
    if evicted.is_some()
        && shared.config.fault == Some(crate::fault::Fault::CloseReplacementWith1013)
    {
        session.close(
            Some(frame::close(close_code::TRY_AGAIN_LATER, "shedding load")),
            true,
        );
    }
    if let Some(evicted) = evicted {
        let bye = frame::close(close_code::REPLACED, "replaced by a new login");
        if evicted.close(Some(bye), false) {
            Metrics::inc(&shared.hub.metrics.evictions);
            debug!(user = %evicted.name, id = evicted.id, "evicted");
        }
    }
    Some(session)
}

/// Runs one registered session's connection to its end, once the upgrade completes. With
/// `expires` (its token's `exp`), the session is closed with 4003 at that moment (A6).
pub(crate) async fn run(
    shared: Arc<Shared>,
    session: Arc<Session>,
    upgrade: UpgradeFut,
    expires: Option<SystemTime>,
) {
    let _task = shared.tasks.track();
    let upgraded = match upgrade.await.map(|ws| ws.into_inner().into_inner()) {
        Ok(upgraded) => upgraded.downcast::<TokioIo<UnreadLimit>>().ok(),
        Err(error) => {
            debug!(%error, "upgrade failed");
            None
        }
    };
    // hyper hands back its whole read buffer behind `read_buf`, even when nothing is left
    // in it: copy out the leftover so that buffer is freed (it would otherwise cost every
    // idle session several KiB).
    let Some((connection, leftover)) = upgraded.map(|parts| {
        (
            parts.io.into_inner().into_inner(),
            Bytes::copy_from_slice(&parts.read_buf),
        )
    }) else {
        session.close(None, true);
        shared
            .hub
            .registry
            .unregister(&session, &shared.hub.metrics);
        return;
    };
    let (read_half, write_half) = transport::split(connection);
    let mut writer = tokio::spawn(write_loop(write_half, session.clone(), shared.clone()));

    let mut stream = AsyncReadExt::chain(Cursor::new(leftover), read_half);
    let peer_open = match expires {
        None => read_loop(&mut stream, &session, &shared).await,
        Some(expires) => {
            // Closing at expiry wakes the read loop, which then ends as for any close.
            let expiry = async {
                let left = expires
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                tokio::time::sleep(left).await;
                let bye = frame::close(close_code::TOKEN_EXPIRED, "token expired");
                if session.close(Some(bye), false) {
                    Metrics::inc(&shared.hub.metrics.sessions_expired);
                    debug!(user = %session.name, id = session.id, "token expired");
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                open = read_loop(&mut stream, &session, &shared) => open,
                () = expiry => true,
            }
        }
    };
    if shared
        .hub
        .registry
        .unregister(&session, &shared.hub.metrics)
    {
        if let Some(bus) = &shared.bus {
            bus.forget(session.name.clone(), session.seq);
        }
    }

    if tokio::time::timeout(shared.config.close_timeout, &mut writer)
        .await
        .is_err()
    {
        // A peer that does not read cannot be flushed to; drop it.
        writer.abort();
    }
    if peer_open {
        linger(&mut stream).await;
    }
    debug!(user = %session.name, id = session.id, "session ended");
}

/// Reads frames until the session ends. Returns whether the peer's side may still be open
/// (so it is worth lingering for its FIN).
async fn read_loop(stream: &mut ReadStream, session: &Session, shared: &Shared) -> bool {
    // An idle connection holds no read buffer: the frame reader has one only while bytes
    // wait to be parsed (frame-buffer's FrameBuffer).
    let mut reader = MessageReader::new(stream, shared.config.max_message);
    let mut spending = Spending::new(shared.config.inbound, Instant::now());
    // Only used by the deliberate `Fault::SwapPairs`.
    #[cfg(feature = "fault-injection")]
    let mut held: Option<Vec<u8>> = None;
    loop {
        let event = tokio::select! {
            biased;
            _ = session.closing() => return true,
            event = reader.next() => event,
        };
        session.heard(shared.now_ms());
        // Frames already buffered are parsed without touching the socket, so without this
        // a burst would be fanned out in one go and the receivers' writers would not get
        // to run until it was over — overflowing their queues although they read.
        tokio::task::consume_budget().await;
        match event {
            #[cfg(feature = "fault-injection")]
            Event::Text(message) if shared.config.fault == Some(crate::fault::Fault::SwapPairs) => {
                match held.take() {
                    None => held = Some(message),
                    Some(first) => {
                        broadcast(&message, session, shared);
                        broadcast(&first, session, shared);
                    }
                }
            }
            Event::Text(message) => {
                broadcast(&message, session, shared);
                // Over budget: read nothing more until it refills (R3).
                let wait = spending.spend(message.len(), Instant::now());
                if !wait.is_zero() {
                    Metrics::inc(&shared.hub.metrics.throttled);
                    let waited = Instant::now();
                    tokio::select! {
                        biased;
                        _ = session.closing() => return true,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    shared
                        .hub
                        .metrics
                        .throttled_ms
                        .fetch_add(waited.elapsed().as_millis() as u64, Relaxed);
                }
            }
            Event::Binary => Metrics::inc(&shared.hub.metrics.binary_ignored),
            Event::Ping(payload) => {
                session.send(
                    Outgoing {
                        bytes: frame::pong(&payload),
                        chat: false,
                    },
                    shared.hub.queue_limit,
                    &shared.hub.metrics,
                );
            }
            Event::Pong | Event::Partial => {}
            Event::Close(reply) => {
                session.close(Some(reply), false);
                return true;
            }
            Event::Violation(code, reason) => {
                Metrics::inc(&shared.hub.metrics.protocol_errors);
                debug!(user = %session.name, code, reason, "protocol violation");
                session.close(Some(frame::close(code, reason)), false);
                return true;
            }
            Event::Gone => {
                session.close(None, true);
                return false;
            }
        }
    }
}

/// Fans a message out to every other online user (M1, M2), encoded once.
fn broadcast(message: &[u8], sender: &Session, shared: &Shared) {
    // An evicted connection may have read one more message before noticing; it no longer
    // speaks for the user.
    if sender.outbox.is_closed() {
        return;
    }
    // `received` numbers the message for the deliberate `Fault::DropEvery`.
    #[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))]
    let received = shared.hub.metrics.messages_in.fetch_add(1, Relaxed) + 1;
    #[cfg(feature = "fault-injection")]
    if let Some(crate::fault::Fault::DropEvery(n)) = shared.config.fault {
        if n > 0 && received.is_multiple_of(n) {
            return;
        }
    }
    #[cfg(feature = "fault-injection")]
    if shared.config.fault == Some(crate::fault::Fault::BroadcastHeldByBackedUpReceiver) {
        let mut held = false;
        shared
            .hub
            .registry
            .for_each_other(&sender.name, |receiver| {
                held |= receiver.outbox.queued() > 0
            });
        if held {
            return;
        }
    }
    let bytes = frame::chat(message, &sender.name);
    if let Some(bus) = &shared.bus {
        bus.publish_chat(&sender.name, &bytes, &shared.hub.metrics);
    }
    shared
        .hub
        .registry
        .for_each_other(&sender.name, |receiver| {
            #[cfg(feature = "fault-injection")]
            if let Some(crate::fault::Fault::DropEveryTo { every, name_suffix }) =
                shared.config.fault
            {
                if receiver.name.as_bytes().last() == Some(&name_suffix) {
                    let nth = shared.fault_deliveries.fetch_add(1, Relaxed) + 1;
                    if every > 0 && nth.is_multiple_of(every) {
                        return;
                    }
                }
            }
            receiver.send(
                Outgoing {
                    bytes: bytes.clone(),
                    chat: true,
                },
                shared.hub.queue_limit,
                &shared.hub.metrics,
            );
        });
}

/// What the peer did, one complete message or control frame at a time.
enum Event {
    Text(Vec<u8>),
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// A fragment that did not complete a message.
    Partial,
    /// The peer sent Close; the payload is our reply.
    Close(Bytes),
    /// Close the connection with this code and reason.
    Violation(u16, &'static str),
    /// The TCP connection ended or failed.
    Gone,
}

/// A message being reassembled from fragments (M4).
enum Fragments {
    None,
    Text(Vec<u8>),
    Binary(usize),
}

/// Turns frames into [`Event`]s: reassembles fragments, enforces the size limit across
/// them, validates UTF-8 and Close frames. [`FrameBuffer`] parses each frame and unmasks
/// it; control frames are answered through the outbox, never written from here.
struct MessageReader<'s> {
    stream: &'s mut ReadStream,
    frames: FrameBuffer,
    fragments: Fragments,
    max_message: usize,
}

impl<'s> MessageReader<'s> {
    fn new(stream: &'s mut ReadStream, max_message: usize) -> Self {
        MessageReader {
            stream,
            frames: FrameBuffer::new(Role::Server, max_message),
            fragments: Fragments::None,
            max_message,
        }
    }

    async fn next(&mut self) -> Event {
        let frame = match self.frames.next(self.stream).await {
            Ok(frame) => frame,
            Err(error) => return violation_for(error),
        };
        if let Some(violation) = frame_violation(&frame) {
            return violation;
        }
        let payload: &[u8] = &frame.payload;
        match (frame.opcode, &mut self.fragments) {
            (OpCode::Text | OpCode::Binary, Fragments::Text(_) | Fragments::Binary(_)) => {
                Event::Violation(
                    close_code::PROTOCOL_ERROR,
                    "new message inside a fragmented one",
                )
            }
            (OpCode::Text, Fragments::None) if frame.fin => Event::Text(payload.to_vec()),
            (OpCode::Text, Fragments::None) => {
                self.fragments = Fragments::Text(payload.to_vec());
                Event::Partial
            }
            (OpCode::Binary, Fragments::None) if frame.fin => Event::Binary,
            (OpCode::Binary, Fragments::None) => {
                self.fragments = Fragments::Binary(payload.len());
                Event::Partial
            }
            (OpCode::Continuation, Fragments::None) => {
                Event::Violation(close_code::PROTOCOL_ERROR, "continuation without a message")
            }
            (OpCode::Continuation, Fragments::Text(buf)) => {
                if buf.len() + payload.len() > self.max_message {
                    return Event::Violation(close_code::TOO_BIG, "message too big");
                }
                buf.extend_from_slice(payload);
                if !frame.fin {
                    return Event::Partial;
                }
                let Fragments::Text(message) =
                    std::mem::replace(&mut self.fragments, Fragments::None)
                else {
                    unreachable!("matched Fragments::Text above")
                };
                if std::str::from_utf8(&message).is_err() {
                    return Event::Violation(close_code::INVALID_PAYLOAD, "invalid UTF-8");
                }
                Event::Text(message)
            }
            (OpCode::Continuation, Fragments::Binary(len)) => {
                *len += payload.len();
                if !frame.fin {
                    return Event::Partial;
                }
                self.fragments = Fragments::None;
                Event::Binary
            }
            (OpCode::Ping, _) => Event::Ping(payload.to_vec()),
            (OpCode::Pong, _) => Event::Pong,
            (OpCode::Close, _) => close_reply(payload),
        }
    }
}

/// Checks a peer's Close payload and builds the echo (RFC 6455 §5.5.1, §7.4).
fn close_reply(payload: &[u8]) -> Event {
    match payload {
        [] => Event::Close(frame::close_empty()),
        [_] => Event::Violation(close_code::PROTOCOL_ERROR, "close frame of one byte"),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() {
                return Event::Violation(close_code::PROTOCOL_ERROR, "invalid close code");
            }
            if std::str::from_utf8(reason).is_err() {
                return Event::Violation(
                    close_code::INVALID_PAYLOAD,
                    "invalid UTF-8 in close reason",
                );
            }
            Event::Close(frame::close(code, ""))
        }
    }
}

/// What RFC 6455 section 5 forbids in a frame that [`FrameBuffer`] lets through
/// (docs/protocol.md R2): a client frame must be masked (5.1), and a control frame may
/// carry at most 125 bytes (5.5; the frame reader checks Ping only). Either closes the
/// connection with 1002, before the frame is acted on.
fn frame_violation(frame: &frame_buffer::Frame) -> Option<Event> {
    if !frame.masked {
        return Some(Event::Violation(
            close_code::PROTOCOL_ERROR,
            "client frames must be masked",
        ));
    }
    let control = matches!(frame.opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && frame.payload.len() > 125 {
        return Some(Event::Violation(
            close_code::PROTOCOL_ERROR,
            "control frame over 125 bytes",
        ));
    }
    None
}

/// Maps a frame-level error to how the connection ends (M5).
fn violation_for(error: WebSocketError) -> Event {
    match error {
        WebSocketError::FrameTooLarge => Event::Violation(close_code::TOO_BIG, "message too big"),
        WebSocketError::InvalidUTF8 => {
            Event::Violation(close_code::INVALID_PAYLOAD, "invalid UTF-8")
        }
        WebSocketError::UnexpectedEOF | WebSocketError::IoError(_) => Event::Gone,
        _ => Event::Violation(close_code::PROTOCOL_ERROR, "protocol error"),
    }
}

/// The only writer of the socket: drains the outbox in batches until it is closed.
async fn write_loop(mut socket: SessionWrite, session: Arc<Session>, shared: Arc<Shared>) {
    let mut batch = VecDeque::new();
    loop {
        let last = session.outbox.next_batch(&mut batch).await;
        if let Err(error) = write_batch(&mut socket, &mut batch, &shared.hub.metrics).await {
            debug!(user = %session.name, %error, "write failed");
            session.close(None, true);
            return;
        }
        if last {
            let _ = socket.shutdown().await;
            return;
        }
        if batch.capacity() > MAX_SLICES {
            // Give back a burst's worth of queue memory.
            batch = VecDeque::new();
        }
    }
}

/// Writes every frame in `batch` with vectored writes, counting bytes and deliveries.
async fn write_batch(
    socket: &mut SessionWrite,
    batch: &mut VecDeque<Outgoing>,
    metrics: &Metrics,
) -> io::Result<()> {
    while !batch.is_empty() {
        // The slices live on the stack of one poll, not in the future: an idle writer's
        // task stays small, and a write costs no allocation (the gate counts them).
        let written = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = batch.len().min(MAX_SLICES);
            for (slice, item) in slices.iter_mut().zip(batch.iter()) {
                *slice = IoSlice::new(&item.bytes);
            }
            Pin::new(&mut *socket).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        metrics.bytes_out.fetch_add(written as u64, Relaxed);
        let mut left = written;
        while left > 0 {
            let Some(front) = batch.front_mut() else {
                break;
            };
            if front.bytes.len() > left {
                front.bytes.advance(left);
                break;
            }
            left -= front.bytes.len();
            if front.chat {
                Metrics::inc(&metrics.deliveries_out);
                #[cfg(feature = "gate-slowdown")]
                gate_slowdown();
            }
            batch.pop_front();
        }
    }
    // TLS holds written records until flushed; for plain TCP this does nothing.
    socket.flush().await
}

/// Busy work per delivery, compiled in only with the `gate-slowdown` feature: a fixed
/// 2.5 µs spin, about a fifth of what a delivery costs on our 2-core machines, so a build
/// with it is a real ~20% slower server for demonstrating that the performance gate
/// catches a regression.
#[cfg(feature = "gate-slowdown")]
fn gate_slowdown() {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_nanos(2_500) {
        std::hint::spin_loop();
    }
}

/// Discards what the peer still sends until it closes its side, for at most [`LINGER`].
async fn linger(stream: &mut (impl AsyncRead + Unpin)) {
    // Small: every session of a mass disconnect lingers at once.
    let mut sink = vec![0u8; 512];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
