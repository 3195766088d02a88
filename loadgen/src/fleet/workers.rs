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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::file::SegmentFile;
use super::merge::{self, Found};
use crate::nofile;
use crate::progress::Progress;
use crate::random::SplitMix;
use crate::record::{histogram_from_text, new_histogram, Counters, IntervalRecord};
use crate::report::{RunReport, SegmentProblem, ServerPlacement};
use crate::run::{self, plan, Completion, RunError, RunRequest};
use crate::scenario::Targets;
use crate::segment::{self, Segment, WorkerLine};

/// A worker's pid in [`segment::live_workers`] for as long as this lives.
struct WorkerPid(u32);

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
    let (server, resolved) = run::locate_server(&scenario).await?;
    // Every worker runs here: the whole scenario's connections share this machine's ports.
    let destinations: Vec<_> = resolved.iter().map(|(_, addr)| *addr).collect();
    if let Err(error) = crate::ports::ensure(
        crate::ports::Players::all(scenario.users.count),
        scenario.peak_connections(),
        &destinations,
        &scenario.users.source_ips(),
    ) {
        if let Some(server) = server {
            server.stop(Duration::from_secs(5)).await;
        }
        return Err(error.into());
    }
    let placement = match &server {
        Some(server) => ServerPlacement::EmbeddedChild {
            pid: server.pid(),
            address: server.addr.to_string(),
            command: server.command.clone(),
        },
        None => ServerPlacement::External,
    };
    let outcome = coordinate(scenario, &scenario_path, &resolved, workers, dir, quiet).await;
    let deliveries_out = run::deliveries_out(&resolved).await;
    if let Some(server) = server {
        server.stop(Duration::from_secs(10)).await;
    }
    let (mut report, completion) = outcome?;
    report.server = placement;
    if deliveries_out.is_some() {
        report.server_deliveries_out = deliveries_out;
    }
    Ok((report, completion))
}

async fn coordinate(
    mut scenario: crate::scenario::Scenario,
    scenario_path: &str,
    resolved: &[(crate::target::Target, std::net::SocketAddr)],
    workers: u32,
    dir: &Path,
    quiet: bool,
) -> Result<(RunReport, Completion), RunError> {
    let could_not = |why: String| RunError::Unreachable(why);
    scenario.target = Targets::Many(resolved.iter().map(|(t, _)| t.to_string()).collect());
    scenario.workers = None;
    std::fs::create_dir_all(dir)
        .map_err(|e| could_not(format!("cannot create {}: {e}", dir.display())))?;
    let scenario_file = dir.join("scenario.toml");
    let text = toml::to_string(&scenario)
        .map_err(|e| could_not(format!("cannot write the scenario for the workers: {e}")))?;
    std::fs::write(&scenario_file, text)
        .map_err(|e| could_not(format!("cannot write {}: {e}", scenario_file.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| could_not(format!("cannot find the loadgen executable: {e}")))?;
    let run_id = (SplitMix::new(segment::unix_now_ns() ^ u64::from(std::process::id())).next_u64()
        >> 32) as u32;

    let (tx, mut events) = mpsc::unbounded_channel();
    let mut children = JoinSet::new();
    let mut stdins: Vec<Option<ChildStdin>> = Vec::new();
    let mut folders: Vec<PathBuf> = Vec::new();
    for index in 0..workers {
        let folder = dir.join(index.to_string());
        let mut command = Command::new(&exe);
        command
            .arg("run")
            .arg(&scenario_file)
            .arg("--segment")
            .arg(format!("{index}/{workers}"))
            .arg("--coordinated")
            .arg("--run-id")
            .arg(run_id.to_string())
            .arg("--out")
            .arg(&folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| could_not(format!("cannot start worker {index}/{workers}: {e}")))?;
        stdins.push(child.stdin.take());
        folders.push(folder);
        let stdout = child.stdout.take();
        let tx = tx.clone();
        let pid = child.id().unwrap_or(0);
        segment::worker_started(pid);
        let registered = WorkerPid(pid);
        children.spawn(async move {
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
    drop(tx);

    let users = scenario.users.count;
    let progress = Progress::new(quiet, u64::from(users));
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    let mut interrupted = false;
    let n = workers as usize;

    // Until every worker has connected its users.
    let ramp_s = f64::from(users) / plan::ramp_rate(&scenario);
    let ready_by = tokio::time::Instant::now()
        + Duration::from_secs_f64(ramp_s.min(3600.0))
        + scenario.users.connect_timeout.0
        + Duration::from_secs(60);
    let mut ready = vec![None; n];
    while ready.iter().any(Option::is_none) {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::time::sleep_until(ready_by) => {
                return Err(could_not(format!(
                    "{} of {workers} workers did not connect their users in time",
                    ready.iter().filter(|r| r.is_none()).count()
                )));
            }
            _ = &mut interrupt => {
                return Err(could_not(format!("{} before the start", run::INTERRUPTED)));
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
                progress.finish();
                return Err(could_not(format!(
                    "worker {i}/{workers} exited before the start ({status})"
                )));
            }
            Some(_) => {}
            None => return Err(could_not("every worker went away".into())),
        }
    }

    // Release them together, a moment from now.
    let start_ns = segment::unix_now_ns() + 500_000_000;
    let release = segment::release_line(start_ns) + "\n";
    for stdin in stdins.iter_mut().flatten() {
        let _ = stdin.write_all(release.as_bytes()).await;
        let _ = stdin.flush().await;
    }
    let phases = plan::plan_phases(&scenario.phases, users, start_ns);
    let phases_end = phases.last().map_or(start_ns, |p| p.end_ns);
    let verify = &scenario.verify;
    let run_for = Duration::from_nanos(phases_end.saturating_sub(start_ns))
        + verify.eviction_deadline.0
        + verify.probe_deadline.0
        + verify.deadline.0
        + scenario.users.connect_timeout.0
        + Duration::from_secs(120);
    let give_up = tokio::time::Instant::now() + run_for;

    let mut done = vec![false; n];
    let mut exited: Vec<Option<String>> = vec![None; n];
    let mut ticks: Vec<(usize, IntervalRecord)> = Vec::new();
    let mut overall = new_histogram();
    while exited.iter().any(Option::is_none) {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::time::sleep_until(give_up) => {
                // Bounded: what has not finished by now is stopped.
                children.abort_all();
                break;
            }
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                stdins.iter_mut().for_each(|stdin| drop(stdin.take()));
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
                let alive = exited.iter().filter(|e| e.is_none()).count();
                if let Some(line) = add_tick(
                    &mut ticks,
                    index,
                    length_s,
                    users_online,
                    &counters,
                    &latency,
                    alive,
                ) {
                    let _ = overall.add(&line.latency);
                    let name = plan::phase_at(&phases, start_ns + index as u64 * 1_000_000_000)
                        .map(|p| p.name.clone())
                        .unwrap_or_default();
                    progress.tick(&name, &line, &overall);
                }
            }
            Some(Event::Line(i, WorkerLine::Done { .. })) => {
                if let Some(slot) = done.get_mut(i as usize) {
                    *slot = true;
                }
                // Nothing more to say to it: closing its stdin lets it exit.
                if let Some(stdin) = stdins.get_mut(i as usize) {
                    stdin.take();
                }
            }
            Some(Event::Line(_, WorkerLine::Ready { .. })) => {}
            Some(Event::Exited(i, status)) => {
                if let Some(slot) = exited.get_mut(i as usize) {
                    *slot = Some(status);
                }
            }
            None => break,
        }
    }
    progress.finish();
    drop(stdins);

    let mut problems = Vec::new();
    let mut found = Vec::new();
    for (i, folder) in folders.iter().enumerate() {
        let index = i as u32;
        if !done[i] {
            let status = exited[i]
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
    report.scenario_path = scenario_path.to_string();
    // The coordinator is part of the run's cost too.
    report
        .loadgen_resources
        .add(&crate::report::LoadgenResources::of_self());
    if interrupted && completion == Completion::Complete {
        completion = Completion::Incomplete(run::INTERRUPTED.into());
        report.incomplete = Some(run::INTERRUPTED.into());
    }
    Ok((report, completion))
}

/// Adds one worker's tick to interval `index`; returns the interval once `alive` workers
/// have reported it (for the combined progress line).
fn add_tick(
    ticks: &mut Vec<(usize, IntervalRecord)>,
    index: usize,
    length_s: f64,
    users_online: u64,
    counters: &Counters,
    latency: &str,
    alive: usize,
) -> Option<IntervalRecord> {
    while ticks.len() <= index {
        ticks.push((
            0,
            IntervalRecord {
                start_s: ticks.len() as f64,
                length_s: 0.0,
                users_online: 0,
                counters: Counters::default(),
                latency: new_histogram(),
            },
        ));
    }
    let (seen, record) = &mut ticks[index];
    *seen += 1;
    record.length_s = record.length_s.max(length_s);
    record.users_online += users_online;
    record.counters.add(counters);
    if let Some(h) = histogram_from_text(latency) {
        let _ = record.latency.add(&h);
    }
    (*seen == alive).then(|| record.clone())
}
