//! The files a run leaves behind, and the summary it prints.
//!
//! `reports/<scenario>-<UTC time>/` gets `summary.json`, `timeseries.csv`, `latency.hlog`
//! and `latency.hgrm`; `reports/README.md` documents every file, column and field. Each
//! file has its own module; this one decides where they go and writes them all.

pub mod clock;
mod hgrm;
mod hlog;
mod summary;
mod table;
mod timeseries;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::duration;
use crate::record::{Counters, IntervalRecord};
use crate::thresholds::{Thresholds, Verdict};

/// Every figure of the run, machine-readable.
pub const SUMMARY_JSON: &str = "summary.json";
/// One row per interval.
pub const TIMESERIES_CSV: &str = "timeseries.csv";
/// HdrHistogram interval log of the latency.
pub const LATENCY_HLOG: &str = "latency.hlog";
/// Percentile distribution of the whole run's latency.
pub const LATENCY_HGRM: &str = "latency.hgrm";

/// Longest scenario-name part of a report folder's name, in characters.
const MAX_NAME_CHARS: usize = 64;

/// Where the server under test ran.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ServerPlacement {
    /// Started by loadgen as a child process (`loadgen serve`), stopped at the end.
    EmbeddedChild {
        /// Process id of the child.
        pid: u32,
        /// The address it bound.
        address: String,
        /// The command line that started it.
        command: String,
    },
    /// A server the user pointed at with `target`.
    External,
}

/// Everything one run measured, as handed to the report writers.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The scenario's name (its file stem unless `name` is set).
    pub scenario_name: String,
    /// The scenario file as given on the command line.
    pub scenario_path: String,
    /// The scenario as run (after command-line overrides), as JSON.
    pub scenario: serde_json::Value,
    /// WebSocket URLs the users connected to.
    pub targets: Vec<String>,
    /// Where the server ran.
    pub server: ServerPlacement,
    /// `CARGO_PKG_VERSION` of loadgen.
    pub loadgen_version: String,
    /// `git rev-parse HEAD` of the working directory, if available.
    pub git_revision: Option<String>,
    /// Logical CPUs on this machine.
    pub cores: usize,
    /// Wall-clock start of the measured run (after all users connected).
    pub started_at: SystemTime,
    /// Wall-clock end.
    pub ended_at: SystemTime,
    /// Time spent connecting users before measurement started.
    pub ramp: Duration,
    /// One record per second of the measured run.
    pub intervals: Vec<IntervalRecord>,
    /// Sum of every interval's counters.
    pub totals: Counters,
    /// Every delivery latency of the run, in µs.
    pub latency: Histogram<u64>,
    /// The limits the run is judged by.
    pub thresholds: Thresholds,
    /// Why the run stopped early, if it did (the reports are then marked incomplete).
    pub incomplete: Option<String>,
    /// `chat_deliveries_out_total` scraped from the server at the end, when it could be.
    pub server_deliveries_out: Option<u64>,
}

/// Why the reports could not be written. Each variant names the path that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report folder could not be created.
    #[error("cannot create the report folder {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: io::Error },
    /// A file's content could not be produced.
    #[error("cannot encode {}: {source}", path.display())]
    Encode { path: PathBuf, source: EncodeError },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// What failed while producing a file's content.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("HdrHistogram log: {0}")]
    Hlog(#[from] hlog::HlogError),
    /// A capacity report's chart (its message names the chart).
    #[error(transparent)]
    Chart(#[from] crate::capacity::charts::ChartError),
}

/// `<reports_root>/<scenario>-<YYYYMMDDTHHMMSSZ>`, the start time in UTC. The scenario
/// name is made safe for a path: characters other than letters and digits (any script),
/// `-`, `_` and `.` become `_`, leading dots are dropped (no hidden or parent folders), it is cut to 64
/// characters, and an empty result reads `scenario`.
pub fn default_dir(reports_root: &Path, scenario_name: &str, started_at: SystemTime) -> PathBuf {
    reports_root.join(format!(
        "{}-{}",
        path_safe(scenario_name),
        clock::compact(started_at)
    ))
}

fn path_safe(name: &str) -> String {
    let replaced: String = name
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = replaced.trim_start_matches('.');
    if trimmed.is_empty() {
        "scenario".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Creates `dir` (and its parents) and writes every report file into it, overwriting files
/// of the same names. Stops at the first file that fails.
pub fn write_all(dir: &Path, report: &RunReport, verdicts: &[Verdict]) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    write_file(dir, SUMMARY_JSON, summary::summary_json(report, verdicts))?;
    write_file(
        dir,
        TIMESERIES_CSV,
        timeseries::timeseries_csv(&report.intervals),
    )?;
    write_file(
        dir,
        LATENCY_HLOG,
        hlog::interval_log(report.started_at, &report.intervals),
    )?;
    let hgrm = hgrm::percentile_distribution(&report.latency).into_bytes();
    write_file(dir, LATENCY_HGRM, Ok::<_, EncodeError>(hgrm))
}

/// Writes one file of a report folder, naming the path in any error.
pub(crate) fn write_file<E: Into<EncodeError>>(
    dir: &Path,
    name: &str,
    content: Result<Vec<u8>, E>,
) -> Result<(), ReportError> {
    let path = dir.join(name);
    let content = match content {
        Ok(content) => content,
        Err(error) => {
            return Err(ReportError::Encode {
                path,
                source: error.into(),
            })
        }
    };
    std::fs::write(&path, content).map_err(|source| ReportError::Write { path, source })
}

/// The human summary for stdout: figures, one PASS/FAIL line per threshold, and the result
/// (INCOMPLETE with the reason when the run stopped early).
pub fn summary_table(report: &RunReport, verdicts: &[Verdict]) -> String {
    table::summary_table(report, verdicts)
}

impl RunReport {
    /// Judges the run by its thresholds: the verdicts `loadgen run`, the gate and each
    /// capacity step all use.
    pub fn verdicts(&self) -> Vec<Verdict> {
        crate::thresholds::evaluate(
            &self.thresholds,
            &self.totals,
            &self.latency,
            measured_secs(self),
        )
    }
}

/// Seconds of measured load that rates are per (`measured_s` in `summary.json`).
///
/// For a complete run this is the total length of the scenario's phases, read from the
/// scenario as run: the time load was offered, not counting the wind-down after it. For an
/// incomplete run (or when the phases cannot be read) it is at most the time the interval
/// records cover, since the run stopped before its plan did.
pub fn measured_secs(report: &RunReport) -> f64 {
    let covered: f64 = report
        .intervals
        .iter()
        .map(|i| i.length_s)
        .filter(|s| s.is_finite() && *s > 0.0)
        .sum();
    match planned_secs(&report.scenario) {
        Some(planned) if planned > 0.0 && report.incomplete.is_none() => planned,
        Some(planned) if planned > 0.0 => planned.min(covered),
        _ => covered,
    }
}

/// The sum of `phase[].duration` in the scenario JSON, if every phase has a readable one.
fn planned_secs(scenario: &serde_json::Value) -> Option<f64> {
    let phases = scenario.get("phase")?.as_array()?;
    phases
        .iter()
        .map(|phase| {
            let text = phase.get("duration")?.as_str()?;
            duration::parse(text).ok().map(|d| d.as_secs_f64())
        })
        .sum()
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::record::new_histogram;

    /// A three-second run of ten users with every counter non-zero; it fails only its
    /// eviction limit.
    pub fn sample() -> RunReport {
        let started_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut intervals = Vec::new();
        let mut totals = Counters::default();
        let mut latency = new_histogram();
        for second in 0..3u64 {
            let mut h = new_histogram();
            for i in 0..100u64 {
                h.record(500 + second * 1000 + i * 37).unwrap();
            }
            let counters = Counters {
                sent: 10,
                delivered: 100,
                expected: 90,
                lost: second,
                unverified: 1,
                duplicates: 1,
                order_errors: 1,
                foreign: 1,
                self_deliveries: 1,
                connect_errors: 1,
                unexpected_disconnects: 1,
                relogins: 3,
                evictions_ok: if second == 0 { 5 } else { 0 },
                evictions_late: u64::from(second == 0),
                evictions_missing: u64::from(second == 1),
                evictions_zombie: u64::from(second == 2),
                evictions_ghost: u64::from(second == 2),
                churn_leaves: 2,
                connects: 4,
            };
            totals.add(&counters);
            latency.add(&h).unwrap();
            intervals.push(IntervalRecord {
                start_s: second as f64,
                length_s: 1.0,
                users_online: 10 - second / 2,
                counters,
                latency: h,
            });
        }
        // One interval without deliveries, as the wind-down often is.
        intervals.push(IntervalRecord {
            start_s: 3.0,
            length_s: 0.75,
            users_online: 9,
            counters: Counters::default(),
            latency: new_histogram(),
        });
        RunReport {
            scenario_name: "smoke".into(),
            scenario_path: "scenarios/smoke.toml".into(),
            scenario: serde_json::json!({
                "name": "smoke",
                "users": { "count": 10 },
                "phase": [{ "duration": "2s" }, { "duration": "1000ms" }],
            }),
            targets: vec!["ws://127.0.0.1:9000/".into()],
            server: ServerPlacement::EmbeddedChild {
                pid: 4242,
                address: "127.0.0.1:9000".into(),
                command: "loadgen serve --listen 127.0.0.1:0".into(),
            },
            loadgen_version: "0.1.0".into(),
            git_revision: Some("0123abcd".into()),
            cores: 2,
            started_at,
            ended_at: started_at + Duration::from_secs(4),
            ramp: Duration::from_millis(500),
            intervals,
            totals,
            latency,
            thresholds: Thresholds {
                p99: Some(duration::Span(Duration::from_millis(100))),
                min_delivery_ratio: 0.9,
                max_order_errors: 3,
                max_duplicates: 3,
                max_foreign: 3,
                max_self_deliveries: 3,
                max_connect_errors: 3,
                ..Thresholds::default()
            },
            incomplete: None,
            server_deliveries_out: Some(1000),
        }
    }

    /// A fresh folder under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "loadgen-report-{label}-{}-{nanos}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn writes_every_file_and_they_agree() {
        let report = sample();
        let verdicts = crate::thresholds::evaluate(
            &report.thresholds,
            &report.totals,
            &report.latency,
            measured_secs(&report),
        );
        let temp = TempDir::new("all");
        let dir = temp.0.join("nested").join("smoke-20231114T221320Z");
        write_all(&dir, &report, &verdicts).unwrap();

        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(SUMMARY_JSON)).unwrap()).unwrap();
        for (name, value) in timeseries::counter_columns(&report.totals) {
            assert_eq!(json["totals"][name].as_u64(), Some(value), "totals.{name}");
        }
        let json_count = json["latency_us"]["count"].as_u64().unwrap();
        assert_eq!(json_count, report.latency.len());
        assert_eq!(json_count, 300);
        assert_eq!(json["passed"], false);
        assert_eq!(json["thresholds"].as_array().unwrap().len(), verdicts.len());

        let log = std::fs::read(dir.join(LATENCY_HLOG)).unwrap();
        let (start_time, _, intervals) = hlog::tests::decode(&log);
        assert_eq!(start_time, Some(Duration::from_secs(1_700_000_000)));
        assert_eq!(intervals.len(), report.intervals.len());
        let mut merged = new_histogram();
        for interval in &intervals {
            merged.add(&interval.histogram).unwrap();
        }
        assert_eq!(merged.len(), json_count);
        assert_eq!(merged, report.latency);

        let csv_bytes = std::fs::read(dir.join(TIMESERIES_CSV)).unwrap();
        let mut csv = csv::Reader::from_reader(&csv_bytes[..]);
        let header: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, timeseries::header());
        let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), report.intervals.len());
        assert_eq!(&rows[3][0], "3.750");

        let hgrm = std::fs::read_to_string(dir.join(LATENCY_HGRM)).unwrap();
        let footer: Vec<&str> = hgrm.lines().rev().take(3).collect();
        assert!(footer[0].starts_with("#[Buckets = "), "{hgrm}");
        let total: u64 = footer[1]
            .trim_end_matches(']')
            .rsplit('=')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(total, json_count);
        let last_row: Vec<&str> = hgrm
            .lines()
            .rev()
            .nth(3)
            .unwrap()
            .split_whitespace()
            .collect();
        let last_value: f64 = last_row[0].parse().unwrap();
        assert_eq!(last_value, report.latency.max() as f64 / 1000.0);
        assert_eq!(last_row[1], "1.000000000000");
    }

    #[test]
    fn failure_names_the_file() {
        let report = sample();
        let temp = TempDir::new("blocked");
        // A folder where summary.json should go makes writing it fail.
        std::fs::create_dir_all(temp.0.join(SUMMARY_JSON)).unwrap();
        let error = write_all(&temp.0, &report, &[]).unwrap_err();
        assert!(matches!(error, ReportError::Write { .. }), "{error:?}");
        assert!(error.to_string().contains(SUMMARY_JSON), "{error}");
    }

    #[test]
    fn failure_to_create_the_folder_names_it() {
        let temp = TempDir::new("file");
        std::fs::create_dir_all(&temp.0).unwrap();
        let file = temp.0.join("not-a-folder");
        std::fs::write(&file, b"").unwrap();
        let error = write_all(&file.join("reports"), &sample(), &[]).unwrap_err();
        assert!(matches!(error, ReportError::CreateDir { .. }), "{error:?}");
        assert!(error.to_string().contains("not-a-folder"), "{error}");
    }

    #[test]
    fn default_dir_is_name_and_compact_utc_time() {
        let at = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(
            default_dir(Path::new("reports"), "smoke", at),
            Path::new("reports/smoke-20000229T000000Z")
        );
        assert_eq!(
            default_dir(Path::new("r"), "../etc/pass wd", at),
            Path::new("r/_etc_pass_wd-20000229T000000Z")
        );
        assert_eq!(
            default_dir(Path::new("r"), "压测 1", at),
            Path::new("r/压测_1-20000229T000000Z")
        );
        assert_eq!(
            default_dir(Path::new("r"), "..", at),
            Path::new("r/scenario-20000229T000000Z")
        );
        assert_eq!(
            default_dir(Path::new("r"), "", at),
            Path::new("r/scenario-20000229T000000Z")
        );
        let long = "x".repeat(500);
        let dir = default_dir(Path::new("r"), &long, at);
        assert_eq!(
            dir.file_name().unwrap().len(),
            MAX_NAME_CHARS + "-20000229T000000Z".len()
        );
    }

    #[test]
    fn measured_time_is_the_plan_unless_the_run_stopped_early() {
        let mut report = sample();
        assert_eq!(measured_secs(&report), 3.0);
        report.incomplete = Some("interrupted".into());
        report.intervals.truncate(1);
        assert_eq!(measured_secs(&report), 1.0);
        report.scenario = serde_json::json!({});
        report.incomplete = None;
        assert_eq!(measured_secs(&report), 1.0);
    }
}
