//! One simulated connection's shared handle: what its reader has seen and what the run
//! expects of it, changed only through the methods here.
//!
//! A connection is read by its own task ([`super::user`]); senders, relogins and churn
//! hold the same [`Conn`] to write to it, close it, or declare what they expect of it. The
//! fields are private so that every change of state has a name: a relogin *expects an
//! end* of the old session and *declares a survivor stable*; the reader *records a probe*
//! and *finishes* the connection. The delivery check reads the result as a ledger.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use fastwebsockets::{Frame, Payload, WebSocketError};
use tokio::sync::Notify;

use super::probe_window::ProbeWindow;
use crate::connection::Writer;

/// "Not set" for the run-clock times of a [`Conn`].
pub const NEVER: u64 = u64::MAX;

/// How early before its token's `exp` a Close 4003 still counts as the expiry (the
/// server's clock may run a little ahead of this machine's).
const TOKEN_CLOCK_SLACK: Duration = Duration::from_secs(1);

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Run-clock time (ns).
    pub at_ns: u64,
    /// The server's Close code, or `None` when the TCP connection dropped without one.
    pub code: Option<u16>,
    /// The server's Close reason.
    pub reason: String,
    /// It ended with a Close frame (with or without a code), not a bare TCP drop.
    pub closed: bool,
    /// It ended by the protocol's own end signal ([`crate::protocol::Inbound::Ended`]: a
    /// Socket.IO DISCONNECT, an eviction frame), before any Close.
    pub signalled: bool,
}

impl Ended {
    /// `Some(code)` when the server sent a Close (`code` `None` for a Close without
    /// one), `None` when the connection dropped without a Close.
    pub fn closed_with(&self) -> Option<Option<u16>> {
        self.closed.then_some(self.code)
    }
}

/// One simulated connection, shared by its reader and whoever drives the user.
pub struct Conn {
    /// Unique within the run.
    pub id: u64,
    /// Index of the user (the probe user has index `users.count`).
    pub user: u32,
    /// Run-clock time the handshake completed.
    pub opened_ns: u64,
    /// The sending half, shared by the sender and the reader (for Pong and Close replies).
    writer: tokio::sync::Mutex<Writer>,
    /// From when deliveries to this connection are expected ([`NEVER`] until it is the
    /// user's stable session).
    stable_from_ns: AtomicU64,
    /// From when it stopped being stable ([`NEVER`] while stable).
    unstable_from_ns: AtomicU64,
    /// Loadgen expects this connection to end (eviction, churn, end of run); an end
    /// without this is an unexpected disconnect.
    end_expected: AtomicBool,
    /// Highest intended send time of any chat message received (ghost detection).
    newest_chat_ns: AtomicU64,
    /// Probe ids received: the newest [`super::probe_window::WINDOW`].
    probes: Mutex<ProbeWindow>,
    /// Wakes waiters when a probe arrives.
    probe_arrived: Notify,
    /// `Some` once the connection has ended. (Not a `watch` channel: its eight notifiers
    /// cost every simulated user a third of a KiB.)
    ended: Mutex<Option<Ended>>,
    /// Wakes whoever waits for the end.
    end_signal: Notify,
    /// Tells the reader to stop (a peer that never closes).
    abort: Notify,
    /// When the token it logged in with expires (minted tokens only).
    token_expires: Option<SystemTime>,
}

impl Conn {
    /// A connection whose handshake completed at `opened_ns`. `stable` says whether it is
    /// the user's session from the start (a first login or a churn rejoin) or must wait to
    /// be declared so (a relogin: see [`Conn::declare_stable`]).
    /// `token_expires` is the `exp` of the token it logged in with, if known.
    pub fn new(
        id: u64,
        user: u32,
        opened_ns: u64,
        stable: bool,
        writer: Writer,
        token_expires: Option<SystemTime>,
    ) -> Conn {
        Conn {
            id,
            user,
            opened_ns,
            writer: tokio::sync::Mutex::new(writer),
            stable_from_ns: AtomicU64::new(if stable { opened_ns } else { NEVER }),
            unstable_from_ns: AtomicU64::new(NEVER),
            end_expected: AtomicBool::new(false),
            newest_chat_ns: AtomicU64::new(0),
            probes: Mutex::new(ProbeWindow::default()),
            probe_arrived: Notify::new(),
            ended: Mutex::new(None),
            end_signal: Notify::new(),
            abort: Notify::new(),
            token_expires,
        }
    }

    /// Whether a Close 4003 now is its token expiring (docs/protocol.md A6): the token's
    /// `exp` has come, give or take a second of clock difference with the server.
    pub fn token_expired(&self, now: SystemTime) -> bool {
        self.token_expires
            .is_some_and(|exp| now + TOKEN_CLOCK_SLACK >= exp)
    }

    /// Whether the connection has ended.
    pub fn is_open(&self) -> bool {
        self.ended().is_none()
    }

    /// From when deliveries to this connection are expected, if it was ever stable.
    pub fn stable_from(&self) -> Option<u64> {
        Some(self.stable_from_ns.load(Relaxed)).filter(|&t| t != NEVER)
    }

    /// Until when it was stable ([`NEVER`] while it still is).
    pub fn unstable_from(&self) -> u64 {
        self.unstable_from_ns.load(Relaxed)
    }

    /// Marks the connection unstable from `now_ns` (keeps an earlier mark).
    pub fn mark_unstable(&self, now_ns: u64) {
        self.unstable_from_ns.fetch_min(now_ns, Relaxed);
    }

    /// Loadgen expects this connection to end (an eviction, a churn leave, the end of the
    /// run): its end is not an unexpected disconnect.
    pub fn expect_end(&self) {
        self.end_expected.store(true, Relaxed);
    }

    /// Whether an end of this connection was expected.
    pub fn end_was_expected(&self) -> bool {
        self.end_expected.load(Relaxed)
    }

    /// Whether the connection ended and the protocol counts the way it ended as an
    /// eviction ([`crate::protocol::Profile::ended_by_eviction`]).
    pub fn evicted(&self, protocol: &crate::protocol::Profile) -> bool {
        self.ended()
            .as_ref()
            .is_some_and(|e| protocol.ended_by_eviction(e.closed_with(), e.signalled))
    }

    /// How the connection ended, if it has: see [`Ended::closed_with`].
    pub fn ended_how(&self) -> Option<Option<Option<u16>>> {
        self.ended().as_ref().map(Ended::closed_with)
    }

    /// When the connection ended (run clock), if it has.
    pub fn ended_at(&self) -> Option<u64> {
        self.ended().as_ref().map(|ended| ended.at_ns)
    }

    /// When the connection ended, if it ended without loadgen expecting it (the server
    /// closed or dropped it unasked).
    pub fn cut_at(&self) -> Option<u64> {
        let ended = self.ended();
        let at = ended.as_ref()?.at_ns;
        (!self.end_was_expected()).then_some(at)
    }

    /// Declares this connection the user's session from `at_ns` on (a relogin's single
    /// survivor): deliveries are expected from then, and its end is no longer expected.
    pub fn declare_stable(&self, at_ns: u64) {
        self.end_expected.store(false, Relaxed);
        self.stable_from_ns.store(at_ns, Relaxed);
    }

    /// Notes a received chat message's intended send time.
    pub fn record_chat(&self, intended_ns: u64) {
        self.newest_chat_ns.fetch_max(intended_ns, Relaxed);
    }

    /// The highest intended send time of any chat message received, if any arrived.
    pub fn newest_chat(&self) -> Option<u64> {
        Some(self.newest_chat_ns.load(Relaxed)).filter(|&t| t != 0)
    }

    /// Notes that probe `id` arrived and wakes whoever waits for it.
    pub fn record_probe(&self, id: u64) {
        self.probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(id);
        self.probe_arrived.notify_waiters();
    }

    /// Whether probe `id` has arrived.
    pub fn got_probe(&self, id: u64) -> bool {
        self.probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Waits up to `wait` for probe `id`; returns whether it arrived.
    pub async fn wait_probe(&self, id: u64, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.probe_arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.got_probe(id) {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.got_probe(id);
            }
        }
    }

    /// Sends a text frame.
    pub async fn send_text(&self, text: Vec<u8>) -> Result<(), WebSocketError> {
        self.send(Frame::text(Payload::Owned(text))).await
    }

    /// Sends one frame (the reader's Pong and Close replies).
    pub async fn send(&self, frame: Frame<'_>) -> Result<(), WebSocketError> {
        self.writer.lock().await.write_frame(frame).await
    }

    /// Closes on purpose: marks it expected, sends Close 1000, waits up to `wait` for the
    /// server's answer, then stops reading regardless.
    pub async fn close(&self, now_ns: u64, wait: Duration) {
        self.expect_end();
        self.mark_unstable(now_ns);
        if self.is_open() {
            let _ = tokio::time::timeout(wait, async {
                let _ = self.send(Frame::close(1000, b"loadgen done")).await;
            })
            .await;
        }
        if tokio::time::timeout(wait, self.until_ended())
            .await
            .is_err()
        {
            self.abort.notify_one();
            let _ = tokio::time::timeout(wait, self.until_ended()).await;
        }
    }

    /// Starts closing on purpose, without waiting: marks the end expected and sends Close
    /// 1000 if it can be written at once — the usual case, a few bytes into a socket with
    /// room. `false` when the write would have to wait (a full socket, or the writer busy):
    /// then close it with [`Conn::close`]. Closing every connection at the end of a run
    /// this way costs no task per connection.
    pub fn start_close(&self, now_ns: u64) -> bool {
        self.expect_end();
        self.mark_unstable(now_ns);
        if !self.is_open() {
            return true;
        }
        let Ok(mut writer) = self.writer.try_lock() else {
            return false;
        };
        // Unconstrained: after a hundred or so writes, tokio's cooperative budget would
        // make every further one of this loop of many connections report "not yet".
        let mut write = std::pin::pin!(tokio::task::unconstrained(
            writer.write_frame(Frame::close(1000, b"loadgen done"))
        ));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        write.as_mut().poll(&mut cx).is_ready()
    }

    /// Waits until `deadline` for the connection to end; `true` if it did.
    pub async fn ended_by(&self, deadline: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(deadline, self.until_ended())
            .await
            .is_ok()
    }

    /// Resolves once the connection has ended.
    async fn until_ended(&self) {
        loop {
            let mut signal = std::pin::pin!(self.end_signal.notified());
            // Registered before looking, so an end between the look and the wait wakes it.
            signal.as_mut().enable();
            if self.ended().is_some() {
                return;
            }
            signal.await;
        }
    }

    /// How it ended so far (`None` while open).
    fn ended(&self) -> std::sync::MutexGuard<'_, Option<Ended>> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the reader to stop now (a peer that does not answer a Close).
    pub fn stop_reading(&self) {
        self.abort.notify_one();
    }

    /// Waits up to `wait` for the connection to end; returns how it ended, if it did.
    pub async fn wait_ended(&self, wait: Duration) -> Option<Ended> {
        let _ = tokio::time::timeout(wait, self.until_ended()).await;
        self.ended().clone()
    }

    /// Resolves when someone asked the reader to stop ([`Conn::close`] gave up waiting).
    pub async fn reading_stopped(&self) {
        self.abort.notified().await;
    }

    /// Records how the connection ended (the reader's last act): unstable from then, and
    /// every waiter woken.
    pub fn finish(&self, ended: Ended) {
        self.mark_unstable(ended.at_ns);
        *self.ended() = Some(ended);
        self.end_signal.notify_waiters();
    }
}
