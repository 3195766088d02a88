//! `summary.json`: every figure of a run in one machine-readable file.
//!
//! This is what CI jobs and comparison scripts read: the scenario as run, where and when it
//! ran, the totals, the derived rates, the latency percentiles, and each threshold's
//! verdict. The field list is a struct so that the file's shape is visible in one place
//! (and documented, field by field, in `reports/README.md`).

use hdrhistogram::Histogram;
use serde::Serialize;

use super::run_report::{
    measured_secs, LoadgenResources, RunReport, SegmentsInfo, ServerPlacement,
};
use crate::clock;
use crate::lag::LoadgenLag;
use crate::record::Counters;
use crate::thresholds::{deliveries_per_sec, delivery_ratio, per_sec, ThresholdVerdict};

/// The top-level object of `summary.json`.
#[derive(Serialize)]
struct Summary<'a> {
    scenario_name: &'a str,
    scenario_path: &'a str,
    /// The scenario as run, after command-line overrides.
    scenario: &'a serde_json::Value,
    targets: &'a [String],
    server: &'a ServerPlacement,
    loadgen_version: &'a str,
    git_revision: Option<&'a str>,
    cores: usize,
    /// RFC 3339 UTC, to the second.
    started_at: String,
    ended_at: String,
    ramp_s: f64,
    measured_s: f64,
    complete: bool,
    incomplete_reason: Option<&'a str>,
    totals: &'a Counters,
    /// Top-level fields, grouped here only in the code.
    #[serde(flatten)]
    derived: Derived,
    latency_us: Latency,
    /// Every login's phase times, the ramp's included, µs: TCP connect, TLS handshake
    /// (count 0 for `ws://`), WebSocket upgrade.
    connect_us: ConnectPhases,
    server_deliveries_out: Option<u64>,
    /// loadgen's own lag (µs): its sends against their schedule, its timer against its
    /// period (`crate::lag`).
    loadgen_lag_us: LoadgenLag,
    /// Whether loadgen could not keep up with its own plan (a lag p99 above 10 ms).
    loadgen_saturated: bool,
    /// When it could not: that it was the bottleneck, and which findings may come from it.
    instrument_note: Option<String>,
    /// Relogin probes broadcast; each verifies every relogin that waited for it.
    probes_sent: u64,
    /// Finished sessions whose loss was tallied while the run went on (their ledgers let
    /// go, so memory does not grow with relogins and churn).
    sessions_tallied_early: u64,
    /// loadgen's own CPU and peak memory over the run (all its processes).
    loadgen_resources: &'a LoadgenResources,
    /// The machine's speed at the start and the end, and the drift (null: not taken).
    calibration: Option<&'a crate::calibration::Calibration>,
    /// loadgen's CPU per delivery received, µs (`None`: not measurable).
    loadgen_cpu_us_per_delivery: Option<f64>,
    /// How loadgen's and the server's memory grew after the settling time (the
    /// threshold's, or 5 minutes): empty for a shorter run. The samples are in
    /// `resources.csv`.
    memory_growth: Vec<crate::memory::Growth>,
    /// A segment of a split run, or the merge of one (absent for one process).
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<&'a SegmentsInfo>,
    thresholds: &'a [ThresholdVerdict],
    /// Every verdict passed (says nothing about completeness: see `complete`).
    passed: bool,
}

/// Figures computed from the totals.
#[derive(Serialize)]
struct Derived {
    delivery_ratio: f64,
    deliveries_per_sec: f64,
    sent_per_sec: f64,
    eviction_failures: u64,
}

/// The whole run's latency, in µs.
#[derive(Serialize)]
struct Latency {
    count: u64,
    min: u64,
    mean: f64,
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                count: 0,
                min: 0,
                mean: 0.0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
            };
        }
        Latency {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Login phase times, µs.
#[derive(Serialize)]
struct ConnectPhases {
    tcp: Latency,
    tls: Latency,
    upgrade: Latency,
    /// Minting each login's token, loadgen's side of authentication.
    mint: Latency,
}

/// Where memory growth is measured from: the threshold's settling time, or 5 minutes.
pub fn settle_s(report: &RunReport) -> f64 {
    report
        .thresholds
        .max_memory_growth
        .as_ref()
        .map_or(crate::memory::SETTLE, |limit| limit.settle.0)
        .as_secs_f64()
}

/// The pretty-printed JSON text, newline-terminated.
pub fn summary_json(
    report: &RunReport,
    verdicts: &[ThresholdVerdict],
) -> Result<Vec<u8>, serde_json::Error> {
    let measured_s = measured_secs(report);
    let totals = &report.totals;
    let summary = Summary {
        scenario_name: &report.setup.scenario_name,
        scenario_path: &report.setup.scenario_path,
        scenario: &report.setup.scenario,
        targets: &report.setup.targets,
        server: &report.setup.server,
        loadgen_version: &report.setup.loadgen_version,
        git_revision: report.setup.git_revision.as_deref(),
        cores: report.setup.cores,
        started_at: clock::rfc3339(report.started_at),
        ended_at: clock::rfc3339(report.ended_at),
        ramp_s: report.ramp.as_secs_f64(),
        measured_s,
        complete: report.incomplete.is_none(),
        incomplete_reason: report.incomplete.as_deref(),
        totals,
        derived: Derived {
            delivery_ratio: delivery_ratio(totals),
            deliveries_per_sec: deliveries_per_sec(totals, measured_s),
            sent_per_sec: per_sec(totals.sent, measured_s),
            eviction_failures: totals.eviction_failures(),
        },
        latency_us: Latency::of(&report.latency),
        connect_us: ConnectPhases {
            tcp: Latency::of(&report.connect.tcp),
            tls: Latency::of(&report.connect.tls),
            upgrade: Latency::of(&report.connect.upgrade),
            mint: Latency::of(&report.connect.mint),
        },
        server_deliveries_out: report.server_deliveries_out,
        loadgen_lag_us: report.loadgen_lag,
        loadgen_saturated: report.loadgen_lag.saturated(),
        instrument_note: report.loadgen_lag.statement(totals),
        probes_sent: report.probes_sent,
        sessions_tallied_early: report.sessions_tallied_early,
        segments: report.segments.as_ref(),
        loadgen_resources: &report.loadgen_resources,
        memory_growth: crate::memory::growth(&report.resources_over_time, settle_s(report)),
        calibration: report.calibration.as_ref(),
        loadgen_cpu_us_per_delivery: report
            .loadgen_resources
            .cpu_seconds
            .filter(|_| totals.delivered > 0)
            .map(|cpu| cpu * 1e6 / totals.delivered as f64),
        thresholds: verdicts,
        passed: verdicts.iter().all(|v| v.passed),
    };
    let mut text = serde_json::to_vec_pretty(&summary)?;
    text.push(b'\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::report::tests::sample;
    use crate::report::timeseries::counter_columns;
    use crate::thresholds::evaluate;

    fn parse(report: &RunReport) -> Value {
        let verdicts = evaluate(&report.thresholds, &report.totals, &report.latency, 3.0);
        serde_json::from_slice(&summary_json(report, &verdicts).unwrap()).unwrap()
    }

    #[test]
    fn has_every_counter_and_figure() {
        let report = sample();
        let json = parse(&report);
        for (name, value) in counter_columns(&report.totals) {
            assert_eq!(json["totals"][name].as_u64(), Some(value), "totals.{name}");
        }
        assert_eq!(
            json["totals"].as_object().unwrap().len(),
            counter_columns(&report.totals).len()
        );
        assert_eq!(json["started_at"], "2023-11-14T22:13:20Z");
        assert_eq!(json["ended_at"], "2023-11-14T22:13:24Z");
        assert_eq!(json["measured_s"], 3.0);
        assert_eq!(json["ramp_s"], 0.5);
        assert_eq!(json["complete"], true);
        assert_eq!(json["incomplete_reason"], Value::Null);
        assert_eq!(json["server"]["kind"], "embedded-child");
        assert_eq!(json["latency_us"]["count"], report.latency.len());
        assert_eq!(json["latency_us"]["max"], report.latency.max());
        assert_eq!(json["deliveries_per_sec"], 100.0);
        assert_eq!(json["eviction_failures"], 4);
        assert_eq!(json["scenario"]["users"]["count"], 10);
        let verdicts = json["thresholds"].as_array().unwrap();
        assert!(verdicts
            .iter()
            .any(|v| v["name"] == "p99" && v["unit"] == "ms"));
        assert_eq!(json["passed"], false, "the sample fails its eviction limit");
    }

    #[test]
    fn incomplete_and_empty_runs_still_serialize() {
        let mut report = sample();
        report.incomplete = Some("interrupted (Ctrl-C)".into());
        report.latency.reset();
        report.intervals.clear();
        let json = parse(&report);
        assert_eq!(json["complete"], false);
        assert_eq!(json["incomplete_reason"], "interrupted (Ctrl-C)");
        assert_eq!(json["latency_us"]["p99"], 0);
        assert_eq!(json["latency_us"]["mean"], 0.0);
    }
}
