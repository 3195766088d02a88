//! The files a run leaves behind, and the summary it prints.
//!
//! `reports/<scenario>-<UTC time>/` gets `summary.json`, `timeseries.csv`, `latency.hlog`,
//! `latency.hgrm` and `report.html` (charts: [`picture`], [`charts`], [`html`]); `reports/README.md` documents every file, column and field. Each
//! file has its own module; this one decides where they go and writes them all.

pub mod charts;
mod hgrm;
pub mod hlog;
pub mod html;
pub mod live;
pub mod picture;
pub mod prometheus;
pub mod remote_write;
mod run_report;
mod summary;
mod table;
mod timeseries;

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use run_report::{
    measured_secs, LoadgenResources, RunReport, RunSetup, SegmentProblem, SegmentsInfo,
    ServerPlacement,
};

use crate::thresholds::ThresholdVerdict;

/// Every figure of the run, machine-readable.
pub const SUMMARY_JSON: &str = "summary.json";
/// One row per interval.
pub const TIMESERIES_CSV: &str = "timeseries.csv";
/// HdrHistogram interval log of the latency.
pub const LATENCY_HLOG: &str = "latency.hlog";
/// loadgen's and the server's memory and CPU through the run.
pub const RESOURCES_CSV: &str = "resources.csv";
/// Percentile distribution of the whole run's latency.
pub const LATENCY_HGRM: &str = "latency.hgrm";
/// The run as one self-contained page with charts.
pub const REPORT_HTML: &str = "report.html";

/// Longest scenario-name part of a report folder's name, in characters.
const MAX_NAME_CHARS: usize = 64;

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
    /// Any other content that could not be produced (a chart, a page); its message says
    /// what failed.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl EncodeError {
    /// Wraps any error that can be displayed, for a writer this module does not know.
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> EncodeError {
        EncodeError::Other(Box::new(error))
    }
}

/// `<reports_root>/<scenario>-<YYYYMMDDTHHMMSSZ>`, the start time in UTC. The scenario
/// name is made safe for a path: characters other than letters and digits (any script),
/// `-`, `_` and `.` become `_`, leading dots are dropped (no hidden or parent folders), it is cut to 64
/// characters, and an empty result reads `scenario`.
pub fn default_dir(reports_root: &Path, scenario_name: &str, started_at: SystemTime) -> PathBuf {
    reports_root.join(format!(
        "{}-{}",
        path_safe(scenario_name),
        crate::clock::compact(started_at)
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
pub fn write_all(
    dir: &Path,
    report: &RunReport,
    verdicts: &[ThresholdVerdict],
) -> Result<(), ReportError> {
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
        report.latency_log.write(report.started_at),
    )?;
    write_file(
        dir,
        RESOURCES_CSV,
        crate::memory::resources_csv(&report.resources_over_time),
    )?;
    let hgrm = hgrm::percentile_distribution(&report.latency).into_bytes();
    write_file(dir, LATENCY_HGRM, Ok::<_, EncodeError>(hgrm))?;
    let page = html::page(&picture::RunPicture::of(report, verdicts))
        .map(String::into_bytes)
        .map_err(EncodeError::other);
    write_file(dir, REPORT_HTML, page)
}

/// Writes one file of a report folder, naming the path in any error.
pub fn write_file<E: Into<EncodeError>>(
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
pub fn summary_table(report: &RunReport, verdicts: &[ThresholdVerdict]) -> String {
    table::summary_table(report, verdicts)
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use std::time::Duration;

    use crate::duration;
    use crate::record::{new_histogram, ClosedInterval, Counters};
    use crate::scratch::TempDir;
    use crate::thresholds::Thresholds;

    /// The closed intervals of [`sample`]: three seconds with every counter non-zero,
    /// then a wind-down without deliveries.
    pub fn sample_closed() -> Vec<ClosedInterval> {
        let mut intervals = Vec::new();
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
                ..Counters::default()
            };
            intervals.push(ClosedInterval {
                start_s: second as f64,
                length_s: 1.0,
                users_online: 10 - second / 2,
                counters,
                latency: h,
                connect: None,
            });
        }
        // One interval without deliveries, as the wind-down often is.
        intervals.push(ClosedInterval {
            start_s: 3.0,
            length_s: 0.75,
            users_online: 9,
            counters: Counters::default(),
            latency: new_histogram(),
            connect: None,
        });
        intervals
    }

    /// A three-second run of ten users with every counter non-zero; it fails only its
    /// eviction limit.
    pub fn sample() -> RunReport {
        let started_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let intervals = sample_closed();
        let mut totals = Counters::default();
        let mut latency = new_histogram();
        for interval in &intervals {
            totals.add(&interval.counters);
            latency.add(&interval.latency).unwrap();
        }
        RunReport {
            setup: RunSetup {
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
            },
            started_at,
            ended_at: started_at + Duration::from_secs(4),
            ramp: Duration::from_millis(500),
            intervals: intervals.iter().map(ClosedInterval::record).collect(),
            latency_log: {
                let log = hlog::LatencyLog::spooled().unwrap();
                for interval in &intervals {
                    log.append(interval);
                }
                log
            },
            totals,
            latency,
            connect: Default::default(),
            loadgen_lag: Default::default(),
            probes_sent: 2,
            sessions_tallied_early: 0,
            segments: None,
            loadgen_resources: LoadgenResources::default(),
            resources_over_time: Vec::new(),
            calibration: None,
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
        report.setup.scenario = serde_json::json!({});
        report.incomplete = None;
        assert_eq!(measured_secs(&report), 1.0);
    }

    #[test]
    fn a_run_loadgen_could_not_keep_up_with_fails_max_loadgen_lag_and_says_why() {
        let mut report = sample();
        report.thresholds.max_loadgen_lag = Some(crate::duration::Span(Duration::from_millis(5)));
        let meter = crate::lag::LagMeter::default();
        meter.record_send(1_000_000); // 1 ms
        report.loadgen_lag = meter.figures();
        let judged = |report: &RunReport| {
            report
                .verdicts()
                .into_iter()
                .find(|v| v.name == "max_loadgen_lag")
                .expect("a max_loadgen_lag verdict")
        };
        assert!(judged(&report).passed);
        for _ in 0..10 {
            meter.record_send(40_000_000); // 40 ms
        }
        report.loadgen_lag = meter.figures();
        let verdict = judged(&report);
        assert!(!verdict.passed, "{verdict:?}");
        let table = summary_table(&report, &report.verdicts());
        assert!(table.contains("loadgen was the bottleneck"), "{table}");
        let json: serde_json::Value = serde_json::from_slice(
            &summary::summary_json(&report, &report.verdicts()).expect("json"),
        )
        .expect("parses");
        assert_eq!(json["loadgen_saturated"], true);
        assert!(json["instrument_note"]
            .as_str()
            .is_some_and(|n| n.contains("bottleneck")));
    }
}
