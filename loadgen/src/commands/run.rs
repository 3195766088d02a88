//! The body of `loadgen run`: read the scenario, run it (in this process, as local
//! workers, or as one segment of a split run), write the reports, print the summary, and
//! say which [`Exit`] the run earned. Beside the run: the live view and `/metrics`
//! ([`Dashboard`]) and the pushes to a remote-write receiver ([`Pusher`]), neither of
//! which changes the verdict.

use std::path::{Path, PathBuf};

use crate::calibration::Started;
use crate::commands::cli::RunArgs;
use crate::commands::exit::Exit;
use crate::commands::live_outputs::LiveOutputs;
use crate::fleet::{self, file::SegmentFile};
use crate::headers;
use crate::report::{self, RunReport};
use crate::run::{run_part, Completion, RunError, RunRequest, SegmentRun, SegmentStart};
use crate::scenario::Scenario;
use crate::segment::{self, WorkerLine};
use crate::target;
use crate::tls::TlsClient;

pub async fn main(args: RunArgs) -> Exit {
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return Exit::Usage;
        }
    };
    // A worker's secret header values come through its environment, never a file.
    if args.coordinated {
        if let Ok(secrets) = std::env::var(headers::SECRETS_ENV) {
            headers::restore_secrets(&mut scenario.users.headers, &secrets);
        }
    }
    args.tls.apply(&mut scenario.users.tls);
    if let Err(error) = TlsClient::new(&scenario.users.tls) {
        eprintln!("loadgen: --ca-file: {error}");
        return Exit::Usage;
    }
    match headers::with_flags(&scenario.users.headers, &args.headers)
        .and_then(|merged| headers::LoginHeaders::of(&merged).map(|_| merged))
    {
        Ok(merged) => scenario.users.headers = merged,
        Err(error) => {
            eprintln!("loadgen: --header {error}");
            return Exit::Usage;
        }
    }
    if let Err(error) = args.jwt.apply(&mut scenario.users) {
        eprintln!("loadgen: {error}");
        return Exit::Usage;
    }
    if let Err((field, reason)) = scenario.check_credentials() {
        eprintln!("loadgen: {field}: {reason}");
        return Exit::Usage;
    }
    if let Err(error) = target::check_all(&args.targets) {
        eprintln!("loadgen: --target {error}");
        return Exit::Usage;
    }
    if args.segment.is_some() {
        return segment_main(args, scenario).await;
    }
    let workers = match args.workers.or(scenario.workers) {
        Some(0) => {
            eprintln!("loadgen: --workers 0: at least 1");
            return Exit::Usage;
        }
        Some(n) if n > segment::MAX_SEGMENTS => {
            eprintln!("loadgen: --workers {n}: at most {}", segment::MAX_SEGMENTS);
            return Exit::Usage;
        }
        Some(n) => n,
        None => {
            let needed = fleet::workers_needed(&scenario);
            if needed > 1 {
                eprintln!(
                    "loadgen: {} connections at peak do not fit one process's open-file limit \
                     ({} here); running {needed} worker processes (--workers {needed})",
                    scenario.peak_connections(),
                    crate::nofile::available()
                );
            }
            needed
        }
    };
    if workers > 1 && scenario.thresholds.max_memory_growth.is_some() {
        eprintln!(
            "loadgen: [thresholds] max_memory_growth is judged on one process's memory, and this \
             run needs {workers} worker processes: run it in one process (fewer users, or \
             --workers 1 when they fit) or leave the limit out"
        );
        return Exit::Usage;
    }
    let dir = args.out.clone().unwrap_or_else(|| {
        report::default_dir(
            Path::new("reports"),
            scenario.name(),
            std::time::SystemTime::now(),
        )
    });
    let sources = &args.source_addresses;
    if let Some(twice) = sources
        .iter()
        .enumerate()
        .find_map(|(i, ip)| sources[..i].contains(ip).then_some(ip))
    {
        eprintln!("loadgen: --source-address {twice} is given twice");
        return Exit::Usage;
    }
    let mut outputs = match LiveOutputs::start(&args, scenario.name(), None).await {
        Ok(outputs) => outputs,
        Err(exit) => return exit,
    };
    // The machine's speed before the run, and after it (below).
    let calibration = match Started::measure(args.calibration.mode).await {
        Ok(started) => started,
        Err(error) => {
            eprintln!(
                "loadgen: machine calibration failed, the reports will not have one: {error}"
            );
            None
        }
    };
    let request = RunRequest {
        scenario,
        scenario_path: args.scenario.display().to_string(),
        targets: args.targets,
        quiet: args.quiet,
        segment: None,
        source_addresses: args.source_addresses,
        live: outputs.live.clone(),
    };
    let outcome = fleet::run(request, workers, &dir.join("segments")).await;
    // The last push carries the final figures, as summary.json will have them.
    outputs
        .run_ended(outcome.as_ref().ok().map(|(report, _)| report))
        .await;
    match outcome {
        Ok((mut report, completion)) => {
            report.calibration = match (calibration, &completion) {
                (Some(started), Completion::Complete) => Some(started.finish().await),
                (Some(started), _) => Some(started.unfinished()),
                (None, _) => None,
            };
            let exit = conclude(&report, &completion, &dir);
            outputs.finish(Some(&dir)).await;
            exit
        }
        Err(error) => {
            outputs.finish(None).await;
            run_error(error)
        }
    }
}

/// Exit and message of a run that could not start.
fn run_error(error: RunError) -> Exit {
    eprintln!("loadgen: {error}");
    match error {
        RunError::Limits(_)
        | RunError::Ports(_)
        | RunError::Credentials(_)
        | RunError::ProtocolWithoutTarget(_) => Exit::Usage,
        RunError::Unreachable(_) => Exit::CouldNotRun,
    }
}

/// Writes the reports to `dir`, prints the summary, judges the thresholds.
pub fn conclude(report: &RunReport, completion: &Completion, dir: &Path) -> Exit {
    let verdicts = report.verdicts();
    let written = report::write_all(dir, report, &verdicts);
    println!("{}", report::summary_table(report, &verdicts));
    match written {
        Ok(()) => println!("reports: {}", dir.display()),
        Err(error) => {
            eprintln!("loadgen: {error}");
            return Exit::CouldNotRun;
        }
    }
    if let Completion::Incomplete(why) = completion {
        eprintln!("loadgen: run incomplete: {why}");
        return Exit::CouldNotRun;
    }
    let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
    if failed.is_empty() {
        return Exit::Passed;
    }
    for verdict in failed {
        eprintln!(
            "loadgen: threshold {} failed: {} {} against a limit of {} {}",
            verdict.name, verdict.actual, verdict.unit, verdict.limit, verdict.unit
        );
    }
    Exit::Failed
}

/// One segment of a split run: its own reports and segment.json; thresholds are judged by
/// the merge, not here. Exit 0 when it ran to the end, 3 when not (or nothing written).
async fn segment_main(args: RunArgs, scenario: Scenario) -> Exit {
    let Some(segment) = args.segment else {
        return Exit::Usage;
    };
    let start = match (&args.start_at, args.coordinated) {
        (Some(text), false) => match segment::parse_start_at(text, segment::unix_now_ns()) {
            Ok(at) => SegmentStart::At(at),
            Err(error) => {
                eprintln!("loadgen: --start-at {error}");
                return Exit::Usage;
            }
        },
        (None, true) => SegmentStart::OnRelease,
        _ => {
            eprintln!(
                "loadgen: --segment needs --start-at: the wall-clock time every segment starts \
                 measuring at (e.g. --start-at +30s on one machine, or a UTC time such as \
                 2026-11-26T10:00:00Z on every host)"
            );
            return Exit::Usage;
        }
    };
    if args.targets.is_empty() && scenario.target.is_embedded() {
        eprintln!(
            "loadgen: --segment needs a target (--target URL or `target` in the scenario): \
             every segment must load the same server (--workers starts one for all)"
        );
        return Exit::Usage;
    }
    let run_id = match (args.run_id, start) {
        (Some(id), _) => id,
        (None, SegmentStart::At(at)) => SegmentRun::run_id_for(at),
        (None, SegmentStart::OnRelease) => SegmentRun::run_id_for(0),
    };
    let coordinated = start == SegmentStart::OnRelease;
    let mut outputs = match LiveOutputs::start(&args, scenario.name(), Some(segment)).await {
        Ok(outputs) => outputs,
        Err(exit) => return exit,
    };
    let request = RunRequest {
        scenario,
        scenario_path: args.scenario.display().to_string(),
        targets: args.targets,
        quiet: args.quiet || coordinated,
        segment: Some(SegmentRun {
            segment,
            start,
            run_id,
        }),
        source_addresses: args.source_addresses,
        live: outputs.live.clone(),
    };
    let output = match run_part(request).await {
        Ok(output) => output,
        Err(error) => {
            outputs.run_ended(None).await;
            outputs.finish(None).await;
            return run_error(error);
        }
    };
    outputs.run_ended(Some(&output.report)).await;
    let dir: PathBuf = args.out.unwrap_or_else(|| {
        let base = report::default_dir(
            Path::new("reports"),
            &output.report.setup.scenario_name,
            output.report.started_at,
        );
        PathBuf::from(format!(
            "{}-segment-{}-of-{}",
            base.display(),
            segment.index,
            segment.count
        ))
    });
    let verdicts = Vec::new();
    let written = report::write_all(&dir, &output.report, &verdicts)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            SegmentFile::of(&output)
                .write(&dir)
                .map_err(|e| e.to_string())
        });
    outputs
        .finish(written.is_ok().then_some(dir.as_path()))
        .await;
    let incomplete = match &output.completion {
        Completion::Complete => None,
        Completion::Incomplete(why) => Some(why.clone()),
    };
    if coordinated {
        if let Err(error) = &written {
            eprintln!("loadgen: segment {segment}: {error}");
            return Exit::CouldNotRun;
        }
        let done = WorkerLine::Done { incomplete };
        println!("{}", done.encode());
        return Exit::Passed;
    }
    println!("{}", report::summary_table(&output.report, &verdicts));
    if let Err(error) = written {
        eprintln!("loadgen: {error}");
        return Exit::CouldNotRun;
    }
    println!(
        "segment report: {} (merge with `loadgen merge`)",
        dir.display()
    );
    match incomplete {
        Some(why) => {
            eprintln!("loadgen: segment {segment} incomplete: {why}");
            Exit::CouldNotRun
        }
        None => Exit::Passed,
    }
}
