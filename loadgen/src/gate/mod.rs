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
//! Exit codes: 0 no regression; 1 a regression or a correctness failure; 2 bad usage;
//! 3 the gate could not run (a server would not start, a run failed).

pub mod html;
pub mod result;
pub mod stats;

use crate::calibration::Started;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cli::GateArgs;
use crate::exit::Exit;
use crate::run::{Completion, RunRequest};
use crate::scenario::Scenario;
use crate::server_process::{Launch, ServerProcess};
use crate::{report, thresholds};
pub use result::{GateResult, GateRun, Side};
use stats::{Better, Comparison, GateVerdict};

/// Runs the gate; returns its exit code. Writes compare.md, compare.json and
/// compare.html ([`html`]).
pub async fn command(args: GateArgs) -> Exit {
    for (flag, command) in [("--base", &args.base), ("--candidate", &args.candidate)] {
        if !command.contains("{addr}") {
            eprintln!("loadgen gate: {flag} must contain {{addr}} where the listen address goes, e.g. \"target/release/chat-server --listen {{addr}}\"");
            return Exit::Usage;
        }
    }
    if !(args.tolerance > 0.0 && args.tolerance < 1.0) {
        eprintln!("loadgen gate: --tolerance must be between 0 and 1 (0.10 is 10%)");
        return Exit::Usage;
    }
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("loadgen gate: {error}");
            return Exit::Usage;
        }
    };
    args.tls.apply(&mut scenario.users.tls);
    if let Err(error) = crate::tls::TlsClient::new(&scenario.users.tls) {
        eprintln!("loadgen gate: --ca-file: {error}");
        return Exit::Usage;
    }
    if let Err(error) = args.jwt.apply(&mut scenario.users) {
        eprintln!("loadgen gate: {error}");
        return Exit::Usage;
    }
    if let Err((field, reason)) = scenario.check_credentials() {
        eprintln!("loadgen gate: {field}: {reason}");
        return Exit::Usage;
    }
    let dir = args.out.clone().unwrap_or_else(|| {
        report::default_dir(Path::new("reports"), "gate", std::time::SystemTime::now())
    });
    let workers = args.workers.or(scenario.workers).unwrap_or(1);
    let calibration = match Started::measure(args.calibration.mode).await {
        Ok(started) => started,
        Err(error) => {
            eprintln!(
                "loadgen gate: machine calibration failed, the reports will not have one: {error}"
            );
            None
        }
    };
    let mut runs = Vec::new();
    for pair in 1..=args.pairs {
        // Counterbalanced order (base first in odd pairs, candidate first in even ones):
        // the second run of a pair is measurably slower here (a few %, the first run's
        // sockets still being torn down), which must not look like a difference.
        let order = if pair % 2 == 1 {
            [(Side::Base, &args.base), (Side::Candidate, &args.candidate)]
        } else {
            [(Side::Candidate, &args.candidate), (Side::Base, &args.base)]
        };
        for (side, command) in order {
            let segments = dir
                .join("segments")
                .join(format!("{pair}-{side:?}").to_lowercase());
            let load = Load {
                scenario: &scenario,
                path: &args.scenario,
                workers,
                segments: &segments,
                scheme: if args.wss { "wss" } else { "ws" },
            };
            match measure(pair, side, command, &load).await {
                Ok(run) => {
                    if !args.quiet {
                        eprintln!(
                            "pair {pair}/{} {:<9} {:>9.0} deliveries/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:.4} CPU s/1000 deliveries{}",
                            args.pairs,
                            format!("{side:?}").to_lowercase(),
                            run.deliveries_per_sec,
                            run.p50_ms,
                            run.p99_ms,
                            run.cpu_per_1000,
                            if run.correct { String::new() } else { format!("  INCORRECT: {}", run.problems.join("; ")) }
                        );
                    }
                    runs.push(run);
                }
                Err(error) => {
                    eprintln!("loadgen gate: pair {pair}, {side:?}: {error}");
                    return Exit::CouldNotRun;
                }
            }
        }
    }
    let mut result = judge(&args, &runs);
    if let Some(started) = calibration {
        result.calibration = Some(started.finish().await);
    }
    let markdown = markdown(&result);
    if let Err(error) = write(&dir, &result, &markdown) {
        eprintln!("loadgen gate: {error}");
        return Exit::CouldNotRun;
    }
    println!("{markdown}");
    println!("reports: {}", dir.display());
    if result.passed {
        Exit::Passed
    } else {
        Exit::Failed
    }
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
async fn measure(pair: u32, side: Side, command: &str, load: &Load<'_>) -> anyhow::Result<GateRun> {
    let server = ServerProcess::start(&Launch::Command(command.to_string())).await?;
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
    let (report, completion) = outcome?;
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
fn judge(args: &GateArgs, runs: &[GateRun]) -> GateResult {
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
        scenario: args.scenario.display().to_string(),
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
fn markdown(result: &GateResult) -> String {
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

fn write(dir: &Path, result: &GateResult, markdown: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json: PathBuf = dir.join("compare.json");
    let text = serde_json::to_string_pretty(result).context("cannot encode compare.json")?;
    std::fs::write(&json, text).with_context(|| format!("cannot write {}", json.display()))?;
    let md = dir.join("compare.md");
    std::fs::write(&md, markdown).with_context(|| format!("cannot write {}", md.display()))?;
    let page = html::page(result).context("cannot draw compare.html")?;
    let html = dir.join("compare.html");
    std::fs::write(&html, page).with_context(|| format!("cannot write {}", html.display()))?;
    Ok(())
}
