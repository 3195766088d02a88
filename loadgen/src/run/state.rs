//! The state one run shares between its tasks: the run clock, the users' current
//! sessions, the open connections, the finished sessions' ledgers, the plan, and the stop
//! signal.
//!
//! Everything below the run's top level (the users' readers and senders, relogins, churn)
//! reaches the run only through [`RunState`]. Its mutable parts are private and change
//! through methods named for what happens (`opened`, `closed`, `claim`, `set_current`),
//! each holding a lock for a few lines and never across an `.await`. This module depends on
//! nothing above it: not on the users, not on the checks, not on the run's orchestration.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::conn::{Conn, Ended};
use super::plan::{self, PhasePlan};
use super::prober::{ProbeLine, SentProbe};
use super::sends::SendBook;
use crate::checks::delivery::SessionLedger;
use crate::credentials::Credentials;
use crate::headers::LoginHeaders;
use crate::lag::LagMeter;
use crate::protocol::Profile;
use crate::record::Recorder;
use crate::scenario::{ReloginTarget, Scenario};
use crate::segment::Segment;
use crate::stamp::{Kind, Stamp};
use crate::target::Target;
use crate::tls::TlsClient;

/// The run clock: nanoseconds since the run started (one process) or since the Unix epoch
/// (a segment of a split run, so that every process reads the same clock; see
/// [`crate::segment`]), and the tokio instants to sleep to.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    start: Instant,
    tokio_start: tokio::time::Instant,
    /// The run-clock time at `start`.
    offset_ns: u64,
}

impl RunClock {
    /// A clock starting at 0 now.
    pub fn start() -> RunClock {
        RunClock {
            start: Instant::now(),
            tokio_start: tokio::time::Instant::now(),
            offset_ns: 0,
        }
    }

    /// A clock reading the wall clock's nanoseconds since the Unix epoch (read once, then
    /// advanced by the monotonic clock, so it never jumps).
    pub fn wall() -> RunClock {
        RunClock {
            offset_ns: crate::segment::unix_now_ns(),
            ..RunClock::start()
        }
    }

    /// Nanoseconds on the run clock.
    pub fn now_ns(&self) -> u64 {
        self.offset_ns + self.start.elapsed().as_nanos() as u64
    }

    /// The tokio instant of a run-clock time, for sleeping until it (now, for a time
    /// before the clock started).
    pub fn instant_at(&self, ns: u64) -> tokio::time::Instant {
        self.tokio_start + Duration::from_nanos(ns.saturating_sub(self.offset_ns))
    }
}

/// What a run's state is built from.
pub struct StateSetup {
    pub scenario: Scenario,
    /// Random id in every stamp of this run.
    pub run_id: u32,
    /// Where users connect, round-robin by user index.
    pub targets: Vec<(Target, SocketAddr)>,
    /// The users this process plays ([`Segment::WHOLE`] for all).
    pub segment: Segment,
    /// What logins prove their names with (`[users] jwt` or `tokens_file`), if anything.
    pub credentials: Option<Credentials>,
}

/// How long after a finished session's window (and the delivery deadline) its ledger is
/// kept before it is tallied: time for the reader of a connection the server cut to say
/// so, since a cut makes messages unjudged.
pub const FOLD_MARGIN: Duration = Duration::from_secs(5);

/// State shared by every task of a run.
pub struct RunState {
    /// The scenario as run.
    pub scenario: Scenario,
    /// Random id in every stamp of this run.
    pub run_id: u32,
    /// The run clock.
    pub clock: RunClock,
    /// The users this process plays.
    pub segment: Segment,
    /// Counters and latency, per interval.
    pub recorder: Recorder,
    /// Handshake deadline of every login.
    pub connect_timeout: Duration,
    /// Extra request headers of every login (`[users] headers`).
    pub headers: LoginHeaders,
    /// How `wss://` connections are made (`[users] tls`; validated with the scenario).
    pub tls: Option<TlsClient>,
    /// What logins prove their names with, if anything.
    pub credentials: Option<Credentials>,
    /// How long after its handshake a session counts as online (the loss window).
    pub settle_ns: u64,
    /// Largest frame accepted from the server.
    pub max_frame: usize,
    /// The protocol the users speak ([`crate::protocol`]).
    pub protocol: Profile,
    /// User names; index `users.count` is the probe user.
    names: Vec<String>,
    targets: Vec<(Target, SocketAddr)>,
    /// Local addresses the users' connections leave from (empty: the kernel chooses).
    sources: Vec<IpAddr>,
    next_conn_id: AtomicU64,
    /// Connections open now.
    online: AtomicU64,
    /// Every open connection, for closing them all at the end.
    live: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Finished sessions, for the loss tally (until [`RunState::fold_finished`]).
    ledgers: Mutex<Vec<SessionLedger>>,
    /// What each sender sent, and the loss of the finished sessions already tallied.
    pub sends: SendBook,
    /// Each user's current session.
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    /// Users in the middle of a relogin or churn.
    busy: Vec<AtomicBool>,
    /// How many targets past its own each user has moved (relogins with
    /// `relogin_target = "next"`).
    hops: Vec<AtomicU32>,
    /// The phases, set once when measurement starts.
    plan: OnceLock<Vec<PhasePlan>>,
    /// Set when senders and disruptions must stop.
    stop: watch::Sender<bool>,
    /// The probe user's session, which broadcasts the relogin probes.
    prober: Mutex<Option<Arc<Conn>>>,
    /// The coalesced probes relogins wait for.
    pub probes: ProbeLine,
    /// loadgen's own lag (see [`crate::lag`]).
    pub lag: LagMeter,
    next_probe: AtomicU64,
    /// Per segment of the run: the least one-way latency (ns) of a chat message from a
    /// sender of that segment, for the clock-offset estimate of a split run.
    least_latency_from: Vec<AtomicU64>,
    /// Sessions whose token expired, for the renewal task ([`super::renewal`]).
    expired: mpsc::UnboundedSender<Arc<Conn>>,
    /// The receiving end of `expired`, until the renewal task takes it.
    renewals: Mutex<Option<mpsc::UnboundedReceiver<Arc<Conn>>>>,
}

impl RunState {
    /// The state of a run that starts now.
    pub fn new(setup: StateSetup) -> RunState {
        let StateSetup {
            scenario,
            run_id,
            targets,
            segment,
            credentials,
        } = setup;
        // Only a run with a wss:// target needs a TLS client (it holds the root store).
        let tls = targets
            .iter()
            .any(|(target, _)| target.tls)
            .then(|| TlsClient::new(&scenario.users.tls).ok())
            .flatten();
        let count = scenario.users.count;
        let (expired, renewals) = mpsc::unbounded_channel();
        let mut names: Vec<String> = (0..count).map(|i| scenario.user_name(i)).collect();
        names.extend((0..segment.count).map(|i| {
            scenario.probe_name_of(Segment {
                index: i,
                ..segment
            })
        }));
        let max_message = scenario
            .phases
            .iter()
            .map(|p| p.message_size)
            .max()
            .unwrap_or(64);
        RunState {
            run_id,
            clock: if segment.is_split() {
                RunClock::wall()
            } else {
                RunClock::start()
            },
            segment,
            least_latency_from: (0..segment.count)
                .map(|_| AtomicU64::new(u64::MAX))
                .collect(),
            recorder: Recorder::new(16),
            names,
            targets,
            sources: scenario.users.source_ips(),
            connect_timeout: scenario.users.connect_timeout.0,
            headers: scenario.users.login_headers(),
            tls,
            credentials,
            settle_ns: scenario.verify.settle.0.as_nanos() as u64,
            max_frame: (max_message + 256).max(1 << 16) * 2,
            protocol: scenario.profile(),
            next_conn_id: AtomicU64::new(1),
            online: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            ledgers: Mutex::new(Vec::new()),
            sends: SendBook::new(scenario.max_senders() as usize),
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            busy: (0..count).map(|_| AtomicBool::new(false)).collect(),
            hops: (0..count).map(|_| AtomicU32::new(0)).collect(),
            plan: OnceLock::new(),
            stop: watch::Sender::new(false),
            prober: Mutex::new(None),
            probes: ProbeLine::new(scenario.verify.probe_interval.0),
            lag: LagMeter::default(),
            next_probe: AtomicU64::new(1),
            expired,
            renewals: Mutex::new(Some(renewals)),
            scenario,
        }
    }

    /// A session ended because its token expired: its user logs in again.
    pub fn token_expired(&self, conn: Arc<Conn>) {
        let _ = self.expired.send(conn);
    }

    /// The sessions whose token expired, once (for the renewal task).
    pub fn take_renewals(&self) -> Option<mpsc::UnboundedReceiver<Arc<Conn>>> {
        self.renewals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Nanoseconds on the run clock.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Simulated users (the probe user not included).
    pub fn users(&self) -> u32 {
        self.scenario.users.count
    }

    /// This process's probe user: index `users.count + segment index` (every segment has
    /// its own).
    pub fn probe_user(&self) -> u32 {
        self.users() + self.segment.index
    }

    /// A session saw chat messages from senders of segment `segment` arrive at least
    /// `latency_ns` after their stamps (split runs only).
    pub fn note_latency(&self, segment: u32, latency_ns: u64) {
        if let Some(least) = self.least_latency_from.get(segment as usize) {
            least.fetch_min(latency_ns, Relaxed);
        }
    }

    /// Per segment, the least one-way latency (ns) seen from its senders (`None`: none).
    pub fn least_latency_from(&self) -> Vec<Option<u64>> {
        self.least_latency_from
            .iter()
            .map(|l| Some(l.load(Relaxed)).filter(|&ns| ns != u64::MAX))
            .collect()
    }

    /// User `index`'s name (from `users.count` on, the segments' probe users).
    pub fn name(&self, index: u32) -> &str {
        self.names.get(index as usize).map_or("", String::as_str)
    }

    /// Where user `index` connects: its own target (users are spread round-robin), moved
    /// on by its relogins when they go to the next target.
    pub fn target_for(&self, index: u32) -> (&Target, SocketAddr) {
        let hops = self.hops.get(index as usize).map_or(0, |h| h.load(Relaxed));
        self.nth_target(index as usize + hops as usize)
    }

    /// Where a relogin of user `index` connects (`[users] relogin_target`).
    pub fn target_for_relogin(&self, index: u32) -> (&Target, SocketAddr) {
        match (
            self.scenario.users.relogin_target,
            self.hops.get(index as usize),
        ) {
            (ReloginTarget::Next, Some(hops)) => {
                let hop = hops.fetch_add(1, Relaxed) + 1;
                self.nth_target(index as usize + hop as usize)
            }
            _ => self.target_for(index),
        }
    }

    fn nth_target(&self, n: usize) -> (&Target, SocketAddr) {
        let (target, addr) = &self.targets[n % self.targets.len()];
        (target, *addr)
    }

    /// The local address every connection of user `index` leaves from (`[users]
    /// source_addresses` round-robin by index, the probe user included), or `None` when
    /// the kernel chooses.
    pub fn source_for(&self, index: u32) -> Option<IpAddr> {
        let n = self.sources.len().max(1);
        self.sources.get(index as usize % n).copied()
    }

    /// A new connection id, unique within the run.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Relaxed)
    }

    /// A connection's handshake completed: it is online and counted.
    pub fn opened(&self, conn: &Arc<Conn>) {
        self.online.fetch_add(1, Relaxed);
        self.recorder.count(conn.user as usize, |c| c.connects += 1);
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conn.id, conn.clone());
    }

    /// A connection ended; `ledger` is what it received, for the loss tally (`None` for
    /// the probe user, which is not a checked receiver).
    pub fn closed(&self, conn: &Conn, ended: &Ended, ledger: Option<SessionLedger>) {
        self.online.fetch_sub(1, Relaxed);
        if !conn.end_was_expected() {
            let closed_with = ended.closed_with();
            self.recorder.count(conn.user as usize, |c| {
                c.unexpected_disconnects += 1;
                match closed_with {
                    None => c.unexpected_tcp_drop += 1,
                    Some(Some(1001)) => c.unexpected_close_1001 += 1,
                    Some(Some(1013)) => c.unexpected_close_1013 += 1,
                    Some(Some(4001)) => c.unexpected_close_4001 += 1,
                    Some(_) => c.unexpected_close_other += 1,
                }
            });
        }
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn.id);
        if let Some(ledger) = ledger {
            self.ledgers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ledger);
        }
    }

    /// Connections open now.
    pub fn online(&self) -> u64 {
        self.online.load(Relaxed)
    }

    /// Every connection open now.
    pub fn open_connections(&self) -> Vec<Arc<Conn>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Tallies the finished sessions whose last expected message is more than the delivery
    /// deadline (and [`FOLD_MARGIN`]) older than `now`, and lets their ledgers go
    /// ([`super::sends`]). Intervals are counted from `measure_start`.
    pub fn fold_finished(&self, now: u64, measure_start: u64) {
        let deadline_ns = self.scenario.verify.deadline.0.as_nanos() as u64;
        let due_before = now.saturating_sub(deadline_ns + FOLD_MARGIN.as_nanos() as u64);
        let due: Vec<SessionLedger> = {
            let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
            let (due, keep) = std::mem::take(&mut *ledgers)
                .into_iter()
                .partition(|l| l.stable_until_ns < due_before);
            *ledgers = keep;
            due
        };
        self.sends
            .fold(&due, deadline_ns, self.protocol.self_delivery(), |t| {
                (t.saturating_sub(measure_start) / 1_000_000_000) as usize
            });
    }

    /// The ledgers of every session that has ended, taken out.
    pub fn take_ledgers(&self) -> Vec<SessionLedger> {
        std::mem::take(&mut *self.ledgers.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// User `index`'s current session.
    pub fn current(&self, index: u32) -> Option<Arc<Conn>> {
        self.slots
            .get(index as usize)?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces user `index`'s current session.
    pub fn set_current(&self, index: u32, conn: Option<Arc<Conn>>) {
        if let Some(slot) = self.slots.get(index as usize) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = conn;
        }
    }

    /// Claims user `index` for a relogin or churn: true when it has a session and nobody
    /// else has claimed it. Pair with [`RunState::release`].
    pub fn claim(&self, index: u32) -> bool {
        let Some(busy) = self.busy.get(index as usize) else {
            return false;
        };
        self.current(index).is_some() && !busy.swap(true, Relaxed)
    }

    /// Ends a claim of [`RunState::claim`].
    pub fn release(&self, index: u32) {
        if let Some(busy) = self.busy.get(index as usize) {
            busy.store(false, Relaxed);
        }
    }

    /// Sets the phases once measurement starts (later calls are ignored).
    pub fn set_plan(&self, plan: Vec<PhasePlan>) {
        let _ = self.plan.set(plan);
    }

    /// The phases on the run clock (empty until measurement starts).
    pub fn plan(&self) -> &[PhasePlan] {
        self.plan.get().map_or(&[], Vec::as_slice)
    }

    /// The phase running at run-clock time `ns`.
    pub fn plan_at(&self, ns: u64) -> Option<&PhasePlan> {
        plan::phase_at(self.plan(), ns)
    }

    /// Tells senders and disruptions to stop.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether [`RunState::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once [`RunState::stop`] was called.
    pub async fn stopped(&self) {
        let mut stop = self.stop.subscribe();
        let _ = stop.wait_for(|stopped| *stopped).await;
    }

    /// Makes `conn` the session that broadcasts relogin probes.
    pub fn set_prober(&self, conn: Arc<Conn>) {
        *self.prober.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
    }

    /// Sends `message` on `conn`, framed as the protocol frames a message.
    pub async fn send_message(
        &self,
        conn: &Conn,
        message: String,
    ) -> Result<(), fastwebsockets::WebSocketError> {
        let frame = self.protocol.frame_message(message, self.name(conn.user));
        conn.send_text(frame).await
    }

    /// Broadcasts a probe from the probe user; returns its id, or `None` when there is no
    /// probe user or the send failed.
    pub async fn send_probe(&self) -> Option<SentProbe> {
        let prober = self
            .prober
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        // Unique across the segments of a split run: every segment's users hear every
        // segment's probes.
        let id = self.next_probe.fetch_add(1, Relaxed) * u64::from(self.segment.count.max(1))
            + u64::from(self.segment.index);
        let sent_ns = self.now_ns();
        let stamp = Stamp {
            run: self.run_id,
            kind: Kind::Probe,
            sender: self.probe_user(),
            seq: id,
            intended_ns: sent_ns,
        };
        self.send_message(&prober, stamp.message(0)).await.ok()?;
        Some(SentProbe { id, sent_ns })
    }
}
