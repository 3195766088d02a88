//! Runs past one process: a scenario split into segments played by cooperating loadgen
//! processes — local workers started here (`--workers N`), or `--segment I/N` processes
//! started by hand, by ssh or as a Kubernetes Indexed Job — and their reports merged into
//! one, exactly as if one process had run it.
//!
//! One process holds at most about 19,900 connections here (the open-file limit), so
//! larger runs must be split. [`crate::segment`] says who plays which user and how the
//! segments share a clock and a start; [`file`] is what each segment leaves for the merge;
//! [`merge`] combines them; [`workers`] coordinates local workers; [`command`] is
//! `loadgen merge`.

pub mod file;
pub mod merge;
pub mod workers;

use std::path::Path;

use crate::nofile;
use crate::report::RunReport;
use crate::run::{self, Completion, RunError, RunRequest};
use crate::scenario::Scenario;
use crate::segment::{Segment, MAX_SEGMENTS};

/// Runs `request` in this process (`workers` ≤ 1) or as `workers` local worker processes
/// whose segment folders go under `segments_dir`.
pub async fn run(
    request: RunRequest,
    workers: u32,
    segments_dir: &Path,
) -> Result<(RunReport, Completion), RunError> {
    if workers <= 1 {
        run::run(request).await
    } else {
        workers::run_workers(request, workers, segments_dir).await
    }
}

/// The fewest workers whose segments each fit this process's open-file limit (1 when the
/// whole scenario fits).
pub fn workers_needed(scenario: &Scenario) -> u32 {
    let available = nofile::available();
    (1..=MAX_SEGMENTS)
        .find(|&count| {
            let widest = Segment { index: 0, count };
            let peak = if count == 1 {
                scenario.peak_connections()
            } else {
                run::segment_peak_connections(scenario, widest)
            };
            peak <= available
        })
        .unwrap_or(MAX_SEGMENTS)
}
