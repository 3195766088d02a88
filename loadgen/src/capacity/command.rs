//! The body of `loadgen capacity`: read the file, drive the [`KneeSearch`] with real steps,
//! then conclude and write the report.
//!
//! Each step also leaves its own run reports (`steps/NN-…/`), so a surprising row can be
//! looked at in full, and the search writes `capacity.toml`, `knee.toml` and
//! `above-knee.toml`: plain scenarios that run the published capacity, the knee and 20%
//! above it with `loadgen run`. The machine is calibrated before the first step and after
//! the last ([`crate::calibration`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::conclusion::{self, Context};
use super::procedure::{Load, Next, Procedure, Settings, Verdict, ABOVE_KNEE};
use super::search::{Found, Stage};
use super::spec::{toml_of, CapacitySpec, Grow, Point};
use super::step::{self, ServerSource, StepError};
use super::{
    CapacityReport, PublishedCapacity, Reproduction, SearchOutcome, StepRecord, UsageSource,
};
use crate::calibration::Started;
use crate::cli::CapacityArgs;
use crate::exit::Exit;
use crate::report::{self, clock};
use crate::resources;
use crate::server_process::Launch;
use crate::target::{self, Target};

/// The file that runs the published capacity with `loadgen run`.
pub const CAPACITY_TOML: &str = "capacity.toml";
/// The file that reproduces the knee with `loadgen run`.
pub const KNEE_TOML: &str = "knee.toml";
/// The file that reproduces 20% above the knee.
pub const ABOVE_KNEE_TOML: &str = "above-knee.toml";

pub async fn main(args: CapacityArgs) -> Exit {
    if let Some(pair) = &args.compare {
        return super::compare::main(pair, args.tolerance);
    }
    let Some(file) = args.file.clone() else {
        eprintln!("loadgen: capacity needs a capacity file (or --compare A B)");
        return Exit::Usage;
    };
    let mut spec = match CapacitySpec::load(&file) {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("loadgen: {error}");
            return Exit::Usage;
        }
    };
    if let Some(margin) = args.margin {
        spec.capacity.margin = margin;
    }
    if let Some(reproduce) = args.reproduce {
        spec.capacity.reproduce = reproduce;
    }
    if let Err(invalid) = spec.check() {
        let flag = match invalid.field.as_str() {
            "capacity.margin" => "--margin",
            "capacity.reproduce" => "--reproduce",
            other => other,
        };
        eprintln!("loadgen: {flag}: {}", invalid.reason);
        return Exit::Usage;
    }
    if let Err(error) = target::check_all(&args.targets) {
        eprintln!("loadgen: --target {error}");
        return Exit::Usage;
    }
    if !args.targets.is_empty() {
        spec.target = crate::scenario::Targets::Many(args.targets.clone());
    }
    if args.wss && args.server.is_none() {
        eprintln!("loadgen: --wss is for a server started by --server (a URL says wss:// itself)");
        return Exit::Usage;
    }
    args.tls.apply(&mut spec.tls);
    let mut logins = crate::scenario::Users::nobody();
    if let Err(error) = args.jwt.apply(&mut logins) {
        eprintln!("loadgen: {error}");
        return Exit::Usage;
    }
    if let Err(error) = logins.credentials() {
        eprintln!("loadgen: {error}");
        return Exit::Usage;
    }
    spec.jwt = logins.jwt;
    spec.token_in = logins.token_in;
    if let Err(error) = crate::tls::TlsClient::new(&spec.tls) {
        eprintln!("loadgen: --ca-file: {error}");
        return Exit::Usage;
    }
    let urls = spec.target.urls();
    let source = match (&args.server, urls.is_empty()) {
        (Some(_), false) => {
            eprintln!("loadgen: --server starts the server itself; leave out --target and the file's `target`");
            return Exit::Usage;
        }
        (Some(command), true) if !command.contains("{addr}") => {
            eprintln!("loadgen: --server needs {{addr}} where the listen address goes");
            return Exit::Usage;
        }
        (Some(command), true) => ServerSource::Fresh(Launch::Command(command.clone()), args.wss),
        (None, true) => {
            if args.server_pid.is_some() {
                eprintln!("loadgen: --server-pid is for a server given by --target or `target`");
                return Exit::Usage;
            }
            ServerSource::Fresh(Launch::Embedded(spec.jwt.clone()), false)
        }
        (None, false) => {
            let addr = match resolve(&urls[0]).await {
                Some(addr) => addr,
                None => {
                    eprintln!("loadgen: cannot resolve {}", urls[0]);
                    return Exit::CouldNotRun;
                }
            };
            if let Some(pid) = args.server_pid {
                if resources::process(pid).is_none() {
                    eprintln!("loadgen: --server-pid {pid}: no such process in /proc");
                    return Exit::Usage;
                }
            }
            ServerSource::External {
                urls,
                addr,
                pid: args.server_pid,
            }
        }
    };
    // The largest step must fit this process's open-file limit: say so now, not after
    // ten minutes of steps.
    let workers = args.workers.unwrap_or(1);
    let largest = spec.scenario_at(spec.last_k());
    let largest_peak = if workers > 1 {
        let widest = crate::segment::Segment {
            index: 0,
            count: workers,
        };
        crate::run::segment_peak_connections(&largest, widest)
    } else {
        largest.peak_connections()
    };
    if let Err(error) = crate::nofile::ensure(largest_peak) {
        eprintln!(
            "loadgen: the limit of the search ({}) cannot run here: {error}",
            spec.describe(spec.point(spec.last_k()))
        );
        return Exit::Usage;
    }

    let started_at = SystemTime::now();
    let dir = args.out.clone().unwrap_or_else(|| {
        let name = if spec.name() == "capacity" {
            "capacity".to_string()
        } else {
            format!("capacity-{}", spec.name())
        };
        report::default_dir(Path::new("reports"), &name, started_at)
    });
    let say = |line: String| {
        if !args.quiet {
            println!("{line}");
        }
    };
    say(format!(
        "capacity: {} — grow {}, from {} ({} warm-up + {} measured per step), objective: {}",
        spec.name(),
        match spec.capacity.grow {
            Grow::Users => "users",
            Grow::Rate => "the message rate",
            Grow::Both => "users and the message rate together",
        },
        spec.describe(spec.point(0.0)),
        spec.capacity.warmup,
        spec.capacity.measure,
        objective(&spec).join(", ")
    ));

    let mut procedure = Procedure::new(Settings {
        last_k: spec.last_k(),
        resolution: spec.resolution(),
        bisections: spec.capacity.bisections,
        confirm: spec.capacity.confirm,
        margin: spec.capacity.margin,
        reproduce: spec.capacity.reproduce,
    });
    let calibration_start = match Started::measure(args.calibration.mode).await {
        Ok(started) => started,
        Err(error) => {
            eprintln!("loadgen: machine calibration failed, the report will not have one: {error}");
            None
        }
    };
    if let Some(started) = &calibration_start {
        say(format!(
            "calibration at the start: loopback send {:.2} µs, CPU workload {:.0} ms",
            started.start().loopback_send_us,
            started.start().cpu_workload_ms
        ));
    }
    // Each step's position on the path and row; a reproduction above the knee and an
    // interrupted step have position NaN (neither is a search measurement).
    let mut steps: Vec<(f64, StepRecord)> = Vec::new();
    let mut reproduced: Vec<(Load, StepRecord)> = Vec::new();
    let mut stopped: Option<(String, Exit)> = None;
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    while let Some(next) = procedure.next_measurement() {
        if !steps.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(spec.capacity.pause.0) => {}
                _ = &mut interrupt => {
                    stopped = Some((crate::run::INTERRUPTED.into(), Exit::CouldNotRun));
                    break;
                }
            }
        }
        let (k, stage, point) = match next {
            Next::Search { k, stage } => (k, stage, spec.point(k)),
            Next::Reproduce { load, .. } => {
                let Some((k, point)) = reproduction_point(&spec, &procedure, load) else {
                    // Not reachable: the procedure plans only loads it has found.
                    procedure.record(Verdict {
                        met: false,
                        latency_share: 0.0,
                    });
                    continue;
                };
                (k, Stage::Reproduce, point)
            }
        };
        let number = steps.len() + 1;
        let scenario = spec.scenario_for(point);
        let path = format!("{} (step {number})", file.display());
        let step_dir = dir.join("steps").join(format!(
            "{number:02}-{}u-{}mps",
            point.users,
            super::spec::trim_rate(point.rate)
        ));
        let segments_dir = step_dir.join("segments");
        let measured = match step::measure(&source, scenario, &path, true, workers, &segments_dir)
            .await
        {
            Ok(measured) => measured,
            Err(
                error @ (StepError::Limits(_) | StepError::Ports(_) | StepError::Credentials(_)),
            ) => {
                stopped = Some((error.to_string(), Exit::Usage));
                break;
            }
            Err(StepError::Unreachable(why)) => {
                stopped = Some((why, Exit::CouldNotRun));
                break;
            }
        };
        let mut record = measured.record;
        record.number = number;
        record.stage = stage.as_str();
        record.level = match spec.capacity.grow {
            Grow::Rate => point.rate,
            Grow::Users | Grow::Both => f64::from(point.users),
        };
        if let Err(error) =
            report::write_all(&step_dir, &measured.report, &measured.report.verdicts())
        {
            eprintln!("loadgen: {error}");
            return Exit::CouldNotRun;
        }
        say(progress_line(&record));
        // An interrupted step is shown but not judged: it says nothing about the load.
        if measured.interrupted {
            steps.push((f64::NAN, record));
            stopped = Some((crate::run::INTERRUPTED.into(), Exit::CouldNotRun));
            break;
        }
        procedure.record(Verdict {
            met: record.met,
            latency_share: record.latency_share,
        });
        match next {
            Next::Search { .. } => steps.push((k, record)),
            Next::Reproduce { load, .. } => {
                reproduced.push((load, record.clone()));
                steps.push((f64::NAN, record));
            }
        }
    }
    let calibration = match calibration_start {
        Some(started) if stopped.is_none() => Some(started.finish().await),
        Some(started) => Some(started.unfinished()),
        None => None,
    };
    if let Some(calibration) = &calibration {
        say(format!("calibration: {}", calibration.line()));
    }

    let found = procedure
        .knee()
        .unwrap_or(Found::FailedAtStart { bad: 0.0 });
    let outcome = match found {
        Found::Knee { good, bad } => SearchOutcome::Knee {
            good: spec.level(good),
            bad: spec.level(bad),
        },
        Found::HeldToLimit { good } => SearchOutcome::HeldToLimit {
            good: spec.level(good),
        },
        Found::FailedAtStart { bad } => SearchOutcome::FailedAtStart {
            bad: spec.level(bad),
        },
    };
    let (good_k, bad_k) = match found {
        Found::Knee { good, bad } => (Some(good), Some(bad)),
        Found::HeldToLimit { good } => (Some(good), None),
        Found::FailedAtStart { bad } => (None, Some(bad)),
    };
    // The step that stands for a position: its last search measurement.
    let index_of = |k: Option<f64>| {
        let k = k?;
        steps.iter().rposition(|(at, _)| (*at - k).abs() < 1e-9)
    };
    let (knee, bad) = if steps.is_empty() {
        (None, None)
    } else {
        (index_of(good_k), index_of(bad_k))
    };
    let capacity_k = procedure.capacity_k();
    let capacity_index = index_of(capacity_k);
    let records: Vec<StepRecord> = steps.iter().map(|(_, r)| r.clone()).collect();
    let published = capacity_k.and_then(|k| {
        let runs: Vec<&StepRecord> = steps
            .iter()
            .filter(|(at, _)| (*at - k).abs() < 1e-9)
            .map(|(_, r)| r)
            .filter(|r| r.stage != Stage::Reproduce.as_str())
            .collect();
        let first = runs.first()?;
        Some(PublishedCapacity {
            level: first.level,
            users: first.users,
            rate: first.rate,
            offered_deliveries_per_sec: first.offered_deliveries_per_sec,
            runs: runs.len(),
            worst_p99_ms: runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
            worst_latency_share: runs.iter().map(|r| r.latency_share).fold(0.0, f64::max),
        })
    });
    let reproduction = reproduction_rows(&reproduced, spec.capacity.margin);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_bytes = resources::memory_total();
    let knee_conclusion = conclusion::conclude(
        &records,
        &outcome,
        knee,
        bad,
        &Context {
            level_unit: spec.level_unit(),
            cores,
            memory_bytes,
            cut_short: stopped.is_some(),
        },
    );
    let mut conclusion = conclusion::publish(
        knee_conclusion,
        &conclusion::Publication {
            capacity: published.as_ref(),
            knee: knee.and_then(|i| records.get(i)),
            margin: spec.capacity.margin,
            objective_has_latency: objective_has_latency(&spec),
            reproduction: &reproduction,
            calibration: calibration.as_ref(),
            capacity_is_knee: procedure.capacity_is_knee(),
            cut_short: stopped.is_some(),
        },
    );
    if let Some((why, _)) = &stopped {
        conclusion.details.insert(
            0,
            format!("The search stopped early: {why}. The figures below are what was measured before that."),
        );
    }
    let probe_source = match &source {
        ServerSource::External { pid: None, .. } => UsageSource::Metrics,
        _ => UsageSource::Proc,
    };
    let server_usage_source = if records.iter().any(|r| r.server.cpu_percent.is_some()) {
        probe_source
    } else {
        UsageSource::Unknown
    };
    let capacity = CapacityReport {
        name: spec.name().to_string(),
        path: file.display().to_string(),
        description: spec.description.clone(),
        grow: format!("{:?}", spec.capacity.grow).to_lowercase(),
        level_unit: spec.level_unit(),
        objective: objective(&spec),
        p99_limit_ms: spec.thresholds.p99.map(|p| p.0.as_secs_f64() * 1000.0),
        server: source.describe(),
        server_usage_source,
        cores,
        memory_bytes,
        warmup_s: spec.capacity.warmup.0.as_secs_f64(),
        measure_s: spec.capacity.measure.0.as_secs_f64(),
        started_at: clock::rfc3339(started_at),
        ended_at: clock::rfc3339(SystemTime::now()),
        loadgen_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: crate::run::git_revision(),
        knee_step: knee.and_then(|i| records.get(i)).map(|r| r.number),
        first_bad_step: bad.and_then(|i| records.get(i)).map(|r| r.number),
        incomplete: stopped.as_ref().map(|(why, _)| why.clone()),
        margin: spec.capacity.margin,
        capacity_step: capacity_index
            .and_then(|i| records.get(i))
            .map(|r| r.number),
        capacity: published,
        reproduction,
        calibration,
        steps: records,
        outcome,
        conclusion,
    };
    if let Err(error) = super::report::write_all(&dir, &capacity) {
        eprintln!("loadgen: {error}");
        return Exit::CouldNotRun;
    }
    let knee_point = knee.map(|i| spec.point(steps[i].0));
    let capacity_point = capacity_k.map(|k| spec.point(k));
    if let Err(error) = write_reproductions(&dir, &file, &spec, capacity_point, knee_point, workers)
    {
        eprintln!("loadgen: {error}");
        return Exit::CouldNotRun;
    }
    println!("{}", capacity.conclusion.headline);
    for line in &capacity.conclusion.details {
        println!("  {line}");
    }
    println!("report: {}", dir.join(super::report::REPORT_HTML).display());
    if capacity_point.is_some() {
        println!(
            "plan with: loadgen run {}",
            dir.join(CAPACITY_TOML).display()
        );
    }
    if knee_point.is_some() {
        println!(
            "knee: loadgen run {} (and {})",
            dir.join(KNEE_TOML).display(),
            dir.join(ABOVE_KNEE_TOML).display()
        );
    }
    if let Some((why, code)) = stopped {
        eprintln!("loadgen: capacity search incomplete: {why}");
        return code;
    }
    if let Some(expected) = args.expect_at_least {
        let sustained = capacity.capacity.as_ref().map_or(0.0, |c| c.level);
        if sustained < expected {
            eprintln!(
                "loadgen: the published capacity {sustained} {} is below --expect-at-least {expected}",
                spec.level_unit()
            );
            return Exit::Failed;
        }
    }
    Exit::Passed
}

/// One line per step while the search runs.
fn progress_line(r: &StepRecord) -> String {
    let cpu = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}%"));
    format!(
        "{:>2} {:<14} {:>7} users {:>7} msg/s  deliveries/s {:>9.0} of {:>9.0}  p50 {:>7.2} ms  p99 {:>8.2} ms  lost {}  errors {}  CPU server {} loadgen {}  {}",
        r.number,
        r.stage,
        r.users,
        super::spec::trim_rate(r.rate),
        r.achieved_deliveries_per_sec,
        r.offered_deliveries_per_sec,
        r.p50_ms,
        r.p99_ms,
        r.lost,
        r.errors,
        cpu(r.server.cpu_percent),
        cpu(r.loadgen.cpu_percent),
        if r.met {
            "met".to_string()
        } else {
            format!("MISSED: {}", r.failures.join("; "))
        }
    )
}

/// The objective as text: every threshold of the file, latency ones first.
fn objective(spec: &CapacitySpec) -> Vec<String> {
    let t = &spec.thresholds;
    let mut out = Vec::new();
    for (name, limit) in [
        ("p50", t.p50),
        ("p90", t.p90),
        ("p99", t.p99),
        ("p99.9", t.p999),
        ("max", t.max),
    ] {
        if let Some(limit) = limit {
            out.push(format!("{name} <= {limit}"));
        }
    }
    out.push(format!("delivery ratio >= {}", t.min_delivery_ratio));
    if let Some(rate) = t.min_deliveries_per_sec {
        out.push(format!("deliveries/s >= {rate}"));
    }
    out.push(format!(
        "eviction failures <= {}, connect errors <= {}, order errors <= {}, duplicates <= {}",
        t.max_eviction_failures, t.max_connect_errors, t.max_order_errors, t.max_duplicates
    ));
    out
}

/// Writes `capacity.toml` (when there is a published capacity), `knee.toml` and
/// `above-knee.toml` (when there is a knee).
fn write_reproductions(
    dir: &Path,
    file: &Path,
    spec: &CapacitySpec,
    capacity: Option<Point>,
    knee: Option<Point>,
    workers: u32,
) -> Result<(), report::ReportError> {
    let mut files = Vec::new();
    if let Some(capacity) = capacity {
        files.push((
            CAPACITY_TOML,
            capacity,
            format!(
                "the published capacity (every run's latency at most {:.0}% of its limit)",
                spec.capacity.margin * 100.0
            ),
        ));
    }
    if let Some(knee) = knee {
        files.push((KNEE_TOML, knee, "the knee".to_string()));
        files.push((
            ABOVE_KNEE_TOML,
            spec.scaled(knee, ABOVE_KNEE),
            format!("{:.0}% above the knee", (ABOVE_KNEE - 1.0) * 100.0),
        ));
    }
    for (name, point, what) in files {
        let path: PathBuf = dir.join(name);
        let mut scenario = spec.scenario_for(point);
        scenario.workers = (workers > 1).then_some(workers);
        let text = format!(
            "# Written by `loadgen capacity {}`: {what}, {}.\n# Reproduce with: loadgen run {}\n\n{}",
            file.display(),
            spec.describe(point),
            path.display(),
            toml_of(&scenario)
        );
        std::fs::write(&path, text)
            .map_err(|source| report::ReportError::Write { path, source })?;
    }
    Ok(())
}

/// The position (NaN when off the path) and load of a reproduced load.
fn reproduction_point(
    spec: &CapacitySpec,
    procedure: &Procedure,
    load: Load,
) -> Option<(f64, Point)> {
    match load {
        Load::Capacity => procedure.capacity_k().map(|k| (k, spec.point(k))),
        Load::Knee => procedure.knee_k().map(|k| (k, spec.point(k))),
        Load::AboveKnee => procedure
            .knee_k()
            .map(|k| (f64::NAN, spec.scaled(spec.point(k), ABOVE_KNEE))),
    }
}

/// One row per reproduced load, in the order capacity, knee, above-knee.
fn reproduction_rows(reproduced: &[(Load, StepRecord)], margin: f64) -> Vec<Reproduction> {
    let mut rows = Vec::new();
    for load in [Load::Capacity, Load::Knee, Load::AboveKnee] {
        let runs: Vec<&StepRecord> = reproduced
            .iter()
            .filter(|(l, _)| *l == load)
            .map(|(_, r)| r)
            .collect();
        let Some(first) = runs.first() else {
            continue;
        };
        let p99 = runs.iter().map(|r| r.p99_ms);
        rows.push(Reproduction {
            load,
            level: first.level,
            users: first.users,
            rate: first.rate,
            runs: runs.len(),
            met: runs.iter().filter(|r| r.met).count(),
            within_margin: runs
                .iter()
                .filter(|r| r.met && r.latency_share <= margin)
                .count(),
            p99_min_ms: p99.clone().fold(f64::INFINITY, f64::min),
            p99_max_ms: p99.fold(0.0, f64::max),
            steps: runs.iter().map(|r| r.number).collect(),
        });
    }
    rows
}

/// Whether the objective has a latency threshold (the margin applies to those only).
fn objective_has_latency(spec: &CapacitySpec) -> bool {
    let t = &spec.thresholds;
    t.p50.is_some() || t.p90.is_some() || t.p99.is_some() || t.p999.is_some() || t.max.is_some()
}

async fn resolve(url: &str) -> Option<std::net::SocketAddr> {
    let target: Target = url.parse().ok()?;
    tokio::net::lookup_host(target.authority())
        .await
        .ok()?
        .next()
}
