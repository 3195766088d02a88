//! Simulated users: one connection's shared handle ([`Conn`]), its read loop that
//! verifies every delivery, and the open-model sender loop.
//!
//! A connection is read by its own task; senders, relogins and churn hold the [`Conn`] to
//! write to it or close it. Every delivery is checked as it arrives (stamp, `-- FROM`
//! name, not from itself, order, duplicates) and timed from its *intended* send time.
//! When the connection ends, its [`SessionLedger`] goes to the run for the loss tally.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastwebsockets::{Frame, Payload};
use tokio::sync::{watch, Notify};

use crate::checks::delivery::{Arrival, ReceivedSet, SessionLedger};
use crate::connection::{self, Connected, FrameReader, Incoming, ReadStream, Writer};
use crate::run::Ctx;
use crate::stamp::{Kind, Stamp};

/// "Not set" for the time fields of a [`Conn`].
pub const NEVER: u64 = u64::MAX;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Run-clock time (ns).
    pub at_ns: u64,
    /// The server's Close code, or `None` when the TCP connection dropped without one.
    pub code: Option<u16>,
    /// The server's Close reason.
    pub reason: String,
}

/// One simulated connection, shared by its reader and whoever drives the user.
pub struct Conn {
    /// Unique within the run.
    pub id: u64,
    /// Index of the user (the probe user has index `users.count`).
    pub user: u32,
    /// The sending half, shared by the sender and the reader (for Pong and Close replies).
    pub writer: tokio::sync::Mutex<Writer>,
    /// Run-clock time the handshake completed.
    pub opened_ns: u64,
    /// From when deliveries to this connection are expected ([`NEVER`] until it is the
    /// user's stable session).
    pub stable_from_ns: AtomicU64,
    /// From when it stopped being stable ([`NEVER`] while stable).
    pub unstable_from_ns: AtomicU64,
    /// Loadgen expects this connection to end (eviction, churn, end of run); an end
    /// without this is an unexpected disconnect.
    pub end_expected: AtomicBool,
    /// Highest intended send time of any chat message received (ghost detection).
    pub newest_chat_ns: AtomicU64,
    /// Probe ids received.
    pub probes: Mutex<Vec<u64>>,
    /// Wakes waiters when a probe arrives.
    pub probe_arrived: Notify,
    /// `Some` once the connection has ended.
    pub ended: watch::Sender<Option<Ended>>,
    /// Tells the reader to stop (a peer that never closes).
    abort: Notify,
}

impl Conn {
    /// Whether the connection has ended.
    pub fn is_open(&self) -> bool {
        self.ended.borrow().is_none()
    }

    /// Marks the connection unstable from `now_ns` (keeps an earlier mark).
    pub fn mark_unstable(&self, now_ns: u64) {
        self.unstable_from_ns.fetch_min(now_ns, Relaxed);
    }

    /// Whether probe `id` has arrived.
    pub fn got_probe(&self, id: u64) -> bool {
        self.probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    /// Sends a text message.
    pub async fn send_text(&self, text: String) -> Result<(), fastwebsockets::WebSocketError> {
        self.writer
            .lock()
            .await
            .write_frame(Frame::text(Payload::Owned(text.into_bytes())))
            .await
    }

    /// Closes on purpose: marks it expected, sends Close 1000, waits up to `wait` for the
    /// server's answer, then stops reading regardless.
    pub async fn close(&self, now_ns: u64, wait: Duration) {
        self.end_expected.store(true, Relaxed);
        self.mark_unstable(now_ns);
        if self.is_open() {
            let _ = tokio::time::timeout(wait, async {
                let _ = self
                    .writer
                    .lock()
                    .await
                    .write_frame(Frame::close(1000, b"loadgen done"))
                    .await;
            })
            .await;
        }
        let mut ended = self.ended.subscribe();
        if tokio::time::timeout(wait, ended.wait_for(Option::is_some))
            .await
            .is_err()
        {
            self.abort.notify_one();
            let _ = tokio::time::timeout(wait, ended.wait_for(Option::is_some)).await;
        }
    }

    /// Waits until the connection has ended or `deadline_ns` (run clock) has passed.
    pub async fn wait_ended(&self, ctx: &Ctx, deadline_ns: u64) -> Option<Ended> {
        let mut ended = self.ended.subscribe();
        let wait = Duration::from_nanos(deadline_ns.saturating_sub(ctx.now_ns()));
        let _ = tokio::time::timeout(wait, ended.wait_for(Option::is_some)).await;
        let seen = ended.borrow().clone();
        seen
    }
}

/// Opens a connection for `user` and starts its reader. `stable` says whether it is the
/// user's session from the start (a first login or a churn rejoin) or must wait to be
/// declared so (a relogin, see the eviction check).
pub async fn open(
    ctx: &Arc<Ctx>,
    user: u32,
    stable: bool,
) -> Result<Arc<Conn>, connection::ConnectError> {
    let (target, addr) = ctx.target_for(user);
    let name = ctx.name(user).to_string();
    let Connected { read, write } =
        connection::connect(target, addr, &name, ctx.connect_timeout).await?;
    let now = ctx.now_ns();
    let conn = Arc::new(Conn {
        id: ctx.next_conn_id.fetch_add(1, Relaxed),
        user,
        writer: tokio::sync::Mutex::new(write),
        opened_ns: now,
        stable_from_ns: AtomicU64::new(if stable { now } else { NEVER }),
        unstable_from_ns: AtomicU64::new(NEVER),
        end_expected: AtomicBool::new(false),
        newest_chat_ns: AtomicU64::new(0),
        probes: Mutex::new(Vec::new()),
        probe_arrived: Notify::new(),
        ended: watch::Sender::new(None),
        abort: Notify::new(),
    });
    ctx.online.fetch_add(1, Relaxed);
    ctx.recorder.count(user as usize, |c| c.connects += 1);
    ctx.live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(conn.id, conn.clone());
    tokio::spawn(read_loop(ctx.clone(), conn.clone(), read));
    Ok(conn)
}

/// Reads and verifies until the connection ends, then hands in its ledger.
async fn read_loop(ctx: Arc<Ctx>, conn: Arc<Conn>, mut read: ReadStream) {
    let mut session = Session {
        received: HashMap::new(),
        first_delivery_ns: None,
    };
    let ended = tokio::select! {
        biased;
        _ = conn.abort.notified() => Ended { at_ns: ctx.now_ns(), code: None, reason: "stopped reading".into() },
        ended = read_frames(&ctx, &conn, &mut read, &mut session) => ended,
    };
    let ended_at = ended.at_ns;
    ctx.online.fetch_sub(1, Relaxed);
    if !conn.end_expected.load(Relaxed) {
        ctx.recorder
            .count(conn.user as usize, |c| c.unexpected_disconnects += 1);
    }
    conn.mark_unstable(ended_at);
    conn.ended.send_replace(Some(ended));
    ctx.live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&conn.id);
    if conn.user >= ctx.scenario.users.count {
        return; // the probe user is not a checked receiver
    }
    let stable_from = conn.stable_from_ns.load(Relaxed);
    let confirmed =
        (conn.opened_ns + ctx.settle_ns).min(session.first_delivery_ns.unwrap_or(NEVER));
    let ledger = SessionLedger {
        user: conn.user,
        expect_from_ns: (stable_from != NEVER).then(|| stable_from.max(confirmed)),
        stable_until_ns: conn.unstable_from_ns.load(Relaxed).min(ended_at),
        received: session.received,
    };
    ctx.ledgers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(ledger);
}

struct Session {
    received: HashMap<u32, ReceivedSet>,
    first_delivery_ns: Option<u64>,
}

async fn read_frames(
    ctx: &Ctx,
    conn: &Conn,
    read: &mut ReadStream,
    session: &mut Session,
) -> Ended {
    let dropped = |reason: String| Ended {
        at_ns: ctx.now_ns(),
        code: None,
        reason,
    };
    // No read buffer until the server first sends something.
    if let Err(error) = connection::readable(read).await {
        return dropped(error.to_string());
    }
    let mut frames = Box::new(FrameReader::new(read, ctx.max_frame));
    loop {
        match frames.next().await {
            Ok(Incoming::Text(bytes)) => on_text(ctx, conn, session, &bytes),
            Ok(Incoming::Ping(payload)) => {
                let pong = Frame::pong(Payload::Owned(payload));
                let _ = conn.writer.lock().await.write_frame(pong).await;
            }
            Ok(Incoming::Binary | Incoming::Pong) => {}
            Ok(Incoming::Close { code, reason }) => {
                let at_ns = ctx.now_ns();
                let echo = Frame::close(code.unwrap_or(1000), b"");
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = conn.writer.lock().await.write_frame(echo).await;
                })
                .await;
                return Ended {
                    at_ns,
                    code,
                    reason,
                };
            }
            Err(error) => return dropped(error.to_string()),
        }
    }
}

/// Verifies and records one Text delivery.
fn on_text(ctx: &Ctx, conn: &Conn, session: &mut Session, bytes: &[u8]) {
    let now = ctx.now_ns();
    let key = conn.user as usize;
    let decoded = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| Stamp::decode_delivery(text).ok())
        .filter(|(stamp, _)| stamp.run == ctx.run_id);
    let Some((stamp, from)) = decoded else {
        ctx.recorder.count(key, |c| {
            c.delivered += 1;
            c.foreign += 1;
        });
        return;
    };
    let users = ctx.scenario.users.count;
    let genuine = match stamp.kind {
        Kind::Probe => stamp.sender == users && from == ctx.name(users),
        Kind::Chat => stamp.sender < users && stamp.seq > 0 && from == ctx.name(stamp.sender),
    };
    if !genuine {
        ctx.recorder.count(key, |c| {
            c.delivered += 1;
            c.foreign += 1;
        });
        return;
    }
    if stamp.kind == Kind::Probe {
        conn.probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stamp.seq);
        conn.probe_arrived.notify_waiters();
        ctx.recorder.count(key, |c| c.delivered += 1);
        return;
    }
    if stamp.sender == conn.user {
        ctx.recorder.count(key, |c| {
            c.delivered += 1;
            c.self_deliveries += 1;
        });
        return;
    }
    conn.newest_chat_ns.fetch_max(stamp.intended_ns, Relaxed);
    if conn.user < users {
        session.first_delivery_ns.get_or_insert(now);
    }
    let arrival = session
        .received
        .entry(stamp.sender)
        .or_default()
        .receive(stamp.seq);
    let latency_us = now.saturating_sub(stamp.intended_ns) / 1_000;
    ctx.recorder.with(key, |c, latency| {
        c.delivered += 1;
        match arrival {
            Arrival::Duplicate => c.duplicates += 1,
            Arrival::OutOfOrder => c.order_errors += 1,
            Arrival::InOrder => {}
        }
        if arrival != Arrival::Duplicate {
            latency.saturating_record(latency_us.max(1));
        }
    });
}

/// One sender's open-model loop: sends at the times its schedule fixes, whatever happened
/// to earlier sends, until the last phase ends or the run stops. Returns its send times.
pub async fn send_loop(ctx: Arc<Ctx>, user: u32) -> Vec<u64> {
    let mut sent_at = Vec::new();
    let mut stop = ctx.stop.subscribe();
    for phase in ctx.plan() {
        let senders = phase.senders;
        if user >= senders || phase.interval_ns == 0 {
            continue;
        }
        // Spread senders evenly over one interval so they do not all fire together.
        let offset = phase.interval_ns * u64::from(user) / u64::from(senders);
        let mut next = phase.start_ns + offset;
        while next < phase.end_ns {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return sent_at,
                _ = tokio::time::sleep_until(ctx.instant_at(next)) => {}
            }
            let conn = ctx.current(user);
            if let Some(conn) = conn {
                let seq = sent_at.len() as u64 + 1;
                let stamp = Stamp {
                    run: ctx.run_id,
                    kind: Kind::Chat,
                    sender: user,
                    seq,
                    intended_ns: next,
                };
                sent_at.push(ctx.now_ns());
                ctx.recorder.count(user as usize, |c| c.sent += 1);
                // A failed write is the connection's failure: the reader records it.
                let _ = conn.send_text(stamp.message(phase.message_size)).await;
            }
            next += phase.interval_ns;
        }
    }
    sent_at
}
