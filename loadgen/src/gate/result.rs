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
    /// Every scenario threshold passed and the run completed.
    pub correct: bool,
    /// Failed thresholds or why the run was incomplete.
    pub problems: Vec<String>,
}

/// Everything `compare.json` holds.
#[derive(Debug, Serialize)]
pub struct GateResult {
    pub base: String,
    pub candidate: String,
    pub scenario: String,
    pub pairs: u32,
    pub tolerance: f64,
    pub comparisons: Vec<Comparison>,
    pub runs: Vec<GateRun>,
    pub regression: bool,
    pub correctness_failed: bool,
    pub passed: bool,
    /// The machine's speed at the start and the end of the gate (`None`: not taken).
    pub calibration: Option<crate::calibration::Calibration>,
}
