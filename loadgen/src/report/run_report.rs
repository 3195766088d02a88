//! What one run measured, as handed to the report writers ([`RunReport`]), and how long
//! its measured load lasted ([`measured_secs`]), which every rate in the reports is per.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::hlog::LatencyLog;
use crate::duration;
use crate::lag::LoadgenLag;
use crate::memory::ResourceSample;
use crate::record::{ConnectTimes, Counters, IntervalRecord};
use crate::segment::Segment;
use crate::thresholds::{ThresholdVerdict, Thresholds};

/// Where the server under test ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Whether a report is one segment of a split run, or the merge of its segments.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SegmentsInfo {
    /// One segment's own view: its users' deliveries and evictions, loss counted only
    /// against its own senders (the merge counts it over the whole run).
    Part {
        segment: Segment,
        /// How late after the common start it began measuring.
        start_late_ms: f64,
    },
    /// The merge of a split run's segments.
    Merged {
        /// Segments the run was split into.
        count: u32,
        /// Those merged.
        merged: Vec<u32>,
        /// Segments missing or incomplete, each with why.
        incomplete: Vec<SegmentProblem>,
        /// The largest clock offset between a segment and segment 0 that the stamps
        /// reveal (half the difference of the least one-way latencies in each direction);
        /// `None` when no pair of segments sent to each other.
        clock_offset_worst_ms: Option<f64>,
        /// The latest any segment began measuring after the common start.
        start_late_worst_ms: f64,
        /// Each merged segment's own loadgen process: CPU and peak memory.
        per_segment: Vec<LoadgenResources>,
    },
}

/// What loadgen itself used over the whole run: CPU and peak resident memory, of every
/// loadgen process of it (workers and the coordinator summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadgenResources {
    /// loadgen processes of the run.
    pub processes: u32,
    /// User + system CPU seconds, from the process start to the end of the run.
    pub cpu_seconds: Option<f64>,
    /// Peak resident memory (VmHWM), summed over the processes.
    pub peak_rss_bytes: Option<u64>,
}

impl LoadgenResources {
    /// This process, now.
    pub fn of_self() -> LoadgenResources {
        LoadgenResources {
            processes: 1,
            cpu_seconds: procstat::Usage::of_self().cpu_seconds,
            peak_rss_bytes: procstat::peak_resident_bytes_of_self(),
        }
    }

    /// Adds another process's figures (a figure missing in either is missing).
    pub fn add(&mut self, other: &LoadgenResources) {
        self.processes += other.processes;
        self.cpu_seconds = self.cpu_seconds.zip(other.cpu_seconds).map(|(a, b)| a + b);
        self.peak_rss_bytes = self
            .peak_rss_bytes
            .zip(other.peak_rss_bytes)
            .map(|(a, b)| a + b);
    }
}

/// A segment that is missing from a merge or did not complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentProblem {
    pub index: u32,
    pub why: String,
}

/// What a run was and where it ran: the part of a report that is the same in a run's
/// report and in each of its segments' files (`segment.json` holds it flattened).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunSetup {
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
}

/// Everything one run measured, as handed to the report writers.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// What ran, and where.
    pub setup: RunSetup,
    /// Wall-clock start of the measured run (after all users connected).
    pub started_at: SystemTime,
    /// Wall-clock end.
    pub ended_at: SystemTime,
    /// Time spent connecting users before measurement started.
    pub ramp: Duration,
    /// One record per second of the measured run.
    pub intervals: Vec<IntervalRecord>,
    /// Every interval's latency histogram, as `latency.hlog` lines.
    pub latency_log: LatencyLog,
    /// Sum of every interval's counters.
    pub totals: Counters,
    /// Every delivery latency of the run, in µs.
    pub latency: Histogram<u64>,
    /// Every login's phase times (TCP, TLS, upgrade), the ramp's included, in µs.
    pub connect: ConnectTimes,
    /// The limits the run is judged by.
    pub thresholds: Thresholds,
    /// Why the run stopped early, if it did (the reports are then marked incomplete).
    pub incomplete: Option<String>,
    /// `chat_deliveries_out_total` scraped from the server at the end, when it could be.
    pub server_deliveries_out: Option<u64>,
    /// loadgen's own lag during the measured run.
    pub loadgen_lag: LoadgenLag,
    /// Relogin probes broadcast (shared by every relogin waiting at the time).
    pub probes_sent: u64,
    /// Finished sessions whose loss was tallied while the run went on, their ledgers
    /// let go (a run in one process; see `run::sends`).
    pub sessions_tallied_early: u64,
    /// A segment of a split run, or a merge of one; `None` for a run in one process.
    pub segments: Option<SegmentsInfo>,
    /// loadgen's own CPU and memory over the run.
    pub loadgen_resources: LoadgenResources,
    /// loadgen's and the server's memory and CPU, sampled through the run (every 10 s
    /// unless `max_memory_growth.sample_every` says otherwise).
    pub resources_over_time: Vec<ResourceSample>,
    /// The machine's speed at the start and the end of the run (`None`: not taken, as
    /// for a segment or a merge, or `--calibration off`).
    pub calibration: Option<crate::calibration::Calibration>,
}

impl RunReport {
    /// Judges the run by its thresholds: the verdicts `loadgen run`, the gate and each
    /// capacity step all use.
    pub fn verdicts(&self) -> Vec<ThresholdVerdict> {
        let mut verdicts = crate::thresholds::evaluate(
            &self.thresholds,
            &self.totals,
            &self.latency,
            measured_secs(self),
        );
        if let Some(limit) = &self.thresholds.max_memory_growth {
            verdicts.extend(crate::memory::verdicts(limit, &self.resources_over_time));
        }
        if let Some(limit) = self.thresholds.max_loadgen_lag {
            verdicts.push(ThresholdVerdict::ceiling(
                "max_loadgen_lag",
                limit.0.as_secs_f64() * 1000.0,
                self.loadgen_lag.worst_p99_us() as f64 / 1000.0,
                "ms",
            ));
        }
        verdicts
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
    match planned_secs(&report.setup.scenario) {
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
