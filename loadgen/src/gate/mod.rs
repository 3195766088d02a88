//! `loadgen gate`: a performance regression gate by paired A/B runs on one machine.
//!
//! On a shared, noisy machine a comparison with last week's number cries wolf or sleeps.
//! Instead the gate runs the base and the candidate server alternately — base, candidate,
//! candidate, base, base, candidate, … (each pair counterbalanced, so that whatever the
//! second run of a pair suffers hits both sides alike) — each time as a fresh process on
//! loopback under the same scenario, and judges the per-pair ratios ([`stats`]). Metrics: deliveries/s, latency p50 and p99,
//! and server CPU seconds per 1,000 deliveries. The scenario's thresholds are checked on
//! every run too: a correctness failure (loss, eviction errors, …) fails the gate.
//!
//! [`run`] plays the pairs and judges them; [`markdown`] and [`write`] make the reports
//! (the command, `commands::gate`, prints them and says the exit code).

pub mod html;
pub mod result;
pub mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::run::{Completion, RunRequest};
use crate::scenario::Scenario;
use crate::server_process::{Launch, ServerProcess};
use crate::{report, thresholds};
pub use result::{GateResult, GateRun, Side};
use stats::{Better, Comparison, GateVerdict};

/// What a gate compares, and how.
pub struct GateRequest {
    /// The command lines of the two servers, each with `{addr}`.
    pub base: String,
    pub candidate: String,
    /// The scenario every run plays (its `target` is ignored), and its file for reports.
    pub scenario: Scenario,
    pub scenario_path: PathBuf,
    /// Base/candidate pairs, run alternately.
    pub pairs: u32,
    /// Relative change a metric may worsen by before it can count as a regression.
    pub tolerance: f64,
    /// loadgen processes per run.
    pub workers: u32,
    /// The servers serve TLS: connect with `wss://`.
    pub wss: bool,
    /// Where the runs' worker segments go (`DIR/segments/…`).
    pub dir: PathBuf,
}

/// Why a gate could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("pair {pair}, {side:?}: {why}")]
    Run { pair: u32, side: Side, why: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode compare.json: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot draw compare.html: {0}")]
    Draw(String),
}

/// Runs the pairs, calling `on_run` after each run, and judges them (no calibration:
/// the caller measures the machine around this).
pub async fn run(
    request: &GateRequest,
    mut on_run: impl FnMut(&GateRun),
) -> Result<GateResult, GateError> {
    let mut runs = Vec::new();
    for pair in 1..=request.pairs {
        // Counterbalanced order (base first in odd pairs, candidate first in even ones):
        // the second run of a pair is measurably slower here (a few %, the first run's
        // sockets still being torn down), which must not look like a difference.
        let order = if pair % 2 == 1 {
            [
                (Side::Base, &request.base),
                (Side::Candidate, &request.candidate),
            ]
        } else {
            [
                (Side::Candidate, &request.candidate),
                (Side::Base, &request.base),
            ]
        };
        for (side, command) in order {
            let segments = request
                .dir
                .join("segments")
                .join(format!("{pair}-{side:?}").to_lowercase());
            let load = Load {
                scenario: &request.scenario,
                path: &request.scenario_path,
                workers: request.workers,
                segments: &segments,
                scheme: if request.wss { "wss" } else { "ws" },
            };
            let run = measure(pair, side, command, &load)
                .await
                .map_err(|why| GateError::Run { pair, side, why })?;
            on_run(&run);
            runs.push(run);
        }
    }
    Ok(judge(request, &runs))
}

/// The load every run of the gate offers.
struct Load<'a> {
    scenario: &'a Scenario,
    path: &'a Path,
    /// loadgen processes per run (`--workers`).
    workers: u32,
    /// Where a run's worker segments go.
    segments: &'a Path,
    /// `ws`, or `wss` when the servers serve TLS (`--wss`).
    scheme: &'static str,
}

/// One run of one side on a fresh server.
async fn measure(pair: u32, side: Side, command: &str, load: &Load<'_>) -> Result<GateRun, String> {
    let server = ServerProcess::start(&Launch::Command(command.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let before = server.cpu_seconds();
    let request = RunRequest {
        scenario: load.scenario.clone(),
        scenario_path: load.path.display().to_string(),
        targets: vec![format!("{}://{}/", load.scheme, server.addr)],
        quiet: true,
        segment: None,
        source_addresses: Vec::new(),
        live: None,
    };
    let outcome = crate::fleet::run(request, load.workers, load.segments).await;
    let after = server.cpu_seconds();
    server.stop(std::time::Duration::from_secs(10)).await;
    let (report, completion) = outcome.map_err(|e| e.to_string())?;
    let verdicts = report.verdicts();
    let mut problems: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.passed)
        .map(|v| format!("{} {} (limit {})", v.name, v.actual, v.limit))
        .collect();
    if let Completion::Incomplete(why) = completion {
        problems.push(why);
    }
    let delivered = report.totals.delivered as f64;
    let cpu = match (before, after) {
        (Some(b), Some(a)) if delivered > 0.0 => (a - b) / delivered * 1000.0,
        _ => f64::NAN,
    };
    Ok(GateRun {
        pair,
        side,
        deliveries_per_sec: thresholds::deliveries_per_sec(
            &report.totals,
            report::measured_secs(&report),
        ),
        p50_ms: report.latency.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: report.latency.value_at_quantile(0.99) as f64 / 1000.0,
        cpu_per_1000: cpu,
        correct: problems.is_empty(),
        problems,
    })
}

/// A compared metric: its name, which way is better, and how to read it from a run.
type Metric = (&'static str, Better, fn(&GateRun) -> f64);

/// Compares the sides metric by metric.
fn judge(args: &GateRequest, runs: &[GateRun]) -> GateResult {
    let side = |s: Side, f: fn(&GateRun) -> f64| -> Vec<f64> {
        runs.iter().filter(|r| r.side == s).map(f).collect()
    };
    let metrics: [Metric; 4] = [
        ("deliveries_per_sec", Better::Higher, |r| {
            r.deliveries_per_sec
        }),
        ("p50_ms", Better::Lower, |r| r.p50_ms),
        ("p99_ms", Better::Lower, |r| r.p99_ms),
        ("server_cpu_s_per_1000_deliveries", Better::Lower, |r| {
            r.cpu_per_1000
        }),
    ];
    let comparisons: Vec<Comparison> = metrics
        .iter()
        .map(|&(name, better, f)| {
            stats::compare(
                name,
                better,
                &side(Side::Base, f),
                &side(Side::Candidate, f),
                args.tolerance,
            )
        })
        .collect();
    let regression = comparisons
        .iter()
        .any(|c| c.verdict == GateVerdict::Regression);
    let correctness_failed = runs.iter().any(|r| !r.correct);
    GateResult {
        base: args.base.clone(),
        candidate: args.candidate.clone(),
        scenario: args.scenario_path.display().to_string(),
        pairs: args.pairs,
        tolerance: args.tolerance,
        comparisons,
        runs: runs.to_vec(),
        regression,
        correctness_failed,
        passed: !regression && !correctness_failed,
        calibration: None,
    }
}

/// `compare.md`: a table per metric and the list of runs.
pub fn markdown(result: &GateResult) -> String {
    let mut md = String::new();
    let verdict = if result.passed {
        "PASS"
    } else if result.correctness_failed {
        "FAIL (correctness)"
    } else {
        "FAIL (regression)"
    };
    let _ = writeln!(md, "# Performance gate: {verdict}\n");
    let _ = writeln!(md, "- base: `{}`", result.base);
    let _ = writeln!(md, "- candidate: `{}`", result.candidate);
    let _ = writeln!(
        md,
        "- scenario: `{}`, {} pairs run alternately (base first in odd pairs, candidate first in even ones), tolerance {:.0}%",
        result.scenario,
        result.pairs,
        result.tolerance * 100.0
    );
    let _ = writeln!(md, "- machine speed: {}", html::calibration_text(result));
    let _ = writeln!(md, "- a metric regresses when the median candidate/base ratio is worse than the tolerance, its whole 95% bootstrap interval is worse than 1, and a one-sided sign test over the pairs agrees (p <= 0.10)\n");
    let _ = writeln!(md, "| metric | better | base median | candidate median | ratio | 95% interval | pairs worse than tolerance | sign test p | verdict |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---|---:|---:|---|");
    for c in &result.comparisons {
        let _ = writeln!(
            md,
            "| {} | {:?} | {:.4} | {:.4} | {:.3} | {:.3} – {:.3} | {}/{} | {:.3} | {} |",
            c.metric,
            c.better,
            c.base_median,
            c.candidate_median,
            c.ratio,
            c.ratio_low,
            c.ratio_high,
            c.worse_pairs,
            c.pairs,
            c.sign_p,
            match c.verdict {
                GateVerdict::Pass => "pass",
                GateVerdict::Regression => "**REGRESSION**",
                GateVerdict::Improvement => "improvement",
            }
        );
    }
    let _ = writeln!(md, "\n## Runs\n");
    let _ = writeln!(md, "| pair | side | deliveries/s | p50 ms | p99 ms | server CPU s / 1000 deliveries | correctness |");
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---|");
    for r in &result.runs {
        let _ = writeln!(
            md,
            "| {} | {:?} | {:.0} | {:.3} | {:.3} | {:.4} | {} |",
            r.pair,
            r.side,
            r.deliveries_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.cpu_per_1000,
            if r.correct {
                "ok".to_string()
            } else {
                r.problems.join("; ")
            }
        );
    }
    md
}

/// Writes `compare.json`, `compare.md` (`markdown`) and `compare.html` into `dir`.
pub fn write(dir: &Path, result: &GateResult, markdown: &str) -> Result<(), GateError> {
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(|source| GateError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| GateError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write(
        dir.join("compare.json"),
        serde_json::to_string_pretty(result)?.as_bytes(),
    )?;
    write(dir.join("compare.md"), markdown.as_bytes())?;
    let page = html::page(result).map_err(|e| GateError::Draw(e.to_string()))?;
    write(dir.join("compare.html"), page.as_bytes())
}
