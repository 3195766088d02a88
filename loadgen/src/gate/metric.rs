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
//! except write system calls and context switches, which depend on scheduling and have
//! wider defaults ([`WRITES_TOLERANCE`], [`SWITCHES_TOLERANCE`]) — and each metric may have
//! its own in the scenario's `[gate_tolerance]` table.

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
    /// Its own default tolerance, when its kind's does not fit it (`None`: the kind's).
    pub tolerance: Option<f64>,
}

/// The default tolerance of write system calls per delivery. Not an exact count of the
/// work like allocations or bytes: how many frames wait for one write depends on how the
/// threads were scheduled. Identical builds under `scenarios/gate.toml` here: median
/// ratios within 0.5–6.5%, single runs up to 9.5% from their median (2026-12-06).
pub const WRITES_TOLERANCE: f64 = 0.15;

/// The default tolerance of context switches per delivery, which depend on scheduling
/// and on whatever else the machine runs: identical builds gave median ratios of 0.96 on a
/// quiet machine and 0.57 beside a test suite, so only a doubling counts.
pub const SWITCHES_TOLERANCE: f64 = 1.0;

/// Every metric, timings first.
pub const METRICS: [Metric; 11] = [
    Metric {
        name: "deliveries_per_sec",
        better: Better::Higher,
        kind: MetricKind::Timing,
        value: |r| Some(r.deliveries_per_sec),
        words: "deliveries per second",
        tolerance: None,
    },
    Metric {
        name: "p50_ms",
        better: Better::Lower,
        kind: MetricKind::Timing,
        value: |r| Some(r.p50_ms),
        words: "median latency",
        tolerance: None,
    },
    Metric {
        name: "p99_ms",
        better: Better::Lower,
        kind: MetricKind::Timing,
        value: |r| Some(r.p99_ms),
        words: "p99 latency",
        tolerance: None,
    },
    Metric {
        name: "server_cpu_s_per_1000_deliveries",
        better: Better::Lower,
        kind: MetricKind::Timing,
        value: |r| Some(r.cpu_per_1000),
        words: "server CPU time",
        tolerance: None,
    },
    Metric {
        name: "allocations_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.allocations,
        words: "heap allocations",
        tolerance: None,
    },
    Metric {
        name: "allocated_bytes_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.allocated_bytes,
        words: "bytes allocated",
        tolerance: None,
    },
    Metric {
        name: "read_syscalls_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.read_syscalls,
        words: "read system calls",
        tolerance: None,
    },
    Metric {
        name: "write_syscalls_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.write_syscalls,
        words: "write system calls",
        // How many frames queue before a write depends on scheduling: see the module doc.
        tolerance: Some(WRITES_TOLERANCE),
    },
    Metric {
        name: "bytes_written_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.bytes_written,
        words: "bytes written",
        tolerance: None,
    },
    Metric {
        name: "voluntary_switches_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.voluntary_switches,
        words: "voluntary context switches (a thread waiting, then woken)",
        tolerance: Some(SWITCHES_TOLERANCE),
    },
    Metric {
        name: "involuntary_switches_per_delivery",
        better: Better::Lower,
        kind: MetricKind::Counter,
        value: |r| r.costs.involuntary_switches,
        words: "involuntary context switches (a thread preempted)",
        tolerance: Some(SWITCHES_TOLERANCE),
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
