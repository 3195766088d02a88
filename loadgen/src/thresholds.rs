//! Pass/fail limits of a run (`[thresholds]` in a scenario) and their verdicts.
//!
//! Correctness limits default to zero tolerance (a demanding user expects a protocol
//! violation to fail the run unless they say otherwise); latency and throughput limits are
//! off unless set. [`evaluate`] turns the limits and a run's figures into one [`ThresholdVerdict`]
//! per limit, so the summary, `summary.json` and the exit code all judge the same numbers.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::duration::Span;
use crate::record::Counters;

/// The `[thresholds]` table. Every field is optional; see `scenarios/README.md`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Highest acceptable median delivery latency.
    pub p50: Option<Span>,
    /// Highest acceptable 90th percentile.
    pub p90: Option<Span>,
    /// Highest acceptable 99th percentile.
    pub p99: Option<Span>,
    /// Highest acceptable 99.9th percentile.
    pub p999: Option<Span>,
    /// Highest acceptable maximum.
    pub max: Option<Span>,
    /// Lowest acceptable delivered/expected ratio (default 1.0).
    #[serde(default = "one")]
    pub min_delivery_ratio: f64,
    /// Most relogins allowed to fail an eviction check (default 0).
    #[serde(default)]
    pub max_eviction_failures: u64,
    /// Most per-sender ordering errors allowed (default 0).
    #[serde(default)]
    pub max_order_errors: u64,
    /// Most duplicate deliveries allowed (default 0).
    #[serde(default)]
    pub max_duplicates: u64,
    /// Most foreign or garbled messages allowed (default 0).
    #[serde(default)]
    pub max_foreign: u64,
    /// Most messages a user may receive from itself (default 0).
    #[serde(default)]
    pub max_self_deliveries: u64,
    /// Lowest acceptable deliveries per second over the measured run.
    pub min_deliveries_per_sec: Option<f64>,
    /// Most failed logins allowed (default 0).
    #[serde(default)]
    pub max_connect_errors: u64,
    /// Highest acceptable p99 of loadgen's own lag (its sends against their schedule, its
    /// timer against its period; see `crate::lag`): a run the instrument could not measure
    /// cleanly fails.
    pub max_loadgen_lag: Option<Span>,
    /// A soak's limit on memory growth per hour (see [`GrowthLimit`]).
    pub max_memory_growth: Option<GrowthLimit>,
}

fn one() -> f64 {
    1.0
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            p50: None,
            p90: None,
            p99: None,
            p999: None,
            max: None,
            min_delivery_ratio: 1.0,
            max_eviction_failures: 0,
            max_order_errors: 0,
            max_duplicates: 0,
            max_foreign: 0,
            max_self_deliveries: 0,
            min_deliveries_per_sec: None,
            max_connect_errors: 0,
            max_loadgen_lag: None,
            max_memory_growth: None,
        }
    }
}

/// One limit checked against what the run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdVerdict {
    /// The limit's key in `[thresholds]`: `"p99"`, `"min_delivery_ratio"`, …
    pub name: String,
    /// The limit, in `unit`.
    pub limit: f64,
    /// What the run measured, in `unit`.
    pub actual: f64,
    /// `"ms"`, `"ratio"`, `"count"` or `"per_sec"`.
    pub unit: &'static str,
    /// Whether `actual` is within `limit` (see [`ThresholdVerdict::relation`]).
    pub passed: bool,
}

impl ThresholdVerdict {
    /// How `actual` must compare to `limit` to pass: `">="` for the `min_*` limits (a floor),
    /// `"<="` for the others (a ceiling).
    pub fn relation(&self) -> &'static str {
        if self.name.starts_with("min_") {
            ">="
        } else {
            "<="
        }
    }

    pub fn ceiling(name: &str, limit: f64, actual: f64, unit: &'static str) -> ThresholdVerdict {
        ThresholdVerdict {
            name: name.to_string(),
            limit,
            actual,
            unit,
            passed: actual <= limit,
        }
    }

    fn floor(name: &str, limit: f64, actual: f64, unit: &'static str) -> ThresholdVerdict {
        ThresholdVerdict {
            name: name.to_string(),
            limit,
            actual,
            unit,
            passed: actual >= limit,
        }
    }

    fn count(name: &str, limit: u64, actual: u64) -> ThresholdVerdict {
        ThresholdVerdict {
            name: name.to_string(),
            limit: limit as f64,
            actual: actual as f64,
            unit: "count",
            passed: actual <= limit,
        }
    }
}

/// The share of expected deliveries that arrived: `(expected - lost) / expected`.
///
/// With nothing expected the ratio is 1.0 when nothing was lost either (no evidence of
/// loss, e.g. a run whose users never overlapped a delivery window), and 0.0 otherwise:
/// a loss without an expectation is an accounting inconsistency, and a run that cannot
/// account for its messages must not pass a delivery limit.
pub fn delivery_ratio(totals: &Counters) -> f64 {
    if totals.expected == 0 {
        if totals.lost == 0 {
            1.0
        } else {
            0.0
        }
    } else {
        totals.expected.saturating_sub(totals.lost) as f64 / totals.expected as f64
    }
}

/// Deliveries per second over `measured_secs`; 0.0 when the duration is not a positive
/// number (a run that measured nothing delivered nothing per second).
pub fn deliveries_per_sec(totals: &Counters, measured_secs: f64) -> f64 {
    per_sec(totals.delivered, measured_secs)
}

/// `count / secs`, or 0.0 when `secs` is not a positive number.
pub fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 && secs.is_finite() {
        count as f64 / secs
    } else {
        0.0
    }
}

/// Judges a run: one verdict per latency limit that is set (`latency` in µs, compared in
/// ms), one per correctness limit (always set; they default to zero tolerance), and one
/// for `min_deliveries_per_sec` when set (`measured_secs` is its denominator).
///
/// An empty latency histogram reads as 0 ms and passes the latency limits: with no
/// deliveries there is no latency to judge, and the delivery ratio is what fails such a run.
pub fn evaluate(
    t: &Thresholds,
    totals: &Counters,
    latency: &Histogram<u64>,
    measured_secs: f64,
) -> Vec<ThresholdVerdict> {
    let ms = |us: u64| us as f64 / 1000.0;
    let latency_limits = [
        ("p50", t.p50, ms(latency.value_at_quantile(0.50))),
        ("p90", t.p90, ms(latency.value_at_quantile(0.90))),
        ("p99", t.p99, ms(latency.value_at_quantile(0.99))),
        ("p999", t.p999, ms(latency.value_at_quantile(0.999))),
        ("max", t.max, ms(latency.max())),
    ];
    let mut verdicts: Vec<ThresholdVerdict> = latency_limits
        .into_iter()
        .filter_map(|(name, limit, actual)| {
            limit.map(|span| {
                ThresholdVerdict::ceiling(name, span.0.as_secs_f64() * 1000.0, actual, "ms")
            })
        })
        .collect();
    verdicts.push(ThresholdVerdict::floor(
        "min_delivery_ratio",
        t.min_delivery_ratio,
        delivery_ratio(totals),
        "ratio",
    ));
    verdicts.extend([
        ThresholdVerdict::count(
            "max_eviction_failures",
            t.max_eviction_failures,
            totals.eviction_failures(),
        ),
        ThresholdVerdict::count("max_order_errors", t.max_order_errors, totals.order_errors),
        ThresholdVerdict::count("max_duplicates", t.max_duplicates, totals.duplicates),
        ThresholdVerdict::count("max_foreign", t.max_foreign, totals.foreign),
        ThresholdVerdict::count(
            "max_self_deliveries",
            t.max_self_deliveries,
            totals.self_deliveries,
        ),
        ThresholdVerdict::count(
            "max_connect_errors",
            t.max_connect_errors,
            totals.connect_errors,
        ),
    ]);
    if let Some(limit) = t.min_deliveries_per_sec {
        verdicts.push(ThresholdVerdict::floor(
            "min_deliveries_per_sec",
            limit,
            deliveries_per_sec(totals, measured_secs),
            "per_sec",
        ));
    }
    verdicts
}

/// How often a run samples memory unless `max_memory_growth.sample_every` says otherwise.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Settling time before growth is measured, unless the threshold says otherwise.
pub const SETTLE: Duration = Duration::from_secs(300);

/// `[thresholds] max_memory_growth`: a soak's limit on memory growth per hour, for
/// loadgen and for the server (when its memory can be read: the embedded server, or a
/// target whose `/metrics` has `process_resident_memory_bytes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrowthLimit {
    /// Growth before this is not judged (default 5 minutes).
    #[serde(default = "settle")]
    pub settle: Span,
    /// Allowed growth per hour as a percentage of the process's memory at the end
    /// (default 1).
    #[serde(default = "one")]
    pub percent_per_hour: f64,
    /// Allowed growth per hour in MB (10^6 bytes) when that is larger (default 2).
    #[serde(default = "two")]
    pub mb_per_hour: f64,
    /// How often memory is sampled (default 10 s).
    #[serde(default = "every")]
    pub sample_every: Span,
}

fn settle() -> Span {
    Span(SETTLE)
}
fn two() -> f64 {
    2.0
}
fn every() -> Span {
    Span(SAMPLE_EVERY)
}

impl GrowthLimit {
    /// Why the limit cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let fine = |x: f64| x.is_finite() && x >= 0.0;
        if !fine(self.percent_per_hour) || !fine(self.mb_per_hour) {
            return Err("percent_per_hour and mb_per_hour must be numbers ≥ 0".into());
        }
        if self.sample_every.0 < Duration::from_millis(100) {
            return Err("sample_every must be at least 100ms".into());
        }
        Ok(())
    }

    /// The allowed MB per hour for a process at `rss_bytes`.
    pub fn allowed_mb_per_hour(&self, rss_bytes: u64) -> f64 {
        (rss_bytes as f64 / 1e6 * self.percent_per_hour / 100.0).max(self.mb_per_hour)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::new_histogram;

    /// 1000 latencies of 1..=1000 ms (in µs): p50 ≈ 500 ms, p99 ≈ 990 ms, max ≈ 1000 ms.
    fn spread() -> Histogram<u64> {
        let mut h = new_histogram();
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        h
    }

    fn only<'a>(verdicts: &'a [ThresholdVerdict], name: &str) -> &'a ThresholdVerdict {
        let found: Vec<_> = verdicts.iter().filter(|v| v.name == name).collect();
        assert_eq!(found.len(), 1, "one verdict named {name} in {verdicts:?}");
        found[0]
    }

    fn judge(t: &Thresholds, totals: &Counters, name: &str) -> ThresholdVerdict {
        only(&evaluate(t, totals, &spread(), 10.0), name).clone()
    }

    fn span_ms(ms: u64) -> Option<Span> {
        Some(Span(Duration::from_millis(ms)))
    }

    #[test]
    fn default_thresholds_pass_a_clean_run_and_skip_unset_limits() {
        let totals = Counters {
            expected: 10,
            delivered: 10,
            ..Counters::default()
        };
        let verdicts = evaluate(&Thresholds::default(), &totals, &spread(), 10.0);
        let names: Vec<_> = verdicts.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "min_delivery_ratio",
                "max_eviction_failures",
                "max_order_errors",
                "max_duplicates",
                "max_foreign",
                "max_self_deliveries",
                "max_connect_errors",
            ]
        );
        assert!(verdicts.iter().all(|v| v.passed), "{verdicts:?}");
    }

    #[test]
    fn each_latency_limit_fails_above_and_passes_below() {
        type Set = fn(&mut Thresholds, Option<Span>);
        let cases: [(&str, Set, u64); 5] = [
            ("p50", |t, s| t.p50 = s, 500),
            ("p90", |t, s| t.p90 = s, 900),
            ("p99", |t, s| t.p99 = s, 990),
            ("p999", |t, s| t.p999 = s, 999),
            ("max", |t, s| t.max = s, 1000),
        ];
        for (name, set, measured_ms) in cases {
            let mut t = Thresholds::default();
            set(&mut t, span_ms(measured_ms - 10));
            let bad = judge(&t, &Counters::default(), name);
            assert!(!bad.passed, "{bad:?}");
            assert_eq!(bad.unit, "ms");
            assert_eq!(bad.limit, (measured_ms - 10) as f64);
            // 3 significant digits: the recorded value reads back within 0.1 %.
            assert!(
                (bad.actual - measured_ms as f64).abs() <= measured_ms as f64 * 0.002,
                "{bad:?}"
            );
            set(&mut t, span_ms(measured_ms + 10));
            let good = judge(&t, &Counters::default(), name);
            assert!(good.passed, "{good:?}");
        }
    }

    #[test]
    fn empty_latency_passes_latency_limits() {
        let t = Thresholds {
            p99: span_ms(1),
            max: span_ms(1),
            ..Thresholds::default()
        };
        let verdicts = evaluate(&t, &Counters::default(), &new_histogram(), 1.0);
        assert!(only(&verdicts, "p99").passed);
        assert_eq!(only(&verdicts, "max").actual, 0.0);
    }

    #[test]
    fn delivery_ratio_fails_on_loss_and_passes_within_limit() {
        let lossy = Counters {
            expected: 1000,
            lost: 1,
            ..Counters::default()
        };
        let bad = judge(&Thresholds::default(), &lossy, "min_delivery_ratio");
        assert!(!bad.passed);
        assert_eq!(bad.actual, 0.999);
        assert_eq!(bad.unit, "ratio");
        let lenient = Thresholds {
            min_delivery_ratio: 0.99,
            ..Thresholds::default()
        };
        assert!(judge(&lenient, &lossy, "min_delivery_ratio").passed);
    }

    #[test]
    fn delivery_ratio_with_nothing_expected() {
        assert_eq!(delivery_ratio(&Counters::default()), 1.0);
        let inconsistent = Counters {
            lost: 1,
            ..Counters::default()
        };
        assert_eq!(delivery_ratio(&inconsistent), 0.0);
        let bad = judge(&Thresholds::default(), &inconsistent, "min_delivery_ratio");
        assert!(!bad.passed);
        let more_lost_than_expected = Counters {
            expected: 1,
            lost: 2,
            ..Counters::default()
        };
        assert_eq!(delivery_ratio(&more_lost_than_expected), 0.0);
    }

    #[test]
    fn each_count_limit_fails_above_and_passes_at_the_limit() {
        type Set = fn(&mut Thresholds, &mut Counters, u64);
        let cases: [(&str, Set); 6] = [
            ("max_eviction_failures", |t, c, n| {
                t.max_eviction_failures = 2;
                // Every failing outcome counts.
                c.evictions_late = n.min(1);
                c.evictions_missing = n.saturating_sub(1).min(1);
                c.evictions_zombie = n.saturating_sub(2);
                c.evictions_ok = 100;
            }),
            ("max_order_errors", |t, c, n| {
                t.max_order_errors = 2;
                c.order_errors = n;
            }),
            ("max_duplicates", |t, c, n| {
                t.max_duplicates = 2;
                c.duplicates = n;
            }),
            ("max_foreign", |t, c, n| {
                t.max_foreign = 2;
                c.foreign = n;
            }),
            ("max_self_deliveries", |t, c, n| {
                t.max_self_deliveries = 2;
                c.self_deliveries = n;
            }),
            ("max_connect_errors", |t, c, n| {
                t.max_connect_errors = 2;
                c.connect_errors = n;
            }),
        ];
        for (name, set) in cases {
            let mut t = Thresholds::default();
            let mut bad = Counters::default();
            set(&mut t, &mut bad, 3);
            let verdict = judge(&t, &bad, name);
            assert!(!verdict.passed, "{verdict:?}");
            assert_eq!((verdict.actual, verdict.limit), (3.0, 2.0), "{name}");
            assert_eq!(verdict.unit, "count");
            let mut good = Counters::default();
            set(&mut t, &mut good, 2);
            assert!(judge(&t, &good, name).passed, "{name}");
        }
    }

    #[test]
    fn eviction_ghosts_count_as_failures() {
        let ghost = Counters {
            evictions_ghost: 1,
            ..Counters::default()
        };
        assert!(!judge(&Thresholds::default(), &ghost, "max_eviction_failures").passed);
    }

    #[test]
    fn deliveries_per_sec_fails_below_and_passes_above() {
        let t = Thresholds {
            min_deliveries_per_sec: Some(100.0),
            ..Thresholds::default()
        };
        let slow = Counters {
            delivered: 999,
            ..Counters::default()
        };
        let bad = judge(&t, &slow, "min_deliveries_per_sec");
        assert!(!bad.passed);
        assert_eq!((bad.actual, bad.unit), (99.9, "per_sec"));
        assert_eq!(bad.relation(), ">=");
        let fast = Counters {
            delivered: 1000,
            ..Counters::default()
        };
        assert!(judge(&t, &fast, "min_deliveries_per_sec").passed);
        // A run that measured no time has no rate.
        let none = evaluate(&t, &fast, &spread(), 0.0);
        assert!(!only(&none, "min_deliveries_per_sec").passed);
    }
}
