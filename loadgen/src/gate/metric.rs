//! What the gate compares: each metric's name, which way is better, its kind, and how to
//! read it from a run — the one list `judge`, `compare.md` and `compare.html` share.
//!
//! Two kinds. **Timings** (deliveries/s, latency, CPU time) move with the machine: identical
//! builds differ by up to ~10% here, so they keep the wide `--tolerance`. **Cost counters**
//! are exact counts of the work the server asked of the kernel and the heap per delivery
//! (allocations, bytes allocated, read and write system calls, bytes written, context
//! switches): at a fixed load they barely move between identical builds, and the small
//! regressions timings cannot see — one more allocation or one more write per delivery —
//! move them a lot. They have their own, tight tolerance (`--counter-tolerance`, 2%) —
//! except write system calls, which depend on scheduling and have a wider default
//! ([`WRITES_TOLERANCE`]) — and each metric may have its own in the scenario's
//! `[gate_tolerance]` table. Context switches are shown but not judged unless that table
//! names them: they depend on the scheduler more than on the code ([`SWITCHES_TOLERANCE`]).

use super::result::GateRun;
use super::stats::Better;
pub use super::stats::MetricKind;

/// One compared metric.
pub struct Metric {
    pub name: &'static str,
    pub better: Better,
    pub kind: MetricKind,
    /// Its value in a run; `None` when it was not measured there.
    pub value: fn(&GateRun) -> Option<f64>,
    /// What it counts, in words, for attribution (`"write system calls"`).
    pub words: &'static str,
    /// Its default tolerance.
    pub tolerance: Tolerance,
}

/// A metric's default tolerance (the scenario's `[gate_tolerance]` overrides any of them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Its kind's: `--tolerance` for timings, `--counter-tolerance` for counters.
    Kind,
    /// Its own, when its kind's does not fit it.
    Own(f64),
    /// Shown, charted and compared against this tolerance, but not judged: identical
    /// builds differ in it by more than any useful tolerance. `[gate_tolerance]` makes it
    /// judged.
    NotJudged(f64),
}

/// The default tolerance of write system calls per delivery. Not an exact count of the
/// work like allocations or bytes: how many frames wait for one write depends on how the
/// threads were scheduled. Under `scenarios/gate.toml` (bursts, ~0.2 writes per delivery)
/// single runs of one build stray up to ~17% from their median and identical builds gave
/// median ratios up to 1.08 in three pairs (2026-12-06), while a server that writes each
/// frame alone makes ~1.0: five times as many.
pub const WRITES_TOLERANCE: f64 = 0.25;

/// The tolerance context switches per delivery are compared against, though not judged
/// by default: they depend on scheduling and on whatever else the machine runs, and
/// switch between two regimes (~0.03 and ~0.3 per delivery under `scenarios/gate.toml`)
/// from run to run of one build. Identical builds gave median ratios of 0.96 on a quiet
/// machine, 0.57 beside a test suite, and 5.5 and 6.7 in a CI run (2026-12-06), where
/// four of seven base runs and one of seven candidate runs fell in the low regime.
pub const SWITCHES_TOLERANCE: f64 = 1.0;

/// Every metric, timings first.
pub const METRICS: [Metric; 11] = [
    Metric {
        name: "deliveries_per_sec",
        better: Better::Higher,
        kind: MetricKind::Timing,
        value: |r| Some(r.deliveries_per_sec),
        words: "deliveries per second",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "p50_ms",
        better: Better::Lower,
        kind: MetricKind::Timing,
        value: |r| Some(r.p50_ms),
        words: "median latency",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "p99_ms",
        better: Better::Lower,
        kind: MetricKind::Timing,
        value: |r| Some(r.p99_ms),
        words: "p99 latency",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "server_cpu_s_per_1000_deliveries",
        better: Better::Lower,
        kind: MetricKind::Timing,
        value: |r| Some(r.cpu_per_1000),
        words: "server CPU time",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "allocations_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.allocations,
        words: "heap allocations",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "allocated_bytes_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.allocated_bytes,
        words: "bytes allocated",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "read_syscalls_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.read_syscalls,
        words: "read system calls",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "write_syscalls_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.write_syscalls,
        words: "write system calls",
        // How many frames queue before a write depends on scheduling: see the module doc.
        tolerance: Tolerance::Own(WRITES_TOLERANCE),
    },
    Metric {
        name: "bytes_written_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.bytes_written,
        words: "bytes written",
        tolerance: Tolerance::Kind,
    },
    Metric {
        name: "voluntary_switches_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.voluntary_switches,
        words: "voluntary context switches (a thread waiting, then woken)",
        tolerance: Tolerance::NotJudged(SWITCHES_TOLERANCE),
    },
    Metric {
        name: "involuntary_switches_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.involuntary_switches,
        words: "involuntary context switches (a thread preempted)",
        tolerance: Tolerance::NotJudged(SWITCHES_TOLERANCE),
    },
];

/// The metric called `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// What moved, in words, when a counter regressed: `write system calls per delivery
/// 0.112 → 1.000 (×8.93): the base wrote ~9 frames per write, the candidate ~1`.
pub fn attribution(metric: &Metric, base: f64, candidate: f64) -> String {
    let head = format!(
        "{} per delivery {} → {} (×{:.2})",
        metric.words,
        figure(base),
        figure(candidate),
        candidate / base
    );
    let why = match metric.name {
        "write_syscalls_per_delivery" if base < 1.0 => format!(
            "the base wrote ~{:.0} frames per write, the candidate ~{:.0}: a lost batching path",
            1.0 / base,
            (1.0 / candidate).max(1.0)
        ),
        "allocations_per_delivery" => format!(
            "{:+.2} allocations per delivery: a new allocation (or clone) on the delivery path",
            candidate - base
        ),
        "allocated_bytes_per_delivery" => {
            format!("{:+.0} bytes allocated per delivery", candidate - base)
        }
        "bytes_written_per_delivery" => format!(
            "{:+.1} bytes written per delivery: bigger frames, or bytes written twice",
            candidate - base
        ),
        "read_syscalls_per_delivery" => {
            "more reads per delivery: smaller reads, or reads that find nothing".to_string()
        }
        "voluntary_switches_per_delivery" => {
            "more wake-ups per delivery: threads sleep and wake more often".to_string()
        }
        "involuntary_switches_per_delivery" => {
            "more preemption per delivery: threads run longer or contend more".to_string()
        }
        _ => String::new(),
    };
    if why.is_empty() {
        head
    } else {
        format!("{head}: {why}")
    }
}

/// A small figure with the digits that matter.
fn figure(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_moved_is_said_in_words() {
        let writes = metric("write_syscalls_per_delivery").expect("a metric");
        assert_eq!(
            attribution(writes, 0.112, 1.0),
            "write system calls per delivery 0.112 → 1.00 (×8.93): the base wrote ~9 frames \
             per write, the candidate ~1: a lost batching path"
        );
        let allocations = metric("allocations_per_delivery").expect("a metric");
        assert!(attribution(allocations, 3.0, 4.0).contains("+1.00 allocations per delivery"));
        assert!(metric("nonsense").is_none());
    }
}
