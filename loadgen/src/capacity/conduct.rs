//! The search with real steps: every measurement the [`Procedure`] asks for is a plain run
//! of the file's scenario at that load ([`step::measure`]), against the server the caller
//! chose; each step's reports are written as it ends, and [`conduct`] returns the whole
//! [`CapacityReport`]. It prints nothing: what happens goes to the caller's sink as
//! [`SearchEvent`]s (`commands::capacity` prints them).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::conclusion::{self, Context};
use super::procedure::{Load, Next, Procedure, Settings, Verdict, ABOVE_KNEE};
use super::search::{Found, Stage};
use super::spec::{self, toml_of, CapacitySpec, Grow, Point};
use super::step::{self, ServerSource, StepError};
use super::{
    CapacityReport, PublishedCapacity, Reproduction, SearchOutcome, StepRecord, UsageSource,
};
use crate::calibration::{CalibrationMode, Started};
use crate::clock;
use crate::report;
use crate::resources;

/// The file that runs the published capacity with `loadgen run`.
pub const CAPACITY_TOML: &str = "capacity.toml";
/// The file that reproduces the knee with `loadgen run`.
pub const KNEE_TOML: &str = "knee.toml";
/// The file that reproduces 20% above the knee.
pub const ABOVE_KNEE_TOML: &str = "above-knee.toml";

/// What to search and where.
pub struct SearchRequest<'a> {
    pub spec: &'a CapacitySpec,
    /// The capacity file, for the reports.
    pub file: &'a Path,
    pub source: ServerSource,
    /// loadgen processes per step.
    pub workers: u32,
    /// The report folder (each step's reports go to `steps/NN-…/` in it).
    pub dir: PathBuf,
    pub calibration: CalibrationMode,
    pub started_at: SystemTime,
}

/// What the search tells its caller as it goes.
pub enum SearchEvent<'a> {
    /// The search starts: what it grows and the objective, in one line.
    Began(String),
    /// The machine was calibrated (start or end), in one line.
    Calibrated(String),
    /// Calibration could not run; the report will have none.
    CalibrationFailed(String),
    /// A step ended.
    Step(&'a StepRecord),
}

/// Why a search stopped before its end (its report is still complete as far as it went).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A step cannot run here (open files, ports, credentials).
    Usage,
    /// The server could not be reached or started, or Ctrl-C.
    CouldNotRun,
}

/// A finished (or stopped) search: its report, the loads to reproduce, and why it stopped
/// early, if it did.
pub struct Conducted {
    pub report: CapacityReport,
    pub capacity_point: Option<Point>,
    pub knee_point: Option<Point>,
    pub stopped: Option<(String, Stop)>,
}

/// Runs the search to its end (or until it must stop), writing each step's reports.
/// `Err` only when a step's report cannot be written.
pub async fn conduct(
    request: SearchRequest<'_>,
    mut sink: impl FnMut(SearchEvent<'_>),
) -> Result<Conducted, report::ReportError> {
    let spec = request.spec;
    sink(SearchEvent::Began(format!(
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
        objective(spec).join(", ")
    )));

    let mut procedure = Procedure::new(Settings {
        last_k: spec.last_k(),
        resolution: spec.resolution(),
        bisections: spec.capacity.bisections,
        confirm: spec.capacity.confirm,
        margin: spec.capacity.margin,
        reproduce: spec.capacity.reproduce,
    });
    let calibration_start = match Started::measure(request.calibration).await {
        Ok(started) => started,
        Err(error) => {
            sink(SearchEvent::CalibrationFailed(error.to_string()));
            None
        }
    };
    if let Some(started) = &calibration_start {
        sink(SearchEvent::Calibrated(format!(
            "calibration at the start: loopback send {:.2} µs, CPU workload {:.0} ms",
            started.start().loopback_send_us,
            started.start().cpu_workload_ms
        )));
    }
    // Each step's position on the path and row; a reproduction above the knee and an
    // interrupted step have position NaN (neither is a search measurement).
    let mut steps: Vec<(f64, StepRecord)> = Vec::new();
    let mut reproduced: Vec<(Load, StepRecord)> = Vec::new();
    let mut stopped: Option<(String, Stop)> = None;
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    while let Some(next) = procedure.next_measurement() {
        if !steps.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(spec.capacity.pause.0) => {}
                _ = &mut interrupt => {
                    stopped = Some((crate::run::INTERRUPTED.into(), Stop::CouldNotRun));
                    break;
                }
            }
        }
        let (k, stage, point) = match next {
            Next::Search { k, stage } => (k, stage, spec.point(k)),
            Next::Reproduce { load, .. } => {
                let Some((k, point)) = reproduction_point(spec, &procedure, load) else {
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
        let path = format!("{} (step {number})", request.file.display());
        let step_dir = request.dir.join("steps").join(format!(
            "{number:02}-{}u-{}mps",
            point.users,
            spec::trim_rate(point.rate)
        ));
        let segments_dir = step_dir.join("segments");
        let measured = match step::measure(
            &request.source,
            scenario,
            &path,
            true,
            request.workers,
            &segments_dir,
        )
        .await
        {
            Ok(measured) => measured,
            Err(
                error @ (StepError::Limits(_) | StepError::Ports(_) | StepError::Credentials(_)),
            ) => {
                stopped = Some((error.to_string(), Stop::Usage));
                break;
            }
            Err(StepError::Unreachable(why)) => {
                stopped = Some((why, Stop::CouldNotRun));
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
        report::write_all(&step_dir, &measured.report, &measured.report.verdicts())?;
        sink(SearchEvent::Step(&record));
        // An interrupted step is shown but not judged: it says nothing about the load.
        if measured.interrupted {
            steps.push((f64::NAN, record));
            stopped = Some((crate::run::INTERRUPTED.into(), Stop::CouldNotRun));
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
        sink(SearchEvent::Calibrated(format!(
            "calibration: {}",
            calibration.line()
        )));
    }

    Ok(assemble(
        &request,
        &procedure,
        Measured {
            steps,
            reproduced,
            stopped,
            calibration,
        },
    ))
}

/// The objective as text: every threshold of the file, latency ones first.
pub fn objective(spec: &CapacitySpec) -> Vec<String> {
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

/// What the search measured, for [`assemble`].
struct Measured {
    /// Each step's position on the path (NaN off it) and row.
    steps: Vec<(f64, StepRecord)>,
    /// The reproduction runs, by load.
    reproduced: Vec<(Load, StepRecord)>,
    stopped: Option<(String, Stop)>,
    calibration: Option<crate::calibration::Calibration>,
}

/// The report of a search from what it measured: the knee, the published capacity, the
/// reproduction, the conclusion in words.
fn assemble(request: &SearchRequest<'_>, procedure: &Procedure, measured: Measured) -> Conducted {
    let spec = request.spec;
    let Measured {
        steps,
        reproduced,
        stopped,
        calibration,
    } = measured;
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
            objective_has_latency: objective_has_latency(spec),
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
    let probe_source = match &request.source {
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
        path: request.file.display().to_string(),
        description: spec.description.clone(),
        grow: format!("{:?}", spec.capacity.grow).to_lowercase(),
        level_unit: spec.level_unit(),
        objective: objective(spec),
        p99_limit_ms: spec.thresholds.p99.map(|p| p.0.as_secs_f64() * 1000.0),
        server: request.source.describe(),
        server_usage_source,
        cores,
        memory_bytes,
        warmup_s: spec.capacity.warmup.0.as_secs_f64(),
        measure_s: spec.capacity.measure.0.as_secs_f64(),
        started_at: clock::rfc3339(request.started_at),
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
    let knee_point = knee.map(|i| spec.point(steps[i].0));
    let capacity_point = capacity_k.map(|k| spec.point(k));
    Conducted {
        report: capacity,
        capacity_point,
        knee_point,
        stopped,
    }
}
/// Writes `capacity.toml` (when there is a published capacity), `knee.toml` and
/// `above-knee.toml` (when there is a knee).
pub fn write_reproductions(
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
