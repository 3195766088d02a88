//! Simulated users: opening a session, its read loop that feeds every delivery to the
//! delivery check, and the open-model sender loop.
//!
//! Every delivery is classified as it arrives ([`crate::checks::delivery`]: stamp, `-- FROM`
//! name, not from itself), checked for order and duplicates, and timed from its *intended*
//! send time. When the connection ends, its [`SessionLedger`] goes to the run for the loss
//! tally.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{Frame, Payload};

use super::conn::{Conn, Ended, NEVER};
use super::prober::SentProbe;
use super::state::RunState;
use crate::checks::delivery::{self, Arrival, Delivery, ReceivedSet, SentLog, SessionLedger};
use crate::connection::{self, Connected, FrameReader, Incoming, ReadStream};
use crate::protocol::Inbound;
use crate::stamp::{Kind, Stamp};

/// Opens a connection for `user` and starts its reader. `stable` says whether it is the
/// user's session from the start (a first login or a churn rejoin) or must wait to be
/// declared so (a relogin, see the eviction check).
pub async fn open(
    run: &Arc<RunState>,
    user: u32,
    stable: bool,
) -> Result<Arc<Conn>, connection::ConnectError> {
    let (target, addr) = if stable {
        run.target_for(user)
    } else {
        run.target_for_relogin(user)
    };
    let source = run.source_for(user);
    let name = run.name(user);
    let headers = run.headers.render(name, user);
    let token = match &run.credentials {
        Some(credentials) => Some(
            credentials
                .token_for(name)
                .map_err(connection::ConnectError::Token)?,
        ),
        None => None,
    };
    let login = connection::Login {
        user: name,
        headers: &headers,
        timeout: run.connect_timeout,
        source,
        tls: run.tls.as_ref(),
        token: token.as_ref().map(|t| t.text.as_str()),
        token_in: run
            .credentials
            .as_ref()
            .map_or(Default::default(), |c| c.placement),
        protocol: &run.protocol,
    };
    let Connected {
        read,
        write,
        mut times,
    } = connection::connect(target, addr, &login).await?;
    times.mint_us = token.as_ref().and_then(|t| t.mint_us);
    run.recorder.login(&times);
    let conn = Arc::new(Conn::new(
        run.next_conn_id(),
        user,
        run.now_ns(),
        stable,
        write,
        token.and_then(|t| t.expires),
    ));
    run.opened(&conn);
    tokio::spawn(read_loop(run.clone(), conn.clone(), read));
    Ok(conn)
}

/// Reads and verifies until the connection ends, then hands in its ledger.
async fn read_loop(run: Arc<RunState>, conn: Arc<Conn>, mut read: ReadStream) {
    let mut session = Session::default();
    let ended = tokio::select! {
        biased;
        _ = conn.reading_stopped() => Ended { at_ns: run.now_ns(), code: None, reason: "stopped reading".into(), closed: false, signalled: false },
        ended = read_frames(&run, &conn, &mut read, &mut session) => ended,
    };
    let ended_at = ended.at_ns;
    // Close 4003 at the token's expiry (A6): an end the run expects, and a new login.
    let renew = ended.closed_with() == Some(Some(TOKEN_EXPIRED))
        && conn.token_expired(std::time::SystemTime::now());
    if renew {
        conn.expect_end();
        conn.mark_unstable(ended_at);
        run.recorder
            .count(conn.user as usize, |c| c.token_renewals += 1);
    }
    for (segment, &least) in session.least_latency_from.iter().enumerate() {
        run.note_latency(segment as u32, least);
    }
    // The ledger is handed in before the end is announced, so whoever waits for the end
    // (the run closing every connection) finds it.
    let ledger = (conn.user < run.users()).then(|| {
        let confirmed =
            (conn.opened_ns + run.settle_ns).min(session.first_delivery_ns.unwrap_or(NEVER));
        SessionLedger {
            user: conn.user,
            expect_from_ns: conn.stable_from().map(|from| from.max(confirmed)),
            stable_until_ns: conn.unstable_from().min(ended_at),
            received: session.received,
        }
    });
    run.closed(&conn, &ended, ledger);
    conn.finish(ended);
    if renew {
        run.token_expired(conn);
    }
}

/// The Close code of a session whose token expired (docs/protocol.md A6).
const TOKEN_EXPIRED: u16 = 4003;

/// What one session received so far.
#[derive(Default)]
struct Session {
    received: HashMap<u32, ReceivedSet>,
    first_delivery_ns: Option<u64>,
    /// In a split run: per segment, the least latency of a chat message from its senders
    /// (handed to the run when the session ends, not per delivery).
    least_latency_from: Vec<u64>,
}

/// The replies it writes (Pong, Close, a protocol's answers) are boxed: they are rare, and
/// inline they would make every simulated user's waiting reader as large as the largest.
async fn read_frames(
    run: &RunState,
    conn: &Conn,
    read: &mut ReadStream,
    session: &mut Session,
) -> Ended {
    let dropped = |reason: String| Ended {
        at_ns: run.now_ns(),
        code: None,
        reason,
        closed: false,
        signalled: false,
    };
    // No read buffer while nothing is pending (FrameReader).
    let mut frames = FrameReader::new(read, run.max_frame);
    loop {
        match frames.next().await {
            Ok(Incoming::Text(bytes)) => match run.protocol.inbound(&bytes) {
                Inbound::Chat => on_text(run, conn, session, &bytes),
                Inbound::Stamps => on_stamps(run, conn, session, &bytes),
                Inbound::Reply(answer) => {
                    let _ = Box::pin(conn.send_text(answer)).await;
                }
                Inbound::Ended(reason) => {
                    let at_ns = run.now_ns();
                    let close = Frame::close(1000, b"");
                    let _ = Box::pin(tokio::time::timeout(
                        Duration::from_secs(1),
                        conn.send(close),
                    ))
                    .await;
                    return Ended {
                        at_ns,
                        code: None,
                        reason,
                        closed: true,
                        signalled: true,
                    };
                }
                Inbound::Ignore => {}
            },
            Ok(Incoming::Ping(payload)) => {
                let _ = Box::pin(conn.send(Frame::pong(Payload::Owned(payload)))).await;
            }
            Ok(Incoming::Binary | Incoming::Pong) => {}
            Ok(Incoming::Close { code, reason }) => {
                let at_ns = run.now_ns();
                let echo = Frame::close(code.unwrap_or(1000), b"");
                let _ = Box::pin(tokio::time::timeout(
                    Duration::from_secs(1),
                    conn.send(echo),
                ))
                .await;
                return Ended {
                    at_ns,
                    code,
                    reason,
                    closed: true,
                    signalled: false,
                };
            }
            Err(error) => return dropped(error.to_string()),
        }
    }
}

/// Classifies and records one Text delivery of the chat protocol.
fn on_text(run: &RunState, conn: &Conn, session: &mut Session, bytes: &[u8]) {
    let delivery =
        delivery::classify_text(bytes, run.run_id, conn.user, run.users(), |i| run.name(i));
    on_delivery(run, conn, session, delivery);
}

/// Classifies and records every stamp in a Text frame of a protocol profile, each one a
/// delivery. A frame without a stamp is the server's own business (a presence notice, a
/// greeting) and is not counted.
fn on_stamps(run: &RunState, conn: &Conn, session: &mut Session, bytes: &[u8]) {
    let self_delivery = run.protocol.self_delivery();
    for stamp in Stamp::find_all(bytes) {
        let delivery = delivery::classify_stamp(
            stamp,
            run.run_id,
            conn.user,
            run.users(),
            |i| run.name(i),
            self_delivery,
        );
        on_delivery(run, conn, session, delivery);
    }
}

/// Records one classified delivery.
fn on_delivery(run: &RunState, conn: &Conn, session: &mut Session, delivery: Delivery) {
    let now = run.now_ns();
    let key = conn.user as usize;
    let users = run.users();
    let (sender, seq, intended_ns) = match delivery {
        Delivery::Foreign => {
            run.recorder.count(key, |c| {
                c.delivered += 1;
                c.foreign += 1;
            });
            return;
        }
        Delivery::Probe { id, sent_ns } => {
            conn.record_probe(id);
            run.probes.received(id);
            run.probes.heard(SentProbe { id, sent_ns });
            run.recorder.count(key, |c| c.delivered += 1);
            return;
        }
        Delivery::OwnMessage => {
            run.recorder.count(key, |c| {
                c.delivered += 1;
                c.self_deliveries += 1;
            });
            return;
        }
        Delivery::Chat {
            sender,
            seq,
            intended_ns,
        } => (sender, seq, intended_ns),
    };
    conn.record_chat(intended_ns);
    if conn.user < users {
        session.first_delivery_ns.get_or_insert(now);
    }
    let arrival = session.received.entry(sender).or_default().receive(seq);
    let latency_ns = now.saturating_sub(intended_ns);
    if run.segment.is_split() {
        let from = (sender % run.segment.count) as usize;
        if session.least_latency_from.len() <= from {
            session.least_latency_from.resize(from + 1, u64::MAX);
        }
        let least = &mut session.least_latency_from[from];
        *least = (*least).min(latency_ns);
    }
    let latency_us = latency_ns / 1_000;
    run.recorder.with(key, |c, latency| {
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
/// to earlier sends, until the last phase ends or the run stops. Returns what it sent,
/// with the messages in flight on a connection the server cut marked unjudged
/// ([`delivery`]'s module doc). A user without a live session sends nothing.
pub async fn send_loop(run: Arc<RunState>, user: u32) -> SentLog {
    'phases: for phase in run.plan() {
        for intended in phase.send_times(user) {
            tokio::select! {
                _ = run.stopped() => break 'phases,
                _ = tokio::time::sleep_until(run.clock.instant_at(intended)) => {}
            }
            let Some(conn) = run.current(user).filter(|c| c.is_open()) else {
                continue;
            };
            run.lag.record_send(run.now_ns().saturating_sub(intended));
            let Some(seq) = run.sends.record(user, &conn, run.now_ns()) else {
                break 'phases;
            };
            let stamp = Stamp {
                run: run.run_id,
                kind: Kind::Chat,
                sender: user,
                seq,
                intended_ns: intended,
            };
            run.recorder.count(user as usize, |c| c.sent += 1);
            // A failed write is the connection's failure: the reader records it.
            let _ = run
                .send_message(&conn, stamp.message(phase.message_size))
                .await;
        }
    }
    run.sends
        .take_log(user, run.scenario.verify.deadline.0.as_nanos() as u64)
}
