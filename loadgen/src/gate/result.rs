//! What a gate measured and concluded: each run of each side ([`GateRun`]) and the
//! comparison of the sides ([`GateResult`], which `compare.json` holds and `compare.md` and
//! `compare.html` show).

use serde::Serialize;

use super::stats::Comparison;

/// Which build a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Base,
    Candidate,
}

/// One run of one side.
#[derive(Debug, Clone, Serialize)]
pub struct GateRun {
    pub pair: u32,
    pub side: Side,
    pub deliveries_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Server CPU seconds per 1,000 deliveries.
    pub cpu_per_1000: f64,
    /// The server's work per delivery, counted ([`CostCounters`]).
    pub costs: CostCounters,
    /// Every scenario threshold passed and the run completed.
    pub correct: bool,
    /// Failed thresholds or why the run was incomplete.
    pub problems: Vec<String>,
}

/// The server's work per delivery in one run: exact counts, each `None` when not measured
/// (no `/proc` on this OS; a server that does not count its allocations), never 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CostCounters {
    /// Heap allocations (the server's `chat_allocations_total`).
    pub allocations: Option<f64>,
    /// Bytes allocated (`chat_allocated_bytes_total`).
    pub allocated_bytes: Option<f64>,
    /// `read`-family system calls (`/proc/PID/io` `syscr`).
    pub read_syscalls: Option<f64>,
    /// `write`-family system calls (`syscw`).
    pub write_syscalls: Option<f64>,
    /// Bytes written (`wchar`).
    pub bytes_written: Option<f64>,
    /// Context switches of all its threads (`/proc/PID/task/*/status`).
    pub voluntary_switches: Option<f64>,
    pub involuntary_switches: Option<f64>,
}

/// Everything `compare.json` holds.
#[derive(Debug, Serialize)]
pub struct GateResult {
    pub base: String,
    pub candidate: String,
    pub scenario: String,
    pub pairs: u32,
    /// The timings' tolerance.
    pub tolerance: f64,
    /// The cost counters' tolerance (a metric of `[gate_tolerance]` may have its own).
    pub counter_tolerance: f64,
    /// Metrics not measured in every run, with why.
    pub not_measured: Vec<String>,
    pub comparisons: Vec<Comparison>,
    pub runs: Vec<GateRun>,
    pub regression: bool,
    pub correctness_failed: bool,
    pub passed: bool,
    /// The machine's speed at the start and the end of the gate (`None`: not taken).
    pub calibration: Option<crate::calibration::Calibration>,
}
