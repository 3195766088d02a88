//! `loadgen gate`: a performance regression gate by paired A/B runs on one machine.
//!
//! On a shared, noisy machine a comparison with last week's number cries wolf or sleeps.
//! Instead the gate runs the base and the candidate server alternately — base, candidate,
//! candidate, base, base, candidate, … (each pair counterbalanced, so that whatever the
//! second run of a pair suffers hits both sides alike) — each time as a fresh process on
//! loopback under the same scenario, and judges the per-pair ratios ([`stats`]). Metrics
//! ([`metric`]): timings — deliveries/s, latency p50 and p99, server CPU seconds per 1,000
//! deliveries — and cost counters per delivery — the server's allocations and bytes
//! allocated (its `/metrics`, when it counts them), read and write system calls, bytes
//! written and context switches (its `/proc`), each kind with its own tolerance. The scenario's thresholds are checked on
//! every run too: a correctness failure (loss, eviction errors, …) fails the gate.
//!
//! [`run`] plays the pairs and judges them; [`markdown`] and [`write`] make the reports
//! (the command, `commands::gate`, prints them and says the exit code).

pub mod html;
pub mod metric;
pub mod result;
pub mod stats;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::run::{Completion, RunRequest};
use crate::scenario::Scenario;
use crate::server_process::{Launch, ServerProcess};
use crate::{report, thresholds};
use metric::{MetricKind, Tolerance, METRICS};
pub use result::{CostCounters, GateResult, GateRun, Side};
use stats::GateVerdict;

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
    /// Relative change a timing may worsen by before it can count as a regression.
    pub tolerance: f64,
    /// The same for a cost counter ([`metric`]).
    pub counter_tolerance: f64,
    /// Tolerances of single metrics, by name (the scenario's `[gate_tolerance]`).
    pub tolerances: std::collections::BTreeMap<String, f64>,
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
    let metrics_at = crate::scrape::MetricsAt {
        target: format!("{}://{}/", load.scheme, server.addr)
            .parse()
            .map_err(|e: crate::target::TargetError| e.to_string())?,
        addr: server.addr,
        tls: crate::tls::TlsClient::new(&load.scenario.users.tls).ok(),
    };
    let work_before = Work::read(server.pid(), &metrics_at).await;
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
    let work_after = Work::read(server.pid(), &metrics_at).await;
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
        costs: work_before.per_delivery(&work_after, delivered),
        correct: problems.is_empty(),
        problems,
    })
}

/// The server's work counters at one moment: its `/proc` and its allocation counts.
struct Work {
    proc: procstat::WorkCounts,
    allocations: Option<u64>,
    allocated_bytes: Option<u64>,
}

impl Work {
    async fn read(pid: u32, at: &crate::scrape::MetricsAt) -> Work {
        let allocations = crate::scrape::values(
            at,
            &["chat_allocations_total", "chat_allocated_bytes_total"],
        )
        .await
        .unwrap_or_default();
        let counter = |i: usize| allocations.get(i).copied().flatten().map(|v| v as u64);
        Work {
            proc: procstat::work_counts(pid),
            allocations: counter(0),
            allocated_bytes: counter(1),
        }
    }

    /// What happened between `self` and `after`, per delivery (`None` where either end
    /// was not measured, or nothing was delivered).
    fn per_delivery(&self, after: &Work, delivered: f64) -> CostCounters {
        let per = |b: Option<u64>, a: Option<u64>| match (b, a) {
            (Some(b), Some(a)) if a >= b && delivered > 0.0 => Some((a - b) as f64 / delivered),
            _ => None,
        };
        let (b, a) = (&self.proc, &after.proc);
        CostCounters {
            allocations: per(self.allocations, after.allocations),
            allocated_bytes: per(self.allocated_bytes, after.allocated_bytes),
            read_syscalls: per(b.read_syscalls, a.read_syscalls),
            write_syscalls: per(b.write_syscalls, a.write_syscalls),
            bytes_written: per(b.bytes_written, a.bytes_written),
            voluntary_switches: per(b.voluntary_switches, a.voluntary_switches),
            involuntary_switches: per(b.involuntary_switches, a.involuntary_switches),
        }
    }
}

/// Compares the sides metric by metric.
fn judge(args: &GateRequest, runs: &[GateRun]) -> GateResult {
    let mut comparisons = Vec::new();
    let mut not_measured = Vec::new();
    for metric in &METRICS {
        let values = |side: Side| -> Option<Vec<f64>> {
            runs.iter()
                .filter(|r| r.side == side)
                .map(metric.value)
                .collect()
        };
        let (Some(base), Some(candidate)) = (values(Side::Base), values(Side::Candidate)) else {
            not_measured.push(format!(
                "{}: {}",
                metric.name,
                why_not_measured(metric.name)
            ));
            continue;
        };
        let asked = args.tolerances.get(metric.name).copied();
        let tolerance = asked
            .or(match metric.tolerance {
                Tolerance::Kind => None,
                Tolerance::Own(t) | Tolerance::NotJudged(t) => Some(t),
            })
            .unwrap_or(match metric.kind {
                MetricKind::Timing => args.tolerance,
                MetricKind::Counter => args.counter_tolerance,
            });
        let mut comparison =
            stats::compare(metric.name, metric.better, &base, &candidate, tolerance);
        comparison.kind = metric.kind;
        if asked.is_none() && matches!(metric.tolerance, Tolerance::NotJudged(_)) {
            comparison.verdict = GateVerdict::Reported;
        }
        if metric.kind == MetricKind::Counter && comparison.verdict == GateVerdict::Regression {
            comparison.attribution = Some(metric::attribution(
                metric,
                comparison.base_median,
                comparison.candidate_median,
            ));
        }
        comparisons.push(comparison);
    }
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
        counter_tolerance: args.counter_tolerance,
        not_measured,
        comparisons,
        runs: runs.to_vec(),
        regression,
        correctness_failed,
        passed: !regression && !correctness_failed,
        calibration: None,
    }
}

/// Why a metric has no value in some run.
fn why_not_measured(metric: &str) -> &'static str {
    match metric {
        "allocations_per_delivery" | "allocated_bytes_per_delivery" => {
            "a server does not count its allocations (chat-server counts them when built with --features count-allocations; scripts/perf-gate.sh does)"
        }
        _ => "the server's /proc could not be read (not Linux, or not this user's process)",
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
        "- scenario: `{}`, {} pairs run alternately (base first in odd pairs, candidate first in even ones), tolerance {:.0}% for timings, {:.1}% for cost counters",
        result.scenario,
        result.pairs,
        result.tolerance * 100.0,
        result.counter_tolerance * 100.0
    );
    let _ = writeln!(md, "- machine speed: {}", html::calibration_text(result));
    let _ = writeln!(md, "- a metric regresses when the median candidate/base ratio is worse than the tolerance, its whole 95% bootstrap interval is worse than 1, and a one-sided sign test over the pairs agrees (p <= 0.10)\n");
    let _ = writeln!(md, "| metric | kind | better | base median | candidate median | ratio | 95% interval | base spread | tolerance | pairs worse than tolerance | sign test p | verdict |");
    let _ = writeln!(
        md,
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|"
    );
    for c in &result.comparisons {
        let _ = writeln!(
            md,
            "| {} | {:?} | {:?} | {:.4} | {:.4} | {:.3} | {:.3} – {:.3} | {:.1}% | {:.1}% | {}/{} | {:.3} | {} |",
            c.metric,
            c.kind,
            c.better,
            c.base_median,
            c.candidate_median,
            c.ratio,
            c.ratio_low,
            c.ratio_high,
            c.base_spread * 100.0,
            c.tolerance * 100.0,
            c.worse_pairs,
            c.pairs,
            c.sign_p,
            match c.verdict {
                GateVerdict::Pass => "pass",
                GateVerdict::Regression => "**REGRESSION**",
                GateVerdict::Improvement => "improvement",
                GateVerdict::Reported => "reported, not judged",
            }
        );
    }
    for c in &result.comparisons {
        if let Some(words) = &c.attribution {
            let _ = writeln!(md, "\n- **{}**: {words}", c.metric);
        }
    }
    for line in &result.not_measured {
        let _ = writeln!(md, "\n- not measured: {line}");
    }
    let _ = writeln!(md, "\n## Runs\n");
    let _ = writeln!(md, "| pair | side | deliveries/s | p50 ms | p99 ms | server CPU s / 1000 deliveries | allocations / delivery | writes / delivery | reads / delivery | switches / delivery | correctness |");
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let counted = |value: Option<f64>| value.map_or("—".to_string(), |v| format!("{v:.4}"));
    for r in &result.runs {
        let switches = match (r.costs.voluntary_switches, r.costs.involuntary_switches) {
            (Some(v), Some(i)) => Some(v + i),
            _ => None,
        };
        let _ = writeln!(
            md,
            "| {} | {:?} | {:.0} | {:.3} | {:.3} | {:.4} | {} | {} | {} | {} | {} |",
            r.pair,
            r.side,
            r.deliveries_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.cpu_per_1000,
            counted(r.costs.allocations),
            counted(r.costs.write_syscalls),
            counted(r.costs.read_syscalls),
            counted(switches),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pair: u32, side: Side, writes: f64, allocations: Option<f64>) -> GateRun {
        // Timings that wobble by a few percent; counters as steady as they are.
        let wobble = 1.0 + f64::from(pair % 3) * 0.02;
        GateRun {
            pair,
            side,
            deliveries_per_sec: 15_000.0,
            p50_ms: 4.0 * wobble,
            p99_ms: 8.0 * wobble,
            cpu_per_1000: 0.014 * wobble,
            costs: CostCounters {
                allocations,
                allocated_bytes: allocations.map(|a| a * 64.0),
                read_syscalls: Some(0.02),
                write_syscalls: Some(writes),
                bytes_written: Some(140.0),
                voluntary_switches: Some(0.05),
                involuntary_switches: Some(0.001),
            },
            correct: true,
            problems: Vec::new(),
        }
    }

    fn request(tolerances: &[(&str, f64)]) -> GateRequest {
        let text = "[users]\ncount = 2\n[[phase]]\nduration = \"1s\"\nrate = 1\n";
        GateRequest {
            base: "base {addr}".into(),
            candidate: "candidate {addr}".into(),
            scenario: Scenario::parse(Path::new("gate.toml"), text).expect("a scenario"),
            scenario_path: "gate.toml".into(),
            pairs: 7,
            tolerance: 0.10,
            counter_tolerance: 0.02,
            tolerances: tolerances
                .iter()
                .map(|&(n, t)| (n.to_string(), t))
                .collect(),
            workers: 1,
            wss: false,
            dir: "reports/gate".into(),
        }
    }

    fn runs(candidate_writes: f64, candidate_allocations: Option<f64>) -> Vec<GateRun> {
        (1..=7)
            .flat_map(|pair| {
                let steady = 0.112 * (1.0 + f64::from(pair % 2) * 0.002);
                [
                    run(pair, Side::Base, steady, Some(3.0)),
                    run(
                        pair,
                        Side::Candidate,
                        candidate_writes * steady / 0.112,
                        candidate_allocations,
                    ),
                ]
            })
            .collect()
    }

    #[test]
    fn a_counter_beyond_its_tolerance_fails_and_says_what_moved() {
        let same = judge(&request(&[]), &runs(0.112, Some(3.0)));
        assert!(same.passed, "{}", markdown(&same));
        // One write per frame instead of ~9 frames per write.
        let unbatched = judge(&request(&[]), &runs(1.0, Some(3.0)));
        assert!(!unbatched.passed);
        let writes = unbatched
            .comparisons
            .iter()
            .find(|c| c.metric == "write_syscalls_per_delivery")
            .expect("compared");
        assert_eq!(writes.verdict, GateVerdict::Regression);
        let md = markdown(&unbatched);
        assert!(md.contains("the base wrote ~9 frames per write"), "{md}");
        // 30% more writes: beyond the 25% writes have (their batching depends on
        // scheduling), ...
        let more_writes = judge(&request(&[]), &runs(0.112 * 1.3, Some(3.0)));
        assert!(!more_writes.passed, "{}", markdown(&more_writes));
        // ... unless this metric was given more room.
        let roomy = judge(
            &request(&[("write_syscalls_per_delivery", 0.35)]),
            &runs(0.112 * 1.3, Some(3.0)),
        );
        assert!(roomy.passed, "{}", markdown(&roomy));
        // 4% more allocations: beyond the 2% of exact counters, within a timing's 10%.
        let slightly = judge(&request(&[]), &runs(0.112, Some(3.0 * 1.04)));
        assert!(!slightly.passed, "{}", markdown(&slightly));
        // One more allocation per delivery.
        let allocating = judge(&request(&[]), &runs(0.112, Some(4.0)));
        assert!(markdown(&allocating).contains("+1.00 allocations per delivery"));
    }

    #[test]
    fn context_switches_are_reported_not_judged_unless_given_a_tolerance() {
        // The candidate's runs all in the busy regime, the base's in the quiet one: six
        // times the switches, as identical builds gave in a CI run.
        let bimodal = |runs: Vec<GateRun>| -> Vec<GateRun> {
            runs.into_iter()
                .map(|mut r| {
                    let switches = if r.side == Side::Candidate { 0.3 } else { 0.05 };
                    r.costs.voluntary_switches = Some(switches);
                    r
                })
                .collect()
        };
        let switches = bimodal(runs(0.112, Some(3.0)));
        let result = judge(&request(&[]), &switches);
        assert!(result.passed, "{}", markdown(&result));
        let voluntary = result
            .comparisons
            .iter()
            .find(|c| c.metric == "voluntary_switches_per_delivery")
            .expect("compared");
        assert_eq!(voluntary.verdict, GateVerdict::Reported);
        assert!((voluntary.ratio - 6.0).abs() < 1e-9);
        assert!(markdown(&result).contains("reported, not judged"));
        // Named in [gate_tolerance], it is judged.
        let judged = judge(
            &request(&[("voluntary_switches_per_delivery", 1.0)]),
            &switches,
        );
        assert!(!judged.passed, "{}", markdown(&judged));
        assert!(markdown(&judged).contains("more wake-ups per delivery"));
    }

    #[test]
    fn a_counter_one_side_did_not_measure_is_not_measured_never_zero() {
        let result = judge(&request(&[]), &runs(0.112, None));
        assert!(result.passed);
        assert!(result
            .comparisons
            .iter()
            .all(|c| c.metric != "allocations_per_delivery"));
        assert!(markdown(&result).contains("not measured: allocations_per_delivery"));
    }
}
