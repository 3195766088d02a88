//! `loadgen run --workers N`: N segment processes on this machine, started, released
//! together, watched, and merged into one report.
//!
//! Each worker is this executable again, `loadgen run <scenario> --segment I/N
//! --coordinated`, with its report folder under `<out>/segments/I/`. The coordinator
//! resolves the target once (starting the embedded server if the scenario names none, so
//! that every worker loads the same server), writes the scenario as run to
//! `<out>/segments/scenario.toml`, and gives each worker the same run id. Workers connect
//! their users and say they are ready; once all are, the coordinator releases them to
//! start their measured phases at one wall-clock time, shows one combined progress line
//! from their per-interval ticks, and merges their segment files at the end.
//!
//! A worker that dies is never hidden: before the start it stops the run (exit 3); after
//! it, the others finish, the merge is marked incomplete and names the segment. Closing a
//! worker's stdin stops it (Ctrl-C here closes them all), and a worker whose coordinator
//! dies sees its stdin close too, so no worker outlives its run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::file::SegmentFile;
use super::merge::{self, Found};
use crate::progress::Progress;
use crate::random::SplitMix;
use crate::record::{histogram_from_text, new_histogram, ClosedInterval, Counters};
use crate::report::live::LivePicture;
use crate::report::{LoadgenResources, RunReport, SegmentProblem, SegmentsInfo, ServerPlacement};
use crate::run::{self, plan, Completion, RunError, RunRequest};
use crate::scenario::{Scenario, Targets};
use crate::segment::{self, Segment, WorkerLine};
use crate::target::Target;
use crate::{headers, nofile};

/// A worker's pid in [`segment::live_workers`] for as long as this lives.
struct WorkerPid(u32);

impl WorkerPid {
    fn register(pid: u32) -> WorkerPid {
        segment::worker_started(pid);
        WorkerPid(pid)
    }
}

impl Drop for WorkerPid {
    fn drop(&mut self) {
        segment::worker_ended(self.0);
    }
}

/// What the coordinator hears.
enum Event {
    Line(u32, WorkerLine),
    Exited(u32, String),
}

/// Runs `request` as `workers` segment processes, their folders under `dir`.
pub async fn run_workers(
    request: RunRequest,
    workers: u32,
    dir: &Path,
) -> Result<(RunReport, Completion), RunError> {
    let RunRequest {
        mut scenario,
        scenario_path,
        targets,
        quiet,
        segment: _,
        source_addresses,
        live,
    } = request;
    if !targets.is_empty() {
        scenario.target = Targets::Many(targets);
    }
    if !source_addresses.is_empty() {
        scenario.users.source_addresses =
            source_addresses.iter().map(|ip| ip.to_string()).collect();
    }
    let widest = Segment {
        index: 0,
        count: workers,
    };
    nofile::ensure(run::segment_peak_connections(&scenario, widest))?;
    // Every worker runs here: the whole scenario's connections share this machine's ports.
    let players = crate::ports::Players::all(scenario.users.count);
    let (server, resolved, placement) =
        run::prepare_server(&scenario, players, scenario.peak_connections()).await?;
    let scenario_tls = scenario.users.tls.clone();
    let outcome = coordinate(
        scenario,
        &scenario_path,
        (&resolved, &placement),
        workers,
        dir,
        (quiet, live.as_ref()),
    )
    .await;
    let tls = crate::tls::TlsClient::new(&scenario_tls).ok();
    let deliveries_out = run::deliveries_out(&resolved, tls.as_ref()).await;
    if let Some(server) = server {
        server.stop(Duration::from_secs(10)).await;
    }
    let (mut report, completion) = outcome?;
    report.setup.server = placement;
    if deliveries_out.is_some() {
        report.server_deliveries_out = deliveries_out;
    }
    Ok((report, completion))
}

/// Writes the scenario for the workers, runs them to the end, and merges their reports.
async fn coordinate(
    mut scenario: Scenario,
    scenario_path: &str,
    (resolved, placement): (&[(Target, SocketAddr)], &ServerPlacement),
    workers: u32,
    dir: &Path,
    (quiet, live): (bool, Option<&LivePicture>),
) -> Result<(RunReport, Completion), RunError> {
    scenario.target = Targets::Many(resolved.iter().map(|(t, _)| t.to_string()).collect());
    scenario.workers = None;
    std::fs::create_dir_all(dir)
        .map_err(|e| could_not(format!("cannot create {}: {e}", dir.display())))?;
    let scenario_file = dir.join("scenario.toml");
    // Secret header values stay out of the file: the workers get them in their environment.
    let (masked, secrets) = headers::split_secrets(&scenario.users.headers);
    let mut written = scenario.clone();
    written.users.headers = masked;
    let text = toml::to_string(&written)
        .map_err(|e| could_not(format!("cannot write the scenario for the workers: {e}")))?;
    std::fs::write(&scenario_file, text)
        .map_err(|e| could_not(format!("cannot write {}: {e}", scenario_file.display())))?;

    let ramp_started = std::time::Instant::now();
    let mut fleet = Fleet::start(&scenario_file, workers, dir, &secrets)?;
    let progress = Progress::new(quiet, u64::from(scenario.users.count)).feeding(live.cloned());
    let stop = crate::interrupt::Interrupt::watch();
    let mut interrupt = Box::pin(stop.requested());
    let ramp_s = f64::from(scenario.users.count) / plan::ramp_rate(&scenario);
    let ready_by = tokio::time::Instant::now()
        + Duration::from_secs_f64(ramp_s.min(3600.0))
        + scenario.users.connect_timeout.0
        + Duration::from_secs(60);
    if let Err(error) = fleet.until_ready(ready_by, &progress, &mut interrupt).await {
        progress.finish();
        return Err(error);
    }
    let start_ns = fleet.release().await;
    if let Some(live) = live {
        let started_at = std::time::UNIX_EPOCH + Duration::from_nanos(start_ns);
        let mut header = run::report_header(
            &scenario,
            resolved,
            scenario_path.to_string(),
            placement.clone(),
            started_at,
            ramp_started.elapsed(),
        );
        header.segments = Some(SegmentsInfo::Merged {
            count: workers,
            merged: (0..workers).collect(),
            incomplete: Vec::new(),
            clock_offset_worst_ms: None,
            start_late_worst_ms: 0.0,
            per_segment: Vec::new(),
        });
        live.begin(&header);
    }
    let phases = plan::plan_phases(&scenario.phases, scenario.users.count, start_ns);
    let phases_end = phases.last().map_or(start_ns, |p| p.end_ns);
    let verify = &scenario.verify;
    // Bounded: a worker still running this long after the phases is stopped.
    let give_up = tokio::time::Instant::now()
        + Duration::from_nanos(phases_end.saturating_sub(start_ns))
        + scenario.users.connect_timeout.0
        + verify.eviction_deadline.0
        + verify.probe_deadline.0 * 3
        + verify.deadline.0
        + Duration::from_secs(120);
    let shown = |index: usize, line: &ClosedInterval, overall: &Histogram<u64>| {
        let at = start_ns + index as u64 * 1_000_000_000;
        let name = plan::phase_at(&phases, at).map_or("", |p| p.name.as_str());
        progress.tick(name, line, overall);
    };
    let interrupted = fleet.until_done(give_up, shown, &mut interrupt).await;
    progress.finish();

    let (found, problems) = fleet.reports();
    if found.is_empty() {
        return Err(could_not(format!(
            "no worker left a report: {}",
            problems
                .iter()
                .map(|p| format!("segment {}/{workers} {}", p.index, p.why))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    let (mut report, mut completion) =
        merge::merge(found, problems).map_err(|e| could_not(e.to_string()))?;
    report.setup.scenario_path = scenario_path.to_string();
    // The coordinator is part of the run's cost too.
    report.loadgen_resources.add(&LoadgenResources::of_self());
    if interrupted && completion == Completion::Complete {
        let reason = stop.reason().unwrap_or(run::INTERRUPTED);
        completion = Completion::Incomplete(reason.into());
        report.incomplete = Some(reason.into());
    }
    Ok((report, completion))
}

fn could_not(why: String) -> RunError {
    RunError::Unreachable(why)
}

/// The running workers, as the coordinator sees them.
struct Fleet {
    workers: u32,
    /// Lines and exits of every worker.
    events: mpsc::UnboundedReceiver<Event>,
    /// One task per worker, owning its process (dropping it kills the process).
    children: JoinSet<()>,
    /// Each worker's stdin, until it is done (closing it stops a worker).
    stdins: Vec<Option<ChildStdin>>,
    /// Each worker's report folder.
    folders: Vec<PathBuf>,
    /// Each worker said it was done (its segment report is written).
    done: Vec<bool>,
    /// Each worker's exit status, once it exited.
    exited: Vec<Option<String>>,
}

impl Fleet {
    /// Starts `workers` segment processes of `scenario_file`, their folders under `dir`.
    fn start(
        scenario_file: &Path,
        workers: u32,
        dir: &Path,
        secrets: &str,
    ) -> Result<Fleet, RunError> {
        let exe = std::env::current_exe()
            .map_err(|e| could_not(format!("cannot find the loadgen executable: {e}")))?;
        let seed = segment::unix_now_ns() ^ u64::from(std::process::id());
        let run_id = (SplitMix::new(seed).next_u64() >> 32) as u32;
        let (tx, events) = mpsc::unbounded_channel();
        let mut fleet = Fleet {
            workers,
            events,
            children: JoinSet::new(),
            stdins: Vec::new(),
            folders: Vec::new(),
            done: vec![false; workers as usize],
            exited: vec![None; workers as usize],
        };
        for index in 0..workers {
            let folder = dir.join(index.to_string());
            let mut child = Command::new(&exe)
                .arg("run")
                .arg(scenario_file)
                .arg("--segment")
                .arg(format!("{index}/{workers}"))
                .arg("--coordinated")
                .arg("--run-id")
                .arg(run_id.to_string())
                .arg("--out")
                .arg(&folder)
                .env(headers::SECRETS_ENV, secrets)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| could_not(format!("cannot start worker {index}/{workers}: {e}")))?;
            fleet.stdins.push(child.stdin.take());
            fleet.folders.push(folder);
            let stdout = child.stdout.take();
            let tx = tx.clone();
            let registered = WorkerPid::register(child.id().unwrap_or(0));
            fleet.children.spawn(async move {
                let _registered = registered;
                if let Some(stdout) = stdout {
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(said) = WorkerLine::decode(&line) {
                            let _ = tx.send(Event::Line(index, said));
                        }
                    }
                }
                let status = match child.wait().await {
                    Ok(status) => status.to_string(),
                    Err(e) => e.to_string(),
                };
                let _ = tx.send(Event::Exited(index, status));
            });
        }
        Ok(fleet)
    }

    /// Waits until every worker has connected its users; a worker that exits first, the
    /// deadline or Ctrl-C stop the run.
    async fn until_ready(
        &mut self,
        ready_by: tokio::time::Instant,
        progress: &Progress,
        interrupt: &mut (impl std::future::Future<Output = crate::interrupt::Reason> + Unpin),
    ) -> Result<(), RunError> {
        let workers = self.workers;
        let mut ready = vec![None; workers as usize];
        while ready.iter().any(Option::is_none) {
            let event = tokio::select! {
                event = self.events.recv() => event,
                _ = tokio::time::sleep_until(ready_by) => {
                    return Err(could_not(format!(
                        "{} of {workers} workers did not connect their users in time",
                        ready.iter().filter(|r| r.is_none()).count()
                    )));
                }
                reason = &mut *interrupt => {
                    return Err(could_not(format!("{reason} before the start")));
                }
            };
            match event {
                Some(Event::Line(i, WorkerLine::Ready { connected, failed })) => {
                    if let Some(slot) = ready.get_mut(i as usize) {
                        *slot = Some((connected, failed));
                    }
                    let (c, f) = ready
                        .iter()
                        .flatten()
                        .fold((0, 0), |(c, f), (a, b)| (c + a, f + b));
                    progress.ramp(c, f);
                }
                Some(Event::Exited(i, status)) => {
                    return Err(could_not(format!(
                        "worker {i}/{workers} exited before the start ({status})"
                    )));
                }
                Some(_) => {}
                None => return Err(could_not("every worker went away".into())),
            }
        }
        Ok(())
    }

    /// Releases every worker to start measuring at one moment, half a second from now
    /// (time for the line to reach each); returns that moment (ns since the Unix epoch).
    async fn release(&mut self) -> u64 {
        let start_ns = segment::unix_now_ns() + 500_000_000;
        let release = segment::release_line(start_ns) + "\n";
        for stdin in self.stdins.iter_mut().flatten() {
            let _ = stdin.write_all(release.as_bytes()).await;
            let _ = stdin.flush().await;
        }
        start_ns
    }

    /// Follows the workers until every one has exited (or `give_up`), showing each
    /// interval once every live worker has reported it. Ctrl-C closes their stdins (they
    /// stop as interrupted). Returns whether Ctrl-C came.
    async fn until_done(
        &mut self,
        give_up: tokio::time::Instant,
        show: impl Fn(usize, &ClosedInterval, &Histogram<u64>),
        interrupt: &mut (impl std::future::Future<Output = crate::interrupt::Reason> + Unpin),
    ) -> bool {
        let mut interrupted = false;
        let mut ticks: Vec<(usize, Option<ClosedInterval>)> = Vec::new();
        let mut overall = new_histogram();
        while self.exited.iter().any(Option::is_none) {
            let event = tokio::select! {
                event = self.events.recv() => event,
                _ = tokio::time::sleep_until(give_up) => {
                    self.children.abort_all();
                    break;
                }
                _ = &mut *interrupt, if !interrupted => {
                    interrupted = true;
                    self.stdins.iter_mut().for_each(|stdin| drop(stdin.take()));
                    continue;
                }
            };
            match event {
                Some(Event::Line(
                    _,
                    WorkerLine::Tick {
                        index,
                        length_s,
                        users_online,
                        counters,
                        latency,
                    },
                )) => {
                    let alive = self.exited.iter().filter(|e| e.is_none()).count();
                    let tick = Tick {
                        index,
                        length_s,
                        users_online,
                        counters: &counters,
                        latency: &latency,
                    };
                    if let Some(line) = add_tick(&mut ticks, tick, alive) {
                        let _ = overall.add(&line.latency);
                        show(index, &line, &overall);
                    }
                }
                Some(Event::Line(i, WorkerLine::Done { .. })) => {
                    if let Some(slot) = self.done.get_mut(i as usize) {
                        *slot = true;
                    }
                    // Nothing more to say to it: closing its stdin lets it exit.
                    if let Some(stdin) = self.stdins.get_mut(i as usize) {
                        stdin.take();
                    }
                }
                Some(Event::Line(_, WorkerLine::Ready { .. })) => {}
                Some(Event::Exited(i, status)) => {
                    if let Some(slot) = self.exited.get_mut(i as usize) {
                        *slot = Some(status);
                    }
                }
                None => break,
            }
        }
        self.stdins.clear();
        interrupted
    }

    /// The segment reports the workers left, and what is wrong with the others (a worker
    /// that died, a report that cannot be read).
    fn reports(&self) -> (Vec<Found>, Vec<SegmentProblem>) {
        let mut problems = Vec::new();
        let mut found = Vec::new();
        for (i, folder) in self.folders.iter().enumerate() {
            let index = i as u32;
            if !self.done[i] {
                let status = self.exited[i]
                    .clone()
                    .unwrap_or_else(|| "still running; stopped".into());
                problems.push(SegmentProblem {
                    index,
                    why: format!("died mid-run ({status})"),
                });
                continue;
            }
            match SegmentFile::read(folder) {
                Ok(file) => found.push(Found {
                    origin: folder.display().to_string(),
                    file,
                }),
                Err(error) => problems.push(SegmentProblem {
                    index,
                    why: error.to_string(),
                }),
            }
        }
        (found, problems)
    }
}

/// One worker's report of one interval.
struct Tick<'a> {
    index: usize,
    length_s: f64,
    users_online: u64,
    counters: &'a Counters,
    latency: &'a str,
}

/// Adds one worker's tick to its interval; returns the interval once `alive` workers have
/// reported it (for the combined progress line), and lets go of its histogram then (a
/// late tick of an interval already shown is not shown again).
fn add_tick(
    ticks: &mut Vec<(usize, Option<ClosedInterval>)>,
    tick: Tick<'_>,
    alive: usize,
) -> Option<ClosedInterval> {
    while ticks.len() <= tick.index {
        ticks.push((
            0,
            Some(ClosedInterval {
                start_s: ticks.len() as f64,
                length_s: 0.0,
                users_online: 0,
                counters: Counters::default(),
                latency: new_histogram(),
                connect: None,
            }),
        ));
    }
    let (seen, slot) = &mut ticks[tick.index];
    let record = slot.as_mut()?;
    *seen += 1;
    record.length_s = record.length_s.max(tick.length_s);
    record.users_online += tick.users_online;
    record.counters.add(tick.counters);
    if let Some(h) = histogram_from_text(tick.latency) {
        let _ = record.latency.add(&h);
    }
    if *seen == alive {
        slot.take()
    } else {
        None
    }
}
