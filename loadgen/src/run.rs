//! `loadgen run`: connect the users, play the phases, check everything, and hand back a
//! [`RunReport`].
//!
//! The run clock starts when the run does; every stamp's intended send time and every
//! receive time is on it. Measurement starts when the ramp is over (all logins attempted):
//! phases, intervals and rates are relative to that moment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::checks::delivery::{tally_loss, SessionLedger};
use crate::checks::eviction;
use crate::embedded::EmbeddedServer;
use crate::progress::Progress;
use crate::record::{new_histogram, IntervalRecord, Recorder};
use crate::report::{RunReport, ServerPlacement};
use crate::scenario::Scenario;
use crate::stamp::{Kind, Stamp};
use crate::target::Target;
use crate::user::{self, Conn};
use crate::{churn, nofile, scrape};

/// How a run went, beyond its thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Every phase ran.
    Complete,
    /// Stopped early; the reports are partial. The string says why.
    Incomplete(String),
}

/// How an incomplete run's reason starts when Ctrl-C stopped it.
pub const INTERRUPTED: &str = "interrupted (Ctrl-C)";

impl Completion {
    /// Stopped by Ctrl-C (the run says nothing about the load).
    pub fn interrupted(&self) -> bool {
        matches!(self, Completion::Incomplete(why) if why.starts_with(INTERRUPTED))
    }
}

/// Errors that stop a run before it measures anything.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario cannot run on this machine (exit 2).
    #[error(transparent)]
    Limits(#[from] nofile::TooManyConnections),
    /// The target could not be reached or started (exit 3).
    #[error("{0}")]
    Unreachable(String),
}

/// One phase on the run clock.
#[derive(Debug, Clone)]
pub struct PhasePlan {
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub senders: u32,
    /// Time between two messages of one sender (0: no traffic).
    pub interval_ns: u64,
    pub message_size: usize,
    pub relogin_rate: f64,
    pub relogin_concurrency: u32,
    pub churn_rate: f64,
    pub churn_offline: Duration,
}

/// State shared by every task of a run.
pub struct Ctx {
    pub scenario: Scenario,
    /// Random id in every stamp of this run.
    pub run_id: u32,
    clock: Instant,
    tokio_clock: tokio::time::Instant,
    pub recorder: Recorder,
    names: Vec<String>,
    targets: Vec<(Target, SocketAddr)>,
    pub connect_timeout: Duration,
    pub settle_ns: u64,
    /// Largest frame accepted from the server.
    pub max_frame: usize,
    pub next_conn_id: AtomicU64,
    /// Connections open now.
    pub online: AtomicU64,
    /// Every open connection, for closing them all at the end.
    pub live: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Finished sessions, for the loss tally.
    pub ledgers: Mutex<Vec<SessionLedger>>,
    /// Each user's current session.
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    /// Users in the middle of a relogin or churn.
    busy: Vec<AtomicBool>,
    /// The phases, set once when measurement starts.
    plan: OnceLock<Vec<PhasePlan>>,
    /// Set when senders and disruptions must stop.
    pub stop: watch::Sender<bool>,
    prober: Mutex<Option<Arc<Conn>>>,
    next_probe: AtomicU64,
}

impl Ctx {
    /// Nanoseconds on the run clock.
    pub fn now_ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    /// The tokio instant of a run-clock time, for sleeping until it.
    pub fn instant_at(&self, ns: u64) -> tokio::time::Instant {
        self.tokio_clock + Duration::from_nanos(ns)
    }

    /// User `index`'s name (`users.count` is the probe user).
    pub fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }

    /// Where user `index` connects.
    pub fn target_for(&self, index: u32) -> (&Target, SocketAddr) {
        let (target, addr) = &self.targets[index as usize % self.targets.len()];
        (target, *addr)
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

    /// The phases on the run clock (empty until measurement starts).
    pub fn plan(&self) -> &[PhasePlan] {
        self.plan.get().map_or(&[], Vec::as_slice)
    }

    /// The phase running at run-clock time `ns`.
    pub fn plan_at(&self, ns: u64) -> Option<&PhasePlan> {
        self.plan()
            .iter()
            .find(|p| p.start_ns <= ns && ns < p.end_ns)
    }

    /// Broadcasts a probe from the probe user; returns its id.
    pub async fn send_probe(&self) -> Option<u64> {
        let prober = self
            .prober
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let id = self.next_probe.fetch_add(1, Relaxed);
        let stamp = Stamp {
            run: self.run_id,
            kind: Kind::Probe,
            sender: self.scenario.users.count,
            seq: id,
            intended_ns: self.now_ns(),
        };
        prober.send_text(stamp.message(0)).await.ok()?;
        Some(id)
    }
}

/// What `loadgen run` was asked to do.
pub struct RunRequest {
    pub scenario: Scenario,
    pub scenario_path: String,
    /// `--target` overrides, if any.
    pub targets: Vec<String>,
    pub quiet: bool,
}

/// Runs a scenario to the end (or until it must stop) and returns what it measured.
pub async fn run(request: RunRequest) -> Result<(RunReport, Completion), RunError> {
    let RunRequest {
        mut scenario,
        scenario_path,
        targets,
        quiet,
    } = request;
    if !targets.is_empty() {
        scenario.target = crate::scenario::Targets::Many(targets);
    }
    nofile::ensure(scenario.peak_connections())?;

    // Where the server is.
    let mut embedded = None;
    let urls = scenario.target.urls();
    let mut resolved = Vec::new();
    if urls.is_empty() {
        let server = EmbeddedServer::start()
            .await
            .map_err(|e| RunError::Unreachable(e.to_string()))?;
        let target: Target = format!("ws://{}/", server.addr)
            .parse()
            .map_err(|e: crate::target::TargetError| RunError::Unreachable(e.to_string()))?;
        resolved.push((target, server.addr));
        embedded = Some(server);
    } else {
        for url in &urls {
            let target: Target = url
                .parse()
                .map_err(|e: crate::target::TargetError| RunError::Unreachable(e.to_string()))?;
            let addr = tokio::net::lookup_host(target.authority())
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| RunError::Unreachable(format!("cannot resolve {target}")))?;
            resolved.push((target, addr));
        }
    }
    let placement = match &embedded {
        Some(server) => ServerPlacement::EmbeddedChild {
            pid: server.pid(),
            address: server.addr.to_string(),
            command: server.command.clone(),
        },
        None => ServerPlacement::External,
    };

    let count = scenario.users.count;
    let mut names: Vec<String> = (0..count).map(|i| scenario.user_name(i)).collect();
    names.push(scenario.probe_name());
    let max_message = scenario
        .phases
        .iter()
        .map(|p| p.message_size)
        .max()
        .unwrap_or(64);
    let ctx = Arc::new(Ctx {
        run_id: run_id(),
        clock: Instant::now(),
        tokio_clock: tokio::time::Instant::now(),
        recorder: Recorder::new(16),
        names,
        targets: resolved.clone(),
        connect_timeout: scenario.users.connect_timeout.0,
        settle_ns: scenario.verify.settle.0.as_nanos() as u64,
        max_frame: (max_message + 256).max(1 << 16) * 2,
        next_conn_id: AtomicU64::new(1),
        online: AtomicU64::new(0),
        live: Mutex::new(HashMap::new()),
        ledgers: Mutex::new(Vec::new()),
        slots: (0..count).map(|_| Mutex::new(None)).collect(),
        busy: (0..count).map(|_| AtomicBool::new(false)).collect(),
        plan: OnceLock::new(),
        stop: watch::Sender::new(false),
        prober: Mutex::new(None),
        next_probe: AtomicU64::new(1),
        scenario,
    });
    let progress = Progress::new(quiet, u64::from(count));
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());

    // Ramp: start logins at the configured rate.
    let ramp_started = Instant::now();
    let mut completion = Completion::Complete;
    let ramp_rate = match (
        ctx.scenario.users.connect_rate,
        ctx.scenario.users.connect_over,
    ) {
        (_, Some(over)) => f64::from(count) / over.0.as_secs_f64().max(1e-9),
        (Some(rate), None) => rate,
        (None, None) => 2000.0,
    };
    let mut logins = JoinSet::new();
    for index in 0..count {
        let ctx = ctx.clone();
        let at = ctx.now_ns() + (f64::from(index) / ramp_rate * 1e9) as u64;
        logins.spawn(async move {
            tokio::time::sleep_until(ctx.instant_at(at)).await;
            let result = user::open(&ctx, index, true).await;
            (index, result)
        });
    }
    let (mut connected, mut failed, mut unreachable) = (0u64, 0u64, None);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while !logins.is_empty() {
        tokio::select! {
            joined = logins.join_next() => match joined {
                Some(Ok((index, Ok(conn)))) => {
                    ctx.set_current(index, Some(conn));
                    connected += 1;
                }
                Some(Ok((index, Err(error)))) => {
                    failed += 1;
                    ctx.recorder.count(index as usize, |c| c.connect_errors += 1);
                    if error.unreachable() && unreachable.is_none() {
                        unreachable = Some(error.to_string());
                    }
                    if connected == 0 && failed >= 10.min(u64::from(count)) && unreachable.is_some() {
                        logins.abort_all();
                    }
                }
                _ => {}
            },
            _ = ticker.tick() => progress.ramp(connected, failed),
            _ = &mut interrupt => {
                logins.abort_all();
                completion = Completion::Incomplete(format!("{INTERRUPTED} during the ramp"));
            }
        }
    }
    if connected == 0 {
        if let Some(server) = embedded {
            server.stop(Duration::from_secs(5)).await;
        }
        progress.finish();
        let why = unreachable.unwrap_or_else(|| "every login failed".into());
        return Err(RunError::Unreachable(format!(
            "no user could log in to {}: {why}",
            resolved[0].0
        )));
    }
    if ctx.scenario.has_relogins() {
        match user::open(&ctx, count, true).await {
            Ok(conn) => *ctx.prober.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn),
            Err(error) => {
                completion =
                    Completion::Incomplete(format!("the probe user could not log in: {error}"))
            }
        }
    }
    let ramp = ramp_started.elapsed();

    // Plan the phases from now on.
    let measure_start = ctx.now_ns();
    let started_at = SystemTime::now();
    let mut plan = Vec::new();
    let mut at = measure_start;
    for (i, phase) in ctx.scenario.phases.iter().enumerate() {
        let end = at + phase.duration.0.as_nanos() as u64;
        let per_sender = phase.rate_per_sender(count);
        plan.push(PhasePlan {
            name: phase
                .name
                .clone()
                .unwrap_or_else(|| format!("phase {}", i + 1)),
            start_ns: at,
            end_ns: end,
            senders: phase.sender_count(count),
            interval_ns: if per_sender > 0.0 {
                (1e9 / per_sender) as u64
            } else {
                0
            },
            message_size: phase.message_size,
            relogin_rate: phase.relogin_rate,
            relogin_concurrency: phase.relogin_concurrency,
            churn_rate: phase.churn_rate,
            churn_offline: phase.churn_offline.0,
        });
        at = end;
    }
    let phases_end = at;
    let _ = ctx.plan.set(plan);
    // Drop connect counts of the ramp from the first interval: they belong to the ramp.
    let (ramp_counters, _) = ctx.recorder.take();

    let max_senders = ctx.scenario.max_senders();
    let mut senders = JoinSet::new();
    for index in 0..max_senders {
        let ctx = ctx.clone();
        senders.spawn(async move { (index, user::send_loop(ctx, index).await) });
    }
    let disruptor = tokio::spawn(disrupt(ctx.clone(), max_senders));

    // Intervals until the phases end (or something stops the run).
    let interval = Duration::from_secs(1);
    let mut intervals: Vec<IntervalRecord> = Vec::new();
    let mut overall = new_histogram();
    let mut next_tick = measure_start + interval.as_nanos() as u64;
    let mut last_tick = measure_start;
    // Intervals that start within the warm-up are kept in the time series but not judged.
    let warmup_s = ctx.scenario.warmup.map_or(0.0, |w| w.0.as_secs_f64());
    let close_interval = |intervals: &mut Vec<IntervalRecord>,
                          overall: &mut hdrhistogram::Histogram<u64>,
                          from: u64,
                          to: u64| {
        let (counters, latency) = ctx.recorder.take();
        let start_s = (from - measure_start) as f64 / 1e9;
        if start_s + 0.001 >= warmup_s {
            let _ = overall.add(&latency);
        }
        intervals.push(IntervalRecord {
            start_s,
            length_s: (to - from) as f64 / 1e9,
            users_online: ctx.online.load(Relaxed),
            counters,
            latency,
        });
    };
    if completion == Completion::Complete {
        loop {
            let phase_name = ctx
                .plan_at(last_tick)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            let until = next_tick.min(phases_end);
            tokio::select! {
                _ = tokio::time::sleep_until(ctx.instant_at(until)) => {}
                _ = &mut interrupt => {
                    completion = Completion::Incomplete(INTERRUPTED.into());
                }
            }
            let now = ctx.now_ns();
            close_interval(&mut intervals, &mut overall, last_tick, now);
            last_tick = now;
            next_tick = now + interval.as_nanos() as u64;
            if let Some(last) = intervals.last() {
                progress.tick(&phase_name, last, &overall);
            }
            if let Some(server) = embedded.as_mut() {
                if let Some(status) = server.exited() {
                    completion = Completion::Incomplete(format!(
                        "the embedded server exited mid-run ({status})"
                    ));
                }
            } else if ctx.online.load(Relaxed) == 0 && !target_reachable(&resolved).await {
                completion = Completion::Incomplete(
                    "the target stopped accepting connections mid-run".into(),
                );
            }
            if completion != Completion::Complete || now >= phases_end {
                break;
            }
        }
    }

    // Wind down: stop sending, let relogins and churn finish, wait for stragglers.
    ctx.stop.send_replace(true);
    let wind_down = ctx.scenario.verify.eviction_deadline.0
        + ctx.scenario.verify.probe_deadline.0
        + ctx.connect_timeout
        + Duration::from_secs(2);
    let mut disruptor = disruptor;
    if tokio::time::timeout(wind_down, &mut disruptor)
        .await
        .is_err()
    {
        disruptor.abort();
    }
    if completion == Completion::Complete {
        tokio::time::sleep(ctx.scenario.verify.deadline.0).await;
    }
    let mut send_times: Vec<Vec<u64>> = vec![Vec::new(); max_senders as usize];
    while let Some(joined) = senders.join_next().await {
        if let Ok((index, times)) = joined {
            send_times[index as usize] = times;
        }
    }

    // Close every connection on purpose, then account.
    let now = ctx.now_ns();
    let open: Vec<Arc<Conn>> = ctx
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let mut closing = JoinSet::new();
    for conn in open {
        let ctx = ctx.clone();
        closing.spawn(async move {
            conn.close(ctx.now_ns().max(now), Duration::from_secs(2))
                .await
        });
    }
    while closing.join_next().await.is_some() {}
    let end = ctx.now_ns();
    close_interval(&mut intervals, &mut overall, last_tick, end);
    let ended_at = SystemTime::now();

    let ledgers = std::mem::take(&mut *ctx.ledgers.lock().unwrap_or_else(|p| p.into_inner()));
    let deadline_ns = ctx.scenario.verify.deadline.0.as_nanos() as u64;
    let last_index = intervals.len().saturating_sub(1);
    let tally = tally_loss(&ledgers, &send_times, deadline_ns, |t| {
        (((t.saturating_sub(measure_start)) / 1_000_000_000) as usize).min(last_index)
    });
    for (i, record) in intervals.iter_mut().enumerate() {
        record.counters.expected += tally.expected.get(i).copied().unwrap_or(0);
        record.counters.lost += tally.lost.get(i).copied().unwrap_or(0);
        record.counters.unverified += tally.unverified.get(i).copied().unwrap_or(0);
    }
    let mut totals = ramp_counters;
    for record in &intervals {
        totals.add(&record.counters);
    }
    if let Some(first) = intervals.first_mut() {
        // Logins and login failures of the ramp are reported in the totals and first row.
        first.counters.connects += ramp_counters.connects;
        first.counters.connect_errors += ramp_counters.connect_errors;
    }

    let mut server_deliveries_out = None;
    for (_, addr) in &resolved {
        match scrape::counter(*addr, "chat_deliveries_out_total").await {
            Some(n) => *server_deliveries_out.get_or_insert(0) += n,
            None => {
                server_deliveries_out = None;
                break;
            }
        }
    }
    if let Some(server) = embedded {
        server.stop(Duration::from_secs(10)).await;
    }
    progress.finish();

    let scenario_json = serde_json::to_value(&ctx.scenario).unwrap_or(serde_json::Value::Null);
    let report = RunReport {
        scenario_name: ctx.scenario.name().to_string(),
        scenario_path,
        scenario: scenario_json,
        targets: resolved.iter().map(|(t, _)| t.to_string()).collect(),
        server: placement,
        loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: git_revision(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        started_at,
        ended_at,
        ramp,
        intervals,
        totals,
        latency: overall,
        thresholds: ctx.scenario.thresholds.clone(),
        incomplete: match &completion {
            Completion::Complete => None,
            Completion::Incomplete(why) => Some(why.clone()),
        },
        server_deliveries_out,
    };
    Ok((report, completion))
}

/// Schedules relogins and churn for every phase, on users that do not send.
async fn disrupt(ctx: Arc<Ctx>, first_eligible: u32) {
    let count = ctx.scenario.users.count;
    let mut random = SplitMix(ctx.scenario.seed);
    let mut tasks = JoinSet::new();
    let mut stop = ctx.stop.subscribe();
    // Merge both event streams of each phase in time order.
    for phase in ctx.plan().to_vec() {
        let eligible_from = first_eligible;
        if eligible_from >= count {
            continue;
        }
        let every = |rate: f64| {
            if rate > 0.0 {
                (1e9 / rate) as u64
            } else {
                u64::MAX
            }
        };
        let (relogin_every, churn_every) = (every(phase.relogin_rate), every(phase.churn_rate));
        let (mut next_relogin, mut next_churn) = (
            phase.start_ns.saturating_add(relogin_every / 2),
            phase.start_ns.saturating_add(churn_every / 2),
        );
        loop {
            let (at, is_relogin) = if next_relogin <= next_churn {
                (next_relogin, true)
            } else {
                (next_churn, false)
            };
            if at >= phase.end_ns {
                break;
            }
            let stopped = tokio::select! {
                _ = stop.wait_for(|s| *s) => true,
                _ = tokio::time::sleep_until(ctx.instant_at(at)) => false,
            };
            if stopped {
                drain(&mut tasks).await;
                return;
            }
            if is_relogin {
                next_relogin += relogin_every;
            } else {
                next_churn += churn_every;
            }
            // Pick a random idle user that does not send.
            let span = count - eligible_from;
            let mut chosen = None;
            for _ in 0..8 {
                let candidate = eligible_from + (random.next() % u64::from(span)) as u32;
                let idle = ctx.current(candidate).is_some()
                    && !ctx.busy[candidate as usize].swap(true, Relaxed);
                if idle {
                    chosen = Some(candidate);
                    break;
                }
            }
            let Some(user) = chosen else { continue };
            let ctx2 = ctx.clone();
            let offline = phase.churn_offline;
            tasks.spawn(async move {
                if is_relogin {
                    eviction::relogin(ctx2.clone(), user).await;
                } else {
                    churn::churn(ctx2.clone(), user, offline).await;
                }
                ctx2.busy[user as usize].store(false, Relaxed);
            });
            while tasks.try_join_next().is_some() {}
        }
    }
    drain(&mut tasks).await;
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// A small, seedable generator for choosing users (reproducible runs).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn run_id() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = SplitMix(nanos as u64 ^ u64::from(std::process::id())).next();
    (mixed >> 32) as u32
}

async fn target_reachable(targets: &[(Target, SocketAddr)]) -> bool {
    for (_, addr) in targets {
        let connect = tokio::net::TcpStream::connect(addr);
        if matches!(
            tokio::time::timeout(Duration::from_secs(1), connect).await,
            Ok(Ok(_))
        ) {
            return true;
        }
    }
    false
}

pub fn git_revision() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
