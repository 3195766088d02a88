//! `loadgen run`: connect the users, play the phases, check everything, and hand back a
//! [`RunReport`].
//!
//! The run clock starts when the run does; every stamp's intended send time and every
//! receive time is on it. Measurement starts when the ramp is over (all logins attempted):
//! phases, intervals and rates are relative to that moment.
//!
//! The parts, from the bottom up: [`plan`] (the timetable, pure), [`conn`] (one
//! connection's state), [`state`] (what the run's tasks share), [`user`] (a session's
//! reader and the sender loop), [`relogin`], [`churn`] and [`disrupt`] (what disturbs the
//! sessions; the checks in [`crate::checks`] judge it), [`renewal`] (a session whose
//! token expired logs in again), and this module, which plays them
//! in order: resolve the server, ramp, measure, wind down, account.

pub mod churn;
pub mod conn;
pub mod disrupt;
pub mod intervals;
pub mod outcome;
pub mod plan;
pub mod probe_window;
pub mod prober;
pub mod ramp;
pub mod record_spool;
pub mod relogin;
pub mod renewal;
pub mod sends;
pub mod server;
pub mod state;
pub mod user;
pub mod worker_io;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::checks::delivery::{tally_loss, SentLog, SessionLedger};
use crate::interrupt::Interrupt;
use crate::progress::Progress;
use crate::random::SplitMix;
use crate::record::{new_histogram, ConnectTimes, Counters, IntervalRecord};
use crate::report::hlog::LatencyLog;
use crate::report::live::LivePicture;
use crate::report::{LoadgenResources, RunReport, RunSetup, SegmentsInfo, ServerPlacement};
use crate::resources;
use crate::scenario::{Scenario, Targets};
use crate::segment::{Segment, WorkerLine, START_TOLERANCE};
use crate::server_process::ServerProcess;
use crate::target::Target;
use crate::{nofile, ports};
pub use intervals::IntervalTexts;
use intervals::{measure, Intervals};
pub use outcome::{Completion, RunError, INTERRUPTED};
use ramp::ramp;
pub use server::{deliveries_out, prepare_server};
use state::{RunState, StateSetup};

/// Which part of a split run this process plays ([`crate::segment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRun {
    pub segment: Segment,
    /// When the measured phases start.
    pub start: SegmentStart,
    /// The run id every segment stamps its messages with.
    pub run_id: u32,
}

/// When a segment starts measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentStart {
    /// At this wall-clock time (ns since the Unix epoch): `--start-at`.
    At(u64),
    /// When the coordinating process says so: the worker prints [`WorkerLine::Ready`] on
    /// stdout after its ramp and waits for the release line on stdin; it reports every
    /// interval as a [`WorkerLine::Tick`], and stops when stdin closes.
    OnRelease,
}

impl SegmentRun {
    /// The run id of a run whose segments start at `start_ns`: the same in every process
    /// given the same `--start-at`.
    pub fn run_id_for(start_ns: u64) -> u32 {
        (SplitMix::new(start_ns).next_u64() >> 32) as u32
    }
}

/// What `loadgen run` was asked to do.
///
/// With no target here and none in the scenario, the run starts the embedded server by
/// re-executing its own executable as `loadgen serve` ([`Launch::Embedded`]): that only
/// works inside the `loadgen` binary. A program that embeds the library gives a target
/// (e.g. a `chat_server::Server` it started on 127.0.0.1:0).
pub struct RunRequest {
    pub scenario: Scenario,
    /// The scenario file as given, for the reports.
    pub scenario_path: String,
    /// `--target` overrides, if any.
    pub targets: Vec<String>,
    /// No live progress on stderr.
    pub quiet: bool,
    /// The part of a split run this process plays; `None` for the whole run.
    pub segment: Option<SegmentRun>,
    /// `--source-address` overrides of `[users] source_addresses`, if any.
    pub source_addresses: Vec<IpAddr>,
    /// The picture the live view serves (`--dashboard`), kept up to date as the run goes.
    pub live: Option<LivePicture>,
}

impl RunRequest {
    /// A whole run of `scenario` (read from `scenario_path`, named in the reports): its own
    /// targets, quiet, no split, no live view.
    pub fn new(scenario: Scenario, scenario_path: &str) -> RunRequest {
        RunRequest {
            scenario,
            scenario_path: scenario_path.to_string(),
            targets: Vec::new(),
            quiet: true,
            segment: None,
            source_addresses: Vec::new(),
            live: None,
        }
    }
}

/// Everything a run leaves behind: the report, how it ended, and what a merge of the
/// segments of a split run needs beyond the report ([`crate::fleet`]).
pub struct RunOutput {
    pub report: RunReport,
    pub completion: Completion,
    /// The segment this process played ([`Segment::WHOLE`] for a whole run).
    pub segment: Segment,
    /// The run id in every stamp.
    pub run_id: u32,
    /// Measurement start on the run clock (Unix ns in a split run).
    pub measure_start_ns: u64,
    /// Every finished session of this process's users.
    pub ledgers: Vec<SessionLedger>,
    /// By sender index: what this process's senders sent (empty for other senders).
    pub sent: Vec<SentLog>,
    /// Per segment: the least one-way latency of a chat message from its senders.
    pub least_latency_from: Vec<Option<u64>>,
    /// How late after its start time this process began measuring (ns).
    pub start_late_ns: u64,
    /// loadgen's own lag, send and timer (µs), as histograms.
    pub lag: (Histogram<u64>, Histogram<u64>),
    /// A split run's segment only: every interval's histograms as text, for the
    /// segment's file (a whole run keeps none: they are in its latency log).
    pub interval_texts: Vec<IntervalTexts>,
}

/// Length of one report interval.
use intervals::INTERVAL;

/// Runs a scenario to the end (or until it must stop) and returns what it measured.
pub async fn run(request: RunRequest) -> Result<(RunReport, Completion), RunError> {
    run_part(request)
        .await
        .map(|output| (output.report, output.completion))
}

/// Connections one segment holds at peak: its share of the scenario's, and its probe user.
pub fn segment_peak_connections(scenario: &Scenario, segment: Segment) -> u64 {
    let users = u64::from(scenario.users.count.max(1));
    let owned = u64::from(segment.user_count(scenario.users.count));
    (scenario.peak_connections() * owned).div_ceil(users) + 1
}

/// Runs a scenario, or this process's segment of it, and returns everything it measured.
pub async fn run_part(request: RunRequest) -> Result<RunOutput, RunError> {
    let RunRequest {
        mut scenario,
        scenario_path,
        targets,
        quiet,
        segment: segment_run,
        source_addresses,
        live,
    } = request;
    if !targets.is_empty() {
        scenario.target = Targets::Many(targets);
    }
    let segment = segment_run.map_or(Segment::WHOLE, |s| s.segment);
    if segment.is_split() {
        nofile::ensure(segment_peak_connections(&scenario, segment))?;
    } else {
        nofile::ensure(scenario.peak_connections())?;
    }
    if !source_addresses.is_empty() {
        scenario.users.source_addresses =
            source_addresses.iter().map(|ip| ip.to_string()).collect();
    }
    // A segment started by hand (--start-at) may be on a host of its own: it counts its own
    // users' ports. Local workers and whole runs share this machine's.
    let (players, peak) = match segment_run {
        Some(SegmentRun {
            start: SegmentStart::At(_),
            ..
        }) => (
            ports::Players {
                count: scenario.users.count,
                segment,
            },
            segment_peak_connections(&scenario, segment),
        ),
        _ => (
            ports::Players::all(scenario.users.count),
            scenario.peak_connections(),
        ),
    };
    let credentials = run_credentials(&scenario, segment)?;
    let (mut server, resolved, placement) = prepare_server(&scenario, players, peak).await?;
    let run_id = segment_run.map_or_else(run_id, |s| s.run_id);
    let run = Arc::new(RunState::new(StateSetup {
        scenario,
        run_id,
        targets: resolved.clone(),
        segment,
        credentials,
    }));
    if let Some(expired) = run.take_renewals() {
        tokio::spawn(renewal::serve(run.clone(), expired));
    }
    let coordinated = segment_run.is_some_and(|s| s.start == SegmentStart::OnRelease);
    let progress = Progress::new(
        quiet || coordinated,
        u64::from(segment.user_count(run.users())),
    )
    .feeding(live.clone());
    let mut coordinator = coordinated.then(worker_io::Coordinator::attach);
    let stop = Interrupt::watch();
    let mut interrupt: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        match &mut coordinator {
            Some(coordinator) => {
                let gone = coordinator.gone_or_interrupted();
                let requested = stop.requested();
                Box::pin(async move {
                    tokio::select! {
                        () = gone => {}
                        _ = requested => {}
                    }
                })
            }
            None => {
                let requested = stop.requested();
                Box::pin(async move {
                    requested.await;
                })
            }
        };

    let ramp_started = Instant::now();
    let mut completion = match ramp(&run, &progress, &mut interrupt).await {
        Ok(completion) => completion,
        Err(why) => {
            run.stop();
            if let Some(server) = server {
                server.stop(Duration::from_secs(5)).await;
            }
            progress.finish();
            return Err(RunError::Unreachable(format!(
                "no user could log in to {}: {why}",
                resolved[0].0
            )));
        }
    };
    // Probes are served until the last relogin has been checked, not only until the
    // phases end: a relogin of the last seconds still needs one.
    let (stop_probes, mut probes_stopped) = tokio::sync::watch::channel(false);
    if completion == Completion::Complete && run.scenario.has_relogins() {
        match user::open(&run, run.probe_user(), true).await {
            Ok(conn) => {
                run.set_prober(conn);
                let run = run.clone();
                tokio::spawn(async move {
                    let stagger =
                        run.probes.interval() * run.segment.index / run.segment.count.max(1);
                    let stopped = async move {
                        let _ = probes_stopped.wait_for(|stopped| *stopped).await;
                    };
                    run.probes
                        .serve(|| run.send_probe(), stopped, stagger)
                        .await
                });
            }
            Err(error) => {
                completion =
                    Completion::Incomplete(format!("the probe user could not log in: {error}"))
            }
        }
    }
    let ramp = ramp_started.elapsed();

    // Plan the phases from now on, or from the segments' common start.
    let measure_start = match segment_run.map(|s| s.start) {
        Some(start) if completion == Completion::Complete => {
            let owned = u64::from(segment.user_count(run.users()));
            let users_online = run.online().min(owned);
            let ready = WorkerLine::Ready {
                connected: users_online,
                failed: owned - users_online,
            };
            match wait_for_start(&run, start, coordinator.as_mut(), ready, &mut interrupt).await {
                Ok(at) => at,
                Err(why) => {
                    completion = Completion::Incomplete(why);
                    run.now_ns()
                }
            }
        }
        _ => run.now_ns(),
    };
    let start_late_ns = run.now_ns().saturating_sub(measure_start);
    {
        let run = run.clone();
        tokio::spawn(async move { run.lag.watch_timer(run.stopped()).await });
    }
    let started_at = SystemTime::now();
    let header = report_header(
        &run.scenario,
        &resolved,
        scenario_path,
        placement,
        started_at,
        ramp,
    );
    if let Some(live) = &live {
        live.begin(&header);
    }
    run.set_plan(plan::plan_phases(
        &run.scenario.phases,
        run.users(),
        measure_start,
    ));
    // Connect counts of the ramp are not the first interval's: they belong to the ramp.
    let (ramp_counters, _) = run.recorder.take();
    let ramp_logins = run.recorder.take_logins();

    let max_senders = run.scenario.max_senders();
    let mut senders = JoinSet::new();
    for index in segment.users(max_senders) {
        let run = run.clone();
        senders.spawn(async move { (index, user::send_loop(run, index).await) });
    }
    let disruptor = tokio::spawn(disrupt::disrupt(run.clone(), max_senders));

    let mut intervals = Intervals::new(&run, measure_start, segment.is_split());
    let sampler = resources::Sampler::every(
        run.scenario
            .thresholds
            .max_memory_growth
            .as_ref()
            .map_or(crate::memory::SAMPLE_EVERY, |limit| limit.sample_every.0),
        server_probe(server.as_ref(), &resolved, run.tls.as_ref()),
    );
    let sampling_from = SystemTime::now();
    if let Some(times) = &ramp_logins {
        intervals.logins.add(times);
    }
    if completion == Completion::Complete {
        completion = measure(
            &run,
            &mut intervals,
            &progress,
            &mut interrupt,
            server.as_mut(),
            &resolved,
            coordinator.as_ref(),
        )
        .await;
    }

    // Wind down: stop sending, let relogins and churn finish, wait for stragglers.
    run.stop();
    let verify = &run.scenario.verify;
    // The longest a relogin takes: its logins, the evictions, a probe, the probe's
    // delivery, and as long again for a late one.
    let wind_down = run.connect_timeout
        + verify.eviction_deadline.0
        + verify.probe_deadline.0 * 3
        + Duration::from_secs(3);
    // A stop request (Ctrl-C, SIGTERM) cuts every wait of the wind-down short.
    let mut disruptor = disruptor;
    tokio::select! {
        finished = tokio::time::timeout(wind_down, &mut disruptor) => {
            if finished.is_err() {
                disruptor.abort();
            }
        }
        reason = stop.requested() => {
            disruptor.abort();
            completion.stop(reason, "during the wind-down");
        }
    }
    stop_probes.send_replace(true);
    if completion == Completion::Complete {
        tokio::select! {
            () = tokio::time::sleep(verify.deadline.0) => {}
            reason = stop.requested() => completion.stop(reason, "during the wind-down"),
        }
    }
    completion.name_the_signal(stop.reason());
    let mut send_times: Vec<SentLog> = vec![SentLog::default(); max_senders as usize];
    while let Some(joined) = senders.join_next().await {
        if let Ok((index, times)) = joined {
            if let Some(slot) = send_times.get_mut(index as usize) {
                *slot = times;
            }
        }
    }
    close_all(&run).await;
    intervals.close(run.now_ns());
    let ended_at = SystemTime::now();
    let Intervals {
        records,
        log,
        texts: interval_texts,
        overall,
        logins,
        ..
    } = intervals;
    let (mut records, unread) = records.into_records();
    if let (Some(why), Completion::Complete) = (unread, &completion) {
        completion = Completion::Incomplete(format!(
            "the interval records could not all be read back from their temporary file: {why}"
        ));
    }
    let ledgers = run.take_ledgers();
    let totals = account(
        &run,
        &ledgers,
        &mut records,
        &send_times,
        measure_start,
        ramp_counters,
    );

    let resources_over_time = sampler
        .finish()
        .await
        .iter()
        .map(|sample| crate::memory::ResourceSample::of(sample, sampling_from))
        .collect();
    let server_deliveries_out = deliveries_out(&resolved, run.tls.as_ref()).await;
    if let Some(server) = server {
        server.stop(Duration::from_secs(10)).await;
    }
    progress.finish();

    let report = RunReport {
        ended_at,
        intervals: records,
        latency_log: log,
        loadgen_lag: run.lag.figures(),
        probes_sent: run.probes.sent(),
        sessions_tallied_early: run.sends.folded_sessions(),
        totals,
        latency: overall,
        connect: logins,
        incomplete: match &completion {
            Completion::Complete => None,
            Completion::Incomplete(why) => Some(why.clone()),
        },
        server_deliveries_out,
        segments: segment.is_split().then(|| SegmentsInfo::Part {
            segment,
            start_late_ms: start_late_ns as f64 / 1e6,
        }),
        loadgen_resources: LoadgenResources::of_self(),
        resources_over_time,
        calibration: None,
        ..header
    };
    Ok(RunOutput {
        report,
        completion,
        segment,
        run_id,
        measure_start_ns: measure_start,
        ledgers,
        sent: send_times,
        least_latency_from: run.least_latency_from(),
        start_late_ns,
        lag: run.lag.histograms(),
        interval_texts,
    })
}

/// What this process's logins prove their names with, checked: the key read, or the tokens
/// file holding a row for every user `segment` plays and for its probe user.
fn run_credentials(
    scenario: &Scenario,
    segment: Segment,
) -> Result<Option<crate::credentials::Credentials>, RunError> {
    let credentials = scenario
        .users
        .credentials()
        .map_err(|error| RunError::Credentials(format!("[users] {error}")))?;
    if let Some(credentials) = &credentials {
        let mut names: Vec<String> = segment
            .users(scenario.users.count)
            .map(|i| scenario.user_name(i))
            .collect();
        if scenario.has_relogins() {
            names.push(scenario.probe_name_of(segment));
        }
        credentials
            .cover(&names)
            .map_err(|error| RunError::Credentials(format!("[users] {error}")))?;
    }
    Ok(credentials)
}

/// The report of a run that is about to measure: its setup, no figures yet. The live view
/// begins with it, and the final report is it with the figures filled in.
pub fn report_header(
    scenario: &Scenario,
    targets: &[(Target, SocketAddr)],
    scenario_path: String,
    server: ServerPlacement,
    started_at: SystemTime,
    ramp: Duration,
) -> RunReport {
    RunReport {
        setup: RunSetup {
            scenario_name: scenario.name().to_string(),
            scenario_path,
            scenario: {
                let mut json = serde_json::to_value(scenario).unwrap_or(serde_json::Value::Null);
                crate::headers::mask_json(&mut json, &scenario.users.login_headers());
                json
            },
            targets: targets.iter().map(|(t, _)| t.to_string()).collect(),
            server,
            loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
            git_revision: git_revision(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        started_at,
        ended_at: started_at,
        ramp,
        intervals: Vec::new(),
        latency_log: LatencyLog::default(),
        totals: Counters::default(),
        latency: new_histogram(),
        connect: ConnectTimes::default(),
        thresholds: scenario.thresholds.clone(),
        incomplete: None,
        server_deliveries_out: None,
        loadgen_lag: Default::default(),
        probes_sent: 0,
        sessions_tallied_early: 0,
        segments: None,
        loadgen_resources: LoadgenResources::default(),
        resources_over_time: Vec::new(),
        calibration: None,
    }
}

/// Waits until a segment's measured phases start; returns the start on the run clock
/// (Unix ns), or why the segment cannot start.
async fn wait_for_start(
    run: &RunState,
    start: SegmentStart,
    coordinator: Option<&mut worker_io::Coordinator>,
    ready: WorkerLine,
    interrupt: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> Result<u64, String> {
    let at = match (start, coordinator) {
        (SegmentStart::At(at), _) => at,
        (SegmentStart::OnRelease, Some(coordinator)) => {
            coordinator.say(&ready);
            tokio::select! {
                released = coordinator.released() => released.ok_or_else(|| {
                    "the coordinating loadgen went away before the start".to_string()
                })?,
                _ = &mut *interrupt => return Err(format!("{INTERRUPTED} before the start")),
            }
        }
        (SegmentStart::OnRelease, None) => return Err("no coordinator to start us".into()),
    };
    let now = run.now_ns();
    if now > at + START_TOLERANCE.as_nanos() as u64 {
        return Err(format!(
            "this segment was ready {:.1} s after its start time (--start-at): its users \
             were not all connected in time; start later",
            (now - at) as f64 / 1e9
        ));
    }
    tokio::select! {
        _ = tokio::time::sleep_until(run.clock.instant_at(at)) => Ok(at),
        _ = &mut *interrupt => Err(format!("{INTERRUPTED} before the start")),
    }
}

/// Closes every open connection on purpose and waits for them to end: a Close to each at
/// once, then up to [`CLOSE_WAIT`] for the server's answers; the readers of those that did
/// not answer are stopped and given [`CLOSE_WAIT`] more. A task per connection only for
/// the few whose Close could not be written at once.
async fn close_all(run: &Arc<RunState>) {
    let now = run.now_ns();
    let open = run.open_connections();
    let mut slow = JoinSet::new();
    for conn in &open {
        if !conn.start_close(run.now_ns().max(now)) {
            let (run, conn) = (run.clone(), conn.clone());
            slow.spawn(async move { conn.close(run.now_ns().max(now), CLOSE_WAIT).await });
        }
    }
    // All of them are closing at once: waiting for each in turn takes as long as the last.
    let answered_by = tokio::time::Instant::now() + CLOSE_WAIT;
    let mut silent = Vec::new();
    for conn in open {
        if !conn.ended_by(answered_by).await {
            conn.stop_reading();
            silent.push(conn);
        }
    }
    let stopped_by = tokio::time::Instant::now() + CLOSE_WAIT;
    for conn in silent {
        conn.ended_by(stopped_by).await;
    }
    while slow.join_next().await.is_some() {}
}

/// How long closing connections wait for the server's Close, and then for their readers.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Adds expected, lost and unverified deliveries to the intervals the messages were sent
/// in, and returns the run's totals (the ramp's logins included, in the first row too).
fn account(
    run: &RunState,
    ledgers: &[SessionLedger],
    records: &mut [IntervalRecord],
    send_times: &[SentLog],
    measure_start: u64,
    ramp_counters: Counters,
) -> Counters {
    let deadline_ns = run.scenario.verify.deadline.0.as_nanos() as u64;
    let last_index = records.len().saturating_sub(1);
    let self_delivery = run.protocol.self_delivery();
    let mut tally = tally_loss(ledgers, send_times, deadline_ns, self_delivery, |t| {
        ((t.saturating_sub(measure_start) / INTERVAL.as_nanos() as u64) as usize).min(last_index)
    });
    // The sessions tallied while the run went on.
    tally.add(&run.sends.take_folded(), last_index);
    for (i, record) in records.iter_mut().enumerate() {
        record.counters.expected += tally.expected.get(i).copied().unwrap_or(0);
        record.counters.lost += tally.lost.get(i).copied().unwrap_or(0);
        record.counters.unverified += tally.unverified.get(i).copied().unwrap_or(0);
    }
    let mut totals = ramp_counters;
    for record in records.iter() {
        totals.add(&record.counters);
    }
    if let Some(first) = records.first_mut() {
        first.counters.connects += ramp_counters.connects;
        first.counters.connect_errors += ramp_counters.connect_errors;
    }
    totals
}

/// Where the server's memory and CPU can be read: the embedded server's process, or the
/// first target's `/metrics` (`process_resident_memory_bytes`, when it has it).
fn server_probe(
    server: Option<&ServerProcess>,
    resolved: &[(Target, SocketAddr)],
    tls: Option<&crate::tls::TlsClient>,
) -> Option<resources::ServerProbe> {
    if let Some(server) = server {
        return Some(resources::ServerProbe::Pid(server.pid()));
    }
    let (target, addr) = resolved.first()?;
    Some(resources::ServerProbe::Metrics(crate::scrape::MetricsAt {
        target: target.clone(),
        addr: *addr,
        tls: tls.cloned(),
    }))
}

/// A random id for this run's stamps, so deliveries of another run are told apart.
fn run_id() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = SplitMix::new(nanos as u64 ^ u64::from(std::process::id())).next_u64();
    (mixed >> 32) as u32
}

/// `git rev-parse HEAD` of the working directory, if it is a git checkout.
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
